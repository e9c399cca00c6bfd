//! One Deployment's pass: restart exited containers, probe readiness, start a surge pod,
//! stop surplus and superseded pods, and write the status back.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::{PodView, RunnerOptions, RunnerState, RunningPod, lock};
use crate::netns::PodAddress;
use crate::pod::PodProcess;

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

pub(super) async fn reconcile(
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
    let views = pods
        .iter()
        .map(|p| PodView {
            name: p.name.clone(),
            ip: p.address.as_ref().map(|a| a.ip),
            ready: p.ready,
            restarts: p.restarts,
            current: p.template == template,
        })
        .collect();
    lock(state).views.insert(key.clone(), views);
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

pub(super) async fn stop_pod(
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
