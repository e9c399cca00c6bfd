//! Group expiry: a group of a grouped rule that has had no samples for the rule's
//! `group_expiry` is retired — its firing alert resolved, then forgotten — so a group gone
//! on purpose (a model retired after its `noData: alert` page) stops paging and stops
//! holding a place under `maxGroups`, and one that returns later starts clean.

use super::{AlertEngine, PolicyScope, RuleState, notification};
use crate::alert::notification::Notification;
use crate::alert::rule::{RuleEvaluation, Verdict, show};
use crate::alert::state::{Phase, Transition};

/// Retires `state`'s groups idle for its rule's expiry at `now_ns`: returns the resolves of
/// those that were firing and records every retired (rule, group) in `expired`.
pub(super) fn expire_groups(
    scope: &PolicyScope,
    state: &mut RuleState,
    now_ns: u64,
    expired: &mut Vec<(String, String)>,
) -> Vec<Notification> {
    let Some(expiry) = state.rule.group_expiry else {
        return Vec::new();
    };
    if state.rule.group_by.is_empty() {
        return Vec::new();
    }
    let expiry_ns = expiry.as_nanos() as u64;
    let idle: Vec<String> = state
        .groups
        .iter()
        .filter(|(_, group)| {
            // A group restored without samples (after a restart) is idle since it was
            // first watched again: its expiry never comes early.
            let active = group.last_sample_ns.or(group.watched_since_ns);
            active.is_some_and(|at| now_ns.saturating_sub(at) >= expiry_ns)
        })
        .map(|(key, _)| key.clone())
        .collect();
    let mut out = Vec::new();
    for key in idle {
        let Some(mut group) = state.groups.remove(&key) else {
            continue;
        };
        if let Phase::Firing { .. } = group.status.phase {
            group.status.phase = Phase::Inactive;
            let evaluation = RuleEvaluation {
                verdict: Verdict::NoData,
                value: None,
                baseline: None,
                samples: 0,
                description: format!("no samples for {}: the group is retired", show(expiry)),
                examples: Vec::new(),
            };
            out.push(notification(
                scope,
                &state.rule,
                &key,
                &group,
                Transition::Resolve,
                &evaluation,
                now_ns,
                now_ns,
            ));
        }
        expired.push((state.rule.name.clone(), key));
    }
    out
}

impl AlertEngine {
    /// The (rule, group) pairs retired by expiry since the last call, for the caller to
    /// forget their stored state.
    pub fn take_expired(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.expired)
    }
}
