//! Turning resource specs into the domain core's objects. Compilation is also the semantic
//! validation: whatever fails to compile is reported at its field path, and the workers run
//! exactly what `umpire check` accepted.

mod alerts;
mod content_judges;
mod eval_policy;
mod retrieval;
mod trace_project;

pub use alerts::{
    DEFAULT_CLEAR_FOR, DEFAULT_CONFIDENCE, DEFAULT_MAX_DELIVERY_AGE, DEFAULT_MAX_GROUPS,
    DEFAULT_MIN_SAMPLES, PlannedRoute, RouteTarget, WebhookUrl, plan_alerts, plan_routes,
};
pub use eval_policy::{
    JudgeImplementation, LlmEndpoint, PlannedJudge, PolicyPlan, compile_eval_policy,
};
pub use trace_project::{ProjectPlan, StreamLimits, compile_trace_project};

use crate::validate::{FieldError, FieldPath};

/// Compiles a regular expression, reporting the regex crate's reason at `path`.
pub(crate) fn regex_at(pattern: &str, path: &FieldPath) -> Result<regex::Regex, FieldError> {
    regex::Regex::new(pattern).map_err(|e| FieldError::new(path.clone(), regex_message(&e)))
}

pub(crate) fn regex_message(error: &regex::Error) -> String {
    // The regex crate's errors are multi-line ASCII art; the last line holds the reason.
    let text = error.to_string();
    let reason = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&text)
        .trim()
        .to_owned();
    format!("not a valid regular expression: {reason}")
}
