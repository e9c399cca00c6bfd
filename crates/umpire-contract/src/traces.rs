//! A kept trace read back from the span stream by the sequences its summary names (ingest
//! publishes a summary of each decided trace after its spans; a sequence holds one span or
//! a batch of them): what trace-level judges and outcome-based export use, so nothing is
//! gathered in memory while a long agent run goes on.

use async_nats::jetstream;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use futures::StreamExt;
use umpire_core::span::{Span, spans_of_message};
use umpire_core::trace_summary::TraceSummary;
use umpire_nats::topology::ProjectNames;

/// Most spans of one trace read back; a larger trace is incomplete `too_large`.
pub const MAX_TRACE_SPANS: usize = 10_000;
/// Most bytes of one trace read back (encoded spans), likewise.
pub const MAX_TRACE_BYTES: usize = 32 << 20;
/// Span reads in flight per trace.
const READS_IN_FLIGHT: usize = 32;

pub struct ReadTrace {
    pub spans: Vec<Span>,
    pub incomplete: Option<String>,
    /// Messages named by the summary, no longer in the stream (each held one span or a
    /// batch).
    pub missing: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("span stream message {sequence}: {message}")]
pub struct ReadError {
    sequence: u64,
    message: String,
}

/// The spans the summary names, read from the span stream by sequence (at most
/// [`MAX_TRACE_SPANS`] and [`MAX_TRACE_BYTES`]; past them, or with spans the stream no
/// longer holds, the trace is marked incomplete).
pub async fn read_back(
    js: &jetstream::Context,
    names: &ProjectNames,
    summary: &TraceSummary,
) -> Result<ReadTrace, ReadError> {
    let stream = js
        .get_stream_no_info(names.spans_stream())
        .await
        .map_err(|e| ReadError {
            sequence: 0,
            message: e.to_string(),
        })?;
    let mut incomplete = summary.incomplete.clone();
    let named = summary.message_count();
    if named > MAX_TRACE_SPANS as u64 {
        incomplete.get_or_insert_with(|| "too_large".into());
    }
    let stream = &stream;
    let mut reads = futures::stream::iter(summary.sequences().take(MAX_TRACE_SPANS))
        .map(|sequence| read_span(stream, sequence))
        .buffered(READS_IN_FLIGHT);
    let (mut spans, mut missing, mut bytes) = (Vec::new(), 0u64, 0usize);
    while let Some(read) = reads.next().await {
        match read? {
            Some((batch, size)) => {
                bytes += size;
                if bytes > MAX_TRACE_BYTES || spans.len() + batch.len() > MAX_TRACE_SPANS {
                    incomplete.get_or_insert_with(|| "too_large".into());
                    break;
                }
                spans.extend(batch);
            }
            None => missing += 1,
        }
    }
    if missing > 0 {
        incomplete.get_or_insert_with(|| "spans_missing".into());
    }
    Ok(ReadTrace {
        spans,
        incomplete,
        missing,
    })
}

/// The span (or batch of spans) stored at a sequence; `None` when the stream no longer holds
/// it (removed by its limits) or it cannot be decoded (the span path dead-letters such
/// messages).
async fn read_span(
    stream: &Stream<()>,
    sequence: u64,
) -> Result<Option<(Vec<Span>, usize)>, ReadError> {
    match stream.get_raw_message(sequence).await {
        Ok(message) => Ok(spans_of_message(&message.payload)
            .ok()
            .map(|spans| (spans, message.payload.len()))),
        Err(e) => match e.kind() {
            LastRawMessageErrorKind::NoMessageFound => Ok(None),
            LastRawMessageErrorKind::JetStream(error)
                if error.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND =>
            {
                Ok(None)
            }
            _ => Err(ReadError {
                sequence,
                message: e.to_string(),
            }),
        },
    }
}
