//! Messages and tool calls, from each convention's shape (GenAI JSON messages are read in
//! [`super::genai_json`]): indexed `gen_ai.prompt.N.*` / `llm.input_messages.N.*` attributes, and message
//! span events.

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::span::{Attributes, Message, SpanEvent, ToolCall, value_text};

/// Tool-call arguments as JSON text, whether the instrumentation stored text or an object.
pub(super) fn arguments_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// Attributes `<prefix><N>.<rest>` grouped by N, in index order.
pub(super) fn indexed_groups<'a>(
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
pub(super) fn indexed_messages(
    attributes: &Attributes,
    prefix: &str,
    field_prefix: &str,
) -> Vec<Message> {
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
pub(super) fn event_messages(events: &[SpanEvent]) -> Vec<Message> {
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
pub(super) fn choice_event_messages(events: &[SpanEvent]) -> Vec<Message> {
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
pub(super) fn tool_calls_json(value: &Value) -> Vec<ToolCall> {
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
