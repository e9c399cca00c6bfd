//! The CRD's structural schema (types, enums, ranges, patterns, required fields, list-map
//! keys) checked offline, with unknown fields reported instead of silently pruned.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::{Map, Value};

use super::FieldError;
use super::path::FieldPath;
use crate::common::{BYTE_SIZE_PATTERN, DURATION_PATTERN, NAME_PATTERN};
use crate::eval_policy::SPAN_FIELD_PATTERN;

/// One kind's `openAPIV3Schema`, compiled for offline checks.
pub(crate) struct StructuralSchema {
    openapi: Value,
    validator: jsonschema::Validator,
}

impl StructuralSchema {
    pub(crate) fn new(openapi: &Value) -> Result<Self, String> {
        // A CRD's schema leaves out the fields every object has; the API server supplies them.
        let mut openapi = openapi.clone();
        if let Some(properties) = openapi.get_mut("properties").and_then(Value::as_object_mut) {
            properties
                .entry("apiVersion")
                .or_insert(serde_json::json!({"type": "string"}));
            properties
                .entry("kind")
                .or_insert(serde_json::json!({"type": "string"}));
            properties.entry("metadata").or_insert(
                serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        }
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .build(&to_json_schema(&openapi))
            .map_err(|e| e.to_string())?;
        Ok(Self { openapi, validator })
    }

    pub(crate) fn check(&self, object: &Value) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = self
            .validator
            .iter_errors(object)
            .flat_map(|error| {
                let path = FieldPath::from_pointer(error.instance_path().as_str());
                describe(
                    &self.openapi,
                    &path,
                    error.instance_path().as_str(),
                    error.kind(),
                    error.instance(),
                )
            })
            .collect();
        check_list_keys(&self.openapi, object, &FieldPath::root(), &mut errors);
        errors.sort_by(|a, b| a.path.cmp(&b.path));
        errors.dedup();
        errors
    }
}

/// Kubernetes' OpenAPI v3 dialect → JSON Schema draft 4: `nullable` becomes a `null` type,
/// int-or-string becomes a type union, and objects with declared properties reject unknown
/// ones (the API server would prune them; a typo must not pass silently).
fn to_json_schema(node: &Value) -> Value {
    let Some(map) = node.as_object() else {
        return node.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let converted = match key.as_str() {
            "properties" => Value::Object(
                value
                    .as_object()
                    .map(|props| {
                        props
                            .iter()
                            .map(|(name, schema)| (name.clone(), to_json_schema(schema)))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            "items" | "additionalProperties" | "not" => to_json_schema(value),
            "allOf" | "anyOf" | "oneOf" => Value::Array(
                value
                    .as_array()
                    .map(|all| all.iter().map(to_json_schema).collect())
                    .unwrap_or_default(),
            ),
            // Annotations and Kubernetes extensions do not constrain values here.
            "description" | "title" | "format" | "nullable" | "default" | "example" => continue,
            other if other.starts_with("x-kubernetes-") => continue,
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        out.insert("type".into(), serde_json::json!(["integer", "string"]));
    }
    if map.get("nullable") == Some(&Value::Bool(true))
        && let Some(Value::String(kind)) = out.get("type").cloned()
    {
        out.insert("type".into(), serde_json::json!([kind, "null"]));
    }
    let preserves_unknown =
        map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if map.contains_key("properties")
        && !map.contains_key("additionalProperties")
        && !preserves_unknown
    {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

/// The schema node describing the value at `pointer` (a JSON pointer into the object).
fn schema_at<'s>(schema: &'s Value, pointer: &str) -> Option<&'s Value> {
    let mut node = schema;
    for segment in pointer.split('/').skip(1) {
        node = if let Some(next) = node.get("properties").and_then(|p| p.get(segment)) {
            next
        } else if let Some(items) = node.get("items") {
            items
        } else {
            node.get("additionalProperties").filter(|v| v.is_object())?
        };
    }
    Some(node)
}

fn describe(
    openapi: &Value,
    path: &FieldPath,
    pointer: &str,
    kind: &ValidationErrorKind,
    instance: &Value,
) -> Vec<FieldError> {
    let schema = schema_at(openapi, pointer);
    let one = |message: String| vec![FieldError::new(path.clone(), message)];
    match kind {
        ValidationErrorKind::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|name| {
                let known: Vec<&str> = schema
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object)
                    .map(|props| props.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let hint = closest(name, &known)
                    .map(|near| format!("; did you mean `{near}`?"))
                    .unwrap_or_else(|| format!("; known fields: {}", known.join(", ")));
                FieldError::new(path.field(name), format!("unknown field{hint}"))
            })
            .collect(),
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            vec![FieldError::new(
                path.field(name),
                "required field is missing".into(),
            )]
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(ts) => {
                    let names: Vec<String> = ts
                        .iter()
                        .map(|t| t.to_string())
                        .filter(|t| t != "null")
                        .collect();
                    names.join(" or ")
                }
            };
            one(format!(
                "must be {}, not {}",
                article(&expected),
                json_type(instance)
            ))
        }
        ValidationErrorKind::Enum { options } => {
            let options: Vec<String> = options
                .as_array()
                .map(|all| {
                    all.iter()
                        .map(|o| {
                            o.as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| o.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default();
            one(format!("{instance} is not one of: {}", options.join(", ")))
        }
        ValidationErrorKind::Pattern { pattern } => one(pattern_message(pattern, instance)),
        ValidationErrorKind::Minimum { limit } => {
            one(format!("must be at least {limit}, not {instance}"))
        }
        ValidationErrorKind::Maximum { limit } => {
            one(format!("must be at most {limit}, not {instance}"))
        }
        ValidationErrorKind::MinLength { limit } => {
            one(format!("must be at least {limit} characters long"))
        }
        ValidationErrorKind::MaxLength { limit } => {
            one(format!("must be at most {limit} characters long"))
        }
        ValidationErrorKind::MinItems { limit } => one(format!("needs at least {limit} item(s)")),
        ValidationErrorKind::MaxItems { limit } => one(format!("takes at most {limit} item(s)")),
        ValidationErrorKind::MinProperties { limit } => {
            one(format!("needs at least {limit} entries"))
        }
        ValidationErrorKind::MaxProperties { limit } => {
            one(format!("takes at most {limit} entries"))
        }
        _ => one(kind_message(kind, instance)),
    }
}

fn kind_message(kind: &ValidationErrorKind, instance: &Value) -> String {
    format!("{instance} is invalid ({})", kind.keyword())
}

fn pattern_message(pattern: &str, instance: &Value) -> String {
    let what = if pattern == DURATION_PATTERN {
        "a duration like 300ms, 10s, 5m or 1h30m (units: ns, us, ms, s, m, h)"
    } else if pattern == BYTE_SIZE_PATTERN {
        "a byte size like 512Ki, 4Mi or 10Gi"
    } else if pattern == NAME_PATTERN {
        "a DNS label: lowercase letters, digits and '-', starting and ending alphanumeric"
    } else if pattern == SPAN_FIELD_PATTERN {
        "a span field: input, output, context, system, messages, toolArguments, attributes.<key> or resource.<key>"
    } else if pattern.starts_with("^https?://") {
        "an http:// or https:// URL"
    } else {
        return format!("{instance} does not match the pattern {pattern}");
    };
    format!("{instance} is not {what}")
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn article(type_name: &str) -> String {
    match type_name {
        "object" => "an object".into(),
        "integer" => "an integer".into(),
        "array" => "a list".into(),
        other => format!("a {other}"),
    }
}

/// The known name within edit distance 2 of `name`, if any (typos like `judgs`).
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| {
            (
                edit_distance(&name.to_lowercase(), &candidate.to_lowercase()),
                *candidate,
            )
        })
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// `x-kubernetes-list-type: map` keys and `set` items must be unique, as the API server
/// enforces (two judges named alike would silently shadow each other).
fn check_list_keys(schema: &Value, value: &Value, path: &FieldPath, errors: &mut Vec<FieldError>) {
    match value {
        Value::Object(fields) => {
            for (name, child) in fields {
                let child_schema = schema
                    .get("properties")
                    .and_then(|p| p.get(name))
                    .or_else(|| schema.get("additionalProperties").filter(|s| s.is_object()));
                if let Some(child_schema) = child_schema {
                    check_list_keys(child_schema, child, &path.field(name), errors);
                }
            }
        }
        Value::Array(items) => {
            let item_schema = schema.get("items");
            match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("map") => {
                    let keys: Vec<&str> = schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let mut seen: Vec<Vec<&Value>> = Vec::new();
                    for (index, item) in items.iter().enumerate() {
                        let key: Vec<&Value> = keys
                            .iter()
                            .map(|k| item.get(k).unwrap_or(&Value::Null))
                            .collect();
                        if seen.contains(&key) {
                            let shown: Vec<String> = keys
                                .iter()
                                .zip(&key)
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect();
                            errors.push(FieldError::new(
                                path.index(index),
                                format!(
                                    "duplicate entry {}: each must be unique",
                                    shown.join(", ")
                                ),
                            ));
                        }
                        seen.push(key);
                    }
                }
                Some("set") => {
                    for (index, item) in items.iter().enumerate() {
                        if items[..index].contains(item) {
                            errors.push(FieldError::new(
                                path.index(index),
                                format!("duplicate value {item}"),
                            ));
                        }
                    }
                }
                _ => {}
            }
            if let Some(item_schema) = item_schema {
                for (index, item) in items.iter().enumerate() {
                    check_list_keys(item_schema, item, &path.index(index), errors);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> StructuralSchema {
        StructuralSchema::new(&json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["items"],
                    "properties": {
                        "window": {"type": "string", "pattern": DURATION_PATTERN, "nullable": true},
                        "count": {"type": "integer", "minimum": 1},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "items": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "properties": {"name": {"type": "string"}}}
                        }
                    }
                }
            }
        }))
        .unwrap()
    }

    fn messages(object: Value) -> Vec<String> {
        schema()
            .check(&object)
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    #[test]
    fn accepts_valid_objects_including_nulls_and_free_form() {
        let ok = json!({"spec": {"window": null, "count": 2, "free": {"any": [1]}, "items": [{"name": "a"}]}});
        assert_eq!(messages(ok), Vec::<String>::new());
    }

    #[test]
    fn reports_unknown_fields_with_suggestions() {
        let errors = messages(json!({"spec": {"items": [], "cuont": 1}}));
        assert_eq!(errors, ["spec.cuont: unknown field; did you mean `count`?"]);
    }

    #[test]
    fn reports_types_ranges_patterns_and_required() {
        let errors = messages(json!({"spec": {"window": "10 minutes", "count": 0}}));
        assert_eq!(
            errors,
            [
                "spec.count: must be at least 1, not 0",
                "spec.items: required field is missing",
                "spec.window: \"10 minutes\" is not a duration like 300ms, 10s, 5m or 1h30m (units: ns, us, ms, s, m, h)",
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"items": {}}})),
            ["spec.items: must be a list, not an object"]
        );
    }

    #[test]
    fn reports_duplicate_list_map_keys() {
        let errors =
            messages(json!({"spec": {"items": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}}));
        assert_eq!(
            errors,
            ["spec.items[2]: duplicate entry name=\"a\": each must be unique"]
        );
    }

    #[test]
    fn edit_distance_finds_typos() {
        assert_eq!(closest("judgs", &["judges", "alerts"]), Some("judges"));
        assert_eq!(closest("zzz", &["judges"]), None);
    }
}
