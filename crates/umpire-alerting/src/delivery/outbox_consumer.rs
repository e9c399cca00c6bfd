//! The outbox consumer: one notification in flight per policy, retried until the receiver
//! answers for good.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use umpire_core::alert::notification::Notification;
use umpire_nats::topology::NOTIFIER_ACK_WAIT;
use umpire_runtime::retry::Backoff;

use super::report::DeliveryOutcome;
use super::{Attempt, DeadLetters, Notifier, unix_nanos};
use crate::metrics::{DeliveryLabels, RouteLabels};

/// Delivers notifications until shutdown. Runs on every replica; the consumer hands each
/// notification to one of them at a time.
pub async fn run_deliveries(
    consumer: consumer::PullConsumer,
    notifier: Arc<Notifier>,
    dead_letters: DeadLetters,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let messages = consumer
            .stream()
            .max_messages_per_batch(1)
            .expires(Duration::from_secs(5))
            .messages()
            .await;
        let mut messages = match messages {
            Ok(messages) => {
                failures = 0;
                messages
            }
            Err(e) => {
                tracing::warn!(event = "notifier_pull_failed", error = %e, "retrying");
                if !Backoff::SET_UP.wait(failures, &shutdown).await {
                    return;
                }
                failures = failures.saturating_add(1);
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    if let Ok(info) = message.info() {
                        notifier.metrics.outbox_pending.set(info.pending as i64 + 1);
                    }
                    deliver(&notifier, &dead_letters, message, &shutdown).await;
                    notifier.metrics.outbox_pending.dec();
                }
                Some(Err(e)) => {
                    tracing::warn!(event = "notifier_pull_failed", error = %e, "re-subscribing");
                    break;
                }
                None => break,
            }
        }
    }
}

async fn deliver(
    notifier: &Notifier,
    dead_letters: &DeadLetters,
    message: jetstream::Message,
    shutdown: &CancellationToken,
) {
    let notification: Notification = match serde_json::from_slice(&message.payload) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(event = "notification_undecodable", error = %e, "dropping an undecodable outbox entry");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let route = RouteLabels {
        route: notification.route.clone(),
    };
    let due = notification.due_unix_nano;
    let mut attempt = 0u32;
    let mut last_progress = Instant::now();
    loop {
        if attempt == 0 {
            let delay = unix_nanos(SystemTime::now()).saturating_sub(due) as f64 / 1e9;
            notifier.metrics.delay.get_or_create(&route).observe(delay);
        }
        let outcome = notifier.attempt(&notification).await;
        match outcome {
            Attempt::Delivered => {
                let took = unix_nanos(SystemTime::now()).saturating_sub(due) as f64 / 1e9;
                notifier
                    .metrics
                    .delivery_time
                    .get_or_create(&route)
                    .observe(took);
                finish(notifier, &notification, "delivered");
                notifier.report(
                    &notification,
                    DeliveryOutcome::Delivered {
                        attempts: attempt + 1,
                    },
                );
                // Logged once the outbox has the ack: a replica that dies between the
                // receiver's answer and this ack sends the notification again (same dedup
                // key, which PagerDuty folds into the same incident).
                let acked = message.double_ack().await.is_ok();
                tracing::info!(event = "notification_delivered", id = %notification.id(), route = %notification.route, attempts = attempt + 1, acked, "notification delivered");
                return;
            }
            Attempt::Printed(body) => {
                finish(notifier, &notification, "printed");
                notifier.report(&notification, DeliveryOutcome::Printed(body));
                let _ = message.double_ack().await;
                return;
            }
            Attempt::Rejected(reason) => {
                finish(notifier, &notification, "rejected");
                notifier.report(&notification, DeliveryOutcome::Rejected(reason.clone()));
                tracing::error!(event = "notification_rejected", id = %notification.id(), route = %notification.route, reason, "the receiver rejected the notification; not retrying");
                let _ = message.double_ack().await;
                return;
            }
            Attempt::Retry { reason, after } => {
                let max_age = notifier.max_delivery_age(&notification.route);
                let age = Duration::from_nanos(unix_nanos(SystemTime::now()).saturating_sub(due));
                if age >= max_age
                    && dead_letters
                        .store(&notification, &format!("retried for {age:?}: {reason}"))
                        .await
                {
                    finish(notifier, &notification, "dead_lettered");
                    notifier.metrics.dead_lettered.get_or_create(&route).inc();
                    notifier.report(
                        &notification,
                        DeliveryOutcome::DeadLettered {
                            attempts: attempt + 1,
                            reason: reason.clone(),
                        },
                    );
                    tracing::error!(event = "notification_dead_lettered", id = %notification.id(), route = %notification.route, attempts = attempt + 1, reason, age_seconds = age.as_secs(), "gave up on a notification after the route's maxDeliveryAge; stored on the dead-letter stream");
                    let _ = message.double_ack().await;
                    return;
                }
                let wait = after.unwrap_or_else(|| notifier.backoff(attempt));
                notifier.report(
                    &notification,
                    DeliveryOutcome::Retrying {
                        attempt: attempt + 1,
                        reason: reason.clone(),
                    },
                );
                tracing::warn!(event = "notification_retry", id = %notification.id(), route = %notification.route, attempt = attempt + 1, reason, wait_ms = wait.as_millis() as u64, "delivery failed; retrying");
                attempt += 1;
                let deadline = Instant::now() + wait;
                while Instant::now() < deadline {
                    // Keep the message ours while we wait.
                    if last_progress.elapsed() >= NOTIFIER_ACK_WAIT / 3 {
                        let _ = message.ack_with(AckKind::Progress).await;
                        last_progress = Instant::now();
                    }
                    let step = deadline
                        .saturating_duration_since(Instant::now())
                        .min(NOTIFIER_ACK_WAIT / 3);
                    tokio::select! {
                        _ = shutdown.cancelled() => {
                            // Hand it to another replica at once.
                            let _ = message.ack_with(AckKind::Nak(None)).await;
                            return;
                        }
                        _ = tokio::time::sleep(step) => {}
                    }
                }
            }
        }
    }
}

fn finish(notifier: &Notifier, notification: &Notification, outcome: &'static str) {
    notifier
        .metrics
        .deliveries
        .get_or_create(&DeliveryLabels {
            route: notification.route.clone(),
            outcome,
        })
        .inc();
}
