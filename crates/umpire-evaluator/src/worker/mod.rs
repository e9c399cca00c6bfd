//! The evaluator loop: pull the policy's spans, gather traces when judges need them, judge,
//! publish scores (idempotent ids), and acknowledge a span only once its records are stored.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use futures::future::join_all;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use umpire_core::ids::TraceId;
use umpire_core::judge::TraceContext;
use umpire_core::select::SpanSelector;
use umpire_core::span::Span;
use umpire_nats::topology::ProjectNames;
use umpire_runtime::retry::Backoff;

mod span_task;

use span_task::{ack, in_progress, judge_and_publish, poison};

use crate::judging::PolicyJudges;
use crate::metrics::EvaluatorMetrics;

/// Deliveries of an undecodable span message before it goes to the dead-letter stream.
pub const MAX_DELIVERIES: i64 = 5;
/// Traces gathered at once; beyond it the oldest is judged early.
const MAX_WAITING_TRACES: usize = 50_000;

pub struct WorkerSettings {
    pub policy: String,
    pub concurrency: usize,
    pub needs_trace: bool,
    pub trace_settle: Duration,
    pub ack_wait: Duration,
    pub group_keys: Vec<String>,
}

/// Everything a judging task needs, shared.
struct Shared {
    js: jetstream::Context,
    names: ProjectNames,
    judges: PolicyJudges,
    settings: WorkerSettings,
    metrics: Arc<EvaluatorMetrics>,
    slots: Semaphore,
}

struct WaitingTrace {
    first_seen: Instant,
    context: TraceContext,
    selected: Vec<(Span, jetstream::Message)>,
    context_only: Vec<jetstream::Message>,
}

pub struct Worker {
    shared: Arc<Shared>,
    selector: SpanSelector,
    waiting: HashMap<TraceId, WaitingTrace>,
    arrival: VecDeque<(Instant, TraceId)>,
    tasks: JoinSet<()>,
}

impl Worker {
    pub fn new(
        js: jetstream::Context,
        names: ProjectNames,
        selector: SpanSelector,
        judges: PolicyJudges,
        settings: WorkerSettings,
        metrics: Arc<EvaluatorMetrics>,
    ) -> Self {
        let slots = Semaphore::new(settings.concurrency.max(1));
        Self {
            shared: Arc::new(Shared {
                js,
                names,
                judges,
                settings,
                metrics,
                slots,
            }),
            selector,
            waiting: HashMap::new(),
            arrival: VecDeque::new(),
            tasks: JoinSet::new(),
        }
    }

    pub async fn run(mut self, consumer: consumer::PullConsumer, shutdown: CancellationToken) {
        let (tx, mut rx) = mpsc::channel(self.shared.settings.concurrency.max(16) * 2);
        let fetch_stop = CancellationToken::new();
        let fetcher = tokio::spawn(fetch(consumer.clone(), tx, fetch_stop.clone()));
        let mut settle = tokio::time::interval(Duration::from_millis(100));
        let mut lag = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(message) = rx.recv() => self.on_message(message),
                _ = settle.tick() => self.dispatch_due(Instant::now()),
                _ = lag.tick() => {
                    let mut consumer = consumer.clone();
                    if let Ok(info) = consumer.info().await {
                        self.shared.metrics.consumer_pending.set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
                    }
                }
            }
            while self.tasks.try_join_next().is_some() {}
            self.shared
                .metrics
                .traces_waiting
                .set(self.waiting.len() as i64);
        }
        // Drain: stop pulling, judge what is gathered now, finish judging and publishing.
        fetch_stop.cancel();
        let _ = fetcher.await;
        while let Ok(message) = rx.try_recv() {
            self.on_message(message);
        }
        let all: Vec<TraceId> = self.waiting.keys().copied().collect();
        for trace_id in all {
            self.dispatch(trace_id);
        }
        let drained = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(30), drained)
            .await
            .is_err()
        {
            tracing::warn!(
                event = "drain_timeout",
                "gave up waiting for judges at shutdown; their spans will be redelivered"
            );
        }
        tracing::info!(event = "evaluator_drained", "evaluator drained");
    }

    fn on_message(&mut self, message: jetstream::Message) {
        let metrics = &self.shared.metrics;
        metrics.spans_consumed.inc();
        let span: Span = match serde_json::from_slice(&message.payload) {
            Ok(span) => span,
            Err(e) => {
                let shared = self.shared.clone();
                self.tasks
                    .spawn(async move { poison(&shared, message, e.to_string()).await });
                return;
            }
        };
        let selected = self.selector.selects(&span, true);
        if selected {
            metrics.spans_selected.inc();
        }
        if !self.shared.settings.needs_trace {
            if selected {
                let shared = self.shared.clone();
                self.tasks.spawn(async move {
                    let context = TraceContext::from_spans([&span]);
                    judge_and_publish(&shared, span, message, &context).await;
                });
            } else {
                self.tasks.spawn(async move { ack(message).await });
            }
            return;
        }
        let trace_id = span.trace_id;
        let now = Instant::now();
        let arrival = &mut self.arrival;
        let entry = self.waiting.entry(trace_id).or_insert_with(|| {
            arrival.push_back((now, trace_id));
            WaitingTrace {
                first_seen: now,
                context: TraceContext::default(),
                selected: Vec::new(),
                context_only: Vec::new(),
            }
        });
        entry.context.add(&span);
        if selected {
            entry.selected.push((span, message));
        } else {
            entry.context_only.push(message);
        }
        while self.waiting.len() > MAX_WAITING_TRACES {
            let Some((_, oldest)) = self.arrival.pop_front() else {
                break;
            };
            self.dispatch(oldest);
        }
    }

    fn dispatch_due(&mut self, now: Instant) {
        while let Some((seen, trace_id)) = self.arrival.front().copied() {
            if seen + self.shared.settings.trace_settle > now {
                break;
            }
            self.arrival.pop_front();
            if self
                .waiting
                .get(&trace_id)
                .is_some_and(|t| t.first_seen == seen)
            {
                self.dispatch(trace_id);
            }
        }
    }

    /// Judges a gathered trace's selected spans; its context-only messages are acknowledged
    /// after them (so a crash re-gathers the whole trace), or released on failure.
    fn dispatch(&mut self, trace_id: TraceId) {
        let Some(trace) = self.waiting.remove(&trace_id) else {
            return;
        };
        let shared = self.shared.clone();
        self.tasks.spawn(async move {
            let context = trace.context;
            // The context-only spans wait for the judged ones: they are kept alive too.
            let waiting: Vec<&jetstream::Message> = trace.context_only.iter().collect();
            let judged =
                in_progress(
                    &waiting,
                    shared.settings.ack_wait,
                    join_all(trace.selected.into_iter().map(|(span, message)| {
                        judge_and_publish(&shared, span, message, &context)
                    })),
                )
                .await;
            let all_stored = judged.iter().all(|stored| *stored);
            for message in trace.context_only {
                if all_stored {
                    ack(message).await;
                } else {
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                        .await;
                }
            }
        });
    }
}

async fn fetch(
    consumer: consumer::PullConsumer,
    tx: mpsc::Sender<jetstream::Message>,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        let stream = consumer
            .stream()
            .max_messages_per_batch(256)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match stream {
            Ok(messages) => messages,
            Err(e) => {
                failures += 1;
                if failures % 10 == 1 {
                    tracing::warn!(event = "pull_failed", error = %e, "cannot pull spans; retrying");
                }
                if !Backoff::SET_UP.wait(failures - 1, &stop).await {
                    return;
                }
                continue;
            }
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                next = messages.next() => match next {
                    Some(Ok(message)) => {
                        failures = 0;
                        if tx.send(message).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(event = "pull_interrupted", error = %e, "span pull interrupted");
                        break;
                    }
                    None => break,
                },
            }
        }
    }
}
