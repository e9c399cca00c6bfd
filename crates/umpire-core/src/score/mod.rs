//! What evaluators publish: one evaluation per judged span, holding one score per judge and
//! the span's latency (for latency alert rules). It carries the span's group values, so alert
//! evaluation never needs the span again, and an idempotent id, so a redelivered span never
//! counts twice. One record per span (not per score) keeps publishing cheap: the judges of a
//! span are scored together anyway; and the evaluations of one trace's spans judged together
//! travel as one message (see [`crate::batch`]), so readers take both forms
//! ([`evaluations_of_message`]) and count each evaluation by its id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::batch::{batch_message, batch_message_id, pack, read_one_or_many};
use crate::ids::{SpanId, TraceId};
use crate::judge::Outcome;

/// Evaluations one scores message carries at most.
pub const MAX_EVALUATIONS_PER_MESSAGE: usize = 64;

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
        // Not `format!`: its formatting machinery cost 1.5k instructions of every evaluated
        // span; `concat` sizes the string once and copies the parts.
        [
            policy,
            "/",
            &trace_id.hex_digits(),
            "-",
            &span_id.hex_digits(),
        ]
        .concat()
    }

    /// The id of one judge's score: `<policy>/<judge>/<trace id>-<span id>`.
    pub fn score_id(&self, judge: &str) -> String {
        format!("{}/{judge}/{}-{}", self.policy, self.trace_id, self.span_id)
    }

    pub fn score(&self, judge: &str) -> Option<&JudgeScore> {
        self.scores.iter().find(|s| s.judge == judge)
    }
}

/// The evaluations of one scores-stream message, one or a batch.
pub fn evaluations_of_message(
    payload: &[u8],
) -> Result<Vec<SpanEvaluation>, crate::stream_codec::Error> {
    read_one_or_many(payload)
}

/// One scores-stream message ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoresMessage {
    /// Its `Nats-Msg-Id`: a lone evaluation's own id, or
    /// `<policy>/<trace id>-<n>x<hash of the span ids>` for a batch.
    pub id: String,
    pub payload: Vec<u8>,
    pub evaluations: usize,
}

/// Evaluations as scores-stream messages of at most `budget` bytes: those of one trace
/// travel together, ordered by span id, so the same evaluations stored again (a redelivered
/// span message) carry the same message id and are deduplicated; a lone evaluation keeps
/// its own form and id.
pub fn scores_messages(
    evaluations: &[SpanEvaluation],
    budget: usize,
) -> Result<Vec<ScoresMessage>, crate::stream_codec::Error> {
    let mut encoded = Vec::with_capacity(evaluations.len());
    for evaluation in evaluations {
        // An evaluation with code judges is ~0.7–1 KiB: written into room for it at once,
        // not grown from a small buffer by reallocation.
        let mut record = Vec::with_capacity(1024);
        crate::stream_codec::write(&mut record, evaluation)?;
        encoded.push((evaluation, record));
    }
    encoded.sort_unstable_by_key(|(evaluation, _)| (evaluation.trace_id, evaluation.span_id));
    let groups = pack(
        encoded,
        |a, b| a.0.trace_id == b.0.trace_id && a.0.policy == b.0.policy,
        |(_, record)| record.len(),
        MAX_EVALUATIONS_PER_MESSAGE,
        budget,
    );
    Ok(groups
        .into_iter()
        .map(|mut group| {
            if group.len() == 1
                && let Some((evaluation, record)) = group.pop()
            {
                return ScoresMessage {
                    id: evaluation.id.clone(),
                    payload: record,
                    evaluations: 1,
                };
            }
            let first = group[0].0;
            let spans: Vec<SpanId> = group.iter().map(|(e, _)| e.span_id).collect();
            ScoresMessage {
                id: format!(
                    "{}/{}",
                    first.policy,
                    batch_message_id(&first.trace_id, &spans)
                ),
                payload: batch_message(group.iter().map(|(_, record)| record.as_slice())),
                evaluations: group.len(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests;
