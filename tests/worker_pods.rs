//! Workers run from the controller's own Deployments — started as a kubelet would start them
//! (the container's args and env, ConfigMap and Secret volumes at their mount paths, in a
//! private mount namespace) — against a nats-server that requires credentials and TLS. The
//! controller hands its NATS credentials and the CA to every worker; the ingest pod accepts
//! OTLP spans and the evaluator pod judges them.
//!
//! Needs root (mount and network namespaces). The test kit's pod runner starts the pods from
//! the Deployments, each in a network namespace of its own, and reports their readiness.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::{UmpireProcess, create_namespace, free_port, install_crds};
use umpire_api::eval_policy::EvalPolicy;
use umpire_api::trace_project::TraceProject;
use umpire_nats::topology::ProjectNames;
use umpire_testkit::kubeapi::KubeApiServer;
use umpire_testkit::nats::{NatsServer, read_evaluations};
use umpire_testkit::netns::PodNetwork;
use umpire_testkit::pod_runner::{PodRunner, RunnerOptions};
use umpire_testkit::tls::TestCertificates;
use umpire_testkit::wait::eventually;

const WAIT: Duration = Duration::from_secs(60);
const PASSWORD: &str = "correct-horse-battery-staple";

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

async fn deployment(api: &Api<Deployment>, name: &str) -> Deployment {
    eventually(&format!("Deployment {name}"), WAIT, || async {
        api.get_opt(name).await.ok().flatten()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_started_from_the_rendered_deployments_connect_to_a_nats_requiring_credentials_and_tls()
 {
    // This test's instruments are the test kit's: its pod runner stands in for the kubelet
    // and its API server records every request the controller's ServiceAccount makes. On a
    // real cluster (KUBECONFIG set) `tests/controller.rs` and `tests/gitops.rs` run instead.
    if support::cluster::real_cluster() {
        eprintln!(
            "KUBECONFIG is set: this test needs the test kit's API server and pod runner; skipped"
        );
        return;
    }
    let network = Arc::new(PodNetwork::create().unwrap());
    let gateway = network.gateway();
    let tls = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::write_for(tls.path(), &[gateway]).unwrap();
    let (cert, key) = (
        certificates.cert.to_str().unwrap(),
        certificates.key.to_str().unwrap(),
    );
    let nats = NatsServer::start_with_args(&[
        "--user",
        "umpire",
        "--pass",
        PASSWORD,
        "--tls",
        "--tlscert",
        cert,
        "--tlskey",
        key,
        "-a",
        &gateway.to_string(),
    ])
    .unwrap();
    // Pods reach NATS at the pod network's gateway.
    let nats_url = format!("nats://{gateway}:{}", nats.port());
    let trusting =
        || async_nats::ConnectOptions::new().add_root_certificates(certificates.ca.clone());
    assert!(
        trusting().connect(nats_url.as_str()).await.is_err(),
        "the server must refuse clients without credentials"
    );
    assert!(
        async_nats::ConnectOptions::with_user_and_password("umpire".into(), PASSWORD.into())
            .connect(nats_url.as_str())
            .await
            .is_err(),
        "the server must refuse clients that do not trust its certificate"
    );
    let auth = tempfile::tempdir().unwrap();
    std::fs::write(auth.path().join("username"), "umpire\n").unwrap();
    std::fs::write(auth.path().join("password"), format!("{PASSWORD}\n")).unwrap();

    let cluster = KubeApiServer::start().await.unwrap();
    let client = cluster.client();
    install_crds(&client).await;
    create_namespace(&client, "shop").await;
    let admin = format!("127.0.0.1:{}", free_port());
    let mut controller = UmpireProcess::spawn_with_env(
        &[
            "controller",
            "--nats-url",
            &nats_url,
            "--nats-auth-dir",
            auth.path().to_str().unwrap(),
            "--nats-tls-dir",
            tls.path().to_str().unwrap(),
            "--no-leader-election",
            "--admin-listen",
            &admin,
        ],
        repo(),
        &[("KUBECONFIG", cluster.kubeconfig().to_str().unwrap())],
    );

    let projects: Api<TraceProject> = Api::namespaced(client.clone(), "shop");
    let project: TraceProject = serde_json::from_value(json!({
        "apiVersion": "umpire.dev/v1alpha1", "kind": "TraceProject",
        "metadata": {"name": "bot", "namespace": "shop"},
        "spec": {"sampling": {"decisionWait": "1s"}}
    }))
    .unwrap();
    projects
        .create(&PostParams::default(), &project)
        .await
        .unwrap();
    let policies: Api<EvalPolicy> = Api::namespaced(client.clone(), "shop");
    let policy: EvalPolicy = serde_json::from_value(json!({
        "apiVersion": "umpire.dev/v1alpha1", "kind": "EvalPolicy",
        "metadata": {"name": "fast", "namespace": "shop"},
        "spec": {"projectRef": {"name": "bot"},
                 "judges": [{"name": "quick", "latency": {"maxMs": 60000}}]}
    }))
    .unwrap();
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();

    // The controller gives each worker its own copy of the credentials, mounted.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "shop");
    let copy = eventually("the ingest pods' NATS Secret", WAIT, || async {
        secrets.get_opt("bot-ingest-nats").await.ok().flatten()
    })
    .await;
    let data = copy.data.unwrap();
    assert_eq!(data["password"].0, format!("{PASSWORD}\n").into_bytes());
    assert_eq!(
        data["ca.crt"].0,
        std::fs::read(&certificates.ca).unwrap(),
        "the CA goes along"
    );
    assert!(
        !data.contains_key("server.key"),
        "only the TLS keys the workers read"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    deployment(&deployments, "bot-ingest").await;
    deployment(&deployments, "fast-evaluator").await;
    cluster.stop_simulating_deployments();
    let runner = PodRunner::start(
        client.clone(),
        RunnerOptions {
            entrypoint: PathBuf::from(env!("CARGO_BIN_EXE_umpire")),
            namespaces: vec!["shop".into()],
            extra_env: BTreeMap::new(),
            network: Some(network.clone()),
            period: Duration::from_millis(200),
        },
    );
    let ingest_ip = eventually("the ingest and evaluator pods are ready", WAIT, || async {
        let ingest = runner.pods("shop", "bot-ingest");
        let evaluator = runner.pods("shop", "fast-evaluator");
        (ingest.len() == 1 && ingest[0].ready && evaluator.len() == 1 && evaluator[0].ready)
            .then(|| ingest[0].ip)
            .flatten()
    })
    .await;
    let ready = deployments.get("bot-ingest").await.unwrap().status.unwrap();
    assert_eq!(ready.ready_replicas, Some(1), "the runner wrote the status");

    // A span sent over OTLP/HTTP is kept, stored and judged.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let body = json!({"resourceSpans": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "bot"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": "chat gpt-4o", "kind": 3,
            "startTimeUnixNano": (now - 800_000_000).to_string(), "endTimeUnixNano": now.to_string(),
            "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                           {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}}]}]}]}]});
    let response = reqwest::Client::new()
        .post(format!("http://{ingest_ip}:4318/v1/traces"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "{}",
        runner.logs("shop", "bot-ingest")
    );

    let authenticated =
        async_nats::ConnectOptions::with_user_and_password("umpire".into(), PASSWORD.into())
            .add_root_certificates(certificates.ca.clone())
            .connect(nats_url.as_str())
            .await
            .unwrap();
    let js = async_nats::jetstream::new(authenticated);
    let names = ProjectNames::new("shop", "bot");
    let scores = eventually("the span's evaluation is stored", WAIT, || async {
        let stored = read_evaluations(&js, &names.scores_stream()).await.ok()?;
        (!stored.is_empty()).then_some(stored)
    })
    .await;
    let evaluation = serde_json::to_value(&scores[0].1).unwrap();
    assert_eq!(
        evaluation["spanId"],
        "eee19b7ec3c1b174",
        "{evaluation}\n{}",
        runner.logs("shop", "fast-evaluator")
    );

    let logs = [
        ("ingest", runner.logs("shop", "bot-ingest")),
        ("evaluator", runner.logs("shop", "fast-evaluator")),
    ];
    runner.shutdown().await;
    for (name, logs) in logs {
        assert!(!logs.contains(PASSWORD), "{name} logged the NATS password");
        assert!(
            !logs.contains("Authorization Violation"),
            "{name} was refused by NATS:\n{logs}"
        );
    }
    controller.terminate();
    assert!(!controller.log.join("\n").contains(PASSWORD));
}
