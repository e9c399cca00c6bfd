//! One policy's alert rules over its span evaluations.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::notification::{Action, Notification, dedup_key};
use super::rule::{AlertRule, Metric, NoData, RuleEvaluation, Threshold, Verdict, show};
use super::state::{AlertStatus, Transition};
use super::window::BucketSeries;
use crate::score::SpanEvaluation;

/// The group that collects spans past a rule's `maxGroups`.
pub const OTHER_GROUP: &str = "__other__";

/// Where the policy lives, for dedup keys and notification text.
#[derive(Debug, Clone)]
pub struct PolicyScope {
    pub namespace: String,
    pub project: String,
    pub policy: String,
}

struct Group {
    values: BTreeMap<String, String>,
    /// Fine buckets covering the window.
    recent: BucketSeries,
    /// Coarse buckets covering the baseline (regressions only).
    trailing: BucketSeries,
    status: AlertStatus,
    last: Option<RuleEvaluation>,
    /// Since when this engine has watched the group (first tick or sample): an absence is
    /// only an absence once a whole window has been watched.
    watched_since_ns: Option<u64>,
}

struct RuleState {
    rule: AlertRule,
    groups: HashMap<String, Group>,
    overflowed: u64,
}

impl RuleState {
    fn new_group(&self, values: BTreeMap<String, String>) -> Group {
        let window = self.rule.window.as_nanos() as u64;
        // ~30 buckets per window and ~48 per baseline bound memory per group.
        let fine = (window / 30).clamp(1_000_000_000, 60_000_000_000);
        let coarse = self
            .rule
            .baseline()
            .map(|b| (b.as_nanos() as u64 / 48).max(fine))
            .unwrap_or(fine);
        Group {
            values,
            recent: BucketSeries::new(fine),
            trailing: BucketSeries::new(coarse),
            status: AlertStatus::default(),
            last: None,
            watched_since_ns: None,
        }
    }
}

pub struct AlertEngine {
    scope: PolicyScope,
    rules: Vec<RuleState>,
}

/// An alert's current standing, for status reporting and persistence.
#[derive(Debug, Clone)]
pub struct AlertView<'a> {
    pub rule: &'a str,
    pub group: &'a str,
    pub values: &'a BTreeMap<String, String>,
    pub status: &'a AlertStatus,
}

impl AlertEngine {
    pub fn new(scope: PolicyScope, rules: Vec<AlertRule>) -> Self {
        let mut engine = Self {
            scope,
            rules: rules
                .into_iter()
                .map(|rule| RuleState {
                    rule,
                    groups: HashMap::new(),
                    overflowed: 0,
                })
                .collect(),
        };
        // Ungrouped rules have their one group from the start, so "no traffic" can alert.
        for state in &mut engine.rules {
            if state.rule.group_by.is_empty() {
                let group = state.new_group(BTreeMap::new());
                state.groups.insert(String::new(), group);
            }
        }
        engine
    }

    /// How far back evaluations matter (the longest window + baseline).
    pub fn lookback(&self) -> Duration {
        self.rules
            .iter()
            .map(|s| s.rule.window + s.rule.baseline().unwrap_or_default())
            .max()
            .unwrap_or_default()
    }

    /// Spans folded into `__other__` because a rule hit `maxGroups`.
    pub fn overflowed(&self) -> u64 {
        self.rules.iter().map(|s| s.overflowed).sum()
    }

    /// Restores a persisted status (after a restart or a change of leader).
    pub fn restore(
        &mut self,
        rule: &str,
        group: &str,
        values: BTreeMap<String, String>,
        status: AlertStatus,
    ) {
        if let Some(state) = self.rules.iter_mut().find(|s| s.rule.name == rule) {
            let fresh = state.new_group(values);
            state.groups.entry(group.to_owned()).or_insert(fresh).status = status;
        }
    }

    pub fn alerts(&self) -> Vec<AlertView<'_>> {
        self.rules
            .iter()
            .flat_map(|s| {
                s.groups.iter().map(move |(group, g)| AlertView {
                    rule: &s.rule.name,
                    group,
                    values: &g.values,
                    status: &g.status,
                })
            })
            .collect()
    }

    /// Adds an evaluation's samples; when `evaluate` is set, re-evaluates the groups it
    /// touched at `now_ns` (replays after a restart only rebuild windows).
    pub fn observe(
        &mut self,
        evaluation: &SpanEvaluation,
        now_ns: u64,
        evaluate: bool,
    ) -> Vec<Notification> {
        let scope = self.scope.clone();
        let mut out = Vec::new();
        for state in &mut self.rules {
            let Some(sample) = state.rule.sample(evaluation) else {
                continue;
            };
            let values: BTreeMap<String, String> = state
                .rule
                .group_by
                .iter()
                .map(|k| {
                    (
                        k.clone(),
                        evaluation.groups.get(k).cloned().unwrap_or_default(),
                    )
                })
                .collect();
            let mut key = group_key(&values);
            if !state.groups.contains_key(&key) && state.groups.len() >= state.rule.max_groups {
                state.overflowed += 1;
                key = OTHER_GROUP.to_owned();
            }
            if !state.groups.contains_key(&key) {
                let values = if key == OTHER_GROUP {
                    BTreeMap::new()
                } else {
                    values
                };
                let group = state.new_group(values);
                state.groups.insert(key.clone(), group);
            }
            let Some(group) = state.groups.get_mut(&key) else {
                continue;
            };
            let at = evaluation.observed_at_unix_nano.min(now_ns);
            let since = group.watched_since_ns.get_or_insert(at);
            *since = (*since).min(at);
            group.recent.add(at, sample, evaluation.trace_id);
            if state.rule.baseline().is_some() {
                group.trailing.add(at, sample, evaluation.trace_id);
            }
            if evaluate && let Some(n) = step(&scope, &state.rule, &key, group, now_ns) {
                out.push(n);
            }
        }
        out
    }

    /// Re-evaluates every group: `for`, `clearFor`, no-data and repeats depend on time.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Notification> {
        let scope = self.scope.clone();
        let mut out = Vec::new();
        for state in &mut self.rules {
            let window = state.rule.window.as_nanos() as u64;
            let keep_from = now_ns.saturating_sub(
                window + state.rule.baseline().unwrap_or_default().as_nanos() as u64,
            );
            for (key, group) in state.groups.iter_mut() {
                group.watched_since_ns.get_or_insert(now_ns);
                group.recent.prune(now_ns.saturating_sub(window));
                group.trailing.prune(keep_from);
                if let Some(n) = step(&scope, &state.rule, key, group, now_ns) {
                    out.push(n);
                }
            }
        }
        out
    }
}

fn group_key(values: &BTreeMap<String, String>) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn step(
    scope: &PolicyScope,
    rule: &AlertRule,
    key: &str,
    group: &mut Group,
    now_ns: u64,
) -> Option<Notification> {
    let evaluation = rule.evaluate(&group.recent, &group.trailing, now_ns);
    let watched = now_ns.saturating_sub(group.watched_since_ns.unwrap_or(now_ns));
    if matches!(evaluation.verdict, Verdict::NoData)
        && rule.no_data == NoData::Alert
        && watched < rule.window.as_nanos() as u64
    {
        group.last = Some(evaluation);
        return None;
    }
    let before = group.status.phase.clone();
    let transition = group.status.step(rule, &evaluation, now_ns);
    group.last = Some(evaluation.clone());
    let transition = transition?;
    let action = if transition == Transition::Resolve {
        Action::Resolve
    } else {
        Action::Trigger
    };
    let threshold = match rule.threshold {
        Threshold::Above(t) | Threshold::Below(t) => Some(t),
        Threshold::Regression { .. } => None,
    };
    let class = match &rule.metric {
        Metric::Judge { judge, .. } => judge.clone(),
        Metric::Latency(_) => "latency".into(),
    };
    let since = match group.status.phase {
        super::state::Phase::Firing { since_ns, .. } => since_ns,
        _ => now_ns,
    };
    // When the transition became due: evaluation happens on every score and on every tick,
    // so the gap from here to the notifier's request is the alerting latency.
    let due = match (transition, before) {
        (Transition::Trigger, super::state::Phase::Pending { since_ns }) => {
            since_ns + rule.for_.as_nanos() as u64
        }
        (
            Transition::Resolve,
            super::state::Phase::Firing {
                clear_since_ns: Some(c),
                ..
            },
        ) => c + rule.clear_for.as_nanos() as u64,
        (
            Transition::Repeat,
            super::state::Phase::Firing {
                last_notified_ns, ..
            },
        ) => last_notified_ns + rule.repeat_interval.unwrap_or_default().as_nanos() as u64,
        _ => now_ns,
    }
    .min(now_ns);
    let group_label = if key.is_empty() {
        String::new()
    } else {
        format!(" ({key})")
    };
    let verb = match transition {
        Transition::Trigger => "firing",
        Transition::Repeat => "still firing",
        Transition::Resolve => "resolved",
    };
    let summary = format!(
        "[{}] {}/{}{group_label} {verb}: {} (n={})",
        rule.severity.as_str(),
        scope.policy,
        rule.name,
        evaluation.description,
        evaluation.samples
    );
    Some(Notification {
        dedup_key: dedup_key(&scope.namespace, &scope.policy, &rule.name, key),
        action,
        episode: group.status.episode,
        repeat: group.status.repeats,
        namespace: scope.namespace.clone(),
        project: scope.project.clone(),
        policy: scope.policy.clone(),
        rule: rule.name.clone(),
        group: key.to_owned(),
        group_values: group.values.clone(),
        severity: rule.severity,
        route: rule.route.clone(),
        class,
        metric: rule.metric_name(),
        value: evaluation.value,
        threshold,
        baseline: evaluation.baseline,
        samples: evaluation.samples,
        window: show(rule.window),
        description: evaluation.description.clone(),
        summary: summary.chars().take(1024).collect(),
        since_unix_nano: since,
        at_unix_nano: now_ns,
        due_unix_nano: due,
        example_trace_ids: evaluation
            .examples
            .iter()
            .rev()
            .take(5)
            .map(|t| t.to_string())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alert::rule::{Aggregation, NoData, Severity};
    use crate::alert::state::Phase;
    use crate::ids::{SpanId, TraceId};
    use crate::judge::{Outcome, Verdict as JudgeVerdict};
    use crate::score::JudgeScore;

    const S: u64 = 1_000_000_000;

    fn rule(threshold: Threshold, for_s: u64, group_by: &[&str]) -> AlertRule {
        AlertRule {
            name: "grounded-drop".into(),
            metric: Metric::Judge {
                judge: "grounded".into(),
                aggregation: Aggregation::PassRate,
            },
            window: Duration::from_secs(60),
            min_samples: 20,
            group_by: group_by.iter().map(|g| (*g).to_owned()).collect(),
            max_groups: 10,
            threshold,
            for_: Duration::from_secs(for_s),
            clear_for: Duration::from_secs(30),
            no_data: NoData::KeepState,
            severity: Severity::Critical,
            route: "oncall".into(),
            repeat_interval: None,
        }
    }

    fn engine(rules: Vec<AlertRule>) -> AlertEngine {
        AlertEngine::new(
            PolicyScope {
                namespace: "ml".into(),
                project: "bot".into(),
                policy: "quality".into(),
            },
            rules,
        )
    }

    fn evaluation(n: u64, at: u64, passed: bool, model: &str) -> SpanEvaluation {
        let mut trace = [0u8; 16];
        trace[..8].copy_from_slice(&n.to_be_bytes());
        SpanEvaluation {
            id: format!("quality/{n}"),
            policy: "quality".into(),
            trace_id: TraceId(trace),
            span_id: SpanId([1; 8]),
            observed_at_unix_nano: at,
            scored_at_unix_nano: at,
            latency_ms: 100.0,
            groups: [("gen_ai.request.model".to_owned(), model.to_owned())]
                .into_iter()
                .collect(),
            model: None,
            scores: vec![JudgeScore {
                judge: "grounded".into(),
                outcome: Outcome::Scored(JudgeVerdict {
                    value: if passed { 1.0 } else { 0.0 },
                    passed,
                    label: None,
                    explanation: None,
                    measurement: None,
                    usage: None,
                }),
                judge_latency_ms: 1.0,
            }],
        }
    }

    /// Feeds `per_second` evaluations a second from `from` to `to` (seconds), ticking every
    /// second; `pass` decides each sample.
    fn run(
        engine: &mut AlertEngine,
        from: u64,
        to: u64,
        per_second: u64,
        model: &str,
        pass: impl Fn(u64, u64) -> bool,
    ) -> Vec<Notification> {
        let mut out = Vec::new();
        for second in from..to {
            for i in 0..per_second {
                let at = second * S + i * (S / per_second.max(1));
                out.extend(engine.observe(
                    &evaluation(second * 1000 + i, at, pass(second, i), model),
                    at,
                    true,
                ));
            }
            out.extend(engine.tick((second + 1) * S));
        }
        out
    }

    #[test]
    fn fires_once_after_for_and_resolves_once_after_clear_for() {
        let mut engine = engine(vec![rule(Threshold::Below(0.9), 30, &[])]);
        let mut notes = run(&mut engine, 0, 120, 2, "m", |_, _| true);
        assert!(notes.is_empty(), "healthy: {notes:?}");
        notes = run(&mut engine, 120, 300, 2, "m", |_, i| i == 0); // 50% pass
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].action, Action::Trigger);
        assert_eq!(notes[0].dedup_key, "umpire/ml/quality/grounded-drop");
        // The 60 s window at 2 spans/s, give or take one bucket edge.
        assert!(
            (120..=124).contains(&notes[0].samples),
            "{}",
            notes[0].samples
        );
        // Fired 30 s (`for`) after the rate first crossed 0.9, while the window still mixes
        // healthy and broken traffic.
        let value = notes[0].value.unwrap();
        assert!((0.5..0.9).contains(&value), "{value}");
        assert!(
            notes[0]
                .summary
                .contains(&format!("grounded pass rate {value:.3} < 0.9 over 1m")),
            "{}",
            notes[0].summary
        );
        assert!(!notes[0].example_trace_ids.is_empty());
        notes = run(&mut engine, 300, 500, 2, "m", |_, _| true);
        assert_eq!(
            notes.iter().map(|n| n.action).collect::<Vec<_>>(),
            [Action::Resolve]
        );
    }

    #[test]
    fn a_short_dip_shorter_than_for_does_not_page() {
        let mut engine = engine(vec![rule(Threshold::Below(0.9), 120, &[])]);
        let mut notes = run(&mut engine, 0, 100, 2, "m", |_, _| true);
        notes.extend(run(&mut engine, 100, 160, 2, "m", |_, i| i == 0));
        notes.extend(run(&mut engine, 160, 400, 2, "m", |_, _| true));
        assert!(notes.is_empty(), "{notes:?}");
    }

    fn regression() -> Threshold {
        Threshold::Regression {
            baseline: Duration::from_secs(3600),
            max_drop: Some(0.10),
            max_rise: None,
            confidence: 0.99,
        }
    }

    #[test]
    fn regression_pages_per_group_and_noise_does_not() {
        let mut engine = engine(vec![rule(regression(), 0, &["gen_ai.request.model"])]);
        // An hour of 90% pass rates for two models (deterministic pattern).
        let healthy = |s: u64, i: u64| !(s * 3 + i).is_multiple_of(10);
        let mut notes = Vec::new();
        for second in 0..3600 {
            notes.extend(run(&mut engine, second, second + 1, 2, "gpt-4o", healthy));
            notes.extend(run(
                &mut engine,
                second,
                second + 1,
                2,
                "gpt-4o-mini",
                healthy,
            ));
        }
        assert!(notes.is_empty(), "steady traffic must not page: {notes:?}");
        // gpt-4o drops to 50%; gpt-4o-mini stays.
        for second in 3600..3720 {
            notes.extend(run(&mut engine, second, second + 1, 2, "gpt-4o", |_, i| {
                i == 0
            }));
            notes.extend(run(
                &mut engine,
                second,
                second + 1,
                2,
                "gpt-4o-mini",
                healthy,
            ));
        }
        let triggers: Vec<&Notification> = notes
            .iter()
            .filter(|n| n.action == Action::Trigger)
            .collect();
        assert_eq!(triggers.len(), 1, "{notes:?}");
        assert_eq!(triggers[0].group, "gen_ai.request.model=gpt-4o");
        assert!(triggers[0].baseline.unwrap() > 0.85);
    }

    #[test]
    fn small_noisy_samples_never_page() {
        // A true 80 % pass rate, random per span, evaluated after every span for 4 hours:
        // one span every 2 s gives ~30-sample windows whose rate swings by ±20 points.
        let mut rule = rule(regression(), 0, &[]);
        rule.min_samples = 20;
        let mut engine = engine(vec![rule]);
        let mut notes = Vec::new();
        let mut state = 12345u64;
        let mut worst = 1.0f64;
        for second in (0..4 * 3600u64).step_by(2) {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let passed = (state >> 33) % 100 < 80;
            notes.extend(engine.observe(
                &evaluation(second, second * S, passed, "m"),
                second * S,
                true,
            ));
            notes.extend(engine.tick(second * S + 1));
            if second > 3600
                && let Some(value) = engine.rules[0].groups[""]
                    .last
                    .as_ref()
                    .and_then(|e| e.value)
            {
                worst = worst.min(value);
            }
        }
        // The stream did dip well past the 10 % limit at some point; it still never paged.
        assert!(
            worst < 0.72,
            "the stream should be noisy: worst window {worst}"
        );
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn groups_beyond_the_cap_fold_into_other() {
        let mut capped = rule(Threshold::Below(0.5), 0, &["gen_ai.request.model"]);
        capped.max_groups = 2;
        let mut engine = engine(vec![capped]);
        for (n, model) in ["a", "b", "c", "d"].iter().enumerate() {
            engine.observe(&evaluation(n as u64, S, true, model), S, true);
        }
        let mut groups: Vec<&str> = engine.alerts().iter().map(|a| a.group).collect();
        groups.sort();
        assert_eq!(
            groups,
            [
                "__other__",
                "gen_ai.request.model=a",
                "gen_ai.request.model=b"
            ]
        );
        assert_eq!(engine.overflowed(), 2);
    }

    #[test]
    fn no_data_can_alert_and_repeats_are_sent() {
        let mut silent = rule(Threshold::Below(1.0), 0, &[]);
        silent.metric = Metric::Judge {
            judge: "grounded".into(),
            aggregation: Aggregation::Count,
        };
        silent.no_data = NoData::Alert;
        silent.repeat_interval = Some(Duration::from_secs(600));
        let mut engine = engine(vec![silent]);
        let mut notes = Vec::new();
        for second in 0..1300 {
            notes.extend(engine.tick(second * S));
        }
        let kinds: Vec<(Action, u64)> = notes.iter().map(|n| (n.action, n.repeat)).collect();
        assert_eq!(
            kinds,
            [
                (Action::Trigger, 0),
                (Action::Trigger, 1),
                (Action::Trigger, 2)
            ]
        );
        assert!(notes.iter().all(|n| n.episode == 1));
        assert_eq!(notes[0].id(), "umpire/ml/quality/grounded-drop/1/trigger/0");
    }

    #[test]
    fn a_restored_firing_alert_is_not_paged_again() {
        let mut engine = engine(vec![rule(Threshold::Below(0.9), 0, &[])]);
        let firing = AlertStatus {
            phase: Phase::Firing {
                since_ns: 10 * S,
                last_notified_ns: 10 * S,
                clear_since_ns: None,
            },
            episode: 3,
            repeats: 0,
            value: Some(0.4),
        };
        engine.restore("grounded-drop", "", BTreeMap::new(), firing);
        let notes = run(&mut engine, 20, 100, 2, "m", |_, _| false);
        assert!(notes.is_empty(), "{notes:?}");
        let notes = run(&mut engine, 100, 300, 2, "m", |_, _| true);
        assert_eq!(notes.len(), 1);
        assert_eq!((notes[0].action, notes[0].episode), (Action::Resolve, 3));
    }

    /// `umpire local manifests/examples` paged "no traffic" 0.1 s after start: a window
    /// that has not been watched for its whole length has not shown an absence yet.
    #[test]
    fn no_data_alerts_only_after_a_whole_window_was_watched() {
        let mut silent = rule(Threshold::Below(1.0), 0, &[]);
        silent.metric = Metric::Judge {
            judge: "grounded".into(),
            aggregation: Aggregation::Count,
        };
        silent.no_data = NoData::Alert;
        let start = 1_000 * S;
        let mut engine = engine(vec![silent]);
        let mut notes = Vec::new();
        for second in 0..59 {
            notes.extend(engine.tick(start + second * S));
        }
        assert!(notes.is_empty(), "paged before a window passed: {notes:?}");
        for second in 59..62 {
            notes.extend(engine.tick(start + second * S));
        }
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].action, Action::Trigger);
    }
}
