//! Partitions coming and going: the lease task's changes start and stop intake fetchers,
//! lost partitions hand their held messages back at once, surplus ones drain first.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use umpire_nats::topology::ProjectNames;
use umpire_runtime::retry::Backoff;

use umpire_nats::fence::SlottedFence;

use super::leases::{LeaseCommand, LeaseUpdate};
use super::{Delivery, FromFetcher, SamplingLoop};

/// Fence slots per partition: the publishes of a partition in flight at once (see
/// [`SlottedFence`]).
pub(super) const FENCE_SLOTS: usize = 128;

impl SamplingLoop {
    pub(super) fn on_lease_update(&mut self, update: LeaseUpdate) {
        let LeaseUpdate { changes, share } = update;
        let now = Instant::now();
        for partition in changes.lost {
            tracing::warn!(
                event = "partition_lost",
                partition,
                "lost a partition lease"
            );
            self.lose(partition);
        }
        // Acquired before surplus: changes a cut-short round left over can carry a partition
        // acquired in one round and found surplus in the next.
        for partition in changes.acquired {
            tracing::info!(
                event = "partition_acquired",
                partition,
                members = changes.members,
                "acquired a partition"
            );
            self.start_fetcher(partition);
        }
        for partition in changes.surplus {
            tracing::info!(
                event = "partition_release",
                partition,
                members = changes.members,
                "releasing a partition to rebalance"
            );
            if let Some(token) = self.fetchers.remove(&partition) {
                token.cancel();
            }
            self.draining.insert(partition);
            for (trace_id, trace) in self.buffer.take_partition(partition) {
                self.settle(trace_id, trace, now, Some("rebalance"));
            }
        }
        self.sampler.tail.set_share(share);
    }

    pub(super) fn lose(&mut self, partition: u32) {
        if let Some(token) = self.fetchers.remove(&partition) {
            token.cancel();
        }
        self.fences.remove(&partition);
        self.draining.remove(&partition);
        self.buffer.take_partition(partition);
        // Handed back now (NAK), the messages go to the partition's next owner at once
        // instead of after the intake's ack wait (decisionWait + 60 s). If NATS cannot take
        // the NAK, the ack wait still brings them back.
        for acker in self.ledger.forget_partition(partition) {
            self.acks.spawn(async move {
                if let Err(e) = acker.ack_with(async_nats::jetstream::AckKind::Nak(None)).await {
                    tracing::debug!(event = "intake_nak_failed", error = %e, "handing back an intake message failed; it is redelivered after the ack wait");
                }
            });
        }
    }

    /// Gives back surplus partitions once nothing of theirs is pending.
    pub(super) fn release_drained(&mut self) {
        let done: Vec<u32> = self
            .draining
            .iter()
            .filter(|p| {
                self.ledger.held_for(**p) == 0
                    && self.publishing_per_partition.get(p).copied().unwrap_or(0) == 0
            })
            .copied()
            .collect();
        for partition in done {
            self.draining.remove(&partition);
            self.fences.remove(&partition);
            let _ = self.lease_commands.send(LeaseCommand::Release(partition));
        }
    }

    /// A fetcher claimed its partition: publishes for it carry this fence from now on.
    pub(super) fn on_claimed(&mut self, partition: u32, fence: Arc<SlottedFence>) {
        if !self.usable(partition) {
            return;
        }
        self.metrics().partition_claims.inc();
        self.fences.insert(partition, fence);
    }

    /// A publish for `partition` was refused by its fence: a newer owner has claimed it
    /// (this replica was paused past its lease), or the marker is gone. Stop at once, hand
    /// the messages back, and give the lease up — if nobody else holds it, it is acquired
    /// and claimed again in a later round.
    pub(super) fn on_fenced(&mut self, partition: u32, error: &str) {
        tracing::warn!(
            event = "partition_fenced",
            partition,
            error,
            "a publish was refused by the partition's fence: another replica owns it now"
        );
        self.lose(partition);
        let _ = self.lease_commands.send(LeaseCommand::Release(partition));
    }

    pub(super) fn start_fetcher(&mut self, partition: u32) {
        let token = CancellationToken::new();
        self.fetchers.insert(partition, token.clone());
        let js = self.sampler.js.clone();
        let names = self.sampler.names.clone();
        let ack_wait = self.sampler.settings.ack_wait;
        let claim = Claim {
            member: self.sampler.settings.member.clone(),
            prefix: names.partition_fence_prefix(partition),
        };
        let pull = Pull {
            deliveries: self.deliveries_tx.clone(),
            budget: self.delivery_budget.clone(),
            budget_bytes: self.sampler.settings.max_pending_delivery_bytes,
            batch_bytes: self.sampler.settings.intake_batch_bytes,
        };
        tokio::spawn(async move {
            if claim.run(&js, partition, &pull.deliveries, &token).await {
                fetch_partition(js, names, partition, ack_wait, pull, token).await;
            }
        });
    }
}

/// Claiming a newly acquired partition's fence before pulling anything of it.
struct Claim {
    member: String,
    prefix: String,
}

impl Claim {
    /// Claims until it succeeds and hands the fence to the loop; false when cancelled first.
    async fn run(
        &self,
        js: &jetstream::Context,
        partition: u32,
        deliveries: &mpsc::Sender<FromFetcher>,
        cancel: &CancellationToken,
    ) -> bool {
        let mut failures = 0u32;
        loop {
            let claimed = tokio::select! {
                _ = cancel.cancelled() => return false,
                claimed = SlottedFence::claim(js, &self.prefix, &self.member, FENCE_SLOTS) => claimed,
            };
            match claimed {
                Ok(fence) => {
                    let fence = Arc::new(fence);
                    return deliveries
                        .send(FromFetcher::Claimed { partition, fence })
                        .await
                        .is_ok();
                }
                Err(e) => {
                    failures += 1;
                    if failures % 10 == 1 {
                        tracing::warn!(event = "partition_claim_failed", partition, error = %e, "cannot claim the partition's fence; retrying");
                    }
                    if !Backoff::SET_UP.wait(failures - 1, cancel).await {
                        return false;
                    }
                }
            }
        }
    }
}

/// Where a partition's pull hands its messages, and how much it may hold.
struct Pull {
    deliveries: mpsc::Sender<FromFetcher>,
    /// Bytes pulled but not yet buffered, shared by every partition: a pull waits for
    /// room, so a slow sampler slows the pulls instead of queueing messages in memory.
    budget: Arc<Semaphore>,
    /// The budget's size: a message larger than it takes all of it (waiting for more would
    /// wait for ever).
    budget_bytes: usize,
    batch_bytes: usize,
}

/// Pulls one partition's intake messages until cancelled, re-creating the pull after errors.
async fn fetch_partition(
    js: jetstream::Context,
    names: ProjectNames,
    partition: u32,
    ack_wait: Duration,
    pull: Pull,
    cancel: CancellationToken,
) {
    let config = umpire_nats::topology::intake_consumer(&names, partition, ack_wait);
    let mut failures = 0u32;
    while !cancel.is_cancelled() {
        let messages = async {
            let stream = js
                .get_stream(names.intake_stream())
                .await
                .map_err(|e| e.to_string())?;
            let consumer: consumer::PullConsumer = stream
                .get_or_create_consumer(&names.intake_consumer(partition), config.clone())
                .await
                .map_err(|e| e.to_string())?;
            consumer
                .stream()
                .max_messages_per_batch(512)
                .max_bytes_per_batch(pull.batch_bytes)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await
                .map_err(|e| e.to_string())
        };
        let mut messages = match messages.await {
            Ok(messages) => messages,
            Err(e) => {
                failures += 1;
                if failures % 10 == 1 {
                    tracing::warn!(event = "intake_pull_failed", partition, error = %e, "cannot pull intake messages; retrying");
                }
                if !Backoff::SET_UP.wait(failures - 1, &cancel).await {
                    return;
                }
                continue;
            }
        };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                next = messages.next() => match next {
                    Some(Ok(message)) => {
                        failures = 0;
                        let bytes = message.payload.len().clamp(1, pull.budget_bytes.max(1));
                        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
                        let permit = tokio::select! {
                            _ = cancel.cancelled() => return,
                            permit = pull.budget.clone().acquire_many_owned(bytes) => permit,
                        };
                        let Ok(permit) = permit else { return };
                        let delivery = Delivery { partition, message, _permit: permit };
                        if pull.deliveries.send(FromFetcher::Delivery(delivery)).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(event = "intake_pull_error", partition, error = %e, "intake pull interrupted");
                        break;
                    }
                    None => break,
                },
            }
        }
    }
}
