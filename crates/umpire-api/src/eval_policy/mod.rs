//! `EvalPolicy`: which of a project's spans to judge, with which judges, and when to page.

mod alert;
mod judge;
mod llm_judge;
mod route;

pub use alert::*;
pub use judge::*;
pub use llm_judge::*;
pub use route::*;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Judges a TraceProject's kept spans on live traffic and raises alerts when scores or
/// latency regress.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "umpire.dev",
    version = "v1alpha1",
    kind = "EvalPolicy",
    plural = "evalpolicies",
    namespaced,
    status = "EvalPolicyStatus",
    shortname = "ep",
    category = "umpire",
    validation = Rule::new("!has(self.metadata.name) || (self.metadata.name.size() <= 40 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))").message("metadata.name must be a DNS label of at most 40 characters, so the Deployments, Services and streams named after it stay within Kubernetes limits").field_path(".metadata.name"),
    doc = "EvalPolicy runs judges on a TraceProject's spans and routes alerts on the scores to PagerDuty or webhooks.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", priority = "1"),
    printcolumn(name = "Project", type_ = "string", json_path = ".spec.projectRef.name"),
    printcolumn(name = "Judges", type_ = "integer", json_path = ".status.judges"),
    printcolumn(name = "Firing", type_ = "integer", json_path = ".status.firingAlerts"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.alerts) || self.alerts.all(a, has(self.routes) && self.routes.exists(r, r.name == a.route))").message(Message::Expression("'alerts use routes not defined in spec.routes: ' + self.alerts.filter(a, !has(self.routes) || !self.routes.exists(r, r.name == a.route)).map(a, a.route).join(', ')".into())).field_path(".alerts"))]
#[x_kube(validation = Rule::new("!has(self.alerts) || self.alerts.all(a, !has(a.metric.judge) || self.judges.exists(j, j.name == a.metric.judge))").message(Message::Expression("'alerts use judges not defined in spec.judges: ' + self.alerts.filter(a, has(a.metric.judge) && !self.judges.exists(j, j.name == a.metric.judge)).map(a, a.metric.judge).join(', ')".into())).field_path(".alerts"))]
pub struct EvalPolicySpec {
    /// The TraceProject (same namespace) whose spans are judged.
    pub project_ref: ProjectRef,
    /// Which kept spans this policy judges. Default: every span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<SelectSpec>,
    /// Sizing of the evaluator Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluator: Option<EvaluatorSpec>,
    /// Judges run on every selected span; each produces one score per span.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub judges: Vec<Judge>,
    /// Alert rules on judge scores and span latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub alerts: Option<Vec<AlertRule>>,
    /// Where alerts are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub routes: Option<Vec<Route>>,
}

impl EvalPolicySpec {
    /// Whether the policy's evaluator needs the install's sentence-embedding model
    /// (`embedding` judges, drift alerts).
    pub fn needs_embeddings(&self) -> bool {
        self.judges.iter().any(|j| j.embedding.is_some())
            || self
                .alerts
                .iter()
                .flatten()
                .any(|a| a.metric.drift.is_some())
    }
}

/// A reference to a TraceProject in the policy's own namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Span selection. All given criteria must hold.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SelectSpec {
    /// Span kinds: OpenInference kinds (`LLM`, `TOOL`, …) or GenAI operations (`chat`,
    /// `execute_tool`, …). GenAI chat/completion spans count as `LLM`, `execute_tool` as
    /// `TOOL`, agent operations as `AGENT`, embeddings as `EMBEDDING`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 17))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub kinds: Option<Vec<SpanKindSelector>>,
    /// Span names (exact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub span_names: Option<Vec<String>>,
    /// Attribute matchers; all must match.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "where")]
    #[schemars(length(min = 1, max = 16))]
    pub where_: Option<Vec<AttributeMatcher>>,
    /// Percentage of matching spans judged, chosen by trace id hash: the same trace is in or
    /// out for every replica and every rerun. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub sample_percentage: Option<f64>,
}

/// Span kinds a policy can select.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpanKindSelector {
    #[serde(rename = "LLM")]
    Llm,
    #[serde(rename = "CHAIN")]
    Chain,
    #[serde(rename = "TOOL")]
    Tool,
    #[serde(rename = "RETRIEVER")]
    Retriever,
    #[serde(rename = "EMBEDDING")]
    Embedding,
    #[serde(rename = "AGENT")]
    Agent,
    #[serde(rename = "RERANKER")]
    Reranker,
    #[serde(rename = "GUARDRAIL")]
    Guardrail,
    #[serde(rename = "EVALUATOR")]
    Evaluator,
    #[serde(rename = "PROMPT")]
    Prompt,
    #[serde(rename = "chat")]
    Chat,
    #[serde(rename = "text_completion")]
    TextCompletion,
    #[serde(rename = "generate_content")]
    GenerateContent,
    #[serde(rename = "embeddings")]
    Embeddings,
    #[serde(rename = "execute_tool")]
    ExecuteTool,
    #[serde(rename = "invoke_agent")]
    InvokeAgent,
    #[serde(rename = "create_agent")]
    CreateAgent,
}

/// Matches one span attribute (resource attributes are looked up too). Exactly one test.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.__in__), has(self.notIn), has(self.exists), has(self.regex), has(self.range)].filter(x, x).size() == 1").message("an attribute matcher needs exactly one of in, notIn, exists, regex, range"))]
pub struct AttributeMatcher {
    /// Attribute key, e.g. `gen_ai.request.model`.
    #[schemars(length(min = 1, max = 256))]
    pub attribute: String,
    /// The value is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "in")]
    #[schemars(length(min = 1, max = 64))]
    pub in_: Option<Vec<String>>,
    /// The value is none of these (or the attribute is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub not_in: Option<Vec<String>>,
    /// `true`: the attribute is present; `false`: it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    /// The value matches this regular expression (RE2 syntax, anywhere in the value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub regex: Option<String>,
    /// The numeric value is within these inclusive bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<NumericRange>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.min) || has(self.max)").message("set min, max or both"))]
#[x_kube(validation = Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max").message("min must not exceed max"))]
pub struct NumericRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// Sizing of the evaluator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EvaluatorSpec {
    /// Evaluator pods sharing the policy's durable consumer. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub replicas: Option<i32>,
    /// Spans judged at once per pod (bounds in-flight messages and memory, and so every LLM
    /// judge's requests in flight). Default: 64, or the largest `maxConcurrency` of the
    /// policy's LLM judges; a value below a judge's explicit `maxConcurrency` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub concurrency: Option<i32>,
    /// CPU and memory requests/limits of each evaluator pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Scheduling, metadata and environment of the evaluator pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<crate::pod::PodOptions>,
}

/// Observed state. Counters are refreshed at a bounded rate (at most once a minute) so
/// GitOps tools do not see status churn.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EvalPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Valid`, `EvaluatorAvailable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Number of judges in the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judges: Option<i32>,
    /// Alerts currently firing (all rules and groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing_alerts: Option<i32>,
    /// The policy's durable JetStream consumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// Alerts pending or firing, firing first, at most 50 (`firingAlerts` counts them all);
    /// refreshed with `firingAlerts` and changed only when an alert changes state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Vec<AlertStatus>>,
    /// Notifications given up after their route's `maxDeliveryAge` and held on the project's
    /// dead-letter stream (within its retention). Each increase is also a Warning Event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_lettered_notifications: Option<i64>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    /// Alert rule name.
    pub rule: String,
    /// Group values (`groupBy`), `key=value` joined by `,`; empty when ungrouped.
    pub group: String,
    pub state: AlertState,
    /// When the alert entered its state.
    pub since: Time,
    /// The measured value when the state last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum AlertState {
    Pending,
    Firing,
}
