//! What an alert transition tells the on-call: one notification per state change (and per
//! repeat), with a stable dedup key per policy, rule and group.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rule::Severity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Trigger,
    Resolve,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Stable per (namespace, policy, rule, group): PagerDuty's `dedup_key`.
    pub dedup_key: String,
    pub action: Action,
    /// Firing episode and repeat number: together with the dedup key they identify this
    /// notification, so re-sending it is idempotent.
    pub episode: u64,
    pub repeat: u64,
    pub namespace: String,
    pub project: String,
    pub policy: String,
    pub rule: String,
    /// `key=value` pairs joined by `,`; empty when the rule is not grouped.
    pub group: String,
    pub group_values: BTreeMap<String, String>,
    pub severity: Severity,
    pub route: String,
    /// The judge, or `latency`.
    pub class: String,
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    pub samples: u64,
    pub window: String,
    pub description: String,
    pub summary: String,
    pub since_unix_nano: u64,
    /// When the state change was decided.
    pub at_unix_nano: u64,
    /// When it became due (the score that made the rule true, or the end of `for` /
    /// `clearFor` / the repeat interval): alerting latency is measured from here.
    pub due_unix_nano: u64,
    pub example_trace_ids: Vec<String>,
}

impl Notification {
    /// The resolve of a firing alert whose rule left the policy (removed, renamed): same
    /// dedup key and episode as its trigger, so the receiver closes that incident.
    pub fn retired(trigger: &Notification, now_ns: u64) -> Notification {
        let group = if trigger.group.is_empty() {
            String::new()
        } else {
            format!(" ({})", trigger.group)
        };
        let description = "the rule was removed from the policy".to_owned();
        Notification {
            action: Action::Resolve,
            value: None,
            baseline: None,
            samples: 0,
            summary: format!(
                "[{}] {}/{}{group} resolved: {description}",
                trigger.severity.as_str(),
                trigger.policy,
                trigger.rule
            ),
            description,
            at_unix_nano: now_ns,
            due_unix_nano: now_ns,
            example_trace_ids: Vec::new(),
            ..trigger.clone()
        }
    }

    /// The id used to deduplicate this notification in the outbox.
    pub fn id(&self) -> String {
        let action = match self.action {
            Action::Trigger => "trigger",
            Action::Resolve => "resolve",
        };
        format!(
            "{}/{}/{}/{}",
            self.dedup_key, self.episode, action, self.repeat
        )
    }
}

/// `umpire/<namespace>/<policy>/<rule>[/<group hash>]`, at most 255 characters as PagerDuty
/// requires.
pub fn dedup_key(namespace: &str, policy: &str, rule: &str, group: &str) -> String {
    let base = format!("umpire/{namespace}/{policy}/{rule}");
    let key = if group.is_empty() {
        base
    } else {
        format!("{base}/{}", group_hash(group))
    };
    key.chars().take(255).collect()
}

/// A short stable token for a group (`key=value,…`): 16 hex digits of its xxh3 hash.
pub fn group_hash(group: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(group.as_bytes()))
}
