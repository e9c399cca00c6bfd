//! What the controller's end-to-end tests share: the controller process, the resources
//! they create, and waits on conditions.

use std::path::Path;
use std::time::Duration;

use kube::Resource;
use kube::api::Api;
use serde_json::{Value, json};
use umpire_api::eval_policy::EvalPolicy;
use umpire_api::trace_project::TraceProject;
use umpire_testkit::nats::NatsServer;
use umpire_testkit::wait::eventually;

use super::cluster::Cluster;
use super::{UmpireProcess, create_namespace, free_port, install_crds};

pub const WAIT: Duration = Duration::from_secs(30);

pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

pub struct Controller {
    pub process: UmpireProcess,
    pub admin: u16,
}

impl Controller {
    pub fn start(
        cluster: &Cluster,
        nats: &NatsServer,
        identity: &str,
        lease_ns: &str,
        extra: &[&str],
    ) -> Self {
        let admin = free_port();
        let admin_listen = format!("127.0.0.1:{admin}");
        let image = std::env::var("UMPIRE_IMAGE").unwrap_or_else(|_| "umpire:e2e".into());
        let nats_url = nats.url();
        let mut args = vec![
            "controller",
            "--nats-url",
            &nats_url,
            "--image",
            &image,
            "--admin-listen",
            &admin_listen,
            "--lease-namespace",
            lease_ns,
            "--lease-seconds",
            "3",
            "--identity",
            identity,
        ];
        args.extend_from_slice(extra);
        let kubeconfig = cluster.kubeconfig();
        let process = UmpireProcess::spawn_with_env(
            &args,
            repo(),
            &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
        );
        Self { process, admin }
    }

    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        super::metric(self.admin, name, labels).await
    }
}

pub fn condition(status: &Value, type_: &str) -> Option<(String, String, String)> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

/// Waits until the object's `Ready` condition has this reason; returns the object.
pub async fn wait_reason<K>(api: &Api<K>, name: &str, reason: &str) -> K
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let what = format!("{name} Ready reason {reason}");
    eventually(&what, WAIT, || async {
        let object = api.get_opt(name).await.ok().flatten()?;
        let value = serde_json::to_value(&object).ok()?;
        let (_, r, _) = condition(&value["status"], "Ready")?;
        (r == reason).then_some(object)
    })
    .await
}

pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{name} is deleted"), WAIT, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await
}

pub fn project(name: &str, ns: &str, ingest: Value) -> TraceProject {
    serde_json::from_value(json!({
        "apiVersion": "umpire.dev/v1alpha1", "kind": "TraceProject",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ingest": ingest, "stream": {"maxAge": "24h", "maxBytes": "64Mi"},
                 "sampling": {"decisionWait": "1s"}},
    }))
    .unwrap()
}

pub fn policy(name: &str, ns: &str, project: &str) -> EvalPolicy {
    serde_json::from_value(json!({
        "apiVersion": "umpire.dev/v1alpha1", "kind": "EvalPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "projectRef": {"name": project},
            "evaluator": {"replicas": 2},
            "judges": [
                {"name": "fast", "latency": {"maxMs": 2000}},
                {"name": "grounded", "llm": {"template": "groundedness", "endpoint": "http://judge:8000/v1",
                  "model": "m", "apiKeySecretRef": {"name": "judge-key", "key": "api-key"},
                  "choices": {"grounded": 1.0, "ungrounded": 0.0}}}
            ],
            "alerts": [{"name": "slow", "metric": {"latency": "p95"}, "window": "5m",
                        "condition": {"above": 3000}, "severity": "warning", "route": "pd"}],
            "routes": [{"name": "pd", "pagerDuty": {"routingKeySecretRef": {"name": "pd", "key": "routing-key"}}}]
        },
    }))
    .unwrap()
}

pub async fn stream_names(nats: &NatsServer) -> Vec<String> {
    use futures::TryStreamExt;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.stream_names().try_collect().await.unwrap()
}

pub async fn consumer_exists(nats: &NatsServer, stream: &str, consumer: &str) -> bool {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stream = js.get_stream(stream).await.unwrap();
    stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(consumer)
        .await
        .is_ok()
}

/// A cluster with the CRDs, a namespace for the test (and the controller's), a nats-server.
pub struct Setup {
    pub cluster: Cluster,
    pub client: kube::Client,
    pub nats: NatsServer,
    pub ns: String,
}

impl Setup {
    pub async fn new(namespace: &str) -> Self {
        let cluster = Cluster::start().await;
        let client = cluster.client().await;
        let nats = NatsServer::start().unwrap();
        install_crds(&client).await;
        let ns = cluster.namespace(namespace);
        create_namespace(&client, &ns).await;
        create_namespace(&client, "umpire-system").await;
        super::create_referenced_secrets(&client, &ns).await;
        Self {
            cluster,
            client,
            nats,
            ns,
        }
    }
}
