//! Which spans an EvalPolicy judges.

use std::collections::HashSet;

use regex::Regex;
use serde_json::Value;

use crate::hashing::{HashPurpose, trace_in_percentage};
use crate::span::{AiSpanKind, Span};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KindSelector {
    /// An OpenInference kind (GenAI operations map onto these too).
    Kind(AiSpanKind),
    /// A GenAI operation name exactly (`chat`, `execute_tool`, …).
    Operation(String),
}

#[derive(Debug, Clone)]
pub enum MatchTest {
    In(HashSet<String>),
    NotIn(HashSet<String>),
    Exists(bool),
    Regex(Regex),
    Range { min: Option<f64>, max: Option<f64> },
}

#[derive(Debug, Clone)]
pub struct AttributeMatcher {
    pub attribute: String,
    pub test: MatchTest,
}

impl AttributeMatcher {
    pub fn matches(&self, span: &Span) -> bool {
        let value = span.attribute(&self.attribute);
        match &self.test {
            MatchTest::Exists(wanted) => value.is_some() == *wanted,
            MatchTest::In(values) => value.is_some_and(|v| values.contains(&text(v))),
            MatchTest::NotIn(values) => value.is_none_or(|v| !values.contains(&text(v))),
            MatchTest::Regex(pattern) => value.is_some_and(|v| pattern.is_match(&text(v))),
            MatchTest::Range { min, max } => value
                .and_then(number)
                .is_some_and(|n| min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m)),
        }
    }
}

fn text(value: &Value) -> String {
    crate::span::value_text(value)
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// All criteria must hold. Empty criteria select everything.
#[derive(Debug, Clone, Default)]
pub struct SpanSelector {
    pub kinds: Vec<KindSelector>,
    pub span_names: Vec<String>,
    pub matchers: Vec<AttributeMatcher>,
    /// 0–100, decided by trace id: the same trace is in or out everywhere, every time.
    pub sample_percentage: Option<f64>,
}

impl SpanSelector {
    /// Whether the policy judges this span. `sampled` false ignores `sample_percentage`
    /// (offline evaluation of a golden set judges every matching span).
    pub fn selects(&self, span: &Span, sampled: bool) -> bool {
        let kind_ok = self.kinds.is_empty()
            || self.kinds.iter().any(|k| match k {
                KindSelector::Kind(kind) => span.ai.kind == Some(*kind),
                KindSelector::Operation(op) => span.ai.operation.as_deref() == Some(op.as_str()),
            });
        kind_ok
            && (self.span_names.is_empty() || self.span_names.contains(&span.name))
            && self.matchers.iter().all(|m| m.matches(span))
            && (!sampled
                || self.sample_percentage.is_none_or(|p| {
                    trace_in_percentage(&span.trace_id, HashPurpose::EvaluationSampling, p)
                }))
    }

    /// The span-stream subject suffixes (`<kind>.<operation>`) that can hold selected spans,
    /// or `None` when any may.
    pub fn subject_filters(&self) -> Option<Vec<String>> {
        if self.kinds.is_empty() {
            return None;
        }
        let mut filters: Vec<String> = self
            .kinds
            .iter()
            .map(|k| match k {
                KindSelector::Kind(kind) => format!("{}.*", kind.name().to_ascii_lowercase()),
                KindSelector::Operation(op) => {
                    let kind = AiSpanKind::from_genai_operation(op)
                        .map(|k| k.name().to_ascii_lowercase())
                        .unwrap_or_else(|| "*".into());
                    format!("{kind}.{op}")
                }
            })
            .collect();
        filters.sort();
        filters.dedup();
        Some(filters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(kind: Option<AiSpanKind>, operation: Option<&str>, model: Option<&str>) -> Span {
        let mut span: Span = serde_json::from_value(serde_json::json!({
            "traceId": "0748feb976cd256641cc0ff1847e6c60", "spanId": "9d8fc259f94501bd", "name": "chat",
            "startTimeUnixNano": 0, "endTimeUnixNano": 1
        }))
        .unwrap();
        span.ai.kind = kind;
        span.ai.operation = operation.map(str::to_owned);
        if let Some(model) = model {
            span.attributes
                .insert("gen_ai.request.model".into(), Value::from(model));
        }
        span
    }

    #[test]
    fn selects_by_kind_operation_and_attributes() {
        let selector = SpanSelector {
            kinds: vec![KindSelector::Kind(AiSpanKind::Llm)],
            matchers: vec![AttributeMatcher {
                attribute: "gen_ai.request.model".into(),
                test: MatchTest::In(["gpt-4o".to_owned()].into_iter().collect()),
            }],
            ..SpanSelector::default()
        };
        assert!(selector.selects(
            &span(Some(AiSpanKind::Llm), Some("chat"), Some("gpt-4o")),
            true
        ));
        assert!(!selector.selects(
            &span(Some(AiSpanKind::Llm), Some("chat"), Some("gpt-4o-mini")),
            true
        ));
        assert!(!selector.selects(&span(Some(AiSpanKind::Tool), None, Some("gpt-4o")), true));
        let chat_only = SpanSelector {
            kinds: vec![KindSelector::Operation("chat".into())],
            ..SpanSelector::default()
        };
        assert!(chat_only.selects(&span(Some(AiSpanKind::Llm), Some("chat"), None), true));
        assert!(!chat_only.selects(&span(Some(AiSpanKind::Llm), None, None), true));
        assert_eq!(
            chat_only.subject_filters(),
            Some(vec!["llm.chat".to_owned()])
        );
        assert_eq!(SpanSelector::default().subject_filters(), None);
    }

    #[test]
    fn not_in_and_range_and_sampling() {
        let mut s = span(None, None, Some("gpt-4o"));
        s.attributes.insert("tokens".into(), Value::from(150));
        let not_in = AttributeMatcher {
            attribute: "gen_ai.request.model".into(),
            test: MatchTest::NotIn(["gpt-4o".to_owned()].into_iter().collect()),
        };
        assert!(!not_in.matches(&s));
        assert!(
            AttributeMatcher {
                attribute: "missing".into(),
                test: MatchTest::NotIn(HashSet::new())
            }
            .matches(&s)
        );
        assert!(
            AttributeMatcher {
                attribute: "tokens".into(),
                test: MatchTest::Range {
                    min: Some(100.0),
                    max: None
                }
            }
            .matches(&s)
        );
        let sampled = SpanSelector {
            sample_percentage: Some(0.0),
            ..SpanSelector::default()
        };
        assert!(!sampled.selects(&s, true));
        assert!(
            sampled.selects(&s, false),
            "offline evaluation ignores sampling"
        );
    }
}
