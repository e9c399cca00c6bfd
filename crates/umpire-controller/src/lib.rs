//! The Umpire operator: reconciles TraceProjects into ingest workers and span streams, and
//! EvalPolicies into evaluator workers and durable consumers.
//!
//! Shape: [`children`] computes desired objects as pure functions; [`project`] and
//! [`policy`] apply them with server-side apply (one field manager), prune the rest by
//! label, manage JetStream, and write status only when it changes. Only the replica holding
//! the `coordination.k8s.io` Lease reconciles.

pub mod apply;
pub mod children;
pub mod context;
pub mod metrics;
pub mod policy;
pub mod project;
pub mod rbac;
pub mod status;
pub mod streams;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, ResourceRequirements, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use umpire_api::eval_policy::EvalPolicy;
use umpire_api::trace_project::TraceProject;
use umpire_api::validate::Validator;
use umpire_nats::connect::NatsSettings;
use umpire_runtime::admin::AdminServer;
use umpire_runtime::readiness::Readiness;

use crate::children::MANAGED_BY;
use crate::context::{Error, Shared};
use crate::metrics::{ControllerMetrics, KindLabels, ResultLabels};

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

/// Runs until `shutdown` is cancelled.
pub async fn run(
    client: kube::Client,
    config: ControllerConfig,
    shutdown: CancellationToken,
) -> Result<(), ControllerError> {
    let mut registry = Registry::with_prefix("umpire");
    let metrics = Arc::new(ControllerMetrics::new(&mut registry));
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
            run_controllers(shared, scopes, shutdown.clone()).await;
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
        let controllers = tokio::spawn(run_controllers(
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

/// Spec changes, deletion and finalizers trigger a reconcile; status writes do not.
fn spec_or_lifecycle<K: Resource>(object: &K) -> Option<u64> {
    let meta = object.meta();
    let mut hasher = DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.deletion_timestamp.is_some().hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    Some(hasher.finish())
}

/// Changes to our children (metadata only: which object changed is all a trigger needs,
/// and full Deployments/ConfigMaps of a thousand policies would sit in memory otherwise).
fn owned<K>(
    client: &kube::Client,
    namespace: Option<&str>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let config = watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    watcher(scoped::<PartialObjectMeta<K>>(client, namespace), config)
        .default_backoff()
        .touched_objects()
}

/// Reconciles in flight per kind: bounds memory and API load when thousands of objects
/// arrive at once (each reconcile makes about ten API calls).
const CONCURRENCY: u16 = 8;

fn record(shared: &Shared, kind: &'static str, started: Instant, ok: bool) {
    shared
        .metrics
        .duration
        .get_or_create(&KindLabels { kind })
        .observe(started.elapsed().as_secs_f64());
    shared
        .metrics
        .reconciles
        .get_or_create(&ResultLabels {
            kind,
            result: if ok { "success" } else { "error" },
        })
        .inc();
}

/// The whole cluster (`None`) or one namespace.
fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Runs both controllers for every scope (the cluster, or each watched namespace: a
/// reflector per namespace, since one store fed by several watches would drop one
/// namespace's objects whenever another's watch restarts).
async fn run_controllers(
    shared: Arc<Shared>,
    scopes: Vec<Option<String>>,
    stop: CancellationToken,
) {
    let mut stores = Vec::new();
    let mut controllers = Vec::new();
    for scope in &scopes {
        let (projects, policies, run) = scope_controllers(shared.clone(), scope.as_deref(), &stop);
        stores.push((projects, policies));
        controllers.push(run);
    }
    let gauges = queue_gauges(shared.clone(), stores, stop.clone());
    tokio::join!(futures::future::join_all(controllers), gauges);
}

type ScopeRun = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

fn scope_controllers(
    shared: Arc<Shared>,
    namespace: Option<&str>,
    stop: &CancellationToken,
) -> (Store<TraceProject>, Store<EvalPolicy>, ScopeRun) {
    let client = shared.client.clone();
    let (projects, project_writer) = reflector::store::<TraceProject>();
    let project_stream = watcher(
        scoped::<TraceProject>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    // Field ownership is the API server's business; not keeping it halves the cache.
    .modify(|object| object.managed_fields_mut().clear())
    .reflect(project_writer)
    .applied_objects()
    .predicate_filter(spec_or_lifecycle, Default::default());
    let project_controller = Controller::for_stream(project_stream, projects.clone())
        .owns_stream(owned::<Deployment>(&client, namespace))
        .owns_stream(owned::<Service>(&client, namespace))
        .owns_stream(owned::<ConfigMap>(&client, namespace))
        .owns_stream(owned::<ServiceAccount>(&client, namespace))
        .owns_stream(owned::<PodDisruptionBudget>(&client, namespace))
        .owns_stream(owned::<HorizontalPodAutoscaler>(&client, namespace))
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(
            |tp, shared: Arc<Shared>| async move {
                let started = Instant::now();
                let result = project::reconcile(tp.clone(), shared.clone()).await;
                record(&shared, "TraceProject", started, result.is_ok());
                if result.is_ok() {
                    shared.succeeded(tp.as_ref());
                }
                result
            },
            |tp, error: &Error, shared| shared.backoff(tp.as_ref(), error),
            shared.clone(),
        )
        .for_each(|_| async {});

    let (policies, policy_writer) = reflector::store::<EvalPolicy>();
    let policy_stream = watcher(
        scoped::<EvalPolicy>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    // Field ownership is the API server's business; not keeping it halves the cache.
    .modify(|object| object.managed_fields_mut().clear())
    .reflect(policy_writer)
    .applied_objects()
    .predicate_filter(spec_or_lifecycle, Default::default());
    let by_project = policies.clone();
    let policy_controller = Controller::for_stream(policy_stream, policies.clone())
        .owns_stream(owned::<Deployment>(&client, namespace))
        .owns_stream(owned::<ConfigMap>(&client, namespace))
        .owns_stream(owned::<ServiceAccount>(&client, namespace))
        // A project appearing or becoming ready wakes the policies waiting for it.
        .watches(
            scoped::<TraceProject>(&client, namespace),
            watcher::Config::default(),
            move |tp| policies_of(&by_project, &tp),
        )
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(
            |ep, shared: Arc<Shared>| async move {
                let started = Instant::now();
                let result = policy::reconcile(ep.clone(), shared.clone()).await;
                record(&shared, "EvalPolicy", started, result.is_ok());
                if result.is_ok() {
                    shared.succeeded(ep.as_ref());
                }
                result
            },
            |ep, error: &Error, shared| shared.backoff(ep.as_ref(), error),
            shared.clone(),
        )
        .for_each(|_| async {});

    let run = async move {
        tokio::join!(project_controller, policy_controller);
    };
    (projects, policies, Box::pin(run))
}

fn policies_of(policies: &Store<EvalPolicy>, project: &TraceProject) -> Vec<ObjectRef<EvalPolicy>> {
    policies
        .state()
        .iter()
        .filter(|ep| {
            ep.namespace() == project.namespace() && ep.spec.project_ref.name == project.name_any()
        })
        .map(|ep| ObjectRef::from_obj(ep.as_ref()))
        .collect()
}

fn lagging<K: Resource>(objects: &[Arc<K>], observed: impl Fn(&K) -> Option<i64>) -> i64 {
    objects
        .iter()
        .filter(|o| o.meta().generation != observed(o))
        .count() as i64
}

/// Keeps `queue_depth` and `objects` current from the reflector stores.
async fn queue_gauges(
    shared: Arc<Shared>,
    stores: Vec<(Store<TraceProject>, Store<EvalPolicy>)>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let tps: Vec<_> = stores.iter().flat_map(|(p, _)| p.state()).collect();
        let eps: Vec<_> = stores.iter().flat_map(|(_, e)| e.state()).collect();
        let metrics = &shared.metrics;
        let set = |kind, depth, count| {
            metrics
                .queue_depth
                .get_or_create(&KindLabels { kind })
                .set(depth);
            metrics
                .objects
                .get_or_create(&KindLabels { kind })
                .set(count);
        };
        set(
            "TraceProject",
            lagging(&tps, |t| {
                t.status.as_ref().and_then(|s| s.observed_generation)
            }),
            tps.len() as i64,
        );
        set(
            "EvalPolicy",
            lagging(&eps, |e| {
                e.status.as_ref().and_then(|s| s.observed_generation)
            }),
            eps.len() as i64,
        );
    }
}
