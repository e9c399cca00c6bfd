//! The three layers run together: structural (the CRD's schema), CEL (its rules), semantic.

use kube::CustomResourceExt;
use serde_json::Value;

use super::{API_GROUP, FieldPath, Findings, References, UmpireKind, cel, semantic, structural};
use crate::eval_policy::EvalPolicy;
use crate::trace_project::TraceProject;

/// A resource that passed validation.
#[derive(Debug, Clone)]
pub enum UmpireResource {
    TraceProject(Box<TraceProject>),
    EvalPolicy(Box<EvalPolicy>),
}

/// The outcome of validating one object.
#[derive(Debug, Clone)]
pub struct Validated {
    /// Present when there are no errors.
    pub resource: Option<UmpireResource>,
    pub findings: Findings,
}

#[derive(Debug, thiserror::Error)]
#[error("the generated {kind} CRD cannot be used for validation: {reason}")]
pub struct SchemaError {
    kind: &'static str,
    reason: String,
}

struct KindRules {
    structural: structural::StructuralSchema,
    cel: cel::CelRules,
}

impl KindRules {
    fn for_crd<K: CustomResourceExt>(kind: UmpireKind) -> Result<Self, SchemaError> {
        let error = |reason: String| SchemaError {
            kind: kind.name(),
            reason,
        };
        let crd = K::crd();
        let openapi = crd
            .spec
            .versions
            .first()
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .ok_or_else(|| error("it has no openAPIV3Schema".into()))
            .and_then(|schema| serde_json::to_value(schema).map_err(|e| error(e.to_string())))?;
        Ok(Self {
            structural: structural::StructuralSchema::new(&openapi).map_err(error)?,
            cel: cel::CelRules::new(&openapi, API_GROUP, "v1alpha1", kind.name()).map_err(error)?,
        })
    }
}

/// Validates TraceProjects and EvalPolicies against their generated CRDs and Rust rules.
pub struct Validator {
    trace_project: KindRules,
    eval_policy: KindRules,
}

impl Validator {
    pub fn new() -> Result<Self, SchemaError> {
        Ok(Self {
            trace_project: KindRules::for_crd::<TraceProject>(UmpireKind::TraceProject)?,
            eval_policy: KindRules::for_crd::<EvalPolicy>(UmpireKind::EvalPolicy)?,
        })
    }

    /// Validates `object` as `kind`. Later layers run only when earlier ones pass, as in the
    /// API server (CEL on a mistyped value would only add noise).
    pub fn validate(&self, kind: UmpireKind, object: &Value, refs: &dyn References) -> Validated {
        let mut findings = Findings::default();
        let rules = match kind {
            UmpireKind::TraceProject => &self.trace_project,
            UmpireKind::EvalPolicy => &self.eval_policy,
        };
        // Status is the controller's; the API server ignores it on create and update.
        let mut object = object.clone();
        if let Some(fields) = object.as_object_mut() {
            fields.remove("status");
        }
        check_metadata(&object, &mut findings);
        findings.errors.extend(rules.structural.check(&object));
        if findings.errors.is_empty() {
            findings.errors.extend(rules.cel.check(&object));
        }
        if !findings.errors.is_empty() {
            findings.errors.sort_by(|a, b| a.path.cmp(&b.path));
            return Validated {
                resource: None,
                findings,
            };
        }
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_owned();
        let resource = match kind {
            UmpireKind::TraceProject => typed::<TraceProject>(object, &mut findings).map(|tp| {
                semantic::trace_project(&tp.spec, &mut findings);
                UmpireResource::TraceProject(Box::new(tp))
            }),
            UmpireKind::EvalPolicy => typed::<EvalPolicy>(object, &mut findings).map(|ep| {
                semantic::eval_policy(&namespace, &ep.spec, refs, &mut findings);
                UmpireResource::EvalPolicy(Box::new(ep))
            }),
        };
        findings.errors.sort_by(|a, b| a.path.cmp(&b.path));
        let resource = resource.filter(|_| findings.errors.is_empty());
        Validated { resource, findings }
    }
}

fn typed<T: serde::de::DeserializeOwned>(object: Value, findings: &mut Findings) -> Option<T> {
    serde_path_to_error::deserialize(object)
        .map_err(|e| {
            let pointer = format!("/{}", e.path().to_string().replace('.', "/"));
            findings.error(FieldPath::from_pointer(&pointer), e.inner().to_string());
        })
        .ok()
}

/// The API server requires a name; its form (a short DNS label) is a CEL rule in the CRD.
fn check_metadata(object: &Value, findings: &mut Findings) {
    if object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none()
    {
        findings.error(
            FieldPath::root().field("metadata").field("name"),
            "required field is missing",
        );
    }
}
