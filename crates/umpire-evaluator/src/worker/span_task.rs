//! One span message's work: wait for a judging slot per selected span, judge, store the
//! evaluations (one scores message per trace), then acknowledge — keeping the message alive
//! meanwhile — or hand it back; and the dead-letter path for spans that cannot be read.

use std::borrow::Cow;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, AckKind};
use futures::future::join_all;
use umpire_core::judge::TraceContext;
use umpire_core::score::{ScoresMessage, SpanEvaluation, scores_messages};

use crate::judging::{JudgeResult, span_evaluation};
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

/// Judges the selected spans of a span message (each in its own context, as span-level
/// judges see a span), stores their evaluations together — one scores message per trace,
/// as the spans came — and acknowledges the message once they are stored; returns whether
/// they were. A message not stored is redelivered whole; judged again, it makes the same
/// scores message (same id), which JetStream deduplicates if the first one did land.
pub(super) async fn judge_and_publish(
    shared: &Shared,
    spans: &[Span],
    message: jetstream::Message,
) -> bool {
    let judging = async {
        match judge_all(shared, spans, None).await {
            Some(evaluations) => store(shared, &evaluations).await,
            None => false,
        }
    };
    let stored = in_progress(&[&message], shared.settings.ack_wait, judging).await;
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

/// Judges spans in `context` (the whole trace's), or each in its own when none: one after
/// another when every judge of the policy runs inline (code judges, no drift embeddings) —
/// no future, task or judging slot per span — else concurrently, each behind a judging
/// slot. None when the worker is closing. The caller keeps the message (the spans', or
/// their trace summary's) alive meanwhile.
pub(super) async fn judge_all(
    shared: &Shared,
    spans: &[Span],
    context: Option<&TraceContext>,
) -> Option<Vec<SpanEvaluation>> {
    let own_context = |span: &Span| match context {
        Some(context) => Cow::Borrowed(context),
        None => Cow::Owned(TraceContext::from_spans([span])),
    };
    if shared.inline {
        let in_flight = i64::try_from(spans.len()).unwrap_or(i64::MAX);
        shared.metrics.in_flight.inc_by(in_flight);
        let evaluations = spans
            .iter()
            .map(|span| {
                let results = shared.judges.evaluate_inline(span, &own_context(span))?;
                Some(evaluation_of(shared, span, results))
            })
            .collect();
        shared.metrics.in_flight.dec_by(in_flight);
        return evaluations;
    }
    join_all(
        spans
            .iter()
            .map(|span| async move { judge(shared, span, &own_context(span)).await }),
    )
    .await
    .into_iter()
    .collect()
}

/// A judged span's evaluation, its results counted.
fn evaluation_of(shared: &Shared, span: &Span, results: Vec<JudgeResult>) -> SpanEvaluation {
    for result in &results {
        shared.metrics.record(result);
    }
    span_evaluation(
        &shared.settings.policy,
        &shared.settings.group_keys,
        span,
        results,
    )
}

/// Waits for a judging slot and judges the span: its evaluation, or none when the worker
/// is closing.
async fn judge(shared: &Shared, span: &Span, context: &TraceContext) -> Option<SpanEvaluation> {
    let _slot = shared.slots.acquire().await.ok()?;
    shared.metrics.in_flight.inc();
    let results = shared.judges.evaluate(span, context).await;
    let mut evaluation = evaluation_of(shared, span, results);
    if let Some(drift) = &shared.settings.drift {
        evaluation.embeddings = drift.embed(span).await;
    }
    shared.metrics.in_flight.dec();
    Some(evaluation)
}

/// Stores evaluations on the scores stream — those of one trace together, see
/// [`scores_messages`] — each message retried with backoff; true once every one is stored.
pub(super) async fn store(shared: &Shared, evaluations: &[SpanEvaluation]) -> bool {
    let budget = umpire_nats::connect::payload_budget(&shared.js.client());
    let messages = match scores_messages(evaluations, budget) {
        Ok(messages) => messages,
        Err(e) => {
            tracing::error!(event = "score_unencodable", error = %e, "an evaluation cannot be written as a scores record");
            return false;
        }
    };
    // Boxed: the publish future (async-nats' send and its retries) is larger than the rest
    // of the span task together.
    join_all(
        messages
            .into_iter()
            .map(|message| Box::pin(publish(shared, message))),
    )
    .await
    .into_iter()
    .all(|stored| stored)
}

/// Publishes one scores message (retrying with backoff); true once JetStream stored it.
async fn publish(shared: &Shared, message: ScoresMessage) -> bool {
    let payload = bytes::Bytes::from(message.payload);
    let subject = &shared.scores_subject;
    for attempt in 0..6 {
        let publish = PublishMessage::build()
            .payload(payload.clone())
            .message_id(&message.id);
        let stored = match shared.js.send_publish(subject.clone(), publish).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if stored {
            shared
                .metrics
                .evaluations_published
                .inc_by(message.evaluations as u64);
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
    headers.insert(
        "Umpire-Reason",
        umpire_nats::headers::reason_value(&reason).as_str(),
    );
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
