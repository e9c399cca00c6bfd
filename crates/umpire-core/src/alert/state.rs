//! An alert's life: inactive → pending (for `for`) → firing → (clear for `clearFor`) →
//! resolved. Persisted between evaluator restarts, so a restart neither forgets a firing
//! alert nor pages it again.

use serde::{Deserialize, Serialize};

use super::rule::{AlertRule, NoData, RuleEvaluation, Verdict};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "phase")]
pub enum Phase {
    Inactive,
    Pending {
        since_ns: u64,
    },
    Firing {
        since_ns: u64,
        last_notified_ns: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clear_since_ns: Option<u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    pub phase: Phase,
    /// The current (or last) firing episode: part of notification ids, so a re-sent
    /// transition is the same notification. Each firing takes its start in Unix
    /// milliseconds, or one more than the previous episode if that is later: unique per
    /// alert even after the alert was forgotten (its group expired, its rule was removed and
    /// re-added), which a count from 1 was not — a returning group's first page had the id
    /// of its forgotten first page, and the outbox dropped it as a duplicate. (Whole seconds
    /// were not enough either: a re-added rule replaying its scores pages again within the
    /// second of its first page.)
    pub episode: u64,
    /// Re-notifications within the current episode.
    #[serde(default)]
    pub repeats: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

impl Default for AlertStatus {
    fn default() -> Self {
        Self {
            phase: Phase::Inactive,
            episode: 0,
            repeats: 0,
            value: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Trigger,
    Repeat,
    Resolve,
}

impl AlertStatus {
    pub fn is_firing(&self) -> bool {
        matches!(self.phase, Phase::Firing { .. })
    }

    pub fn is_pending(&self) -> bool {
        matches!(self.phase, Phase::Pending { .. })
    }

    /// Advances the state with an evaluation taken at `now_ns`.
    pub fn step(
        &mut self,
        rule: &AlertRule,
        evaluation: &RuleEvaluation,
        now_ns: u64,
    ) -> Option<Transition> {
        let holds = match evaluation.verdict {
            Verdict::Holds => Some(true),
            Verdict::Clear => Some(false),
            Verdict::NoData => match rule.no_data {
                NoData::KeepState => None,
                NoData::Resolve => Some(false),
                NoData::Alert => Some(true),
            },
            Verdict::TooFewSamples => None,
        };
        if evaluation.value.is_some() {
            self.value = evaluation.value;
        }
        let for_ns = rule.for_.as_nanos() as u64;
        let clear_ns = rule.clear_for.as_nanos() as u64;
        let fire = |status: &mut Self| {
            status.episode = (status.episode + 1).max(now_ns / 1_000_000);
            status.repeats = 0;
            status.phase = Phase::Firing {
                since_ns: now_ns,
                last_notified_ns: now_ns,
                clear_since_ns: None,
            };
            Some(Transition::Trigger)
        };
        match (self.phase.clone(), holds) {
            (_, None) => None,
            (Phase::Inactive, Some(true)) if for_ns == 0 => fire(self),
            (Phase::Inactive, Some(true)) => {
                self.phase = Phase::Pending { since_ns: now_ns };
                None
            }
            (Phase::Inactive, Some(false)) => None,
            (Phase::Pending { since_ns }, Some(true))
                if now_ns.saturating_sub(since_ns) >= for_ns =>
            {
                fire(self)
            }
            (Phase::Pending { .. }, Some(true)) => None,
            (Phase::Pending { .. }, Some(false)) => {
                self.phase = Phase::Inactive;
                None
            }
            (
                Phase::Firing {
                    since_ns,
                    last_notified_ns,
                    ..
                },
                Some(true),
            ) => {
                let repeat = rule.repeat_interval.is_some_and(|interval| {
                    now_ns.saturating_sub(last_notified_ns) >= interval.as_nanos() as u64
                });
                let notified = if repeat { now_ns } else { last_notified_ns };
                self.phase = Phase::Firing {
                    since_ns,
                    last_notified_ns: notified,
                    clear_since_ns: None,
                };
                if repeat {
                    self.repeats += 1;
                    Some(Transition::Repeat)
                } else {
                    None
                }
            }
            (
                Phase::Firing {
                    since_ns,
                    last_notified_ns,
                    clear_since_ns,
                },
                Some(false),
            ) => {
                let clear_since = clear_since_ns.unwrap_or(now_ns);
                if now_ns.saturating_sub(clear_since) >= clear_ns {
                    self.phase = Phase::Inactive;
                    Some(Transition::Resolve)
                } else {
                    self.phase = Phase::Firing {
                        since_ns,
                        last_notified_ns,
                        clear_since_ns: Some(clear_since),
                    };
                    None
                }
            }
        }
    }
}
