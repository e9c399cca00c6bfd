//! One policy's alert rules over its span evaluations.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::notification::{Action, Notification, dedup_key};
use super::rule::{AlertRule, Metric, NoData, RuleEvaluation, Threshold, Verdict, show};
use super::state::{AlertStatus, Transition};
use super::window::BucketSeries;
use crate::score::SpanEvaluation;

mod expiry;
mod snapshot;
use expiry::expire_groups;
pub use snapshot::{EngineWindows, SnapshotMismatch};

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
    /// When the newest sample was observed: a group idle past the rule's `group_expiry`
    /// is retired.
    last_sample_ns: Option<u64>,
    /// Drift rules: the last permutation test.
    drift: super::DriftCache,
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
            last_sample_ns: None,
            drift: super::DriftCache::default(),
        }
    }
}

pub struct AlertEngine {
    scope: PolicyScope,
    rules: Vec<RuleState>,
    /// (rule, group) retired by expiry since last taken.
    expired: Vec<(String, String)>,
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
            expired: Vec::new(),
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
            group.last_sample_ns = group.last_sample_ns.max(Some(at));
            if state.rule.baseline().is_some() {
                group.trailing.add(at, sample.clone(), evaluation.trace_id);
            }
            group.recent.add(at, sample, evaluation.trace_id);
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
            out.extend(expire_groups(&scope, state, now_ns, &mut self.expired));
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
    let evaluation = rule.evaluate_cached(&group.recent, &group.trailing, now_ns, &mut group.drift);
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
    Some(notification(
        scope,
        rule,
        key,
        group,
        transition,
        &evaluation,
        due,
        now_ns,
    ))
}

/// The notification of a group's transition, made after its status changed.
#[allow(clippy::too_many_arguments)]
fn notification(
    scope: &PolicyScope,
    rule: &AlertRule,
    key: &str,
    group: &Group,
    transition: Transition,
    evaluation: &RuleEvaluation,
    due_ns: u64,
    now_ns: u64,
) -> Notification {
    let action = if transition == Transition::Resolve {
        Action::Resolve
    } else {
        Action::Trigger
    };
    let threshold = match rule.threshold {
        Threshold::Above(t) | Threshold::Below(t) => Some(t),
        Threshold::Regression { .. } => None,
        Threshold::Drift { min_distance, .. } => Some(min_distance),
    };
    let class = match &rule.metric {
        Metric::Judge { judge, .. } => judge.clone(),
        Metric::Latency(_) | Metric::TimeToFirstToken(_) => "latency".into(),
        Metric::Drift(_) => "drift".into(),
    };
    let since = match group.status.phase {
        super::state::Phase::Firing { since_ns, .. } => since_ns,
        _ => now_ns,
    };
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
    Notification {
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
        due_unix_nano: due_ns,
        example_trace_ids: evaluation
            .examples
            .iter()
            .rev()
            .take(5)
            .map(|t| t.to_string())
            .collect(),
    }
}

#[cfg(test)]
mod drift_tests;
#[cfg(test)]
mod expiry_tests;
#[cfg(test)]
mod tests;
