//! Publishing a kept trace's spans to the span stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use futures::future::join_all;
use umpire_core::ids::TraceId;
use umpire_core::span::GENAI_OPERATIONS;
use umpire_core::trace_summary::TraceSummary;
use umpire_nats::fence::{FencedWriteError, SlottedFence};
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
    /// The partition's fence when the job was first started (`None` until then): every
    /// publish carries it, and a retry only happens under the same one.
    pub fence: Option<Arc<SlottedFence>>,
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
    pub result: Result<Published, PublishFailure>,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishFailure {
    /// The partition's fence refused a publish: another replica owns the partition now.
    #[error("{0}")]
    Fenced(String),
    /// Worth retrying (NATS unreachable, timed out, …).
    #[error("{0}")]
    Failed(String),
}

impl From<FencedWriteError> for PublishFailure {
    fn from(error: FencedWriteError) -> Self {
        match error {
            FencedWriteError::Fenced(message) => Self::Fenced(message),
            FencedWriteError::Publish(e) => Self::Failed(e.to_string()),
        }
    }
}

impl From<async_nats::jetstream::context::PublishError> for PublishFailure {
    fn from(error: async_nats::jetstream::context::PublishError) -> Self {
        FencedWriteError::from(error).into()
    }
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
    let result = match &job.fence {
        Some(fence) => publish_guarded(&js, &names, fence, &job).await,
        None => Err(PublishFailure::Failed(
            "the partition's fence is not claimed yet".into(),
        )),
    };
    if let (Err(PublishFailure::Fenced(_)), Some(fence)) = (&result, &job.fence) {
        fence.revoke();
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

/// Fence slots one job takes, so the spans it sends before awaiting their acknowledgements
/// (several jobs of one partition run at once within its [`super::partitions::FENCE_SLOTS`]).
const SLOTS_PER_JOB: usize = 32;

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

/// Publishes the job's spans, then its trace's summary, each guarded by a slot of the
/// partition's fence.
async fn publish_guarded(
    js: &jetstream::Context,
    names: &ProjectNames,
    fence: &SlottedFence,
    job: &PublishJob,
) -> Result<Published, PublishFailure> {
    let client = js.client();
    if !umpire_nats::connect::is_connected(&client) {
        return Err(PublishFailure::Failed("not connected to NATS".into()));
    }
    let taken = fence.take(js, job.spans.len().min(SLOTS_PER_JOB)).await?;
    let slots = taken.slots();
    let published = publish_spans(js, names, slots, &job.spans).await?;
    if let (Some(trace), Some(slot)) = (&job.trace, slots.first()) {
        let summary = TraceSummary::new(
            trace.trace_id,
            trace.incomplete.clone(),
            published.sequences.clone(),
        );
        publish_summary(js, names, slot.fence(), &summary).await?;
    }
    Ok(published)
}

async fn publish_spans(
    js: &jetstream::Context,
    names: &ProjectNames,
    slots: &[umpire_nats::fence::Slot],
    spans: &[BufferedSpan],
) -> Result<Published, PublishFailure> {
    let client = js.client();
    let budget = client
        .server_info()
        .max_payload
        .saturating_sub(PAYLOAD_HEADROOM)
        .max(64 * 1024);
    let mut published = Published::default();
    let mut poisoned = Vec::new();
    for chunk in spans.chunks(slots.len().max(1)) {
        let mut acks = Vec::with_capacity(chunk.len());
        for (buffered, slot) in chunk.iter().zip(slots) {
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
            let message = PublishMessage::build()
                .payload(payload.into())
                .message_id(id);
            let ack = js
                .send_publish(subject, slot.fence().guard(message))
                .await?;
            acks.push(ack);
        }
        for result in join_all(acks.into_iter().map(|a| a.into_future())).await {
            let ack = result?;
            if ack.duplicate {
                published.duplicates += 1;
            }
            published.sequences.push(ack.sequence);
        }
    }
    for letter in &poisoned {
        letter
            .publish(js, names)
            .await
            .map_err(PublishFailure::Failed)?;
        published.dead_lettered += 1;
    }
    Ok(published)
}

/// Publishes a decided trace's summary after its spans are stored (so an evaluator that
/// reads it finds every span it names), deduplicated by the trace id.
async fn publish_summary(
    js: &jetstream::Context,
    names: &ProjectNames,
    fence: &umpire_nats::fence::Fence,
    summary: &TraceSummary,
) -> Result<(), PublishFailure> {
    let payload = serde_json::to_vec(summary)
        .map_err(|e| PublishFailure::Failed(format!("trace summary: {e}")))?;
    let message = PublishMessage::build()
        .payload(payload.into())
        .message_id(summary.message_id());
    js.send_publish(names.traces_subject(), fence.guard(message))
        .await?
        .await?;
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
