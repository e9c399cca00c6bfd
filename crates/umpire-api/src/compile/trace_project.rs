//! TraceProject spec → tail sampler, redactor and the settings ingest needs.

use std::collections::HashSet;
use std::time::Duration;

use regex::RegexSet;
use umpire_core::redaction::{
    KeyMatcher, RedactionAction as Action, RedactionRule as Rule, Redactor,
};
use umpire_core::sampling::{
    Condition, Rule as PolicyRule, SamplingPolicy, StringMatch, TailSampler, TokenBucket,
};
use umpire_core::span::StatusCode;

use super::{regex_at, regex_message};
use crate::trace_project::{
    RedactionAction, RedactionSpec, SamplingCondition, SamplingSpec, StatusCode as SpecStatusCode,
    StreamSpec, TraceProjectSpec,
};
use crate::validate::{FieldError, FieldPath};

/// Defaults, documented on the fields of the CRD.
pub const DEFAULT_DECISION_WAIT: Duration = Duration::from_secs(10);
pub const DEFAULT_TRACE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_MAX_BUFFERED_SPANS: u64 = 200_000;
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 4 << 20;
pub const DEFAULT_STREAM_MAX_AGE: Duration = Duration::from_secs(72 * 3600);
pub const DEFAULT_STREAM_MAX_BYTES: u64 = 10 << 30;
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Everything ingest runs for one TraceProject.
#[derive(Debug, Clone)]
pub struct ProjectPlan {
    pub sampler: TailSampler,
    /// After the root span arrives.
    pub decision_wait: Duration,
    /// Longest wait for the root span, from the first span.
    pub trace_timeout: Duration,
    pub max_buffered_spans: u64,
    pub redactor: Redactor,
    pub max_request_bytes: u64,
    pub stream: StreamLimits,
}

/// JetStream limits of the project's span stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamLimits {
    pub max_age: Duration,
    pub max_bytes: u64,
    pub max_messages: Option<u64>,
    pub replicas: usize,
    pub duplicate_window: Duration,
}

pub fn compile_trace_project(spec: &TraceProjectSpec) -> Result<ProjectPlan, Vec<FieldError>> {
    let root = FieldPath::root().field("spec");
    let mut errors = Vec::new();
    let sampler = tail_sampler(spec.sampling.as_ref(), &root.field("sampling"), &mut errors);
    let redactor = redactor(
        spec.redaction.as_ref(),
        &root.field("redaction"),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(errors);
    }
    let sampling = spec.sampling.clone().unwrap_or_default();
    Ok(ProjectPlan {
        sampler,
        decision_wait: sampling
            .decision_wait
            .map(|d| d.as_std())
            .unwrap_or(DEFAULT_DECISION_WAIT),
        trace_timeout: sampling
            .trace_timeout
            .map(|d| d.as_std())
            .unwrap_or(DEFAULT_TRACE_TIMEOUT),
        max_buffered_spans: sampling
            .max_buffered_spans
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(DEFAULT_MAX_BUFFERED_SPANS),
        redactor,
        max_request_bytes: spec
            .ingest
            .as_ref()
            .and_then(|i| i.max_request_size.as_ref())
            .map(|s| s.bytes())
            .unwrap_or(DEFAULT_MAX_REQUEST_BYTES),
        stream: stream_limits(spec.stream.as_ref()),
    })
}

fn stream_limits(spec: Option<&StreamSpec>) -> StreamLimits {
    let spec = spec.cloned().unwrap_or_default();
    StreamLimits {
        max_age: spec
            .max_age
            .map(|d| d.as_std())
            .unwrap_or(DEFAULT_STREAM_MAX_AGE),
        max_bytes: spec
            .max_bytes
            .map(|b| b.bytes())
            .unwrap_or(DEFAULT_STREAM_MAX_BYTES),
        max_messages: spec.max_messages.and_then(|n| u64::try_from(n).ok()),
        replicas: spec
            .replicas
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(1),
        duplicate_window: spec
            .duplicate_window
            .map(|d| d.as_std())
            .unwrap_or(DEFAULT_DUPLICATE_WINDOW),
    }
}

fn tail_sampler(
    spec: Option<&SamplingSpec>,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) -> TailSampler {
    let mut policies = Vec::new();
    let policies_path = path.field("policies");
    for (index, policy) in spec
        .and_then(|s| s.policies.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let policy_path = policies_path.index(index);
        let list = |items: &[SamplingCondition],
                    name: &str,
                    errors: &mut Vec<FieldError>|
         -> Vec<Condition> {
            items
                .iter()
                .enumerate()
                .filter_map(|(i, c)| condition(c, &policy_path.field(name).index(i), errors))
                .collect()
        };
        let rule = if let Some(all) = &policy.and {
            PolicyRule::All(list(all, "and", errors))
        } else if let Some(any) = &policy.or {
            PolicyRule::Any(list(any, "or", errors))
        } else {
            match condition(&policy.condition, &policy_path, errors) {
                Some(condition) => PolicyRule::One(condition),
                None => continue,
            }
        };
        policies.push(SamplingPolicy {
            name: policy.name.clone(),
            rule,
        });
    }
    TailSampler::new(policies)
}

/// One condition; `None` (with an error recorded) when it does not compile. The CRD's CEL
/// rules guarantee exactly one field is set.
fn condition(
    spec: &SamplingCondition,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) -> Option<Condition> {
    if let Some(codes) = &spec.status_code {
        let codes = codes
            .iter()
            .map(|c| match c {
                SpecStatusCode::Unset => StatusCode::Unset,
                SpecStatusCode::Ok => StatusCode::Ok,
                SpecStatusCode::Error => StatusCode::Error,
            })
            .collect();
        return Some(Condition::StatusCode(codes));
    }
    if let Some(latency) = &spec.latency {
        return Some(Condition::Latency {
            min_ms: u64::try_from(latency.threshold_ms).unwrap_or(0),
            max_ms: latency
                .upper_threshold_ms
                .and_then(|m| u64::try_from(m).ok()),
        });
    }
    if let Some(probabilistic) = &spec.probabilistic {
        return Some(Condition::Probabilistic {
            percentage: probabilistic.percentage,
        });
    }
    if let Some(attribute) = &spec.string_attribute {
        let matcher = if attribute.regex == Some(true) {
            let values_path = path.field("stringAttribute").field("values");
            let mut ok = true;
            for (i, pattern) in attribute.values.iter().enumerate() {
                if let Err(error) = regex_at(pattern, &values_path.index(i)) {
                    errors.push(error);
                    ok = false;
                }
            }
            if !ok {
                return None;
            }
            match RegexSet::new(&attribute.values) {
                Ok(set) => StringMatch::Regex(set),
                Err(e) => {
                    let message = match &e {
                        regex::Error::Syntax(_) => regex_message(&e),
                        _ => format!("the patterns together are too large: {e}"),
                    };
                    errors.push(FieldError::new(values_path, message));
                    return None;
                }
            }
        } else {
            StringMatch::Exact(attribute.values.iter().cloned().collect::<HashSet<_>>())
        };
        return Some(Condition::StringAttribute {
            key: attribute.key.clone(),
            matcher,
            invert: attribute.invert.unwrap_or(false),
        });
    }
    if let Some(attribute) = &spec.numeric_attribute {
        return Some(Condition::NumericAttribute {
            key: attribute.key.clone(),
            min: attribute.min,
            max: attribute.max,
            invert: attribute.invert.unwrap_or(false),
        });
    }
    if let Some(rate) = &spec.rate_limit {
        return Some(Condition::RateLimit(TokenBucket::new(
            rate.spans_per_second as f64,
        )));
    }
    None
}

fn redactor(
    spec: Option<&RedactionSpec>,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) -> Redactor {
    let Some(spec) = spec else {
        return Redactor::default();
    };
    let mut rules = Vec::new();
    for (index, rule) in spec.rules.iter().flatten().enumerate() {
        let rule_path = path.field("rules").index(index);
        let scope = rule.attributes.as_ref().map(KeyMatcher::new);
        match rule.action.unwrap_or(RedactionAction::Replace) {
            RedactionAction::Drop => rules.push(Rule::Drop {
                name: rule.name.clone(),
                keys: scope.unwrap_or_default(),
            }),
            action => {
                let Some(pattern) = &rule.pattern else {
                    continue;
                };
                match regex_at(pattern, &rule_path.field("pattern")) {
                    Ok(pattern) => rules.push(Rule::Rewrite {
                        name: rule.name.clone(),
                        pattern,
                        scope,
                        action: match action {
                            RedactionAction::Hash => Action::Hash,
                            _ => Action::Replace(
                                rule.replace.clone().unwrap_or_else(|| "<redacted>".into()),
                            ),
                        },
                    }),
                    Err(error) => errors.push(error),
                }
            }
        }
    }
    Redactor::new(spec.capture_content.unwrap_or(true), rules)
}
