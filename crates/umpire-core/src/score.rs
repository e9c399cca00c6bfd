//! What evaluators publish: one message per judged span, holding one score per judge and the
//! span's latency (for latency alert rules). It carries the span's group values, so alert
//! evaluation never needs the span again, and an idempotent id, so a redelivered span never
//! counts twice. One message per span (not per score) keeps publishing cheap: the judges of a
//! span are scored together anyway.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{SpanId, TraceId};
use crate::judge::Outcome;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanEvaluation {
    /// `<policy>/<trace id>-<span id>`: the same for every redelivery.
    pub id: String,
    pub policy: String,
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// When the judged span ended: the time alert windows use.
    pub observed_at_unix_nano: u64,
    pub scored_at_unix_nano: u64,
    /// The judged span's duration.
    pub latency_ms: f64,
    /// The judged span's time to first token (streaming calls that record it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_first_token_ms: Option<f64>,
    /// Values of the policy's `groupBy` attributes (empty string when the span lacks one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, String>,
    /// The judged span's model (response model, else request model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The judged completion's `gen_ai.response.id`, when the span has one: exported with
    /// each `gen_ai.evaluation.result` so backends can correlate without the span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    /// One per judge of the policy.
    pub scores: Vec<JudgeScore>,
    /// Embeddings of the fields the policy's drift rules compare (`input`, `output`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub embeddings: BTreeMap<String, crate::embedding::CompactEmbedding>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JudgeScore {
    pub judge: String,
    /// Nested rather than flattened: serde's flatten buffers every field when reading.
    pub outcome: Outcome,
    pub judge_latency_ms: f64,
}

impl SpanEvaluation {
    pub fn id_for(policy: &str, trace_id: &TraceId, span_id: &SpanId) -> String {
        format!("{policy}/{trace_id}-{span_id}")
    }

    /// The id of one judge's score: `<policy>/<judge>/<trace id>-<span id>`.
    pub fn score_id(&self, judge: &str) -> String {
        format!("{}/{judge}/{}-{}", self.policy, self.trace_id, self.span_id)
    }

    pub fn score(&self, judge: &str) -> Option<&JudgeScore> {
        self.scores.iter().find(|s| s.judge == judge)
    }
}
