//! The judge catalogue as it is written in an EvalPolicy.

use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::LlmJudge;
use crate::common::{ConfigMapKeyRef, NAME_PATTERN};

/// Which part of a span a judge reads: `input`, `output`, `context`, `system`, `messages`,
/// `toolArguments`, `attributes.<key>` or `resource.<key>`.
pub const SPAN_FIELD_PATTERN: &str =
    r"^(input|output|context|system|messages|toolArguments|attributes\..+|resource\..+)$";

/// One judge. Set `name` and exactly one judge kind.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.json), has(self.regex), has(self.contains), has(self.notContains), has(self.toolCall), has(self.latency), has(self.tokens), has(self.cost), has(self.errorStatus), has(self.length), has(self.agentLoop), has(self.pii), has(self.promptInjection), has(self.embedding), has(self.llm)].filter(x, x).size() == 1").message("a judge needs exactly one kind: json, regex, contains, notContains, toolCall, latency, tokens, cost, errorStatus, length, agentLoop, pii, promptInjection, embedding or llm"))]
pub struct Judge {
    /// Judge name: scores, metrics and alert rules refer to it.
    #[schemars(length(min = 1, max = 63), regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// The field parses as JSON and, when a schema is given, validates against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<JsonJudge>,
    /// The field matches (or must not match) a regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<RegexJudge>,
    /// The field contains any (or all) of some phrases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<ContainsJudge>,
    /// The field contains none of some phrases (refusals, leaked secrets, banned words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_contains: Option<NotContainsJudge>,
    /// Tool calls name a declared tool and their arguments parse and match its schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<ToolCallJudge>,
    /// The span finished within a time budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyJudge>,
    /// Token counts and context-window use stay within budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokensJudge>,
    /// The call's cost (tokens × price table) stays within budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostJudge>,
    /// The span did not end in error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_status: Option<ErrorStatusJudge>,
    /// The field's length is within bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<LengthJudge>,
    /// The trace's agent loop (LLM and tool calls) stayed short enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_loop: Option<AgentLoopJudge>,
    /// Personal data and secrets — e-mail addresses, phone numbers, payment card numbers
    /// (Luhn-checked), IBANs (checksum-checked), US SSNs, API keys and tokens — in chosen
    /// fields. The verdict names the kinds found and how many, never the values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii: Option<PiiJudge>,
    /// Prompt-injection and jailbreak attempts — instructions to ignore earlier ones, role
    /// overrides and forged role markers, system-prompt extraction, encoded payloads, text
    /// in documents or tool results addressed to the model — matched against a maintained
    /// catalogue. (An LLM judge for the same: `llm.template: promptInjection`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_injection: Option<PromptInjectionJudge>,
    /// Semantic similarity of a field to reference answers or to another field, by the
    /// cosine of sentence embeddings computed in the evaluator (a model mounted into it:
    /// see the README's "Embeddings").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingJudge>,
    /// An LLM judges the span with a built-in template or a custom prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmJudge>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PiiJudge {
    /// Fields to search (`messages` is every message of the span, `toolArguments` the
    /// arguments of its tool calls). Default `[output]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8), inner(regex(pattern = SPAN_FIELD_PATTERN), length(max = 256)))]
    pub fields: Option<Vec<String>>,
    /// Kinds to look for. Default: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 6))]
    pub kinds: Option<Vec<PiiKindName>>,
    /// `none` (default): pass when nothing is found. `any`: pass when something is (e.g. an
    /// extraction step must still return contact details).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<PiiExpectation>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.compareTo) != has(self.references)").message("set exactly one of compareTo (another field) or references (reference answers)"))]
pub struct EmbeddingJudge {
    /// Field judged. Default `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SPAN_FIELD_PATTERN), length(max = 256))]
    pub field: Option<String>,
    /// Compare with another field of the span (e.g. `input`: the answer stays on the
    /// question's topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SPAN_FIELD_PATTERN), length(max = 256))]
    pub compare_to: Option<String>,
    /// Compare with reference answers; the closest one counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 4096)))]
    pub references: Option<Vec<String>>,
    /// Pass when the cosine similarity is at least this. Default 0.5. (For
    /// all-MiniLM-L6-v2, paraphrases score ~0.7–0.95, same-topic texts ~0.4–0.7, unrelated
    /// ones below ~0.25.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1.0, max = 1.0))]
    pub min: Option<f64>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PromptInjectionJudge {
    /// Fields to search. Default `[input, context]`: the user's request and the documents
    /// the model was given (indirect injection); add `messages` for tool results in the
    /// conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8), inner(regex(pattern = SPAN_FIELD_PATTERN), length(max = 256)))]
    pub fields: Option<Vec<String>>,
    /// Categories to look for. Default: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 5))]
    pub categories: Option<Vec<InjectionCategoryName>>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum InjectionCategoryName {
    InstructionOverride,
    RoleOverride,
    PromptExtraction,
    EncodedPayload,
    ToolOutputInjection,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum PiiKindName {
    Email,
    Phone,
    PaymentCard,
    Iban,
    UsSsn,
    Secret,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum PiiExpectation {
    None,
    Any,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.schema) && has(self.schemaRef))").message("set schema or schemaRef, not both"))]
pub struct JsonJudge {
    /// Field to parse. Default `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SPAN_FIELD_PATTERN), length(max = 256))]
    pub field: Option<String>,
    /// An inline JSON Schema the document must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub schema: Option<serde_json::Value>,
    /// A JSON Schema kept in a ConfigMap key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_ref: Option<ConfigMapKeyRef>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegexJudge {
    /// Regular expression (RE2 syntax), searched anywhere in the field.
    #[schemars(length(min = 1, max = 4096))]
    pub pattern: String,
    /// Field to search. Default `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SPAN_FIELD_PATTERN), length(max = 256))]
    pub field: Option<String>,
    /// `match` (default): pass when found. `noMatch`: pass when not found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<RegexExpectation>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RegexExpectation {
    Match,
    NoMatch,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainsJudge {
    /// Phrases to look for.
    #[schemars(length(min = 1, max = 256))]
    pub values: Vec<String>,
    /// Field to search. Default `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SPAN_FIELD_PATTERN), length(max = 256))]
    pub field: Option<String>,
    /// Compare case-sensitively. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_sensitive: Option<bool>,
    /// `any` (default): pass when one phrase is present. `all`: every phrase must be.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "match")]
    pub match_: Option<ContainsMode>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ContainsMode {
    Any,
    All,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotContainsJudge {
    /// Phrases that must not appear.
    #[schemars(length(min = 1, max = 256))]
    pub values: Vec<String>,
    /// Field to search. Default `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SPAN_FIELD_PATTERN), length(max = 256))]
    pub field: Option<String>,
    /// Compare case-sensitively. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_sensitive: Option<bool>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallJudge {
    /// Tool schemas to check against when the span does not declare its tools
    /// (`llm.tools.*`, `gen_ai.tool.definitions`). Declared tools take precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub tools: Option<Vec<ToolSchema>>,
    /// Pass calls to tools with no known schema (arguments must still parse). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_undeclared: Option<bool>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolSchema {
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// JSON Schema of the tool's arguments.
    #[schemars(schema_with = "any_object")]
    pub parameters: serde_json::Value,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LatencyJudge {
    /// Slowest passing value, milliseconds.
    #[schemars(range(min = 1))]
    pub max_ms: i64,
    /// What is timed: `duration` (default), the span's whole duration; or
    /// `timeToFirstToken`, until its first streamed token (spans that record none — calls
    /// that did not stream — are skipped as not applicable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<LatencyOf>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum LatencyOf {
    Duration,
    TimeToFirstToken,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.maxInputTokens) || has(self.maxOutputTokens) || has(self.maxTotalTokens) || has(self.maxContextUse)").message("set at least one of maxInputTokens, maxOutputTokens, maxTotalTokens, maxContextUse"))]
#[x_kube(validation = Rule::new("!has(self.maxContextUse) || has(self.contextWindow)").message("maxContextUse needs contextWindow").field_path(".contextWindow"))]
pub struct TokensJudge {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_input_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_output_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_total_tokens: Option<i64>,
    /// The model's context window in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub context_window: Option<i64>,
    /// Highest passing share of the context window used by the input (0–1]. The score is
    /// the unused share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_context_use: Option<f64>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CostJudge {
    /// Most a single call may cost, US dollars.
    #[schemars(range(min = 0.0))]
    pub max_usd: f64,
    /// Prices per model. A span whose model is not listed is a judge error, not $0.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["model".into()]))]
    pub prices: Vec<ModelPrice>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelPrice {
    /// Model name as reported by the span (response model, else request model). A trailing
    /// `*` matches a prefix, e.g. `gpt-4o-mini*` for dated versions.
    #[schemars(length(min = 1, max = 256))]
    pub model: String,
    /// US dollars per million input tokens.
    #[schemars(range(min = 0.0))]
    pub input_per_million_tokens: f64,
    /// US dollars per million output tokens.
    #[schemars(range(min = 0.0))]
    pub output_per_million_tokens: f64,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ErrorStatusJudge {
    /// `error.type` values that do not count as failures (e.g. a user cancellation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub ignore_error_types: Option<Vec<String>>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.minChars) || has(self.maxChars) || has(self.minWords) || has(self.maxWords)").message("set at least one of minChars, maxChars, minWords, maxWords"))]
#[x_kube(validation = Rule::new("!has(self.minChars) || !has(self.maxChars) || self.minChars <= self.maxChars").message("minChars must not exceed maxChars"))]
#[x_kube(validation = Rule::new("!has(self.minWords) || !has(self.maxWords) || self.minWords <= self.maxWords").message("minWords must not exceed maxWords"))]
pub struct LengthJudge {
    /// Field to measure. Default `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SPAN_FIELD_PATTERN), length(max = 256))]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_chars: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_chars: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_words: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_words: Option<i64>,
}

/// Judged once per trace, on its root span, after the trace's spans have arrived.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.maxLlmCalls) || has(self.maxToolCalls) || has(self.maxRepeatedToolCalls)").message("set at least one of maxLlmCalls, maxToolCalls, maxRepeatedToolCalls"))]
pub struct AgentLoopJudge {
    /// Most LLM calls in one trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_llm_calls: Option<i64>,
    /// Most tool calls in one trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tool_calls: Option<i64>,
    /// Most calls of the same tool with the same arguments (a stuck loop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_repeated_tool_calls: Option<i64>,
}

/// Free-form JSON objects (JSON Schemas) inside the CRD: kept as written.
fn any_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
