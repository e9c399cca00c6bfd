//! The outbox: a JetStream stream of notifications awaiting delivery. The leader publishes a
//! notification here *before* it stores the state change that produced it, with the
//! notification's id as `Nats-Msg-Id`: if the leader dies in between, its successor
//! re-derives the same transition with the same id and JetStream drops the duplicate. The
//! stream is bounded (count and age) and refuses new entries when full rather than
//! dropping undelivered ones ([`umpire_nats::topology::outbox_stream`]).

use async_nats::jetstream::{self, message::PublishMessage};
use umpire_core::alert::notification::Notification;

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
