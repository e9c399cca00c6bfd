//! One selected span's work: wait for a judging slot, judge, store the evaluation, then
//! acknowledge — keeping the message alive meanwhile — or hand it back; and the dead-letter
//! path for spans that cannot be read.

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, AckKind};
use futures::future::join_all;
use umpire_core::judge::TraceContext;
use umpire_core::score::SpanEvaluation;

use crate::judging::span_evaluation;
use umpire_core::span::Span;
use umpire_runtime::retry::Backoff;

use super::{MAX_DELIVERIES, Shared};

/// Runs `work` while telling JetStream, every third of the ack wait, that `message` is still
/// being worked on. A span waiting for a judging slot or a rate-limited LLM judge would
/// otherwise outlive the ack wait and be redelivered while still queued: judged, and paid
/// for, twice.
pub(super) async fn in_progress<F: std::future::Future>(
    messages: &[&jetstream::Message],
    ack_wait: Duration,
    work: F,
) -> F::Output {
    let every = (ack_wait / 3).max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tokio::pin!(work);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = ticker.tick() => {
                for message in messages {
                    if let Err(e) = Box::pin(message.ack_with(AckKind::Progress)).await {
                        tracing::debug!(event = "progress_ack_failed", error = %e, "telling JetStream a span is in progress failed");
                    }
                }
            }
        }
    }
}

/// Judges one span, publishes its evaluation, and acknowledges it; returns whether stored.
pub(super) async fn judge_and_publish(
    shared: &Shared,
    span: Span,
    message: jetstream::Message,
    context: &TraceContext,
) -> bool {
    let stored = in_progress(
        &[&message],
        shared.settings.ack_wait,
        judge_and_store(shared, span, context),
    )
    .await;
    Box::pin(settle(message, stored)).await;
    stored
}

/// Judges the selected spans of a batch message (each in its own context, as span-level
/// judges see a span), publishes their evaluations, and acknowledges the message once every
/// one is stored; returns whether all were. A batch whose evaluations are not all stored is
/// redelivered whole: the evaluation ids make the second run of the stored ones a duplicate.
pub(super) async fn judge_batch_and_publish(
    shared: &Shared,
    spans: Vec<Span>,
    message: jetstream::Message,
) -> bool {
    let judging = join_all(spans.into_iter().map(|span| async move {
        let context = TraceContext::from_spans([&span]);
        judge_and_store(shared, span, &context).await
    }));
    let stored = in_progress(&[&message], shared.settings.ack_wait, judging)
        .await
        .into_iter()
        .all(|stored| stored);
    Box::pin(settle(message, stored)).await;
    stored
}

/// Acknowledges a message whose evaluations are stored; otherwise lets JetStream redeliver
/// it soon (the same evaluation ids make a second run idempotent).
pub(super) async fn settle(message: jetstream::Message, stored: bool) {
    if stored {
        ack(message).await;
    } else {
        let _ = message
            .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
            .await;
    }
}

/// Waits for a judging slot, judges the span and stores its evaluation; true once stored.
/// The caller keeps the message (the span's, or its trace summary's) alive meanwhile.
pub(super) async fn judge_and_store(shared: &Shared, span: Span, context: &TraceContext) -> bool {
    let Ok(_slot) = shared.slots.acquire().await else {
        return false;
    };
    shared.metrics.in_flight.inc();
    let results = shared.judges.evaluate(&span, context).await;
    for result in &results {
        shared.metrics.record(result);
    }
    let mut evaluation = span_evaluation(
        &shared.settings.policy,
        &shared.settings.group_keys,
        &span,
        results,
    );
    if let Some(drift) = &shared.settings.drift {
        evaluation.embeddings = drift.embed(&span).await;
    }
    // Boxed: the publish future (async-nats' send and its retries) is larger than the rest
    // of the span task together.
    let stored = Box::pin(publish(shared, &evaluation)).await;
    shared.metrics.in_flight.dec();
    stored
}

/// Publishes a span's evaluation (retrying with backoff); true once JetStream stored it.
async fn publish(shared: &Shared, evaluation: &SpanEvaluation) -> bool {
    // An evaluation with code judges is ~0.7–1 KiB: written into room for it at once, not
    // grown from serde_json's 128 bytes by reallocation.
    let mut payload = Vec::with_capacity(1024);
    if serde_json::to_writer(&mut payload, evaluation).is_err() {
        return false;
    }
    let payload = bytes::Bytes::from(payload);
    let subject = &shared.scores_subject;
    for attempt in 0..6 {
        let message = PublishMessage::build()
            .payload(payload.clone())
            .message_id(&evaluation.id);
        let stored = match shared.js.send_publish(subject.clone(), message).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if stored {
            shared.metrics.records_published.inc();
            return true;
        }
        shared.metrics.publish_failures.inc();
        if attempt == 0 {
            tracing::warn!(
                event = "score_publish_failed",
                "publishing scores failed; retrying"
            );
        }
        tokio::time::sleep(Backoff::PUBLISH.delay(attempt)).await;
    }
    false
}

pub(super) async fn ack(message: jetstream::Message) {
    if let Err(e) = message.ack().await {
        tracing::debug!(event = "ack_failed", error = %e, "acknowledging a span failed; it will be redelivered");
    }
}

/// An undecodable span: retried a few times (a transient corruption), then moved to the
/// dead-letter stream with the reason, and acknowledged.
pub(super) async fn poison(shared: &Shared, message: jetstream::Message, reason: String) {
    let delivered = message
        .info()
        .map(|i| i.delivered)
        .unwrap_or(MAX_DELIVERIES);
    if delivered < MAX_DELIVERIES {
        let _ = message
            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
            .await;
        return;
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Umpire-Reason", reason.as_str());
    headers.insert("Umpire-Subject", message.subject.as_str());
    let subject = shared.names.dead_letter_subject(&shared.settings.policy);
    let stored = match shared
        .js
        .publish_with_headers(subject, headers, message.payload.clone())
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    if stored {
        shared.metrics.dead_letters.inc();
        tracing::error!(event = "dead_letter", reason = %reason, delivered, "moved an undecodable span to the dead-letter stream");
        let _ = message.ack_with(AckKind::Term).await;
    } else {
        let _ = message
            .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
            .await;
    }
}
