//! What a leader does with the alert engine's transitions: notifications into the outbox
//! first, then the state that produced them, and the per-rule firing/pending gauges.

use std::collections::HashMap;

use umpire_contract::alert_state::StoredAlert;
use umpire_core::alert::engine::AlertEngine;
use umpire_core::alert::notification::{Action, Notification};
use umpire_core::alert::state::AlertStatus;

use crate::evaluation::{AlertEvaluator, Stepped, fenced};
use crate::metrics::{RuleLabels, TransitionLabels};
use crate::outbox;

impl AlertEvaluator {
    /// Stores notifications in the outbox, then the state that produced them (in that
    /// order: a crash in between re-derives the same notification, which the outbox drops
    /// as a duplicate), then any other state change (pending, clearing).
    pub(crate) async fn apply(
        &mut self,
        notes: Vec<Notification>,
        engine: &AlertEngine,
        persisted: &mut HashMap<(String, String), AlertStatus>,
        triggers: &mut HashMap<(String, String), Notification>,
    ) -> Result<(), Stepped> {
        for note in &notes {
            let subject = self.names.notifications_subject(&self.policy, &note.route);
            loop {
                match outbox::publish(&self.js, &subject, note, self.outbox_fence.as_ref()).await {
                    Ok(new) => {
                        tracing::info!(event = "alert_transition", id = %note.id(), rule = %note.rule, group = %note.group, action = ?note.action, new, summary = %note.summary, "alert state changed");
                        break;
                    }
                    Err(e) if e.fenced => return Err(fenced()),
                    Err(e) => {
                        self.metrics.outbox_publish_failures.inc();
                        tracing::warn!(event = "outbox_publish_failed", error = %e, "retrying");
                        self.wait_as_leader().await?;
                    }
                }
            }
            let transition = match (note.action, note.repeat) {
                (Action::Resolve, _) => "resolve",
                (Action::Trigger, 0) => "trigger",
                (Action::Trigger, _) => "repeat",
            };
            self.metrics
                .transitions
                .get_or_create(&TransitionLabels {
                    rule: note.rule.clone(),
                    transition,
                })
                .inc();
        }
        let mut firing: HashMap<&str, i64> =
            self.rules.iter().map(|r| (r.name.as_str(), 0)).collect();
        let mut pending: HashMap<&str, i64> = firing.clone();
        let mut changed = Vec::new();
        for view in engine.alerts() {
            if view.status.is_firing() {
                *firing.entry(view.rule).or_default() += 1;
            }
            if view.status.is_pending() {
                *pending.entry(view.rule).or_default() += 1;
            }
            let key = (view.rule.to_owned(), view.group.to_owned());
            if persisted
                .get(&key)
                .is_some_and(|old| same_state(old, view.status))
            {
                continue;
            }
            if persisted.get(&key).is_none() && same_state(&AlertStatus::default(), view.status) {
                continue;
            }
            // A firing alert keeps the trigger it sent, for a resolve if its rule goes.
            let sent = notes.iter().find(|n| {
                n.action == Action::Trigger && n.rule == view.rule && n.group == view.group
            });
            match sent {
                Some(trigger) if view.status.is_firing() => {
                    triggers.insert(key.clone(), trigger.clone());
                }
                _ if !view.status.is_firing() => {
                    triggers.remove(&key);
                }
                _ => {}
            }
            changed.push(StoredAlert {
                rule: view.rule.to_owned(),
                group: view.group.to_owned(),
                values: view.values.clone(),
                status: view.status.clone(),
                trigger: triggers.get(&key).cloned(),
            });
        }
        for (rule, count) in firing {
            self.metrics
                .firing
                .get_or_create(&RuleLabels {
                    rule: rule.to_owned(),
                })
                .set(count);
        }
        for (rule, count) in pending {
            self.metrics
                .pending
                .get_or_create(&RuleLabels {
                    rule: rule.to_owned(),
                })
                .set(count);
        }
        for alert in changed {
            loop {
                match self.store.save(&alert).await {
                    Ok(()) => break,
                    Err(e) if e.fenced => return Err(fenced()),
                    Err(e) => {
                        self.metrics.state_write_failures.inc();
                        tracing::warn!(event = "alert_state_write_failed", error = %e, "retrying");
                        self.wait_as_leader().await?;
                    }
                }
            }
            persisted.insert((alert.rule, alert.group), alert.status);
        }
        Ok(())
    }
}

/// The state worth persisting: the phase and counters, not the latest measured value.
fn same_state(a: &AlertStatus, b: &AlertStatus) -> bool {
    a.phase == b.phase && a.episode == b.episode && a.repeats == b.repeats
}
