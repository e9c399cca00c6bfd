//! The watches and the two controllers (TraceProject, EvalPolicy) per scope — the whole
//! cluster or one namespace — and the gauges read from their caches.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio_util::sync::CancellationToken;
use umpire_api::eval_policy::EvalPolicy;
use umpire_api::trace_project::TraceProject;

use crate::children::MANAGED_BY;
use crate::context::{Error, Shared};
use crate::metrics::{KindLabels, ResultLabels};
use crate::{policy, project};

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
pub(crate) async fn run_controllers(
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
