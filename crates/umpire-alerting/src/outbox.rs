//! The outbox: a JetStream stream of notifications awaiting delivery. The leader publishes a
//! notification here *before* it stores the state change that produced it, with the
//! notification's id as `Nats-Msg-Id`: if the leader dies in between, its successor
//! re-derives the same transition with the same id and JetStream drops the duplicate. The
//! stream is bounded (count and age) and refuses new entries when full rather than
//! dropping undelivered ones ([`umpire_nats::topology::outbox_stream`]). A leader's
//! notifications carry its fence ([`umpire_nats::fence`]): a leader paused past its lease
//! cannot add a notification once its successor claimed the policy.

use async_nats::jetstream::{self, message::PublishMessage};
use umpire_core::alert::notification::Notification;
use umpire_nats::fence::{Fence, is_fenced};
use umpire_nats::topology::ProjectNames;

#[derive(Debug, thiserror::Error)]
#[error("publishing notification {id} to the outbox: {message}")]
pub struct OutboxError {
    pub id: String,
    pub message: String,
    /// A newer leader claimed the policy: this replica must stop notifying.
    pub fenced: bool,
}

/// The subject of the policy's epoch marker in the outbox stream (`_epoch` cannot be a
/// route name, and no notifier consumer reads it).
pub fn epoch_subject(names: &ProjectNames, policy: &str) -> String {
    names.notifications_subject(policy, "_epoch")
}

/// Stores a notification durably (waits for JetStream's acknowledgement), guarded by the
/// leader's `fence` when given. Returns whether it was new (false: a duplicate of one
/// already stored).
pub async fn publish(
    js: &jetstream::Context,
    subject: &str,
    notification: &Notification,
    fence: Option<&Fence>,
) -> Result<bool, OutboxError> {
    let id = notification.id();
    let error = |message: String, fenced: bool| OutboxError {
        id: id.clone(),
        message,
        fenced,
    };
    let payload = serde_json::to_vec(notification).map_err(|e| error(e.to_string(), false))?;
    let mut message = PublishMessage::build()
        .payload(payload.into())
        .message_id(&id);
    if let Some(fence) = fence {
        message = fence.guard(message);
    }
    let ack = js
        .send_publish(subject.to_owned(), message)
        .await
        .map_err(|e| error(e.to_string(), is_fenced(&e)))?
        .await
        .map_err(|e| error(e.to_string(), is_fenced(&e)))?;
    Ok(!ack.duplicate)
}
