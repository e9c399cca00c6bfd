//! The policy's alert leader: evaluates its rules over the score stream, publishes the
//! notifications state changes produce to the outbox, and persists alert state.
//!
//! On taking the lease a replica restores the stored alert states and the last window
//! snapshot ([`crate::snapshot`]), replays the policy's scores stored after the snapshot —
//! without one, those of the last `lookback` (longest window + baseline) — to rebuild the
//! windows *without* evaluating, and evaluates from then on: on every score and on a short
//! tick (for `for`, `clearFor`, no-data and repeats). Followers only wait for the lease.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use umpire_core::alert::engine::{AlertEngine, PolicyScope};
use umpire_core::alert::rule::AlertRule;
use umpire_core::score::evaluations_of_message;
use umpire_nats::topology::ProjectNames;

use umpire_nats::fence::Fence;

use crate::leader::PolicyLease;
use crate::metrics::AlertMetrics;
use crate::outbox;
use crate::snapshot::{SnapshotSaver, WindowSnapshots};
use umpire_contract::alert_state::AlertStore;

/// Span evaluation ids remembered to drop re-published duplicates the score stream's
/// duplicate window no longer catches.
const REMEMBERED_IDS: usize = 200_000;

pub struct AlertEvaluator {
    pub js: jetstream::Context,
    pub names: ProjectNames,
    pub policy: String,
    pub rules: Vec<AlertRule>,
    pub lease: PolicyLease,
    pub store: AlertStore,
    pub metrics: Arc<AlertMetrics>,
    /// How often time-driven conditions are re-evaluated.
    pub tick: Duration,
    /// This leader's fence in the outbox stream, claimed with the lease.
    pub outbox_fence: Option<Fence>,
    pub snapshots: WindowSnapshots,
    pub snapshot_interval: Duration,
}

/// Where the replay of scores starts.
enum ReplayFrom {
    /// After the last score a restored snapshot holds.
    After(u64),
    /// The start of the rules' lookback (no usable snapshot).
    Time(SystemTime),
}

/// Why a replica stopped leading.
pub(crate) enum Stepped {
    Shutdown,
    /// The policy has no rules: its leftover alerts are retired, nothing else to do.
    Done,
    Lost(String),
}

impl AlertEvaluator {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let retry = self.lease.ttl() / 3;
        let mut following = false;
        loop {
            match self.lease.try_acquire().await {
                Ok(true) => following = false,
                Ok(false) => {
                    if !following {
                        following = true;
                        tracing::info!(event = "alert_following", policy = %self.policy, "another replica leads the policy's alerts; standing by");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry) => continue,
                    }
                }
                Err(e) => {
                    tracing::warn!(event = "alert_lease_failed", error = %e, "retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry) => continue,
                    }
                }
            }
            self.metrics.leader.set(1);
            self.metrics.leadership_changes.inc();
            tracing::info!(event = "alert_leadership_acquired", policy = %self.policy, "evaluating the policy's alert rules");
            let stepped = self.lead(&shutdown).await;
            self.metrics.leader.set(0);
            self.lease.release().await;
            match stepped {
                Stepped::Shutdown => {
                    tracing::info!(
                        event = "alert_leadership_released",
                        "alert leadership released"
                    );
                    return;
                }
                Stepped::Done => {
                    tracing::info!(
                        event = "alert_rules_absent",
                        "the policy has no alert rules; leftover alerts retired"
                    );
                    return;
                }
                Stepped::Lost(reason) => {
                    tracing::warn!(
                        event = "alert_leadership_lost",
                        reason,
                        "stopped evaluating alert rules"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry) => {}
                    }
                }
            }
        }
    }

    /// Claims the policy's alert state and outbox for this leader: from here on, writes of
    /// a previous leader that was paused past its lease are refused by JetStream.
    async fn claim(&mut self) -> Result<(), String> {
        let member = self.lease.member().to_owned();
        self.store.claim(&member).await.map_err(|e| e.to_string())?;
        let subject = outbox::epoch_subject(&self.names, &self.policy);
        let fence = Fence::claim(&self.js, &subject, &member)
            .await
            .map_err(|e| format!("claiming the policy's outbox: {e}"))?;
        self.outbox_fence = Some(fence);
        Ok(())
    }

    async fn lead(&mut self, shutdown: &CancellationToken) -> Stepped {
        if let Err(e) = self.claim().await {
            return Stepped::Lost(e);
        }
        let scope = PolicyScope {
            namespace: self.names.namespace().to_owned(),
            project: self.names.project().to_owned(),
            policy: self.policy.clone(),
        };
        let mut engine = AlertEngine::new(scope, self.rules.clone());
        let stored = match self.store.load().await {
            Ok(stored) => stored,
            Err(e) => return Stepped::Lost(e.to_string()),
        };
        // Alerts of rules no longer in the policy — every alert, when the policy is being
        // deleted — are resolved (when firing) and forgotten, so they neither stay open at
        // the receiver nor count as firing.
        let deleting = match self.store.is_retired().await {
            Ok(deleting) => deleting,
            Err(e) => return Stepped::Lost(e.to_string()),
        };
        let (stored, retired): (Vec<_>, Vec<_>) = stored
            .into_iter()
            .partition(|alert| !deleting && self.rules.iter().any(|rule| rule.name == alert.rule));
        if let Err(stepped) = self.retire(retired).await {
            return stepped;
        }
        if deleting || self.rules.is_empty() {
            self.snapshots.delete().await;
            return Stepped::Done;
        }
        let mut persisted = HashMap::new();
        let mut triggers = HashMap::new();
        for alert in stored {
            if let Some(trigger) = alert.trigger.clone() {
                triggers.insert((alert.rule.clone(), alert.group.clone()), trigger);
            }
            engine.restore(
                &alert.rule,
                &alert.group,
                alert.values.clone(),
                alert.status.clone(),
            );
            persisted.insert((alert.rule.clone(), alert.group.clone()), alert.status);
        }
        let restored_firing = persisted.values().filter(|s| s.is_firing()).count();

        let snapshot_through = self.restore_snapshot(&mut engine).await;
        let from = match snapshot_through {
            Some(sequence) => ReplayFrom::After(sequence),
            None => ReplayFrom::Time(
                SystemTime::now()
                    .checked_sub(engine.lookback())
                    .unwrap_or(UNIX_EPOCH),
            ),
        };
        let consumer = match self.replay_consumer(from).await {
            Ok(consumer) => consumer,
            Err(e) => return Stepped::Lost(e),
        };
        let mut caught_up = consumer.cached_info().num_pending == 0;
        // The score-stream position the windows hold, for snapshots.
        let mut through = snapshot_through.unwrap_or(0);
        let mut saver = SnapshotSaver::default();
        let mut messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(e) => return Stepped::Lost(format!("reading scores: {e}")),
        };
        tracing::info!(
            event = "alert_replay_started",
            restored = persisted.len(),
            restored_firing,
            lookback_s = engine.lookback().as_secs(),
            snapshot_through = snapshot_through.unwrap_or(0),
            "rebuilding alert windows from the score stream"
        );
        let replay_started = Instant::now();
        let mut replayed = 0u64;
        if caught_up {
            tracing::info!(
                event = "alert_replay_done",
                replayed,
                took_ms = 0u64,
                "alert windows rebuilt; evaluating"
            );
        }
        let mut snapshot_ticks = tokio::time::interval(self.snapshot_interval);
        snapshot_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        snapshot_ticks.tick().await;
        let mut seen = RecentIds::new(REMEMBERED_IDS);
        let mut ticks = tokio::time::interval(self.tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewals = tokio::time::interval(self.lease.ttl() / 3);
        renewals.tick().await;
        loop {
            let notes = tokio::select! {
                _ = shutdown.cancelled() => {
                    self.save_before_leaving(&engine, through, &mut saver).await;
                    return Stepped::Shutdown;
                }
                _ = snapshot_ticks.tick(), if caught_up => {
                    self.save_in_background(&engine, through, &mut saver);
                    continue;
                }
                _ = renewals.tick() => {
                    // Bounded well inside the self-fence, so an unanswered renewal never
                    // holds the loop past the moment this replica must stop acting.
                    match tokio::time::timeout(self.lease.ttl() / 5, self.lease.renew()).await {
                        Ok(Ok(true)) => {}
                        Ok(Ok(false)) => return Stepped::Lost("another replica holds the lease".into()),
                        Ok(Err(e)) => tracing::warn!(event = "alert_lease_renewal_failed", error = %e, "lease renewal failed"),
                        Err(_) => tracing::warn!(event = "alert_lease_renewal_failed", error = "no answer", "lease renewal failed"),
                    }
                    // The controller marks a policy being deleted; its alerts end with it.
                    if let Ok(true) = self.store.is_retired().await {
                        return self.retire_everything().await;
                    }
                    continue;
                }
                _ = ticks.tick() => {
                    if !self.lease.is_leader(Instant::now()) {
                        return Stepped::Lost("lease renewal overdue".into());
                    }
                    if !caught_up {
                        continue;
                    }
                    let notes = engine.tick(now_nanos());
                    if let Err(stepped) = self.apply(notes, &engine, &mut persisted, &mut triggers).await {
                        return stepped;
                    }
                    // After the resolves are in the outbox: a crash in between restores the
                    // firing alert, which expires again and re-sends the same resolve.
                    let expired = engine.take_expired();
                    if let Err(stepped) = self.forget_expired(expired, &mut persisted, &mut triggers).await {
                        return stepped;
                    }
                    continue;
                }
                next = messages.next() => match next {
                    Some(Ok(message)) => {
                        let (published, pending) = match message.info() {
                            Ok(info) => {
                                through = info.stream_sequence;
                                (info.published.unix_timestamp_nanos().max(0) as u64, info.pending)
                            }
                            Err(_) => (now_nanos(), 1),
                        };
                        let mut notes = Vec::new();
                        // One evaluation, or a batch of one trace's: each counted once by
                        // its id (a trace regrouped by ingest is judged and stored again).
                        match evaluations_of_message(&message.payload) {
                            Ok(evaluations) => for evaluation in evaluations {
                                if !seen.insert(&evaluation.id) {
                                    self.metrics.duplicate_scores.inc();
                                    continue;
                                }
                                self.metrics.scores_observed.inc();
                                let overflowed = engine.overflowed();
                                let mut observed = engine.observe(&evaluation, now_nanos(), caught_up);
                                self.metrics.groups_overflowed.inc_by(engine.overflowed() - overflowed);
                                // The score that made the rule true is the clock's start.
                                for note in &mut observed {
                                    note.due_unix_nano = note.due_unix_nano.min(published);
                                }
                                notes.extend(observed);
                            },
                            Err(e) => {
                                self.metrics.undecodable_scores.inc();
                                tracing::warn!(event = "score_undecodable", error = %e, "skipping an undecodable score message");
                            }
                        }
                        if !caught_up {
                            replayed += 1;
                            self.metrics.replayed_scores.inc();
                            if pending == 0 {
                                caught_up = true;
                                tracing::info!(event = "alert_replay_done", replayed, took_ms = replay_started.elapsed().as_millis() as u64, "alert windows rebuilt; evaluating");
                                notes.extend(engine.tick(now_nanos()));
                            }
                        }
                        notes
                    }
                    Some(Err(e)) => return Stepped::Lost(format!("reading scores: {e}")),
                    None => return Stepped::Lost("the score subscription ended".into()),
                },
            };
            // Never act on a lease that may have expired meanwhile (a score can arrive after
            // a renewal went unanswered).
            if !notes.is_empty() && !self.lease.is_leader(Instant::now()) {
                return Stepped::Lost("lease renewal overdue".into());
            }
            if !notes.is_empty()
                && let Err(stepped) = self
                    .apply(notes, &engine, &mut persisted, &mut triggers)
                    .await
            {
                return stepped;
            }
        }
    }

    async fn replay_consumer(
        &self,
        from: ReplayFrom,
    ) -> Result<consumer::Consumer<consumer::pull::OrderedConfig>, String> {
        let stream = self
            .js
            .get_stream(self.names.scores_stream())
            .await
            .map_err(|e| format!("score stream {}: {e}", self.names.scores_stream()))?;
        // The stream's age limit holds every rule's lookback (the CRD refuses longer ones),
        // but its byte limit may have dropped older scores: say the windows are partial.
        let state = &stream.cached_info().state;
        let oldest = SystemTime::from(state.first_timestamp);
        if let ReplayFrom::Time(start) = from
            && state.first_sequence > 1
            && oldest > start
        {
            tracing::warn!(
                event = "alert_replay_truncated",
                missing_s = oldest.duration_since(start).unwrap_or_default().as_secs(),
                "the score stream no longer holds the rules' whole lookback (its size limit dropped older scores): baselines start later"
            );
        }
        let deliver_policy = match from {
            ReplayFrom::After(sequence) => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: sequence + 1,
            },
            ReplayFrom::Time(start) => consumer::DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from(start),
            },
        };
        stream
            .create_consumer(consumer::pull::OrderedConfig {
                description: Some(format!("Umpire alert leader of {}", self.policy)),
                filter_subject: self.names.scores_subject(&self.policy),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("replaying scores: {e}"))
    }

    /// Waits a moment before a retry, giving up if leadership lapsed meanwhile.
    pub(crate) async fn wait_as_leader(&mut self) -> Result<(), Stepped> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if !self.lease.is_leader(Instant::now()) {
            match self.lease.renew().await {
                Ok(true) => {}
                _ => return Err(Stepped::Lost("lease lapsed while retrying".into())),
            }
        }
        Ok(())
    }
}

/// JetStream refused a write: another replica claimed the policy since this one did.
pub(crate) fn fenced() -> Stepped {
    Stepped::Lost("another replica claimed the policy; this one's writes are fenced off".into())
}

pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A bounded set of recently seen ids (oldest forgotten first).
struct RecentIds {
    set: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// True when the id is new.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}
