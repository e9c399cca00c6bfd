//! Fencing tokens for a leader's writes. A lease tells a replica it may lead; it cannot stop
//! a replica that was paused (GC, SIGSTOP, a frozen VM) past its lease from finishing a
//! write it started before the pause, beside its successor. So each leader, on taking the
//! lease, publishes an epoch marker to a subject of the stream it writes to, and every write
//! carries that marker's sequence as the expected last sequence of the marker's subject
//! (`Nats-Expected-Last-Subject-Sequence` with `…-Subject`, JetStream 2.11+): once a
//! successor has published its own marker, JetStream refuses the old leader's writes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    context::{PublishError, PublishErrorKind},
    message::PublishMessage,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// A fence that many concurrent writes can carry: one marker subject per slot.
///
/// In a clustered stream JetStream refuses a write that expects a subject's last sequence
/// while another such write on the same subject is still being replicated ("last sequence
/// by subject mismatch"), so one marker subject would allow one write in flight per
/// round trip. Each write here holds a slot of its own for as long as it is in flight: as
/// many writes run at once as there are slots, and a successor's claim marks every slot.
/// Markers are rolled up (one message per slot subject), and a slot's marker older than
/// [`SlottedFence::REFRESH_AFTER`] is re-published, guarded by itself, when the slot is
/// next taken — so stream limits that remove the oldest messages (`max_age`, `max_bytes`
/// with discard old) do not remove a marker in use. A marker removed anyway reads as a
/// newer owner's: the holder stops and claims again.
pub struct SlottedFence {
    holder: String,
    size: usize,
    refresh_after: Duration,
    free: Mutex<Vec<Slot>>,
    permits: Arc<Semaphore>,
    revoked: AtomicBool,
}

/// One slot: its marker's subject, the marker's sequence, and when it was written.
#[derive(Debug, Clone)]
pub struct Slot {
    fence: Fence,
    marked_at: Instant,
}

impl Slot {
    pub fn fence(&self) -> &Fence {
        &self.fence
    }
}

/// The slots one writer holds; given back on drop.
pub struct TakenSlots<'a> {
    owner: &'a SlottedFence,
    slots: Vec<Slot>,
    _permit: OwnedSemaphorePermit,
}

impl TakenSlots<'_> {
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }
}

impl Drop for TakenSlots<'_> {
    fn drop(&mut self) {
        if let Ok(mut free) = self.owner.free.lock() {
            free.append(&mut self.slots);
        }
    }
}

/// Why a write under a [`SlottedFence`] did not happen.
#[derive(Debug, thiserror::Error)]
pub enum FencedWriteError {
    /// A newer holder has claimed the fence (or its marker is gone): stop writing.
    #[error("fenced: a newer owner has claimed {0}")]
    Fenced(String),
    #[error("{0}")]
    Publish(PublishError),
}

impl From<PublishError> for FencedWriteError {
    fn from(error: PublishError) -> Self {
        if is_fenced(&error) {
            Self::Fenced(error.to_string())
        } else {
            Self::Publish(error)
        }
    }
}

impl SlottedFence {
    /// A slot whose marker is older than this is re-marked before it guards a write.
    pub const REFRESH_AFTER: Duration = Duration::from_secs(60);

    /// Marks every slot `<prefix>.<slot>` for `holder`: from here on, writes guarded by any
    /// earlier holder's markers are refused.
    pub async fn claim(
        js: &jetstream::Context,
        prefix: &str,
        holder: &str,
        slots: usize,
    ) -> Result<Self, PublishError> {
        let mut acks = Vec::with_capacity(slots);
        for slot in 0..slots {
            let subject = format!("{prefix}.{slot}");
            let ack = js
                .send_publish(subject.clone(), Self::marker(holder))
                .await?;
            acks.push((subject, ack));
        }
        let mut free = Vec::with_capacity(slots);
        for (subject, ack) in acks {
            let ack = ack.await?;
            free.push(Slot {
                fence: Fence {
                    subject,
                    sequence: ack.sequence,
                },
                marked_at: Instant::now(),
            });
        }
        // Taken from the end: slot 0 first.
        free.reverse();
        Ok(Self {
            holder: holder.to_owned(),
            size: slots,
            refresh_after: Self::REFRESH_AFTER,
            free: Mutex::new(free),
            permits: Arc::new(Semaphore::new(slots)),
            revoked: AtomicBool::new(false),
        })
    }

    /// Re-marks slots older than `after` instead of [`Self::REFRESH_AFTER`].
    pub fn refresh_after(mut self, after: Duration) -> Self {
        self.refresh_after = after;
        self
    }

    fn marker(holder: &str) -> PublishMessage {
        PublishMessage::build()
            .payload(holder.to_owned().into())
            .header(async_nats::header::NATS_ROLLUP, "sub")
    }

    /// Whether a write under this fence was refused: every later write would be too.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Relaxed)
    }

    /// Takes `count` slots (at most all of them), waiting for writers to give theirs back,
    /// and re-marks those whose marker is due ([`Self::REFRESH_AFTER`]).
    pub async fn take(
        &self,
        js: &jetstream::Context,
        count: usize,
    ) -> Result<TakenSlots<'_>, FencedWriteError> {
        if self.is_revoked() {
            return Err(FencedWriteError::Fenced(format!(
                "{}: an earlier write was refused",
                self.holder
            )));
        }
        let count = count.clamp(1, self.size.max(1));
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(u32::try_from(count).unwrap_or(u32::MAX))
            .await
            .map_err(|_| FencedWriteError::Fenced("the fence was closed".into()))?;
        let slots = {
            let mut free = self
                .free
                .lock()
                .map_err(|_| FencedWriteError::Fenced("the fence was poisoned".into()))?;
            let from = free.len().saturating_sub(count);
            free.split_off(from)
        };
        let mut taken = TakenSlots {
            owner: self,
            slots,
            _permit: permit,
        };
        if let Err(e) = self.refresh(js, &mut taken.slots).await {
            if matches!(e, FencedWriteError::Fenced(_)) {
                self.revoke();
            }
            return Err(e);
        }
        Ok(taken)
    }

    async fn refresh(
        &self,
        js: &jetstream::Context,
        slots: &mut [Slot],
    ) -> Result<(), FencedWriteError> {
        let mut acks = Vec::new();
        for (index, slot) in slots.iter().enumerate() {
            if slot.marked_at.elapsed() < self.refresh_after {
                continue;
            }
            let message = slot.fence.guard(Self::marker(&self.holder));
            let ack = js.send_publish(slot.fence.subject.clone(), message).await?;
            acks.push((index, ack));
        }
        for (index, ack) in acks {
            let ack = ack.await?;
            slots[index] = Slot {
                fence: Fence {
                    subject: slots[index].fence.subject.clone(),
                    sequence: ack.sequence,
                },
                marked_at: Instant::now(),
            };
        }
        Ok(())
    }

    /// Records that a guarded write was refused: later takes fail at once.
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Relaxed);
    }
}
