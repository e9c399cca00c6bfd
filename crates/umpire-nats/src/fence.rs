//! Fencing tokens for a leader's writes. A lease tells a replica it may lead; it cannot stop
//! a replica that was paused (GC, SIGSTOP, a frozen VM) past its lease from finishing a
//! write it started before the pause, beside its successor. So each leader, on taking the
//! lease, publishes an epoch marker to a subject of the stream it writes to, and every write
//! carries that marker's sequence as the expected last sequence of the marker's subject
//! (`Nats-Expected-Last-Subject-Sequence` with `…-Subject`, JetStream 2.11+): once a
//! successor has published its own marker, JetStream refuses the old leader's writes.

use async_nats::jetstream::{
    self,
    context::{PublishError, PublishErrorKind},
    message::PublishMessage,
};

/// Names the subject `Nats-Expected-Last-Subject-Sequence` applies to, when it is not the
/// published message's own.
pub const EXPECTED_SUBJECT_HEADER: &str = "Nats-Expected-Last-Subject-Sequence-Subject";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    subject: String,
    sequence: u64,
}

impl Fence {
    /// Publishes a new epoch marker for `holder` on `subject` and returns the fence its
    /// writes carry. Any earlier holder's fence stops working from here on.
    pub async fn claim(
        js: &jetstream::Context,
        subject: &str,
        holder: &str,
    ) -> Result<Self, PublishError> {
        let ack = js
            .publish(subject.to_owned(), holder.to_owned().into())
            .await?
            .await?;
        Ok(Self {
            subject: subject.to_owned(),
            sequence: ack.sequence,
        })
    }

    /// `message`, accepted by JetStream only while this fence is the latest.
    pub fn guard(&self, message: PublishMessage) -> PublishMessage {
        message
            .expected_last_subject_sequence(self.sequence)
            .header(EXPECTED_SUBJECT_HEADER, self.subject.as_str())
    }

    pub fn sequence(&self) -> u64 {
        self.sequence
    }
}

/// Whether JetStream refused a guarded write because a newer fence exists.
pub fn is_fenced(error: &PublishError) -> bool {
    error.kind() == PublishErrorKind::WrongLastSequence
}
