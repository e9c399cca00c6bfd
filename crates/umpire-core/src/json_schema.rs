//! JSON Schemas that judges validate outputs against.

use serde_json::Value;

/// A JSON Schema that is itself valid and compiled, ready to validate documents.
pub struct CompiledJsonSchema {
    validator: jsonschema::Validator,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid JSON Schema: {0}")]
pub struct InvalidJsonSchema(pub String);

impl CompiledJsonSchema {
    /// Checks `schema` against its meta-schema (draft from `$schema`, default 2020-12) and
    /// compiles it. Remote `$ref`s are not fetched: a judge must not depend on the network.
    pub fn compile(schema: &Value) -> Result<Self, InvalidJsonSchema> {
        jsonschema::meta::validate(schema).map_err(|e| InvalidJsonSchema(e.to_string()))?;
        let validator =
            jsonschema::validator_for(schema).map_err(|e| InvalidJsonSchema(e.to_string()))?;
        Ok(Self { validator })
    }

    /// The first few violations of `document`, as `path: message` lines; empty when valid.
    pub fn violations(&self, document: &Value, limit: usize) -> Vec<String> {
        self.validator
            .iter_errors(document)
            .take(limit)
            .map(|error| {
                format!(
                    "{}: {}",
                    pointer_or_root(error.instance_path().as_str()),
                    error
                )
            })
            .collect()
    }

    pub fn is_valid(&self, document: &Value) -> bool {
        self.validator.is_valid(document)
    }
}

fn pointer_or_root(pointer: &str) -> &str {
    if pointer.is_empty() { "/" } else { pointer }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compiles_and_validates() {
        let schema = CompiledJsonSchema::compile(&json!({
            "type": "object",
            "required": ["answer"],
            "properties": {"answer": {"type": "string"}}
        }))
        .unwrap();
        assert!(schema.is_valid(&json!({"answer": "yes"})));
        let violations = schema.violations(&json!({"answer": 3}), 5);
        assert_eq!(violations.len(), 1);
        assert!(violations[0].starts_with("/answer:"), "{violations:?}");
    }

    #[test]
    fn rejects_invalid_schemas() {
        assert!(CompiledJsonSchema::compile(&json!({"type": "strnig"})).is_err());
        assert!(CompiledJsonSchema::compile(&json!({"minLength": -1})).is_err());
    }
}
