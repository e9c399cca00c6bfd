//! The whole product as deployed: the chart rendered by the real Helm engine and applied with
//! kubectl; the test kit's pod runner (standing in for the kubelet and the Deployment
//! controller) runs the controller pod from its rendered Deployment, then the ingest and
//! evaluator pods the controller renders — each in a network namespace of its own, so the
//! two ingest replicas both bind :4317/:4318 — against a nats-server that requires
//! credentials. The real OpenTelemetry SDK exporter sends traces to the ingest pods over
//! gRPC and HTTP; an LLM judge (the test kit's judge server) scores them; a regression
//! pages the test kit's PagerDuty receiver and recovery resolves it, while
//! `kubectl get tp,ep` shows Ready and the firing count going 0 → 1 → 0.
//!
//! Needs root (network and mount namespaces).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use support::tools::{render_chart, repo};
use support::traffic::Traffic;
use umpire_testkit::judge::JudgeServer;
use umpire_testkit::kubeapi::{EmulatorOptions, KubeApiServer};
use umpire_testkit::nats::NatsServer;
use umpire_testkit::netns::PodNetwork;
use umpire_testkit::pager::PagerDutyReceiver;
use umpire_testkit::pod_runner::{PodRunner, PodView, RunnerOptions};

const WAIT: Duration = Duration::from_secs(90);
const NATS_PASSWORD: &str = "e2e-nats-password";
const ROUTING_KEY: &str = "R0UTING0KEY0E2E00000000000000000";
const JUDGE_KEY: &str = "sk-e2e-judge-key";
const NS: &str = "shop";

fn kubectl(server: &KubeApiServer, args: &[&str]) -> String {
    let (ok, text) = server.kubectl(repo(), args).expect("kubectl is installed");
    assert!(ok, "kubectl {args:?}:\n{text}");
    text
}

/// A Secret; `consent` labels it `umpire.dev/allow-reference: "true"`, without which Umpire
/// refuses to mount it.
fn secret(namespace: &str, name: &str, data: &[(&str, &str)], consent: bool) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: consent.then(|| [("umpire.dev/allow-reference".into(), "true".into())].into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// `(ready, firing)` of the EvalPolicy from `kubectl get tp,ep`'s printer columns.
fn policy_columns(server: &KubeApiServer) -> (String, String, String) {
    let out = kubectl(server, &["get", "tp,ep", "-n", NS]);
    let mut header: Vec<&str> = Vec::new();
    let mut project_ready = String::new();
    let mut policy = (String::new(), String::new());
    for line in out.lines() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        if cells.first() == Some(&"NAME") {
            header = cells;
            continue;
        }
        let column = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .and_then(|i| cells.get(i))
                .map(|c| (*c).to_owned())
                .unwrap_or_default()
        };
        if line.starts_with("traceproject") {
            project_ready = column("READY");
        } else if line.starts_with("evalpolicy") {
            policy = (column("READY"), column("FIRING"));
        }
    }
    (project_ready, policy.0, policy.1)
}

async fn wait_for<T>(
    what: &str,
    runner: &PodRunner,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            let mut logs = String::new();
            for (ns, deployment) in [
                ("umpire-system", "umpire"),
                (NS, "assistant-ingest"),
                (NS, "quality-evaluator"),
            ] {
                let text = runner.logs(ns, deployment);
                let tail: String = text.chars().skip(text.len().saturating_sub(4000)).collect();
                logs.push_str(&format!("\n===== {ns}/{deployment}\n{tail}"));
            }
            panic!(
                "{what}: not within {WAIT:?}\nrunner problems: {:?}{logs}",
                runner.problems()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_product_pages_and_resolves_as_deployed() {
    // The pod runner is the test kit's kubelet; on a real cluster (KUBECONFIG set) pods run
    // from the published image, which this machine cannot build: `tests/controller.rs` and
    // `tests/gitops.rs` run there instead.
    if support::cluster::real_cluster() {
        eprintln!("KUBECONFIG is set: this test needs the test kit's pod runner; skipped");
        return;
    }
    let network = Arc::new(PodNetwork::create().unwrap());
    let gateway = network.gateway();

    // Every server pods must reach listens on the pod network's gateway.
    let dir = tempfile::tempdir().unwrap();
    let nats_conf = dir.path().join("nats.conf");
    std::fs::write(
        &nats_conf,
        format!(
            "authorization {{ user: umpire, password: \"{NATS_PASSWORD}\" }}\njetstream {{ max_file_store: 1TB, max_memory_store: 1GB }}\n"
        ),
    )
    .unwrap();
    let nats = NatsServer::start_with_args(&[
        "-c",
        nats_conf.to_str().unwrap(),
        "-a",
        &gateway.to_string(),
    ])
    .unwrap();
    let nats_url = format!("nats://{gateway}:{}", nats.port());
    let judge = JudgeServer::start_on(gateway).await.unwrap();
    judge.require_key(JUDGE_KEY);
    judge.set_verdict(|request| {
        if request.prompt().contains("STALE") {
            "ungrounded".into()
        } else {
            "grounded".into()
        }
    });
    let pager = PagerDutyReceiver::start_on(gateway).await.unwrap();
    let cluster = KubeApiServer::start_with(EmulatorOptions {
        listen: gateway,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    cluster.stop_simulating_deployments();
    let client = cluster.client();

    // The install, as a platform team does it.
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        format!(
            "nats:\n  url: {nats_url}\n  auth: {{secretName: umpire-nats}}\ncontroller:\n  alertStatusInterval: 1s\n# The judge and PagerDuty stand-ins listen on the pod network's gateway, an internal\n# address the egress policy refuses unless allowed.\negress:\n  allowedCidrs: [{gateway}/32]\n"
        ),
    )
    .unwrap();
    let manifests = dir.path().join("umpire.yaml");
    std::fs::write(&manifests, render_chart(&[&values])).unwrap();
    kubectl(
        &cluster,
        &[
            "apply",
            "--server-side",
            "-f",
            "manifests/install/namespace.yaml",
        ],
    );
    kubectl(
        &cluster,
        &["apply", "--server-side", "-f", manifests.to_str().unwrap()],
    );
    Api::<Secret>::namespaced(client.clone(), "umpire-system")
        .create(
            &PostParams::default(),
            &secret(
                "umpire-system",
                "umpire-nats",
                &[("username", "umpire"), ("password", NATS_PASSWORD)],
                false,
            ),
        )
        .await
        .unwrap();
    let account_kubeconfig = cluster
        .service_account_kubeconfig("umpire-system", "umpire")
        .unwrap();
    let runner = PodRunner::start(
        client.clone(),
        RunnerOptions {
            entrypoint: PathBuf::from(env!("CARGO_BIN_EXE_umpire")),
            namespaces: vec!["umpire-system".into(), NS.into()],
            extra_env: BTreeMap::from([(
                "umpire".to_owned(),
                vec![(
                    "KUBECONFIG".to_owned(),
                    account_kubeconfig.display().to_string(),
                )],
            )]),
            network: Some(network.clone()),
            period: Duration::from_millis(200),
        },
    );
    // Two controller replicas (the chart's default), each in its own pod: one leads.
    wait_for("two controller pods ready", &runner, async || {
        let pods = runner.pods("umpire-system", "umpire");
        (pods.len() == 2 && pods.iter().all(|p| p.ready)).then_some(())
    })
    .await;

    // The team's resources, as they would keep them in git.
    kubectl(&cluster, &["create", "namespace", NS]);
    let secrets = Api::<Secret>::namespaced(client.clone(), NS);
    // The PagerDuty Secret's owner has not consented yet: the policy waits for it.
    for s in [
        secret(NS, "judge-key", &[("api-key", JUDGE_KEY)], true),
        secret(NS, "pagerduty", &[("routing-key", ROUTING_KEY)], false),
    ] {
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let resources = dir.path().join("resources.yaml");
    std::fs::write(
        &resources,
        format!(
            r#"apiVersion: umpire.dev/v1alpha1
kind: TraceProject
metadata: {{name: assistant, namespace: {NS}}}
spec:
  ingest: {{replicas: 2}}
  sampling:
    decisionWait: 1s
    policies: [{{name: all, probabilistic: {{percentage: 100}}}}]
---
apiVersion: umpire.dev/v1alpha1
kind: EvalPolicy
metadata: {{name: quality, namespace: {NS}}}
spec:
  projectRef: {{name: assistant}}
  select: {{kinds: [LLM]}}
  judges:
    - name: grounded
      llm:
        prompt: |
          Is the answer supported by the store's policies?
          [Question] {{{{input}}}}
          [Answer] {{{{output}}}}
          Answer `grounded` or `ungrounded`.
        choices: {{grounded: 1.0, ungrounded: 0.0}}
        endpoint: {judge}/v1
        model: judge-model
        apiKeySecretRef: {{name: judge-key, key: api-key}}
  alerts:
    - name: grounded-drop
      metric: {{judge: grounded, aggregate: passRate}}
      window: 10s
      minSamples: 10
      condition: {{below: 0.8}}
      clearFor: 2s
      severity: critical
      route: oncall
  routes:
    - name: oncall
      pagerDuty:
        routingKeySecretRef: {{name: pagerduty, key: routing-key}}
        url: {events}
"#,
            judge = judge.url().trim_end_matches('/').trim_end_matches("/v1"),
            events = pager.events_url(),
        ),
    )
    .unwrap();
    kubectl(
        &cluster,
        &["apply", "--server-side", "-f", resources.to_str().unwrap()],
    );

    let reason = wait_for(
        "the policy refuses the unlabelled Secret",
        &runner,
        async || {
            let reason = kubectl(
                &cluster,
                &["get", "ep", "quality", "-n", NS, "-o",
                  "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}: {.status.conditions[?(@.type==\"Ready\")].message}"],
            );
            reason.starts_with("SecretNotAllowed").then_some(reason)
        },
    )
    .await;
    assert!(
        reason.contains("pagerduty") && !reason.contains("judge-key"),
        "{reason}"
    );
    assert!(
        runner.pods(NS, "quality-evaluator").is_empty(),
        "nothing mounts a Secret without consent"
    );
    kubectl(
        &cluster,
        &[
            "label",
            "secret",
            "pagerduty",
            "-n",
            NS,
            "umpire.dev/allow-reference=true",
        ],
    );

    // The controller's Deployments run: two ingest pods on their own addresses.
    let ingest: Vec<PodView> = wait_for(
        "two ingest pods and an evaluator ready",
        &runner,
        async || {
            let ingest = runner.pods(NS, "assistant-ingest");
            let evaluator = runner.pods(NS, "quality-evaluator");
            (ingest.len() == 2
                && ingest.iter().all(|p| p.ready)
                && !evaluator.is_empty()
                && evaluator.iter().all(|p| p.ready))
            .then_some(ingest)
        },
    )
    .await;
    assert_ne!(ingest[0].ip, ingest[1].ip);
    wait_for(
        "kubectl shows both Ready, nothing firing",
        &runner,
        async || {
            let (project, policy, firing) = policy_columns(&cluster);
            (project == "True" && policy == "True" && firing == "0").then_some(())
        },
    )
    .await;

    // Healthy traffic through the real SDK, then a regression.
    let stale = Arc::new(AtomicBool::new(false));
    let traffic = Traffic::start(
        format!("{}:4317", ingest[0].ip.unwrap()),
        format!("{}:4318", ingest[1].ip.unwrap()),
        stale.clone(),
        tokio::runtime::Handle::current(),
    );
    wait_for("healthy answers judged", &runner, async || {
        (judge.requests().len() >= 20).then_some(())
    })
    .await;
    assert!(
        pager.events().is_empty(),
        "healthy traffic paged: {:?}",
        pager.events().iter().map(|e| &e.body).collect::<Vec<_>>()
    );
    stale.store(true, Ordering::Relaxed);
    let trigger = wait_for("the regression pages", &runner, async || {
        pager.events().into_iter().find(|e| e.action() == "trigger")
    })
    .await;
    assert_eq!(trigger.body["routing_key"], ROUTING_KEY);
    assert_eq!(
        trigger.body["dedup_key"],
        "umpire/shop/quality/grounded-drop"
    );
    assert_eq!(trigger.body["payload"]["severity"], "critical");
    assert_eq!(trigger.body["payload"]["component"], "assistant");
    assert_eq!(trigger.body["payload"]["class"], "grounded");
    wait_for("kubectl shows 1 firing", &runner, async || {
        (policy_columns(&cluster).2 == "1").then_some(())
    })
    .await;

    stale.store(false, Ordering::Relaxed);
    let resolve = wait_for("recovery resolves the page", &runner, async || {
        pager.events().into_iter().find(|e| e.action() == "resolve")
    })
    .await;
    assert_eq!(resolve.body["dedup_key"], trigger.body["dedup_key"]);
    wait_for("kubectl shows 0 firing", &runner, async || {
        (policy_columns(&cluster).2 == "0").then_some(())
    })
    .await;
    let sent = traffic.sent.load(Ordering::Relaxed);
    drop(traffic);
    assert!(sent > 40, "{sent} spans sent");
    // Both ingest pods took traffic (each exporter targets one).
    // (A pod's name is always in the runner's log: read each pod's own span counter.)
    for pod in &ingest {
        let metrics = reqwest::get(format!("http://{}:9464/metrics", pod.ip.unwrap()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let received: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("umpire_ingest_spans_received_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        assert!(received > 0.0, "{} received no spans", pod.name);
    }
    // No secret reached a log.
    for (ns, deployment) in [
        ("umpire-system", "umpire"),
        (NS, "assistant-ingest"),
        (NS, "quality-evaluator"),
    ] {
        let logs = runner.logs(ns, deployment);
        for secret in [NATS_PASSWORD, ROUTING_KEY, JUDGE_KEY] {
            assert!(!logs.contains(secret), "{ns}/{deployment} logged a secret");
        }
    }
    runner.shutdown().await;
}
