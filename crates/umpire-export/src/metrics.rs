//! Export metrics (prefix `umpire_export_`), labelled by target and signal only.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
    pub signal: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub target: String,
    pub signal: &'static str,
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub target: String,
    /// `failed` (a judge failed or errored), `sampled` (healthy, within the percentage),
    /// `dropped`.
    pub decision: &'static str,
}

#[derive(Clone, Default)]
pub struct ExportMetrics {
    /// Traces an outcome-based target decided, by decision.
    pub traces: Family<DecisionLabels, Counter>,
    /// Spans or evaluation records the backend accepted.
    pub sent: Family<TargetLabels, Counter>,
    /// Send attempts that failed, by kind (`retryable`, `rejected`).
    pub failures: Family<FailureLabels, Counter>,
    /// Items the backend refused as invalid, dropped after logging.
    pub rejected: Family<TargetLabels, Counter>,
    /// Stream messages not yet exported (the consumer's pending count).
    pub lag: Family<TargetLabels, Gauge>,
}

impl ExportMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let r = registry.sub_registry_with_prefix("export");
        r.register(
            "sent",
            "Spans and evaluation records an export target accepted",
            metrics.sent.clone(),
        );
        r.register(
            "send_failures",
            "Export requests that failed (retryable: retried; rejected: dropped)",
            metrics.failures.clone(),
        );
        r.register(
            "rejected",
            "Spans and evaluation records dropped because the target refused them as invalid",
            metrics.rejected.clone(),
        );
        r.register(
            "traces",
            "Traces an outcome-based export target decided: failed, sampled or dropped",
            metrics.traces.clone(),
        );
        r.register(
            "lag_messages",
            "Stored spans or evaluations the target has not received yet",
            metrics.lag.clone(),
        );
        metrics
    }
}
