//! Validation of Umpire resources in three layers, the first two being exactly what the API
//! server enforces from the generated CRD:
//!
//! 1. **structural**: the CRD's OpenAPI schema (types, enums, ranges, patterns, required,
//!    list-map keys), plus unknown fields as errors;
//! 2. **CEL**: the CRD's `x-kubernetes-validations`, evaluated in-process;
//! 3. **semantic**: what CEL cannot do (regexes compile, JSON Schemas are valid, templates
//!    reference known variables, referenced ConfigMaps hold schemas).
//!
//! `umpire check`, `umpire eval` and the controller all validate through [`Validator`].

mod cel;
mod path;
mod semantic;
mod structural;

use kube::CustomResourceExt;
use serde_json::Value;

pub use path::FieldPath;

use crate::eval_policy::EvalPolicy;
use crate::trace_project::TraceProject;

/// A problem (or note) at one field of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: FieldPath,
    pub message: String,
}

impl FieldError {
    pub fn new(path: FieldPath, message: String) -> Self {
        Self { path, message }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// What validation found: errors make a resource invalid, notes do not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    pub errors: Vec<FieldError>,
    pub notes: Vec<FieldError>,
}

impl Findings {
    pub(crate) fn error(&mut self, path: FieldPath, message: impl Into<String>) {
        self.errors.push(FieldError::new(path, message.into()));
    }

    pub(crate) fn note(&mut self, path: FieldPath, message: impl Into<String>) {
        self.notes.push(FieldError::new(path, message.into()));
    }
}

/// The result of looking up a referenced ConfigMap key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefLookup {
    Found(String),
    MissingKey,
    MissingObject,
    /// The validator cannot see it (offline, and not among the checked files).
    Unavailable,
}

/// Resolves references from a spec to other objects in its namespace.
pub trait References {
    fn config_map_value(&self, namespace: &str, name: &str, key: &str) -> RefLookup;
}

/// No references can be resolved.
pub struct NoReferences;

impl References for NoReferences {
    fn config_map_value(&self, _: &str, _: &str, _: &str) -> RefLookup {
        RefLookup::Unavailable
    }
}

/// The kinds Umpire serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UmpireKind {
    TraceProject,
    EvalPolicy,
}

impl UmpireKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::TraceProject => "TraceProject",
            Self::EvalPolicy => "EvalPolicy",
        }
    }
}

/// What a document is, judged by its `apiVersion` and `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentKind {
    Umpire(UmpireKind),
    /// Claims the `umpire.dev` group but is not a kind/version Umpire serves.
    UnknownUmpire(String),
    /// Some other API's object, e.g. a ConfigMap.
    Foreign {
        api_version: String,
        kind: String,
    },
}

pub const API_GROUP: &str = "umpire.dev";
pub const API_VERSION: &str = "umpire.dev/v1alpha1";

pub fn classify(object: &Value) -> DocumentKind {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let group = api_version
        .split_once('/')
        .map(|(group, _)| group)
        .unwrap_or_default();
    if group != API_GROUP {
        return DocumentKind::Foreign {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        };
    }
    let known = match kind {
        "TraceProject" => Some(UmpireKind::TraceProject),
        "EvalPolicy" => Some(UmpireKind::EvalPolicy),
        _ => None,
    };
    match known {
        Some(kind) if api_version == API_VERSION => DocumentKind::Umpire(kind),
        Some(_) => {
            DocumentKind::UnknownUmpire(format!("{api_version} is not served; use {API_VERSION}"))
        }
        None => DocumentKind::UnknownUmpire(format!(
            "kind {kind:?} is not an Umpire kind; use TraceProject or EvalPolicy"
        )),
    }
}

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
