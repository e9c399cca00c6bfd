//! Tail sampling across ingest replicas.
//!
//! Receivers publish every span to the intake stream under its trace's partition
//! (`hash(trace_id) % partitions`). Each partition is leased to exactly one replica (see
//! [`leases`]), whose sampler pulls the partition's messages, buffers spans per trace for
//! `decisionWait`, decides once per trace with the project's policies, publishes kept spans
//! to the span stream (deduplicated by `Nats-Msg-Id`), and only then acknowledges the intake
//! messages. So all replicas agree on one decision per trace — only the owner decides — and a
//! crash anywhere leads to redelivery, not loss.

pub mod buffer;
pub mod leases;
pub mod ledger;
mod publish;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, message::Acker};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lru::LruCache;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use umpire_core::ids::TraceId;
use umpire_core::sampling::{Decision, TailSampler};
use umpire_nats::topology::ProjectNames;
use umpire_otlp::ExportTraceServiceRequest;
use umpire_otlp::buffered::{BufferedSpan, SpanOrigin};
use umpire_otlp::convert::span_ids;
use umpire_runtime::retry::Backoff;

use self::buffer::{MessageKey, PendingTrace, TraceBuffer};
use self::leases::{LeaseCommand, LeaseUpdate, PartitionLeases, spawn_lease_task};
use self::ledger::MessageLedger;
use self::publish::{PublishJob, PublishOutcome, publish_job};
use crate::intake::{CODEC_HEADER, decompress};
use crate::metrics::{IngestMetrics, PolicyLabels, ReasonLabels};

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
    pub decision_wait: Duration,
    pub max_buffered_spans: usize,
    pub kv_replicas: usize,
    /// An intake message is redelivered if not acknowledged within this: it must cover the
    /// decision wait and publication.
    pub ack_wait: Duration,
    pub lease_ttl: Duration,
}

struct Delivery {
    partition: u32,
    message: jetstream::Message,
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
        let (updates_tx, lease_updates) = mpsc::unbounded_channel();
        let (lease_commands, commands_rx) = mpsc::unbounded_channel();
        let lease_task = spawn_lease_task(leases, self.settings.lease_ttl, updates_tx, commands_rx);
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
            publishing_per_partition: HashMap::new(),
            fetchers: HashMap::new(),
            draining: BTreeSet::new(),
            deliveries_tx,
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
    publishing_per_partition: HashMap<u32, usize>,
    fetchers: HashMap<u32, CancellationToken>,
    draining: BTreeSet<u32>,
    deliveries_tx: mpsc::Sender<Delivery>,
    acks: JoinSet<()>,
}

impl SamplingLoop {
    async fn run(&mut self, mut deliveries: mpsc::Receiver<Delivery>, shutdown: CancellationToken) {
        let mut decision_tick = tokio::time::interval(Duration::from_millis(50));
        decision_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut more_due = false;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(outcome) = self.publishing.next() => self.on_published(outcome),
                Some(update) = self.lease_updates.recv() => self.on_lease_update(update),
                Some(delivery) = deliveries.recv() => self.on_delivery(delivery),
                _ = decision_tick.tick() => more_due = self.decide_due(Instant::now()),
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
        let Delivery { partition, message } = delivery;
        if !self.usable(partition) {
            // Arrived after the partition was given up: its next owner receives it again.
            return;
        }
        let Ok(key) = message.info().map(|info| info.stream_sequence) else {
            return;
        };
        let (message, acker) = message.split();
        let known = self.ledger.contains(key);
        self.ledger.hold(key, partition, acker);
        if known {
            // A redelivery of a message still held: the fresh acker replaced the old one.
            return;
        }
        let codec = message
            .headers
            .as_ref()
            .and_then(|h| h.get(CODEC_HEADER))
            .map(|v| v.as_str());
        let decoded = decompress(&message.payload, codec).and_then(|bytes| {
            ExportTraceServiceRequest::decode(bytes.as_ref()).map_err(|e| e.to_string())
        });
        let request = match decoded {
            Ok(request) => request,
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
        for resource_spans in request.resource_spans {
            let resource = resource_spans.resource.unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                let origin = Arc::new(SpanOrigin {
                    resource: resource.clone(),
                    scope: scope_spans.scope,
                });
                for span in scope_spans.spans {
                    let Ok((trace_id, span_id)) = span_ids(&span) else {
                        continue;
                    };
                    let buffered = BufferedSpan {
                        span,
                        origin: origin.clone(),
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
        }
        if !late_kept.is_empty() {
            self.ledger.add_reference(key);
            self.start_publish(PublishJob {
                partition,
                messages: vec![key],
                spans: late_kept,
                attempt: 0,
            });
        }
        self.ack_if_settled(key);
        self.shed_if_full(now);
    }

    /// Decides the oldest traces early while the buffer is over its limit (the documented
    /// shedding policy: the wait is shortened, no data is dropped unjudged).
    fn shed_if_full(&mut self, now: Instant) {
        let limit = self.sampler.settings.max_buffered_spans;
        while self.buffer.span_count() + self.publishing_spans > limit {
            let Some((trace_id, trace)) = self.buffer.take_oldest() else {
                break;
            };
            self.settle(trace_id, trace, now, Some("buffer_full"));
        }
    }

    /// Decides due traces, a bounded batch at a time so one burst of decisions never holds
    /// a runtime thread long enough to delay the receivers; returns whether more are due.
    fn decide_due(&mut self, now: Instant) -> bool {
        let due = self
            .buffer
            .take_due(now, self.sampler.settings.decision_wait, DECISION_BATCH);
        let more = due.len() == DECISION_BATCH;
        for (trace_id, trace) in due {
            self.settle(trace_id, trace, now, None);
        }
        more
    }

    fn settle(
        &mut self,
        trace_id: TraceId,
        trace: PendingTrace,
        now: Instant,
        early: Option<&str>,
    ) {
        if let Some(reason) = early {
            self.metrics()
                .early_decisions
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc();
        }
        let decision = self.sampler.tail.decide(&trace_id, &trace.spans, now);
        self.decided.put(trace_id, decision.is_keep());
        match decision {
            Decision::Keep(policy) => {
                let policy = policy.unwrap_or_else(|| "all".into());
                self.metrics()
                    .traces_kept
                    .get_or_create(&PolicyLabels { policy })
                    .inc();
                self.start_publish(PublishJob {
                    partition: trace.partition,
                    messages: trace.messages,
                    spans: trace.spans,
                    attempt: 0,
                });
            }
            Decision::Drop => {
                self.metrics().traces_dropped.inc();
                self.metrics()
                    .spans_dropped
                    .inc_by(trace.spans.len() as u64);
                for key in trace.messages {
                    self.release(key);
                }
            }
        }
    }

    /// Queues a publication; at most `MAX_CONCURRENT_PUBLISHES` run at once, so their
    /// unacknowledged publishes stay within the context's budget.
    fn start_publish(&mut self, job: PublishJob) {
        self.publishing_spans += job.spans.len();
        *self
            .publishing_per_partition
            .entry(job.partition)
            .or_default() += 1;
        self.queued.push_back(job);
        self.run_queued();
    }

    fn run_queued(&mut self) {
        while self.publishing.len() < MAX_CONCURRENT_PUBLISHES {
            let Some(job) = self.queued.pop_front() else {
                break;
            };
            let js = self.sampler.js.clone();
            let names = self.sampler.names.clone();
            self.publishing.push(Box::pin(publish_job(js, names, job)));
        }
    }

    fn on_published(&mut self, outcome: PublishOutcome) {
        let PublishOutcome {
            mut job,
            result,
            elapsed,
        } = outcome;
        self.publishing_spans -= job.spans.len();
        if let Some(count) = self.publishing_per_partition.get_mut(&job.partition) {
            *count = count.saturating_sub(1);
        }
        // Whatever happens to this job, a slot is free.
        self.run_queued();
        match result {
            Ok(duplicates) => {
                self.metrics().spans_kept.inc_by(job.spans.len() as u64);
                self.metrics().publish_duplicates.inc_by(duplicates);
                self.metrics()
                    .publish_duration
                    .observe(elapsed.as_secs_f64());
                for key in job.messages {
                    self.release(key);
                }
            }
            Err(e) => {
                self.metrics().publish_failures.inc();
                if self.fetchers.contains_key(&job.partition)
                    || self.draining.contains(&job.partition)
                {
                    if job.attempt % 10 == 0 {
                        tracing::warn!(event = "publish_retry", attempt = job.attempt, error = %e, "publishing kept spans failed; retrying");
                    }
                    job.attempt += 1;
                    self.start_publish(job);
                }
                // Otherwise the partition is gone: its new owner receives the messages again.
            }
        }
    }

    fn release(&mut self, key: MessageKey) {
        if let Some(acker) = self.ledger.release(key) {
            self.ack(acker);
        }
    }

    fn ack_if_settled(&mut self, key: MessageKey) {
        if let Some(acker) = self.ledger.release_if_unreferenced(key) {
            self.ack(acker);
        }
    }

    fn ack(&mut self, acker: Acker) {
        self.acks.spawn(async move {
            if let Err(e) = acker.ack().await {
                tracing::debug!(event = "intake_ack_failed", error = %e, "acknowledging an intake message failed; it will be redelivered");
            }
        });
    }

    fn on_lease_update(&mut self, update: LeaseUpdate) {
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
        for partition in changes.acquired {
            tracing::info!(
                event = "partition_acquired",
                partition,
                members = changes.members,
                "acquired a partition"
            );
            self.start_fetcher(partition);
        }
        self.sampler.tail.set_share(share);
    }

    fn lose(&mut self, partition: u32) {
        if let Some(token) = self.fetchers.remove(&partition) {
            token.cancel();
        }
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
    fn release_drained(&mut self) {
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
            let _ = self.lease_commands.send(LeaseCommand::Release(partition));
        }
    }

    fn start_fetcher(&mut self, partition: u32) {
        let token = CancellationToken::new();
        self.fetchers.insert(partition, token.clone());
        let js = self.sampler.js.clone();
        let names = self.sampler.names.clone();
        let ack_wait = self.sampler.settings.ack_wait;
        let tx = self.deliveries_tx.clone();
        tokio::spawn(fetch_partition(js, names, partition, ack_wait, tx, token));
    }

    fn update_gauges(&self) {
        let metrics = self.metrics();
        metrics
            .buffered_spans
            .set((self.buffer.span_count() + self.publishing_spans) as i64);
        metrics
            .buffered_traces
            .set(self.buffer.trace_count() as i64);
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

/// Pulls one partition's intake messages until cancelled, re-creating the pull after errors.
async fn fetch_partition(
    js: jetstream::Context,
    names: ProjectNames,
    partition: u32,
    ack_wait: Duration,
    deliveries: mpsc::Sender<Delivery>,
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
                        if deliveries.send(Delivery { partition, message }).await.is_err() {
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
