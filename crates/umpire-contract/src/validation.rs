//! A config's spec checked exactly as `umpire check` and the API server would: the CRD's
//! schema, its CEL rules, and the semantic checks. The binary runs it before a worker starts
//! from a hand-written config or manifest; the controller renders only specs it validated.

use serde_json::{Value, json};
use umpire_api::eval_policy::EvalPolicySpec;
use umpire_api::validate::{API_VERSION, References, UmpireKind, Validator};

use crate::evaluator::EvaluatorConfig;
use crate::ingest::IngestConfig;

/// The TraceProject spec of an ingest config; `Err` lists every problem, one per line.
pub fn validate_project(config: &IngestConfig) -> Result<(), String> {
    let object = json!({
        "apiVersion": API_VERSION,
        "kind": "TraceProject",
        "metadata": {"name": config.project, "namespace": config.namespace},
        "spec": config.spec,
    });
    validate(
        UmpireKind::TraceProject,
        &object,
        &umpire_api::validate::NoReferences,
    )
}

/// A TraceProject manifest as read from a file (`umpire eval --export`).
pub fn validate_project_manifest(object: &Value) -> Result<(), String> {
    validate(
        UmpireKind::TraceProject,
        object,
        &umpire_api::validate::NoReferences,
    )
}

/// The EvalPolicy spec of an evaluator config, with its mounted ConfigMaps for references.
pub fn validate_policy(config: &EvaluatorConfig) -> Result<(), String> {
    validate_policy_spec(
        &config.namespace,
        &config.policy,
        &config.spec,
        &config.references(),
    )
}

pub fn validate_policy_spec(
    namespace: &str,
    name: &str,
    spec: &EvalPolicySpec,
    references: &dyn References,
) -> Result<(), String> {
    let object = json!({
        "apiVersion": API_VERSION,
        "kind": "EvalPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    });
    validate(UmpireKind::EvalPolicy, &object, references)
}

fn validate(kind: UmpireKind, object: &Value, references: &dyn References) -> Result<(), String> {
    let validator = Validator::new().map_err(|e| e.to_string())?;
    let outcome = validator.validate(kind, object, references);
    if outcome.findings.errors.is_empty() {
        return Ok(());
    }
    Err(outcome
        .findings
        .errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n"))
}
