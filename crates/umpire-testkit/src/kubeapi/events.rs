//! Events are one resource with two API views, as on a real server: what is written through
//! `events.k8s.io/v1` is also listed (and read) through core `v1` — `kubectl get events` and
//! `kubectl describe` read the core view, kube-runtime's recorder writes the new one.

use serde_json::{Value, json};

use super::select::{FieldSelector, LabelSelector};
use super::store::Store;
use super::types::ResourceType;

/// An `events.k8s.io/v1` Event as the core `v1` view shows it.
pub fn to_core(event: &Value) -> Value {
    let series = &event["series"];
    let event_time = event["eventTime"].clone();
    let first = if event["deprecatedFirstTimestamp"].is_string() {
        event["deprecatedFirstTimestamp"].clone()
    } else {
        event_time.clone()
    };
    let last = if series["lastObservedTime"].is_string() {
        series["lastObservedTime"].clone()
    } else if event["deprecatedLastTimestamp"].is_string() {
        event["deprecatedLastTimestamp"].clone()
    } else {
        first.clone()
    };
    let count = series["count"]
        .as_i64()
        .or_else(|| event["deprecatedCount"].as_i64())
        .unwrap_or(1);
    let mut core = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": event["metadata"].clone(),
        "involvedObject": event["regarding"].clone(),
        "reason": event["reason"].clone(),
        "message": event["note"].clone(),
        "type": event["type"].clone(),
        "action": event["action"].clone(),
        "related": event["related"].clone(),
        "eventTime": event_time,
        "firstTimestamp": first,
        "lastTimestamp": last,
        "count": count,
        "source": {"component": event["reportingController"].clone()},
        "reportingComponent": event["reportingController"].clone(),
        "reportingInstance": event["reportingInstance"].clone(),
    });
    if let Value::Object(map) = &mut core {
        map.retain(|_, v| !v.is_null());
        if let Some(Value::Object(metadata)) = map.get_mut("metadata") {
            metadata.remove("managedFields");
        }
    }
    core
}

pub fn is_core_events(t: &ResourceType) -> bool {
    t.group.is_empty() && t.plural == "events"
}

/// `events.k8s.io/v1` Events as the core view lists them (selectors apply to that view).
pub fn new_events_in_core_view(
    store: &Store,
    namespace: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Vec<Value> {
    let Ok(new) = store.resolve("events.k8s.io", "v1", "events") else {
        return Vec::new();
    };
    let everything = LabelSelector::default();
    let no_fields = FieldSelector::default();
    store
        .list(&new, namespace, &everything, &no_fields, None, None)
        .0
        .iter()
        .map(to_core)
        .filter(|e| labels.matches(e) && fields.matches(e))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_core_view_names_the_object_and_counts_the_series() {
        let event = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "bot.1", "namespace": "shop"},
            "regarding": {"kind": "TraceProject", "name": "bot", "namespace": "shop"},
            "reason": "IngestUnavailable", "note": "0/2 ingest pods ready", "type": "Warning",
            "action": "Reconcile", "reportingController": "umpire-controller",
            "reportingInstance": "ctl-a", "eventTime": "2026-11-30T21:00:00.000000Z",
            "series": {"count": 3, "lastObservedTime": "2026-11-30T21:05:00.000000Z"}
        });
        let core = to_core(&event);
        assert_eq!(core["involvedObject"]["name"], "bot");
        assert_eq!(core["message"], "0/2 ingest pods ready");
        assert_eq!(core["count"], 3);
        assert_eq!(core["lastTimestamp"], "2026-11-30T21:05:00.000000Z");
        assert_eq!(core["source"]["component"], "umpire-controller");
    }
}
