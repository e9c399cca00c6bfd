//! Prompts, verdict parsing and format fallback against a stub backend.

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
        explicit_input: Some("Refund window?".into()),
        explicit_output: Some("90 days".into()),
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
