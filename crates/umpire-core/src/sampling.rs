//! Tail sampling: decide, per whole trace, whether to keep it.
//!
//! A trace is kept when any policy keeps it. Stateless policies (status, latency,
//! probabilistic, attributes) are consulted first, so a trace kept anyway does not spend a
//! rate-limit budget; rate-limited policies are consulted last, in order.

use std::collections::HashSet;
use std::time::Instant;

use regex::RegexSet;

use crate::hashing::{HashPurpose, trace_in_percentage};
use crate::ids::TraceId;
use crate::span::StatusCode;

/// An attribute value as a sampled span exposes it (borrowed; no allocation per lookup).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrRef<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Arrays, maps, bytes: present, but neither text nor number.
    Other,
}

/// What sampling needs to know about a buffered span.
pub trait SampledSpan {
    fn status(&self) -> StatusCode;
    fn start_unix_nano(&self) -> u64;
    fn end_unix_nano(&self) -> u64;
    /// A span attribute, else a resource attribute.
    fn attribute(&self, key: &str) -> Option<AttrRef<'_>>;
}

#[derive(Debug, Clone)]
pub enum StringMatch {
    Exact(HashSet<String>),
    Regex(RegexSet),
}

impl StringMatch {
    fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(values) => values.contains(value),
            Self::Regex(set) => set.is_match(value),
        }
    }
}

/// One sampling condition, evaluated on a whole trace.
#[derive(Debug, Clone)]
pub enum Condition {
    /// Any span has one of these statuses.
    StatusCode(Vec<StatusCode>),
    /// The trace's duration (first start to last end) is in `[min_ms, max_ms)`.
    Latency { min_ms: u64, max_ms: Option<u64> },
    /// The trace id hashes into this percentage.
    Probabilistic { percentage: f64 },
    /// Any span's string attribute matches (or, inverted, none does).
    StringAttribute {
        key: String,
        matcher: StringMatch,
        invert: bool,
    },
    /// Any span's numeric attribute is in `[min, max]` (or, inverted, none is).
    NumericAttribute {
        key: String,
        min: Option<f64>,
        max: Option<f64>,
        invert: bool,
    },
    /// Keep while this condition's kept-span rate stays under the budget.
    RateLimit(TokenBucket),
}

impl Condition {
    fn is_stateful(&self) -> bool {
        matches!(self, Self::RateLimit(_))
    }

    fn holds<S: SampledSpan>(&self, trace_id: &TraceId, spans: &[S]) -> bool {
        match self {
            Self::StatusCode(codes) => spans.iter().any(|s| codes.contains(&s.status())),
            Self::Latency { min_ms, max_ms } => {
                let start = spans
                    .iter()
                    .map(SampledSpan::start_unix_nano)
                    .min()
                    .unwrap_or(0);
                let end = spans
                    .iter()
                    .map(SampledSpan::end_unix_nano)
                    .max()
                    .unwrap_or(0);
                let millis = end.saturating_sub(start) / 1_000_000;
                millis >= *min_ms && max_ms.is_none_or(|max| millis < max)
            }
            Self::Probabilistic { percentage } => {
                trace_in_percentage(trace_id, HashPurpose::TailSampling, *percentage)
            }
            Self::StringAttribute {
                key,
                matcher,
                invert,
            } => {
                let any = spans.iter().any(|s| match s.attribute(key) {
                    Some(AttrRef::Str(value)) => matcher.matches(value),
                    _ => false,
                });
                any != *invert
            }
            Self::NumericAttribute {
                key,
                min,
                max,
                invert,
            } => {
                let any = spans.iter().any(|s| {
                    let value = match s.attribute(key) {
                        Some(AttrRef::Int(i)) => i as f64,
                        Some(AttrRef::Double(d)) => d,
                        Some(AttrRef::Str(text)) => match text.trim().parse() {
                            Ok(number) => number,
                            Err(_) => return false,
                        },
                        _ => return false,
                    };
                    min.is_none_or(|min| value >= min) && max.is_none_or(|max| value <= max)
                });
                any != *invert
            }
            // Checked (and spent) separately, after the stateless conditions.
            Self::RateLimit(_) => true,
        }
    }
}

/// A token bucket refilled continuously at `rate` tokens (spans) per second; holds at most
/// one second's worth.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// The project-wide rate.
    rate: f64,
    /// This process's share of the project's traffic (its share of partitions).
    share: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    pub fn new(spans_per_second: f64) -> Self {
        Self {
            rate: spans_per_second,
            share: 1.0,
            tokens: spans_per_second,
            last: None,
        }
    }

    fn capacity(&self) -> f64 {
        self.rate * self.share
    }

    /// Takes `spans` tokens if available.
    pub fn try_take(&mut self, spans: usize, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.capacity()).min(self.capacity());
        }
        self.last = Some(now);
        let wanted = spans as f64;
        if self.tokens >= wanted {
            self.tokens -= wanted;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Clone)]
pub enum Rule {
    One(Condition),
    All(Vec<Condition>),
    Any(Vec<Condition>),
}

#[derive(Debug, Clone)]
pub struct SamplingPolicy {
    pub name: String,
    pub rule: Rule,
}

impl SamplingPolicy {
    fn conditions(&self) -> &[Condition] {
        match &self.rule {
            Rule::One(condition) => std::slice::from_ref(condition),
            Rule::All(conditions) | Rule::Any(conditions) => conditions,
        }
    }

    fn is_stateful(&self) -> bool {
        self.conditions().iter().any(Condition::is_stateful)
    }

    fn keeps<S: SampledSpan>(&mut self, trace_id: &TraceId, spans: &[S], now: Instant) -> bool {
        let take = |condition: &mut Condition| match condition {
            Condition::RateLimit(bucket) => bucket.try_take(spans.len(), now),
            other => other.holds(trace_id, spans),
        };
        match &mut self.rule {
            Rule::One(condition) => take(condition),
            Rule::All(conditions) => {
                // Stateless conditions first: a budget is spent only on traces that pass them.
                conditions
                    .iter()
                    .filter(|c| !c.is_stateful())
                    .all(|c| c.holds(trace_id, spans))
                    && conditions.iter_mut().filter(|c| c.is_stateful()).all(take)
            }
            Rule::Any(conditions) => {
                conditions
                    .iter()
                    .filter(|c| !c.is_stateful())
                    .any(|c| c.holds(trace_id, spans))
                    || conditions.iter_mut().filter(|c| c.is_stateful()).any(take)
            }
        }
    }
}

/// Why a trace was kept or dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Kept by the named policy (`None`: there are no policies, everything is kept).
    Keep(Option<String>),
    Drop,
}

impl Decision {
    pub fn is_keep(&self) -> bool {
        matches!(self, Self::Keep(_))
    }
}

/// The project's sampling policies.
#[derive(Debug, Clone, Default)]
pub struct TailSampler {
    policies: Vec<SamplingPolicy>,
}

impl TailSampler {
    pub fn new(policies: Vec<SamplingPolicy>) -> Self {
        Self { policies }
    }

    pub fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| p.name.as_str())
    }

    /// Sets this process's share (0–1] of the project's traffic, scaling rate limits.
    pub fn set_share(&mut self, share: f64) {
        for policy in &mut self.policies {
            let conditions = match &mut policy.rule {
                Rule::One(condition) => std::slice::from_mut(condition),
                Rule::All(conditions) | Rule::Any(conditions) => conditions.as_mut_slice(),
            };
            for condition in conditions {
                if let Condition::RateLimit(bucket) = condition {
                    bucket.share = share.clamp(0.0, 1.0);
                    bucket.tokens = bucket.tokens.min(bucket.capacity());
                }
            }
        }
    }

    pub fn decide<S: SampledSpan>(
        &mut self,
        trace_id: &TraceId,
        spans: &[S],
        now: Instant,
    ) -> Decision {
        if self.policies.is_empty() {
            return Decision::Keep(None);
        }
        let (stateless, stateful): (Vec<_>, Vec<_>) =
            self.policies.iter_mut().partition(|p| !p.is_stateful());
        for policy in stateless.into_iter().chain(stateful) {
            if policy.keeps(trace_id, spans, now) {
                return Decision::Keep(Some(policy.name.clone()));
            }
        }
        Decision::Drop
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    struct TestSpan {
        status: StatusCode,
        start: u64,
        end: u64,
        attributes: HashMap<&'static str, AttrRef<'static>>,
    }

    impl SampledSpan for TestSpan {
        fn status(&self) -> StatusCode {
            self.status
        }
        fn start_unix_nano(&self) -> u64 {
            self.start
        }
        fn end_unix_nano(&self) -> u64 {
            self.end
        }
        fn attribute(&self, key: &str) -> Option<AttrRef<'_>> {
            self.attributes.get(key).copied()
        }
    }

    fn span(
        status: StatusCode,
        start_ms: u64,
        end_ms: u64,
        attributes: &[(&'static str, AttrRef<'static>)],
    ) -> TestSpan {
        TestSpan {
            status,
            start: start_ms * 1_000_000,
            end: end_ms * 1_000_000,
            attributes: attributes.iter().copied().collect(),
        }
    }

    fn trace(n: u8) -> TraceId {
        TraceId([n; 16])
    }

    fn policy(name: &str, rule: Rule) -> SamplingPolicy {
        SamplingPolicy {
            name: name.into(),
            rule,
        }
    }

    #[test]
    fn keeps_errors_and_slow_traces_and_names_the_policy() {
        let mut sampler = TailSampler::new(vec![
            policy(
                "errors",
                Rule::One(Condition::StatusCode(vec![StatusCode::Error])),
            ),
            policy(
                "slow",
                Rule::One(Condition::Latency {
                    min_ms: 5000,
                    max_ms: None,
                }),
            ),
        ]);
        let now = Instant::now();
        let error = [
            span(StatusCode::Ok, 0, 10, &[]),
            span(StatusCode::Error, 5, 8, &[]),
        ];
        assert_eq!(
            sampler.decide(&trace(1), &error, now),
            Decision::Keep(Some("errors".into()))
        );
        // Duration spans the whole trace: 0 → 6000 ms across two spans.
        let slow = [
            span(StatusCode::Ok, 0, 100, &[]),
            span(StatusCode::Ok, 5900, 6000, &[]),
        ];
        assert_eq!(
            sampler.decide(&trace(2), &slow, now),
            Decision::Keep(Some("slow".into()))
        );
        let fast = [span(StatusCode::Unset, 0, 100, &[])];
        assert_eq!(sampler.decide(&trace(3), &fast, now), Decision::Drop);
    }

    #[test]
    fn attribute_conditions_match_any_span_and_invert() {
        let models = StringMatch::Regex(RegexSet::new(["^gpt-4o$", "^claude-"]).unwrap());
        let condition = Condition::StringAttribute {
            key: "gen_ai.request.model".into(),
            matcher: models,
            invert: false,
        };
        let spans = [
            span(StatusCode::Ok, 0, 1, &[]),
            span(
                StatusCode::Ok,
                0,
                1,
                &[("gen_ai.request.model", AttrRef::Str("claude-3"))],
            ),
        ];
        assert!(condition.holds(&trace(1), &spans));
        let other = [span(
            StatusCode::Ok,
            0,
            1,
            &[("gen_ai.request.model", AttrRef::Str("gpt-4o-mini"))],
        )];
        assert!(!condition.holds(&trace(1), &other));

        let tokens = Condition::NumericAttribute {
            key: "tokens".into(),
            min: Some(100.0),
            max: None,
            invert: true,
        };
        assert!(tokens.holds(
            &trace(1),
            &[span(StatusCode::Ok, 0, 1, &[("tokens", AttrRef::Int(5))])]
        ));
        assert!(!tokens.holds(
            &trace(1),
            &[span(
                StatusCode::Ok,
                0,
                1,
                &[("tokens", AttrRef::Str("500"))]
            )]
        ));
    }

    #[test]
    fn all_spends_rate_budget_only_when_the_rest_pass() {
        let errors_capped = Rule::All(vec![
            Condition::StatusCode(vec![StatusCode::Error]),
            Condition::RateLimit(TokenBucket::new(2.0)),
        ]);
        let mut sampler = TailSampler::new(vec![policy("capped-errors", errors_capped)]);
        let now = Instant::now();
        let ok = [span(StatusCode::Ok, 0, 1, &[])];
        let err = [span(StatusCode::Error, 0, 1, &[])];
        for _ in 0..10 {
            assert_eq!(sampler.decide(&trace(1), &ok, now), Decision::Drop);
        }
        assert!(sampler.decide(&trace(2), &err, now).is_keep());
        assert!(sampler.decide(&trace(3), &err, now).is_keep());
        assert_eq!(
            sampler.decide(&trace(4), &err, now),
            Decision::Drop,
            "budget of 2 spans spent"
        );
        let later = now + Duration::from_millis(500);
        assert!(
            sampler.decide(&trace(5), &err, later).is_keep(),
            "one span refilled in 0.5 s"
        );
    }

    #[test]
    fn rate_limits_are_consulted_after_stateless_policies_and_scale_with_share() {
        let mut sampler = TailSampler::new(vec![
            policy(
                "cap",
                Rule::One(Condition::RateLimit(TokenBucket::new(10.0))),
            ),
            policy(
                "errors",
                Rule::One(Condition::StatusCode(vec![StatusCode::Error])),
            ),
        ]);
        sampler.set_share(0.5);
        let now = Instant::now();
        let err = [span(StatusCode::Error, 0, 1, &[])];
        assert_eq!(
            sampler.decide(&trace(1), &err, now),
            Decision::Keep(Some("errors".into()))
        );
        let three = [
            span(StatusCode::Ok, 0, 1, &[]),
            span(StatusCode::Ok, 0, 1, &[]),
            span(StatusCode::Ok, 0, 1, &[]),
        ];
        assert!(sampler.decide(&trace(2), &three, now).is_keep());
        assert_eq!(
            sampler.decide(&trace(3), &three, now),
            Decision::Drop,
            "half of 10 spans/s is 5"
        );
    }

    #[test]
    fn no_policies_keep_everything() {
        let mut sampler = TailSampler::default();
        assert_eq!(
            sampler.decide::<TestSpan>(&trace(1), &[], Instant::now()),
            Decision::Keep(None)
        );
    }

    #[test]
    fn probabilistic_is_deterministic_per_trace() {
        let condition = Condition::Probabilistic { percentage: 30.0 };
        let spans = [span(StatusCode::Ok, 0, 1, &[])];
        let kept: Vec<bool> = (0..=255)
            .map(|n| condition.holds(&trace(n), &spans))
            .collect();
        let again: Vec<bool> = (0..=255)
            .map(|n| condition.holds(&trace(n), &spans))
            .collect();
        assert_eq!(kept, again);
        let share = kept.iter().filter(|k| **k).count() as f64 / 256.0;
        assert!((0.2..0.4).contains(&share), "{share}");
    }
}
