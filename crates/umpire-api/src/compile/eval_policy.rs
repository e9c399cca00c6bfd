//! EvalPolicy spec → span selector and runnable judges.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use umpire_core::field::SpanField;
use umpire_core::json_schema::CompiledJsonSchema;
use umpire_core::judge::CodeJudge;
use umpire_core::judge::code::{
    AgentLoopJudge, CompiledJsonSchemaDebug, CostJudge, ErrorStatusJudge, JsonJudge, LatencyJudge,
    LengthJudge, ModelPrice, PhraseJudge, PhraseMode, RegexJudge, TokensJudge, ToolCallJudge,
};
use umpire_core::judge::embedding::EmbeddingJudge;
use umpire_core::judge::llm::{
    DOCUMENT_VARIABLE, FormatPolicy, JudgePricing, LlmJudge, ResponseFormat as CoreFormat,
};
use umpire_core::select::{AttributeMatcher, KindSelector, MatchTest, SpanSelector};
use umpire_core::span::AiSpanKind;
use umpire_core::template::{BuiltinTemplate, PromptTemplate, standard_variable};

use super::regex_at;
use crate::common::SecretKeyRef;
use crate::eval_policy::{
    BuiltinTemplateName, ContainsMode, EvalPolicySpec, Judge, LatencyOf, LlmJudge as LlmSpec,
    RegexExpectation, ResponseFormat, SelectSpec, SpanKindSelector,
};
use crate::validate::{FieldError, FieldPath, RefLookup, References};

pub const DEFAULT_LLM_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_LLM_RETRIES: u32 = 3;
pub const DEFAULT_LLM_CONCURRENCY: usize = 16;
pub const DEFAULT_PASS_THRESHOLD: f64 = 0.5;
pub const DEFAULT_EVALUATOR_CONCURRENCY: usize = 64;

/// Everything an evaluator runs for one EvalPolicy.
#[derive(Debug, Clone)]
pub struct PolicyPlan {
    pub selector: SpanSelector,
    pub judges: Vec<PlannedJudge>,
    pub replicas: u32,
    pub concurrency: usize,
    pub alerts: Vec<umpire_core::alert::rule::AlertRule>,
    pub routes: Vec<super::PlannedRoute>,
}

impl PolicyPlan {
    /// Whether judges need the spans' whole traces (agent loops, context on sibling spans).
    pub fn needs_trace(&self) -> bool {
        self.judges.iter().any(|j| j.needs_trace)
    }

    /// Whether the evaluator needs a sentence-embedding model: `embedding` judges, or
    /// drift alerts (which compare the spans' embeddings).
    pub fn needs_embeddings(&self) -> bool {
        self.judges
            .iter()
            .any(|j| matches!(j.implementation, JudgeImplementation::Embedding(_)))
            || !self.drift_fields().is_empty()
    }

    /// The span fields drift alerts compare, each once: the evaluator embeds them into
    /// every span evaluation.
    pub fn drift_fields(&self) -> Vec<umpire_core::alert::rule::DriftField> {
        let mut fields: Vec<_> = self
            .alerts
            .iter()
            .filter_map(|rule| match rule.metric {
                umpire_core::alert::rule::Metric::Drift(field) => Some(field),
                _ => None,
            })
            .collect();
        fields.sort();
        fields.dedup();
        fields
    }
}

#[derive(Debug, Clone)]
pub struct PlannedJudge {
    pub name: String,
    pub kind: &'static str,
    pub needs_trace: bool,
    pub implementation: JudgeImplementation,
}

#[derive(Debug, Clone)]
pub enum JudgeImplementation {
    Code(Arc<dyn CodeJudge>),
    Llm {
        judge: Arc<LlmJudge>,
        endpoint: LlmEndpoint,
    },
    /// Runs the install's sentence-embedding model (the evaluator's `--embedding-model`).
    Embedding(Arc<EmbeddingJudge>),
}

/// How to reach an LLM judge's model; the client adapter turns it into requests.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmEndpoint {
    pub base_url: String,
    pub api_key: Option<SecretKeyRef>,
    pub timeout: Duration,
    pub max_retries: u32,
    pub max_concurrency: usize,
    /// For the whole policy; each evaluator replica takes its share.
    pub requests_per_minute: Option<u32>,
    /// Prompt + completion tokens per UTC day for the whole policy.
    pub daily_token_budget: Option<u64>,
}

/// Compiles a policy. JSON Schemas behind `schemaRef` come from `refs`; when `refs` cannot
/// see them (offline checks) the judge validates JSON only and `unresolved` lists the judge.
pub fn compile_eval_policy(
    namespace: &str,
    spec: &EvalPolicySpec,
    refs: &dyn References,
) -> Result<PolicyPlan, Vec<FieldError>> {
    let root = FieldPath::root().field("spec");
    let mut errors = Vec::new();
    let selector = selector(spec.select.as_ref(), &root.field("select"), &mut errors);
    let mut judges = Vec::new();
    for (index, judge) in spec.judges.iter().enumerate() {
        let path = root.field("judges").index(index);
        if let Some(planned) = plan_judge(namespace, judge, &path, refs, &mut errors) {
            judges.push(planned);
        }
    }
    let evaluator = spec.evaluator.clone().unwrap_or_default();
    let concurrency = evaluator_concurrency(spec, &root, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PolicyPlan {
        selector,
        judges,
        replicas: evaluator
            .replicas
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(1)
            .max(1),
        concurrency,
        alerts: super::plan_alerts(spec),
        routes: super::plan_routes(spec),
    })
}

/// Spans in flight per evaluator pod. Each selected span holds one slot while its judges run,
/// so this bounds every LLM judge's requests in flight too: by default it is at least the
/// largest `maxConcurrency` of the policy's LLM judges, and a smaller explicit value than a
/// judge's explicit `maxConcurrency` is refused instead of silently capping the judge.
fn evaluator_concurrency(
    spec: &EvalPolicySpec,
    root: &FieldPath,
    errors: &mut Vec<FieldError>,
) -> usize {
    let llm_max = |judge: &crate::eval_policy::Judge| {
        judge
            .llm
            .as_ref()
            .map(|llm| llm.max_concurrency.and_then(|c| usize::try_from(c).ok()))
    };
    let explicit = spec
        .evaluator
        .as_ref()
        .and_then(|e| e.concurrency)
        .and_then(|c| usize::try_from(c).ok());
    match explicit {
        Some(concurrency) => {
            for judge in &spec.judges {
                if let Some(Some(wanted)) = llm_max(judge)
                    && wanted > concurrency
                {
                    errors.push(FieldError::new(
                        root.field("evaluator").field("concurrency"),
                        format!(
                            "{concurrency} spans in flight per pod would cap judge `{}` below its maxConcurrency {wanted}: raise concurrency to at least {wanted} or lower maxConcurrency",
                            judge.name
                        ),
                    ));
                }
            }
            concurrency
        }
        None => spec
            .judges
            .iter()
            .filter_map(llm_max)
            .map(|max| max.unwrap_or(DEFAULT_LLM_CONCURRENCY))
            .fold(DEFAULT_EVALUATOR_CONCURRENCY, usize::max),
    }
}

fn selector(
    spec: Option<&SelectSpec>,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) -> SpanSelector {
    let Some(spec) = spec else {
        return SpanSelector::default();
    };
    let kinds = spec.kinds.iter().flatten().map(|k| kind(*k)).collect();
    let mut matchers = Vec::new();
    for (index, matcher) in spec.where_.iter().flatten().enumerate() {
        let set = |values: &Vec<String>| values.iter().cloned().collect::<HashSet<_>>();
        let test = if let Some(values) = &matcher.in_ {
            MatchTest::In(set(values))
        } else if let Some(values) = &matcher.not_in {
            MatchTest::NotIn(set(values))
        } else if let Some(exists) = matcher.exists {
            MatchTest::Exists(exists)
        } else if let Some(pattern) = &matcher.regex {
            match regex_at(pattern, &path.field("where").index(index).field("regex")) {
                Ok(regex) => MatchTest::Regex(regex),
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
        } else if let Some(range) = &matcher.range {
            MatchTest::Range {
                min: range.min,
                max: range.max,
            }
        } else {
            continue;
        };
        matchers.push(AttributeMatcher {
            attribute: matcher.attribute.clone(),
            test,
        });
    }
    SpanSelector {
        kinds,
        span_names: spec.span_names.clone().unwrap_or_default(),
        matchers,
        sample_percentage: spec.sample_percentage,
    }
}

fn kind(selector: SpanKindSelector) -> KindSelector {
    use SpanKindSelector as S;
    let ai = |kind| KindSelector::Kind(kind);
    let op = |name: &str| KindSelector::Operation(name.to_owned());
    match selector {
        S::Llm => ai(AiSpanKind::Llm),
        S::Chain => ai(AiSpanKind::Chain),
        S::Tool => ai(AiSpanKind::Tool),
        S::Retriever => ai(AiSpanKind::Retriever),
        S::Embedding => ai(AiSpanKind::Embedding),
        S::Agent => ai(AiSpanKind::Agent),
        S::Reranker => ai(AiSpanKind::Reranker),
        S::Guardrail => ai(AiSpanKind::Guardrail),
        S::Evaluator => ai(AiSpanKind::Evaluator),
        S::Prompt => ai(AiSpanKind::Prompt),
        S::Chat => op("chat"),
        S::TextCompletion => op("text_completion"),
        S::GenerateContent => op("generate_content"),
        S::Embeddings => op("embeddings"),
        S::ExecuteTool => op("execute_tool"),
        S::InvokeAgent => op("invoke_agent"),
        S::CreateAgent => op("create_agent"),
    }
}

fn field(text: Option<&String>, path: &FieldPath, errors: &mut Vec<FieldError>) -> SpanField {
    match text.map(|t| t.parse::<SpanField>()) {
        None => SpanField::Output,
        Some(Ok(field)) => field,
        Some(Err(e)) => {
            errors.push(FieldError::new(path.field("field"), e.to_string()));
            SpanField::Output
        }
    }
}

fn schema_at(
    value: &serde_json::Value,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) -> Option<Arc<CompiledJsonSchemaDebug>> {
    match CompiledJsonSchema::compile(value) {
        Ok(schema) => Some(Arc::new(CompiledJsonSchemaDebug(schema))),
        Err(e) => {
            errors.push(FieldError::new(path.clone(), e.to_string()));
            None
        }
    }
}

fn positive(value: Option<i64>) -> Option<u64> {
    value.and_then(|v| u64::try_from(v).ok())
}

fn plan_judge(
    namespace: &str,
    judge: &Judge,
    path: &FieldPath,
    refs: &dyn References,
    errors: &mut Vec<FieldError>,
) -> Option<PlannedJudge> {
    let judge_name = &judge.name;
    let code = |kind: &'static str, needs_trace: bool, implementation: Arc<dyn CodeJudge>| {
        Some(PlannedJudge {
            name: judge.name.clone(),
            kind,
            needs_trace,
            implementation: JudgeImplementation::Code(implementation),
        })
    };
    if let Some(spec) = &judge.json {
        let path = path.field("json");
        let field = field(spec.field.as_ref(), &path, errors);
        let mut schema = spec
            .schema
            .as_ref()
            .and_then(|s| schema_at(s, &path.field("schema"), errors));
        if let Some(reference) = &spec.schema_ref {
            let ref_path = path.field("schemaRef");
            let shown = format!(
                "ConfigMap {namespace}/{} key {:?}",
                reference.config_map, reference.key
            );
            match refs.config_map_value(namespace, &reference.config_map, &reference.key) {
                RefLookup::Found(text) => match parse_json_or_yaml(&text) {
                    Ok(value) => schema = schema_at(&value, &ref_path, errors),
                    Err(e) => errors.push(FieldError::new(
                        ref_path,
                        format!("{shown} is neither JSON nor YAML: {e}"),
                    )),
                },
                RefLookup::MissingKey => errors.push(FieldError::new(
                    ref_path,
                    format!("{shown}: the ConfigMap has no such key"),
                )),
                RefLookup::MissingObject => errors.push(FieldError::new(
                    ref_path,
                    format!("{shown}: no such ConfigMap"),
                )),
                RefLookup::Unavailable => {}
            }
        }
        return code("json", false, Arc::new(JsonJudge { field, schema }));
    }
    if let Some(spec) = &judge.regex {
        let path = path.field("regex");
        let field = field(spec.field.as_ref(), &path, errors);
        let pattern = regex_at(&spec.pattern, &path.field("pattern"))
            .map_err(|e| errors.push(e))
            .ok()?;
        let must_match = spec.expect.unwrap_or(RegexExpectation::Match) == RegexExpectation::Match;
        return code(
            "regex",
            false,
            Arc::new(RegexJudge {
                field,
                pattern,
                must_match,
            }),
        );
    }
    if let Some(spec) = &judge.contains {
        let field = field(spec.field.as_ref(), &path.field("contains"), errors);
        let mode = if spec.match_ == Some(ContainsMode::All) {
            PhraseMode::AllPresent
        } else {
            PhraseMode::AnyPresent
        };
        return code(
            "contains",
            false,
            Arc::new(PhraseJudge {
                field,
                phrases: spec.values.clone(),
                case_sensitive: spec.case_sensitive.unwrap_or(false),
                mode,
            }),
        );
    }
    if let Some(spec) = &judge.not_contains {
        let field = field(spec.field.as_ref(), &path.field("notContains"), errors);
        return code(
            "notContains",
            false,
            Arc::new(PhraseJudge {
                field,
                phrases: spec.values.clone(),
                case_sensitive: spec.case_sensitive.unwrap_or(false),
                mode: PhraseMode::NonePresent,
            }),
        );
    }
    if let Some(spec) = &judge.pii {
        let judge = super::content_judges::pii_judge(spec, &path.field("pii"), errors);
        return code("pii", false, Arc::new(judge));
    }
    if let Some(spec) = &judge.prompt_injection {
        let path = path.field("promptInjection");
        let judge = super::content_judges::prompt_injection_judge(spec, &path, errors);
        return code("promptInjection", false, Arc::new(judge));
    }
    if let Some(spec) = &judge.embedding {
        let path = path.field("embedding");
        let judge = super::content_judges::embedding_judge(spec, &path, errors)?;
        return Some(PlannedJudge {
            name: judge_name.clone(),
            kind: "embedding",
            needs_trace: false,
            implementation: JudgeImplementation::Embedding(Arc::new(judge)),
        });
    }
    if let Some(spec) = &judge.tool_call {
        let mut fallback_tools = HashMap::new();
        for (index, tool) in spec.tools.iter().flatten().enumerate() {
            if let Some(schema) = schema_at(
                &tool.parameters,
                &path
                    .field("toolCall")
                    .field("tools")
                    .index(index)
                    .field("parameters"),
                errors,
            ) {
                fallback_tools.insert(tool.name.clone(), schema);
            }
        }
        return code(
            "toolCall",
            false,
            Arc::new(ToolCallJudge {
                fallback_tools,
                allow_undeclared: spec.allow_undeclared.unwrap_or(false),
            }),
        );
    }
    if let Some(spec) = &judge.latency {
        return code(
            "latency",
            false,
            Arc::new(LatencyJudge {
                max_ms: spec.max_ms as f64,
                to_first_token: spec.of == Some(LatencyOf::TimeToFirstToken),
            }),
        );
    }
    if let Some(spec) = &judge.tokens {
        return code(
            "tokens",
            false,
            Arc::new(TokensJudge {
                max_input: positive(spec.max_input_tokens),
                max_output: positive(spec.max_output_tokens),
                max_total: positive(spec.max_total_tokens),
                context_window: positive(spec.context_window),
                max_context_use: spec.max_context_use,
            }),
        );
    }
    if let Some(spec) = &judge.cost {
        let prices = spec
            .prices
            .iter()
            .map(|p| ModelPrice {
                model: p.model.clone(),
                input_per_million: p.input_per_million_tokens,
                output_per_million: p.output_per_million_tokens,
            })
            .collect();
        return code(
            "cost",
            false,
            Arc::new(CostJudge {
                max_usd: spec.max_usd,
                prices,
            }),
        );
    }
    if let Some(spec) = &judge.error_status {
        return code(
            "errorStatus",
            false,
            Arc::new(ErrorStatusJudge {
                ignore_error_types: spec.ignore_error_types.clone().unwrap_or_default(),
            }),
        );
    }
    if let Some(spec) = &judge.length {
        let field = field(spec.field.as_ref(), &path.field("length"), errors);
        return code(
            "length",
            false,
            Arc::new(LengthJudge {
                field,
                min_chars: positive(spec.min_chars),
                max_chars: positive(spec.max_chars),
                min_words: positive(spec.min_words),
                max_words: positive(spec.max_words),
            }),
        );
    }
    if let Some(spec) = &judge.agent_loop {
        return code(
            "agentLoop",
            true,
            Arc::new(AgentLoopJudge {
                max_llm_calls: positive(spec.max_llm_calls),
                max_tool_calls: positive(spec.max_tool_calls),
                max_repeated_tool_calls: positive(spec.max_repeated_tool_calls),
            }),
        );
    }
    if let Some(spec) = &judge.llm {
        return plan_llm(judge, spec, &path.field("llm"), errors);
    }
    None
}

fn builtin(name: BuiltinTemplateName) -> BuiltinTemplate {
    match name {
        BuiltinTemplateName::Groundedness => BuiltinTemplate::Groundedness,
        BuiltinTemplateName::Hallucination => BuiltinTemplate::Hallucination,
        BuiltinTemplateName::AnswerRelevance => BuiltinTemplate::AnswerRelevance,
        BuiltinTemplateName::QaCorrectness => BuiltinTemplate::QaCorrectness,
        BuiltinTemplateName::Toxicity => BuiltinTemplate::Toxicity,
        BuiltinTemplateName::PromptInjection => BuiltinTemplate::PromptInjection,
        BuiltinTemplateName::DocumentRelevance => BuiltinTemplate::DocumentRelevance,
    }
}

fn plan_llm(
    judge: &Judge,
    spec: &LlmSpec,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) -> Option<PlannedJudge> {
    let before = errors.len();
    let mut variables = BTreeMap::new();
    for (name, field) in spec.variables.iter().flatten() {
        let var_path = path.field("variables").field(name);
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            errors.push(FieldError::new(
                var_path.clone(),
                "variable names use letters, digits and `_`, not starting with a digit".into(),
            ));
        }
        if standard_variable(name).is_some() {
            errors.push(FieldError::new(
                var_path.clone(),
                format!("`{name}` is a standard variable and cannot be remapped"),
            ));
        }
        match field.parse::<SpanField>() {
            Ok(field) => {
                variables.insert(name.clone(), field);
            }
            Err(e) => errors.push(FieldError::new(var_path, e.to_string())),
        }
    }
    let builtin = spec.template.map(builtin);
    let template = match (&spec.prompt, builtin) {
        (Some(prompt), _) => match PromptTemplate::parse(prompt) {
            Ok(template) => template,
            Err(e) => {
                errors.push(FieldError::new(path.field("prompt"), e.to_string()));
                return None;
            }
        },
        (None, Some(builtin)) => builtin.template(),
        (None, None) => return None,
    };
    let retrieval = spec
        .retrieval
        .as_ref()
        .map(|r| super::retrieval::retrieval_rating(r, &path.field("retrieval"), errors));
    let mut declared: std::collections::BTreeSet<&str> =
        variables.keys().map(String::as_str).collect();
    if retrieval.is_some() {
        declared.insert(DOCUMENT_VARIABLE);
    }
    let unknown = template.unknown_variables(&declared);
    if !unknown.is_empty() {
        let at = if spec.prompt.is_some() {
            path.field("prompt")
        } else {
            path.field("variables")
        };
        let known: Vec<&str> = ["input", "output", "context", "system"]
            .into_iter()
            .chain(retrieval.is_some().then_some(DOCUMENT_VARIABLE))
            .chain(variables.keys().map(String::as_str))
            .collect();
        errors.push(FieldError::new(
            at,
            format!(
                "the template uses undeclared variable(s) {}; declare them in `variables` (name → span field) or use one of: {}{}",
                unknown.iter().map(|v| format!("{{{{{v}}}}}")).collect::<Vec<_>>().join(", "),
                known.join(", "),
                if unknown.contains(&DOCUMENT_VARIABLE) {
                    " ({{document}} is filled only by `retrieval`, one document at a time)"
                } else {
                    ""
                }
            ),
        ));
    }
    let choices: Vec<(String, f64)> = match (&spec.choices, builtin) {
        (Some(choices), _) => choices.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        (None, Some(builtin)) => builtin
            .default_choices()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
        (None, None) => Vec::new(),
    };
    if let (Some(builtin), Some(given)) = (builtin, &spec.choices) {
        let expected: HashSet<&str> = builtin.default_choices().iter().map(|(k, _)| *k).collect();
        let actual: HashSet<&str> = given.keys().map(String::as_str).collect();
        if expected != actual {
            let mut labels: Vec<&str> = expected.into_iter().collect();
            labels.sort();
            errors.push(FieldError::new(
                path.field("choices"),
                format!("the {} template asks the model for {}; choices must score exactly those labels", builtin.name(), labels.join(", ")),
            ));
        }
    }
    let threshold = spec.pass_threshold.unwrap_or(DEFAULT_PASS_THRESHOLD);
    if !choices.is_empty() {
        if !choices.iter().any(|(_, score)| *score < threshold) {
            errors.push(FieldError::new(
                path.field("passThreshold"),
                format!("every choice scores at least {threshold}, so this judge can never fail"),
            ));
        }
        if !choices.iter().any(|(_, score)| *score >= threshold) {
            errors.push(FieldError::new(
                path.field("passThreshold"),
                format!("no choice reaches {threshold}, so this judge can never pass"),
            ));
        }
    }
    if errors.len() > before {
        return None;
    }
    let format = match spec.response_format.unwrap_or(ResponseFormat::Auto) {
        ResponseFormat::Auto => FormatPolicy::Auto,
        ResponseFormat::JsonSchema => FormatPolicy::Fixed(CoreFormat::JsonSchema),
        ResponseFormat::JsonObject => FormatPolicy::Fixed(CoreFormat::JsonObject),
        ResponseFormat::Text => FormatPolicy::Fixed(CoreFormat::Text),
    };
    // Retrieval rating falls back on documents retrieved elsewhere in the trace.
    let needs_trace =
        retrieval.is_some() || template.variables().into_iter().any(|v| v == "context");
    let mut llm = LlmJudge::new(
        template,
        variables,
        choices,
        threshold,
        spec.model.clone(),
        spec.temperature.unwrap_or(0.0),
        format,
        spec.pricing.as_ref().map(|p| JudgePricing {
            input_per_million: p.input_per_million_tokens,
            output_per_million: p.output_per_million_tokens,
        }),
    );
    if let Some(rating) = retrieval {
        llm = llm.with_retrieval(rating);
    }
    Some(PlannedJudge {
        name: judge.name.clone(),
        kind: "llm",
        needs_trace,
        implementation: JudgeImplementation::Llm {
            judge: Arc::new(llm),
            endpoint: LlmEndpoint {
                base_url: spec.endpoint.trim_end_matches('/').to_owned(),
                api_key: spec.api_key_secret_ref.clone(),
                timeout: spec
                    .timeout
                    .as_ref()
                    .map(|t| t.as_std())
                    .unwrap_or(DEFAULT_LLM_TIMEOUT),
                max_retries: spec
                    .max_retries
                    .and_then(|r| u32::try_from(r).ok())
                    .unwrap_or(DEFAULT_LLM_RETRIES),
                max_concurrency: spec
                    .max_concurrency
                    .and_then(|c| usize::try_from(c).ok())
                    .unwrap_or(DEFAULT_LLM_CONCURRENCY),
                requests_per_minute: spec
                    .max_requests_per_minute
                    .and_then(|r| u32::try_from(r).ok()),
                daily_token_budget: positive(spec.daily_token_budget),
            },
        },
    })
}

fn parse_json_or_yaml(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).or_else(|_| serde_yaml::from_str(text).map_err(|e| e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::validate::NoReferences;

    fn spec(evaluator: serde_json::Value, max_concurrency: Option<i32>) -> EvalPolicySpec {
        let mut llm = serde_json::json!({"template": "groundedness", "endpoint": "http://judge:8000/v1",
            "model": "m", "choices": {"grounded": 1.0, "ungrounded": 0.0}});
        if let Some(max) = max_concurrency {
            llm["maxConcurrency"] = max.into();
        }
        serde_json::from_value(serde_json::json!({
            "projectRef": {"name": "app"}, "evaluator": evaluator,
            "judges": [{"name": "fast", "latency": {"maxMs": 1000}}, {"name": "grounded", "llm": llm}]
        }))
        .unwrap()
    }

    /// Step 9, seen from outside: a judge set to 1,000 concurrent requests ran at most 64,
    /// because the evaluator's default concurrency (spans in flight) capped it silently.
    #[test]
    fn the_default_concurrency_lets_every_llm_judge_reach_its_max() {
        let plan = compile_eval_policy(
            "team",
            &spec(serde_json::json!({}), Some(1000)),
            &NoReferences,
        )
        .unwrap();
        assert_eq!(plan.concurrency, 1000);
        let plan =
            compile_eval_policy("team", &spec(serde_json::json!({}), None), &NoReferences).unwrap();
        assert_eq!(plan.concurrency, DEFAULT_EVALUATOR_CONCURRENCY);
        let plan = compile_eval_policy(
            "team",
            &spec(serde_json::json!({"concurrency": 2000}), Some(1000)),
            &NoReferences,
        )
        .unwrap();
        assert_eq!(plan.concurrency, 2000, "an explicit, larger value stands");
    }
}
