//! `TraceProject`: where an app's spans come in, how they are sampled and redacted, and
//! where they are kept.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ByteSize, Duration, NAME_PATTERN, SecretKeyRef, URL_PATTERN};
use crate::pod::PodOptions;

/// A source of OpenTelemetry traces: one ingest service (OTLP gRPC :4317, HTTP :4318), its
/// tail-sampling and redaction rules, and the JetStream stream that keeps sampled spans for
/// the project's EvalPolicies.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "umpire.dev",
    version = "v1alpha1",
    kind = "TraceProject",
    namespaced,
    status = "TraceProjectStatus",
    shortname = "tp",
    category = "umpire",
    validation = Rule::new("!has(self.metadata.name) || (self.metadata.name.size() <= 40 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))").message("metadata.name must be a DNS label of at most 40 characters, so the Deployments, Services and streams named after it stay within Kubernetes limits").field_path(".metadata.name"),
    doc = "TraceProject receives OTLP spans for one application, samples and redacts them, and keeps them in a JetStream stream for EvalPolicies.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", priority = "1"),
    printcolumn(name = "OTLP-gRPC", type_ = "string", json_path = ".status.endpoints.grpc"),
    printcolumn(name = "OTLP-HTTP", type_ = "string", json_path = ".status.endpoints.http", priority = "1"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.ingestReplicasReady"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct TraceProjectSpec {
    /// The ingest service: replicas or autoscaling, authentication, request limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<IngestSpec>,
    /// Limits of the JetStream stream that keeps sampled spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamSpec>,
    /// Tail sampling, decided per trace. Without it every trace is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<SamplingSpec>,
    /// Redaction applied before any span leaves ingest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<RedactionSpec>,
    /// Where kept spans and evaluation results are forwarded (e.g. Phoenix, Langfuse, an
    /// OpenTelemetry Collector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub export: Option<Vec<ExportTarget>>,
}

impl TraceProjectSpec {
    /// JetStream replicas of every stream and bucket of the project (`stream.replicas`,
    /// default 1): its spans and also its scores, dead letters, leases, alert state and
    /// outbox, so an R3 project keeps nothing on one node only.
    pub fn stream_replicas(&self) -> usize {
        self.stream
            .as_ref()
            .and_then(|s| s.replicas)
            .and_then(|r| usize::try_from(r).ok())
            .unwrap_or(1)
            .max(1)
    }
}

/// Sizing and access of the ingest service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))").message("set either replicas or autoscaling, not both"))]
#[x_kube(validation = Rule::new("!has(self.autoscaling) || (has(self.resources) && has(self.resources.requests) && 'cpu' in self.resources.requests)").message("autoscaling scales on CPU utilisation, a percentage of the pods' CPU request: set resources.requests.cpu").field_path(".autoscaling"))]
pub struct IngestSpec {
    /// Fixed number of ingest pods. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: Option<i32>,
    /// Scale ingest pods on CPU with a HorizontalPodAutoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Require `Authorization: Bearer <token>` on OTLP requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<IngestAuth>,
    /// Largest accepted OTLP request body (after decompression). Default 4Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_size: Option<ByteSize>,
    /// CPU and memory requests/limits of each ingest pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Scheduling, metadata and environment of the ingest pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOptions>,
}

/// HorizontalPodAutoscaler settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
pub struct Autoscaling {
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: i32,
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,
    /// Target average CPU utilisation, percent of the request. Default 70.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[schemars(range(min = 10, max = 100))]
    pub target_cpu_utilization_percentage: Option<i32>,
}

/// Authentication of OTLP clients.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngestAuth {
    /// Secret key holding the bearer token clients must send.
    pub bearer_token_secret_ref: SecretKeyRef,
}

/// JetStream stream limits. Oldest spans are discarded first when a limit is reached.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.duplicateWindow) || !has(self.maxAge) || duration(self.duplicateWindow) <= duration(self.maxAge)").message("duplicateWindow must not exceed maxAge").field_path(".duplicateWindow"))]
pub struct StreamSpec {
    /// How long spans are kept. Default 72h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Total size kept. Default 10Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<ByteSize>,
    /// Number of messages kept. Default unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_messages: Option<i64>,
    /// JetStream replicas (1, 3 or 5 in a clustered JetStream). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: Option<i32>,
    /// Window in which a re-sent span (same span id) is dropped as a duplicate. Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_window: Option<Duration>,
}

/// Tail sampling: spans are buffered per trace until its root span has arrived (plus
/// `decisionWait`), then the whole trace is kept if any policy keeps it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.decisionWait) || !has(self.traceTimeout) || duration(self.decisionWait) <= duration(self.traceTimeout)").message("traceTimeout must be at least decisionWait").field_path(".traceTimeout"))]
pub struct SamplingSpec {
    /// How long after a trace's root span (the span without a parent, which ends and is
    /// exported last) the decision is taken, for spans of other services still on their way.
    /// Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_wait: Option<Duration>,
    /// Longest a trace waits for its root span, from its first span. A trace still without
    /// its root is then decided as incomplete (counted in
    /// `umpire_ingest_traces_incomplete_total`; trace-level judges report `incomplete_trace`
    /// instead of judging a fragment). Set it above your longest agent run; set it low when
    /// this project never receives the roots (a service called by others). Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_timeout: Option<Duration>,
    /// Most spans buffered awaiting a decision, per ingest pod. Past it the oldest traces are
    /// decided early. Default 200000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1000))]
    pub max_buffered_spans: Option<i64>,
    /// Policies; a trace is kept when any keeps it. Empty or absent: every trace is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub policies: Option<Vec<SamplingPolicy>>,
}

/// One sampling policy: exactly one condition, or an `and` / `or` of conditions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.statusCode), has(self.latency), has(self.probabilistic), has(self.stringAttribute), has(self.numericAttribute), has(self.rateLimit), has(self.and), has(self.or)].filter(x, x).size() == 1").message("a sampling policy needs exactly one of statusCode, latency, probabilistic, stringAttribute, numericAttribute, rateLimit, and, or"))]
pub struct SamplingPolicy {
    #[schemars(length(min = 1, max = 63), regex(pattern = NAME_PATTERN))]
    pub name: String,
    #[serde(flatten)]
    pub condition: SamplingCondition,
    /// Keep the trace only when every condition keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 8))]
    #[x_kube(validation = Rule::new("self.all(c, [has(c.statusCode), has(c.latency), has(c.probabilistic), has(c.stringAttribute), has(c.numericAttribute), has(c.rateLimit)].filter(x, x).size() == 1)").message("each condition needs exactly one of statusCode, latency, probabilistic, stringAttribute, numericAttribute, rateLimit"))]
    pub and: Option<Vec<SamplingCondition>>,
    /// Keep the trace when any condition keeps it (useful inside rate limits' scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 8))]
    #[x_kube(validation = Rule::new("self.all(c, [has(c.statusCode), has(c.latency), has(c.probabilistic), has(c.stringAttribute), has(c.numericAttribute), has(c.rateLimit)].filter(x, x).size() == 1)").message("each condition needs exactly one of statusCode, latency, probabilistic, stringAttribute, numericAttribute, rateLimit"))]
    pub or: Option<Vec<SamplingCondition>>,
}

/// The sampling conditions. Each is evaluated on the whole trace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SamplingCondition {
    /// Keep traces with any span in one of these statuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 3))]
    pub status_code: Option<Vec<StatusCode>>,
    /// Keep traces whose duration (first start to last end) is at least `thresholdMs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyCondition>,
    /// Keep this percentage of traces, chosen by trace id hash (same decision everywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilistic: Option<ProbabilisticCondition>,
    /// Keep traces with a span whose string attribute matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_attribute: Option<StringAttributeCondition>,
    /// Keep traces with a span whose numeric attribute is within bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric_attribute: Option<NumericAttributeCondition>,
    /// Keep traces while the kept-span rate stays under a budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitCondition>,
}

/// OpenTelemetry span status codes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.upperThresholdMs) || self.upperThresholdMs > self.thresholdMs").message("upperThresholdMs must be greater than thresholdMs"))]
pub struct LatencyCondition {
    /// Minimum trace duration in milliseconds.
    #[schemars(range(min = 0))]
    pub threshold_ms: i64,
    /// Optional exclusive upper bound in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper_threshold_ms: Option<i64>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProbabilisticCondition {
    /// Percentage of traces kept, 0–100.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percentage: f64,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StringAttributeCondition {
    /// Span attribute key (e.g. `gen_ai.request.model`). Resource attributes also match.
    #[schemars(length(min = 1, max = 256))]
    pub key: String,
    /// Values that match (exact, or regular expressions with `regex: true`).
    #[schemars(length(min = 1, max = 64))]
    pub values: Vec<String>,
    /// Treat `values` as regular expressions (RE2 syntax, matched anywhere in the value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<bool>,
    /// Keep traces that do *not* match instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invert: Option<bool>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.min) || has(self.max)").message("set min, max or both"))]
#[x_kube(validation = Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max").message("min must not exceed max"))]
pub struct NumericAttributeCondition {
    /// Span attribute key (e.g. `gen_ai.usage.output_tokens`).
    #[schemars(length(min = 1, max = 256))]
    pub key: String,
    /// Inclusive lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Inclusive upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Keep traces outside the bounds instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invert: Option<bool>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitCondition {
    /// Kept spans per second for the whole project (split evenly across ingest pods).
    #[schemars(range(min = 1))]
    pub spans_per_second: i64,
}

/// Redaction runs in ingest, before spans are sampled, stored or forwarded.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RedactionSpec {
    /// `false` removes prompt and completion content (messages, input/output values,
    /// retrieved documents, tool arguments) entirely. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_content: Option<bool>,
    /// Rules, applied in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub rules: Option<Vec<RedactionRule>>,
}

/// A redaction rule: replace (or hash) what `pattern` matches in content and attribute
/// values, or drop whole attributes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.action) && self.action == 'drop' ? (has(self.attributes) && !has(self.pattern)) : has(self.pattern)").message("drop rules need attributes and no pattern; replace and hash rules need a pattern"))]
#[x_kube(validation = Rule::new("!has(self.replace) || !has(self.action) || self.action == 'replace'").message("replace is only used by the replace action").field_path(".replace"))]
pub struct RedactionRule {
    #[schemars(length(min = 1, max = 63), regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// Regular expression (RE2 syntax) matched in content and attribute values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub pattern: Option<String>,
    /// Replacement text for `replace`. Default `<redacted>`. `$1`-style groups are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub replace: Option<String>,
    /// Attribute keys the rule applies to (a trailing `*` matches a prefix). For `replace` /
    /// `hash` the default is every attribute and all content; for `drop` it is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub attributes: Option<Vec<String>>,
    /// `replace` (default), `hash` (a stable SHA-256 prefix, so equal values stay joinable)
    /// or `drop` (remove the attributes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RedactionAction>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RedactionAction {
    Replace,
    Hash,
    Drop,
}

/// A forwarding target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExportTarget {
    /// Names the target in metrics and logs and its JetStream consumers (one per signal): a
    /// renamed target starts afresh.
    #[schemars(length(min = 1, max = 40), regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// Forward over OTLP.
    pub otlp: OtlpExport,
    /// Forward whole traces chosen by their evaluations instead of every kept span: each
    /// trace in which a judge failed or errored, and a deterministic share of the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OutcomeExport>,
}

/// Export by outcome: the decision is taken per trace once the policies had `decisionWait`
/// to judge it, by the one ingest replica that holds the trace's summary, and is the same
/// on every replica (the share of healthy traces hashes the trace id).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.decisionWait) || duration(self.decisionWait) <= duration('10m')").message("decisionWait is at most 10m").field_path(".decisionWait"))]
pub struct OutcomeExport {
    /// Judges whose failure or error exports the trace. Default: any judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub judges: Option<Vec<String>>,
    /// Percentage (0–100) of the other judged traces exported as well, chosen by trace id.
    /// Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub healthy_percentage: Option<f64>,
    /// How long after a trace is stored its evaluations are awaited before deciding (slow
    /// LLM judges); evaluations stored later are not considered. Default 30s, at most 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_wait: Option<Duration>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OtlpExport {
    /// Base URL: `http(s)://host:4318` for HTTP, `http(s)://host:4317` for gRPC.
    #[schemars(length(min = 1, max = 2048), regex(pattern = URL_PATTERN))]
    pub endpoint: String,
    /// `httpProtobuf` (default: `POST <endpoint>/v1/traces` and `/v1/logs`), `httpJson`
    /// (the same paths, JSON bodies) or `grpc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<OtlpProtocol>,
    /// `gzip` (default) or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<OtlpCompression>,
    /// Headers to send, each value from a Secret (e.g. an API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub headers: Option<Vec<SecretHeader>>,
    /// Forward kept spans. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans: Option<bool>,
    /// Forward evaluation results as `gen_ai.evaluation.result` events. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluations: Option<bool>,
    /// How evaluation results travel: `logRecords` (default; OTLP logs, as the GenAI
    /// conventions define events), `spanEvents` (for backends that read traces only, e.g.
    /// Phoenix, Langfuse: a zero-duration child span of the evaluated span, one span event
    /// per verdict) or `both`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluations_as: Option<EvaluationFormat>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum EvaluationFormat {
    LogRecords,
    SpanEvents,
    Both,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum OtlpProtocol {
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies (`application/json`, ids as hex, as the OTLP spec's JSON
    /// mapping says), for backends or proxies that take only JSON.
    HttpJson,
    Grpc,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum OtlpCompression {
    Gzip,
    None,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretHeader {
    #[schemars(length(min = 1, max = 256), regex(pattern = "^[A-Za-z0-9-]+$"))]
    pub name: String,
    pub value_from: SecretKeyRef,
}

/// Observed state, written by the controller only when it changes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TraceProjectStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `StreamReady`, `IngestAvailable`, and `export.umpire.dev/<target>` per export
    /// target (True: `Delivering` or `Idle`; False: `DeliveryFailing`, `ItemsRejected`,
    /// `TargetInvalid`; Unknown: `NotReported`), from the ingest replicas' delivery reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// In-cluster OTLP endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<OtlpEndpoints>,
    /// JetStream stream holding the project's kept spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Ingest pods ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_replicas_ready: Option<i32>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OtlpEndpoints {
    pub grpc: String,
    pub http: String,
}
