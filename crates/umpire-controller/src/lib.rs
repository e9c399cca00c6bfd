//! The Umpire operator: reconciles TraceProjects into ingest workers and span streams, and
//! EvalPolicies into evaluator workers and durable consumers.
//!
//! Shape: [`children`] computes desired objects as pure functions; [`project`] and
//! [`policy`] apply them with server-side apply (one field manager), prune the rest by
//! label, manage JetStream, and write status only when it changes. Only the replica holding
//! the `coordination.k8s.io` Lease reconciles.

pub mod apply;
pub mod children;
pub mod consent;
pub mod context;
pub mod exports;
pub mod metrics;
pub mod policy;
pub mod project;
pub mod rbac;
pub mod status;
pub mod streams;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::runtime::events::{Recorder, Reporter};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use umpire_api::validate::Validator;
use umpire_nats::connect::NatsSettings;
use umpire_runtime::admin::AdminServer;
use umpire_runtime::readiness::Readiness;

use crate::context::Shared;
use crate::metrics::ControllerMetrics;

/// Lease-based leader election settings.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    pub namespace: String,
    pub lease_name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// Seconds a lease is valid without renewal.
    pub lease_seconds: u64,
}

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// NATS as the controller reaches it (also rendered into the workers' configs).
    pub nats: NatsSettings,
    /// The image workers run.
    pub image: String,
    pub admin_listen: SocketAddr,
    /// `None` runs without election (a single replica, or tests).
    pub leader_election: Option<LeaderElection>,
    pub cleanup_timeout: Duration,
    /// How often `status.firingAlerts` of policies with alert rules is refreshed.
    pub alert_status_interval: Duration,
    /// Namespaces to watch; empty watches the whole cluster.
    pub watch_namespaces: Vec<String>,
    /// Worker pod defaults: image pull policy and Secrets, resources when a resource names
    /// none.
    pub image_pull_policy: Option<String>,
    pub image_pull_secrets: Vec<String>,
    pub ingest_resources: Option<ResourceRequirements>,
    pub evaluator_resources: Option<ResourceRequirements>,
    /// A NetworkPolicy per worker (`None`: none).
    pub worker_network_policy: Option<children::network::WorkerNetworkPolicy>,
    /// Where evaluators' judges and routes may send requests.
    pub egress: umpire_runtime::egress::EgressPolicy,
    /// The sentence-embedding model mounted into evaluators that need one.
    pub embedding_model: Option<children::pod::EmbeddingModel>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Nats(#[from] umpire_nats::connect::ConnectError),
    #[error(transparent)]
    Admin(#[from] umpire_runtime::admin::AdminError),
    #[error("the CRD schemas cannot be loaded for validation: {0}")]
    Validator(String),
    #[error("leader election: {0}")]
    Lease(String),
    #[error("{0}")]
    NatsMaterial(String),
}

const API_CHECK: &str = "kubernetes";

/// What the controller serves on `/metrics`.
pub fn metrics_registry() -> (Registry, Arc<ControllerMetrics>) {
    let mut registry = Registry::with_prefix("umpire");
    let metrics = Arc::new(ControllerMetrics::new(&mut registry));
    (registry, metrics)
}

/// Runs until `shutdown` is cancelled.
pub async fn run(
    client: kube::Client,
    config: ControllerConfig,
    shutdown: CancellationToken,
) -> Result<(), ControllerError> {
    let (registry, metrics) = metrics_registry();
    let readiness = Readiness::default();
    let admin =
        AdminServer::bind(config.admin_listen, Arc::new(registry), readiness.clone()).await?;
    tracing::info!(event = "controller_starting", admin = ?admin.local_addr(), image = %config.image, "controller starting");
    let admin_task = tokio::spawn(admin.run(shutdown.clone()));
    readiness.register(API_CHECK, "not connected to the Kubernetes API yet");
    match client.apiserver_version().await {
        Ok(v) => {
            readiness.set_ok(API_CHECK);
            tracing::info!(event = "kubernetes_connected", version = %v.git_version, "connected to the Kubernetes API");
        }
        Err(e) => {
            tracing::warn!(event = "kubernetes_unreachable", error = %e, "the Kubernetes API is not reachable yet")
        }
    }
    let nats = umpire_nats::connect::connect(
        &config.nats,
        "umpire-controller",
        &Readiness::default(),
        "nats",
    )
    .await?;
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(nats);
    let validator = Validator::new().map_err(|e| ControllerError::Validator(e.to_string()))?;
    let identity = config
        .leader_election
        .as_ref()
        .map(|l| l.identity.clone())
        .unwrap_or_else(|| "umpire-controller".into());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "umpire-controller".into(),
            instance: Some(identity),
        },
    );
    let mut shared = Shared::new(
        client.clone(),
        js,
        children::Context {
            image: config.image.clone(),
            image_pull_policy: config.image_pull_policy.clone(),
            image_pull_secrets: config.image_pull_secrets.clone(),
            nats_url: config.nats.url.clone(),
            nats_files: Default::default(),
            ingest_resources: config.ingest_resources.clone(),
            evaluator_resources: config.evaluator_resources.clone(),
            network_policy: config.worker_network_policy.clone(),
            egress: config.egress.clone(),
            embedding_model: config.embedding_model.clone(),
        },
        recorder,
        metrics.clone(),
        validator,
        config.cleanup_timeout,
    );
    shared.alert_status_interval = config.alert_status_interval;
    shared.nats = config.nats.clone();
    // Fail at start, not at the first reconcile, when the material cannot be read.
    shared
        .worker_context()
        .map_err(|e| ControllerError::NatsMaterial(e.to_string()))?;
    let shared = Arc::new(shared);
    let scopes: Vec<Option<String>> = if config.watch_namespaces.is_empty() {
        vec![None]
    } else {
        config.watch_namespaces.iter().cloned().map(Some).collect()
    };

    match &config.leader_election {
        None => {
            metrics.leader.set(1);
            watch::run_controllers(shared, scopes, shutdown.clone()).await;
        }
        Some(election) => lead(client, election, shared, &scopes, &metrics, &shutdown).await?,
    }
    let _ = admin_task.await;
    tracing::info!(event = "controller_stopped", "controller stopped");
    Ok(())
}

/// Reconciles only while holding the Lease; stops at once when it is lost.
async fn lead(
    client: kube::Client,
    election: &LeaderElection,
    shared: Arc<Shared>,
    scopes: &[Option<String>],
    metrics: &ControllerMetrics,
    shutdown: &CancellationToken,
) -> Result<(), ControllerError> {
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &election.lease_name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.lease_seconds)
        .with_grace((election.lease_seconds / 3).max(1))
        .build()
        .await
        .map_err(|e| ControllerError::Lease(e.to_string()))?;
    let (mut leading, task) = manager.watch().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = leading.changed() => if changed.is_err() { break },
        }
        if !*leading.borrow_and_update() {
            continue;
        }
        tracing::info!(event = "leadership_acquired", identity = %election.identity, "leading: reconciling");
        metrics.leader.set(1);
        let term = shutdown.child_token();
        let controllers = tokio::spawn(watch::run_controllers(
            shared.clone(),
            scopes.to_vec(),
            term.clone(),
        ));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = leading.changed() => {
                    if changed.is_err() || !*leading.borrow_and_update() { break }
                }
            }
        }
        term.cancel();
        let _ = controllers.await;
        metrics.leader.set(0);
        tracing::info!(event = "leadership_lost", identity = %election.identity, "no longer leading");
        if shutdown.is_cancelled() {
            break;
        }
    }
    // Closing the channel makes the manager release the Lease for a quick hand-over.
    drop(leading);
    let _ = task.await;
    Ok(())
}
