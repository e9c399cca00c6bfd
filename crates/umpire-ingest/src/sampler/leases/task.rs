//! The lease task: rounds and self-fencing on their own task, reported to the sampling loop.

use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::{LeaseChanges, PartitionLeases};

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
    cut_short_rounds: Counter,
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
                _ = rounds.tick() => {
                    let budget = round_budget(&leases, ttl);
                    let RoundOutcome { update, cut_short } = bounded_round(&mut leases, budget).await;
                    if cut_short {
                        cut_short_rounds.inc();
                    }
                    if let Some(update) = update
                        && updates.send(update).is_err()
                    {
                        return;
                    }
                }
                _ = fencing.tick() => {
                    leases.fence(Instant::now());
                    if let Some(update) = unreported(&mut leases)
                        && updates.send(update).is_err()
                    {
                        return;
                    }
                }
            }
        }
    })
}

/// How a bounded lease round ended.
struct RoundOutcome {
    /// What the loop must be told, if anything.
    update: Option<LeaseUpdate>,
    /// The round ran out of its budget.
    cut_short: bool,
}

/// One lease round, cut short after `budget` ([`round_budget`]) and followed then by the
/// self-fencing check. What a round changed before it failed or was cut short is reported
/// all the same.
async fn bounded_round(leases: &mut PartitionLeases, budget: Duration) -> RoundOutcome {
    match tokio::time::timeout(budget, leases.round()).await {
        Ok(Ok(changes)) => RoundOutcome {
            update: Some(LeaseUpdate {
                changes,
                share: leases.share(),
            }),
            cut_short: false,
        },
        Ok(Err(e)) => {
            tracing::warn!(event = "lease_round_failed", error = %e, "partition lease round failed");
            RoundOutcome {
                update: unreported(leases),
                cut_short: false,
            }
        }
        Err(_) => {
            tracing::warn!(
                event = "lease_round_slow",
                "partition lease round timed out"
            );
            leases.fence(Instant::now());
            RoundOutcome {
                update: unreported(leases),
                cut_short: true,
            }
        }
    }
}

/// The changes the loop has not heard of, if there are any.
fn unreported(leases: &mut PartitionLeases) -> Option<LeaseUpdate> {
    let changes = leases.take_changes();
    let none = changes.acquired.is_empty() && changes.lost.is_empty() && changes.surplus.is_empty();
    (!none).then(|| LeaseUpdate {
        changes,
        share: leases.share(),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use async_nats::jetstream;
    use umpire_nats::topology::ProjectNames;
    use umpire_testkit::nats::NatsServer;

    use super::*;

    /// What the sampling loop believes it holds after an update (lost first, as it applies
    /// them); counts the losses.
    fn apply(known: &mut BTreeSet<u32>, lost: &mut usize, changes: &LeaseChanges) {
        for partition in &changes.lost {
            known.remove(partition);
        }
        *lost += changes.lost.len();
        known.extend(&changes.acquired);
    }

    /// A round cut short at its budget keeps what it acquired before the cut: the loop must
    /// hear of those partitions too, or the lease task renews partitions nobody serves and no
    /// other replica may take (CI: B never held all 16 while A's node was frozen). And a
    /// renewal cut short does not lose its partition.
    ///
    /// Where the cut falls depends on how fast NATS answers (a loaded CI machine took over
    /// 40 ms for a round's heartbeat alone), so budgets grow from 1 ms by a tenth each round
    /// until one round is cut part-way through its creates; an attempt whose rounds all end
    /// before or after the creates starts again on a fresh bucket.
    #[tokio::test]
    async fn partitions_acquired_by_a_round_cut_short_reach_the_loop() {
        let nats = NatsServer::start().unwrap();
        let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        let ttl = Duration::from_secs(30);
        let partitions = 64;
        let mut cut_after_acquiring = 0;
        for attempt in 0..10 {
            let names = ProjectNames::new("test", &format!("app-{attempt}"));
            let mut leases = PartitionLeases::open(&js, &names, "replica-a", partitions, 1, ttl)
                .await
                .unwrap();
            let (mut known, mut lost) = (BTreeSet::new(), 0);
            let mut budget = Duration::from_millis(1);
            while leases.held.len() < partitions as usize && budget < ttl / 3 {
                let before = leases.held.len();
                let RoundOutcome { update, cut_short } = bounded_round(&mut leases, budget).await;
                if cut_short && leases.held.len() > before {
                    cut_after_acquiring += 1;
                }
                if let Some(update) = update {
                    apply(&mut known, &mut lost, &update.changes);
                }
                budget = budget.mul_f64(1.1);
            }
            // A full round settles whatever the cuts left (e.g. creates applied unseen).
            if let Some(update) = bounded_round(&mut leases, Duration::from_secs(10))
                .await
                .update
            {
                apply(&mut known, &mut lost, &update.changes);
            }
            let held: BTreeSet<u32> = leases.held.keys().copied().collect();
            assert_eq!(known, held, "the loop's partitions vs the leases held");
            assert_eq!(held.len(), partitions as usize, "the only member holds all");
            // The only member, with a 30 s TTL: a loss could only come from a renewal cut
            // short after NATS applied it (see `LeaseBucket::renew`).
            assert_eq!(lost, 0, "partitions lost with nobody else competing");
            if cut_after_acquiring > 0 {
                break;
            }
        }
        assert!(
            cut_after_acquiring > 0,
            "no round was cut short after acquiring in 10 attempts: the test proves nothing"
        );
    }
}
