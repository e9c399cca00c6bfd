//! The install as a platform team does it: the chart rendered by the real Helm engine,
//! applied with `kubectl apply --server-side` to the test kit's API server (which enforces
//! the rendered RBAC for the controller's ServiceAccount), the controller started from the
//! rendered Deployment's own args, env and volumes, against a nats-server that requires
//! credentials — and the shipped examples reconciled to Ready.
//!
//! Needs root (the pod runs in a private mount namespace); uses the controller's admin port
//! 9466 on the host.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::Value;
use support::controller::condition;
use support::tools::{render_chart, repo};
use umpire_api::eval_policy::EvalPolicy;
use umpire_api::trace_project::TraceProject;
use umpire_controller::rbac::{OWN_NAMESPACE, Options, WATCHED_NAMESPACES, triples};
use umpire_testkit::kubeapi::KubeApiServer;
use umpire_testkit::nats::NatsCluster;
use umpire_testkit::pod::PodProcess;
use umpire_testkit::wait::eventually;

const EVERY_OPTION: Options = Options {
    nats_credentials: true,
    worker_network_policies: true,
};
const WAIT: Duration = Duration::from_secs(60);
const PASSWORD: &str = "install-test-password";

fn kubectl(server: &KubeApiServer, args: &[&str]) -> String {
    let (ok, text) = server.kubectl(repo(), args).expect("kubectl is installed");
    assert!(ok, "kubectl {args:?}:\n{text}");
    text
}

fn ready(object: &Value) -> bool {
    condition(&object["status"], "Ready").is_some_and(|(status, _, _)| status == "True")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rendered_install_reconciles_the_examples_to_ready() {
    // This test's instruments are the test kit's: its pod runner stands in for the kubelet
    // and its API server records every request the controller's ServiceAccount makes. On a
    // real cluster (KUBECONFIG set) `tests/controller.rs` and `tests/gitops.rs` run instead.
    if support::cluster::real_cluster() {
        eprintln!(
            "KUBECONFIG is set: this test needs the test kit's API server and pod runner; skipped"
        );
        return;
    }
    // The examples ask for 3 stream replicas: a three-node JetStream cluster, as the
    // official NATS chart installs.
    let nats = NatsCluster::start(3, &["--user", "umpire", "--pass", PASSWORD]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    // One controller replica: pods share the host's network here, so two would both bind
    // the admin port.
    std::fs::write(
        &values,
        format!(
            "nats:\n  url: {}\n  auth: {{secretName: umpire-nats}}\ncontroller:\n  replicas: 1\nnetworkPolicy:\n  workers: {{enabled: true}}\n",
            nats.url()
        ),
    )
    .unwrap();
    let manifests = dir.path().join("umpire.yaml");
    std::fs::write(&manifests, render_chart(&[&values])).unwrap();

    let cluster = KubeApiServer::start().await.unwrap();
    let client = cluster.client();
    kubectl(
        &cluster,
        &[
            "apply",
            "--server-side",
            "-f",
            "manifests/install/namespace.yaml",
        ],
    );
    let applied = kubectl(
        &cluster,
        &["apply", "--server-side", "-f", manifests.to_str().unwrap()],
    );
    assert!(
        applied.contains("deployment.apps/umpire serverside-applied"),
        "{applied}"
    );
    assert!(applied.contains("clusterrole.rbac.authorization.k8s.io/umpire serverside-applied"));
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("umpire-nats".into()),
            namespace: Some("umpire-system".into()),
            ..Default::default()
        },
        data: Some(
            [("username", "umpire"), ("password", PASSWORD)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), "umpire-system")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    // The controller pod, exactly as the Deployment describes it, acting as its
    // ServiceAccount (RBAC enforced).
    let deployment: Deployment = Api::namespaced(client.clone(), "umpire-system")
        .get("umpire")
        .await
        .unwrap();
    let account = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.service_account_name.clone())
        .unwrap();
    let kubeconfig = cluster
        .service_account_kubeconfig("umpire-system", &account)
        .unwrap();
    let mut controller = PodProcess::start_with_env(
        &client,
        &deployment,
        "umpire-5d4f8b7c9-x2k4q",
        Path::new(env!("CARGO_BIN_EXE_umpire")),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    )
    .await
    .unwrap();

    // The Secrets the examples name, created by their owners with consent to be mounted.
    let hooks: &[(&str, &str)] = &[("team", "https://hooks.example.com/team"), ("hmac", "k3y")];
    for (name, data) in [
        ("openai", &[("api-key", "sk-test")][..]),
        ("judge-key", &[("api-key", "sk-test")][..]),
        ("pd", &[("routing-key", "R0UT1NG")][..]),
        ("hooks", hooks),
        ("otlp-token", &[("token", "t0ken")][..]),
    ] {
        support::create_consenting_secret(&client, "ml-apps", name, data).await;
    }
    kubectl(
        &cluster,
        &["apply", "--server-side", "-f", "manifests/examples/"],
    );
    let projects: Api<TraceProject> = Api::namespaced(client.clone(), "ml-apps");
    let policies: Api<EvalPolicy> = Api::namespaced(client.clone(), "ml-apps");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let mut all = Vec::new();
        if let Ok(project) = projects.get("support-bot").await {
            all.push(serde_json::to_value(project).unwrap());
        }
        for policy in policies.list(&Default::default()).await.unwrap().items {
            all.push(serde_json::to_value(policy).unwrap());
        }
        if all.len() == 3 && all.iter().all(ready) {
            break;
        }
        if std::time::Instant::now() > deadline {
            let logs = controller.logs();
            let tail: String = logs.chars().skip(logs.len().saturating_sub(6000)).collect();
            let statuses: Vec<_> = all.iter().map(|o| o["status"].clone()).collect();
            panic!("the examples did not become Ready: {statuses:#?}\ncontroller:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Workers get their copy of the NATS credentials.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "ml-apps");
    for name in [
        "support-bot-ingest-nats",
        "answer-quality-evaluator-nats",
        "agent-health-evaluator-nats",
    ] {
        let secret = secrets.get(name).await.unwrap();
        assert_eq!(
            secret.data.unwrap()["password"].0,
            PASSWORD.as_bytes(),
            "{name}"
        );
    }
    // … and a NetworkPolicy each.
    let policies_out = kubectl(
        &cluster,
        &["get", "networkpolicies", "-n", "ml-apps", "-o", "name"],
    );
    for name in [
        "support-bot-ingest",
        "answer-quality-evaluator",
        "agent-health-evaluator",
    ] {
        assert!(policies_out.contains(name), "{name}: {policies_out}");
    }
    let columns = kubectl(&cluster, &["get", "tp,ep", "-n", "ml-apps"]);
    assert!(columns.contains("support-bot"), "{columns}");

    // Deleting them runs the finalizers (stream cleanup in NATS) under the same RBAC.
    kubectl(
        &cluster,
        &["delete", "-f", "manifests/examples/", "--wait=false"],
    );
    eventually("the examples are gone", WAIT, || async {
        let left = projects.list(&Default::default()).await.ok()?.items.len()
            + policies.list(&Default::default()).await.ok()?.items.len();
        (left == 0).then_some(())
    })
    .await;

    // Every call the controller made was allowed by the rendered RBAC, and is in the list
    // the controller crate exports.
    let log = cluster.access_log();
    let user = format!("system:serviceaccount:umpire-system:{account}");
    let denied: Vec<_> = log.iter().filter(|a| !a.allowed).collect();
    assert!(
        denied.is_empty(),
        "denied: {denied:#?}\n{}",
        controller.logs()
    );
    let granted: BTreeSet<_> = triples(WATCHED_NAMESPACES, EVERY_OPTION)
        .into_iter()
        .chain(triples(OWN_NAMESPACE, EVERY_OPTION))
        .collect();
    let used: BTreeSet<_> = log
        .iter()
        .filter(|a| a.user == user)
        .map(|a| {
            (
                a.attributes.group.clone(),
                a.attributes.resource.clone(),
                a.attributes.verb.clone(),
            )
        })
        .collect();
    assert!(
        !used.is_empty(),
        "the controller made no requests as {user}"
    );
    assert!(used.is_subset(&granted), "{:?}", used.difference(&granted));

    controller.terminate();
    assert!(controller.exited());
    let logs = controller.logs();
    assert!(logs.contains("controller_stopped"), "{logs}");
    assert!(!logs.contains(PASSWORD));
}
