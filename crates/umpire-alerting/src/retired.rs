//! Alerts whose group expired (`groupExpiry`: its resolve, if it was firing, went out with
//! the tick's notifications) are forgotten the same way.
//!
//! Alerts whose rule left the policy (removed or renamed in git, then applied; or the whole
//! policy, being deleted — the controller marks it): a new leader finds them in the stored
//! state, a running one sees the deletion mark at its next lease renewal. A firing one is resolved at its receiver — through the
//! outbox, like every notification, with its trigger's dedup key and episode — and every
//! one is forgotten, so `firingAlerts` stops counting it and a rule re-added later under
//! the same name starts clean.

use std::collections::HashMap;

use umpire_contract::alert_state::StoredAlert;
use umpire_core::alert::notification::Notification;
use umpire_core::alert::state::AlertStatus;

use crate::evaluation::{AlertEvaluator, Stepped, fenced, now_nanos};
use crate::metrics::{RuleLabels, TransitionLabels};
use crate::outbox;

impl AlertEvaluator {
    /// Forgets the stored state of groups the engine retired by expiry.
    pub(crate) async fn forget_expired(
        &mut self,
        expired: Vec<(String, String)>,
        persisted: &mut HashMap<(String, String), AlertStatus>,
        triggers: &mut HashMap<(String, String), Notification>,
    ) -> Result<(), Stepped> {
        for (rule, group) in expired {
            self.metrics
                .groups_expired
                .get_or_create(&RuleLabels { rule: rule.clone() })
                .inc();
            tracing::info!(event = "alert_group_expired", rule = %rule, group = %group, "no samples for the rule's groupExpiry: the group is retired");
            let key = (rule, group);
            triggers.remove(&key);
            if persisted.remove(&key).is_none() {
                continue;
            }
            self.delete_stored(&key.0, &key.1).await?;
        }
        Ok(())
    }

    /// Deletes an alert's stored state, retried while this replica leads.
    async fn delete_stored(&mut self, rule: &str, group: &str) -> Result<(), Stepped> {
        while let Err(e) = self.store.delete(rule, group).await {
            if e.fenced {
                return Err(fenced());
            }
            self.metrics.state_write_failures.inc();
            tracing::warn!(event = "alert_state_write_failed", error = %e, "retrying");
            self.wait_as_leader().await?;
        }
        Ok(())
    }

    /// The policy is being deleted: every alert is resolved (if firing) and forgotten.
    pub(crate) async fn retire_everything(&mut self) -> Stepped {
        let alerts = match self.store.load().await {
            Ok(alerts) => alerts,
            Err(e) => return Stepped::Lost(e.to_string()),
        };
        tracing::info!(
            event = "alert_policy_deleting",
            alerts = alerts.len(),
            "the policy is being deleted: resolving its alerts"
        );
        match self.retire(alerts).await {
            Ok(()) => {
                self.snapshots.delete().await;
                Stepped::Done
            }
            Err(stepped) => stepped,
        }
    }

    pub(crate) async fn retire(&mut self, alerts: Vec<StoredAlert>) -> Result<(), Stepped> {
        for alert in alerts {
            if alert.status.is_firing() {
                match &alert.trigger {
                    Some(trigger) => {
                        let resolve = Notification::retired(trigger, now_nanos());
                        let subject = self
                            .names
                            .notifications_subject(&self.policy, &resolve.route);
                        while let Err(e) = outbox::publish(
                            &self.js,
                            &subject,
                            &resolve,
                            self.outbox_fence.as_ref(),
                        )
                        .await
                        {
                            if e.fenced {
                                return Err(fenced());
                            }
                            self.metrics.outbox_publish_failures.inc();
                            tracing::warn!(event = "outbox_publish_failed", error = %e, "retrying");
                            self.wait_as_leader().await?;
                        }
                        self.metrics
                            .transitions
                            .get_or_create(&TransitionLabels {
                                rule: alert.rule.clone(),
                                transition: "resolve",
                            })
                            .inc();
                        tracing::info!(event = "alert_retired", rule = %alert.rule, group = %alert.group, id = %resolve.id(), "the rule left the policy: its firing alert is resolved");
                    }
                    // Stored before triggers were kept: nothing to resolve with.
                    None => {
                        tracing::warn!(event = "alert_retired_unresolved", rule = %alert.rule, group = %alert.group, "the rule left the policy while firing, but its trigger is not stored: resolve it at the receiver by hand")
                    }
                }
            }
            self.delete_stored(&alert.rule, &alert.group).await?;
        }
        Ok(())
    }
}
