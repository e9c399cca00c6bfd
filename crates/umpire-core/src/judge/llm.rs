//! The LLM judge: a prompt filled from span fields, a verdict constrained to a fixed set of
//! labels, each label mapped to a score. The model is reached through a [`ChatBackend`] (an
//! OpenAI-compatible client in production, a stub in unit tests).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::{JudgeErrorKind, JudgeFailure, JudgeInput, JudgeUsage, Outcome, Verdict};
use crate::field::SpanField;
use crate::template::{PromptTemplate, standard_variable};

/// How the model is asked to constrain its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `response_format: {type: json_schema}` with the labels as an enum (structured outputs).
    JsonSchema,
    /// `response_format: {type: json_object}` (JSON mode).
    JsonObject,
    /// No constraint; the reply is parsed.
    Text,
}

/// The configured policy: a fixed format, or `Auto` — start with structured outputs and step
/// down when the endpoint rejects them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatPolicy {
    Auto,
    Fixed(ResponseFormat),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: f64,
    pub format: ResponseFormat,
    /// The labels the answer must use (for the JSON schema).
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub content: String,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

/// Why a chat completion failed, after the backend's own retries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChatError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("rate limited (HTTP 429)")]
    RateLimited,
    #[error("upstream error (HTTP {status}): {message}")]
    Upstream { status: u16, message: String },
    #[error("request refused (HTTP {status}): {message}")]
    BadRequest {
        status: u16,
        message: String,
        response_format_rejected: bool,
    },
    #[error("credentials refused (HTTP {status})")]
    Unauthorized { status: u16 },
    #[error("cannot reach the judge API: {0}")]
    Transport(String),
    #[error("the reply is not a chat completion: {0}")]
    InvalidReply(String),
}

impl ChatError {
    fn kind(&self) -> JudgeErrorKind {
        match self {
            Self::Timeout(_) => JudgeErrorKind::Timeout,
            Self::RateLimited => JudgeErrorKind::RateLimited,
            Self::Upstream { .. } | Self::InvalidReply(_) => JudgeErrorKind::Upstream,
            Self::BadRequest { .. } => JudgeErrorKind::BadRequest,
            Self::Unauthorized { .. } => JudgeErrorKind::Unauthorized,
            Self::Transport(_) => JudgeErrorKind::Transport,
        }
    }
}

pub type ChatFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ChatResponse, ChatError>> + Send + 'a>>;

/// A chat-completions API.
pub trait ChatBackend: Send + Sync {
    fn complete<'a>(&'a self, request: &'a ChatRequest) -> ChatFuture<'a>;
}

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
            auto_step: AtomicU8::new(0),
        }
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
        let mut values: BTreeMap<&str, Cow<'_, str>> = BTreeMap::new();
        for name in self.template.variables() {
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
        let mut request = match self.request(input) {
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
            usage: Some(usage),
        })
    }
}

/// Finds the label in a reply: a JSON object (whole reply, or embedded e.g. in a code fence)
/// with `label` (or `verdict`/`answer`/`choice`), else exactly one label named as a word.
pub fn parse_verdict(reply: &str, labels: &[String]) -> Option<(String, Option<String>)> {
    let from_json = |value: &Value| -> Option<(String, Option<String>)> {
        let raw = ["label", "verdict", "answer", "choice"]
            .iter()
            .find_map(|k| value.get(*k)?.as_str())?;
        let label = match_label(raw, labels)?;
        let explanation = ["explanation", "reason", "reasoning"]
            .iter()
            .find_map(|k| value.get(*k)?.as_str())
            .map(str::to_owned);
        Some((label, explanation))
    };
    let trimmed = reply.trim();
    if let Ok(value) = serde_json::from_str::<Value>(trimmed)
        && let Some(found) = from_json(&value)
    {
        return Some(found);
    }
    if let (Some(start), Some(end)) = (trimmed.find('{'), trimmed.rfind('}'))
        && start < end
        && let Ok(value) = serde_json::from_str::<Value>(&trimmed[start..=end])
        && let Some(found) = from_json(&value)
    {
        return Some(found);
    }
    let words: Vec<String> = trimmed
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase().replace('-', "_"))
        .collect();
    let named: Vec<&String> = labels
        .iter()
        .filter(|label| words.iter().any(|w| w == &label.to_lowercase()))
        .collect();
    match named.as_slice() {
        [only] => Some(((*only).clone(), Some(trimmed.to_owned()))),
        _ => None,
    }
}

fn match_label(raw: &str, labels: &[String]) -> Option<String> {
    let normalised = raw
        .trim()
        .trim_matches(|c: char| c == '"' || c == '\'' || c == '.' || c == '`')
        .to_lowercase()
        .replace([' ', '-'], "_");
    labels
        .iter()
        .find(|l| l.to_lowercase() == normalised)
        .cloned()
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 200 {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(200).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::judge::TraceContext;
    use crate::span::{AiView, RetrievedDocument, Span};
    use crate::template::BuiltinTemplate;

    fn labels() -> Vec<String> {
        vec!["grounded".into(), "ungrounded".into()]
    }

    #[test]
    fn parses_json_fenced_and_plain_verdicts() {
        assert_eq!(
            parse_verdict(r#"{"explanation": "ok", "label": "grounded"}"#, &labels()),
            Some(("grounded".into(), Some("ok".into())))
        );
        assert_eq!(
            parse_verdict(
                "Sure:\n```json\n{\"label\": \"Ungrounded\", \"reason\": \"made up\"}\n```",
                &labels()
            )
            .map(|v| v.0),
            Some("ungrounded".into())
        );
        assert_eq!(
            parse_verdict("The answer is ungrounded.", &labels()).map(|v| v.0),
            Some("ungrounded".into())
        );
        assert_eq!(
            parse_verdict("grounded or ungrounded, hard to say", &labels()),
            None,
            "ambiguous"
        );
        assert_eq!(parse_verdict("{\"label\": \"maybe\"}", &labels()), None);
        assert_eq!(parse_verdict("", &labels()), None);
    }

    struct Scripted {
        replies: Mutex<Vec<Result<ChatResponse, ChatError>>>,
        seen: Mutex<Vec<ChatRequest>>,
    }

    impl ChatBackend for Scripted {
        fn complete<'a>(&'a self, request: &'a ChatRequest) -> ChatFuture<'a> {
            self.seen.lock().unwrap().push(request.clone());
            let reply = self.replies.lock().unwrap().remove(0);
            Box::pin(async move { reply })
        }
    }

    fn judge(format: FormatPolicy) -> LlmJudge {
        let template = BuiltinTemplate::Groundedness;
        LlmJudge::new(
            template.template(),
            BTreeMap::new(),
            template
                .default_choices()
                .iter()
                .map(|(l, v)| ((*l).to_owned(), *v))
                .collect(),
            0.5,
            "judge-model".into(),
            0.0,
            format,
            Some(JudgePricing {
                input_per_million: 1.0,
                output_per_million: 2.0,
            }),
        )
    }

    fn span() -> Span {
        let mut span: Span = serde_json::from_value(serde_json::json!({
            "traceId": "0748feb976cd256641cc0ff1847e6c60", "spanId": "9d8fc259f94501bd", "name": "chat",
            "startTimeUnixNano": 0, "endTimeUnixNano": 1
        }))
        .unwrap();
        span.ai = AiView {
            input: Some("Refund window?".into()),
            output: Some("90 days".into()),
            ..AiView::default()
        };
        span
    }

    fn with_documents(documents: Vec<RetrievedDocument>) -> TraceContext {
        let mut trace = TraceContext::default();
        trace.documents = documents;
        trace
    }

    fn reply(content: &str) -> Result<ChatResponse, ChatError> {
        Ok(ChatResponse {
            content: content.into(),
            input_tokens: Some(1_000),
            output_tokens: Some(500),
        })
    }

    #[tokio::test]
    async fn renders_context_from_the_trace_and_scores_the_label() {
        let trace = with_documents(vec![RetrievedDocument {
            id: Some("kb-0".into()),
            content: Some("Refunds within 30 days.".into()),
            score: None,
        }]);
        let span = span();
        let backend = Scripted {
            replies: Mutex::new(vec![reply(
                r#"{"label":"ungrounded","explanation":"says 90, docs say 30"}"#,
            )]),
            seen: Mutex::default(),
        };
        let outcome = judge(FormatPolicy::Auto)
            .evaluate(
                &JudgeInput {
                    span: &span,
                    trace: &trace,
                },
                &backend,
            )
            .await;
        let verdict = outcome.verdict().unwrap();
        assert_eq!(
            (verdict.value, verdict.passed, verdict.label.as_deref()),
            (0.0, false, Some("ungrounded"))
        );
        assert_eq!(verdict.usage.unwrap().cost_usd, Some(0.002));
        let seen = backend.seen.lock().unwrap();
        assert!(
            seen[0].messages[1]
                .content
                .contains("[kb-0] Refunds within 30 days.")
        );
        assert!(seen[0].messages[1].content.contains("90 days"));
        assert_eq!(seen[0].format, ResponseFormat::JsonSchema);
    }

    #[tokio::test]
    async fn auto_steps_down_when_the_format_is_rejected() {
        let trace = with_documents(vec![RetrievedDocument {
            content: Some("doc".into()),
            ..Default::default()
        }]);
        let span = span();
        let rejected = || {
            Err(ChatError::BadRequest {
                status: 400,
                message: "response_format".into(),
                response_format_rejected: true,
            })
        };
        let backend = Scripted {
            replies: Mutex::new(vec![
                rejected(),
                rejected(),
                reply("grounded"),
                reply("grounded"),
            ]),
            seen: Mutex::default(),
        };
        let judge = judge(FormatPolicy::Auto);
        let input = JudgeInput {
            span: &span,
            trace: &trace,
        };
        assert!(
            judge
                .evaluate(&input, &backend)
                .await
                .verdict()
                .unwrap()
                .passed
        );
        assert!(
            judge
                .evaluate(&input, &backend)
                .await
                .verdict()
                .unwrap()
                .passed
        );
        let formats: Vec<ResponseFormat> = backend
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.format)
            .collect();
        assert_eq!(
            formats,
            [
                ResponseFormat::JsonSchema,
                ResponseFormat::JsonObject,
                ResponseFormat::Text,
                ResponseFormat::Text
            ]
        );
    }

    #[tokio::test]
    async fn missing_fields_and_bad_answers_are_failures() {
        let span = span();
        let backend = Scripted {
            replies: Mutex::new(vec![reply("I cannot decide")]),
            seen: Mutex::default(),
        };
        let no_context = judge(FormatPolicy::Auto)
            .evaluate(
                &JudgeInput {
                    span: &span,
                    trace: &TraceContext::default(),
                },
                &backend,
            )
            .await;
        assert!(
            matches!(
                no_context,
                Outcome::Failed(JudgeFailure {
                    kind: JudgeErrorKind::MissingField,
                    ..
                })
            ),
            "{no_context:?}"
        );
        let trace = with_documents(vec![RetrievedDocument {
            content: Some("doc".into()),
            ..Default::default()
        }]);
        let vague = judge(FormatPolicy::Fixed(ResponseFormat::Text))
            .evaluate(
                &JudgeInput {
                    span: &span,
                    trace: &trace,
                },
                &backend,
            )
            .await;
        match vague {
            Outcome::Failed(failure) => {
                assert_eq!(failure.kind, JudgeErrorKind::InvalidVerdict);
                assert_eq!(
                    failure.usage.unwrap().input_tokens,
                    1_000,
                    "tokens spent are still recorded"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
