//! The embedding judge: semantic similarity of a span field to reference answers or to
//! another field, by the cosine of sentence embeddings.
//!
//! The judge is split where the expensive part is: [`EmbeddingJudge::texts`] says what to
//! embed, the adapter embeds it (a model forward pass: milliseconds of CPU, run off the
//! async workers), and [`EmbeddingJudge::verdict`] turns the vectors into a verdict.

use std::collections::BTreeMap;

use super::{JudgeErrorKind, JudgeInput, Outcome, Verdict};
use crate::embedding::cosine;
use crate::field::SpanField;

/// Longest text embedded, in bytes (cut at a character boundary). The model reads at most
/// its own token limit (256 tokens for all-MiniLM-L6-v2, roughly 1–2 KB of English); the
/// cut bounds tokenizer work on untrusted spans, not what the model sees.
pub const MAX_EMBEDDED_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    /// Another field of the same span (e.g. the output against the input: on topic).
    Field(SpanField),
    /// Reference answers, embedded once; the closest one counts.
    References(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingJudge {
    pub field: SpanField,
    pub compare: Comparison,
    /// Pass when the similarity is at least this.
    pub min: f64,
}

impl EmbeddingJudge {
    /// What the adapter embeds for this span: the judged field first, then the compared
    /// field (references are embedded once, not per span); or the failure when a field is
    /// missing.
    pub fn texts(&self, input: &JudgeInput<'_>) -> Result<Vec<String>, Outcome> {
        let mut texts = vec![bounded(&input.require(&self.field)?)];
        if let Comparison::Field(other) = &self.compare {
            texts.push(bounded(&input.require(other)?));
        }
        Ok(texts)
    }

    /// The verdict from the judged field's vector, and the compared field's (or the
    /// references', in their order).
    pub fn verdict(&self, judged: &[f32], compared: &[Vec<f32>]) -> Outcome {
        let Some((best, similarity)) = compared
            .iter()
            .map(|v| cosine(judged, v))
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
        else {
            return Outcome::failed(JudgeErrorKind::Misconfigured, "nothing to compare with");
        };
        let against = match &self.compare {
            Comparison::Field(field) => format!("the {field}"),
            Comparison::References(references) if references.len() == 1 => {
                "the reference".to_owned()
            }
            Comparison::References(references) => {
                format!("reference {} of {}", best + 1, references.len())
            }
        };
        let passed = similarity >= self.min;
        let mut measurements = BTreeMap::from([("similarity".to_owned(), similarity)]);
        if matches!(self.compare, Comparison::References(_)) {
            measurements.insert("closestReference".to_owned(), (best + 1) as f64);
        }
        Outcome::Scored(Verdict {
            // Scores are in [0, 1]; an opposite meaning is as far off as an unrelated one.
            value: similarity.clamp(0.0, 1.0),
            passed,
            label: None,
            explanation: Some(format!(
                "{} vs {against}: cosine similarity {similarity:.3} {} {}",
                self.field,
                if passed { ">=" } else { "<" },
                self.min
            )),
            measurement: Some(similarity),
            measurements: Some(Box::new(measurements)),
            usage: None,
        })
    }
}

/// The text cut to [`MAX_EMBEDDED_BYTES`] at a character boundary.
pub fn bounded(text: &str) -> String {
    if text.len() <= MAX_EMBEDDED_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_EMBEDDED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::TraceContext;
    use crate::span::Span;

    fn judge(compare: Comparison) -> EmbeddingJudge {
        EmbeddingJudge {
            field: SpanField::Output,
            compare,
            min: 0.6,
        }
    }

    #[test]
    fn the_closest_reference_decides() {
        let judge = judge(Comparison::References(vec!["a".into(), "b".into()]));
        // cos(judged, r1) = 0, cos(judged, r2) = 0.8.
        let outcome = judge.verdict(&[0.6, 0.8], &[vec![1.0, 0.0], vec![0.0, 1.0]]);
        let verdict = outcome.verdict().unwrap();
        assert!(verdict.passed);
        assert!((verdict.value - 0.8).abs() < 1e-6);
        let measurements = verdict.measurements.as_ref().unwrap();
        assert_eq!(measurements["closestReference"], 2.0);
        assert_eq!(
            verdict.explanation.as_deref(),
            Some("output vs reference 2 of 2: cosine similarity 0.800 >= 0.6")
        );
        let opposite = judge.verdict(&[-1.0, 0.0], &[vec![1.0, 0.0]]);
        let verdict = opposite.verdict().unwrap();
        assert_eq!((verdict.value, verdict.passed), (0.0, false));
        assert_eq!(verdict.measurement, Some(-1.0));
    }

    #[test]
    fn texts_are_the_fields_and_missing_ones_fail() {
        let mut span = Span::blank();
        span.ai.explicit_output = Some("é".repeat(MAX_EMBEDDED_BYTES));
        let trace = TraceContext::default();
        let input = JudgeInput {
            span: &span,
            trace: &trace,
        };
        let by_field = judge(Comparison::Field(SpanField::Input));
        match by_field.texts(&input) {
            Err(Outcome::Failed(failure)) => {
                assert_eq!(failure.kind, JudgeErrorKind::MissingField);
                assert_eq!(failure.message, "the span has no input");
            }
            other => panic!("{other:?}"),
        }
        span.ai.explicit_input = Some("question".into());
        let input = JudgeInput {
            span: &span,
            trace: &trace,
        };
        let texts = by_field.texts(&input).unwrap();
        assert_eq!(texts.len(), 2);
        assert_eq!(texts[0].len(), MAX_EMBEDDED_BYTES);
        assert_eq!(texts[1], "question");
    }
}
