//! Reading a span's attributes and events as GenAI data, whichever convention the
//! instrumentation followed:
//!
//! - OpenTelemetry GenAI (current): `gen_ai.operation.name`, `gen_ai.input.messages` /
//!   `gen_ai.output.messages` JSON with typed parts, `gen_ai.tool.definitions`, usage;
//! - OpenTelemetry GenAI (older) and OpenLLMetry: `gen_ai.prompt.N.*` /
//!   `gen_ai.completion.N.*` indexed attributes, `gen_ai.system`, message span events
//!   (`gen_ai.user.message`, `gen_ai.choice`, …), `llm.request.functions.N.*`;
//! - OpenInference: `openinference.span.kind`, `input.value` / `output.value`,
//!   `llm.input_messages.N.message.*`, `llm.output_messages.N.message.tool_calls.M.*`,
//!   `llm.token_count.*`, `llm.tools.N.tool.json_schema`, `retrieval.documents.N.document.*`,
//!   `tool.*`, `session.id`, `user.id`.
//!
//! The message readers are in [`messages`], tool definitions and retrieved documents in
//! [`catalog`].

mod catalog;
mod genai_json;
mod messages;
mod streaming;
#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::span::{
    AiSpanKind, AiView, Attributes, SpanEvent, StatusCode, TokenUsage, ToolCall, ToolExecution,
    value_text,
};

use self::catalog::{documents, tool_definitions};
use self::genai_json::{genai_messages, parts_text};
use self::messages::*;
pub use self::streaming::time_to_first_token_ms;

pub fn read_ai_view(
    attributes: &Attributes,
    events: &[SpanEvent],
    status: StatusCode,
    start_unix_nano: u64,
) -> AiView {
    let get = |key: &str| attributes.get(key);
    let text = |keys: &[&str]| {
        keys.iter()
            .find_map(|key| get(key).and_then(non_empty_text))
    };

    let operation = text(&["gen_ai.operation.name"]);
    let kind = text(&["openinference.span.kind"])
        .and_then(|k| AiSpanKind::from_name(&k))
        .or_else(|| {
            operation
                .as_deref()
                .and_then(AiSpanKind::from_genai_operation)
        })
        .or_else(|| text(&["traceloop.span.kind"]).and_then(|k| traceloop_kind(&k)))
        .or_else(|| {
            let llm_request =
                text(&["llm.request.type"]).is_some_and(|t| t == "chat" || t == "completion");
            let genai = [
                "gen_ai.system",
                "gen_ai.provider.name",
                "gen_ai.request.model",
            ]
            .iter()
            .any(|key| attributes.contains_key(*key));
            (llm_request || genai).then_some(AiSpanKind::Llm)
        });

    let mut input_messages = genai_messages(get("gen_ai.input.messages"));
    if input_messages.is_empty() {
        input_messages = indexed_messages(attributes, "llm.input_messages.", "message.");
    }
    if input_messages.is_empty() {
        input_messages = indexed_messages(attributes, "gen_ai.prompt.", "");
    }
    if input_messages.is_empty() {
        input_messages = event_messages(events);
    }
    let mut output_messages = genai_messages(get("gen_ai.output.messages"));
    if output_messages.is_empty() {
        output_messages = indexed_messages(attributes, "llm.output_messages.", "message.");
    }
    if output_messages.is_empty() {
        output_messages = indexed_messages(attributes, "gen_ai.completion.", "");
    }
    if output_messages.is_empty() {
        output_messages = choice_event_messages(events);
    }

    let system_instructions = get("gen_ai.system_instructions")
        .map(parts_text)
        .filter(|t| !t.is_empty())
        .or_else(|| {
            input_messages
                .iter()
                .filter(|m| m.role == "system")
                .find_map(|m| m.content.clone())
        });

    let is_tool = kind == Some(AiSpanKind::Tool);
    let tool = is_tool.then(|| ToolExecution {
        name: text(&["gen_ai.tool.name", "tool.name"]).unwrap_or_default(),
        call_id: text(&["gen_ai.tool.call.id", "tool_call.id"]),
        arguments: text(&[
            "gen_ai.tool.call.arguments",
            "tool.parameters",
            "input.value",
        ]),
        result: text(&["gen_ai.tool.call.result", "output.value"]),
    });

    let tool_calls: Vec<ToolCall> = output_messages
        .iter()
        .flat_map(|m| m.tool_calls.clone())
        .collect();

    let mut finish_reasons = string_list(get("gen_ai.response.finish_reasons"));
    if finish_reasons.is_empty() {
        finish_reasons = text(&["llm.finish_reason"]).into_iter().collect();
    }
    if finish_reasons.is_empty() {
        finish_reasons = indexed_groups(attributes, "gen_ai.completion.")
            .values()
            .filter_map(|fields| fields.get("finish_reason").and_then(|v| non_empty_text(v)))
            .collect();
    }

    let error_type = text(&["error.type"]).or_else(|| {
        (status == StatusCode::Error)
            .then(|| {
                events
                    .iter()
                    .filter(|e| e.name == "exception")
                    .find_map(|e| e.attributes.get("exception.type").and_then(non_empty_text))
            })
            .flatten()
    });

    let mut view = AiView {
        kind,
        operation,
        provider: text(&[
            "gen_ai.provider.name",
            "gen_ai.system",
            "llm.provider",
            "llm.system",
        ]),
        request_model: text(&["gen_ai.request.model"]).or_else(|| {
            get("llm.invocation_parameters")
                .and_then(parse_json_text)
                .and_then(|p| p.get("model").and_then(non_empty_text))
        }),
        response_model: text(&["gen_ai.response.model", "llm.model_name"]),
        response_id: text(&["gen_ai.response.id"]),
        usage: TokenUsage {
            input: number(
                attributes,
                &[
                    "gen_ai.usage.input_tokens",
                    "gen_ai.usage.prompt_tokens",
                    "llm.token_count.prompt",
                    "llm.usage.prompt_tokens",
                ],
            ),
            output: number(
                attributes,
                &[
                    "gen_ai.usage.output_tokens",
                    "gen_ai.usage.completion_tokens",
                    "llm.token_count.completion",
                    "llm.usage.completion_tokens",
                ],
            ),
            total: number(
                attributes,
                &[
                    "gen_ai.usage.total_tokens",
                    "llm.token_count.total",
                    "llm.usage.total_tokens",
                ],
            ),
        },
        system_instructions,
        // Set below, where the view knows what it already says.
        explicit_input: None,
        explicit_output: None,
        tool_calls,
        tool_definitions: tool_definitions(attributes),
        documents: documents(attributes),
        tool,
        finish_reasons,
        error_type,
        session_id: text(&["session.id"]),
        user_id: text(&["user.id", "enduser.id"]),
        conversation_id: text(&["gen_ai.conversation.id"]),
        agent_name: text(&["gen_ai.agent.name", "agent.name"]),
        input_messages,
        output_messages,
        time_to_first_token_ms: time_to_first_token_ms(attributes, events, start_unix_nano),
    };
    // The request and response texts the rest of the view does not hold (readers derive the
    // others: `AiView::input_text`/`output_text`): without a user message, replies, tool
    // calls or a tool, the instrumentation's own `input.value` / `output.value`.
    if view.tool.is_none() && view.input_text().is_none() {
        view.explicit_input = text(&["input.value", "gen_ai.prompt"]);
    }
    if view.tool.is_none() && view.tool_calls.is_empty() && view.output_text().is_none() {
        view.explicit_output = text(&["output.value", "gen_ai.completion"]);
    }
    view
}

fn traceloop_kind(kind: &str) -> Option<AiSpanKind> {
    match kind {
        "workflow" | "task" => Some(AiSpanKind::Chain),
        "agent" => Some(AiSpanKind::Agent),
        "tool" => Some(AiSpanKind::Tool),
        _ => None,
    }
}

fn non_empty_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) if text.is_empty() => None,
        other => Some(value_text(other)),
    }
}

/// A JSON document stored as a string attribute (or already structured).
fn parse_json_text(value: &Value) -> Option<Value> {
    match value {
        Value::String(text) => serde_json::from_str(text).ok(),
        Value::Array(_) | Value::Object(_) => Some(value.clone()),
        _ => None,
    }
}

fn number(attributes: &Attributes, keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|key| match attributes.get(*key)? {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    })
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(non_empty_text).collect(),
        Some(other) => parse_json_text(other)
            .and_then(|v| {
                v.as_array()
                    .map(|items| items.iter().filter_map(non_empty_text).collect())
            })
            .or_else(|| non_empty_text(other).map(|t| vec![t]))
            .unwrap_or_default(),
        None => Vec::new(),
    }
}
