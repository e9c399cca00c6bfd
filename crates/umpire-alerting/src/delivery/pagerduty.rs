//! PagerDuty Events API v2 events from notifications.

use serde_json::{Value, json};
use umpire_core::alert::notification::{Action, Notification};

use super::rfc3339;

/// Optional overrides from the route.
#[derive(Debug, Clone, Default)]
pub struct PagerDutyFields {
    pub component: Option<String>,
    pub class: Option<String>,
}

/// The event for a notification: `trigger` with the full payload, or `resolve` with the
/// same `dedup_key`. `payload.component` is the TraceProject, `payload.group` the
/// EvalPolicy, `payload.class` the judge (or `latency`), unless the route overrides them.
pub fn event(notification: &Notification, routing_key: &str, fields: &PagerDutyFields) -> Value {
    match notification.action {
        Action::Resolve => json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": notification.dedup_key,
        }),
        Action::Trigger => json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": notification.dedup_key,
            "client": "Umpire",
            "payload": {
                "summary": notification.summary.chars().take(1024).collect::<String>(),
                "source": format!("umpire/{}/{}", notification.namespace, notification.project),
                "severity": notification.severity.as_str(),
                "timestamp": rfc3339(notification.at_unix_nano),
                "component": fields.component.clone().unwrap_or_else(|| notification.project.clone()),
                "group": notification.policy,
                "class": fields.class.clone().unwrap_or_else(|| notification.class.clone()),
                "custom_details": custom_details(notification),
            },
        }),
    }
}

fn custom_details(n: &Notification) -> Value {
    let mut details = json!({
        "policy": n.policy,
        "rule": n.rule,
        "namespace": n.namespace,
        "metric": n.metric,
        "value": n.value,
        "samples": n.samples,
        "window": n.window,
        "condition": n.description,
        "firing_since": rfc3339(n.since_unix_nano),
        "example_trace_ids": n.example_trace_ids.iter().take(5).collect::<Vec<_>>(),
    });
    if !n.group_values.is_empty() {
        details["group"] = json!(n.group_values);
    }
    if let Some(threshold) = n.threshold {
        details["threshold"] = json!(threshold);
    }
    if let Some(baseline) = n.baseline {
        details["baseline"] = json!(baseline);
    }
    if n.repeat > 0 {
        details["reminder"] = json!(n.repeat);
    }
    details
}
