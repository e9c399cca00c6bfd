//! A policy with a trace-level judge judges whole traces: ingest publishes a summary of each
//! kept trace once it is decided (after its root span arrived, or at the trace timeout as
//! incomplete); the evaluator reads the trace's spans back from the span stream by the
//! sequences the summary names — nothing is gathered in memory while a long agent run is
//! still going — judges the selected spans with the whole trace as context, stores their
//! evaluations together, and acknowledges the summary once they are stored.

use async_nats::jetstream;
use umpire_contract::traces::read_back;
use umpire_core::judge::TraceContext;
use umpire_core::span::Span;
use umpire_core::trace_summary::TraceSummary;

use super::Shared;
use super::span_task::{in_progress, judge_all, poison, settle, store};
use crate::metrics::ReasonLabels;

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
    let trace = match read_back(&shared.js, &shared.names, &summary).await {
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
        metrics.trace_span_messages_missing.inc_by(trace.missing);
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
    match judge_all(shared, &selected, Some(&context)).await {
        Some(evaluations) => store(shared, &evaluations).await,
        None => false,
    }
}
