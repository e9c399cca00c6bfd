//! The kubelet and Deployment controller of the test kit: watches Deployments in the given
//! namespaces and runs each replica as a [`PodProcess`] — the container's command, args,
//! env and volumes — in a network namespace of its own ([`PodNetwork`]), probes the
//! container's `readinessProbe` (HTTP GET) and writes the Deployment's status back as the
//! real controller does; scales, rolls out template changes (one surge pod at a time, an
//! old pod stopped only when a new one is ready), restarts exited containers, and keeps
//! every pod's log.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::netns::{PodAddress, PodNetwork};
use crate::pod::PodProcess;

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
    pods: BTreeMap<(String, String), Vec<RunningPod>>,
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
        let state = lock(&self.state);
        let key = (namespace.to_owned(), deployment.to_owned());
        let newest = state
            .pods
            .get(&key)
            .and_then(|pods| pods.last().map(|p| p.template));
        state
            .pods
            .get(&key)
            .map(|pods| {
                pods.iter()
                    .map(|p| PodView {
                        name: p.name.clone(),
                        ip: p.address.as_ref().map(|a| a.ip),
                        ready: p.ready,
                        restarts: p.restarts,
                        current: Some(p.template) == newest,
                    })
                    .collect()
            })
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

fn template_hash(deployment: &Deployment) -> u64 {
    let template = deployment
        .spec
        .as_ref()
        .map(|s| serde_json::to_string(&s.template).unwrap_or_default())
        .unwrap_or_default();
    let mut hasher = DefaultHasher::new();
    template.hash(&mut hasher);
    hasher.finish()
}

async fn reconcile(
    client: &kube::Client,
    options: &RunnerOptions,
    state: &Arc<Mutex<RunnerState>>,
    http: &reqwest::Client,
    deployment: &Deployment,
) {
    let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let key = (namespace.clone(), name.clone());
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize;
    let template = template_hash(deployment);
    let mut pods = lock(state).pods.remove(&key).unwrap_or_default();

    // Exited containers restart, as with restartPolicy Always.
    for pod in &mut pods {
        if pod.process.exited() {
            let logs = pod.process.logs();
            match launch(client, options, deployment, &pod.name, pod.address.as_ref()).await {
                Ok(process) => {
                    pod.earlier_logs.push_str(&logs);
                    pod.process = process;
                    pod.restarts += 1;
                    pod.ready = false;
                }
                Err(problem) => lock(state).problems.push(problem),
            }
        }
    }
    // Readiness.
    let probe = readiness_probe(deployment);
    for pod in &mut pods {
        pod.ready = match &probe {
            None => !pod.process.exited(),
            Some((path, port)) => {
                let host = pod
                    .address
                    .as_ref()
                    .map_or_else(|| "127.0.0.1".to_owned(), |a| a.ip.to_string());
                http.get(format!("http://{host}:{port}{path}"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success() || r.status().is_redirection())
            }
        };
    }
    let current = pods.iter().filter(|p| p.template == template).count();
    if current < desired {
        // One new pod per pass: a surge of one.
        let pod_name = format!("{name}-{:06x}-{:05x}", template & 0xff_ffff, rand_suffix());
        let address = match &options.network {
            Some(network) => match network.add_pod() {
                Ok(address) => Some(address),
                Err(e) => {
                    lock(state).problems.push(format!("{pod_name}: {e}"));
                    None
                }
            },
            None => None,
        };
        if options.network.is_none() || address.is_some() {
            match launch(client, options, deployment, &pod_name, address.as_ref()).await {
                Ok(process) => pods.push(RunningPod {
                    name: pod_name,
                    template,
                    process,
                    address,
                    ready: false,
                    restarts: 0,
                    earlier_logs: String::new(),
                }),
                Err(problem) => {
                    if let (Some(network), Some(address)) = (&options.network, &address) {
                        network.remove_pod(&address.netns);
                    }
                    lock(state).problems.push(problem);
                }
            }
        }
    }
    // Scale down / roll out: keep `desired` current pods, and old pods only while the
    // current ones are not all ready.
    let mut keep = Vec::new();
    let mut stopping = Vec::new();
    let mut current_kept = 0;
    for pod in pods.into_iter().rev() {
        if pod.template == template && current_kept < desired {
            current_kept += 1;
            keep.push(pod);
        } else if pod.template != template {
            keep.push(pod);
        } else {
            stopping.push(pod);
        }
    }
    keep.reverse();
    let ready_current = keep
        .iter()
        .filter(|p| p.template == template && p.ready)
        .count();
    let mut old_allowed = desired.saturating_sub(ready_current);
    let mut pods = Vec::new();
    for pod in keep {
        if pod.template == template {
            pods.push(pod);
        } else if old_allowed > 0 {
            old_allowed -= 1;
            pods.push(pod);
        } else {
            stopping.push(pod);
        }
    }
    write_status(client, deployment, &pods, template).await;
    lock(state).pods.insert(key.clone(), pods);
    for pod in stopping {
        stop_pod(options, state, &key, pod).await;
    }
}

fn rand_suffix() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(nanos) & 0xf_ffff
}

async fn launch(
    client: &kube::Client,
    options: &RunnerOptions,
    deployment: &Deployment,
    pod_name: &str,
    address: Option<&PodAddress>,
) -> Result<PodProcess, String> {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let env: Vec<(String, String)> = options
        .extra_env
        .get("*")
        .into_iter()
        .chain(options.extra_env.get(&name))
        .flatten()
        .cloned()
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    PodProcess::start_in(
        client,
        deployment,
        pod_name,
        &options.entrypoint,
        &env,
        address.map(|a| a.netns.as_str()),
    )
    .await
    .map_err(|e| format!("{pod_name}: {e}"))
}

async fn stop_pod(
    options: &RunnerOptions,
    state: &Arc<Mutex<RunnerState>>,
    key: &(String, String),
    mut pod: RunningPod,
) {
    let pod = tokio::task::spawn_blocking(move || {
        pod.process.terminate();
        pod
    })
    .await;
    if let Ok(pod) = pod {
        let logs = format!(
            "--- pod {} (stopped)\n{}{}",
            pod.name,
            pod.earlier_logs,
            pod.process.logs()
        );
        lock(state)
            .finished_logs
            .entry(key.clone())
            .or_default()
            .push_str(&logs);
        if let (Some(network), Some(address)) = (&options.network, &pod.address) {
            network.remove_pod(&address.netns);
        }
    }
}

/// `(path, port)` of the first container's HTTP readiness probe (named ports resolved).
fn readiness_probe(deployment: &Deployment) -> Option<(String, u16)> {
    let container = deployment
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?;
    let get = container.readiness_probe.as_ref()?.http_get.as_ref()?;
    let port = match &get.port {
        IntOrString::Int(port) => u16::try_from(*port).ok()?,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())?,
    };
    Some((get.path.clone().unwrap_or_else(|| "/".into()), port))
}

async fn write_status(
    client: &kube::Client,
    deployment: &Deployment,
    pods: &[RunningPod],
    template: u64,
) {
    let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let ready = pods.iter().filter(|p| p.ready).count() as i32;
    let updated = pods.iter().filter(|p| p.template == template).count() as i32;
    let available = ready >= desired;
    let status = json!({
        "observedGeneration": deployment.metadata.generation,
        "replicas": pods.len(),
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": (desired - ready).max(0),
        "conditions": [{
            "type": "Available",
            "status": if available { "True" } else { "False" },
            "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
        }],
    });
    let existing = serde_json::to_value(&deployment.status).unwrap_or_default();
    if existing == status {
        return;
    }
    let api = Api::<Deployment>::namespaced(client.clone(), &namespace);
    let _ = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await;
}
