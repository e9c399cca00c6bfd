//! Conditions that change only when something changed: a condition keeps its
//! `lastTransitionTime` while its status stays the same, so rewriting an unchanged status is
//! a no-op and GitOps tools see no churn.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition as a reconcile computes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub type_: String,
    /// `None`: Unknown (nothing reported yet).
    pub ok: Option<bool>,
    pub reason: String,
    pub message: String,
}

impl Observed {
    pub fn new(type_: &str, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: type_.to_owned(),
            ok: Some(ok),
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    pub fn unknown(type_: &str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            ok: None,
            ..Self::new(type_, false, reason, message)
        }
    }
}

fn status_text(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    }
}

/// The new conditions, keeping each transition time whose status did not change.
pub fn conditions(
    previous: &[Condition],
    observed: &[Observed],
    generation: Option<i64>,
) -> Vec<Condition> {
    observed
        .iter()
        .map(|o| {
            let status = status_text(o.ok);
            let since = previous
                .iter()
                .find(|p| p.type_ == o.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
            Condition {
                type_: o.type_.clone(),
                status: status.to_owned(),
                reason: o.reason.clone(),
                message: o.message.chars().take(32_768).collect(),
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect()
}

/// Whether `Ready` is True in these conditions.
pub fn is_ready(conditions: &[Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_times_survive_unchanged_statuses() {
        let first = conditions(
            &[],
            &[Observed::new("Ready", false, "Waiting", "x")],
            Some(1),
        );
        let same = conditions(
            &first,
            &[Observed::new("Ready", false, "Waiting", "x")],
            Some(1),
        );
        assert_eq!(first, same);
        let flipped = conditions(
            &first,
            &[Observed::new("Ready", true, "Available", "y")],
            Some(1),
        );
        assert_eq!(flipped[0].status, "True");
        assert!(is_ready(&flipped) && !is_ready(&first));
    }
}
