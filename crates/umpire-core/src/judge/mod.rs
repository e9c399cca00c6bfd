//! Judges: what turns a span into a score.
//!
//! Code judges ([`CodeJudge`]) are synchronous and cheap; the LLM judge ([`llm::LlmJudge`])
//! calls a model through a [`llm::ChatBackend`] supplied by an adapter. Every judge returns an
//! [`Outcome`]: a verdict, a recorded failure (never silently skipped, never a score), or a
//! counted skip.

pub mod code;
pub mod embedding;
pub mod injection;
pub mod llm;
pub mod outcome;
pub mod pii;
pub mod retrieval;
pub mod trace;
mod whole_ms;

use std::borrow::Cow;

pub use outcome::{JudgeErrorKind, JudgeFailure, JudgeUsage, Outcome, SkipReason, Verdict};
pub use trace::TraceContext;

use crate::field::SpanField;
use crate::span::{Span, value_text};

/// What a judge looks at: the span, and what is known of its trace.
#[derive(Debug, Clone, Copy)]
pub struct JudgeInput<'a> {
    pub span: &'a Span,
    pub trace: &'a TraceContext,
}

/// A synchronous judge.
pub trait CodeJudge: Send + Sync + std::fmt::Debug {
    fn evaluate(&self, input: &JudgeInput<'_>) -> Outcome;
}

impl JudgeInput<'_> {
    /// The text of a span field, if the span has it.
    pub fn field_text(&self, field: &SpanField) -> Option<Cow<'_, str>> {
        let ai = &self.span.ai;
        match field {
            SpanField::Input => ai.input_text().map(Cow::Borrowed),
            SpanField::Output => ai.output_text(),
            SpanField::System => ai.system_instructions.as_deref().map(Cow::Borrowed),
            SpanField::Messages => {
                let texts: Vec<&str> = ai
                    .input_messages
                    .iter()
                    .chain(&ai.output_messages)
                    .filter_map(|m| m.content.as_deref())
                    .collect();
                (!texts.is_empty()).then(|| Cow::Owned(texts.join("\n\n")))
            }
            SpanField::ToolArguments => {
                let called = ai
                    .tool_calls
                    .iter()
                    .chain(ai.output_messages.iter().flat_map(|m| &m.tool_calls))
                    .filter_map(|call| call.arguments.as_deref());
                let ran = ai.tool.as_ref().and_then(|t| t.arguments.as_deref());
                let texts: Vec<&str> = called.chain(ran).collect();
                (!texts.is_empty()).then(|| Cow::Owned(texts.join("\n\n")))
            }
            SpanField::Context => {
                let documents = if ai.documents.is_empty() {
                    &self.trace.documents
                } else {
                    &ai.documents
                };
                let texts: Vec<String> = documents
                    .iter()
                    .filter_map(|d| {
                        let content = d.content.as_deref()?;
                        Some(match &d.id {
                            Some(id) => format!("[{id}] {content}"),
                            None => content.to_owned(),
                        })
                    })
                    .collect();
                (!texts.is_empty()).then(|| Cow::Owned(texts.join("\n\n")))
            }
            SpanField::Attribute(key) => {
                self.span.attribute(key).map(|v| Cow::Owned(value_text(v)))
            }
            SpanField::Resource(key) => self
                .span
                .resource
                .get(key)
                .map(|v| Cow::Owned(value_text(v))),
        }
    }

    /// The field's text, or the failure a judge records when it is missing.
    pub fn require(&self, field: &SpanField) -> Result<Cow<'_, str>, Outcome> {
        self.field_text(field).ok_or_else(|| {
            Outcome::failed(
                JudgeErrorKind::MissingField,
                format!("the span has no {field}"),
            )
        })
    }
}
