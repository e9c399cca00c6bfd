//! Publishing a kept trace's spans to the span stream.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use futures::future::join_all;
use umpire_core::ids::TraceId;
use umpire_core::span::GENAI_OPERATIONS;
use umpire_core::trace_summary::TraceSummary;
use umpire_nats::topology::ProjectNames;
use umpire_otlp::buffered::BufferedSpan;
use umpire_runtime::retry::Backoff;

use super::buffer::MessageKey;
use crate::intake::PAYLOAD_HEADROOM;

pub struct PublishJob {
    pub partition: u32,
    /// Intake messages to release once published.
    pub messages: Vec<MessageKey>,
    pub spans: Vec<BufferedSpan>,
    pub attempt: u32,
    /// A decided trace (not late spans): its summary follows its spans.
    pub trace: Option<DecidedTrace>,
}

/// What the summary of a decided trace says besides where its spans are.
pub struct DecidedTrace {
    pub trace_id: TraceId,
    /// Why it was decided without its root span; `None` when whole.
    pub incomplete: Option<String>,
}

impl PublishJob {
    /// Memory the job's spans hold (counted against the buffer's byte budget until
    /// published).
    pub fn bytes(&self) -> usize {
        self.spans.iter().map(BufferedSpan::approximate_bytes).sum()
    }
}

pub struct PublishOutcome {
    pub job: PublishJob,
    pub result: Result<Published, String>,
    pub elapsed: Duration,
}

pub async fn publish_job(
    js: jetstream::Context,
    names: ProjectNames,
    job: PublishJob,
) -> PublishOutcome {
    if job.attempt > 0 {
        tokio::time::sleep(Backoff::PUBLISH.delay(job.attempt - 1)).await;
    }
    let started = Instant::now();
    let mut result = publish_spans(&js, &names, &job.spans).await;
    if let (Ok(published), Some(trace)) = (&result, &job.trace) {
        let summary = TraceSummary::new(
            trace.trace_id,
            trace.incomplete.clone(),
            published.sequences.clone(),
        );
        if let Err(e) = publish_summary(&js, &names, &summary).await {
            result = Err(e);
        }
    }
    PublishOutcome {
        job,
        result,
        elapsed: started.elapsed(),
    }
}

/// The span's GenAI operation as a subject token: an operation policies can select by (see
/// `AiSpanKind::from_genai_operation`) as it is, anything else `other`. The value comes from
/// the client: taken as sent, it would mint subjects without bound (and of any length).
fn operation_token(operation: &str) -> &'static str {
    GENAI_OPERATIONS
        .iter()
        .find(|known| **known == operation)
        .copied()
        .unwrap_or("other")
}

/// Spans sent before awaiting their acknowledgements: bounds the publishes a job holds
/// unacknowledged (32 jobs × 256 stays inside the publish context's budget).
const ACK_CHUNK: usize = 256;

/// What a job's publication came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Published {
    /// Where the spans are in the span stream (a duplicate's is the stored original's).
    pub sequences: Vec<u64>,
    /// Spans JetStream already held (same id within the duplicate window).
    pub duplicates: u64,
    /// Spans that can never be published (undecodable, or too large even after truncation):
    /// stored on the project's dead-letter stream with the reason instead of being retried.
    pub dead_lettered: u64,
}

async fn publish_spans(
    js: &jetstream::Context,
    names: &ProjectNames,
    spans: &[BufferedSpan],
) -> Result<Published, String> {
    let client = js.client();
    if !umpire_nats::connect::is_connected(&client) {
        return Err("not connected to NATS".into());
    }
    let budget = client
        .server_info()
        .max_payload
        .saturating_sub(PAYLOAD_HEADROOM)
        .max(64 * 1024);
    let mut published = Published::default();
    let mut poisoned = Vec::new();
    for chunk in spans.chunks(ACK_CHUNK) {
        let mut acks = Vec::with_capacity(chunk.len());
        for buffered in chunk {
            let mut span = match buffered.to_domain() {
                Ok(span) => span,
                Err(e) => {
                    poisoned.push(DeadLetter::undecodable(buffered, &e.to_string()));
                    continue;
                }
            };
            let kind = span
                .ai
                .kind
                .map(|k| k.name().to_ascii_lowercase())
                .unwrap_or_else(|| "none".into());
            let operation = span
                .ai
                .operation
                .as_deref()
                .map(operation_token)
                .unwrap_or("_");
            let subject = names.spans_subject(&kind, operation);
            let id = span.dedup_id();
            let payload = match span.to_wire(budget) {
                Ok(payload) => payload,
                Err(e) => {
                    poisoned.push(DeadLetter::of(&span, &e.to_string()));
                    continue;
                }
            };
            let ack = js
                .send_publish(
                    subject,
                    PublishMessage::build()
                        .payload(payload.into())
                        .message_id(id),
                )
                .await
                .map_err(|e| e.to_string())?;
            acks.push(ack);
        }
        for result in join_all(acks.into_iter().map(|a| a.into_future())).await {
            let ack = result.map_err(|e| e.to_string())?;
            if ack.duplicate {
                published.duplicates += 1;
            }
            published.sequences.push(ack.sequence);
        }
    }
    for letter in &poisoned {
        letter.publish(js, names).await?;
        published.dead_lettered += 1;
    }
    Ok(published)
}

/// Publishes a decided trace's summary after its spans are stored (so an evaluator that
/// reads it finds every span it names), deduplicated by the trace id.
async fn publish_summary(
    js: &jetstream::Context,
    names: &ProjectNames,
    summary: &TraceSummary,
) -> Result<(), String> {
    let payload = serde_json::to_vec(summary).map_err(|e| e.to_string())?;
    js.send_publish(
        names.traces_subject(),
        PublishMessage::build()
            .payload(payload.into())
            .message_id(summary.message_id()),
    )
    .await
    .map_err(|e| format!("trace summary: {e}"))?
    .await
    .map_err(|e| format!("trace summary: {e}"))?;
    Ok(())
}

/// A span ingest cannot publish, as stored on the project's dead-letter stream: enough to
/// find it (ids, name) and the reason; not the span itself, which is what failed.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct DeadLetter {
    id: String,
    trace_id: String,
    span_id: String,
    name: String,
    reason: String,
}

impl DeadLetter {
    fn of(span: &umpire_core::span::Span, reason: &str) -> Self {
        Self {
            id: span.dedup_id(),
            trace_id: span.trace_id.to_string(),
            span_id: span.span_id.to_string(),
            name: span.name.chars().take(256).collect(),
            reason: reason.to_owned(),
        }
    }

    fn undecodable(buffered: &BufferedSpan, reason: &str) -> Self {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let (trace_id, span_id) = (
            hex(buffered.trace_id_bytes()),
            hex(buffered.span_id_bytes()),
        );
        Self {
            id: format!("{trace_id}-{span_id}"),
            trace_id,
            span_id,
            name: buffered.name().chars().take(256).collect(),
            reason: format!("undecodable: {reason}"),
        }
    }

    /// Stored before the intake message is acknowledged, deduplicated by the span's id.
    async fn publish(&self, js: &jetstream::Context, names: &ProjectNames) -> Result<(), String> {
        tracing::warn!(event = "span_dead_lettered", trace_id = %self.trace_id, span_id = %self.span_id, reason = %self.reason, "a span cannot be published; stored on the dead-letter stream");
        let payload = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        js.send_publish(
            names.ingest_dead_letter_subject(),
            PublishMessage::build()
                .payload(payload.into())
                .message_id(format!("ingest/{}", self.id)),
        )
        .await
        .map_err(|e| format!("dead-lettering: {e}"))?
        .await
        .map_err(|e| format!("dead-lettering: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_tokens_are_a_bounded_set() {
        assert_eq!(operation_token("chat"), "chat");
        assert_eq!(operation_token("execute_tool"), "execute_tool");
        assert_eq!(operation_token("text.completion *"), "other");
        assert_eq!(operation_token(">"), "other");
        assert_eq!(operation_token(&"x".repeat(100_000)), "other");
        assert_eq!(operation_token(""), "other");
        // Every token is one a policy can select by.
        for operation in GENAI_OPERATIONS {
            assert!(umpire_core::span::AiSpanKind::from_genai_operation(operation).is_some());
        }
    }
}
