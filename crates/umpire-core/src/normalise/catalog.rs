//! Tool definitions offered to a model and documents a retriever returned.

use serde_json::Value;

use super::*;
use crate::span::{Attributes, RetrievedDocument, ToolDefinition};

pub(super) fn tool_definitions(attributes: &Attributes) -> Vec<ToolDefinition> {
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

pub(super) fn documents(attributes: &Attributes) -> Vec<RetrievedDocument> {
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
