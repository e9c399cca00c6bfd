//! Intake messages held until every trace they carry is settled (dropped, or kept and its
//! spans acknowledged by the span stream). Only then is the message acknowledged, so a
//! crash at any point means redelivery, never loss.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::{Duration, Instant};

use async_nats::Subject;
use async_nats::jetstream::message::Acker;

use super::buffer::MessageKey;

struct Held {
    acker: Acker,
    /// The message's reply subject, for in-progress acks (an `Acker` cannot be cloned).
    reply: Option<Subject>,
    since: Instant,
    partition: u32,
    references: u32,
}

#[derive(Default)]
pub struct MessageLedger {
    held: HashMap<MessageKey, Held>,
}

impl MessageLedger {
    pub fn contains(&self, key: MessageKey) -> bool {
        self.held.contains_key(&key)
    }

    /// Starts holding a message (or refreshes the acker of a redelivered one).
    pub fn hold(
        &mut self,
        key: MessageKey,
        partition: u32,
        acker: Acker,
        reply: Option<Subject>,
        now: Instant,
    ) {
        match self.held.entry(key) {
            Entry::Occupied(mut held) => {
                let held = held.get_mut();
                held.acker = acker;
                held.reply = reply;
            }
            Entry::Vacant(slot) => {
                slot.insert(Held {
                    acker,
                    reply,
                    since: now,
                    partition,
                    references: 0,
                });
            }
        }
    }

    /// Reply subjects of the messages held longer than `age` (traces waiting for their
    /// root hold theirs for minutes).
    pub fn held_longer_than(&self, now: Instant, age: Duration) -> Vec<Subject> {
        self.held
            .values()
            .filter(|held| held.since + age <= now)
            .filter_map(|held| held.reply.clone())
            .collect()
    }

    pub fn add_reference(&mut self, key: MessageKey) {
        if let Some(held) = self.held.get_mut(&key) {
            held.references += 1;
        }
    }

    /// Drops one reference; returns the acker when none remain.
    pub fn release(&mut self, key: MessageKey) -> Option<Acker> {
        let held = self.held.get_mut(&key)?;
        held.references = held.references.saturating_sub(1);
        if held.references == 0 {
            self.held.remove(&key).map(|h| h.acker)
        } else {
            None
        }
    }

    /// Returns the acker if nothing references the message (it carried only settled spans).
    pub fn release_if_unreferenced(&mut self, key: MessageKey) -> Option<Acker> {
        if self.held.get(&key).is_some_and(|h| h.references == 0) {
            self.held.remove(&key).map(|h| h.acker)
        } else {
            None
        }
    }

    /// Forgets a partition's messages without acknowledging them (the lease was lost: the
    /// new owner receives them again) and returns their ackers, to hand them back at once.
    pub fn forget_partition(&mut self, partition: u32) -> Vec<Acker> {
        let keys: Vec<MessageKey> = self
            .held
            .iter()
            .filter(|(_, held)| held.partition == partition)
            .map(|(key, _)| *key)
            .collect();
        keys.into_iter()
            .filter_map(|key| self.held.remove(&key).map(|held| held.acker))
            .collect()
    }

    pub fn held_for(&self, partition: u32) -> usize {
        self.held
            .values()
            .filter(|h| h.partition == partition)
            .count()
    }
}
