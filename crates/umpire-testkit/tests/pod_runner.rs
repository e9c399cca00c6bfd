#![allow(clippy::unwrap_used)]
//! The pod runner as the kubelet and Deployment controller of the test kit: replicas in
//! their own network namespaces binding the same port, readiness from the probe written back
//! as Deployment status, scaling, a rollout on a template change, restarts, deletion.
//! Needs root (network and mount namespaces).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use umpire_testkit::kubeapi::KubeApiServer;
use umpire_testkit::netns::PodNetwork;
use umpire_testkit::pod_runner::{PodRunner, RunnerOptions};
use umpire_testkit::wait::eventually;

const WAIT: Duration = Duration::from_secs(30);

/// A web server on :8080 in every replica (`python3 -m http.server`), ready when it serves.
fn deployment(replicas: i32, version: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web",
                    "image": "python",
                    "command": ["python3", "-m", "http.server", "8080", "--directory", "/srv"],
                    "env": [{"name": "VERSION", "value": version}],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                    "volumeMounts": [{"name": "site", "mountPath": "/srv"}],
                }],
                "volumes": [{"name": "site", "emptyDir": {}}]},
            },
        },
    }))
    .unwrap()
}

async fn ready_replicas(api: &Api<Deployment>) -> (i32, i32) {
    let status = api.get("web").await.unwrap().status.unwrap_or_default();
    (
        status.ready_replicas.unwrap_or(0),
        status.updated_replicas.unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_run_scale_roll_out_and_stop() {
    let network = Arc::new(PodNetwork::create().unwrap());
    let server = KubeApiServer::start().await.unwrap();
    server.stop_simulating_deployments();
    let client = server.client();
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &deployment(2, "1"))
        .await
        .unwrap();
    let runner = PodRunner::start(
        client,
        RunnerOptions {
            entrypoint: PathBuf::from("/bin/true"),
            namespaces: vec!["default".into()],
            extra_env: BTreeMap::new(),
            network: Some(network),
            period: Duration::from_millis(100),
        },
    );

    // Two replicas on the same port, each at its own address; status says so.
    eventually("2 ready replicas in the status", WAIT, || async {
        (ready_replicas(&api).await == (2, 2)).then_some(())
    })
    .await;
    let pods = runner.pods("default", "web");
    assert_eq!(pods.len(), 2);
    assert_ne!(pods[0].ip, pods[1].ip);
    for pod in &pods {
        let url = format!("http://{}:8080/", pod.ip.unwrap());
        assert!(reqwest::get(&url).await.unwrap().status().is_success());
    }

    // Scale up.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    eventually("3 ready replicas", WAIT, || async {
        (ready_replicas(&api).await == (3, 3)).then_some(())
    })
    .await;

    // A template change rolls out: new pods replace the old ones.
    let before: Vec<String> = runner
        .pods("default", "web")
        .into_iter()
        .map(|p| p.name)
        .collect();
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
            deployment(3, "2").spec.unwrap().template.spec.unwrap().containers[0]
        ]}}}})),
    )
    .await
    .unwrap();
    eventually("the rollout replaced every pod", WAIT, || async {
        let pods = runner.pods("default", "web");
        (pods.len() == 3
            && pods.iter().all(|p| p.ready && !before.contains(&p.name))
            && ready_replicas(&api).await == (3, 3))
            .then_some(())
    })
    .await;
    let logs = runner.logs("default", "web");
    assert!(logs.contains("(stopped)"), "{logs}");

    // Scale to zero and delete: nothing keeps running.
    api.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("the pods are gone", WAIT, || async {
        runner.pods("default", "web").is_empty().then_some(())
    })
    .await;
    assert!(runner.problems().is_empty(), "{:?}", runner.problems());
    runner.shutdown().await;
}
