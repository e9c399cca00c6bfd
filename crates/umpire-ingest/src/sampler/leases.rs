//! Which replica owns which trace partition.
//!
//! Each replica heartbeats `members.<id>` in a per-project KV bucket whose entries expire
//! after the lease TTL, and holds `partitions.<n>` keys created with compare-and-set: at most
//! one replica holds a partition at a time, and a crashed replica's partitions free up when
//! its keys expire. Each replica aims for `ceil(partitions / members)` and releases extras,
//! so partitions spread evenly as replicas come and go.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;
use umpire_nats::kv::{BucketSettings, ensure_bucket};

/// How long a lease lives without renewal, by default. Renewal happens every third of it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
#[error("partition leases ({bucket}): {message}")]
pub struct LeaseError {
    bucket: String,
    message: String,
}

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
    kv: kv::Store,
    bucket: String,
    member: String,
    partitions: u32,
    /// A holder stops using a partition when its last renewal is older than this (4/5 of
    /// the TTL), so it stops before the key can expire and be taken by another replica.
    self_fence: Duration,
    /// Partition → (KV revision, last successful renewal).
    held: BTreeMap<u32, (u64, Instant)>,
    /// Partitions being drained for release: renewed but not counted towards the share.
    releasing: BTreeSet<u32>,
}

impl PartitionLeases {
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        member: &str,
        partitions: u32,
        replicas: usize,
        ttl: Duration,
    ) -> Result<Self, LeaseError> {
        let error = |message: String| LeaseError {
            bucket: bucket.to_owned(),
            message,
        };
        let settings = BucketSettings {
            bucket: bucket.to_owned(),
            description: "Umpire ingest membership and trace-partition leases".into(),
            history: 1,
            max_age: ttl,
            replicas,
        };
        let kv = ensure_bucket(js, &settings)
            .await
            .map_err(|e| error(e.to_string()))?;
        Ok(Self {
            kv,
            bucket: bucket.to_owned(),
            member: member.to_owned(),
            partitions,
            self_fence: ttl * 4 / 5,
            held: BTreeMap::new(),
            releasing: BTreeSet::new(),
        })
    }

    pub fn member(&self) -> &str {
        &self.member
    }

    /// Partitions this replica may process now (held and renewed recently enough).
    pub fn usable(&self, now: Instant) -> BTreeSet<u32> {
        self.held
            .iter()
            .filter(|(_, (_, renewed))| now.duration_since(*renewed) < self.self_fence)
            .map(|(p, _)| *p)
            .collect()
    }

    /// This replica's share of the traffic (held partitions / all partitions).
    pub fn share(&self) -> f64 {
        self.held.len() as f64 / f64::from(self.partitions.max(1))
    }

    /// Heartbeat, renew, and rebalance once.
    pub async fn round(&mut self, now: Instant) -> Result<LeaseChanges, LeaseError> {
        let error = |message: String| LeaseError {
            bucket: self.bucket.clone(),
            message,
        };
        let mut changes = LeaseChanges::default();
        self.kv
            .put(
                format!("members.{}", self.member),
                self.member.clone().into(),
            )
            .await
            .map_err(|e| error(e.to_string()))?;
        let keys: Vec<String> = self
            .kv
            .keys()
            .await
            .map_err(|e| error(e.to_string()))?
            .try_collect()
            .await
            .map_err(|e| error(e.to_string()))?;
        changes.members = keys
            .iter()
            .filter(|k| k.starts_with("members."))
            .count()
            .max(1);

        let held: Vec<(u32, u64)> = self.held.iter().map(|(p, (rev, _))| (*p, *rev)).collect();
        for (partition, revision) in held {
            // Compare-and-set on our last revision: it succeeds only if nobody else took the
            // partition meanwhile (and the key did not expire).
            match self
                .kv
                .update(
                    partition_key(partition),
                    self.member.clone().into(),
                    revision,
                )
                .await
            {
                Ok(revision) => {
                    self.held.insert(partition, (revision, now));
                }
                Err(_) => {
                    self.held.remove(&partition);
                    self.releasing.remove(&partition);
                    changes.lost.push(partition);
                }
            }
        }

        let fair = self.partitions.div_ceil(changes.members as u32) as usize;
        let counted = self.held.len() - self.releasing.len();
        if counted > fair {
            let extras: Vec<u32> = self
                .held
                .keys()
                .rev()
                .filter(|p| !self.releasing.contains(p))
                .take(counted - fair)
                .copied()
                .collect();
            for partition in extras {
                self.releasing.insert(partition);
                changes.surplus.push(partition);
            }
        } else if counted < fair && self.releasing.is_empty() {
            // Start from a member-specific offset so replicas do not all race for partition 0.
            let offset = self
                .member
                .bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            let mut wanted = fair - counted;
            for step in 0..self.partitions {
                if wanted == 0 {
                    break;
                }
                let partition = (offset.wrapping_add(step)) % self.partitions;
                if self.held.contains_key(&partition) {
                    continue;
                }
                if let Ok(revision) = self
                    .kv
                    .create(partition_key(partition), self.member.clone().into())
                    .await
                {
                    self.held.insert(partition, (revision, now));
                    changes.acquired.push(partition);
                    wanted -= 1;
                }
            }
        }
        Ok(changes)
    }

    /// Gives a drained partition back.
    pub async fn release(&mut self, partition: u32) {
        self.releasing.remove(&partition);
        if let Some((revision, _)) = self.held.remove(&partition) {
            let _ = self
                .kv
                .delete_expect_revision(partition_key(partition), Some(revision))
                .await;
        }
    }

    /// Releases everything and leaves the membership (graceful shutdown).
    pub async fn leave(&mut self) {
        let partitions: Vec<u32> = self.held.keys().copied().collect();
        for partition in partitions {
            self.release(partition).await;
        }
        let _ = self.kv.delete(format!("members.{}", self.member)).await;
    }
}

fn partition_key(partition: u32) -> String {
    format!("partitions.{partition}")
}
