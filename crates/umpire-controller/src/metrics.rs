//! Controller metrics (prefix `umpire_controller_`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `TraceProject` or `EvalPolicy`.
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub kind: &'static str,
    /// `success` or `error`.
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub kind: String,
    /// `kube`, `nats`, `finalizer`.
    pub reason: &'static str,
}

pub struct ControllerMetrics {
    pub reconciles: Family<ResultLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Family<KindLabels, Histogram>,
    /// Objects whose `status.observedGeneration` lags `metadata.generation`: the work queue
    /// as a user sees it.
    pub queue_depth: Family<KindLabels, Gauge>,
    pub objects: Family<KindLabels, Gauge>,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
}

impl ControllerMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconciles: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            queue_depth: Family::default(),
            objects: Family::default(),
            leader: Gauge::default(),
        };
        let registry = registry.sub_registry_with_prefix("controller");
        registry.register(
            "reconciles",
            "Reconciles by kind and result",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed reconciles by kind and reason",
            metrics.failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            metrics.duration.clone(),
        );
        registry.register(
            "queue_depth",
            "Objects whose observed generation lags their generation",
            metrics.queue_depth.clone(),
        );
        registry.register("objects", "Objects watched", metrics.objects.clone());
        registry.register(
            "leader",
            "1 while this replica leads",
            metrics.leader.clone(),
        );
        metrics
    }
}
