//! End-to-end tests of `umpire controller` against the test kit's Kubernetes API emulator
//! (or, when `KUBECONFIG` is set, the cluster it points at — same test code; pods must then be
//! able to run `UMPIRE_IMAGE`) and a real nats-server.
#![allow(clippy::unwrap_used)]

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::cluster::Cluster;
use support::controller::*;
use support::{create_namespace, create_referenced_secrets, install_crds};
use umpire_api::eval_policy::EvalPolicy;
use umpire_api::trace_project::TraceProject;
use umpire_testkit::nats::NatsServer;
use umpire_testkit::wait::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_projects_and_policies_through_their_whole_lifecycle() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nats = NatsServer::start().unwrap();
    install_crds(&client).await;
    let ns = cluster.namespace("shop");
    create_namespace(&client, &ns).await;
    create_referenced_secrets(&client, &ns).await;
    create_namespace(&client, "umpire-system").await;
    let mut controller = Controller::start(
        &cluster,
        &nats,
        "ctl-a",
        "umpire-system",
        &["--alert-status-interval", "1s", "--cleanup-timeout", "4s"],
    );

    // A policy whose project does not exist yet waits with a condition, and creates nothing.
    let projects: Api<TraceProject> = Api::namespaced(client.clone(), &ns);
    let policies: Api<EvalPolicy> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    policies
        .create(&PostParams::default(), &policy("quality", &ns, "bot"))
        .await
        .unwrap();
    let waiting = wait_reason(&policies, "quality", "ProjectNotFound").await;
    let (_, _, message) =
        condition(&serde_json::to_value(&waiting).unwrap()["status"], "Ready").unwrap();
    assert!(message.contains("bot"), "{message}");
    assert!(
        deployments
            .get_opt("quality-evaluator")
            .await
            .unwrap()
            .is_none()
    );

    // The project appears: it becomes Ready, and the waiting policy follows by itself.
    projects
        .create(&PostParams::default(), &project("bot", &ns, json!({"replicas": 2, "auth": {"bearerTokenSecretRef": {"name": "otlp", "key": "token"}}})))
        .await
        .unwrap();
    let ready = wait_reason(&projects, "bot", "Available").await;
    let status = ready.status.clone().unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        status.stream.as_deref(),
        Some(format!("UMPIRE_SPANS_{ns}_bot").as_str())
    );
    assert_eq!(
        status.endpoints.unwrap().grpc,
        format!("bot-ingest.{ns}.svc:4317")
    );
    assert_eq!(status.ingest_replicas_ready, Some(2));
    for type_ in ["Ready", "StreamReady", "IngestAvailable"] {
        assert_eq!(
            condition(&serde_json::to_value(&ready.status).unwrap(), type_)
                .unwrap()
                .0,
            "True"
        );
    }
    assert!(
        stream_names(&nats)
            .await
            .contains(&format!("UMPIRE_SPANS_{ns}_bot"))
    );

    // Children: hardened pods, config with the token as a file path, owner references.
    let deployment = deployments.get("bot-ingest").await.unwrap();
    let owner = &deployment.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("TraceProject", ready.uid().unwrap().as_str())
    );
    let pod = deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .clone()
        .unwrap();
    let container = &pod.containers[0];
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.capabilities.unwrap().drop.unwrap(), ["ALL"]);
    assert_eq!(
        container.args.clone().unwrap(),
        ["ingest", "--config", "/etc/umpire/config.yaml"]
    );
    let config = maps.get("bot-ingest").await.unwrap().data.unwrap()["config.yaml"].clone();
    let config: Value = serde_yaml::from_str(&config).unwrap();
    assert_eq!(config["nats"]["url"], nats.url());
    assert_eq!(
        config["auth_token_file"]
            .as_str()
            .or(config["authTokenFile"].as_str()),
        Some("/var/run/umpire/secrets/otlp/token")
    );
    let service: Api<Service> = Api::namespaced(client.clone(), &ns);
    let ports: Vec<i32> = service
        .get("bot-ingest")
        .await
        .unwrap()
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [4317, 4318, 9464]);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    assert!(pdbs.get_opt("bot-ingest").await.unwrap().is_some());

    let quality = wait_reason(&policies, "quality", "Available").await;
    let quality_status = quality.status.clone().unwrap();
    assert_eq!(quality_status.judges, Some(2));
    assert_eq!(quality_status.consumer.as_deref(), Some("policy-quality"));
    assert!(consumer_exists(&nats, &format!("UMPIRE_SPANS_{ns}_bot"), "policy-quality").await);
    // Firing alerts (kept by the evaluators in NATS KV) show in status.firingAlerts, the
    // printer column `Firing`.
    assert_eq!(quality_status.firing_alerts, Some(0));
    {
        use umpire_core::alert::state::{AlertStatus, Phase};
        let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        let store = umpire_contract::alert_state::AlertStore::open(
            &js,
            &umpire_nats::topology::ProjectNames::new(&ns, "bot"),
            "quality",
            1,
        )
        .await
        .unwrap();
        let firing = umpire_contract::alert_state::StoredAlert {
            rule: "slow".into(),
            group: String::new(),
            values: Default::default(),
            status: AlertStatus {
                phase: Phase::Firing {
                    since_ns: 1,
                    last_notified_ns: 1,
                    clear_since_ns: None,
                },
                episode: 1,
                repeats: 0,
                value: Some(4200.0),
            },
            trigger: None,
        };
        store.save(&firing).await.unwrap();
    }
    let status = eventually("firingAlerts = 1", WAIT, || async {
        let status = policies.get("quality").await.ok()?.status?;
        (status.firing_alerts == Some(1)).then_some(status)
    })
    .await;
    // The alert itself is listed, with its state and since when.
    let listed = status.alerts.unwrap_or_default();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].rule.as_str(), listed[0].state, listed[0].value),
        (
            "slow",
            umpire_api::eval_policy::AlertState::Firing,
            Some(4200.0)
        )
    );

    // Secrets are mounted (only the named keys), never copied into the ConfigMap.
    let evaluator = deployments.get("quality-evaluator").await.unwrap();
    let volumes = evaluator
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .volumes
        .unwrap();
    let judge_key = volumes
        .iter()
        .find(|v| {
            v.secret
                .as_ref()
                .is_some_and(|s| s.secret_name.as_deref() == Some("judge-key"))
        })
        .unwrap();
    assert_eq!(
        judge_key.secret.as_ref().unwrap().items.as_ref().unwrap()[0].key,
        "api-key"
    );
    assert!(volumes.iter().any(|v| {
        v.secret
            .as_ref()
            .is_some_and(|s| s.secret_name.as_deref() == Some("pd"))
    }));

    // Status is written only when it changes: reconciles caused by child events leave it alone.
    let rv_before = projects.get("bot").await.unwrap().resource_version();
    let reconciles = controller
        .metric(
            "umpire_controller_reconciles_total",
            "kind=\"TraceProject\",result=\"success\"",
        )
        .await;
    service
        .patch(
            "bot-ingest",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    eventually("a reconcile after the Service changed", WAIT, || async {
        let now = controller
            .metric(
                "umpire_controller_reconciles_total",
                "kind=\"TraceProject\",result=\"success\"",
            )
            .await;
        (now > reconciles).then_some(())
    })
    .await;
    assert_eq!(
        projects.get("bot").await.unwrap().resource_version(),
        rv_before,
        "status churned"
    );

    // Drift repair: a user scales the Deployment by hand; the controller puts it back.
    deployments
        .patch(
            "bot-ingest",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    eventually("the Deployment's replicas restored", WAIT, || async {
        let d = deployments.get("bot-ingest").await.ok()?;
        (d.spec?.replicas == Some(2)).then_some(())
    })
    .await;

    // A spec change rolls the pods (config hash) and moves observedGeneration; switching to
    // autoscaling creates an HPA, switching back prunes it.
    let hash = |d: &Deployment| {
        d.spec
            .clone()
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()["umpire.dev/config-hash"]
            .clone()
    };
    let old_hash = hash(&deployments.get("bot-ingest").await.unwrap());
    projects
        .patch("bot", &PatchParams::default(), &Patch::Merge(json!({"spec": {"ingest": {"replicas": null, "autoscaling": {"minReplicas": 2, "maxReplicas": 5}, "resources": {"requests": {"cpu": "100m"}}}}})))
        .await
        .unwrap();
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    eventually(
        "the HPA exists and the status saw generation 2",
        WAIT,
        || async {
            let hpa = hpas.get_opt("bot-ingest").await.ok()??;
            let tp = projects.get("bot").await.ok()?;
            (hpa.spec?.max_replicas == 5 && tp.status?.observed_generation == Some(2)).then_some(())
        },
    )
    .await;
    let rolled = deployments.get("bot-ingest").await.unwrap();
    assert_ne!(
        hash(&rolled),
        old_hash,
        "a changed config must roll the pods"
    );
    assert_eq!(rolled.spec.unwrap().replicas, None, "the HPA owns replicas");
    projects
        .patch(
            "bot",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ingest": {"autoscaling": null, "replicas": 1}}})),
        )
        .await
        .unwrap();
    wait_gone(&hpas, "bot-ingest").await;

    // An invalid spec (passes the schema, fails Rust-side validation) changes no child.
    let evaluator_config = maps.get("quality-evaluator").await.unwrap().data;
    policies
        .patch(
            "quality",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"judges": [
            {"name": "fast", "latency": {"maxMs": 2000}},
            {"name": "broken", "regex": {"pattern": "(unclosed"}}]}})),
        )
        .await
        .unwrap();
    let invalid = wait_reason(&policies, "quality", "InvalidSpec").await;
    let (_, _, message) =
        condition(&serde_json::to_value(&invalid).unwrap()["status"], "Ready").unwrap();
    assert!(
        message.contains("spec.judges[1].regex.pattern"),
        "{message}"
    );
    assert_eq!(
        maps.get("quality-evaluator").await.unwrap().data,
        evaluator_config
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    eventually("an InvalidSpec warning event", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("InvalidSpec") && e.type_.as_deref() == Some("Warning")
            })
            .then_some(())
    })
    .await;

    // Deleting the policy removes its consumer; deleting the project removes its streams,
    // and the children go with their owners. Its firing alert cannot be resolved here (no
    // evaluator runs in this test): after the cleanup timeout the deletion goes on with a
    // warning, and the alert state is forgotten.
    policies
        .delete("quality", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&policies, "quality").await;
    eventually("an AlertsLeftOpen warning event", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("AlertsLeftOpen")
                    && e.type_.as_deref() == Some("Warning")
            })
            .then_some(())
    })
    .await;
    {
        let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        let kv = js
            .get_key_value(format!("umpire-alerts-{ns}-bot"))
            .await
            .unwrap();
        assert_eq!(kv.get("quality.slow.all").await.unwrap(), None);
    }
    assert!(!consumer_exists(&nats, &format!("UMPIRE_SPANS_{ns}_bot"), "policy-quality").await);
    wait_gone(&deployments, "quality-evaluator").await;
    projects
        .delete("bot", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&projects, "bot").await;
    assert!(
        !stream_names(&nats)
            .await
            .iter()
            .any(|s| s.contains(&format!("{ns}_bot")))
    );
    wait_gone(&deployments, "bot-ingest").await;
    assert_eq!(controller.process.terminate(), Some(0), "graceful shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_successor_finishes_after_a_crash() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let nats = NatsServer::start().unwrap();
    install_crds(&client).await;
    let ns = cluster.namespace("fleet");
    create_namespace(&client, &ns).await;
    create_referenced_secrets(&client, &ns).await;
    create_namespace(&client, "umpire-system").await;
    let mut first = Controller::start(&cluster, &nats, "ctl-1", "umpire-system", &[]);
    eventually("ctl-1 leads", WAIT, || async {
        (first.metric("umpire_controller_leader", "").await == 1.0).then_some(())
    })
    .await;
    let mut second = Controller::start(&cluster, &nats, "ctl-2", "umpire-system", &[]);
    // The follower is up (serving metrics) but not leading.
    eventually("ctl-2 serves metrics", WAIT, || async {
        (second.metric("umpire_controller_leader", "").await == 0.0).then_some(())
    })
    .await;

    let projects: Api<TraceProject> = Api::namespaced(client.clone(), &ns);
    for i in 0..12 {
        projects
            .create(
                &PostParams::default(),
                &project(&format!("p{i}"), &ns, json!({"replicas": 1})),
            )
            .await
            .unwrap();
    }
    // Crash the leader mid-way through the batch.
    eventually("some projects reconciled", WAIT, || async {
        let done = first
            .metric(
                "umpire_controller_reconciles_total",
                "kind=\"TraceProject\",result=\"success\"",
            )
            .await;
        (done >= 1.0).then_some(())
    })
    .await;
    assert_eq!(
        second
            .metric("umpire_controller_reconciles_total", "")
            .await,
        0.0,
        "the follower reconciled"
    );
    first.process.kill();

    eventually("ctl-2 takes over", WAIT, || async {
        (second.metric("umpire_controller_leader", "").await == 1.0).then_some(())
    })
    .await;
    for i in 0..12 {
        wait_reason(&projects, &format!("p{i}"), "Available").await;
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let all = deployments.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        all.items.len(),
        12,
        "exactly one ingest Deployment per project"
    );
    second.process.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_with_nats_down_retries_then_completes_with_a_warning() {
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let mut nats = NatsServer::start().unwrap();
    install_crds(&client).await;
    let ns = cluster.namespace("outage");
    create_namespace(&client, &ns).await;
    create_referenced_secrets(&client, &ns).await;
    let _controller = Controller::start(
        &cluster,
        &nats,
        "ctl",
        "default",
        &["--no-leader-election", "--cleanup-timeout", "12s"],
    );
    let projects: Api<TraceProject> = Api::namespaced(client.clone(), &ns);
    projects
        .create(
            &PostParams::default(),
            &project("gone", &ns, json!({"replicas": 1})),
        )
        .await
        .unwrap();
    wait_reason(&projects, "gone", "Available").await;

    nats.kill();
    projects
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    let pending = wait_reason(&projects, "gone", "CleanupPending").await;
    let (_, _, message) =
        condition(&serde_json::to_value(&pending).unwrap()["status"], "Ready").unwrap();
    assert!(message.contains("NATS"), "{message}");
    wait_gone(&projects, "gone").await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let list = events.list(&ListParams::default()).await.unwrap();
    assert!(
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("StreamsLeftBehind"))
    );
}
