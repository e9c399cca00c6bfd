//! Runs one replica of a Deployment's pod the way a kubelet would: the container's command,
//! args and env (field references resolved), its ConfigMap, Secret and emptyDir volumes
//! written out and mounted at their `mountPath`s in a private mount namespace (the process
//! sees `/etc/umpire/config.yaml` where the pod would, and the host sees nothing), logs kept.
//!
//! Needs root (`unshare --mount`, overlay and bind mounts). The pod shares the host's
//! network unless started in a network namespace ([`PodProcess::start_in`]; the
//! [`crate::pod_runner::PodRunner`] gives each pod one).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, KeyToPath, Secret, Volume};
use kube::Api;
use tempfile::TempDir;

mod mounts;

use mounts::{IMAGE_ENTRYPOINT, mount_script};

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("the Deployment has no {0}")]
    Missing(&'static str),
    #[error("volume {0} is not defined in the pod")]
    UnknownVolume(String),
    #[error("volume {0}: only configMap, secret and emptyDir volumes are supported")]
    UnsupportedVolume(String),
    #[error("env {0}: {1}")]
    Env(String, String),
    #[error("reading {what}: {source}")]
    Kube { what: String, source: kube::Error },
    #[error("{what}: key {key} not found")]
    MissingKey { what: String, key: String },
    #[error("preparing the pod's files: {0}")]
    Io(#[from] std::io::Error),
}

/// A running pod replica; killed on drop.
pub struct PodProcess {
    child: Option<Child>,
    root: TempDir,
    pub name: String,
}

impl PodProcess {
    /// Starts replica `pod_name` of `deployment`, whose image entrypoint is `entrypoint`
    /// (used when the container sets no `command`).
    pub async fn start(
        client: &kube::Client,
        deployment: &Deployment,
        pod_name: &str,
        entrypoint: &Path,
    ) -> Result<Self, PodError> {
        Self::start_with_env(client, deployment, pod_name, entrypoint, &[]).await
    }

    /// Like [`start`](Self::start), with variables a kubelet would add (`KUBECONFIG` in
    /// place of the in-cluster service account, which needs TLS the emulator does not speak).
    pub async fn start_with_env(
        client: &kube::Client,
        deployment: &Deployment,
        pod_name: &str,
        entrypoint: &Path,
        extra_env: &[(&str, &str)],
    ) -> Result<Self, PodError> {
        Self::start_in(client, deployment, pod_name, entrypoint, extra_env, None).await
    }

    /// Like [`start_with_env`](Self::start_with_env), in the network namespace `netns`
    /// (`/run/netns/<netns>`, see [`crate::netns::PodNetwork`]) instead of the host's.
    pub async fn start_in(
        client: &kube::Client,
        deployment: &Deployment,
        pod_name: &str,
        entrypoint: &Path,
        extra_env: &[(&str, &str)],
        netns: Option<&str>,
    ) -> Result<Self, PodError> {
        let namespace = deployment
            .metadata
            .namespace
            .clone()
            .ok_or(PodError::Missing("namespace"))?;
        let template = &deployment
            .spec
            .as_ref()
            .ok_or(PodError::Missing("spec"))?
            .template;
        let pod = template
            .spec
            .as_ref()
            .ok_or(PodError::Missing("pod spec"))?;
        let container = pod
            .containers
            .first()
            .ok_or(PodError::Missing("container"))?;
        let root = tempfile::Builder::new().prefix("umpire-pod-").tempdir()?;
        let volumes = pod.volumes.clone().unwrap_or_default();
        let mut mounts = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let volume = volumes
                .iter()
                .find(|v| v.name == mount.name)
                .ok_or_else(|| PodError::UnknownVolume(mount.name.clone()))?;
            let dir = root.path().join("volumes").join(&volume.name);
            materialise(client, &namespace, volume, &dir).await?;
            mounts.push((dir, PathBuf::from(&mount.mount_path)));
        }
        let env = environment(client, &namespace, pod_name, container).await?;
        let mut argv: Vec<String> = match &container.command {
            Some(command) => command.clone(),
            None => vec![IMAGE_ENTRYPOINT.to_owned()],
        };
        argv.extend(container.args.clone().unwrap_or_default());
        let script = mount_script(root.path(), entrypoint, &mounts);
        let log = std::fs::File::create(root.path().join("pod.log"))?;
        // `--pdeathsig`: a test process that dies without unwinding takes its pods along
        // (the signal follows the thread that started them, a runtime worker here).
        let mut command = Command::new("setpriv");
        command.args(["--pdeathsig", "KILL", "--"]);
        if let Some(netns) = netns {
            command.args(["nsenter", &format!("--net=/run/netns/{netns}"), "--"]);
        }
        let child = command
            .arg("unshare")
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(format!("{script}exec \"$@\""))
            .arg("pod")
            .args(&argv)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(env)
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Self {
            child: Some(child),
            root,
            name: pod_name.to_owned(),
        })
    }

    /// The file the pod's output goes to.
    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("pod.log")
    }

    /// Everything the pod printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.root.path().join("pod.log")).unwrap_or_default()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    /// SIGTERM, then wait for the exit (what a kubelet does on pod deletion).
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for PodProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn materialise(
    client: &kube::Client,
    namespace: &str,
    volume: &Volume,
    dir: &Path,
) -> Result<(), PodError> {
    std::fs::create_dir_all(dir)?;
    if volume.empty_dir.is_some() {
        return Ok(());
    }
    let (data, items, mode, what) = if let Some(source) = &volume.config_map {
        let what = format!("ConfigMap {namespace}/{}", source.name);
        let cm = get::<ConfigMap>(client, namespace, &source.name, &what).await?;
        let data: BTreeMap<String, Vec<u8>> = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        (
            data,
            source.items.clone(),
            source.default_mode.unwrap_or(0o644),
            what,
        )
    } else if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        let what = format!("Secret {namespace}/{name}");
        let secret = get::<Secret>(client, namespace, &name, &what).await?;
        let data = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        (
            data,
            source.items.clone(),
            source.default_mode.unwrap_or(0o644),
            what,
        )
    } else {
        return Err(PodError::UnsupportedVolume(volume.name.clone()));
    };
    let items: Vec<KeyToPath> = items.unwrap_or_else(|| {
        data.keys()
            .map(|k| KeyToPath {
                key: k.clone(),
                path: k.clone(),
                mode: None,
            })
            .collect()
    });
    for item in items {
        let bytes = data.get(&item.key).ok_or_else(|| PodError::MissingKey {
            what: what.clone(),
            key: item.key.clone(),
        })?;
        let path = dir.join(&item.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
        let mode = item.mode.unwrap_or(mode) as u32;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

async fn get<K>(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    what: &str,
) -> Result<K, PodError>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|source| PodError::Kube {
            what: what.to_owned(),
            source,
        })
}

async fn environment(
    client: &kube::Client,
    namespace: &str,
    pod_name: &str,
    container: &Container,
) -> Result<Vec<(String, String)>, PodError> {
    let mut env = Vec::new();
    for var in container.env.iter().flatten() {
        env.push((
            var.name.clone(),
            value(client, namespace, pod_name, var).await?,
        ));
    }
    Ok(env)
}

async fn value(
    client: &kube::Client,
    namespace: &str,
    pod_name: &str,
    var: &EnvVar,
) -> Result<String, PodError> {
    let Some(from) = &var.value_from else {
        return Ok(var.value.clone().unwrap_or_default());
    };
    if let Some(field) = &from.field_ref {
        return match field.field_path.as_str() {
            "metadata.name" => Ok(pod_name.to_owned()),
            "metadata.namespace" => Ok(namespace.to_owned()),
            other => Err(PodError::Env(
                var.name.clone(),
                format!("field {other} is not supported"),
            )),
        };
    }
    if let Some(key) = &from.config_map_key_ref {
        let what = format!("ConfigMap {namespace}/{}", key.name);
        let cm = get::<ConfigMap>(client, namespace, &key.name, &what).await?;
        return cm
            .data
            .and_then(|d| d.get(&key.key).cloned())
            .ok_or(PodError::MissingKey {
                what,
                key: key.key.clone(),
            });
    }
    if let Some(key) = &from.secret_key_ref {
        let what = format!("Secret {namespace}/{}", key.name);
        let secret = get::<Secret>(client, namespace, &key.name, &what).await?;
        return secret
            .data
            .and_then(|d| d.get(&key.key).cloned())
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .ok_or(PodError::MissingKey {
                what,
                key: key.key.clone(),
            });
    }
    Err(PodError::Env(
        var.name.clone(),
        "unsupported valueFrom".into(),
    ))
}
