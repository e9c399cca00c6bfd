//! Ingest's Prometheus metrics (prefix `umpire_ingest_`).

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Http => "http",
        }
    }
}

/// How a request ended, as a client sees it.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    PartiallyAccepted,
    Unauthenticated,
    InvalidPayload,
    TooLarge,
    UnsupportedMediaType,
    Unavailable,
    Overloaded,
    TimedOut,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::PartiallyAccepted => "partially_accepted",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidPayload => "invalid_payload",
            Self::TooLarge => "too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unavailable => "unavailable",
            Self::Overloaded => "overloaded",
            Self::TimedOut => "timed_out",
        }
    }
}

// Label values are snake_case, as Prometheus conventions expect.
impl EncodeLabelValue for Protocol {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub protocol: Protocol,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    pub protocol: Protocol,
    /// `budget` (at admission or while the body arrived) or `body_timeout`.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

pub struct IngestMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<ProtocolLabels, Histogram>,
    pub spans_received: Counter,
    pub spans_rejected: Family<ReasonLabels, Counter>,
    pub redacted_values: Counter,
    pub redacted_attributes: Counter,
    pub spans_truncated: Counter,
    pub intake_publish_duration: Histogram,
    pub traces_kept: Family<PolicyLabels, Counter>,
    pub traces_dropped: Counter,
    pub spans_kept: Counter,
    pub spans_dropped: Counter,
    pub late_spans: Family<ReasonLabels, Counter>,
    pub early_decisions: Family<ReasonLabels, Counter>,
    pub traces_incomplete: Family<ReasonLabels, Counter>,
    pub buffered_spans: Gauge,
    pub buffered_bytes: Gauge,
    pub request_bytes_in_flight: Gauge,
    pub admission_refused: Family<AdmissionLabels, Counter>,
    pub buffered_traces: Gauge,
    pub intake_paused: Gauge,
    pub publish_duration: Histogram,
    pub publish_failures: Counter,
    pub publish_duplicates: Counter,
    pub spans_dead_lettered: Counter,
    pub partitions_owned: Gauge,
    pub partition_claims: Counter,
    pub lease_rounds_cut_short: Counter,
    pub publishes_fenced: Counter,
    pub intake_decode_failures: Counter,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl IngestMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            spans_received: Counter::default(),
            spans_rejected: Family::default(),
            redacted_values: Counter::default(),
            redacted_attributes: Counter::default(),
            spans_truncated: Counter::default(),
            intake_publish_duration: latency_histogram(),
            traces_kept: Family::default(),
            traces_dropped: Counter::default(),
            spans_kept: Counter::default(),
            spans_dropped: Counter::default(),
            late_spans: Family::default(),
            early_decisions: Family::default(),
            traces_incomplete: Family::default(),
            buffered_spans: Gauge::default(),
            buffered_bytes: Gauge::default(),
            request_bytes_in_flight: Gauge::default(),
            admission_refused: Family::default(),
            buffered_traces: Gauge::default(),
            intake_paused: Gauge::default(),
            publish_duration: latency_histogram(),
            publish_failures: Counter::default(),
            publish_duplicates: Counter::default(),
            spans_dead_lettered: Counter::default(),
            partitions_owned: Gauge::default(),
            partition_claims: Counter::default(),
            lease_rounds_cut_short: Counter::default(),
            publishes_fenced: Counter::default(),
            intake_decode_failures: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("ingest");
        r.register(
            "requests",
            "OTLP export requests by protocol and outcome",
            metrics.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "OTLP export request latency",
            metrics.request_duration.clone(),
        );
        r.register(
            "spans_received",
            "Spans received in accepted requests",
            metrics.spans_received.clone(),
        );
        r.register(
            "spans_rejected",
            "Spans refused (partial success) by reason",
            metrics.spans_rejected.clone(),
        );
        r.register(
            "redacted_values",
            "Attribute values rewritten by redaction rules",
            metrics.redacted_values.clone(),
        );
        r.register(
            "redacted_attributes",
            "Attributes dropped by redaction",
            metrics.redacted_attributes.clone(),
        );
        r.register(
            "spans_truncated",
            "Spans shortened to fit the NATS payload limit",
            metrics.spans_truncated.clone(),
        );
        r.register(
            "intake_publish_duration_seconds",
            "Time for JetStream to acknowledge a request's spans",
            metrics.intake_publish_duration.clone(),
        );
        r.register(
            "traces_kept",
            "Traces kept by tail sampling, by the policy that kept them",
            metrics.traces_kept.clone(),
        );
        r.register(
            "traces_dropped",
            "Traces dropped by tail sampling",
            metrics.traces_dropped.clone(),
        );
        r.register(
            "spans_kept",
            "Spans published to the project's span stream",
            metrics.spans_kept.clone(),
        );
        r.register(
            "spans_dropped",
            "Spans of dropped traces",
            metrics.spans_dropped.clone(),
        );
        r.register(
            "late_spans",
            "Spans arriving after their trace was decided, by decision",
            metrics.late_spans.clone(),
        );
        r.register(
            "early_decisions",
            "Traces decided before they were due (buffer full, rebalance, shutdown)",
            metrics.early_decisions.clone(),
        );
        r.register(
            "traces_incomplete",
            "Traces decided without their root span, by reason (root_missing: traceTimeout passed; or the early decision's reason)",
            metrics.traces_incomplete.clone(),
        );
        r.register(
            "buffered_spans",
            "Spans awaiting a sampling decision or publication",
            metrics.buffered_spans.clone(),
        );
        r.register(
            "buffered_bytes",
            "Memory held by spans awaiting a sampling decision or publication (decoded size)",
            metrics.buffered_bytes.clone(),
        );
        r.register(
            "request_bytes_in_flight",
            "Bytes charged to OTLP requests being read, decoded and published (body bytes times the decoding expansion)",
            metrics.request_bytes_in_flight.clone(),
        );
        r.register(
            "admission_refused",
            "OTLP requests refused by the in-flight byte budget or the body read timeout, before or while their body was read",
            metrics.admission_refused.clone(),
        );
        r.register(
            "buffered_traces",
            "Traces awaiting a sampling decision",
            metrics.buffered_traces.clone(),
        );
        r.register(
            "intake_paused",
            "1 while the sampler stops pulling the intake: kept spans waiting for the span stream hold half the buffer's budget",
            metrics.intake_paused.clone(),
        );
        r.register(
            "publish_duration_seconds",
            "Time to publish a kept trace's spans",
            metrics.publish_duration.clone(),
        );
        r.register(
            "publish_failures",
            "Failed attempts to publish kept spans (retried)",
            metrics.publish_failures.clone(),
        );
        r.register(
            "publish_duplicates",
            "Kept spans JetStream already held (same span id within the duplicate window): a retry whose first attempt was stored, or another owner deciding the same trace",
            metrics.publish_duplicates.clone(),
        );
        r.register(
            "spans_dead_lettered",
            "Kept spans that can never be published (undecodable, or too large after truncation), stored on the dead-letter stream with the reason",
            metrics.spans_dead_lettered.clone(),
        );
        r.register(
            "partitions_owned",
            "Trace partitions this replica owns",
            metrics.partitions_owned.clone(),
        );
        r.register(
            "partition_claims",
            "Partitions whose fence this replica claimed (on acquiring them): publishes of an earlier owner are refused from then on",
            metrics.partition_claims.clone(),
        );
        r.register(
            "lease_rounds_cut_short",
            "Partition lease rounds that ran out of their budget (a third of the lease TTL) because NATS answered slowly; what they changed before the cut is applied all the same",
            metrics.lease_rounds_cut_short.clone(),
        );
        r.register(
            "publishes_fenced",
            "Publications refused because another replica had claimed the partition (this one was paused past its lease) or the fence marker was gone; the partition is given up",
            metrics.publishes_fenced.clone(),
        );
        r.register(
            "intake_decode_failures",
            "Intake messages that could not be decoded (acknowledged and skipped)",
            metrics.intake_decode_failures.clone(),
        );
        metrics
    }

    pub fn reject(&self, reason: &str, spans: u64) {
        self.spans_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc_by(spans);
    }
}
