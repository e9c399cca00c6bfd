//! The LLM judge as it is written in an EvalPolicy, and its retrieval rating.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SPAN_FIELD_PATTERN;
use crate::common::{Duration, SecretKeyRef, URL_PATTERN};

/// An LLM-as-a-judge over any OpenAI-compatible chat completions API.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.template) != has(self.prompt)").message("set exactly one of template or prompt"))]
#[x_kube(validation = Rule::new("has(self.template) || has(self.choices)").message("a custom prompt needs choices (label → score)").field_path(".choices"))]
#[x_kube(validation = Rule::new("!has(self.retrieval) || (has(self.template) ? self.template == 'documentRelevance' : self.prompt.contains('{{document}}'))").message("retrieval rates one document at a time: use template documentRelevance, or a prompt that reads {{document}}").field_path(".retrieval"))]
#[x_kube(validation = Rule::new("!has(self.template) || self.template != 'documentRelevance' || has(self.retrieval)").message("the documentRelevance template rates retrieved documents one by one: it needs retrieval").field_path(".template"))]
pub struct LlmJudge {
    /// A built-in template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<BuiltinTemplateName>,
    /// A custom prompt with `{{variables}}`: `input`, `output`, `context`, `system`, and
    /// any declared in `variables`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32768))]
    pub prompt: Option<String>,
    /// Extra template variables, each mapped to a span field (`attributes.<key>`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16))]
    pub variables: Option<BTreeMap<String, String>>,
    /// Base URL of an OpenAI-compatible API, e.g. `http://vllm.models:8000/v1`.
    #[schemars(length(min = 1, max = 2048), regex(pattern = URL_PATTERN))]
    pub endpoint: String,
    /// Model name sent in the request.
    #[schemars(length(min = 1, max = 256))]
    pub model: String,
    /// Secret key holding the API key (sent as `Authorization: Bearer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Verdict labels the model must choose from, each mapped to a score in [0, 1].
    /// Default for templates: the template's own labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minProperties" = 2, "maxProperties" = 16))]
    #[x_kube(validation = Rule::new("self.all(k, self[k] >= 0.0 && self[k] <= 1.0)").message("choice scores must be between 0 and 1"))]
    pub choices: Option<BTreeMap<String, f64>>,
    /// Lowest passing score. Default 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub pass_threshold: Option<f64>,
    /// Per-request timeout. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Retries on 429 / 5xx / timeouts, with jittered exponential backoff. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub max_retries: Option<i32>,
    /// Requests in flight at once, per evaluator pod. Default 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_concurrency: Option<i32>,
    /// Requests per minute for the whole policy, shared by its evaluator pods through NATS KV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_requests_per_minute: Option<i32>,
    /// Tokens (prompt + completion) per UTC day for the whole policy; past it the judge is
    /// skipped with reason `budget_exhausted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub daily_token_budget: Option<i64>,
    /// Sampling temperature. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f64>,
    /// How the verdict is constrained: `jsonSchema` (structured outputs), `jsonObject`
    /// (JSON mode), `text` (parse the reply) or `auto` (default: try jsonSchema, fall back
    /// when the endpoint rejects it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Judge model prices, to record the cost of each verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<JudgePricing>,
    /// Rate each document the span retrieved (a retriever span's, or else those retrieved
    /// anywhere in its trace) with the prompt — one request per document, which reads it as
    /// `{{document}}` and the query as `{{input}}` — and score the ranking: precision@k,
    /// MRR, NDCG@k and, when the span names the expected documents, recall@k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalRating>,
}

/// How retrieved documents are rated and the ratings scored.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.passOn) || self.passOn != 'recallAtK' || has(self.expectedIds)").message("recall@k counts expected documents: set expectedIds").field_path(".expectedIds"))]
pub struct RetrievalRating {
    /// Rank cut-off of precision@k, recall@k and NDCG@k. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub k: Option<i32>,
    /// Documents rated per span, the first by rank: one LLM request each. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub max_documents: Option<i32>,
    /// A span field holding the ids of the documents that should have been retrieved
    /// (a JSON array, or ids separated by commas or spaces), e.g.
    /// `attributes.eval.expected_document_ids`: enables recall@k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = SPAN_FIELD_PATTERN))]
    pub expected_ids: Option<String>,
    /// The measure the verdict passes on. Default `precisionAtK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_on: Option<RankingMeasureName>,
    /// Its lowest passing value. Default 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min: Option<f64>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RankingMeasureName {
    /// Relevant documents among the first k (of those returned).
    PrecisionAtK,
    /// Expected documents found among the first k.
    RecallAtK,
    /// 1 / rank of the first relevant document.
    Mrr,
    /// Discounted gain of the first k against their ideal order.
    NdcgAtK,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum BuiltinTemplateName {
    Groundedness,
    Hallucination,
    AnswerRelevance,
    QaCorrectness,
    Toxicity,
    PromptInjection,
    /// One retrieved document against the query (`relevant` / `unrelated`); with
    /// `retrieval` only.
    DocumentRelevance,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ResponseFormat {
    Auto,
    JsonSchema,
    JsonObject,
    Text,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JudgePricing {
    #[schemars(range(min = 0.0))]
    pub input_per_million_tokens: f64,
    #[schemars(range(min = 0.0))]
    pub output_per_million_tokens: f64,
}
