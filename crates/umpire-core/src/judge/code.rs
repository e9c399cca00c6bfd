//! The code judges.

use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;

use super::whole_ms::WholeMs;
use super::{CodeJudge, JudgeErrorKind, JudgeInput, Outcome, SkipReason};
use crate::field::SpanField;
use crate::json_schema::CompiledJsonSchema;
use crate::span::{AiSpanKind, StatusCode};

/// The field parses as JSON and, with a schema, validates against it.
#[derive(Debug)]
pub struct JsonJudge {
    pub field: SpanField,
    pub schema: Option<std::sync::Arc<CompiledJsonSchemaDebug>>,
}

/// A compiled schema with a Debug that does not dump the validator.
pub struct CompiledJsonSchemaDebug(pub CompiledJsonSchema);

impl std::fmt::Debug for CompiledJsonSchemaDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompiledJsonSchema")
    }
}

impl CodeJudge for JsonJudge {
    fn evaluate(&self, input: &JudgeInput<'_>) -> Outcome {
        let text = match input.require(&self.field) {
            Ok(text) => text,
            Err(failure) => return failure,
        };
        let document: Value = match serde_json::from_str(&text) {
            Ok(document) => document,
            Err(e) => return Outcome::fail(0.0, format!("{} is not valid JSON: {e}", self.field)),
        };
        let Some(schema) = &self.schema else {
            return Outcome::pass(1.0, format!("{} is valid JSON", self.field));
        };
        let violations = schema.0.violations(&document, 3);
        if violations.is_empty() {
            Outcome::pass(1.0, format!("{} matches the schema", self.field))
        } else {
            Outcome::fail(
                0.0,
                format!(
                    "{} does not match the schema: {}",
                    self.field,
                    violations.join("; ")
                ),
            )
        }
    }
}

#[derive(Debug)]
pub struct RegexJudge {
    pub field: SpanField,
    pub pattern: Regex,
    /// Pass when the pattern is found (true) or when it is absent (false).
    pub must_match: bool,
}

impl CodeJudge for RegexJudge {
    fn evaluate(&self, input: &JudgeInput<'_>) -> Outcome {
        let text = match input.require(&self.field) {
            Ok(text) => text,
            Err(failure) => return failure,
        };
        match self.pattern.find(&text) {
            Some(found) => Outcome::check(
                self.must_match,
                format!("/{}/ matched {:?}", self.pattern, shorten(found.as_str())),
            ),
            None => Outcome::check(
                !self.must_match,
                format!("/{}/ did not match", self.pattern),
            ),
        }
    }
}

/// Phrases present (any or all) or absent.
#[derive(Debug)]
pub struct PhraseJudge {
    pub field: SpanField,
    pub phrases: Vec<String>,
    pub case_sensitive: bool,
    pub mode: PhraseMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhraseMode {
    AnyPresent,
    AllPresent,
    NonePresent,
}

impl CodeJudge for PhraseJudge {
    fn evaluate(&self, input: &JudgeInput<'_>) -> Outcome {
        let text = match input.require(&self.field) {
            Ok(text) => text,
            Err(failure) => return failure,
        };
        let haystack = if self.case_sensitive {
            text.into_owned()
        } else {
            text.to_lowercase()
        };
        let found: Vec<&str> = self
            .phrases
            .iter()
            .filter(|phrase| {
                if self.case_sensitive {
                    haystack.contains(phrase.as_str())
                } else {
                    haystack.contains(&phrase.to_lowercase())
                }
            })
            .map(String::as_str)
            .collect();
        match self.mode {
            PhraseMode::AnyPresent => Outcome::check(
                !found.is_empty(),
                if found.is_empty() {
                    "none of the phrases found".to_owned()
                } else {
                    format!("found {found:?}")
                },
            ),
            PhraseMode::AllPresent => {
                let missing: Vec<&str> = self
                    .phrases
                    .iter()
                    .map(String::as_str)
                    .filter(|p| !found.contains(p))
                    .collect();
                Outcome::check(
                    missing.is_empty(),
                    if missing.is_empty() {
                        "all phrases found".to_owned()
                    } else {
                        format!("missing {missing:?}")
                    },
                )
            }
            PhraseMode::NonePresent => Outcome::check(
                found.is_empty(),
                if found.is_empty() {
                    "no banned phrase found".to_owned()
                } else {
                    format!("found {found:?}")
                },
            ),
        }
    }
}

/// Tool calls name a known tool and their arguments parse and match the tool's schema.
#[derive(Debug)]
pub struct ToolCallJudge {
    /// Schemas to use when the span declares none, by tool name.
    pub fallback_tools: HashMap<String, std::sync::Arc<CompiledJsonSchemaDebug>>,
    pub allow_undeclared: bool,
}

impl CodeJudge for ToolCallJudge {
    fn evaluate(&self, input: &JudgeInput<'_>) -> Outcome {
        let ai = &input.span.ai;
        let mut calls: Vec<(&str, Option<&str>)> = ai
            .tool_calls
            .iter()
            .map(|c| (c.name.as_str(), c.arguments.as_deref()))
            .collect();
        if let Some(tool) = &ai.tool {
            calls.push((tool.name.as_str(), tool.arguments.as_deref()));
        }
        if calls.is_empty() {
            return Outcome::skipped(SkipReason::NotApplicable);
        }
        let declared: HashMap<&str, Option<&Value>> = ai
            .tool_definitions
            .iter()
            .map(|t| (t.name.as_str(), t.parameters.as_ref()))
            .collect();
        let mut problems = Vec::new();
        for (name, arguments) in &calls {
            let arguments: Value = match arguments.map(serde_json::from_str::<Value>) {
                Some(Ok(value)) => value,
                Some(Err(e)) => {
                    problems.push(format!("{name}: arguments are not valid JSON ({e})"));
                    continue;
                }
                None => Value::Object(Default::default()),
            };
            let verdict = match (declared.get(name), self.fallback_tools.get(*name)) {
                (Some(Some(schema)), _) => match CompiledJsonSchema::compile(schema) {
                    Ok(compiled) => compiled.violations(&arguments, 3),
                    Err(e) => vec![format!("the span declares an invalid schema: {e}")],
                },
                (Some(None), None) => Vec::new(),
                (_, Some(schema)) => schema.0.violations(&arguments, 3),
                (None, None) if self.allow_undeclared => Vec::new(),
                (None, None) => vec!["not a declared tool".to_owned()],
            };
            if !verdict.is_empty() {
                problems.push(format!("{name}: {}", verdict.join("; ")));
            }
        }
        let valid = calls.len() - problems.len();
        let value = valid as f64 / calls.len() as f64;
        if problems.is_empty() {
            Outcome::pass(1.0, format!("{} tool call(s) valid", calls.len()))
        } else {
            Outcome::fail(value, problems.join("; "))
        }
    }
}

#[derive(Debug)]
pub struct LatencyJudge {
    pub max_ms: f64,
    /// Time to the first streamed token instead of the whole duration.
    pub to_first_token: bool,
}

impl CodeJudge for LatencyJudge {
    fn evaluate(&self, input: &JudgeInput<'_>) -> Outcome {
        if self.to_first_token {
            let Some(ms) = input.span.ai.time_to_first_token_ms else {
                return Outcome::skipped(SkipReason::NotApplicable);
            };
            return Outcome::check(
                ms <= self.max_ms,
                format!(
                    "first token after {} ms (max {} ms)",
                    WholeMs(ms),
                    WholeMs(self.max_ms)
                ),
            )
            .with_measurement(ms);
        }
        let ms = input.span.duration_ms();
        Outcome::check(
            ms <= self.max_ms,
            format!("took {} ms (max {} ms)", WholeMs(ms), WholeMs(self.max_ms)),
        )
        .with_measurement(ms)
    }
}

#[derive(Debug, Default)]
pub struct TokensJudge {
    pub max_input: Option<u64>,
    pub max_output: Option<u64>,
    pub max_total: Option<u64>,
    pub context_window: Option<u64>,
    pub max_context_use: Option<f64>,
}

impl CodeJudge for TokensJudge {
    fn evaluate(&self, input: &JudgeInput<'_>) -> Outcome {
        let usage = input.span.ai.usage;
        if usage.is_empty() {
            return Outcome::failed(
                JudgeErrorKind::MissingField,
                "the span reports no token usage",
            );
        }
        let mut problems = Vec::new();
        let mut need = |limit: Option<u64>, actual: Option<u64>, what: &str| {
            if let Some(limit) = limit {
                match actual {
                    Some(actual) if actual > limit => {
                        problems.push(format!("{what} {actual} > {limit}"))
                    }
                    Some(_) => {}
                    None => problems.push(format!("{what} unknown")),
                }
            }
        };
        need(self.max_input, usage.input, "input tokens");
        need(self.max_output, usage.output, "output tokens");
        need(self.max_total, usage.total_tokens(), "total tokens");
        let mut measurement = usage.total_tokens().map(|t| t as f64);
        if let (Some(window), Some(max_use)) = (self.context_window, self.max_context_use) {
            match usage.input {
                Some(input_tokens) => {
                    let used = input_tokens as f64 / window as f64;
                    measurement = Some(used);
                    if used > max_use {
                        problems.push(format!(
                            "context use {:.0}% > {:.0}%",
                            used * 100.0,
                            max_use * 100.0
                        ));
                    }
                }
                None => problems.push("input tokens unknown".into()),
            }
        }
        if problems.iter().any(|p| p.ends_with("unknown")) {
            return Outcome::failed(JudgeErrorKind::MissingField, problems.join("; "));
        }
        let outcome = Outcome::check(
            problems.is_empty(),
            if problems.is_empty() {
                "within token budget".to_owned()
            } else {
                problems.join("; ")
            },
        );
        match measurement {
            Some(m) => outcome.with_measurement(m),
            None => outcome,
        }
    }
}

/// US dollars per million tokens for a model (or a model prefix ending in `*`).
#[derive(Debug, Clone)]
pub struct ModelPrice {
    pub model: String,
    pub input_per_million: f64,
    pub output_per_million: f64,
}

#[derive(Debug)]
pub struct CostJudge {
    pub max_usd: f64,
    pub prices: Vec<ModelPrice>,
}

impl CostJudge {
    /// Exact matches win over prefixes; the longest prefix wins among prefixes.
    fn price(&self, model: &str) -> Option<&ModelPrice> {
        self.prices.iter().find(|p| p.model == model).or_else(|| {
            self.prices
                .iter()
                .filter_map(|p| {
                    p.model
                        .strip_suffix('*')
                        .filter(|prefix| model.starts_with(prefix))
                        .map(|prefix| (prefix.len(), p))
                })
                .max_by_key(|(len, _)| *len)
                .map(|(_, p)| p)
        })
    }
}

impl CodeJudge for CostJudge {
    fn evaluate(&self, input: &JudgeInput<'_>) -> Outcome {
        let ai = &input.span.ai;
        let Some(model) = ai.response_model.as_deref().or(ai.request_model.as_deref()) else {
            // A chain, tool or agent span made no model call of its own: nothing to price.
            if ai.kind != Some(AiSpanKind::Llm) {
                return Outcome::skipped(SkipReason::NotApplicable);
            }
            return Outcome::failed(JudgeErrorKind::MissingField, "the span names no model");
        };
        let Some(price) = self
            .price(model)
            .or_else(|| ai.request_model.as_deref().and_then(|m| self.price(m)))
        else {
            return Outcome::failed(
                JudgeErrorKind::UnknownModel,
                format!("no price for model {model:?}"),
            );
        };
        let (Some(input_tokens), Some(output_tokens)) = (ai.usage.input, ai.usage.output) else {
            return Outcome::failed(
                JudgeErrorKind::MissingField,
                "the span lacks input or output token counts",
            );
        };
        let cost = input_tokens as f64 / 1e6 * price.input_per_million
            + output_tokens as f64 / 1e6 * price.output_per_million;
        Outcome::check(
            cost <= self.max_usd,
            format!("cost ${cost:.6} (max ${})", self.max_usd),
        )
        .with_measurement(cost)
    }
}

#[derive(Debug, Default)]
pub struct ErrorStatusJudge {
    pub ignore_error_types: Vec<String>,
}

impl CodeJudge for ErrorStatusJudge {
    fn evaluate(&self, input: &JudgeInput<'_>) -> Outcome {
        let span = input.span;
        if span.status.code != StatusCode::Error {
            return Outcome::pass(1.0, "no error");
        }
        let error_type = span
            .ai
            .error_type
            .clone()
            .unwrap_or_else(|| "unknown".into());
        if self.ignore_error_types.contains(&error_type) {
            return Outcome::pass(1.0, format!("ignored error type {error_type}"));
        }
        let message = if span.status.message.is_empty() {
            error_type
        } else {
            format!("{error_type}: {}", span.status.message)
        };
        Outcome::fail(0.0, message)
    }
}

#[derive(Debug)]
pub struct LengthJudge {
    pub field: SpanField,
    pub min_chars: Option<u64>,
    pub max_chars: Option<u64>,
    pub min_words: Option<u64>,
    pub max_words: Option<u64>,
}

impl CodeJudge for LengthJudge {
    fn evaluate(&self, input: &JudgeInput<'_>) -> Outcome {
        let text = match input.require(&self.field) {
            Ok(text) => text,
            Err(failure) => return failure,
        };
        let chars = text.chars().count() as u64;
        let words = text.split_whitespace().count() as u64;
        let passed = self.min_chars.is_none_or(|m| chars >= m)
            && self.max_chars.is_none_or(|m| chars <= m)
            && self.min_words.is_none_or(|m| words >= m)
            && self.max_words.is_none_or(|m| words <= m);
        Outcome::check(passed, format!("{chars} characters, {words} words"))
            .with_measurement(chars as f64)
    }
}

/// Judged on a trace's root span, over everything known of the trace.
#[derive(Debug, Default)]
pub struct AgentLoopJudge {
    pub max_llm_calls: Option<u64>,
    pub max_tool_calls: Option<u64>,
    pub max_repeated_tool_calls: Option<u64>,
}

impl CodeJudge for AgentLoopJudge {
    fn evaluate(&self, input: &JudgeInput<'_>) -> Outcome {
        if input.span.parent_span_id.is_some() {
            return Outcome::skipped(SkipReason::NotApplicable);
        }
        let trace = input.trace;
        let (llm, tools, repeated) = (
            trace.llm_calls,
            trace.tool_calls(),
            trace.max_repeated_tool_calls(),
        );
        let mut problems = Vec::new();
        if self.max_llm_calls.is_some_and(|m| llm > m) {
            problems.push(format!("{llm} LLM calls"));
        }
        if self.max_tool_calls.is_some_and(|m| tools > m) {
            problems.push(format!("{tools} tool calls"));
        }
        if self.max_repeated_tool_calls.is_some_and(|m| repeated > m) {
            problems.push(format!("the same tool call repeated {repeated} times"));
        }
        let summary = format!(
            "{llm} LLM calls, {tools} tool calls in {} spans",
            trace.spans
        );
        Outcome::check(
            problems.is_empty(),
            if problems.is_empty() {
                summary
            } else {
                format!("{}; {summary}", problems.join(", "))
            },
        )
        .with_measurement((llm + tools) as f64)
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 60 {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(60).collect::<String>())
    }
}
