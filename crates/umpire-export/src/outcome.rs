//! Export by outcome: whole traces chosen by their evaluations. Every ingest replica follows
//! the project's scores (an ordered consumer, from a little before it started) into a
//! bounded index of which traces a judge failed or errored on; the trace summaries ingest
//! publishes after each kept trace's spans go, one each, to the replicas through a durable
//! consumer. A summary is decided `decisionWait` after it was stored — failed, or within the
//! healthy percentage by trace-id hash, or dropped — and a kept trace is read back from the
//! span stream (every kept span) and sent with its evaluations; then the summary is acked.
//! One replica decides each trace, from the same scores and hash: the same answer anywhere.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use umpire_api::trace_project::OutcomeExport;
use umpire_contract::traces::read_back;
use umpire_core::hashing::{HashPurpose, trace_in_percentage};
use umpire_core::ids::TraceId;
use umpire_core::judge::Outcome;
use umpire_core::score::{SpanEvaluation, evaluations_of_message};
use umpire_core::span::Span;
use umpire_core::trace_summary::TraceSummary;
use umpire_nats::topology::ProjectNames;
use umpire_runtime::retry::Backoff;

use crate::metrics::DecisionLabels;
use crate::pump::{Progress, Pump, Request, acknowledge, pull_retrying};

/// Traces the score index remembers at most (oldest forgotten first): ~100 bytes each.
const INDEX_MAX_TRACES: usize = 500_000;
/// Evaluations remembered per trace at most (sequences; a larger trace exports the first).
const INDEX_MAX_EVALUATIONS: usize = 1_000;
/// How long past `decisionWait` a trace stays in the index, for summaries redelivered after
/// a replica stopped.
const INDEX_GRACE: Duration = Duration::from_secs(300);
/// Default and longest wait for a trace's evaluations.
const DEFAULT_DECISION_WAIT: Duration = Duration::from_secs(30);
const MAX_DECISION_WAIT: Duration = Duration::from_secs(600);
/// When a batch whose trace could not be read back is delivered again.
const READ_RETRY: Duration = Duration::from_secs(5);
/// How long the follower waits on an empty stream before calling itself caught up.
const FOLLOW_IDLE: Duration = Duration::from_millis(500);
/// Longest a due decision waits for the follower to catch up with it.
const FOLLOW_LAG_LIMIT: Duration = Duration::from_secs(60);
/// Spans gathered before a request is sent (kept traces are sent together).
const SPANS_PER_REQUEST: usize = 2_000;

#[derive(Debug, Clone)]
pub(crate) struct OutcomeSettings {
    judges: Option<BTreeSet<String>>,
    healthy_percentage: f64,
    decision_wait: Duration,
}

impl OutcomeSettings {
    pub fn from_spec(spec: &OutcomeExport) -> Self {
        Self {
            judges: spec
                .judges
                .as_ref()
                .filter(|j| !j.is_empty())
                .map(|j| j.iter().cloned().collect()),
            healthy_percentage: spec.healthy_percentage.unwrap_or(0.0),
            decision_wait: spec
                .decision_wait
                .as_ref()
                .map_or(DEFAULT_DECISION_WAIT, |d| d.as_std())
                .min(MAX_DECISION_WAIT),
        }
    }

    /// Whether this evaluation makes its trace exported: a chosen judge failed or errored.
    fn fails(&self, evaluation: &SpanEvaluation) -> bool {
        evaluation.scores.iter().any(|score| {
            self.judges
                .as_ref()
                .is_none_or(|judges| judges.contains(&score.judge))
                && match &score.outcome {
                    Outcome::Scored(verdict) => !verdict.passed,
                    Outcome::Failed(_) => true,
                    Outcome::Skipped { .. } => false,
                }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Failed,
    Sampled,
    Dropped,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Sampled => "sampled",
            Self::Dropped => "dropped",
        }
    }
}

#[derive(Default)]
struct TraceOutcome {
    failed: bool,
    /// Scores-stream sequences of the trace's evaluations.
    evaluations: Vec<u64>,
}

/// What the evaluations seen so far say of recent traces.
#[derive(Default)]
pub(crate) struct ScoreIndex {
    traces: HashMap<TraceId, TraceOutcome>,
    order: VecDeque<(Instant, TraceId)>,
    /// Every evaluation stored before this time is in the index: the stored time of the
    /// last one folded in, or the present while the follower has nothing pending.
    followed_until: Option<SystemTime>,
}

impl ScoreIndex {
    fn add(&mut self, evaluation: &SpanEvaluation, sequence: u64, failed: bool, keep: Duration) {
        let now = Instant::now();
        let entry = self.traces.entry(evaluation.trace_id).or_insert_with(|| {
            self.order.push_back((now, evaluation.trace_id));
            TraceOutcome::default()
        });
        entry.failed |= failed;
        // The evaluations of one message (a batch of the trace's) share its sequence.
        if entry.evaluations.len() < INDEX_MAX_EVALUATIONS
            && entry.evaluations.last() != Some(&sequence)
        {
            entry.evaluations.push(sequence);
        }
        while let Some((seen, trace)) = self.order.front().copied() {
            if self.order.len() <= INDEX_MAX_TRACES && now.duration_since(seen) <= keep {
                break;
            }
            self.order.pop_front();
            self.traces.remove(&trace);
        }
    }

    fn followed_until(&self) -> Option<SystemTime> {
        self.followed_until
    }

    fn get(&self, trace: &TraceId) -> (bool, Vec<u64>) {
        self.traces
            .get(trace)
            .map(|t| (t.failed, t.evaluations.clone()))
            .unwrap_or_default()
    }
}

/// Whether an outcome target takes the trace, given all its evaluations (what `umpire
/// eval --export` applies to a CI run's traces).
pub fn outcome_selects(
    spec: &OutcomeExport,
    trace: &TraceId,
    evaluations: &[&SpanEvaluation],
) -> bool {
    let settings = OutcomeSettings::from_spec(spec);
    let failed = evaluations.iter().any(|e| settings.fails(e));
    decide(&settings, trace, failed) != Decision::Dropped
}

/// Decides a trace from what its evaluations said.
pub(crate) fn decide(settings: &OutcomeSettings, trace: &TraceId, failed: bool) -> Decision {
    if failed {
        Decision::Failed
    } else if trace_in_percentage(
        trace,
        HashPurpose::OutcomeExport,
        settings.healthy_percentage,
    ) {
        Decision::Sampled
    } else {
        Decision::Dropped
    }
}

pub(crate) struct OutcomePump {
    pub js: jetstream::Context,
    pub names: ProjectNames,
    pub target: String,
    pub settings: OutcomeSettings,
    /// Senders (and reporters) of the signals the target forwards.
    pub spans: Option<Pump>,
    pub evaluations: Option<Pump>,
}

impl OutcomePump {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let index = Arc::new(Mutex::new(ScoreIndex::default()));
        // From before this replica started: summaries another replica left unacked are
        // redelivered here, and their evaluations must be in the index.
        let from = SystemTime::now()
            - (self.settings.decision_wait + umpire_nats::topology::EXPORT_ACK_WAIT + INDEX_GRACE);
        let follower = tokio::spawn(follow_scores(
            self.js.clone(),
            self.names.clone(),
            index.clone(),
            self.settings.clone(),
            from,
            shutdown.clone(),
        ));
        let Some(consumer) = self.consumer(&shutdown).await else {
            follower.abort();
            return;
        };
        tracing::info!(event = "export_started", target = %self.target, signal = "outcome", decision_wait_s = self.settings.decision_wait.as_secs(), "exporting traces by outcome");
        while !shutdown.is_cancelled() {
            let Some(batch) = pull_retrying(
                &consumer,
                Duration::from_millis(500),
                &self.target,
                &shutdown,
            )
            .await
            else {
                break;
            };
            if !batch.is_empty() && !self.decide_batch(batch, &index, &shutdown).await {
                break;
            }
        }
        follower.abort();
    }

    async fn consumer(&mut self, shutdown: &CancellationToken) -> Option<consumer::PullConsumer> {
        let stream = self.names.spans_stream();
        let filter = self.names.traces_subject();
        // Either signal's pump sets it up and reports its failures (start() spawns no
        // outcome pump that forwards neither).
        let pump = self.spans.as_mut().or(self.evaluations.as_mut())?;
        pump.set_up_consumer("outcome", &stream, filter, shutdown)
            .await
    }

    /// Waits until the batch's summaries are due, decides each, sends the kept traces and
    /// acks the batch; false when shutdown came first (the batch is handed back).
    async fn decide_batch(
        &mut self,
        batch: Vec<jetstream::Message>,
        index: &Mutex<ScoreIndex>,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut progress = Progress {
            batch: &batch,
            last: Instant::now(),
        };
        let stored_last = batch
            .iter()
            .filter_map(|m| m.info().ok().map(|i| SystemTime::from(i.published)))
            .max()
            .unwrap_or_else(SystemTime::now);
        let due = stored_last + self.settings.decision_wait;
        while let Ok(left) = due.duration_since(SystemTime::now()) {
            tokio::select! {
                _ = shutdown.cancelled() => return handed_back(&batch).await,
                _ = tokio::time::sleep(left.min(Duration::from_secs(5))) => {}
            }
            progress.report().await;
        }
        // The decision needs every evaluation stored before it was due: a follower that
        // lags (a burst of scores, a slow start) is waited for, within a bound.
        let waited = Instant::now();
        while lock_index(index)
            .followed_until()
            .is_none_or(|until| until < due)
        {
            if waited.elapsed() >= FOLLOW_LAG_LIMIT {
                tracing::warn!(event = "export_scores_behind", target = %self.target, waited_s = FOLLOW_LAG_LIMIT.as_secs(), "deciding while the evaluations followed are behind: later evaluations are not considered");
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return handed_back(&batch).await,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            progress.report().await;
        }
        let mut spans: Vec<Span> = Vec::new();
        let mut evaluations: Vec<SpanEvaluation> = Vec::new();
        // Counted once the batch is acked (a batch handed back is decided again).
        let mut decisions = Vec::with_capacity(batch.len());
        for message in &batch {
            let Ok(summary) = serde_json::from_slice::<TraceSummary>(&message.payload) else {
                tracing::error!(event = "export_undecodable", target = %self.target, signal = "outcome", "skipping a trace summary that does not decode");
                continue;
            };
            let (failed, sequences) = lock_index(index).get(&summary.trace_id);
            let decision = decide(&self.settings, &summary.trace_id, failed);
            decisions.push(decision);
            if decision == Decision::Dropped {
                continue;
            }
            if self.spans.is_some() {
                match read_back(&self.js, &self.names, &summary).await {
                    Ok(trace) => spans.extend(trace.spans),
                    Err(e) => {
                        // Handed back whole, to be decided again in a moment: the span
                        // stream cannot be read right now. The pump goes on.
                        tracing::warn!(event = "export_trace_read_failed", target = %self.target, trace_id = %summary.trace_id, error = %e, "reading a kept trace back failed; retried");
                        nak_all(&batch, READ_RETRY).await;
                        return true;
                    }
                }
            }
            if self.evaluations.is_some() {
                evaluations.extend(self.read_evaluations(&summary.trace_id, &sequences).await);
            }
            if spans.len() >= SPANS_PER_REQUEST
                && !self
                    .send_spans(std::mem::take(&mut spans), &mut progress, shutdown)
                    .await
            {
                return handed_back(&batch).await;
            }
        }
        if !self.send_spans(spans, &mut progress, shutdown).await {
            return handed_back(&batch).await;
        }
        if let Some(pump) = self.evaluations.as_mut() {
            for part in pump.encode_evaluations(&evaluations) {
                if !pump.send_until_taken(&part, &mut progress, shutdown).await {
                    return handed_back(&batch).await;
                }
            }
        }
        acknowledge(&batch).await;
        for decision in decisions {
            self.count(decision);
        }
        true
    }

    async fn send_spans(
        &mut self,
        spans: Vec<Span>,
        progress: &mut Progress<'_>,
        shutdown: &CancellationToken,
    ) -> bool {
        let Some(pump) = self.spans.as_mut() else {
            return true;
        };
        let parts: Vec<Request> = pump.encode_spans(&spans);
        for part in parts {
            if !pump.send_until_taken(&part, progress, shutdown).await {
                return false;
            }
        }
        true
    }

    /// The trace's evaluations, read from the scores stream by sequence (those the
    /// stream's limits removed are skipped), each once: a trace regrouped by ingest is
    /// judged again and its evaluations stored in a second batch.
    async fn read_evaluations(&self, trace_id: &TraceId, sequences: &[u64]) -> Vec<SpanEvaluation> {
        let Ok(stream) = self.js.get_stream_no_info(self.names.scores_stream()).await else {
            return Vec::new();
        };
        let mut evaluations = Vec::new();
        let mut seen = HashSet::new();
        for sequence in sequences {
            if let Ok(message) = stream.get_raw_message(*sequence).await
                && let Ok(stored) = evaluations_of_message(&message.payload)
            {
                evaluations.extend(stored.into_iter().filter(|evaluation| {
                    evaluation.trace_id == *trace_id && seen.insert(evaluation.id.clone())
                }));
            }
        }
        evaluations
    }

    fn count(&self, decision: Decision) {
        let metrics = self
            .spans
            .as_ref()
            .or(self.evaluations.as_ref())
            .map(|p| &p.metrics);
        if let Some(metrics) = metrics {
            metrics
                .traces
                .get_or_create(&DecisionLabels {
                    target: self.target.clone(),
                    decision: decision.as_str(),
                })
                .inc();
        }
    }
}

fn lock_index(index: &Mutex<ScoreIndex>) -> std::sync::MutexGuard<'_, ScoreIndex> {
    index
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands the batch back at shutdown (false: the pump stops).
async fn handed_back(batch: &[jetstream::Message]) -> bool {
    nak_all(batch, Duration::from_secs(1)).await;
    false
}

async fn nak_all(batch: &[jetstream::Message], delay: Duration) {
    for message in batch {
        let _ = message.ack_with(jetstream::AckKind::Nak(Some(delay))).await;
    }
}

/// Folds every stored evaluation of the project into the index, from `from` on, following
/// new ones; re-created from where it stopped after an error.
async fn follow_scores(
    js: jetstream::Context,
    names: ProjectNames,
    index: Arc<Mutex<ScoreIndex>>,
    settings: OutcomeSettings,
    mut from: SystemTime,
    shutdown: CancellationToken,
) {
    let keep = settings.decision_wait + umpire_nats::topology::EXPORT_ACK_WAIT + INDEX_GRACE;
    let mut attempt = 0u32;
    while !shutdown.is_cancelled() {
        let consumer = async {
            let stream = js
                .get_stream(names.scores_stream())
                .await
                .map_err(|e| e.to_string())?;
            let mut consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    description: Some("Umpire outcome export: the project's evaluations".into()),
                    filter_subject: names.scores_wildcard(),
                    deliver_policy: consumer::DeliverPolicy::ByStartTime {
                        start_time: time::OffsetDateTime::from(from),
                    },
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            // Nothing to replay (no evaluations yet, or none since `from`): caught up now.
            let pending = consumer
                .info()
                .await
                .map_err(|e| e.to_string())?
                .num_pending;
            let messages = consumer.messages().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((messages, pending == 0))
        }
        .await;
        let (mut messages, mut caught_up) = match consumer {
            Ok(followed) => followed,
            Err(e) => {
                if attempt.is_multiple_of(10) {
                    tracing::warn!(event = "export_scores_unavailable", error = %e, "cannot follow the project's evaluations; retrying");
                }
                if !Backoff::SET_UP.wait(attempt, &shutdown).await {
                    return;
                }
                attempt = attempt.saturating_add(1);
                continue;
            }
        };
        attempt = 0;
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                // Nothing new for a while and nothing was pending: the index holds every
                // evaluation stored until then.
                _ = tokio::time::sleep(FOLLOW_IDLE), if caught_up => {
                    lock_index(&index).followed_until = Some(SystemTime::now() - FOLLOW_IDLE);
                    continue;
                }
                message = messages.next() => message,
            };
            let Some(Ok(message)) = message else { break };
            let Ok(info) = message.info() else { continue };
            let (sequence, published) = (info.stream_sequence, SystemTime::from(info.published));
            caught_up = info.pending == 0;
            let mut locked = lock_index(&index);
            for evaluation in evaluations_of_message(&message.payload).unwrap_or_default() {
                let failed = settings.fails(&evaluation);
                locked.add(&evaluation, sequence, failed, keep);
            }
            locked.followed_until = Some(published);
            drop(locked);
            from = published;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_traces_are_always_kept_and_a_share_of_the_rest_by_hash() {
        let settings = OutcomeSettings {
            judges: None,
            healthy_percentage: 10.0,
            decision_wait: DEFAULT_DECISION_WAIT,
        };
        let mut kept = 0;
        for n in 0u32..10_000 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&n.to_be_bytes());
            let trace = TraceId(id);
            assert_eq!(decide(&settings, &trace, true), Decision::Failed);
            let healthy = decide(&settings, &trace, false);
            // The same answer every time (and on every replica: a hash of the id).
            assert_eq!(healthy, decide(&settings, &trace, false));
            kept += usize::from(healthy == Decision::Sampled);
        }
        assert!(
            (900..1100).contains(&kept),
            "{kept} of 10,000 sampled at 10%"
        );
    }
}
