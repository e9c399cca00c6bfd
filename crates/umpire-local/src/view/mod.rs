//! What `umpire local` shows: a [`Board`] of live figures fed by the workers (their metrics),
//! the score stream (verdicts as evaluators publish them) and the notifier (each
//! notification and the receiver's answer), rendered as a refreshing table on a terminal,
//! plain lines otherwise, or JSON events for scripts ([`render`]).

pub mod render;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use umpire_alerting::delivery::report::{DeliveryOutcome, DeliveryReport};
use umpire_alerting::metrics::{AlertMetrics, RuleLabels};
use umpire_core::alert::notification::Action;
use umpire_core::judge::Outcome;
use umpire_core::score::SpanEvaluation;
use umpire_ingest::metrics::IngestMetrics;

use crate::adapt::Adaptation;

/// Notifications kept for the table (the event stream has them all).
const RECENT_NOTIFICATIONS: usize = 12;

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectStats {
    pub name: String,
    pub grpc: String,
    pub http: String,
    pub spans_received: u64,
    pub spans_kept: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JudgeStats {
    pub name: String,
    pub passed: u64,
    pub failed: u64,
    pub errors: u64,
    pub skipped: u64,
    #[serde(skip)]
    value_sum: f64,
}

impl JudgeStats {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }

    pub fn scored(&self) -> u64 {
        self.passed + self.failed
    }

    pub fn pass_rate(&self) -> Option<f64> {
        (self.scored() > 0).then(|| self.passed as f64 / self.scored() as f64)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.scored() > 0).then(|| self.value_sum / self.scored() as f64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Ok,
    Pending,
    Firing,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertStats {
    pub rule: String,
    pub state: AlertState,
    pub fired: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStats {
    pub name: String,
    pub project: String,
    pub judges: Vec<JudgeStats>,
    pub alerts: Vec<AlertStats>,
}

/// A notification and what became of it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationLine {
    pub at_seconds: f64,
    pub policy: String,
    pub rule: String,
    pub action: Action,
    pub route: String,
    pub summary: String,
    /// `delivered`, `printed`, `rejected: …`, `retrying (n): …`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// What happened, one event at a time (plain lines and `--format json`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum LocalEvent {
    Adapted(Adaptation),
    #[serde(rename_all = "camelCase")]
    Started {
        nats: String,
        projects: Vec<ProjectStats>,
        policies: Vec<String>,
    },
    #[serde(rename_all = "camelCase")]
    Alert {
        at_seconds: f64,
        policy: String,
        rule: String,
        state: AlertState,
    },
    Notification(NotificationLine),
    #[serde(rename_all = "camelCase")]
    Stats {
        at_seconds: f64,
        projects: Vec<ProjectStats>,
        policies: Vec<PolicyStats>,
    },
    /// A line from the demo's script (the incident starts, recovers…).
    #[serde(rename_all = "camelCase")]
    Demo {
        at_seconds: f64,
        message: String,
    },
}

pub(crate) struct ProjectSource {
    pub stats: ProjectStats,
    pub metrics: Arc<IngestMetrics>,
}

pub(crate) struct PolicySource {
    pub stats: PolicyStats,
    pub alert_metrics: Arc<AlertMetrics>,
}

struct BoardState {
    projects: Vec<ProjectSource>,
    policies: Vec<PolicySource>,
    recent: VecDeque<NotificationLine>,
    pending_events: Vec<LocalEvent>,
}

/// The live figures, shared by the feeders and the renderer.
#[derive(Clone)]
pub struct Board {
    started: Instant,
    state: Arc<Mutex<BoardState>>,
}

impl Board {
    pub(crate) fn new(projects: Vec<ProjectSource>, policies: Vec<PolicySource>) -> Self {
        Self {
            started: Instant::now(),
            state: Arc::new(Mutex::new(BoardState {
                projects,
                policies,
                recent: VecDeque::new(),
                pending_events: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BoardState> {
        // A feeder that panicked leaves figures that are still worth showing.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn seconds(&self) -> f64 {
        (self.started.elapsed().as_millis() as f64 / 100.0).round() / 10.0
    }

    /// Counts one published span evaluation of `policy`.
    pub fn record_scores(&self, evaluation: &SpanEvaluation) {
        let mut state = self.lock();
        let Some(policy) = state
            .policies
            .iter_mut()
            .find(|p| p.stats.name == evaluation.policy)
        else {
            return;
        };
        for score in &evaluation.scores {
            let Some(judge) = policy
                .stats
                .judges
                .iter_mut()
                .find(|j| j.name == score.judge)
            else {
                continue;
            };
            match &score.outcome {
                Outcome::Scored(verdict) => {
                    judge.value_sum += verdict.value;
                    if verdict.passed {
                        judge.passed += 1;
                    } else {
                        judge.failed += 1;
                    }
                }
                Outcome::Failed(_) => judge.errors += 1,
                Outcome::Skipped { .. } => judge.skipped += 1,
            }
        }
    }

    /// Records what the notifier did with a notification.
    pub fn record_delivery(&self, report: DeliveryReport) {
        let n = &report.notification;
        let (outcome, body) = match report.outcome {
            DeliveryOutcome::Delivered { attempts } => {
                (format!("delivered ({attempts} attempt(s))"), None)
            }
            DeliveryOutcome::Printed(body) => ("printed".to_owned(), Some(body)),
            DeliveryOutcome::Rejected(reason) => (format!("rejected: {reason}"), None),
            DeliveryOutcome::DeadLettered { attempts, reason } => (
                format!("dead-lettered after {attempts} attempts: {reason}"),
                None,
            ),
            DeliveryOutcome::Retrying { attempt, reason } => {
                (format!("retrying (attempt {attempt}): {reason}"), None)
            }
        };
        let line = NotificationLine {
            at_seconds: self.seconds(),
            policy: n.policy.clone(),
            rule: n.rule.clone(),
            action: n.action,
            route: n.route.clone(),
            summary: n.summary.clone(),
            outcome,
            body,
        };
        let mut state = self.lock();
        state.recent.push_back(line.clone());
        while state.recent.len() > RECENT_NOTIFICATIONS {
            state.recent.pop_front();
        }
        state.pending_events.push(LocalEvent::Notification(line));
    }

    pub fn record_event(&self, event: LocalEvent) {
        self.lock().pending_events.push(event);
    }

    /// Reads the workers' metrics; alert state changes become events.
    pub fn refresh(&self) {
        let at_seconds = self.seconds();
        let mut state = self.lock();
        for project in &mut state.projects {
            project.stats.spans_received = project.metrics.spans_received.get();
            project.stats.spans_kept = project.metrics.spans_kept.get();
        }
        let mut events = Vec::new();
        for policy in &mut state.policies {
            for alert in &mut policy.stats.alerts {
                let labels = RuleLabels {
                    rule: alert.rule.clone(),
                };
                let firing = policy.alert_metrics.firing.get_or_create(&labels).get();
                let pending = policy.alert_metrics.pending.get_or_create(&labels).get();
                let now = if firing > 0 {
                    AlertState::Firing
                } else if pending > 0 {
                    AlertState::Pending
                } else {
                    AlertState::Ok
                };
                if now != alert.state {
                    if now == AlertState::Firing {
                        alert.fired += 1;
                    }
                    alert.state = now;
                    events.push(LocalEvent::Alert {
                        at_seconds,
                        policy: policy.stats.name.clone(),
                        rule: alert.rule.clone(),
                        state: now,
                    });
                }
            }
        }
        state.pending_events.extend(events);
    }

    /// Events since the last call, in order.
    pub fn take_events(&self) -> Vec<LocalEvent> {
        std::mem::take(&mut self.lock().pending_events)
    }

    pub fn projects(&self) -> Vec<ProjectStats> {
        self.lock()
            .projects
            .iter()
            .map(|p| p.stats.clone())
            .collect()
    }

    pub fn policies(&self) -> Vec<PolicyStats> {
        self.lock()
            .policies
            .iter()
            .map(|p| p.stats.clone())
            .collect()
    }

    pub fn recent_notifications(&self) -> Vec<NotificationLine> {
        self.lock().recent.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests;
