//! A policy with a trace-level judge judges whole traces: ingest publishes a summary of each
//! kept trace once it is decided (after its root span arrived, or at the trace timeout as
//! incomplete); the evaluator reads the trace's spans back from the span stream by the
//! sequences the summary names — nothing is gathered in memory while a long agent run is
//! still going — judges the selected spans with the whole trace as context, and
//! acknowledges the summary once every evaluation is stored.

use async_nats::jetstream;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use futures::StreamExt;
use futures::future::join_all;
use umpire_core::judge::TraceContext;
use umpire_core::span::Span;
use umpire_core::trace_summary::TraceSummary;

use super::Shared;
use super::span_task::{in_progress, judge_and_store, poison, settle};
use crate::metrics::ReasonLabels;

/// Most spans of one trace read back; a larger trace is judged as incomplete `too_large`.
const MAX_TRACE_SPANS: usize = 10_000;
/// Most bytes of one trace read back (encoded spans), likewise.
const MAX_TRACE_BYTES: usize = 32 << 20;
/// Span reads in flight per trace.
const READS_IN_FLIGHT: usize = 32;

/// Traces read back and judged at once: each may hold up to `MAX_TRACE_BYTES`, so this —
/// not the judging concurrency — bounds the memory trace-level policies take.
pub(super) fn assemblies(concurrency: usize) -> usize {
    concurrency.clamp(4, 16)
}

pub(super) async fn judge_trace(shared: &Shared, message: jetstream::Message) {
    let summary: TraceSummary = match serde_json::from_slice(&message.payload) {
        Ok(summary) => summary,
        Err(e) => return poison(shared, message, format!("trace summary: {e}")).await,
    };
    let judged = in_progress(
        &[&message],
        shared.settings.ack_wait,
        judge_summary(shared, summary),
    )
    .await;
    settle(message, judged).await;
}

/// Reads the trace back, judges its selected spans; true once every evaluation is stored.
async fn judge_summary(shared: &Shared, summary: TraceSummary) -> bool {
    let Ok(_assembly) = shared.assemblies.acquire().await else {
        return false;
    };
    let trace = match read_back(shared, &summary).await {
        Ok(trace) => trace,
        Err(e) => {
            tracing::warn!(event = "trace_read_failed", trace_id = %summary.trace_id, error = %e, "reading a trace back from the span stream failed; it will be retried");
            return false;
        }
    };
    let metrics = &shared.metrics;
    metrics.traces_read.inc();
    metrics.spans_consumed.inc_by(trace.spans.len() as u64);
    if trace.missing > 0 {
        metrics.trace_spans_missing.inc_by(trace.missing);
    }
    let mut context = TraceContext::from_spans(&trace.spans);
    context.incomplete = trace.incomplete;
    if let Some(reason) = &context.incomplete {
        metrics
            .traces_incomplete
            .get_or_create(&ReasonLabels {
                reason: reason.clone(),
            })
            .inc();
        tracing::info!(event = "trace_incomplete", trace_id = %summary.trace_id, reason = %reason, spans = trace.spans.len(), "judging an incomplete trace: trace-level judges report incomplete_trace");
    }
    let selected: Vec<Span> = trace
        .spans
        .into_iter()
        .filter(|span| shared.selector.selects(span, true))
        .collect();
    metrics.spans_selected.inc_by(selected.len() as u64);
    let context = &context;
    join_all(
        selected
            .into_iter()
            .map(|span| judge_and_store(shared, span, context)),
    )
    .await
    .into_iter()
    .all(|stored| stored)
}

struct ReadTrace {
    spans: Vec<Span>,
    incomplete: Option<String>,
    /// Named by the summary, no longer in the stream.
    missing: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("span stream message {sequence}: {message}")]
struct ReadError {
    sequence: u64,
    message: String,
}

async fn read_back(shared: &Shared, summary: &TraceSummary) -> Result<ReadTrace, ReadError> {
    let stream = shared
        .js
        .get_stream_no_info(shared.names.spans_stream())
        .await
        .map_err(|e| ReadError {
            sequence: 0,
            message: e.to_string(),
        })?;
    let mut incomplete = summary.incomplete.clone();
    let named = summary.span_count();
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
            Some((span, size)) => {
                bytes += size;
                if bytes > MAX_TRACE_BYTES {
                    incomplete.get_or_insert_with(|| "too_large".into());
                    break;
                }
                spans.push(span);
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

/// One span by its sequence; `None` when the stream no longer holds it (removed by its
/// limits) or it cannot be decoded (the span path dead-letters such messages).
async fn read_span(stream: &Stream<()>, sequence: u64) -> Result<Option<(Span, usize)>, ReadError> {
    match stream.get_raw_message(sequence).await {
        Ok(message) => Ok(serde_json::from_slice::<Span>(&message.payload)
            .ok()
            .map(|span| (span, message.payload.len()))),
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
