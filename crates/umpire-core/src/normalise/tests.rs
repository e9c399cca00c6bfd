//! Each convention, read from attributes and events as instrumentations write them.

use super::*;
use crate::span::Message;
use serde_json::json;

fn attrs(pairs: &[(&str, Value)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[test]
fn reads_older_genai_indexed_attributes() {
    let view = read_ai_view(
        &attrs(&[
            ("gen_ai.system", json!("openai")),
            ("gen_ai.request.model", json!("gpt-4o")),
            ("gen_ai.prompt.0.role", json!("system")),
            ("gen_ai.prompt.0.content", json!("Be brief.")),
            ("gen_ai.prompt.1.role", json!("user")),
            ("gen_ai.prompt.1.content", json!("Weather in Oslo?")),
            ("gen_ai.completion.0.role", json!("assistant")),
            ("gen_ai.completion.0.finish_reason", json!("tool_calls")),
            (
                "gen_ai.completion.0.tool_calls.0.name",
                json!("get_weather"),
            ),
            (
                "gen_ai.completion.0.tool_calls.0.arguments",
                json!("{\"city\":\"Oslo\"}"),
            ),
            ("gen_ai.completion.0.tool_calls.0.id", json!("call_1")),
            ("gen_ai.usage.prompt_tokens", json!(12)),
            ("gen_ai.usage.completion_tokens", json!("5")),
            ("llm.request.functions.0.name", json!("get_weather")),
            (
                "llm.request.functions.0.parameters",
                json!("{\"type\":\"object\"}"),
            ),
        ]),
        &[],
        StatusCode::Unset,
        0,
    );
    assert_eq!(view.kind, Some(AiSpanKind::Llm));
    assert_eq!(view.provider.as_deref(), Some("openai"));
    assert_eq!(view.system_instructions.as_deref(), Some("Be brief."));
    assert_eq!(view.input_text(), Some("Weather in Oslo?"));
    assert_eq!(view.output_text(), None);
    assert_eq!(
        view.tool_calls,
        [ToolCall {
            id: Some("call_1".into()),
            name: "get_weather".into(),
            arguments: Some("{\"city\":\"Oslo\"}".into())
        }]
    );
    assert_eq!(view.finish_reasons, ["tool_calls"]);
    assert_eq!(
        view.usage,
        TokenUsage {
            input: Some(12),
            output: Some(5),
            total: None
        }
    );
    assert_eq!(view.tool_definitions[0].name, "get_weather");
    assert_eq!(
        view.tool_definitions[0].parameters,
        Some(json!({"type": "object"}))
    );
}

#[test]
fn reads_older_genai_message_events() {
    let event = |name: &str, attributes: Attributes| SpanEvent {
        name: name.into(),
        time_unix_nano: 0,
        attributes,
    };
    let events = [
        event(
            "gen_ai.system.message",
            attrs(&[("content", json!("Be brief."))]),
        ),
        event(
            "gen_ai.user.message",
            attrs(&[("content", json!("Hi there"))]),
        ),
        event(
            "gen_ai.choice",
            attrs(&[
                ("index", json!(0)),
                (
                    "message",
                    json!("{\"role\":\"assistant\",\"content\":\"Hello!\"}"),
                ),
                ("finish_reason", json!("stop")),
            ]),
        ),
    ];
    let view = read_ai_view(
        &attrs(&[("gen_ai.operation.name", json!("chat"))]),
        &events,
        StatusCode::Ok,
        0,
    );
    assert_eq!(view.kind, Some(AiSpanKind::Llm));
    assert_eq!(view.input_text(), Some("Hi there"));
    assert_eq!(view.output_text().as_deref(), Some("Hello!"));
    assert_eq!(view.system_instructions.as_deref(), Some("Be brief."));
    assert_eq!(view.input_messages.len(), 2);
}

#[test]
fn reads_tool_spans_and_errors() {
    let view = read_ai_view(
        &attrs(&[
            ("openinference.span.kind", json!("TOOL")),
            ("tool.name", json!("search")),
            ("input.value", json!("{\"q\":\"refunds\"}")),
            ("output.value", json!("3 results")),
        ]),
        &[SpanEvent {
            name: "exception".into(),
            time_unix_nano: 0,
            attributes: attrs(&[("exception.type", json!("TimeoutError"))]),
        }],
        StatusCode::Error,
        0,
    );
    assert_eq!(view.kind, Some(AiSpanKind::Tool));
    let tool = view.tool.clone().unwrap_or_default();
    assert_eq!(
        (tool.name.as_str(), tool.result.as_deref()),
        ("search", Some("3 results"))
    );
    assert_eq!(view.input_text(), Some("{\"q\":\"refunds\"}"));
    assert_eq!(view.error_type.as_deref(), Some("TimeoutError"));
}

#[test]
fn non_ai_spans_have_an_empty_view() {
    let view = read_ai_view(
        &attrs(&[("http.method", json!("GET"))]),
        &[],
        StatusCode::Unset,
        0,
    );
    assert_eq!(view, AiView::default());
}

/// `gen_ai.*.messages` as instrumentations send it, odd shapes included: what each message
/// and part yields does not depend on how the JSON is parsed.
#[test]
fn genai_json_messages_of_every_shape() {
    let messages = json!([
        "not an object",
        {"role": 7, "parts": [
            {"type": "text", "content": "a"},
            "a loose string",
            {"content": 42},
            {"type": "text", "content": ""},
            {"text": "b"},
            {"type": "text", "content": null, "text": "not read: content is present"}
        ]},
        {"role": "assistant", "finish_reason": "tool_calls", "parts": [
            {"type": "tool_call", "id": "c1", "name": "f", "arguments": {"x": 1, "y": [true, null]}},
            {"type": "tool_call", "name": "g", "arguments": "{\"y\": 2}"},
            {"type": "tool_call", "id": "", "name": 3, "arguments": null},
            {"type": "reasoning", "content": "not text"}
        ]},
        {"role": "tool", "parts": [
            {"type": "tool_call_response", "id": "c1", "response": null, "result": "not read"}
        ]},
        {"role": "tool", "parts": [
            {"type": "tool_call_response", "id": "c2", "result": {"ok": true}}
        ]},
        {"role": "user", "parts": [{"type": "text", "content": "esc \"q\" \u{e9} \\ \n"}], "x": {"deep": [1, 2]}},
        {"role": "user", "parts": "not a list"},
        {"role": "user", "parts": [{"type": "text", "content": 1.5}, {"type": "text", "content": {"k": "v"}}]}
    ]);
    let expected = vec![
        Message {
            role: "user".into(),
            ..Message::default()
        },
        Message {
            role: "user".into(),
            content: Some("a\n42\nb".into()),
            ..Message::default()
        },
        Message {
            role: "assistant".into(),
            content: None,
            tool_calls: vec![
                ToolCall {
                    id: Some("c1".into()),
                    name: "f".into(),
                    arguments: Some("{\"x\":1,\"y\":[true,null]}".into()),
                },
                ToolCall {
                    id: None,
                    name: "g".into(),
                    arguments: Some("{\"y\": 2}".into()),
                },
                ToolCall {
                    id: None,
                    name: "3".into(),
                    arguments: None,
                },
            ],
            tool_call_id: None,
        },
        Message {
            role: "tool".into(),
            tool_call_id: Some("c1".into()),
            ..Message::default()
        },
        Message {
            role: "tool".into(),
            content: Some("{\"ok\":true}".into()),
            tool_call_id: Some("c2".into()),
            ..Message::default()
        },
        Message {
            role: "user".into(),
            content: Some("esc \"q\" \u{e9} \\ \n".into()),
            ..Message::default()
        },
        Message {
            role: "user".into(),
            ..Message::default()
        },
        Message {
            role: "user".into(),
            content: Some("1.5\n{\"k\":\"v\"}".into()),
            ..Message::default()
        },
    ];
    // As instrumentations send it (a JSON string) and as an already structured value.
    assert_eq!(genai_messages(Some(&json!(messages.to_string()))), expected);
    assert_eq!(genai_messages(Some(&messages)), expected);
    // Not a list, or not JSON: no messages.
    assert_eq!(genai_messages(Some(&json!("{\"role\": \"user\"}"))), []);
    assert_eq!(genai_messages(Some(&json!("[{\"role\": \"user\""))), []);
    assert_eq!(genai_messages(Some(&json!(17))), []);
    assert_eq!(genai_messages(None), []);
    // Nesting past serde_json's depth limit (an attacker's content) is no messages, not a
    // stack overflow.
    let deep = format!(
        "[{{\"role\": \"user\", \"parts\": [{{\"content\": {}1{}}}]}}]",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(genai_messages(Some(&json!(deep))), []);
    // System instructions: parts' texts, plain strings in the list included.
    assert_eq!(
        parts_text(&json!(
            "[{\"type\": \"text\", \"content\": \"Be brief.\"}, \"And kind.\", {\"type\": \"image\"}]"
        )),
        "Be brief.\nAnd kind."
    );
    assert_eq!(parts_text(&json!("plain")), "plain");
}
