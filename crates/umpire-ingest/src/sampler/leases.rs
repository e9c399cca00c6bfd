//! Which replica owns which trace partition.
//!
//! Each replica heartbeats `members.<id>` in a per-project KV bucket whose entries expire
//! after the lease TTL, and holds `partitions.<n>` keys through the one lease mechanism
//! ([`umpire_nats::lease`], also behind alert leadership): at most one replica holds a
//! partition at a time, and a crashed replica's partitions free up when its keys expire. Each replica aims for `ceil(partitions / members)` and releases extras,
//! so partitions spread evenly as replicas come and go.

use std::collections::{BTreeMap, BTreeSet};

use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use async_nats::jetstream;
use futures::TryStreamExt;
pub use umpire_nats::lease::LeaseError;
use umpire_nats::lease::{Lease, LeaseBucket};
use umpire_nats::topology::{ProjectNames, ingest_lease_bucket};

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
        })
    }

    pub fn member(&self) -> &str {
        self.bucket.member()
    }

    /// Drops partitions whose last renewal is too old to be sure nobody else holds them
    /// (self-fencing); returns them.
    pub fn fence(&mut self, now: Instant) -> Vec<u32> {
        let ttl = self.bucket.ttl();
        let stale: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, lease)| !lease.is_valid(now, ttl))
            .map(|(p, _)| *p)
            .collect();
        for partition in &stale {
            self.held.remove(partition);
            self.releasing.remove(partition);
        }
        stale
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

    /// Heartbeat, renew, and rebalance once.
    pub async fn round(&mut self) -> Result<LeaseChanges, LeaseError> {
        let error = |message: String| LeaseError {
            bucket: self.bucket.bucket().to_owned(),
            message,
        };
        let member = self.bucket.member().to_owned();
        let kv = self.bucket.store().clone();
        let mut changes = LeaseChanges::default();
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
        changes.members = others.len() + 1;

        let held: Vec<u32> = self.held.keys().copied().collect();
        for partition in held {
            let Some(lease) = self.held.get_mut(&partition) else {
                continue;
            };
            // A renewal NATS did not answer keeps the lease until its self-fence passes
            // ([`Self::fence`]); one refused means someone else holds it now.
            if let Ok(false) = self.bucket.renew(lease).await {
                self.held.remove(&partition);
                self.releasing.remove(&partition);
                changes.lost.push(partition);
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
                    changes.surplus.push(partition);
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
                        changes.acquired.push(partition);
                        wanted -= 1;
                    }
                }
            }
            _ => {}
        }
        Ok(changes)
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

/// What the lease task tells the sampling loop.
#[derive(Debug)]
pub struct LeaseUpdate {
    pub changes: LeaseChanges,
    /// This replica's share of the traffic after the changes.
    pub share: f64,
}

/// What the sampling loop asks of the lease task.
#[derive(Debug)]
pub enum LeaseCommand {
    /// Give a partition back: a surplus one once drained, or one whose fence refused a
    /// publish (released if the lease is still ours, so it can be acquired and claimed
    /// afresh).
    Release(u32),
    /// Release everything and leave; answers when done.
    Leave(tokio::sync::oneshot::Sender<()>),
}

/// Runs lease rounds on their own task, so a slow NATS never stalls sampling: every third of
/// the TTL a round (bounded by that time), and more often a self-fencing check that gives up
/// partitions whose renewal is overdue even while NATS does not answer.
pub fn spawn_lease_task(
    mut leases: PartitionLeases,
    ttl: Duration,
    updates: mpsc::UnboundedSender<LeaseUpdate>,
    mut commands: mpsc::UnboundedReceiver<LeaseCommand>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut rounds = tokio::time::interval(ttl / 3);
        let mut fencing = tokio::time::interval(ttl / 10);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(LeaseCommand::Release(partition)) => {
                        let _ = tokio::time::timeout(ttl / 3, leases.release(partition)).await;
                        let _ = updates.send(LeaseUpdate { changes: LeaseChanges::default(), share: leases.share() });
                    }
                    Some(LeaseCommand::Leave(done)) => {
                        let _ = tokio::time::timeout(ttl / 3, leases.leave()).await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                // A round NATS does not answer must not delay self-fencing: it is cut short at
                // the earliest fence, and the fence runs right after.
                _ = rounds.tick() => match tokio::time::timeout(round_budget(&leases, ttl), leases.round()).await {
                    Ok(Ok(changes)) => {
                        if updates.send(LeaseUpdate { changes, share: leases.share() }).is_err() {
                            return;
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(event = "lease_round_failed", error = %e, "partition lease round failed"),
                    Err(_) => {
                        tracing::warn!(event = "lease_round_slow", "partition lease round timed out");
                        let lost = leases.fence(Instant::now());
                        if !lost.is_empty() {
                            let changes = LeaseChanges { lost, ..LeaseChanges::default() };
                            if updates.send(LeaseUpdate { changes, share: leases.share() }).is_err() {
                                return;
                            }
                        }
                    }
                },
                _ = fencing.tick() => {
                    let lost = leases.fence(Instant::now());
                    if !lost.is_empty() {
                        let changes = LeaseChanges { lost, ..LeaseChanges::default() };
                        if updates.send(LeaseUpdate { changes, share: leases.share() }).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    })
}

/// How long a lease round may take: a third of the TTL, and never past the earliest
/// moment a held partition must be fenced.
fn round_budget(leases: &PartitionLeases, ttl: Duration) -> Duration {
    let until_fence = leases
        .next_fence()
        .map_or(ttl / 3, |at| at.saturating_duration_since(Instant::now()));
    until_fence.min(ttl / 3)
}

/// What a member should do to move towards an even spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShareAction {
    Release(usize),
    Acquire(usize),
    Hold,
}

/// With `partitions` over `others.len() + 1` members, every member should hold the floor or
/// the ceiling of the even share. Above the ceiling, release; above the floor while a peer is
/// below it, release down to the floor; otherwise take free partitions up to the ceiling —
/// but a member already at the floor leaves them to starved peers.
fn plan_share(partitions: u32, counted: usize, others: &[usize]) -> ShareAction {
    let members = others.len() + 1;
    let floor = partitions as usize / members;
    let ceiling = (partitions as usize).div_ceil(members);
    let someone_starved = others.iter().any(|c| *c < floor);
    // Free as far as the (possibly slightly stale) heartbeats tell: no point trying to take
    // partitions when all are held.
    let free = (partitions as usize).saturating_sub(counted + others.iter().sum::<usize>());
    if counted > ceiling {
        ShareAction::Release(counted - ceiling)
    } else if counted > floor && someone_starved {
        ShareAction::Release(counted - floor)
    } else if free > 0 && (counted < floor || (counted < ceiling && !someone_starved)) {
        ShareAction::Acquire((ceiling - counted).min(free))
    } else {
        ShareAction::Hold
    }
}

fn partition_key(partition: u32) -> String {
    format!("partitions.{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates rounds where releases take effect at once and free partitions go to
    /// members in order; the spread must settle at floor/ceiling for each member.
    fn settle(partitions: u32, mut counts: Vec<usize>) -> Vec<usize> {
        for _ in 0..20 {
            for member in 0..counts.len() {
                let others: Vec<usize> = counts
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != member)
                    .map(|(_, c)| *c)
                    .collect();
                let free = partitions as usize - counts.iter().sum::<usize>();
                match plan_share(partitions, counts[member], &others) {
                    ShareAction::Release(n) => counts[member] -= n,
                    ShareAction::Acquire(n) => counts[member] += n.min(free),
                    ShareAction::Hold => {}
                }
            }
        }
        counts
    }

    #[test]
    fn spreads_evenly_as_members_join() {
        assert_eq!(settle(16, vec![16, 0, 0]).iter().sum::<usize>(), 16);
        let mut three = settle(16, vec![16, 0, 0]);
        three.sort();
        assert_eq!(three, [5, 5, 6]);
        let mut two = settle(16, vec![16, 0]);
        two.sort();
        assert_eq!(two, [8, 8]);
        assert_eq!(settle(16, vec![0]), [16]);
        let mut many = settle(16, vec![0, 0, 0, 0, 0]);
        many.sort();
        assert_eq!(many, [3, 3, 3, 3, 4]);
    }

    #[test]
    fn holds_when_balanced() {
        assert_eq!(plan_share(16, 5, &[5, 6]), ShareAction::Hold);
        assert_eq!(plan_share(16, 6, &[5, 5]), ShareAction::Hold);
        assert_eq!(plan_share(16, 6, &[6, 4]), ShareAction::Release(1));
        assert_eq!(
            plan_share(16, 4, &[6, 6]),
            ShareAction::Hold,
            "nothing free: wait for peers to release"
        );
        assert_eq!(plan_share(16, 4, &[6, 5]), ShareAction::Acquire(1));
    }
}
