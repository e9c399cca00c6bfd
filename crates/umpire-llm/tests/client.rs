//! The OpenAI-compatible client against a local server speaking the same protocol.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use umpire_core::judge::llm::{FormatPolicy, LlmJudge};
use umpire_core::judge::{JudgeErrorKind, JudgeInput, Outcome, SkipReason, TraceContext};
use umpire_core::span::{AiView, Span};
use umpire_core::template::BuiltinTemplate;
use umpire_llm::{ApiKey, ClientSettings, LlmRunner, OpenAiClient, RunnerLimits};
use umpire_testkit::judge::{JudgeServer, Scripted};

/// A built-in template's judge with its default choices, passing at 0.5.
fn builtin_judge(template: BuiltinTemplate) -> LlmJudge {
    LlmJudge::new(
        template.template(),
        BTreeMap::new(),
        template
            .default_choices()
            .iter()
            .map(|(l, v)| ((*l).to_owned(), *v))
            .collect(),
        0.5,
        "qwen2.5-7b-instruct".into(),
        0.0,
        FormatPolicy::Auto,
        None,
    )
}

fn relevance_judge() -> Arc<LlmJudge> {
    Arc::new(builtin_judge(BuiltinTemplate::AnswerRelevance))
}

fn span(output: &str) -> Span {
    let mut span: Span = serde_json::from_value(serde_json::json!({
        "traceId": "0748feb976cd256641cc0ff1847e6c60", "spanId": "9d8fc259f94501bd", "name": "chat",
        "startTimeUnixNano": 0, "endTimeUnixNano": 1
    }))
    .unwrap();
    span.ai = AiView {
        explicit_input: Some("What is your refund policy?".into()),
        explicit_output: Some(output.into()),
        ..AiView::default()
    };
    span
}

fn client(server: &JudgeServer, retries: u32) -> OpenAiClient {
    let mut settings = ClientSettings::new(server.url());
    settings.api_key = Some(ApiKey::new("sk-test-key"));
    settings.max_retries = retries;
    settings.backoff.initial = Duration::from_millis(10);
    settings.timeout = Duration::from_millis(500);
    OpenAiClient::new(settings).unwrap()
}

async fn judge_once(server: &JudgeServer, retries: u32, output: &str) -> Outcome {
    let span = span(output);
    let trace = TraceContext::default();
    relevance_judge()
        .evaluate(
            &JudgeInput {
                span: &span,
                trace: &trace,
            },
            &client(server, retries),
        )
        .await
}

#[tokio::test]
async fn sends_a_structured_request_and_scores_the_verdict() {
    let server = JudgeServer::start().await.unwrap();
    server.require_key("sk-test-key");
    server.set_verdict(|request| {
        if request.prompt().contains("30 days") {
            "relevant".into()
        } else {
            "irrelevant".into()
        }
    });
    let outcome = judge_once(&server, 0, "Refunds within 30 days.").await;
    let verdict = outcome.verdict().unwrap();
    assert_eq!(
        (verdict.label.as_deref(), verdict.value, verdict.passed),
        (Some("relevant"), 1.0, true)
    );
    assert_eq!(verdict.explanation.as_deref(), Some("judged relevant"));
    assert_eq!(
        (
            verdict.usage.unwrap().input_tokens,
            verdict.usage.unwrap().output_tokens
        ),
        (120, 30)
    );

    let request = &server.requests()[0];
    assert_eq!(request.headers["authorization"], "Bearer sk-test-key");
    assert_eq!(request.body["model"], "qwen2.5-7b-instruct");
    assert_eq!(request.response_format().as_deref(), Some("json_schema"));
    assert_eq!(
        request.body["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"],
        serde_json::json!(["relevant", "partially_relevant", "irrelevant"])
    );
    assert!(request.prompt().contains("What is your refund policy?"));
    let irrelevant = judge_once(&server, 0, "I like turtles.").await;
    assert!(!irrelevant.verdict().unwrap().passed);
}

#[tokio::test]
async fn retries_throttling_and_server_errors_then_succeeds() {
    let server = JudgeServer::start().await.unwrap();
    server.push(Scripted::Status {
        code: 429,
        retry_after: Some(0),
    });
    server.push(Scripted::Status {
        code: 503,
        retry_after: None,
    });
    server.push(Scripted::Status {
        code: 500,
        retry_after: None,
    });
    let outcome = judge_once(&server, 3, "Refunds within 30 days.").await;
    assert!(outcome.verdict().is_some(), "{outcome:?}");
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn gives_up_after_the_retries_with_the_right_error_kind() {
    let server = JudgeServer::start().await.unwrap();
    for _ in 0..3 {
        server.push(Scripted::Status {
            code: 429,
            retry_after: Some(0),
        });
    }
    match judge_once(&server, 2, "x").await {
        Outcome::Failed(failure) => assert_eq!(failure.kind, JudgeErrorKind::RateLimited),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests().len(), 3);

    let server = JudgeServer::start().await.unwrap();
    server.push(Scripted::Status {
        code: 400,
        retry_after: None,
    });
    match judge_once(&server, 5, "x").await {
        Outcome::Failed(failure) => assert_eq!(failure.kind, JudgeErrorKind::BadRequest),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests().len(), 1, "a 400 is not retried");

    let server = JudgeServer::start().await.unwrap();
    server.require_key("another-key");
    match judge_once(&server, 5, "x").await {
        Outcome::Failed(failure) => assert_eq!(failure.kind, JudgeErrorKind::Unauthorized),
        other => panic!("{other:?}"),
    }

    let server = JudgeServer::start().await.unwrap();
    server.set_latency(Duration::from_secs(2));
    match judge_once(&server, 1, "x").await {
        Outcome::Failed(failure) => assert_eq!(failure.kind, JudgeErrorKind::Timeout),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server.requests().len(),
        2,
        "one retry after the first timeout"
    );
}

#[tokio::test]
async fn falls_back_to_json_mode_then_text_when_structured_outputs_are_refused() {
    let server = JudgeServer::start().await.unwrap();
    server.reject_formats(&["json_schema", "json_object"]);
    server.set_verdict(|_| "partially_relevant".into());
    let outcome = judge_once(&server, 0, "Refunds within 30 days.").await;
    assert_eq!(outcome.verdict().unwrap().value, 0.5);
    let formats: Vec<Option<String>> = server
        .requests()
        .iter()
        .map(|r| r.response_format())
        .collect();
    assert_eq!(
        formats,
        [Some("json_schema".into()), Some("json_object".into()), None]
    );
}

#[tokio::test]
async fn runner_bounds_concurrency_and_stops_at_the_token_budget() {
    let server = JudgeServer::start().await.unwrap();
    server.set_latency(Duration::from_millis(20));
    let runner = Arc::new(LlmRunner::new(
        relevance_judge(),
        client(&server, 0),
        RunnerLimits {
            max_concurrency: 4,
            requests_per_minute: None,
            daily_tokens: Some(150 * 30),
        },
    ));
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let runner = runner.clone();
        tasks.push(tokio::spawn(async move {
            let span = span("Refunds within 30 days.");
            let trace = TraceContext::default();
            runner
                .run(&JudgeInput {
                    span: &span,
                    trace: &trace,
                })
                .await
        }));
    }
    let mut judged = 0;
    let mut skipped = 0;
    for task in tasks {
        match task.await.unwrap() {
            Outcome::Scored(_) => judged += 1,
            Outcome::Skipped {
                reason: SkipReason::BudgetExhausted,
            } => skipped += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(
        server.max_concurrency() <= 4,
        "{}",
        server.max_concurrency()
    );
    // 150 tokens per verdict and a 4,500-token day: 30 verdicts, plus at most the ones in
    // flight when the budget ran out.
    assert!((30..=34).contains(&judged), "{judged}");
    assert_eq!(judged + skipped, 40);
    assert!(runner.budget().unwrap().exhausted());
}

/// A judge endpoint on an internal address (here loopback) is refused by the install's
/// egress policy: the judge fails at once with the reason, nothing is sent, nothing retried.
#[tokio::test]
async fn an_endpoint_the_egress_policy_forbids_is_never_called() {
    let server = JudgeServer::start().await.unwrap();
    let mut settings = ClientSettings::new(server.url());
    settings.api_key = Some(ApiKey::new("sk-test-key"));
    settings.max_retries = 3;
    settings.egress = Some(umpire_runtime::egress::EgressPolicy::default());
    let client = OpenAiClient::new(settings).unwrap();
    let span = span("Refunds within 30 days.");
    let outcome = relevance_judge()
        .evaluate(
            &JudgeInput {
                span: &span,
                trace: &TraceContext::default(),
            },
            &client,
        )
        .await;
    let Outcome::Failed(failure) = &outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        failure.message.contains("egress refused") && failure.message.contains("loopback"),
        "{failure:?}"
    );
    assert!(server.requests().is_empty(), "nothing reached the endpoint");
}

/// A retrieval rating makes one request per document, each within the runner's limits
/// (concurrency slots, token budget), and sums what they cost into the verdict.
#[tokio::test]
async fn retrieval_rating_makes_one_limited_request_per_document_and_counts_them_all() {
    use umpire_core::judge::retrieval::{RankingMeasure, RetrievalRating};
    use umpire_core::span::RetrievedDocument;
    let server = JudgeServer::start().await.unwrap();
    server.set_latency(Duration::from_millis(20));
    server.set_verdict(|request| {
        if request.prompt().contains("30 days") {
            "relevant".into()
        } else {
            "unrelated".into()
        }
    });
    let judge = builtin_judge(BuiltinTemplate::DocumentRelevance).with_retrieval(RetrievalRating {
        k: 3,
        max_documents: 4,
        expected_ids: None,
        pass_on: RankingMeasure::PrecisionAtK,
        min: 0.5,
    });
    let runner = LlmRunner::new(
        Arc::new(judge),
        client(&server, 0),
        RunnerLimits {
            max_concurrency: 2,
            requests_per_minute: None,
            daily_tokens: Some(1_000_000),
        },
    );
    let mut span = span("");
    span.ai.documents = [
        "Shipping takes 5 days.",
        "Refunds within 30 days.",
        "Hours 9-17.",
        "Refund: 30 days, receipt needed.",
        "never rated: beyond maxDocuments",
    ]
    .iter()
    .enumerate()
    .map(|(i, text)| RetrievedDocument {
        id: Some(format!("d{i}")),
        content: Some((*text).to_owned()),
        score: None,
    })
    .collect();
    let trace = TraceContext::default();
    let outcome = runner
        .run(&JudgeInput {
            span: &span,
            trace: &trace,
        })
        .await;
    let verdict = outcome.verdict().unwrap();
    // Ranks 1–3: [0, 1, 0] → precision@3 = 1/3 (fails 0.5), MRR 1/2.
    assert!((verdict.value - 1.0 / 3.0).abs() < 1e-9, "{verdict:?}");
    assert!(!verdict.passed);
    assert!((verdict.measurements.as_ref().unwrap()["mrr"] - 0.5).abs() < 1e-9);
    assert_eq!(
        server.requests().len(),
        4,
        "maxDocuments bounds the requests"
    );
    assert!(
        server.max_concurrency() <= 2,
        "{}",
        server.max_concurrency()
    );
    // The server reports 120 + 30 tokens per request.
    let usage = verdict.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (480, 120));
    assert_eq!(runner.budget().unwrap().spent(), 600);
}
