//! Which replica owns which trace partition.
//!
//! Each replica heartbeats `members.<id>` in a per-project KV bucket whose entries expire
//! after the lease TTL, and holds `partitions.<n>` keys through the one lease mechanism
//! ([`umpire_nats::lease`], also behind alert leadership): at most one replica holds a
//! partition at a time, and a crashed replica's partitions free up when its keys expire. Each replica aims for `ceil(partitions / members)` and releases extras,
//! so partitions spread evenly as replicas come and go.

use std::collections::{BTreeMap, BTreeSet};

use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::TryStreamExt;
pub use umpire_nats::lease::LeaseError;
use umpire_nats::lease::{Lease, LeaseBucket};
use umpire_nats::topology::{ProjectNames, ingest_lease_bucket};

use self::share::{ShareAction, plan_share};
pub use self::task::{LeaseCommand, LeaseUpdate, spawn_lease_task};

mod share;
mod task;

/// How long a lease lives without renewal, by default. Renewal happens every third of it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// What changed in one lease round.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LeaseChanges {
    pub acquired: Vec<u32>,
    /// Lost without releasing (renewal failed or too late): stop at once, acknowledge nothing.
    pub lost: Vec<u32>,
    /// Held beyond this replica's fair share: drain, then call [`PartitionLeases::release`].
    pub surplus: Vec<u32>,
    pub members: usize,
}

pub struct PartitionLeases {
    bucket: LeaseBucket,
    /// The bucket's stream: live members are listed from its subjects.
    stream: jetstream::stream::Stream,
    partitions: u32,
    held: BTreeMap<u32, Lease>,
    /// Partitions being drained for release: renewed but not counted towards the share.
    releasing: BTreeSet<u32>,
    /// Changes to `held` the sampling loop has not been told of yet. A round records each
    /// change here as it makes it, so a round cut short (its budget ran out) loses none of
    /// them: a partition acquired but never reported would be renewed by this replica and
    /// served by nobody.
    unreported: LeaseChanges,
}

impl PartitionLeases {
    pub async fn open(
        js: &jetstream::Context,
        names: &ProjectNames,
        member: &str,
        partitions: u32,
        replicas: usize,
        ttl: Duration,
    ) -> Result<Self, LeaseError> {
        let settings = ingest_lease_bucket(names, ttl, replicas);
        let bucket = LeaseBucket::open(js, &settings, member).await?;
        let stream = js
            .get_stream(format!("KV_{}", settings.bucket))
            .await
            .map_err(|e| LeaseError {
                bucket: settings.bucket.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            bucket,
            stream,
            partitions,
            held: BTreeMap::new(),
            releasing: BTreeSet::new(),
            unreported: LeaseChanges {
                members: 1,
                ..LeaseChanges::default()
            },
        })
    }

    pub fn member(&self) -> &str {
        self.bucket.member()
    }

    /// Drops partitions whose last renewal is too old to be sure nobody else holds them
    /// (self-fencing), as lost changes for [`Self::take_changes`].
    pub fn fence(&mut self, now: Instant) {
        let ttl = self.bucket.ttl();
        let stale: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, lease)| !lease.is_valid(now, ttl))
            .map(|(p, _)| *p)
            .collect();
        for partition in stale {
            self.lost(partition);
        }
    }

    /// The changes not reported yet, if any: those of the last round, of a round cut short,
    /// and of self-fencing.
    pub fn take_changes(&mut self) -> LeaseChanges {
        let members = self.unreported.members;
        std::mem::replace(
            &mut self.unreported,
            LeaseChanges {
                members,
                ..LeaseChanges::default()
            },
        )
    }

    fn lost(&mut self, partition: u32) {
        self.held.remove(&partition);
        self.releasing.remove(&partition);
        let unreported = &mut self.unreported;
        unreported.surplus.retain(|p| *p != partition);
        // Acquired and lost before the loop heard of it: the loop has nothing to stop.
        if let Some(at) = unreported.acquired.iter().position(|p| *p == partition) {
            unreported.acquired.remove(at);
        } else {
            unreported.lost.push(partition);
        }
    }

    /// The earliest moment a held partition must be given up unless renewed first.
    pub fn next_fence(&self) -> Option<Instant> {
        let ttl = self.bucket.ttl();
        self.held.values().map(|lease| lease.valid_until(ttl)).min()
    }

    /// This replica's share of the traffic (held partitions / all partitions).
    pub fn share(&self) -> f64 {
        self.held.len() as f64 / f64::from(self.partitions.max(1))
    }

    /// Heartbeat, renew, and rebalance once; the changes not reported yet (this round's and
    /// any a round cut short left). Cancel-safe: a round dropped part-way keeps what it
    /// changed for the next [`Self::take_changes`].
    pub async fn round(&mut self) -> Result<LeaseChanges, LeaseError> {
        let error = |message: String| LeaseError {
            bucket: self.bucket.bucket().to_owned(),
            message,
        };
        let member = self.bucket.member().to_owned();
        let kv = self.bucket.store().clone();
        // The heartbeat carries how many partitions this member counts as its own, so peers
        // can tell when someone is starved.
        let counted = self.held.len() - self.releasing.len();
        kv.put(format!("members.{member}"), counted.to_string().into())
            .await
            .map_err(|e| error(e.to_string()))?;
        // Live members are the member subjects still in the bucket's stream (expired
        // heartbeats are gone); one request, unlike a key-listing consumer.
        let bucket = self.bucket.bucket().to_owned();
        let members: Vec<String> = self
            .stream
            .info_with_subjects(format!("$KV.{bucket}.members.>"))
            .await
            .map_err(|e| error(e.to_string()))?
            .map_ok(|(subject, _)| subject)
            .try_collect()
            .await
            .map_err(|e| error(e.to_string()))?;
        let prefix = format!("$KV.{bucket}.");
        let mut others = Vec::new();
        for subject in &members {
            let Some(key) = subject.strip_prefix(&prefix) else {
                continue;
            };
            if key.strip_prefix("members.") == Some(member.as_str()) {
                continue;
            }
            // A member that left (deleted key) reads as absent.
            if let Some(count) = kv.get(key).await.map_err(|e| error(e.to_string()))? {
                others.push(
                    std::str::from_utf8(&count)
                        .ok()
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0),
                );
            }
        }
        self.unreported.members = others.len() + 1;

        let held: Vec<u32> = self.held.keys().copied().collect();
        for partition in held {
            let Some(lease) = self.held.get_mut(&partition) else {
                continue;
            };
            // A renewal NATS did not answer keeps the lease until its self-fence passes
            // ([`Self::fence`]); one refused means someone else holds it now.
            if let Ok(false) = self.bucket.renew(lease).await {
                self.lost(partition);
            }
        }

        let counted = self.held.len() - self.releasing.len();
        match plan_share(self.partitions, counted, &others) {
            ShareAction::Release(count) => {
                let extras: Vec<u32> = self
                    .held
                    .keys()
                    .rev()
                    .filter(|p| !self.releasing.contains(p))
                    .take(count)
                    .copied()
                    .collect();
                for partition in extras {
                    self.releasing.insert(partition);
                    self.unreported.surplus.push(partition);
                }
            }
            ShareAction::Acquire(mut wanted) if self.releasing.is_empty() => {
                // Start from a member-specific offset so replicas do not all race for partition 0.
                let offset = member
                    .bytes()
                    .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
                for step in 0..self.partitions {
                    if wanted == 0 {
                        break;
                    }
                    let partition = offset.wrapping_add(step) % self.partitions;
                    if self.held.contains_key(&partition) {
                        continue;
                    }
                    if let Ok(Some(lease)) =
                        self.bucket.try_acquire(&partition_key(partition)).await
                    {
                        self.held.insert(partition, lease);
                        self.unreported.acquired.push(partition);
                        wanted -= 1;
                    }
                }
            }
            _ => {}
        }
        Ok(self.take_changes())
    }

    /// Gives a drained partition back.
    pub async fn release(&mut self, partition: u32) {
        self.releasing.remove(&partition);
        if let Some(lease) = self.held.remove(&partition) {
            self.bucket.release(lease).await;
        }
    }

    /// Releases everything and leaves the membership (graceful shutdown).
    pub async fn leave(&mut self) {
        let partitions: Vec<u32> = self.held.keys().copied().collect();
        for partition in partitions {
            self.release(partition).await;
        }
        let member = self.bucket.member().to_owned();
        let _ = self
            .bucket
            .store()
            .delete(format!("members.{member}"))
            .await;
    }
}

fn partition_key(partition: u32) -> String {
    format!("partitions.{partition}")
}
