//! Rules CEL cannot express. They are exactly what compiling a spec into the domain core's
//! objects checks (regexes compile, JSON Schemas are schemas, prompt templates use declared
//! variables, choices can pass and fail), so the workers run what validation accepted.

use super::path::FieldPath;
use super::{Findings, RefLookup, References};
use crate::compile::{compile_eval_policy, compile_trace_project};
use crate::eval_policy::EvalPolicySpec;
use crate::trace_project::TraceProjectSpec;

pub(crate) fn trace_project(spec: &TraceProjectSpec, findings: &mut Findings) {
    if let Err(errors) = compile_trace_project(spec) {
        findings.errors.extend(errors);
    }
}

pub(crate) fn eval_policy(
    namespace: &str,
    spec: &EvalPolicySpec,
    refs: &dyn References,
    findings: &mut Findings,
) {
    if let Err(errors) = compile_eval_policy(namespace, spec, refs) {
        findings.errors.extend(errors);
    }
    let spec_path = FieldPath::root().field("spec");
    for (index, judge) in spec.judges.iter().enumerate() {
        if let Some(reference) = judge.json.as_ref().and_then(|j| j.schema_ref.as_ref())
            && refs.config_map_value(namespace, &reference.config_map, &reference.key)
                == RefLookup::Unavailable
        {
            findings.note(
                spec_path.field("judges").index(index).field("json").field("schemaRef"),
                format!(
                    "ConfigMap {namespace}/{} key {:?} is not among the checked files, so its schema was not validated",
                    reference.config_map, reference.key
                ),
            );
        }
    }
    for (index, alert) in spec.alerts.iter().flatten().enumerate() {
        for (i, key) in alert.group_by.iter().flatten().enumerate() {
            if key.trim().is_empty() {
                findings.error(
                    spec_path
                        .field("alerts")
                        .index(index)
                        .field("groupBy")
                        .index(i),
                    "group keys must not be empty",
                );
            }
        }
    }
}
