//! Rules CEL cannot express: regular expressions compile, JSON Schemas are schemas, prompt
//! templates reference variables that exist, verdict choices can actually fail.

use std::collections::BTreeSet;

use umpire_core::field::SpanField;
use umpire_core::json_schema::CompiledJsonSchema;
use umpire_core::template::{BuiltinTemplate, PromptTemplate, standard_variable};

use super::path::FieldPath;
use super::{Findings, RefLookup, References};
use crate::eval_policy::{BuiltinTemplateName, EvalPolicySpec, JsonJudge, Judge, LlmJudge};
use crate::trace_project::TraceProjectSpec;

pub(crate) fn trace_project(spec: &TraceProjectSpec, findings: &mut Findings) {
    if let Err(errors) = crate::compile::compile_trace_project(spec) {
        findings.errors.extend(errors);
    }
}

pub(crate) fn eval_policy(
    namespace: &str,
    spec: &EvalPolicySpec,
    refs: &dyn References,
    findings: &mut Findings,
) {
    let spec_path = FieldPath::root().field("spec");
    if let Some(select) = &spec.select {
        for (index, matcher) in select.where_.iter().flatten().enumerate() {
            if let Some(pattern) = &matcher.regex {
                check_regex(
                    pattern,
                    &spec_path
                        .field("select")
                        .field("where")
                        .index(index)
                        .field("regex"),
                    findings,
                );
            }
        }
    }
    for (index, judge) in spec.judges.iter().enumerate() {
        judge_rules(
            namespace,
            judge,
            &spec_path.field("judges").index(index),
            refs,
            findings,
        );
    }
    for (index, alert) in spec.alerts.iter().flatten().enumerate() {
        let path = spec_path.field("alerts").index(index);
        for (i, key) in alert.group_by.iter().flatten().enumerate() {
            if key.trim().is_empty() {
                findings.error(
                    path.field("groupBy").index(i),
                    "group keys must not be empty",
                );
            }
        }
    }
}

fn judge_rules(
    namespace: &str,
    judge: &Judge,
    path: &FieldPath,
    refs: &dyn References,
    findings: &mut Findings,
) {
    if let Some(json) = &judge.json {
        json_judge(namespace, json, &path.field("json"), refs, findings);
    }
    if let Some(regex) = &judge.regex {
        check_regex(
            &regex.pattern,
            &path.field("regex").field("pattern"),
            findings,
        );
    }
    if let Some(tool_call) = &judge.tool_call {
        for (index, tool) in tool_call.tools.iter().flatten().enumerate() {
            check_json_schema(
                &tool.parameters,
                &path
                    .field("toolCall")
                    .field("tools")
                    .index(index)
                    .field("parameters"),
                findings,
            );
        }
    }
    if let Some(llm) = &judge.llm {
        llm_judge(llm, &path.field("llm"), findings);
    }
}

fn json_judge(
    namespace: &str,
    json: &JsonJudge,
    path: &FieldPath,
    refs: &dyn References,
    findings: &mut Findings,
) {
    if let Some(schema) = &json.schema {
        check_json_schema(schema, &path.field("schema"), findings);
    }
    let Some(reference) = &json.schema_ref else {
        return;
    };
    let ref_path = path.field("schemaRef");
    let shown = format!(
        "ConfigMap {namespace}/{} key {:?}",
        reference.config_map, reference.key
    );
    match refs.config_map_value(namespace, &reference.config_map, &reference.key) {
        RefLookup::Found(text) => match parse_json_or_yaml(&text) {
            Ok(schema) => check_json_schema(&schema, &ref_path, findings),
            Err(e) => findings.error(ref_path, format!("{shown} is neither JSON nor YAML: {e}")),
        },
        RefLookup::MissingKey => {
            findings.error(ref_path, format!("{shown}: the ConfigMap has no such key"))
        }
        RefLookup::MissingObject => findings.error(ref_path, format!("{shown}: no such ConfigMap")),
        RefLookup::Unavailable => findings.note(
            ref_path,
            format!("{shown} is not among the checked files, so its schema was not validated"),
        ),
    }
}

fn llm_judge(llm: &LlmJudge, path: &FieldPath, findings: &mut Findings) {
    let mut declared = BTreeSet::new();
    for (name, field) in llm.variables.iter().flatten() {
        let var_path = path.field("variables").field(name);
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            findings.error(
                var_path.clone(),
                "variable names use letters, digits and `_`, not starting with a digit",
            );
        }
        if standard_variable(name).is_some() {
            findings.error(
                var_path.clone(),
                format!("`{name}` is a standard variable and cannot be remapped"),
            );
        }
        if let Err(e) = field.parse::<SpanField>() {
            findings.error(var_path, e.to_string());
        }
        declared.insert(name.as_str());
    }

    let builtin = llm.template.map(builtin_template);
    let template = match (&llm.prompt, builtin) {
        (Some(prompt), _) => match PromptTemplate::parse(prompt) {
            Ok(template) => template,
            Err(e) => return findings.error(path.field("prompt"), e.to_string()),
        },
        (None, Some(builtin)) => builtin.template(),
        (None, None) => return,
    };
    let unknown = template.unknown_variables(&declared);
    if !unknown.is_empty() {
        let at = if llm.prompt.is_some() {
            path.field("prompt")
        } else {
            path.field("variables")
        };
        let known: Vec<&str> = ["input", "output", "context", "system"]
            .into_iter()
            .chain(declared.iter().copied())
            .collect();
        findings.error(
            at,
            format!(
                "the template uses undeclared variable(s) {}; declare them in `variables` (name → span field) or use one of: {}",
                unknown.iter().map(|v| format!("{{{{{v}}}}}")).collect::<Vec<_>>().join(", "),
                known.join(", ")
            ),
        );
    }

    let choices: Vec<(String, f64)> = match (&llm.choices, builtin) {
        (Some(choices), _) => choices.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        (None, Some(builtin)) => builtin
            .default_choices()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
        (None, None) => Vec::new(),
    };
    if let (Some(builtin), Some(given)) = (builtin, &llm.choices) {
        let expected: BTreeSet<&str> = builtin.default_choices().iter().map(|(k, _)| *k).collect();
        let actual: BTreeSet<&str> = given.keys().map(String::as_str).collect();
        if expected != actual {
            findings.error(
                path.field("choices"),
                format!(
                    "the {} template asks the model for {}; choices must score exactly those labels",
                    builtin.name(),
                    expected.into_iter().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    let threshold = llm.pass_threshold.unwrap_or(0.5);
    if !choices.is_empty() {
        if !choices.iter().any(|(_, score)| *score < threshold) {
            findings.error(
                path.field("passThreshold"),
                format!("every choice scores at least {threshold}, so this judge can never fail"),
            );
        }
        if !choices.iter().any(|(_, score)| *score >= threshold) {
            findings.error(
                path.field("passThreshold"),
                format!("no choice reaches {threshold}, so this judge can never pass"),
            );
        }
    }
}

fn builtin_template(name: BuiltinTemplateName) -> BuiltinTemplate {
    match name {
        BuiltinTemplateName::Groundedness => BuiltinTemplate::Groundedness,
        BuiltinTemplateName::Hallucination => BuiltinTemplate::Hallucination,
        BuiltinTemplateName::AnswerRelevance => BuiltinTemplate::AnswerRelevance,
        BuiltinTemplateName::QaCorrectness => BuiltinTemplate::QaCorrectness,
        BuiltinTemplateName::Toxicity => BuiltinTemplate::Toxicity,
    }
}

fn check_regex(pattern: &str, path: &FieldPath, findings: &mut Findings) {
    if let Err(e) = regex::Regex::new(pattern) {
        findings.error(
            path.clone(),
            format!(
                "not a valid regular expression: {}",
                first_line(&e.to_string())
            ),
        );
    }
}

fn check_json_schema(schema: &serde_json::Value, path: &FieldPath, findings: &mut Findings) {
    if let Err(e) = CompiledJsonSchema::compile(schema) {
        findings.error(path.clone(), e.to_string());
    }
}

fn parse_json_or_yaml(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).or_else(|_| serde_yaml::from_str(text).map_err(|e| e.to_string()))
}

/// The regex crate's errors are multi-line ASCII art; the last line holds the reason.
fn first_line(message: &str) -> String {
    message
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or(message)
        .trim()
        .to_owned()
}
