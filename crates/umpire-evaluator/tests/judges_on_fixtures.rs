//! The code judges on the recorded fixtures, with hand-checked expectations.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use umpire_core::field::SpanField;
use umpire_core::json_schema::CompiledJsonSchema;
use umpire_core::judge::code::*;
use umpire_core::judge::{
    CodeJudge, JudgeErrorKind, JudgeInput, Outcome, SkipReason, TraceContext,
};
use umpire_core::span::Span;
use umpire_otlp::convert::domain_spans;
use umpire_otlp::decode::{Encoding, decode_request};

fn fixture(name: &str) -> Vec<Span> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/otlp")
        .join(format!("{name}.pb"));
    domain_spans(&decode_request(&std::fs::read(path).unwrap(), Encoding::Protobuf).unwrap()).0
}

fn span<'a>(spans: &'a [Span], id: &str) -> &'a Span {
    spans.iter().find(|s| s.span_id.to_string() == id).unwrap()
}

fn run(judge: &dyn CodeJudge, span: &Span) -> Outcome {
    judge.evaluate(&JudgeInput {
        span,
        trace: &TraceContext::from_spans([span]),
    })
}

fn passed(outcome: &Outcome) -> Option<bool> {
    outcome.verdict().map(|v| v.passed)
}

fn error_kind(outcome: &Outcome) -> Option<JudgeErrorKind> {
    match outcome {
        Outcome::Failed(f) => Some(f.kind),
        _ => None,
    }
}

fn schema(value: serde_json::Value) -> Arc<CompiledJsonSchemaDebug> {
    Arc::new(CompiledJsonSchemaDebug(
        CompiledJsonSchema::compile(&value).unwrap(),
    ))
}

#[test]
fn json_and_json_schema() {
    let spans = fixture("otel-genai-00");
    let json_answer = span(&spans, "fcf745955fa3b6af"); // {"answer": "42", "confidence": 0.9}
    let plain = JsonJudge {
        field: SpanField::Output,
        schema: None,
    };
    assert_eq!(passed(&run(&plain, json_answer)), Some(true));
    let typed = JsonJudge {
        field: SpanField::Output,
        schema: Some(schema(
            json!({"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}, "confidence": {"type": "number", "maximum": 1}}}),
        )),
    };
    assert_eq!(passed(&run(&typed, json_answer)), Some(true));
    let strict = JsonJudge {
        field: SpanField::Output,
        schema: Some(schema(json!({"type": "object", "required": ["sources"]}))),
    };
    let outcome = run(&strict, json_answer);
    assert_eq!(passed(&outcome), Some(false));
    assert!(
        outcome
            .verdict()
            .unwrap()
            .explanation
            .as_ref()
            .unwrap()
            .contains("sources")
    );

    let prose = span(&spans, "928da2b498cb0576"); // "The refund window is 30 days from delivery."
    assert_eq!(passed(&run(&plain, prose)), Some(false));
    let almost = span(&spans, "3e8ce7b405eb9ed2"); // "Sure! Here is JSON: {answer: 42"
    assert_eq!(passed(&run(&plain, almost)), Some(false));
    let failed_call = span(&spans, "a717f5988f209b02");
    assert_eq!(
        error_kind(&run(&plain, failed_call)),
        Some(JudgeErrorKind::MissingField),
        "no output is a judge error, not a score"
    );
}

#[test]
fn tool_call_validity() {
    let judge = ToolCallJudge {
        fallback_tools: HashMap::new(),
        allow_undeclared: false,
    };
    let openinference = fixture("openinference-00");
    // The recorded arguments are `{"city": "Paris", unit: celsius` — not JSON.
    let broken = run(&judge, span(&openinference, "1afe059810fc4815"));
    assert_eq!(passed(&broken), Some(false));
    assert!(
        broken
            .verdict()
            .unwrap()
            .explanation
            .as_ref()
            .unwrap()
            .contains("not valid JSON")
    );
    let openllmetry = fixture("openllmetry-00");
    let valid = run(&judge, span(&openllmetry, "3fc0e84cd24407fb")); // {"city":"Paris","unit":"celsius"}
    assert_eq!(passed(&valid), Some(true), "{valid:?}");
    let no_calls = run(&judge, span(&openllmetry, "fc51ba4a1381e663"));
    assert_eq!(no_calls, Outcome::skipped(SkipReason::NotApplicable));

    // A declared schema is enforced: "unit" must be celsius or fahrenheit.
    let mut wrong_unit = span(&openllmetry, "3fc0e84cd24407fb").clone();
    wrong_unit.ai.tool_calls[0].arguments = Some(r#"{"city": "Paris", "unit": "kelvin"}"#.into());
    assert_eq!(passed(&run(&judge, &wrong_unit)), Some(false));
    let mut undeclared = wrong_unit.clone();
    undeclared.ai.tool_definitions.clear();
    assert_eq!(
        passed(&run(&judge, &undeclared)),
        Some(false),
        "undeclared tools fail unless allowed"
    );
    let lenient = ToolCallJudge {
        fallback_tools: HashMap::new(),
        allow_undeclared: true,
    };
    assert_eq!(passed(&run(&lenient, &undeclared)), Some(true));
    let fallback = ToolCallJudge {
        fallback_tools: [(
            "get_weather".to_owned(),
            schema(json!({"type": "object", "required": ["city", "date"]})),
        )]
        .into_iter()
        .collect(),
        allow_undeclared: false,
    };
    assert_eq!(
        passed(&run(&fallback, &undeclared)),
        Some(false),
        "the fallback schema requires a date"
    );
}

#[test]
fn tokens_cost_latency_errors_length() {
    let spans = fixture("openinference-00");
    let answer = span(&spans, "db2f96c6b8f9de08"); // gpt-4o-2026-01-01, 23 in / 12 out
    let failed = span(&spans, "07026c4df58600e6");

    let tokens = TokensJudge {
        max_total: Some(30),
        ..TokensJudge::default()
    };
    let outcome = run(&tokens, answer);
    assert_eq!(passed(&outcome), Some(false));
    assert_eq!(outcome.verdict().unwrap().measurement, Some(35.0));
    let window = TokensJudge {
        context_window: Some(100),
        max_context_use: Some(0.5),
        ..TokensJudge::default()
    };
    assert_eq!(
        run(&window, answer).verdict().unwrap().measurement,
        Some(0.23)
    );
    assert_eq!(
        error_kind(&run(&tokens, failed)),
        Some(JudgeErrorKind::MissingField)
    );

    let prices = vec![
        ModelPrice {
            model: "gpt-4o*".into(),
            input_per_million: 2.5,
            output_per_million: 10.0,
        },
        ModelPrice {
            model: "gpt-4o-mini*".into(),
            input_per_million: 0.15,
            output_per_million: 0.6,
        },
    ];
    let cost = CostJudge {
        max_usd: 0.0001,
        prices: prices.clone(),
    };
    let outcome = run(&cost, answer);
    // 23 × 2.5e-6 + 12 × 10e-6 = 0.0001775 dollars
    assert!((outcome.verdict().unwrap().measurement.unwrap() - 0.0001775).abs() < 1e-12);
    assert_eq!(passed(&outcome), Some(false));
    let mini = span(&spans, "1afe059810fc4815"); // gpt-4o-mini-2026-01-01: the longer prefix wins
    assert!(
        (run(&cost, mini).verdict().unwrap().measurement.unwrap()
            - (23.0 * 0.15e-6 + 3.0 * 0.6e-6))
            .abs()
            < 1e-12
    );
    let unknown = CostJudge {
        max_usd: 1.0,
        prices: vec![ModelPrice {
            model: "claude-*".into(),
            input_per_million: 3.0,
            output_per_million: 15.0,
        }],
    };
    assert_eq!(
        error_kind(&run(&unknown, answer)),
        Some(JudgeErrorKind::UnknownModel),
        "an unknown model is an error, not $0"
    );

    let latency = LatencyJudge {
        max_ms: 1.0,
        to_first_token: false,
    };
    let measured = run(&latency, answer)
        .verdict()
        .unwrap()
        .measurement
        .unwrap();
    assert!((measured - answer.duration_ms()).abs() < 1e-9);

    assert_eq!(
        passed(&run(&ErrorStatusJudge::default(), answer)),
        Some(true)
    );
    let error = run(&ErrorStatusJudge::default(), failed);
    assert_eq!(passed(&error), Some(false));
    assert!(
        error
            .verdict()
            .unwrap()
            .explanation
            .as_ref()
            .unwrap()
            .starts_with("openai.InternalServerError")
    );
    let ignoring = ErrorStatusJudge {
        ignore_error_types: vec!["openai.InternalServerError".into()],
    };
    assert_eq!(passed(&run(&ignoring, failed)), Some(true));

    let length = LengthJudge {
        field: SpanField::Output,
        min_chars: None,
        max_chars: Some(40),
        min_words: Some(3),
        max_words: None,
    };
    let outcome = run(&length, answer); // "Refunds are available within 90 days, no receipt needed." = 56 chars
    assert_eq!(passed(&outcome), Some(false));
    assert_eq!(outcome.verdict().unwrap().measurement, Some(56.0));
}

#[test]
fn regex_and_phrases() {
    let spans = fixture("openinference-00");
    let answer = span(&spans, "db2f96c6b8f9de08");
    let days = RegexJudge {
        field: SpanField::Output,
        pattern: regex::Regex::new(r"\b\d+ days\b").unwrap(),
        must_match: true,
    };
    assert_eq!(passed(&run(&days, answer)), Some(true));
    let no_days = RegexJudge {
        must_match: false,
        ..days
    };
    assert_eq!(passed(&run(&no_days, answer)), Some(false));
    let refusal = PhraseJudge {
        field: SpanField::Output,
        phrases: vec!["I'm sorry".into()],
        case_sensitive: false,
        mode: PhraseMode::NonePresent,
    };
    assert_eq!(passed(&run(&refusal, answer)), Some(true));
    let mentions = PhraseJudge {
        field: SpanField::Output,
        phrases: vec!["REFUNDS".into(), "receipt".into()],
        case_sensitive: false,
        mode: PhraseMode::AllPresent,
    };
    assert_eq!(passed(&run(&mentions, answer)), Some(true));
    let exact = PhraseJudge {
        case_sensitive: true,
        ..mentions
    };
    assert_eq!(passed(&run(&exact, answer)), Some(false));
    let system = PhraseJudge {
        field: SpanField::System,
        phrases: vec!["Answer only from the context".into()],
        case_sensitive: true,
        mode: PhraseMode::AnyPresent,
    };
    assert_eq!(passed(&run(&system, answer)), Some(true));
}

#[test]
fn agent_loop_counts_the_whole_trace() {
    let spans = fixture("otel-genai-00");
    let mut traces: HashMap<String, Vec<&Span>> = HashMap::new();
    for span in &spans {
        traces
            .entry(span.trace_id.to_string())
            .or_default()
            .push(span);
    }
    let judge = AgentLoopJudge {
        max_llm_calls: Some(1),
        max_tool_calls: Some(5),
        max_repeated_tool_calls: None,
    };
    let mut judged = 0;
    for spans in traces.values() {
        let context = TraceContext::from_spans(spans.iter().copied());
        for span in spans {
            let outcome = judge.evaluate(&JudgeInput {
                span,
                trace: &context,
            });
            if span.parent_span_id.is_some() {
                assert_eq!(outcome, Outcome::skipped(SkipReason::NotApplicable));
                continue;
            }
            judged += 1;
            let expected_pass = context.llm_calls <= 1 && context.tool_calls() <= 5;
            assert_eq!(passed(&outcome), Some(expected_pass), "{:?}", outcome);
        }
    }
    assert!(judged >= 12, "every invoke_agent root is judged ({judged})");
    // Hand-checked: trace 2fbd77943c96ad89a2899a57da39c73a is one agent turn with one chat call.
    let trace = &traces["2fbd77943c96ad89a2899a57da39c73a"];
    let context = TraceContext::from_spans(trace.iter().copied());
    assert_eq!(
        (context.spans, context.llm_calls, context.tool_calls()),
        (2, 1, 0)
    );
}

/// A policy that selects agent and tool spans beside LLM spans (the shipped agent-health
/// example) must not count every tool span as a cost-judge error: there is no model call
/// to price. `umpire local --demo` showed one error per tool and agent span.
#[test]
fn cost_does_not_apply_to_spans_that_call_no_model() {
    let spans = fixture("openinference-00");
    let judge = CostJudge {
        max_usd: 1.0,
        prices: vec![ModelPrice {
            model: "gpt-4o*".into(),
            input_per_million: 2.5,
            output_per_million: 10.0,
        }],
    };
    let without_model: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            s.ai.kind != Some(umpire_core::span::AiSpanKind::Llm)
                && s.ai.request_model.is_none()
                && s.ai.response_model.is_none()
        })
        .collect();
    assert!(
        !without_model.is_empty(),
        "the fixture has chain/tool spans"
    );
    for span in without_model {
        assert!(
            matches!(
                run(&judge, span),
                Outcome::Skipped {
                    reason: umpire_core::judge::SkipReason::NotApplicable
                }
            ),
            "{:?}: {:?}",
            span.name,
            run(&judge, span)
        );
    }
}

/// The recordings hold personal data in two places, checked by hand: the support address in
/// the third document every OpenInference retriever span returns ("Support:
/// support@example.com, weekdays 9-17."), and three OpenLLMetry replies ("Contact
/// support@example.com or call +1 415 555 0100 for help.", in each span's output and its
/// output messages; found with a script over the JSON recordings). No other prompt, reply, message, tool argument or
/// system instruction of the three recordings has an address, phone number, card, IBAN,
/// SSN or key.
#[test]
fn pii_finds_the_support_contacts_and_nothing_else() {
    use umpire_core::judge::pii::{PiiJudge, PiiKind};
    let conversation = PiiJudge {
        fields: vec![
            SpanField::Input,
            SpanField::Output,
            SpanField::Messages,
            SpanField::ToolArguments,
            SpanField::System,
        ],
        kinds: PiiKind::ALL.to_vec(),
        expect_none: true,
    };
    let documents = PiiJudge {
        fields: vec![SpanField::Context],
        kinds: PiiKind::ALL.to_vec(),
        expect_none: true,
    };
    let (mut judged, mut flagged) = (0, 0);
    for name in ["openinference-00", "openllmetry-00", "otel-genai-00"] {
        for span in fixture(name) {
            let outcome = run(&conversation, &span);
            let replies = ["5e0c780c3fb2ef8f", "abb1911f437d9a7b", "8b0044495026a362"];
            if replies.contains(&span.span_id.to_string().as_str()) {
                flagged += 1;
                let verdict = outcome.verdict().unwrap();
                assert!(!verdict.passed);
                assert_eq!(
                    verdict.explanation.as_deref(),
                    Some("found email ×1, phone ×1 in input, output, messages, system"),
                    "counted once though in output and messages"
                );
                assert_eq!(verdict.measurement, Some(2.0));
            } else if let Some(passed) = passed(&outcome) {
                judged += 1;
                assert!(passed, "{name} {}: {outcome:?}", span.span_id);
            }
            let in_documents = run(&documents, &span);
            let expected_hit = name == "openinference-00" && !span.ai.documents.is_empty();
            if span.ai.documents.is_empty() {
                assert_eq!(
                    error_kind(&in_documents),
                    Some(JudgeErrorKind::MissingField)
                );
            } else {
                let verdict = in_documents.verdict().unwrap();
                assert_eq!(!verdict.passed, expected_hit, "{name} {}", span.span_id);
                if expected_hit {
                    assert_eq!(
                        verdict.explanation.as_deref(),
                        Some("found email ×1 in context")
                    );
                }
            }
        }
    }
    assert_eq!(flagged, 3);
    assert!(judged >= 30, "only {judged} spans had a conversation field");
}

/// Checked by hand: no request, retrieved document or message of the three recordings
/// tries to instruct the model (they are support questions, a returns policy, a weather
/// tool). So the catalogue must flag none of their spans — a false alarm on ordinary
/// traffic is what makes such a judge useless.
#[test]
fn prompt_injection_flags_nothing_in_ordinary_traffic() {
    use umpire_core::judge::injection::{InjectionCategory, PromptInjectionJudge};
    let judge = PromptInjectionJudge {
        fields: vec![
            SpanField::Input,
            SpanField::Context,
            SpanField::Messages,
            SpanField::Output,
        ],
        categories: InjectionCategory::ALL.to_vec(),
    };
    let mut judged = 0;
    for name in ["openinference-00", "openllmetry-00", "otel-genai-00"] {
        for span in fixture(name) {
            let outcome = run(&judge, &span);
            if let Some(passed) = passed(&outcome) {
                judged += 1;
                assert!(passed, "{name} {}: {outcome:?}", span.span_id);
            }
        }
    }
    assert!(judged >= 30, "only {judged} spans had a field to read");
}
