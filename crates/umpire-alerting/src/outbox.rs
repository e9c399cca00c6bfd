//! The outbox: a JetStream stream of notifications awaiting delivery. The leader publishes a
//! notification here *before* it stores the state change that produced it, with the
//! notification's id as `Nats-Msg-Id`: if the leader dies in between, its successor
//! re-derives the same transition with the same id and JetStream drops the duplicate. The
//! stream is bounded (count and age) and refuses new entries when full rather than
//! dropping undelivered ones.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use umpire_core::alert::notification::Notification;
use umpire_nats::names::ProjectNames;

/// Notifications kept undelivered at most (per project).
pub const OUTBOX_MAX_MESSAGES: i64 = 100_000;
/// How long an undeliverable notification is retried before JetStream ages it out.
pub const OUTBOX_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Re-derived notifications within this window of the original are dropped as duplicates;
/// it exceeds any leader hand-over by far.
pub const OUTBOX_DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 3600);

pub fn outbox_stream_config(names: &ProjectNames, replicas: usize) -> stream::Config {
    stream::Config {
        name: names.notifications_stream(),
        description: Some(format!(
            "Umpire: alert notifications of TraceProject {}/{} awaiting delivery",
            names.namespace(),
            names.project()
        )),
        subjects: vec![names.notifications_wildcard()],
        max_messages: OUTBOX_MAX_MESSAGES,
        max_age: OUTBOX_MAX_AGE,
        duplicate_window: OUTBOX_DUPLICATE_WINDOW,
        discard: stream::DiscardPolicy::New,
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        ..Default::default()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("publishing notification {id} to the outbox: {message}")]
pub struct OutboxError {
    pub id: String,
    pub message: String,
}

/// Stores a notification durably (waits for JetStream's acknowledgement). Returns whether
/// it was new (false: a duplicate of one already stored).
pub async fn publish(
    js: &jetstream::Context,
    subject: &str,
    notification: &Notification,
) -> Result<bool, OutboxError> {
    let id = notification.id();
    let error = |message: String| OutboxError {
        id: id.clone(),
        message,
    };
    let payload = serde_json::to_vec(notification).map_err(|e| error(e.to_string()))?;
    let message = PublishMessage::build()
        .payload(payload.into())
        .message_id(&id);
    let ack = js
        .send_publish(subject.to_owned(), message)
        .await
        .map_err(|e| error(e.to_string()))?
        .await
        .map_err(|e| error(e.to_string()))?;
    Ok(!ack.duplicate)
}
