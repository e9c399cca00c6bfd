//! The kubelet and Deployment controller of the test kit: watches Deployments in the given
//! namespaces and runs each replica as a [`PodProcess`] — the container's command, args,
//! env and volumes — in a network namespace of its own ([`PodNetwork`]), probes the
//! container's `readinessProbe` (HTTP GET) and writes the Deployment's status back as the
//! real controller does; scales, rolls out template changes (one surge pod at a time, an
//! old pod stopped only when a new one is ready), restarts exited containers, and keeps
//! every pod's log.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::netns::{PodAddress, PodNetwork};
use crate::pod::PodProcess;

mod reconcile;

use reconcile::{reconcile, stop_pod};

#[derive(Clone)]
pub struct RunnerOptions {
    /// The image's entrypoint (the `umpire` binary under test).
    pub entrypoint: PathBuf,
    /// Namespaces whose Deployments run.
    pub namespaces: Vec<String>,
    /// Variables a kubelet would add, per Deployment name (`*`: every pod) — e.g.
    /// `KUBECONFIG` in place of the mounted service-account token.
    pub extra_env: BTreeMap<String, Vec<(String, String)>>,
    /// `None`: pods share the host's network (one replica per port).
    pub network: Option<Arc<PodNetwork>>,
    pub period: Duration,
}

/// What a test sees of a pod.
#[derive(Debug, Clone)]
pub struct PodView {
    pub name: String,
    pub ip: Option<IpAddr>,
    pub ready: bool,
    pub restarts: u32,
    /// Runs the Deployment's current template.
    pub current: bool,
}

struct RunningPod {
    name: String,
    template: u64,
    process: PodProcess,
    address: Option<PodAddress>,
    ready: bool,
    restarts: u32,
    /// Logs of earlier runs of this pod's container (before restarts).
    earlier_logs: String,
}

#[derive(Default)]
struct RunnerState {
    /// The pods of each Deployment; taken out while a reconcile pass works on them.
    pods: BTreeMap<(String, String), Vec<RunningPod>>,
    /// What [`PodRunner::pods`] shows: written at the end of each pass, before the status,
    /// so a reader never catches a Deployment mid-pass with no pods (one did, in CI: the
    /// status said 2 ready while the pods were out being probed).
    views: BTreeMap<(String, String), Vec<PodView>>,
    /// Logs of pods already stopped, per Deployment.
    finished_logs: BTreeMap<(String, String), String>,
    problems: Vec<String>,
}

pub struct PodRunner {
    state: Arc<Mutex<RunnerState>>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

fn lock(state: &Mutex<RunnerState>) -> MutexGuard<'_, RunnerState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl PodRunner {
    pub fn start(client: kube::Client, options: RunnerOptions) -> Self {
        let state = Arc::new(Mutex::new(RunnerState::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(client, options, state.clone(), stop.clone()));
        Self {
            state,
            stop,
            task: Some(task),
        }
    }

    pub fn pods(&self, namespace: &str, deployment: &str) -> Vec<PodView> {
        lock(&self.state)
            .views
            .get(&(namespace.to_owned(), deployment.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// Every log line the Deployment's pods printed, stopped pods included.
    pub fn logs(&self, namespace: &str, deployment: &str) -> String {
        let state = lock(&self.state);
        let key = (namespace.to_owned(), deployment.to_owned());
        let mut text = state.finished_logs.get(&key).cloned().unwrap_or_default();
        for pod in state.pods.get(&key).into_iter().flatten() {
            text.push_str(&format!(
                "--- pod {}\n{}{}",
                pod.name,
                pod.earlier_logs,
                pod.process.logs()
            ));
        }
        text
    }

    /// Why pods could not be started (volumes missing, bad env…), newest last.
    pub fn problems(&self) -> Vec<String> {
        lock(&self.state).problems.clone()
    }

    /// Stops reconciling and terminates every pod (SIGTERM, then waits).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let pods = std::mem::take(&mut lock(&self.state).pods);
        tokio::task::spawn_blocking(move || {
            for mut pod in pods.into_values().flatten() {
                pod.process.terminate();
            }
        })
        .await
        .ok();
    }
}

impl Drop for PodRunner {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(
    client: kube::Client,
    options: RunnerOptions,
    state: Arc<Mutex<RunnerState>>,
    stop: CancellationToken,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .no_proxy()
        .build()
        .unwrap_or_default();
    loop {
        let mut seen = Vec::new();
        for namespace in &options.namespaces {
            let api = Api::<Deployment>::namespaced(client.clone(), namespace);
            let Ok(list) = api.list(&ListParams::default()).await else {
                continue;
            };
            for deployment in list.items {
                let name = deployment.metadata.name.clone().unwrap_or_default();
                if deployment.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                seen.push((namespace.clone(), name.clone()));
                reconcile(&client, &options, &state, &http, &deployment).await;
            }
        }
        // Deployments that are gone: their pods stop.
        let gone: Vec<(String, String)> = lock(&state)
            .pods
            .keys()
            .filter(|k| !seen.contains(k))
            .cloned()
            .collect();
        for key in gone {
            let pods = lock(&state).pods.remove(&key).unwrap_or_default();
            lock(&state).views.remove(&key);
            for pod in pods {
                stop_pod(&options, &state, &key, pod).await;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(options.period) => {}
        }
    }
}
