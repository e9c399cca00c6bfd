//! Validation of Umpire resources in three layers, the first two being exactly what the API
//! server enforces from the generated CRD:
//!
//! 1. **structural**: the CRD's OpenAPI schema (types, enums, ranges, patterns, required,
//!    list-map keys), plus unknown fields as errors;
//! 2. **CEL**: the CRD's `x-kubernetes-validations`, evaluated in-process;
//! 3. **semantic**: what CEL cannot do (regexes compile, JSON Schemas are valid, templates
//!    reference known variables, referenced ConfigMaps hold schemas).
//!
//! `umpire check`, `umpire eval` and the controller all validate through `Validator` (feature
//! `validation`: the JSON Schema and CEL engines). Without it, this module keeps what
//! compiling a spec needs — field paths, findings, references — so the workers, which run
//! specs the controller already validated, carry no schema or CEL engine.

#[cfg(feature = "validation")]
mod cel;
mod path;
#[cfg(feature = "validation")]
mod semantic;
#[cfg(feature = "validation")]
mod structural;
#[cfg(feature = "validation")]
mod validator;

use serde_json::Value;

pub use path::FieldPath;
#[cfg(feature = "validation")]
pub use validator::{SchemaError, UmpireResource, Validated, Validator};

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

// Only the validator records findings.
#[cfg(feature = "validation")]
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
