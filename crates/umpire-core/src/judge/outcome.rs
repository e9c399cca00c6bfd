//! What a judge concludes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A judge's conclusion on one span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Outcome {
    Scored(Verdict),
    Failed(JudgeFailure),
    Skipped { reason: SkipReason },
}

impl Outcome {
    pub fn pass(value: f64, explanation: impl Into<String>) -> Self {
        Self::Scored(Verdict {
            value,
            passed: true,
            label: None,
            explanation: Some(explanation.into()),
            measurement: None,
            measurements: None,
            usage: None,
        })
    }

    pub fn fail(value: f64, explanation: impl Into<String>) -> Self {
        Self::Scored(Verdict {
            value,
            passed: false,
            label: None,
            explanation: Some(explanation.into()),
            measurement: None,
            measurements: None,
            usage: None,
        })
    }

    /// 1.0 and passed when `passed`, else 0.0 and failed.
    pub fn check(passed: bool, explanation: impl Into<String>) -> Self {
        if passed {
            Self::pass(1.0, explanation)
        } else {
            Self::fail(0.0, explanation)
        }
    }

    pub fn failed(kind: JudgeErrorKind, message: impl Into<String>) -> Self {
        Self::Failed(JudgeFailure {
            kind,
            message: message.into(),
            usage: None,
        })
    }

    pub fn skipped(reason: SkipReason) -> Self {
        Self::Skipped { reason }
    }

    /// Attaches the raw quantity measured (milliseconds, tokens, dollars, characters).
    pub fn with_measurement(mut self, measurement: f64) -> Self {
        if let Self::Scored(verdict) = &mut self {
            verdict.measurement = Some(measurement);
        }
        self
    }

    pub fn verdict(&self) -> Option<&Verdict> {
        match self {
            Self::Scored(verdict) => Some(verdict),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// Score in [0, 1]; 1 is good.
    pub value: f64,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// The raw quantity the judge measured, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<f64>,
    /// Named measurements of judges that measure several things at once (retrieval
    /// rating: `precisionAtK`, `recallAtK`, `mrr`, `ndcgAtK`, …). Boxed: most verdicts
    /// have none, and every outcome would otherwise carry the map inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Box<BTreeMap<String, f64>>>,
    /// What an LLM judge spent on the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<JudgeUsage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JudgeFailure {
    pub kind: JudgeErrorKind,
    pub message: String,
    /// Tokens spent before failing (an unparseable verdict still cost tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<JudgeUsage>,
}

/// Why a judge could not reach a verdict. Each kind is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeErrorKind {
    /// The span lacks what the judge reads (no output, no token counts, no context).
    MissingField,
    /// The cost judge has no price for the span's model.
    UnknownModel,
    /// The judge's configuration cannot be used (e.g. a schema file missing at run time).
    Misconfigured,
    /// The judge model did not answer in time (after retries).
    Timeout,
    /// The judge API kept answering 429 (after retries).
    RateLimited,
    /// The judge API failed with 5xx (after retries).
    Upstream,
    /// The judge API refused the request (4xx other than 429).
    BadRequest,
    /// The judge API refused the credentials.
    Unauthorized,
    /// The judge API could not be reached.
    Transport,
    /// The model's answer was not one of the allowed choices.
    InvalidVerdict,
    /// A trace-level judge's trace is incomplete (its root span never arrived, or it was
    /// decided early): judging the fragment would give a wrong verdict.
    IncompleteTrace,
}

impl JudgeErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingField => "missing_field",
            Self::UnknownModel => "unknown_model",
            Self::Misconfigured => "misconfigured",
            Self::Timeout => "timeout",
            Self::RateLimited => "rate_limited",
            Self::Upstream => "upstream",
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Transport => "transport",
            Self::InvalidVerdict => "invalid_verdict",
            Self::IncompleteTrace => "incomplete_trace",
        }
    }
}

/// Why a judge did not run; counted, never a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The judge does not apply to this span (no tool calls for a tool-call judge; not the
    /// root of its trace for an agent-loop judge).
    NotApplicable,
    /// The LLM judge's daily token budget is spent.
    BudgetExhausted,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotApplicable => "not_applicable",
            Self::BudgetExhausted => "budget_exhausted",
        }
    }
}

/// Tokens and money an LLM judge spent.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JudgeUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}
