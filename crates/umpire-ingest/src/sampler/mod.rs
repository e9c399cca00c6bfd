//! Tail sampling across ingest replicas.
//!
//! Receivers publish every span to the intake stream under its trace's partition
//! (`hash(trace_id) % partitions`). Each partition is leased to exactly one replica (see
//! [`leases`]), whose sampler pulls the partition's messages, buffers spans per trace until
//! `decisionWait` after its root span arrived (or `traceTimeout` after its first span, as
//! an incomplete trace), decides once per trace with the project's policies, publishes kept
//! spans to the span stream (deduplicated by `Nats-Msg-Id`) followed by the trace's summary
//! (whole or incomplete, and where its spans are), and only then acknowledges the intake
//! messages (telling JetStream they are in progress while a trace waits). So all replicas agree on one decision per trace — only the owner decides — and a
//! crash anywhere leads to redelivery, not loss.

pub mod buffer;
mod dead_letter;
mod decide;
pub mod leases;
pub mod ledger;
mod outcomes;
mod partitions;
mod publish;
pub mod span_messages;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lru::LruCache;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use umpire_core::ids::TraceId;
use umpire_core::sampling::TailSampler;
use umpire_nats::fence::SlottedFence;
use umpire_nats::topology::ProjectNames;
use umpire_otlp::buffered::decode_request;
use umpire_runtime::retry::Backoff;

use self::buffer::TraceBuffer;
use self::leases::{LeaseCommand, LeaseUpdate, PartitionLeases, spawn_lease_task};
use self::ledger::MessageLedger;
use self::publish::{PublishJob, PublishOutcome};
use crate::intake::{CODEC_HEADER, decompress};
use crate::metrics::{IngestMetrics, ReasonLabels};

/// Decisions remembered so late spans follow their trace's decision.
const DECISION_CACHE: usize = 200_000;

/// Traces decided per step of the sampling loop.
const DECISION_BATCH: usize = 256;

/// Publications of kept traces running at once.
const MAX_CONCURRENT_PUBLISHES: usize = 32;

/// Longest a graceful shutdown waits for kept spans to be published.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct SamplerSettings {
    pub member: String,
    pub partitions: u32,
    /// After a trace's root span arrived.
    pub decision_wait: Duration,
    /// Longest a trace waits for its root span, from its first span.
    pub trace_timeout: Duration,
    pub max_buffered_spans: usize,
    /// Most bytes of decoded spans buffered or being published (derived from the pod's
    /// memory limit: the count alone let the buffer outgrow the pod).
    pub max_buffered_bytes: usize,
    /// Most bytes one intake pull may bring (at least the largest intake message).
    pub intake_batch_bytes: usize,
    /// Most bytes of intake messages pulled but not yet taken into the buffer.
    pub max_pending_delivery_bytes: usize,
    pub kv_replicas: usize,
    /// An intake message is redelivered if not acknowledged within this: it must cover the
    /// decision wait and publication.
    pub ack_wait: Duration,
    pub lease_ttl: Duration,
}

struct Delivery {
    partition: u32,
    message: jetstream::Message,
    /// Its share of `max_pending_delivery_bytes`, given back once it is buffered.
    _permit: OwnedSemaphorePermit,
}

/// What a partition's fetcher hands the sampling loop: first the partition's fence, claimed
/// before anything is pulled, then its intake messages.
// The channel carried a `Delivery` by value before; boxing it would add an allocation per
// intake message for the sake of one claim per partition.
#[allow(clippy::large_enum_variant)]
enum FromFetcher {
    Claimed {
        partition: u32,
        fence: Arc<SlottedFence>,
    },
    Delivery(Delivery),
}

pub struct Sampler {
    /// Publishes kept spans and pulls intake messages (the data connection).
    js: jetstream::Context,
    /// Leases (the control connection).
    control: jetstream::Context,
    names: ProjectNames,
    tail: TailSampler,
    settings: SamplerSettings,
    metrics: Arc<IngestMetrics>,
}

impl Sampler {
    pub fn new(
        js: jetstream::Context,
        control: jetstream::Context,
        names: ProjectNames,
        tail: TailSampler,
        settings: SamplerSettings,
        metrics: Arc<IngestMetrics>,
    ) -> Self {
        Self {
            js,
            control,
            names,
            tail,
            settings,
            metrics,
        }
    }

    /// Runs until `shutdown`, then decides everything buffered, publishes what is kept,
    /// acknowledges, and gives its partitions back.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), leases::LeaseError> {
        let mut attempt = 0u32;
        let leases = loop {
            let opened = PartitionLeases::open(
                &self.control,
                &self.names,
                &self.settings.member,
                self.settings.partitions,
                self.settings.kv_replicas,
                self.settings.lease_ttl,
            )
            .await;
            match opened {
                Ok(leases) => break leases,
                Err(e) => {
                    tracing::warn!(event = "leases_unavailable", error = %e, "retrying");
                    if !Backoff::SET_UP.wait(attempt, &shutdown).await {
                        return Ok(());
                    }
                    attempt = attempt.saturating_add(1);
                }
            }
        };
        let (deliveries_tx, deliveries_rx) = mpsc::channel(4096);
        let pending_bytes = self.settings.max_pending_delivery_bytes;
        let (updates_tx, lease_updates) = mpsc::unbounded_channel();
        let (lease_commands, commands_rx) = mpsc::unbounded_channel();
        let lease_task = spawn_lease_task(
            leases,
            self.settings.lease_ttl,
            self.metrics.lease_rounds_cut_short.clone(),
            updates_tx,
            commands_rx,
        );
        let mut state = SamplingLoop {
            sampler: self,
            lease_commands,
            lease_updates,
            buffer: TraceBuffer::default(),
            ledger: MessageLedger::default(),
            decided: LruCache::new(NonZeroUsize::new(DECISION_CACHE).unwrap_or(NonZeroUsize::MIN)),
            publishing: FuturesUnordered::new(),
            queued: VecDeque::new(),
            publishing_spans: 0,
            publishing_bytes: 0,
            publishing_per_partition: HashMap::new(),
            fetchers: HashMap::new(),
            draining: BTreeSet::new(),
            deliveries_tx,
            fences: HashMap::new(),
            delivery_budget: Arc::new(Semaphore::new(pending_bytes.clamp(1, u32::MAX as usize))),
            acks: JoinSet::new(),
        };
        state.run(deliveries_rx, shutdown).await;
        let _ = lease_task.await;
        Ok(())
    }
}

struct SamplingLoop {
    sampler: Sampler,
    lease_commands: mpsc::UnboundedSender<LeaseCommand>,
    lease_updates: mpsc::UnboundedReceiver<LeaseUpdate>,
    buffer: TraceBuffer,
    ledger: MessageLedger,
    decided: LruCache<TraceId, bool>,
    publishing: FuturesUnordered<futures::future::BoxFuture<'static, PublishOutcome>>,
    queued: VecDeque<PublishJob>,
    publishing_spans: usize,
    publishing_bytes: usize,
    publishing_per_partition: HashMap<u32, usize>,
    fetchers: HashMap<u32, CancellationToken>,
    draining: BTreeSet<u32>,
    deliveries_tx: mpsc::Sender<FromFetcher>,
    /// Each owned partition's fence, claimed by its fetcher: every publish for the partition
    /// carries it, so JetStream refuses them once a successor has claimed the partition.
    fences: HashMap<u32, Arc<SlottedFence>>,
    delivery_budget: Arc<Semaphore>,
    acks: JoinSet<()>,
}

impl SamplingLoop {
    async fn run(
        &mut self,
        mut deliveries: mpsc::Receiver<FromFetcher>,
        shutdown: CancellationToken,
    ) {
        let mut decision_tick = tokio::time::interval(Duration::from_millis(50));
        decision_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut progress_tick = tokio::time::interval(self.progress_every());
        progress_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut more_due = false;
        loop {
            let accepting = self.accepts_deliveries();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(outcome) = self.publishing.next() => self.on_published(outcome),
                Some(update) = self.lease_updates.recv() => self.on_lease_update(update),
                // Not taken while paused: deliveries keep their share of the pending budget,
                // so the fetchers stop pulling and the backlog stays in the intake stream.
                Some(from) = deliveries.recv(), if accepting => match from {
                    FromFetcher::Claimed { partition, fence } => self.on_claimed(partition, fence),
                    FromFetcher::Delivery(delivery) => self.on_delivery(delivery),
                },
                _ = decision_tick.tick() => more_due = self.decide_due(Instant::now()),
                _ = progress_tick.tick() => self.keep_held_messages(Instant::now()),
                _ = tokio::task::yield_now(), if more_due => more_due = self.decide_due(Instant::now()),
            }
            while self.acks.try_join_next().is_some() {}
            self.release_drained();
            self.update_gauges();
        }
        self.shut_down().await;
    }

    fn metrics(&self) -> &IngestMetrics {
        &self.sampler.metrics
    }

    fn usable(&self, partition: u32) -> bool {
        self.fetchers.contains_key(&partition) && !self.draining.contains(&partition)
    }

    fn on_delivery(&mut self, delivery: Delivery) {
        let Delivery {
            partition, message, ..
        } = delivery;
        if !self.usable(partition) {
            // Arrived after the partition was given up: its next owner receives it again.
            return;
        }
        let Ok(key) = message.info().map(|info| info.stream_sequence) else {
            return;
        };
        let reply = message.reply.clone();
        let (message, acker) = message.split();
        let known = self.ledger.contains(key);
        self.ledger
            .hold(key, partition, acker, reply, Instant::now());
        if known {
            // A redelivery of a message still held: the fresh acker replaced the old one.
            return;
        }
        let codec = message
            .headers
            .as_ref()
            .and_then(|h| h.get(CODEC_HEADER))
            .map(|v| v.as_str());
        // Spans stay encoded until kept (see `umpire_otlp::buffered`).
        let decoded = decompress(&message.payload, codec).and_then(|bytes| {
            decode_request(bytes::Bytes::from(bytes.into_owned())).map_err(|e| e.to_string())
        });
        let batch = match decoded {
            Ok(batch) => batch,
            Err(e) => {
                // Only ingest writes the intake stream, so this cannot heal by redelivery.
                self.metrics().intake_decode_failures.inc();
                tracing::error!(event = "intake_undecodable", partition, sequence = key, error = %e, "skipping an undecodable intake message");
                self.ack_if_settled(key);
                return;
            }
        };
        let now = Instant::now();
        let mut late_kept = Vec::new();
        for span in batch {
            {
                let buffered = match span {
                    Ok(buffered) => buffered,
                    Err(e) => {
                        self.metrics().intake_decode_failures.inc();
                        tracing::error!(event = "intake_undecodable", partition, sequence = key, error = %e, "skipping an undecodable span of an intake message");
                        continue;
                    }
                };
                let Ok((trace_id, span_id)) = buffered.ids() else {
                    continue;
                };
                match self.decided.get(&trace_id).copied() {
                    Some(true) => {
                        self.metrics()
                            .late_spans
                            .get_or_create(&ReasonLabels {
                                reason: "kept".into(),
                            })
                            .inc();
                        late_kept.push(buffered);
                    }
                    Some(false) => {
                        self.metrics()
                            .late_spans
                            .get_or_create(&ReasonLabels {
                                reason: "dropped".into(),
                            })
                            .inc();
                        self.metrics().spans_dropped.inc();
                    }
                    None => {
                        let referenced = self.buffer.references(&trace_id, key);
                        self.buffer
                            .add(partition, trace_id, span_id, buffered, key, now);
                        if !referenced {
                            self.ledger.add_reference(key);
                        }
                    }
                }
            }
        }
        if !late_kept.is_empty() {
            self.ledger.add_reference(key);
            // Late spans: published for span-level policies; their trace was already
            // summarised (trace-level judges have judged it), so no second summary.
            self.start_publish(PublishJob {
                partition,
                messages: vec![key],
                spans: late_kept,
                attempt: 0,
                trace: None,
                fence: None,
            });
        }
        self.ack_if_settled(key);
        self.shed_if_full(now);
    }

    fn update_gauges(&self) {
        let metrics = self.metrics();
        metrics
            .buffered_spans
            .set((self.buffer.span_count() + self.publishing_spans) as i64);
        metrics
            .buffered_bytes
            .set((self.buffer.bytes() + self.publishing_bytes) as i64);
        metrics
            .buffered_traces
            .set(self.buffer.trace_count() as i64);
        metrics
            .intake_paused
            .set(i64::from(!self.accepts_deliveries()));
        metrics.partitions_owned.set(self.fetchers.len() as i64);
    }

    async fn shut_down(&mut self) {
        for (_, token) in self.fetchers.drain() {
            token.cancel();
        }
        let now = Instant::now();
        for (trace_id, trace) in self.buffer.take_all() {
            self.settle(trace_id, trace, now, Some("shutdown"));
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DRAIN;
        while !self.publishing.is_empty() || !self.queued.is_empty() {
            match tokio::time::timeout_at(deadline, self.publishing.next()).await {
                Ok(Some(outcome)) => self.on_published(outcome),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        event = "shutdown_publish_timeout",
                        pending = self.publishing.len(),
                        "gave up publishing at shutdown; the intake keeps those spans for the next owner"
                    );
                    break;
                }
            }
        }
        let acks = async { while self.acks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), acks)
            .await
            .is_err()
        {
            tracing::warn!(
                event = "shutdown_ack_timeout",
                "some intake acknowledgements did not complete; those messages will be redelivered"
            );
        }
        let (done, left) = tokio::sync::oneshot::channel();
        if self.lease_commands.send(LeaseCommand::Leave(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), left).await;
        }
        self.update_gauges();
        tracing::info!(event = "sampler_stopped", "sampler drained and left");
    }
}
