//! A Kubernetes API server emulator: an in-process HTTP server speaking enough of the
//! Kubernetes REST API for kube-rs (client and kube-runtime) and `kubectl`:
//!
//! - discovery (`/version`, `/api`, `/apis`, group/version resource lists, CRDs served as
//!   soon as they are created, and `Established`);
//! - list with `resourceVersion`, label and field selectors, `limit` / `continue`;
//! - watch from a version (replaying the bounded history), bookmarks, `410 Gone` for
//!   versions older than the history, `timeoutSeconds`;
//! - create / get / update (`409` on a stale `resourceVersion`) / delete, `generation` bumped
//!   on spec changes only, the `/status` subresource, no-op writes that change nothing;
//! - merge, JSON (incl. `test`) and server-side apply patches with `managedFields`
//!   (see [`fields`] for the simplifications), strategic merge treated as merge;
//! - finalizers and `deletionTimestamp`; ownerReference garbage collection (background, or
//!   orphan); namespace deletion removes its objects;
//! - a Deployment controller stand-in that reports ready replicas (switchable).
//!
//! - ServiceAccount tokens and RBAC authorisation ([`authz`]); requests without a token act
//!   as the cluster admin.
//!
//! Not emulated: other authentication, admission (CRD schemas and CEL rules are
//! not enforced — `umpire check` and the controller's own validation cover them), defaulting,
//! list-type-aware merges, `dryRun`, protobuf, aggregated discovery (clients fall back).

pub mod authz;
mod events;
pub mod fields;
mod http;
mod protobuf;
pub mod select;
pub mod store;
mod table;
pub mod types;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use http::Access;
pub use store::WriteRecord;

/// Knobs for behaviours tests need to provoke.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Changes kept for watches; a watch from an older version gets `410 Gone`.
    pub history_limit: usize,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// The address to listen on (a port is picked): loopback, or a pod network's gateway
    /// so pods in their own network namespaces reach the API.
    pub listen: std::net::IpAddr,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            history_limit: 100_000,
            bookmark_interval: Duration::from_secs(5),
            listen: std::net::IpAddr::from([127, 0, 0, 1]),
        }
    }
}

/// A running emulator on a loopback port; stops when dropped.
pub struct KubeApiServer {
    shared: Arc<http::Shared>,
    address: SocketAddr,
    task: JoinHandle<()>,
    dir: tempfile::TempDir,
}

impl KubeApiServer {
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(EmulatorOptions::default()).await
    }

    pub async fn start_with(options: EmulatorOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind((options.listen, 0)).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(http::Shared {
            store: Mutex::new(store::Store::new(options.history_limit)),
            address: address.to_string(),
            bookmark_interval: options.bookmark_interval,
            access_log: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            // Serving ends only when the task is aborted on drop.
            let _ = axum::serve(listener, app).await;
        });
        let dir = tempfile::tempdir()?;
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: http://{address}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n    namespace: default\ncurrent-context: emulator\nusers:\n- name: emulator\n  user: {{}}\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig)?;
        Ok(Self {
            shared,
            address,
            task,
            dir,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig file pointing at the emulator (namespace `default`), for kubectl and for
    /// processes under test (`KUBECONFIG`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A kubeconfig whose user is the ServiceAccount `namespace/name`: requests made with it
    /// are authorised against the RBAC objects stored in the emulator.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> std::io::Result<PathBuf> {
        let token = authz::ServiceAccount {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
        .token();
        let path = self
            .dir
            .path()
            .join(format!("kubeconfig-{namespace}-{name}"));
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: http://{}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: sa\n    namespace: {namespace}\ncurrent-context: emulator\nusers:\n- name: sa\n  user:\n    token: \"{token}\"\n",
            self.address
        );
        std::fs::write(&path, kubeconfig)?;
        Ok(path)
    }

    /// Runs `kubectl ARGS` against the emulator from `workdir`; `(succeeded, stdout+stderr)`.
    pub fn kubectl(&self, workdir: &Path, args: &[&str]) -> std::io::Result<(bool, String)> {
        let output = std::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            // kubectl caches discovery under $HOME; a private one per emulator.
            .env("HOME", self.kubeconfig_dir())
            .current_dir(workdir)
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok((output.status.success(), text))
    }

    /// Every request made as a ServiceAccount so far, allowed or not.
    pub fn access_log(&self) -> Vec<Access> {
        self.shared
            .access_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A kube client talking to the emulator.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(
            self.url()
                .parse()
                .unwrap_or_else(|_| unreachable!("a socket address always makes a valid URL")),
        );
        config.default_namespace = "default".into();
        kube::Client::try_from(config).unwrap_or_else(|e| {
            unreachable!("a plain-HTTP client config cannot fail to build: {e}")
        })
    }

    fn store(&self) -> std::sync::MutexGuard<'_, store::Store> {
        self.shared.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on Deployment status comes from a [`crate::pod_runner::PodRunner`], not
    /// from the stand-in.
    pub fn stop_simulating_deployments(&self) {
        self.store().stop_simulating_deployments();
    }

    /// Whether simulated Deployments report ready pods (default true).
    pub fn set_deployments_ready(&self, ready: bool) {
        self.store().set_deployments_ready(ready);
    }

    /// Every successful write so far (who changed what).
    pub fn writes(&self) -> Vec<WriteRecord> {
        self.store().writes().to_vec()
    }

    pub fn resource_version(&self) -> u64 {
        self.store().current_rv()
    }

    pub fn kubeconfig_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
