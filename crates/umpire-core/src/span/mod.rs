//! The normalised span: one model for OpenTelemetry GenAI, OpenInference and OpenLLMetry
//! instrumentation, as ingest publishes it and evaluators read it.

mod attribute_codec;
mod batch;
mod reading;
mod view_text;
mod wire;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{SpanId, TraceId};

pub use self::batch::{MessageSpans, spans_of_message};
pub(crate) use self::reading::Key;
pub use self::reading::SpanReading;
pub use self::wire::WireError;

/// Attribute values keep their JSON shape: string, number, bool, array, object.
pub type Attributes = BTreeMap<String, Value>;

/// The version of the span wire format ([`Span`] as a [`crate::stream_codec`] record)
/// published to JetStream.
pub const SPAN_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<SpanId>,
    pub name: String,
    #[serde(default)]
    pub kind: OtelSpanKind,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    #[serde(default)]
    pub status: Status,
    /// All of them, except where a [`SpanReading`] skipped what the reader does not need.
    #[serde(
        default,
        serialize_with = "attribute_codec::write",
        deserialize_with = "reading::attributes",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub attributes: Attributes,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<SpanEvent>,
    /// All of them, except where a [`SpanReading`] skipped what the reader does not need
    /// ([`Span::attribute`] falls back to these, so a policy names them as it names span
    /// attributes).
    #[serde(
        default,
        serialize_with = "attribute_codec::write",
        deserialize_with = "reading::attributes",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub resource: Attributes,
    #[serde(default)]
    pub scope: Scope,
    /// The GenAI / OpenInference reading of the span.
    #[serde(default)]
    pub ai: AiView,
    /// Values ingest shortened to fit the message size limit (attribute keys or `ai.*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<String>,
}

impl Span {
    pub fn duration_ms(&self) -> f64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano) as f64
            / 1e6
    }

    /// A span or resource attribute (span attributes win).
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key).or_else(|| self.resource.get(key))
    }

    /// The attribute as text: strings as they are, other scalars printed.
    pub fn attribute_text(&self, key: &str) -> Option<String> {
        self.attribute(key).map(value_text)
    }

    /// The id used to deduplicate re-sent copies of this span.
    pub fn dedup_id(&self) -> String {
        format!("{}-{}", self.trace_id, self.span_id)
    }
}

/// Text of a JSON value: strings unquoted, everything else as JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtelSpanKind {
    #[default]
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl OtelSpanKind {
    pub fn from_otlp(kind: i32) -> Self {
        match kind {
            1 => Self::Internal,
            2 => Self::Server,
            3 => Self::Client,
            4 => Self::Producer,
            5 => Self::Consumer,
            _ => Self::Unspecified,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, Hash)]
#[serde(rename_all = "UPPERCASE")]
pub enum StatusCode {
    #[default]
    Unset,
    Ok,
    Error,
}

impl StatusCode {
    pub fn from_otlp(code: i32) -> Self {
        match code {
            1 => Self::Ok,
            2 => Self::Error,
            _ => Self::Unset,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Status {
    pub code: StatusCode,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_nano: u64,
    #[serde(
        default,
        serialize_with = "attribute_codec::write",
        deserialize_with = "attribute_codec::read",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

/// What an AI span is, in OpenInference's vocabulary (GenAI operations map onto it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AiSpanKind {
    Llm,
    Chain,
    Tool,
    Retriever,
    Embedding,
    Agent,
    Reranker,
    Guardrail,
    Evaluator,
    Prompt,
}

/// The GenAI operations Umpire knows (`gen_ai.operation.name`); other values are kept on the
/// span but not used as subject tokens.
pub const GENAI_OPERATIONS: [&str; 8] = [
    "chat",
    "text_completion",
    "generate_content",
    "completion",
    "embeddings",
    "execute_tool",
    "invoke_agent",
    "create_agent",
];

impl AiSpanKind {
    pub const ALL: [Self; 10] = [
        Self::Llm,
        Self::Chain,
        Self::Tool,
        Self::Retriever,
        Self::Embedding,
        Self::Agent,
        Self::Reranker,
        Self::Guardrail,
        Self::Evaluator,
        Self::Prompt,
    ];

    /// The OpenInference name (`LLM`, `TOOL`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Llm => "LLM",
            Self::Chain => "CHAIN",
            Self::Tool => "TOOL",
            Self::Retriever => "RETRIEVER",
            Self::Embedding => "EMBEDDING",
            Self::Agent => "AGENT",
            Self::Reranker => "RERANKER",
            Self::Guardrail => "GUARDRAIL",
            Self::Evaluator => "EVALUATOR",
            Self::Prompt => "PROMPT",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(name))
    }

    /// The kind a GenAI `gen_ai.operation.name` implies.
    pub fn from_genai_operation(operation: &str) -> Option<Self> {
        match operation {
            "chat" | "text_completion" | "generate_content" | "completion" => Some(Self::Llm),
            "embeddings" => Some(Self::Embedding),
            "execute_tool" => Some(Self::Tool),
            "invoke_agent" | "create_agent" => Some(Self::Agent),
            _ => None,
        }
    }
}

/// The normalised GenAI reading of a span. Empty for spans that are not AI spans.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AiView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<AiSpanKind>,
    /// `gen_ai.operation.name` when the instrumentation set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    #[serde(default, skip_serializing_if = "TokenUsage::is_empty")]
    pub usage: TokenUsage,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_instructions: Option<String>,
    /// The request text when the rest of the view does not say it (e.g. `input.value` of a
    /// span without messages): read it with [`AiView::input_text`].
    #[serde(default, rename = "input", skip_serializing_if = "Option::is_none")]
    pub explicit_input: Option<String>,
    /// The response text when the rest of the view does not say it: read it with
    /// [`AiView::output_text`].
    #[serde(default, rename = "output", skip_serializing_if = "Option::is_none")]
    pub explicit_output: Option<String>,
    /// Tool calls the model asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Tools declared to the model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_definitions: Vec<ToolDefinition>,
    /// Documents a retriever returned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<RetrievedDocument>,
    /// The tool a TOOL / `execute_tool` span ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolExecution>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finish_reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    /// Time to the first streamed token or chunk, milliseconds from the span's start (see
    /// [`crate::normalise::time_to_first_token_ms`]); none for a call that did not stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_first_token_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

impl TokenUsage {
    pub fn is_empty(&self) -> bool {
        self.input.is_none() && self.output.is_none() && self.total.is_none()
    }

    /// Total tokens: reported, else input + output when both are known.
    pub fn total_tokens(&self) -> Option<u64> {
        self.total.or(match (self.input, self.output) {
            (Some(input), Some(output)) => Some(input + output),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For tool results: the call answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// Arguments as the model produced them (JSON text, possibly invalid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetrievedDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolExecution {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

#[cfg(test)]
impl Span {
    /// A span with ids and times only, for judges' unit tests to fill in.
    pub(crate) fn blank() -> Self {
        serde_json::from_value(serde_json::json!({
            "traceId": "0102030405060708090a0b0c0d0e0f10",
            "spanId": "0102030405060708",
            "name": "chat",
            "startTimeUnixNano": 1,
            "endTimeUnixNano": 2,
        }))
        .unwrap_or_else(|e| panic!("a blank span: {e}"))
    }
}
