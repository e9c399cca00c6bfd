//! Publishing a kept trace's spans to the span stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use futures::future::join_all;
use umpire_core::ids::TraceId;
use umpire_core::trace_summary::TraceSummary;
use umpire_nats::fence::{FencedWriteError, SlottedFence};
use umpire_nats::topology::ProjectNames;
use umpire_otlp::buffered::BufferedSpan;
use umpire_runtime::retry::Backoff;

use super::buffer::MessageKey;
use super::span_messages::{self, EncodedSpans};

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

/// Fence slots one job takes, so the messages it sends before awaiting their acknowledgements
/// (several jobs of one partition run at once within its [`super::partitions::FENCE_SLOTS`]).
const SLOTS_PER_JOB: usize = 32;

/// What a job's publication came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Published {
    /// Where the job's messages are in the span stream (a duplicate's is the stored
    /// original's); a message may carry several spans.
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
    let budget = umpire_nats::connect::payload_budget(&client);
    let encoded = span_messages::encode(names, &job.spans, budget);
    // One slot per message in flight, and one for the summary when every span was
    // dead-lettered.
    let wanted = encoded.messages.len().max(usize::from(job.trace.is_some()));
    let taken = fence.take(js, wanted.min(SLOTS_PER_JOB)).await?;
    let slots = taken.slots();
    let published = publish_spans(js, names, slots, &encoded).await?;
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
    encoded: &EncodedSpans,
) -> Result<Published, PublishFailure> {
    let mut published = Published::default();
    for chunk in encoded.messages.chunks(slots.len().max(1)) {
        let mut acks = Vec::with_capacity(chunk.len());
        for (message, slot) in chunk.iter().zip(slots) {
            let publish = PublishMessage::build()
                .payload(message.payload.clone())
                .message_id(&message.id);
            let ack = js
                .send_publish(message.subject.clone(), slot.fence().guard(publish))
                .await?;
            acks.push(ack);
        }
        let results = join_all(acks.into_iter().map(|a| a.into_future())).await;
        for (result, message) in results.into_iter().zip(chunk) {
            let ack = result?;
            if ack.duplicate {
                published.duplicates += message.spans as u64;
            }
            published.sequences.push(ack.sequence);
        }
    }
    for letter in &encoded.dead_letters {
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
