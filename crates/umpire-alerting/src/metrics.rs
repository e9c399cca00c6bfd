//! Alerting metrics (prefixes `umpire_alerts_` and `umpire_notifications_`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub rule: String,
    /// `trigger`, `repeat` or `resolve`.
    pub transition: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub route: String,
    /// HTTP status class (`2xx`, `4xx`, `429`, `5xx`) or `transport`.
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub route: String,
    /// `delivered`, `rejected` (the receiver answered 4xx other than 429), `no_route`.
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SnapshotLabels {
    /// `saved`, `save_failed`, `restored`, `refused` (other rules or version), `unreadable`.
    pub outcome: &'static str,
}

pub struct AlertMetrics {
    /// 1 on the replica that evaluates the policy's rules.
    pub leader: Gauge,
    pub leadership_changes: Counter,
    pub scores_observed: Counter,
    pub duplicate_scores: Counter,
    pub undecodable_scores: Counter,
    pub firing: Family<RuleLabels, Gauge>,
    pub pending: Family<RuleLabels, Gauge>,
    pub transitions: Family<TransitionLabels, Counter>,
    pub groups_overflowed: Counter,
    /// Groups retired after `groupExpiry` without samples.
    pub groups_expired: Family<RuleLabels, Counter>,
    /// Scores read again on taking leadership, to rebuild the windows.
    pub replayed_scores: Counter,
    pub snapshots: Family<SnapshotLabels, Counter>,
    pub snapshot_bytes: Gauge,
    pub state_write_failures: Counter,
    pub outbox_publish_failures: Counter,
    pub attempts: Family<AttemptLabels, Counter>,
    pub deliveries: Family<DeliveryLabels, Counter>,
    /// From when a notification became due to its first HTTP request.
    pub delay: Family<RouteLabels, Histogram>,
    /// From when it became due to the receiver's acceptance (retries included).
    pub delivery_time: Family<RouteLabels, Histogram>,
    pub outbox_pending: Gauge,
    /// Notifications given up after the route's `maxDeliveryAge`.
    pub dead_lettered: Family<RouteLabels, Counter>,
}

impl AlertMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            leader: Gauge::default(),
            leadership_changes: Counter::default(),
            scores_observed: Counter::default(),
            duplicate_scores: Counter::default(),
            undecodable_scores: Counter::default(),
            firing: Family::default(),
            pending: Family::default(),
            transitions: Family::default(),
            groups_overflowed: Counter::default(),
            groups_expired: Family::default(),
            replayed_scores: Counter::default(),
            snapshots: Family::default(),
            snapshot_bytes: Gauge::default(),
            state_write_failures: Counter::default(),
            outbox_publish_failures: Counter::default(),
            attempts: Family::default(),
            deliveries: Family::default(),
            delay: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            delivery_time: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 22))
            }),
            outbox_pending: Gauge::default(),
            dead_lettered: Family::default(),
        };
        let alerts = registry.sub_registry_with_prefix("alerts");
        alerts.register(
            "leader",
            "1 while this replica evaluates the policy's alert rules",
            metrics.leader.clone(),
        );
        alerts.register(
            "leadership_changes",
            "Times this replica became the alert leader",
            metrics.leadership_changes.clone(),
        );
        alerts.register(
            "scores_observed",
            "Span evaluations folded into alert windows",
            metrics.scores_observed.clone(),
        );
        alerts.register(
            "duplicate_scores",
            "Span evaluations seen again and not counted twice",
            metrics.duplicate_scores.clone(),
        );
        alerts.register(
            "undecodable_scores",
            "Score messages that could not be decoded",
            metrics.undecodable_scores.clone(),
        );
        alerts.register("firing", "Alerts firing, per rule", metrics.firing.clone());
        alerts.register(
            "pending",
            "Alerts pending (condition true, waiting for `for`), per rule",
            metrics.pending.clone(),
        );
        alerts.register(
            "transitions",
            "Alert state changes that produced a notification",
            metrics.transitions.clone(),
        );
        alerts.register(
            "groups_overflowed",
            "Evaluations folded into the __other__ group because a rule hit maxGroups",
            metrics.groups_overflowed.clone(),
        );
        alerts.register(
            "groups_expired",
            "Groups retired by their rule's groupExpiry (no samples for that long)",
            metrics.groups_expired.clone(),
        );
        alerts.register(
            "replayed_scores",
            "Span evaluations replayed from the score stream on taking leadership",
            metrics.replayed_scores.clone(),
        );
        alerts.register(
            "window_snapshots",
            "Alert window snapshots saved, restored or refused, by outcome",
            metrics.snapshots.clone(),
        );
        alerts.register(
            "window_snapshot_bytes",
            "Size of the last alert window snapshot saved",
            metrics.snapshot_bytes.clone(),
        );
        alerts.register(
            "state_write_failures",
            "Failed writes of alert state to NATS KV (retried)",
            metrics.state_write_failures.clone(),
        );
        alerts.register(
            "outbox_publish_failures",
            "Failed publishes to the notification outbox (retried)",
            metrics.outbox_publish_failures.clone(),
        );
        let notifications = registry.sub_registry_with_prefix("notifications");
        notifications.register(
            "attempts",
            "HTTP requests to notification receivers, by result",
            metrics.attempts.clone(),
        );
        notifications.register(
            "deliveries",
            "Notifications finished, by outcome",
            metrics.deliveries.clone(),
        );
        notifications.register(
            "delay_seconds",
            "From a notification becoming due to its first HTTP request",
            metrics.delay.clone(),
        );
        notifications.register(
            "delivery_seconds",
            "From a notification becoming due to its acceptance by the receiver",
            metrics.delivery_time.clone(),
        );
        notifications.register(
            "outbox_pending",
            "Notifications waiting in the outbox for this policy",
            metrics.outbox_pending.clone(),
        );
        notifications.register(
            "dead_lettered",
            "Notifications retried for their route's maxDeliveryAge, then stored on the project's dead-letter stream",
            metrics.dead_lettered.clone(),
        );
        metrics
    }
}
