//! Every shared fixture (real exports from OpenInference, OpenLLMetry and the OpenTelemetry
//! GenAI instrumentation) normalises with the right kind, model, tokens, text, tool calls and
//! documents — identically from its protobuf and its JSON form.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use umpire_core::span::{AiSpanKind, Span, StatusCode, TokenUsage};
use umpire_otlp::convert::domain_spans;
use umpire_otlp::decode::{Encoding, decode_request};

fn fixture(name: &str) -> Vec<Span> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/otlp");
    let pb = std::fs::read(dir.join(format!("{name}.pb"))).unwrap();
    let json = std::fs::read(dir.join(format!("{name}.json"))).unwrap();
    let (from_pb, invalid_pb) = domain_spans(&decode_request(&pb, Encoding::Protobuf).unwrap());
    let (from_json, invalid_json) = domain_spans(&decode_request(&json, Encoding::Json).unwrap());
    assert_eq!((invalid_pb, invalid_json), (0, 0));
    assert_eq!(
        from_pb, from_json,
        "{name}: protobuf and JSON forms normalise differently"
    );
    from_pb
}

fn by_id<'a>(spans: &'a [Span], span_id: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.span_id.to_string() == span_id)
        .unwrap()
}

#[test]
fn openinference() {
    let spans = fixture("openinference-00");
    assert_eq!(spans.len(), 36);
    let count = |kind| spans.iter().filter(|s| s.ai.kind == Some(kind)).count();
    assert_eq!(
        (
            count(AiSpanKind::Retriever),
            count(AiSpanKind::Chain),
            count(AiSpanKind::Llm)
        ),
        (12, 12, 12)
    );

    let retriever = by_id(&spans, "9d8fc259f94501bd");
    assert_eq!(retriever.ai.kind, Some(AiSpanKind::Retriever));
    assert_eq!(
        retriever.ai.input_text(),
        Some("What's the weather in Paris?")
    );
    let docs: Vec<(Option<&str>, Option<f64>)> = retriever
        .ai
        .documents
        .iter()
        .map(|d| (d.id.as_deref(), d.score))
        .collect();
    assert_eq!(
        docs,
        [
            (Some("kb-0"), Some(0.9)),
            (Some("kb-1"), Some(0.8)),
            (Some("kb-2"), Some(0.7))
        ]
    );
    assert_eq!(
        retriever.ai.documents[2].content.as_deref(),
        Some("Support: support@example.com, weekdays 9-17.")
    );

    let chain = by_id(&spans, "f67ab0527ea96810");
    assert_eq!(chain.ai.kind, Some(AiSpanKind::Chain));
    assert_eq!(
        (chain.ai.input_text(), chain.ai.output_text().as_deref()),
        (Some("What's the weather in Paris?"), Some("done"))
    );
    assert_eq!(
        (chain.ai.session_id.as_deref(), chain.ai.user_id.as_deref()),
        (Some("sess-0"), Some("user-0"))
    );
    assert_eq!(chain.resource["service.name"], "support-bot-openinference");

    let tool_call = by_id(&spans, "1afe059810fc4815");
    assert_eq!(tool_call.ai.kind, Some(AiSpanKind::Llm));
    assert_eq!(tool_call.ai.provider.as_deref(), Some("openai"));
    assert_eq!(tool_call.ai.request_model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(
        tool_call.ai.response_model.as_deref(),
        Some("gpt-4o-mini-2026-01-01")
    );
    assert_eq!(
        tool_call.ai.usage,
        TokenUsage {
            input: Some(23),
            output: Some(3),
            total: Some(26)
        }
    );
    assert_eq!(
        tool_call.ai.input_text(),
        Some("What's the weather in Paris?")
    );
    assert_eq!(
        tool_call.ai.system_instructions.as_deref(),
        Some("You are the ACME support assistant. Answer only from the context.")
    );
    assert_eq!(
        tool_call.ai.output_text(),
        None,
        "a pure tool-call turn has no text output"
    );
    assert_eq!(tool_call.ai.tool_calls.len(), 1);
    assert_eq!(tool_call.ai.tool_calls[0].name, "get_weather");
    assert_eq!(
        tool_call.ai.tool_calls[0].id.as_deref(),
        Some("call_050631")
    );
    // The recorded arguments are malformed JSON: kept verbatim for the tool-call judge.
    assert_eq!(
        tool_call.ai.tool_calls[0].arguments.as_deref(),
        Some("{\"city\": \"Paris\", unit: celsius")
    );
    assert_eq!(tool_call.ai.tool_definitions[0].name, "get_weather");
    assert_eq!(
        tool_call.ai.tool_definitions[0]
            .parameters
            .as_ref()
            .unwrap()["required"][0],
        "city"
    );
    assert_eq!(tool_call.ai.finish_reasons, ["tool_calls"]);

    let answer = by_id(&spans, "db2f96c6b8f9de08");
    assert_eq!(
        answer.ai.output_text().as_deref(),
        Some("Refunds are available within 90 days, no receipt needed.")
    );
    assert_eq!(answer.ai.input_text(), Some("What is your refund policy?"));
    assert_eq!(
        answer.ai.usage,
        TokenUsage {
            input: Some(23),
            output: Some(12),
            total: Some(35)
        }
    );

    let failed = by_id(&spans, "07026c4df58600e6");
    assert_eq!(failed.status.code, StatusCode::Error);
    assert_eq!(
        failed.status.message,
        "InternalServerError: Error code: 500 - upstream overloaded"
    );
    assert_eq!(
        failed.ai.error_type.as_deref(),
        Some("openai.InternalServerError")
    );
    assert_eq!(
        (failed.ai.output_text().as_deref(), failed.ai.usage.total),
        (None, None)
    );
}

#[test]
fn openllmetry() {
    let spans = fixture("openllmetry-00");
    assert_eq!(spans.len(), 12);
    assert!(
        spans.iter().all(
            |s| s.ai.kind == Some(AiSpanKind::Llm) && s.ai.operation.as_deref() == Some("chat")
        )
    );

    let answer = by_id(&spans, "fc51ba4a1381e663");
    assert_eq!(answer.ai.provider.as_deref(), Some("openai"));
    assert_eq!(answer.ai.request_model.as_deref(), Some("gpt-4o"));
    assert_eq!(
        answer.ai.response_model.as_deref(),
        Some("gpt-4o-2026-01-01")
    );
    assert_eq!(answer.ai.response_id.as_deref(), Some("chatcmpl-482311296"));
    assert_eq!(
        answer.ai.usage,
        TokenUsage {
            input: Some(24),
            output: Some(12),
            total: Some(36)
        }
    );
    assert_eq!(answer.ai.input_text(), Some("Who do I contact for help?"));
    assert_eq!(
        answer.ai.output_text().as_deref(),
        Some("Refunds are available within 90 days, no receipt needed.")
    );
    assert_eq!(answer.ai.finish_reasons, ["stop"]);
    assert_eq!(answer.ai.input_messages.len(), 2);

    let tool_call = by_id(&spans, "3fc0e84cd24407fb");
    assert_eq!(tool_call.ai.tool_calls.len(), 1);
    assert_eq!(tool_call.ai.tool_calls[0].name, "get_weather");
    assert_eq!(
        tool_call.ai.tool_calls[0].id.as_deref(),
        Some("call_152752")
    );
    let arguments: serde_json::Value =
        serde_json::from_str(tool_call.ai.tool_calls[0].arguments.as_deref().unwrap()).unwrap();
    assert_eq!(
        arguments,
        serde_json::json!({"city": "Paris", "unit": "celsius"})
    );
    assert_eq!(tool_call.ai.tool_definitions[0].name, "get_weather");
    assert_eq!(tool_call.ai.finish_reasons, ["tool_call"]);

    let failed = by_id(&spans, "6fed68102dcce906");
    assert_eq!(failed.status.code, StatusCode::Error);
    assert_eq!(failed.ai.error_type.as_deref(), Some("InternalServerError"));
    assert_eq!(failed.ai.input_text(), Some("trigger an error please"));
}

#[test]
fn otel_genai() {
    let spans = fixture("otel-genai-00");
    assert_eq!(spans.len(), 27);
    let count = |kind| spans.iter().filter(|s| s.ai.kind == Some(kind)).count();
    assert_eq!(
        (
            count(AiSpanKind::Llm),
            count(AiSpanKind::Agent),
            count(AiSpanKind::Tool)
        ),
        (12, 12, 3)
    );

    let json_answer = by_id(&spans, "fcf745955fa3b6af");
    assert_eq!(json_answer.ai.operation.as_deref(), Some("chat"));
    assert_eq!(json_answer.ai.request_model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(
        json_answer.ai.response_model.as_deref(),
        Some("gpt-4o-mini-2026-01-01")
    );
    assert_eq!(
        json_answer.ai.usage,
        TokenUsage {
            input: Some(26),
            output: Some(7),
            total: None
        }
    );
    assert_eq!(json_answer.ai.usage.total_tokens(), Some(33));
    assert_eq!(
        json_answer.ai.input_text(),
        Some("Give me json with the answer to life")
    );
    assert_eq!(
        json_answer.ai.output_text().as_deref(),
        Some("{\"answer\": \"42\", \"confidence\": 0.9}")
    );
    assert_eq!(
        json_answer.parent_span_id.map(|p| p.to_string()).as_deref(),
        Some("f1c0bd8eabdc172a")
    );

    let agent = by_id(&spans, "f1c0bd8eabdc172a");
    assert_eq!(agent.ai.kind, Some(AiSpanKind::Agent));
    assert_eq!(agent.ai.agent_name.as_deref(), Some("support"));
    assert_eq!(agent.ai.conversation_id.as_deref(), Some("conv-0"));

    let tool = by_id(&spans, "d46494caf61d0d9f");
    assert_eq!(tool.ai.kind, Some(AiSpanKind::Tool));
    let execution = tool.ai.tool.as_ref().unwrap();
    assert_eq!(
        (execution.name.as_str(), execution.call_id.as_deref()),
        ("get_weather", Some("call_x1"))
    );

    let failed = by_id(&spans, "a717f5988f209b02");
    assert_eq!(failed.status.code, StatusCode::Error);
    assert_eq!(
        failed.ai.error_type.as_deref(),
        Some("<class 'openai.InternalServerError'>")
    );
}

#[test]
fn domain_spans_round_trip_through_the_wire_format() {
    for name in ["openinference-00", "openllmetry-00", "otel-genai-00"] {
        for span in fixture(name) {
            let json = serde_json::to_vec(&span).unwrap();
            let back: Span = serde_json::from_slice(&json).unwrap();
            assert_eq!(back, span);
        }
    }
}
