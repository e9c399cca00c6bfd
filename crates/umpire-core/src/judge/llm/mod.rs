//! The LLM judge: a prompt filled from span fields, a verdict constrained to a fixed set of
//! labels, each label mapped to a score. The model is reached through a [`ChatBackend`] (an
//! OpenAI-compatible client in production, a stub in unit tests).

mod chat;
mod verdict;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};

use super::retrieval::RetrievalRating;
use super::{JudgeErrorKind, JudgeFailure, JudgeInput, JudgeUsage, Outcome, Verdict};
use crate::field::SpanField;
use crate::template::{PromptTemplate, standard_variable};

pub use self::chat::{
    ChatBackend, ChatError, ChatFuture, ChatMessage, ChatRequest, ChatResponse, FormatPolicy,
    ResponseFormat,
};
pub use self::verdict::parse_verdict;

/// The template variable a retrieval rating fills with each document's text.
pub const DOCUMENT_VARIABLE: &str = "document";

/// US dollars per million tokens of the judge model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JudgePricing {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

#[derive(Debug)]
pub struct LlmJudge {
    pub template: PromptTemplate,
    /// Declared variables (name → span field); standard ones need no declaration.
    pub variables: BTreeMap<String, SpanField>,
    /// Labels and their scores, in a stable order.
    pub choices: Vec<(String, f64)>,
    pub pass_threshold: f64,
    pub model: String,
    pub temperature: f64,
    pub format: FormatPolicy,
    pub pricing: Option<JudgePricing>,
    /// Set: the prompt rates one retrieved document at a time (`{{document}}`), and the
    /// ratings are aggregated into ranking measurements.
    pub retrieval: Option<RetrievalRating>,
    /// For `Auto`: the format currently tried (0 schema, 1 object, 2 text), kept across calls.
    auto_step: AtomicU8,
}

impl LlmJudge {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        template: PromptTemplate,
        variables: BTreeMap<String, SpanField>,
        choices: Vec<(String, f64)>,
        pass_threshold: f64,
        model: String,
        temperature: f64,
        format: FormatPolicy,
        pricing: Option<JudgePricing>,
    ) -> Self {
        Self {
            template,
            variables,
            choices,
            pass_threshold,
            model,
            temperature,
            format,
            pricing,
            retrieval: None,
            auto_step: AtomicU8::new(0),
        }
    }

    /// Rates retrieved documents one by one (the template reads `{{document}}`).
    pub fn with_retrieval(mut self, rating: RetrievalRating) -> Self {
        self.retrieval = Some(rating);
        self
    }

    fn current_format(&self) -> ResponseFormat {
        match self.format {
            FormatPolicy::Fixed(format) => format,
            FormatPolicy::Auto => match self.auto_step.load(Ordering::Relaxed) {
                0 => ResponseFormat::JsonSchema,
                1 => ResponseFormat::JsonObject,
                _ => ResponseFormat::Text,
            },
        }
    }

    fn labels(&self) -> Vec<String> {
        self.choices
            .iter()
            .map(|(label, _)| label.clone())
            .collect()
    }

    /// The chat request for a span, or the failure when a variable's field is missing.
    pub fn request(&self, input: &JudgeInput<'_>) -> Result<ChatRequest, Outcome> {
        self.request_with(input, None)
    }

    /// The request, with `{{document}}` standing for `document` (retrieval rating).
    fn request_with(
        &self,
        input: &JudgeInput<'_>,
        document: Option<&str>,
    ) -> Result<ChatRequest, Outcome> {
        let mut values: BTreeMap<&str, Cow<'_, str>> = BTreeMap::new();
        for name in self.template.variables() {
            if let (DOCUMENT_VARIABLE, Some(document)) = (name, document) {
                values.insert(name, Cow::Borrowed(document));
                continue;
            }
            let field = self
                .variables
                .get(name)
                .cloned()
                .or_else(|| standard_variable(name));
            let Some(field) = field else {
                return Err(Outcome::failed(
                    JudgeErrorKind::Misconfigured,
                    format!("template variable {{{{{name}}}}} is not declared"),
                ));
            };
            match input.field_text(&field) {
                Some(value) => {
                    values.insert(name, value);
                }
                None => {
                    return Err(Outcome::failed(
                        JudgeErrorKind::MissingField,
                        format!("the span has no {field} for {{{{{name}}}}}"),
                    ));
                }
            }
        }
        let prompt = self.template.render(|name| values.get(name).cloned());
        let labels = self.labels();
        let system = format!(
            "You are an impartial evaluator. Answer with a JSON object and nothing else: \
             {{\"explanation\": \"<one or two sentences>\", \"label\": \"<one of: {}>\"}}.",
            labels.join(", ")
        );
        Ok(ChatRequest {
            model: self.model.clone(),
            messages: vec![
                ChatMessage {
                    role: "system",
                    content: system,
                },
                ChatMessage {
                    role: "user",
                    content: prompt,
                },
            ],
            temperature: self.temperature,
            format: self.current_format(),
            labels,
        })
    }

    /// Runs the judge; with `Auto`, steps down the response format when the endpoint
    /// rejects it and remembers what worked.
    pub async fn evaluate(&self, input: &JudgeInput<'_>, backend: &dyn ChatBackend) -> Outcome {
        self.evaluate_with(input, None, backend).await
    }

    /// Rates one retrieved document's text against the span (retrieval rating).
    pub async fn evaluate_document(
        &self,
        input: &JudgeInput<'_>,
        document: &str,
        backend: &dyn ChatBackend,
    ) -> Outcome {
        self.evaluate_with(input, Some(document), backend).await
    }

    async fn evaluate_with(
        &self,
        input: &JudgeInput<'_>,
        document: Option<&str>,
        backend: &dyn ChatBackend,
    ) -> Outcome {
        let mut request = match self.request_with(input, document) {
            Ok(request) => request,
            Err(failure) => return failure,
        };
        loop {
            match backend.complete(&request).await {
                Ok(response) => return self.interpret(&response),
                Err(ChatError::BadRequest {
                    response_format_rejected: true,
                    ..
                }) if self.format == FormatPolicy::Auto
                    && request.format != ResponseFormat::Text =>
                {
                    let _ =
                        self.auto_step
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |step| {
                                Some((step + 1).min(2))
                            });
                    request.format = self.current_format();
                }
                Err(error) => return Outcome::failed(error.kind(), error.to_string()),
            }
        }
    }

    /// Turns the model's reply into a verdict, or an `invalid_verdict` failure.
    pub fn interpret(&self, response: &ChatResponse) -> Outcome {
        let usage = JudgeUsage {
            input_tokens: response.input_tokens.unwrap_or(0),
            output_tokens: response.output_tokens.unwrap_or(0),
            cost_usd: self.pricing.map(|p| {
                response.input_tokens.unwrap_or(0) as f64 / 1e6 * p.input_per_million
                    + response.output_tokens.unwrap_or(0) as f64 / 1e6 * p.output_per_million
            }),
        };
        let Some((label, explanation)) = parse_verdict(&response.content, &self.labels()) else {
            return Outcome::Failed(JudgeFailure {
                kind: JudgeErrorKind::InvalidVerdict,
                message: format!(
                    "the answer names none (or several) of {:?}: {:?}",
                    self.labels(),
                    shorten(&response.content)
                ),
                usage: Some(usage),
            });
        };
        let value = self
            .choices
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, v)| *v)
            .unwrap_or(0.0);
        Outcome::Scored(Verdict {
            value,
            passed: value >= self.pass_threshold,
            label: Some(label),
            explanation,
            measurement: None,
            measurements: Default::default(),
            usage: Some(usage),
        })
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 200 {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(200).collect::<String>())
    }
}

#[cfg(test)]
mod tests;
