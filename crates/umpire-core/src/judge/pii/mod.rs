//! The `pii` judge: personal data and secrets in chosen fields of a span. The verdict names
//! the kinds found and how many, never the values — a score must not become the leak.

mod detect;

use std::collections::{BTreeMap, BTreeSet};

pub use detect::{PiiKind, find};

use super::{CodeJudge, JudgeErrorKind, JudgeInput, Outcome};
use crate::field::SpanField;

#[derive(Debug)]
pub struct PiiJudge {
    pub fields: Vec<SpanField>,
    pub kinds: Vec<PiiKind>,
    /// Pass when nothing is found (true), or when something is (false: e.g. a check that an
    /// extraction step still returns contact details).
    pub expect_none: bool,
}

impl CodeJudge for PiiJudge {
    fn evaluate(&self, input: &JudgeInput<'_>) -> Outcome {
        // Distinct values across fields: a reply is often in `output` and `messages` both.
        let mut found: BTreeMap<PiiKind, BTreeSet<String>> = BTreeMap::new();
        let mut read = Vec::new();
        for field in &self.fields {
            let Some(text) = input.field_text(field) else {
                continue;
            };
            read.push(field.to_string());
            for (kind, values) in detect::values(&text, &self.kinds) {
                found.entry(kind).or_default().extend(values);
            }
        }
        if read.is_empty() {
            let fields: Vec<String> = self.fields.iter().map(ToString::to_string).collect();
            return Outcome::failed(
                JudgeErrorKind::MissingField,
                format!("the span has none of {}", fields.join(", ")),
            );
        }
        let total: usize = found.values().map(BTreeSet::len).sum();
        let explanation = if found.is_empty() {
            format!("no personal data or secrets in {}", read.join(", "))
        } else {
            let kinds: Vec<String> = found
                .iter()
                .map(|(kind, values)| format!("{} ×{}", kind.name(), values.len()))
                .collect();
            format!("found {} in {}", kinds.join(", "), read.join(", "))
        };
        Outcome::check(found.is_empty() == self.expect_none, explanation)
            .with_measurement(total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{TraceContext, Verdict};
    use crate::span::{Message, Span, ToolCall};

    fn verdict(judge: &PiiJudge, span: &Span) -> Verdict {
        let trace = TraceContext::from_spans([span]);
        match judge.evaluate(&JudgeInput {
            span,
            trace: &trace,
        }) {
            Outcome::Scored(verdict) => verdict,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_kinds_and_counts_never_values() {
        let mut span = Span::blank();
        span.ai.explicit_output = Some("Reach me at jo@example.com or +1 415 555 0132.".into());
        span.ai.output_messages = vec![Message {
            role: "assistant".into(),
            tool_calls: vec![ToolCall {
                name: "pay".into(),
                arguments: Some(r#"{"card":"4111-1111-1111-1111"}"#.into()),
                ..Default::default()
            }],
            ..Default::default()
        }];
        let judge = PiiJudge {
            fields: vec![
                SpanField::Output,
                SpanField::ToolArguments,
                SpanField::Input,
            ],
            kinds: PiiKind::ALL.to_vec(),
            expect_none: true,
        };
        let verdict = verdict(&judge, &span);
        assert!(!verdict.passed);
        assert_eq!(verdict.value, 0.0);
        assert_eq!(verdict.measurement, Some(3.0));
        let explanation = verdict.explanation.unwrap_or_default();
        assert_eq!(
            explanation,
            "found email ×1, phone ×1, paymentCard ×1 in output, toolArguments"
        );
        for secret in ["jo@example.com", "555", "4111"] {
            assert!(!explanation.contains(secret), "{explanation}");
        }
    }

    #[test]
    fn only_the_chosen_kinds_and_the_expectation() {
        let mut span = Span::blank();
        span.ai.explicit_output = Some("mail jo@example.com".into());
        let phones_only = PiiJudge {
            fields: vec![SpanField::Output],
            kinds: vec![PiiKind::Phone],
            expect_none: true,
        };
        assert!(verdict(&phones_only, &span).passed);
        let expect_some = PiiJudge {
            fields: vec![SpanField::Output],
            kinds: vec![PiiKind::Email],
            expect_none: false,
        };
        assert!(verdict(&expect_some, &span).passed);
    }

    #[test]
    fn a_span_without_the_fields_is_a_recorded_failure() {
        let judge = PiiJudge {
            fields: vec![SpanField::Input, SpanField::Messages],
            kinds: PiiKind::ALL.to_vec(),
            expect_none: true,
        };
        let span = Span::blank();
        let trace = TraceContext::from_spans([&span]);
        let outcome = judge.evaluate(&JudgeInput {
            span: &span,
            trace: &trace,
        });
        assert!(
            matches!(outcome, Outcome::Failed(ref f) if f.kind == JudgeErrorKind::MissingField && f.message == "the span has none of input, messages"),
            "{outcome:?}"
        );
    }
}
