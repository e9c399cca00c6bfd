//! Defects of the controller seen from outside (step 7), each reproduced here first: what
//! running the product whole exposed.
#![allow(clippy::unwrap_used)]

mod support;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use support::cluster::Cluster;
use support::controller::*;
use umpire_api::eval_policy::EvalPolicy;
use umpire_api::trace_project::TraceProject;
use umpire_testkit::wait::eventually;

/// Step 7, seen from outside: deleting a TraceProject while its EvalPolicies exist re-created
/// the project's alert-state KV bucket (a policy reconcile read alert state through a helper
/// that creates the bucket), and the bucket then outlived everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_project_under_its_policies_leaves_no_alert_bucket() {
    let Setup {
        cluster,
        client,
        nats,
        ns,
    } = Setup::new("orphans").await;
    let mut controller = Controller::start(
        &cluster,
        &nats,
        "ctl-orphans",
        "umpire-system",
        &["--alert-status-interval", "1s"],
    );
    let projects: Api<TraceProject> = Api::namespaced(client.clone(), &ns);
    let policies: Api<EvalPolicy> = Api::namespaced(client.clone(), &ns);
    projects
        .create(
            &PostParams::default(),
            &project("bot", &ns, json!({"replicas": 1})),
        )
        .await
        .unwrap();
    for name in ["quality", "latency"] {
        policies
            .create(&PostParams::default(), &policy(name, &ns, "bot"))
            .await
            .unwrap();
    }
    for name in ["quality", "latency"] {
        wait_reason(&policies, name, "Available").await;
    }
    let bucket = format!("KV_umpire-alerts-{ns}-bot");

    projects
        .delete("bot", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&projects, "bot").await;
    for name in ["quality", "latency"] {
        wait_reason(&policies, name, "ProjectNotFound").await;
    }
    let left: Vec<String> = stream_names(&nats)
        .await
        .into_iter()
        .filter(|s| s.contains(&format!("{ns}-bot")) || s.contains(&format!("{ns}_bot")))
        .collect();
    assert!(
        left.is_empty(),
        "streams left after the project was deleted (looked for {bucket}): {left:?}"
    );
    assert_eq!(controller.process.terminate(), Some(0));
}

/// Step 7, seen from outside: a TraceProject that never became Ready got no Event (policies
/// got one on every reason change), so `kubectl describe` said nothing about why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_that_never_becomes_ready_gets_an_event() {
    let Setup {
        cluster,
        client,
        nats,
        ns,
    } = Setup::new("stuck").await;
    if let Cluster::Emulator(server) = &cluster {
        server.set_deployments_ready(false);
    }
    let mut controller = Controller::start(&cluster, &nats, "ctl-stuck", "umpire-system", &[]);
    let projects: Api<TraceProject> = Api::namespaced(client.clone(), &ns);
    projects
        .create(
            &PostParams::default(),
            &project("bot", &ns, json!({"replicas": 2})),
        )
        .await
        .unwrap();
    wait_reason(&projects, "bot", "IngestUnavailable").await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let event = eventually(
        "an IngestUnavailable event about the project",
        WAIT,
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("IngestUnavailable")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("bot")
            })
        },
    )
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("ingest pods ready"),
        "{event:?}"
    );
    assert_eq!(controller.process.terminate(), Some(0));
}

/// Step 7, seen from outside: a stream configuration NATS refuses (3 replicas on a
/// single-node server) was reported as `NatsUnavailable` although NATS was up. NATS's own
/// words, under their own reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_nats_refuses_is_reported_with_its_own_reason() {
    let Setup {
        cluster,
        client,
        nats,
        ns,
    } = Setup::new("refused").await;
    let mut controller = Controller::start(&cluster, &nats, "ctl-refused", "umpire-system", &[]);
    let projects: Api<TraceProject> = Api::namespaced(client.clone(), &ns);
    let mut tp = project("bot", &ns, json!({"replicas": 1}));
    tp.spec.stream.as_mut().unwrap().replicas = Some(3);
    projects.create(&PostParams::default(), &tp).await.unwrap();
    let refused = wait_reason(&projects, "bot", "StreamRejected").await;
    let status = serde_json::to_value(&refused).unwrap()["status"].clone();
    let (_, _, message) = condition(&status, "Ready").unwrap();
    assert!(message.contains("replicas"), "NATS's own words: {message}");
    let (ok, reason, _) = condition(&status, "StreamReady").unwrap();
    assert_eq!((ok.as_str(), reason.as_str()), ("False", "StreamRejected"));
    assert_eq!(controller.process.terminate(), Some(0));
}

/// Step 9: a notification its route gave up on (after `maxDeliveryAge`) lands on the
/// project's dead-letter stream; the policy's status counts them and each increase is a
/// Warning Event, so `kubectl describe` says a page was lost to a dead route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lettered_notifications_are_counted_in_status_and_an_event() {
    let Setup {
        cluster,
        client,
        nats,
        ns,
    } = Setup::new("deadletters").await;
    let mut controller = Controller::start(
        &cluster,
        &nats,
        "ctl-deadletters",
        "umpire-system",
        &["--alert-status-interval", "1s"],
    );
    let projects: Api<TraceProject> = Api::namespaced(client.clone(), &ns);
    let policies: Api<EvalPolicy> = Api::namespaced(client.clone(), &ns);
    projects
        .create(
            &PostParams::default(),
            &project("bot", &ns, json!({"replicas": 1})),
        )
        .await
        .unwrap();
    policies
        .create(&PostParams::default(), &policy("quality", &ns, "bot"))
        .await
        .unwrap();
    wait_reason(&policies, "quality", "Available").await;
    // What an evaluator stores when the `pd` route gives up on a notification.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let names = umpire_nats::topology::ProjectNames::new(&ns, "bot");
    umpire_nats::streams::ensure_stream(&js, umpire_nats::topology::dead_letter_stream(&names, 1))
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Umpire-Reason", "retried for 24h: connection refused");
    js.publish_with_headers(
        names.notification_dead_letter_subject("quality"),
        headers,
        "{}".into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    eventually("deadLetteredNotifications in status", WAIT, || async {
        let policy = policies.get("quality").await.ok()?;
        (policy.status?.dead_lettered_notifications == Some(1)).then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let event = eventually("a NotificationsDeadLettered event", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("NotificationsDeadLettered"))
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("connection refused"),
        "{event:?}"
    );
    assert_eq!(controller.process.terminate(), Some(0));
}

/// Step 11: a policy with an `embedding` judge on an install without a model is not deployed
/// to crash: its status says what is missing. With the model configured, its evaluator
/// mounts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_comparing_embeddings_needs_the_installs_model() {
    let Setup {
        cluster,
        client,
        nats,
        ns,
    } = Setup::new("embeddings").await;
    let projects: Api<TraceProject> = Api::namespaced(client.clone(), &ns);
    let policies: Api<EvalPolicy> = Api::namespaced(client.clone(), &ns);
    projects
        .create(
            &PostParams::default(),
            &project("bot", &ns, json!({"replicas": 1})),
        )
        .await
        .unwrap();
    let mut ep = policy("topics", &ns, "bot");
    ep.spec.judges.push(
        serde_json::from_value(json!({"name": "on-topic", "embedding": {"compareTo": "input"}}))
            .unwrap(),
    );
    policies.create(&PostParams::default(), &ep).await.unwrap();

    let mut controller = Controller::start(&cluster, &nats, "ctl-embed", "umpire-system", &[]);
    let waiting = wait_reason(&policies, "topics", "EmbeddingModelMissing").await;
    let status = serde_json::to_value(&waiting).unwrap()["status"].clone();
    let (_, _, message) = condition(&status, "Ready").unwrap();
    assert!(message.contains("embeddings.model"), "{message}");
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns);
    assert!(
        deployments
            .get_opt("topics-evaluator")
            .await
            .unwrap()
            .is_none(),
        "no evaluator deployed to crash"
    );
    assert_eq!(controller.process.terminate(), Some(0));

    let mut controller = Controller::start(
        &cluster,
        &nats,
        "ctl-embed",
        "umpire-system",
        &[
            "--embedding-model-volume",
            r#"{"persistentVolumeClaim": {"claimName": "models", "readOnly": true}}"#,
            "--embedding-model-path",
            "all-MiniLM-L6-v2",
        ],
    );
    let deployment = eventually("the evaluator deployed", WAIT, || async {
        deployments.get_opt("topics-evaluator").await.ok().flatten()
    })
    .await;
    let pod = serde_json::to_value(&deployment).unwrap()["spec"]["template"]["spec"].clone();
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "embedding-model")
        .cloned()
        .expect("the model volume");
    assert_eq!(volume["persistentVolumeClaim"]["claimName"], "models");
    assert_eq!(controller.process.terminate(), Some(0));
}
