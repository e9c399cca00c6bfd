//! `meta.k8s.io/v1` `Table` answers (what `kubectl get` asks for): Name, then a CRD's
//! `additionalPrinterColumns` evaluated with JSONPath, or Name and Age for built-ins.

use serde_json::{Value, json};
use serde_json_path::JsonPath;

use super::types::ResourceType;

/// `5s`, `3m`, `2h`, `4d`: the age format kubectl shows.
fn human_age(timestamp: &str) -> Option<String> {
    let then =
        time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
            .ok()?;
    let seconds = (time::OffsetDateTime::now_utc() - then)
        .whole_seconds()
        .max(0);
    Some(match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    })
}

/// A Kubernetes JSONPath (`.status.conditions[?(@.type=="Ready")].status`) on an object:
/// the first match, as the API server's column printer takes it.
fn evaluate(path: &str, object: &Value) -> Option<Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let query = JsonPath::parse(&format!("${path}")).ok()?;
    query.query(object).all().first().map(|v| (*v).clone())
}

fn cell(column: &Value, object: &Value) -> Value {
    let value = column["jsonPath"]
        .as_str()
        .and_then(|p| evaluate(p, object));
    match (column["type"].as_str(), value) {
        (Some("date"), Some(Value::String(ts))) => {
            human_age(&ts).map(Value::String).unwrap_or(Value::Null)
        }
        (_, Some(v)) => v,
        (_, None) => Value::Null,
    }
}

/// The columns a real server gives core Events: what `kubectl get events` prints.
fn core_events(items: &[Value], metadata: Value) -> Value {
    let column = |name: &str, priority: i32| {
        json!({"name": name, "type": "string", "format": if name == "Name" { "name" } else { "" },
               "priority": priority, "description": ""})
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|event| {
            let seen = event["lastTimestamp"]
                .as_str()
                .or_else(|| event["eventTime"].as_str())
                .and_then(human_age)
                .map(Value::String)
                .unwrap_or(Value::Null);
            let regarding = &event["involvedObject"];
            let object = format!(
                "{}/{}",
                regarding["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_lowercase(),
                regarding["name"].as_str().unwrap_or_default()
            );
            json!({
                "cells": [seen, event["type"], event["reason"], object, event["message"],
                          event["metadata"]["name"]],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": event["metadata"]},
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [column("Last Seen", 0), column("Type", 0), column("Reason", 0),
                              column("Object", 0), column("Message", 0), column("Name", 1)],
        "rows": rows,
    })
}

pub fn render(t: &ResourceType, items: &[Value], metadata: Value) -> Value {
    if t.group.is_empty() && t.plural == "events" {
        return core_events(items, metadata);
    }
    let mut columns = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace.",
    })];
    let printer: Vec<Value> = if t.printer_columns.is_empty() {
        vec![json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})]
    } else {
        t.printer_columns.clone()
    };
    for column in &printer {
        columns.push(json!({
            "name": column["name"],
            "type": column["type"],
            "format": column.get("format").cloned().unwrap_or(json!("")),
            "priority": column.get("priority").cloned().unwrap_or(json!(0)),
            "description": column.get("description").cloned().unwrap_or(json!("")),
        }));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut cells = vec![item["metadata"]["name"].clone()];
            cells.extend(printer.iter().map(|c| cell(c, item)));
            json!({
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": item["metadata"],
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_columns_use_jsonpath_filters() {
        let object = json!({"status": {"conditions": [
            {"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(
            evaluate(r#".status.conditions[?(@.type=="Ready")].status"#, &object),
            Some(json!("True"))
        );
        assert_eq!(evaluate(".status.missing", &object), None);
    }
}
