//! The CRD's `x-kubernetes-validations` CEL rules, evaluated in-process with the same
//! Kubernetes CEL libraries the API server uses (kube-cel), so an offline verdict matches.

use kube::core::cel::{CompiledSchema, ErrorKind, RootContext, Validator, compile_schema};
use serde_json::Value;

use super::FieldError;
use super::path::FieldPath;

pub(crate) struct CelRules {
    compiled: CompiledSchema,
    root: RootContext,
}

impl CelRules {
    pub(crate) fn new(
        openapi: &Value,
        api_group: &str,
        api_version: &str,
        kind: &str,
    ) -> Result<Self, String> {
        let compiled = compile_schema(openapi);
        if compiled.has_errors() {
            let errors: Vec<String> = compiled
                .compilation_errors()
                .iter()
                .map(|e| e.to_string())
                .collect();
            return Err(format!(
                "CRD CEL rules do not compile: {}",
                errors.join("; ")
            ));
        }
        Ok(Self {
            compiled,
            root: RootContext {
                api_version: api_version.to_owned(),
                api_group: api_group.to_owned(),
                kind: kind.to_owned(),
            },
        })
    }

    pub(crate) fn check(&self, object: &Value) -> Vec<FieldError> {
        // A Validator holds a CEL context that is not Sync; building one is cheap next to
        // evaluating the rules, so each check gets its own.
        let validator = Validator::new();
        match validator.validate_compiled_with_context(
            &self.compiled,
            object,
            None,
            Some(&self.root),
        ) {
            Ok(()) => Vec::new(),
            Err(errors) => errors
                .iter()
                .map(|error| {
                    let message = match error.kind {
                        ErrorKind::ValidationFailure => error.message.clone(),
                        _ => format!(
                            "rule `{}` could not be evaluated: {}",
                            error.rule, error.message
                        ),
                    };
                    FieldError::new(FieldPath::parse(&error.field_path), message)
                })
                .collect(),
        }
    }
}
