//! The evaluator loop: pull the policy's spans — or, when a judge needs whole traces, its
//! project's trace summaries — judge, publish scores (idempotent ids), and acknowledge a
//! message only once its records are stored.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use umpire_core::select::SpanSelector;
use umpire_core::span::{MessageSpans, SpanReading};
use umpire_nats::topology::ProjectNames;
use umpire_runtime::retry::Backoff;

mod span_task;
mod trace_task;

use span_task::{ack, judge_and_publish, poison};

use crate::judging::PolicyJudges;
use crate::metrics::EvaluatorMetrics;

/// Deliveries of an undecodable span message before it goes to the dead-letter stream.
pub const MAX_DELIVERIES: i64 = 5;

pub struct WorkerSettings {
    pub policy: String,
    pub concurrency: usize,
    /// A judge needs whole traces: the worker reads trace summaries, not spans.
    pub needs_trace: bool,
    pub ack_wait: Duration,
    pub group_keys: Vec<String>,
    /// Drift rules: the fields to embed into each span evaluation.
    pub drift: Option<crate::drift::DriftEmbeddings>,
    /// Which span attributes are decoded: those the policy names (judges read the GenAI
    /// view, not the attributes it was built from).
    pub reading: SpanReading,
}

/// Everything a judging task needs, shared.
struct Shared {
    js: jetstream::Context,
    names: ProjectNames,
    judges: PolicyJudges,
    selector: SpanSelector,
    settings: WorkerSettings,
    metrics: Arc<EvaluatorMetrics>,
    /// Where evaluations go; built once (a subject clone is a reference count).
    scores_subject: async_nats::Subject,
    slots: Semaphore,
    /// Every judge runs inline and nothing is embedded: spans are judged without a future
    /// or a slot each.
    inline: bool,
    /// Traces read back from the span stream at once (bounds their memory).
    assemblies: Semaphore,
}

pub struct Worker {
    shared: Arc<Shared>,
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
        let assemblies = Semaphore::new(trace_task::assemblies(settings.concurrency));
        let scores_subject = names.scores_subject(&settings.policy).into();
        let inline = judges.all_inline() && settings.drift.is_none();
        Self {
            shared: Arc::new(Shared {
                js,
                names,
                scores_subject,
                judges,
                selector,
                settings,
                metrics,
                slots,
                inline,
                assemblies,
            }),
            tasks: JoinSet::new(),
        }
    }

    pub async fn run(mut self, consumer: consumer::PullConsumer, shutdown: CancellationToken) {
        let (tx, mut rx) = mpsc::channel(self.shared.settings.concurrency.max(16) * 2);
        let fetch_stop = CancellationToken::new();
        let fetcher = tokio::spawn(fetch(consumer.clone(), tx, fetch_stop.clone()));
        let mut lag = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(message) = rx.recv() => self.on_message(message),
                _ = lag.tick() => {
                    let mut consumer = consumer.clone();
                    if let Ok(info) = consumer.info().await {
                        self.shared.metrics.consumer_pending.set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
                    }
                }
            }
            while self.tasks.try_join_next().is_some() {}
        }
        // Drain: stop pulling, judge what was pulled, finish judging and publishing.
        fetch_stop.cancel();
        let _ = fetcher.await;
        while let Ok(message) = rx.try_recv() {
            self.on_message(message);
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
        let shared = self.shared.clone();
        if shared.settings.needs_trace {
            self.tasks
                .spawn(async move { trace_task::judge_trace(&shared, message).await });
            return;
        }
        let metrics = &shared.metrics;
        let spans = match shared.settings.reading.read(&message.payload) {
            Ok(spans) => spans,
            Err(e) => {
                metrics.spans_consumed.inc();
                self.tasks
                    .spawn(async move { poison(&shared, message, e.to_string()).await });
                return;
            }
        };
        metrics.spans_consumed.inc_by(spans.len() as u64);
        match spans {
            // One span per message: judged as it was decoded, without a vector around it
            // (each move of a span or its judging future is a kilobyte-sized copy).
            MessageSpans::One(span) if shared.selector.selects(&span, true) => {
                metrics.spans_selected.inc();
                // The judging future is kilobytes: boxed, so that spawning the task moves a
                // pointer rather than copying the future through tokio's spawn path.
                self.tasks.spawn(async move {
                    Box::pin(judge_and_publish(
                        &shared,
                        std::slice::from_ref(&span),
                        message,
                    ))
                    .await;
                });
            }
            MessageSpans::Batch(mut spans) => {
                spans.retain(|span| shared.selector.selects(span, true));
                if spans.is_empty() {
                    self.tasks.spawn(async move { ack(message).await });
                    return;
                }
                metrics.spans_selected.inc_by(spans.len() as u64);
                self.tasks.spawn(async move {
                    Box::pin(judge_and_publish(&shared, &spans, message)).await;
                });
            }
            MessageSpans::One(_) => {
                self.tasks.spawn(async move { ack(message).await });
            }
        }
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
