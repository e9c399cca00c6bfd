//! What evaluators publish: one score per (span, judge), and one observation per judged span
//! (its latency, for latency alert rules). Both carry the span's group values, so alert
//! evaluation never needs the span again, and an idempotent id, so a redelivered span never
//! counts twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{SpanId, TraceId};
use crate::judge::Outcome;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "record")]
pub enum EvaluationRecord {
    Score(ScoreRecord),
    Span(SpanObservation),
}

impl EvaluationRecord {
    pub fn id(&self) -> &str {
        match self {
            Self::Score(score) => &score.id,
            Self::Span(span) => &span.id,
        }
    }

    pub fn groups(&self) -> &BTreeMap<String, String> {
        match self {
            Self::Score(score) => &score.groups,
            Self::Span(span) => &span.groups,
        }
    }

    /// When the judged span ended: the time alert windows use.
    pub fn observed_at_unix_nano(&self) -> u64 {
        match self {
            Self::Score(score) => score.observed_at_unix_nano,
            Self::Span(span) => span.observed_at_unix_nano,
        }
    }

    pub fn trace_id(&self) -> TraceId {
        match self {
            Self::Score(score) => score.trace_id,
            Self::Span(span) => span.trace_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoreRecord {
    /// `<policy>/<judge>/<trace id>-<span id>`: the same for every redelivery.
    pub id: String,
    pub policy: String,
    pub judge: String,
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub observed_at_unix_nano: u64,
    pub scored_at_unix_nano: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub judge_latency_ms: f64,
    /// Values of the policy's `groupBy` attributes (empty string when the span lacks one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, String>,
    /// The judged span's model (response model, else request model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanObservation {
    /// `<policy>/<trace id>-<span id>`.
    pub id: String,
    pub policy: String,
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub observed_at_unix_nano: u64,
    pub latency_ms: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, String>,
}

pub fn score_id(policy: &str, judge: &str, trace_id: &TraceId, span_id: &SpanId) -> String {
    format!("{policy}/{judge}/{trace_id}-{span_id}")
}

pub fn observation_id(policy: &str, trace_id: &TraceId, span_id: &SpanId) -> String {
    format!("{policy}/{trace_id}-{span_id}")
}
