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

use std::collections::BTreeMap;

use serde_json::Value;

use crate::span::{
    AiSpanKind, AiView, Attributes, Message, RetrievedDocument, SpanEvent, StatusCode, TokenUsage,
    ToolCall, ToolDefinition, ToolExecution, value_text,
};

/// Everything a span says about GenAI.
pub fn read_ai_view(attributes: &Attributes, events: &[SpanEvent], status: StatusCode) -> AiView {
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

    let last_user = input_messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .and_then(|m| m.content.clone());
    let input = match (&tool, last_user) {
        (Some(tool), _) => tool.arguments.clone(),
        (None, Some(user)) => Some(user),
        (None, None) => text(&["input.value", "gen_ai.prompt"]),
    };
    let output_text: Vec<String> = output_messages
        .iter()
        .filter_map(|m| m.content.clone())
        .filter(|c| !c.is_empty())
        .collect();
    let output = match &tool {
        Some(tool) => tool.result.clone(),
        None if !output_text.is_empty() => Some(output_text.join("\n")),
        None if output_messages.iter().any(|m| !m.tool_calls.is_empty()) => None,
        None => text(&["output.value", "gen_ai.completion"]),
    };

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

    AiView {
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
        input,
        output,
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
    }
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

/// Text of GenAI "parts" (`[{type: text, content}]`), a plain string, or a list of strings.
fn parts_text(value: &Value) -> String {
    match parse_json_text(value) {
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| match part {
                Value::String(text) => Some(text.clone()),
                Value::Object(_) => part_text(part),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => value.as_str().map(str::to_owned).unwrap_or_default(),
    }
}

fn part_text(part: &Value) -> Option<String> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("text");
    (kind == "text").then(|| {
        part.get("content")
            .or_else(|| part.get("text"))
            .and_then(non_empty_text)
    })?
}

/// `gen_ai.input.messages` / `gen_ai.output.messages`: `[{role, parts: [...], finish_reason}]`.
fn genai_messages(value: Option<&Value>) -> Vec<Message> {
    let Some(Value::Array(messages)) = value.and_then(parse_json_text) else {
        return Vec::new();
    };
    messages
        .iter()
        .map(|message| {
            let role = message
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or("user")
                .to_owned();
            let parts = message
                .get("parts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let texts: Vec<String> = parts.iter().filter_map(part_text).collect();
            let tool_calls = parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("tool_call"))
                .map(|p| ToolCall {
                    id: p.get("id").and_then(non_empty_text),
                    name: p.get("name").and_then(non_empty_text).unwrap_or_default(),
                    arguments: p.get("arguments").and_then(arguments_text),
                })
                .collect();
            let response = parts
                .iter()
                .find(|p| p.get("type").and_then(Value::as_str) == Some("tool_call_response"));
            let content = if texts.is_empty() {
                response
                    .and_then(|r| r.get("response").or_else(|| r.get("result")))
                    .and_then(non_empty_text)
            } else {
                Some(texts.join("\n"))
            };
            Message {
                role,
                content,
                tool_calls,
                tool_call_id: response.and_then(|r| r.get("id")).and_then(non_empty_text),
            }
        })
        .collect()
}

/// Tool-call arguments as JSON text, whether the instrumentation stored text or an object.
fn arguments_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// Attributes `<prefix><N>.<rest>` grouped by N, in index order.
fn indexed_groups<'a>(
    attributes: &'a Attributes,
    prefix: &str,
) -> BTreeMap<usize, BTreeMap<&'a str, &'a Value>> {
    let mut groups: BTreeMap<usize, BTreeMap<&str, &Value>> = BTreeMap::new();
    for (key, value) in attributes.range::<str, _>((
        std::ops::Bound::Included(prefix),
        std::ops::Bound::Unbounded,
    )) {
        let Some(rest) = key.strip_prefix(prefix) else {
            break;
        };
        let Some((index, field)) = rest.split_once('.') else {
            continue;
        };
        if let Ok(index) = index.parse::<usize>() {
            groups.entry(index).or_default().insert(field, value);
        }
    }
    groups
}

/// Messages from indexed attributes: OpenInference `llm.input_messages.N.message.role` or
/// older GenAI `gen_ai.prompt.N.role` (`field_prefix` is `message.` or empty).
fn indexed_messages(attributes: &Attributes, prefix: &str, field_prefix: &str) -> Vec<Message> {
    indexed_groups(attributes, prefix)
        .into_values()
        .map(|fields| {
            let field = |name: &str| {
                fields
                    .get(format!("{field_prefix}{name}").as_str())
                    .copied()
            };
            let calls_prefix = format!("{field_prefix}tool_calls.");
            let mut calls: BTreeMap<usize, ToolCall> = BTreeMap::new();
            let mut contents: BTreeMap<usize, String> = BTreeMap::new();
            let contents_prefix = format!("{field_prefix}contents.");
            for (key, value) in &fields {
                if let Some(rest) = key.strip_prefix(&calls_prefix)
                    && let Some((index, name)) = rest.split_once('.')
                    && let Ok(index) = index.parse::<usize>()
                {
                    let call = calls.entry(index).or_default();
                    match name.trim_start_matches("tool_call.") {
                        "function.name" | "name" => call.name = value_text(value),
                        "function.arguments" | "arguments" => {
                            call.arguments = arguments_text(value)
                        }
                        "id" => call.id = non_empty_text(value),
                        _ => {}
                    }
                } else if let Some(rest) = key.strip_prefix(&contents_prefix)
                    && let Some((index, name)) = rest.split_once('.')
                    && name == "message_content.text"
                    && let Ok(index) = index.parse::<usize>()
                {
                    contents.insert(index, value_text(value));
                }
            }
            let content = field("content").and_then(non_empty_text).or_else(|| {
                (!contents.is_empty())
                    .then(|| contents.into_values().collect::<Vec<_>>().join("\n"))
            });
            Message {
                role: field("role")
                    .map(value_text)
                    .unwrap_or_else(|| "user".into()),
                content,
                tool_calls: calls.into_values().filter(|c| !c.name.is_empty()).collect(),
                tool_call_id: field("tool_call_id").and_then(non_empty_text),
            }
        })
        .collect()
}

/// Older GenAI message events: `gen_ai.{system,user,assistant,tool}.message`.
fn event_messages(events: &[SpanEvent]) -> Vec<Message> {
    events
        .iter()
        .filter_map(|event| {
            let role = event
                .name
                .strip_prefix("gen_ai.")?
                .strip_suffix(".message")?;
            Some(Message {
                role: event
                    .attributes
                    .get("role")
                    .and_then(non_empty_text)
                    .unwrap_or_else(|| role.to_owned()),
                content: event.attributes.get("content").and_then(non_empty_text),
                tool_calls: event
                    .attributes
                    .get("tool_calls")
                    .map(tool_calls_json)
                    .unwrap_or_default(),
                tool_call_id: event.attributes.get("id").and_then(non_empty_text),
            })
        })
        .collect()
}

/// Older GenAI `gen_ai.choice` events: `message` as JSON `{role, content, tool_calls}` or
/// flat `content`.
fn choice_event_messages(events: &[SpanEvent]) -> Vec<Message> {
    events
        .iter()
        .filter(|event| event.name == "gen_ai.choice")
        .map(|event| {
            let message = event.attributes.get("message").and_then(parse_json_text);
            let field = |name: &str| {
                message
                    .as_ref()
                    .and_then(|m| m.get(name).cloned())
                    .or_else(|| event.attributes.get(name).cloned())
            };
            Message {
                role: field("role")
                    .as_ref()
                    .and_then(non_empty_text)
                    .unwrap_or_else(|| "assistant".into()),
                content: field("content").as_ref().and_then(non_empty_text),
                tool_calls: field("tool_calls")
                    .as_ref()
                    .map(tool_calls_json)
                    .unwrap_or_default(),
                tool_call_id: None,
            }
        })
        .collect()
}

/// OpenAI-style tool calls JSON: `[{id, type, function: {name, arguments}}]`.
fn tool_calls_json(value: &Value) -> Vec<ToolCall> {
    let Some(Value::Array(calls)) = parse_json_text(value) else {
        return Vec::new();
    };
    calls
        .iter()
        .filter_map(|call| {
            let function = call.get("function").unwrap_or(call);
            Some(ToolCall {
                id: call.get("id").and_then(non_empty_text),
                name: function.get("name").and_then(non_empty_text)?,
                arguments: function.get("arguments").and_then(arguments_text),
            })
        })
        .collect()
}

fn tool_definitions(attributes: &Attributes) -> Vec<ToolDefinition> {
    let from_json = |schema: &Value| -> Option<ToolDefinition> {
        let function = schema.get("function").unwrap_or(schema);
        Some(ToolDefinition {
            name: function.get("name").and_then(non_empty_text)?,
            description: function.get("description").and_then(non_empty_text),
            parameters: function.get("parameters").cloned(),
        })
    };
    if let Some(Value::Array(tools)) = attributes
        .get("gen_ai.tool.definitions")
        .and_then(parse_json_text)
    {
        return tools.iter().filter_map(from_json).collect();
    }
    let openinference: Vec<ToolDefinition> = indexed_groups(attributes, "llm.tools.")
        .into_values()
        .filter_map(|fields| {
            fields
                .get("tool.json_schema")
                .and_then(|v| parse_json_text(v))
        })
        .filter_map(|schema| from_json(&schema))
        .collect();
    if !openinference.is_empty() {
        return openinference;
    }
    indexed_groups(attributes, "llm.request.functions.")
        .into_values()
        .filter_map(|fields| {
            Some(ToolDefinition {
                name: fields.get("name").and_then(|v| non_empty_text(v))?,
                description: fields.get("description").and_then(|v| non_empty_text(v)),
                parameters: fields.get("parameters").and_then(|v| parse_json_text(v)),
            })
        })
        .collect()
}

fn documents(attributes: &Attributes) -> Vec<RetrievedDocument> {
    indexed_groups(attributes, "retrieval.documents.")
        .into_values()
        .map(|fields| RetrievedDocument {
            id: fields.get("document.id").and_then(|v| non_empty_text(v)),
            content: fields
                .get("document.content")
                .and_then(|v| non_empty_text(v)),
            score: fields.get("document.score").and_then(|v| match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
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
        );
        assert_eq!(view.kind, Some(AiSpanKind::Llm));
        assert_eq!(view.provider.as_deref(), Some("openai"));
        assert_eq!(view.system_instructions.as_deref(), Some("Be brief."));
        assert_eq!(view.input.as_deref(), Some("Weather in Oslo?"));
        assert_eq!(view.output, None);
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
        );
        assert_eq!(view.kind, Some(AiSpanKind::Llm));
        assert_eq!(view.input.as_deref(), Some("Hi there"));
        assert_eq!(view.output.as_deref(), Some("Hello!"));
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
        );
        assert_eq!(view.kind, Some(AiSpanKind::Tool));
        let tool = view.tool.unwrap();
        assert_eq!(
            (tool.name.as_str(), tool.result.as_deref()),
            ("search", Some("3 results"))
        );
        assert_eq!(view.input.as_deref(), Some("{\"q\":\"refunds\"}"));
        assert_eq!(view.error_type.as_deref(), Some("TimeoutError"));
    }

    #[test]
    fn non_ai_spans_have_an_empty_view() {
        let view = read_ai_view(
            &attrs(&[("http.method", json!("GET"))]),
            &[],
            StatusCode::Unset,
        );
        assert_eq!(view, AiView::default());
    }
}
