//! Field ownership (`metadata.managedFields`) and server-side apply, good enough for one
//! controller plus a user:
//!
//! - every write records which manager set which leaf fields (`FieldsV1`);
//! - an apply conflicts (409) when it sets a field another manager owns to a different value,
//!   unless forced, which takes the field over; equal values are shared;
//! - fields a manager applied before and no longer applies are removed, unless another
//!   manager still owns them;
//! - lists are atomic (replaced whole and owned as one field). The real API server merges
//!   lists with `x-kubernetes-list-type: map|set` item by item; the emulator does not.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// Metadata the server owns; never tracked.
const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// Leaf paths of an object's tracked fields.
pub fn leaves(object: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    if let Value::Object(map) = object {
        for (key, value) in map {
            match key.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    if let Value::Object(meta) = value {
                        for (k, v) in meta {
                            if !SYSTEM_METADATA.contains(&k.as_str()) {
                                collect(v, vec!["metadata".into(), k.clone()], &mut set);
                            }
                        }
                    }
                }
                _ => collect(value, vec![key.clone()], &mut set),
            }
        }
    }
    set
}

fn collect(value: &Value, path: Path, set: &mut FieldSet) {
    match value {
        // An empty object sets no field (`spec: {}` in an apply config owns nothing).
        Value::Object(map) => {
            for (k, v) in map {
                let mut next = path.clone();
                next.push(k.clone());
                collect(v, next, set);
            }
        }
        _ => {
            set.insert(path);
        }
    }
}

pub fn get<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |at, key| at.get(key))
}

fn remove(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = value;
    for key in parents {
        match at.get_mut(key) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Value::Object(map) = at {
        map.remove(last);
    }
}

/// Merges `config` into `live`: objects key by key, everything else replaced.
pub fn deep_merge(live: &mut Value, config: &Value) {
    match (live, config) {
        (Value::Object(live), Value::Object(config)) => {
            for (k, v) in config {
                match live.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        deep_merge(existing, v)
                    }
                    _ => {
                        live.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (live, config) => *live = config.clone(),
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The leaf paths whose values differ between two versions (added, changed or removed).
pub fn changed(old: &Value, new: &Value) -> FieldSet {
    let before = leaves(old);
    let after = leaves(new);
    before
        .union(&after)
        .filter(|p| get(old, p) != get(new, p))
        .cloned()
        .collect()
}

/// `{"f:spec": {"f:replicas": {}}}` from a set of leaf paths.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut at = &mut root;
        for key in path {
            let entry = at
                .entry(format!("f:{key}"))
                .or_insert_with(|| Value::Object(Map::new()));
            at = match entry {
                Value::Object(map) => map,
                _ => unreachable!("entries are always objects"),
            };
        }
    }
    Value::Object(root)
}

pub fn from_fields_v1(fields: &Value) -> FieldSet {
    fn walk(value: &Value, path: Path, set: &mut FieldSet) {
        let children: Vec<(&String, &Value)> = value
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| k.starts_with("f:")).collect())
            .unwrap_or_default();
        if children.is_empty() {
            if !path.is_empty() {
                set.insert(path);
            }
            return;
        }
        for (k, v) in children {
            let mut next = path.clone();
            next.push(k.trim_start_matches("f:").to_owned());
            walk(v, next, set);
        }
    }
    let mut set = FieldSet::new();
    walk(fields, Vec::new(), &mut set);
    set
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub subresource: Option<String>,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub path: Path,
}

/// All entries of one object.
#[derive(Debug, Clone, Default)]
pub struct Managers(pub Vec<Entry>);

impl Managers {
    pub fn read(object: &Value) -> Self {
        let entries = object["metadata"]["managedFields"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| Entry {
                        manager: e["manager"].as_str().unwrap_or_default().to_owned(),
                        operation: e["operation"].as_str().unwrap_or("Update").to_owned(),
                        subresource: e["subresource"].as_str().map(str::to_owned),
                        api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
                        time: e["time"].as_str().unwrap_or_default().to_owned(),
                        fields: from_fields_v1(&e["fieldsV1"]),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self(entries)
    }

    pub fn write(&self, object: &mut Value) {
        let entries: Vec<Value> = self
            .0
            .iter()
            .filter(|e| !e.fields.is_empty())
            .map(|e| {
                let mut entry = json!({
                    "manager": e.manager,
                    "operation": e.operation,
                    "apiVersion": e.api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": to_fields_v1(&e.fields),
                });
                if let Some(sub) = &e.subresource {
                    entry["subresource"] = json!(sub);
                }
                entry
            })
            .collect();
        if let Some(meta) = object["metadata"].as_object_mut() {
            if entries.is_empty() {
                meta.remove("managedFields");
            } else {
                meta.insert("managedFields".into(), Value::Array(entries));
            }
        }
    }

    fn entry_mut(
        &mut self,
        manager: &str,
        operation: &str,
        subresource: Option<&str>,
        api_version: &str,
        time: &str,
    ) -> &mut Entry {
        let position = self.0.iter().position(|e| {
            e.manager == manager
                && e.operation == operation
                && e.subresource.as_deref() == subresource
        });
        let index = match position {
            Some(i) => i,
            None => {
                self.0.push(Entry {
                    manager: manager.into(),
                    operation: operation.into(),
                    subresource: subresource.map(str::to_owned),
                    api_version: api_version.into(),
                    time: time.into(),
                    fields: FieldSet::new(),
                });
                self.0.len() - 1
            }
        };
        let entry = &mut self.0[index];
        entry.time = time.into();
        entry.api_version = api_version.into();
        entry
    }

    /// A non-apply write (create, update, merge/JSON patch): the writer takes every field
    /// whose value it changed, away from everyone else.
    pub fn record_update(
        &mut self,
        manager: &str,
        subresource: Option<&str>,
        old: &Value,
        new: &Value,
        api_version: &str,
        time: &str,
    ) {
        let changed = changed(old, new);
        if changed.is_empty() {
            return;
        }
        for entry in &mut self.0 {
            entry
                .fields
                .retain(|q| !changed.iter().any(|p| overlaps(p, q)));
        }
        let present: FieldSet = changed
            .into_iter()
            .filter(|p| get(new, p).is_some())
            .collect();
        let entry = self.entry_mut(manager, "Update", subresource, api_version, time);
        entry.fields.extend(present);
        self.0.retain(|e| !e.fields.is_empty());
    }

    /// Server-side apply of `config` (already restricted to the fields this endpoint may
    /// change) onto `live`.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &mut self,
        manager: &str,
        subresource: Option<&str>,
        live: &mut Value,
        config: &Value,
        force: bool,
        api_version: &str,
        time: &str,
    ) -> Result<(), Vec<Conflict>> {
        let applied = leaves(config);
        let is_self = |e: &Entry| {
            e.manager == manager
                && e.operation == "Apply"
                && e.subresource.as_deref() == subresource
        };
        let mut conflicts = Vec::new();
        for entry in self
            .0
            .iter()
            .filter(|e| !is_self(e) && e.manager != manager)
        {
            for owned in &entry.fields {
                for path in applied.iter().filter(|p| overlaps(p, owned)) {
                    let shorter = if path.len() <= owned.len() {
                        path
                    } else {
                        owned
                    };
                    if get(live, shorter) != get(config, shorter) {
                        conflicts.push(Conflict {
                            manager: entry.manager.clone(),
                            path: owned.clone(),
                        });
                    }
                }
            }
        }
        conflicts.dedup();
        if !conflicts.is_empty() && !force {
            return Err(conflicts);
        }
        for entry in self.0.iter_mut().filter(|e| !is_self(e)) {
            entry.fields.retain(|q| {
                !conflicts
                    .iter()
                    .any(|c| c.path == *q && c.manager == entry.manager)
            });
        }
        let previous = self
            .0
            .iter()
            .find(|e| is_self(e))
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        for dropped in previous.difference(&applied) {
            let still_owned = self
                .0
                .iter()
                .filter(|e| !is_self(e))
                .any(|e| e.fields.iter().any(|q| overlaps(q, dropped)));
            let reapplied = applied.iter().any(|p| overlaps(p, dropped));
            if !still_owned && !reapplied {
                remove(live, dropped);
            }
        }
        deep_merge(live, config);
        let entry = self.entry_mut(manager, "Apply", subresource, api_version, time);
        entry.fields = applied;
        self.0.retain(|e| !e.fields.is_empty());
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trips() {
        let object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"a": "1"}},
            "data": {"k": "v", "list": [1, 2]}, "empty": {}
        });
        let set = leaves(&object);
        assert_eq!(set.len(), 3);
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }

    #[test]
    fn apply_conflicts_then_force_takes_over_and_dropped_fields_go() {
        let mut live = json!({"metadata": {"name": "l"}, "spec": {"holder": "a", "ttl": 5}});
        let mut managers = Managers::default();
        let config_a = json!({"spec": {"holder": "a", "ttl": 5}});
        managers
            .apply("a", None, &mut live, &config_a, false, "v1", "t")
            .unwrap();
        // Same value: shared, no conflict.
        managers
            .apply(
                "b",
                None,
                &mut live,
                &json!({"spec": {"ttl": 5}}),
                false,
                "v1",
                "t",
            )
            .unwrap();
        let conflict = managers
            .apply(
                "b",
                None,
                &mut live,
                &json!({"spec": {"holder": "b"}}),
                false,
                "v1",
                "t",
            )
            .unwrap_err();
        assert_eq!(conflict[0].manager, "a");
        assert_eq!(live["spec"]["holder"], "a");
        managers
            .apply(
                "b",
                None,
                &mut live,
                &json!({"spec": {"holder": "b"}}),
                true,
                "v1",
                "t",
            )
            .unwrap();
        assert_eq!(live["spec"]["holder"], "b");
        // `a` stops applying ttl: b no longer owns it either (it dropped ttl above) → removed.
        managers
            .apply("a", None, &mut live, &json!({"spec": {}}), false, "v1", "t")
            .unwrap();
        assert_eq!(live["spec"].get("ttl"), None);
        assert_eq!(live["spec"]["holder"], "b");
    }

    #[test]
    fn updates_take_fields_away_from_appliers() {
        let mut live = json!({"spec": {"replicas": 2}});
        let mut managers = Managers::default();
        managers
            .apply(
                "ctl",
                None,
                &mut live,
                &json!({"spec": {"replicas": 2}}),
                false,
                "v1",
                "t",
            )
            .unwrap();
        let old = live.clone();
        live["spec"]["replicas"] = json!(5);
        managers.record_update("kubectl-edit", None, &old, &live, "v1", "t");
        assert!(managers.0.iter().all(|e| e.manager == "kubectl-edit"));
        // The controller's forced re-apply restores its value and ownership.
        managers
            .apply(
                "ctl",
                None,
                &mut live,
                &json!({"spec": {"replicas": 2}}),
                true,
                "v1",
                "t",
            )
            .unwrap();
        assert_eq!(live["spec"]["replicas"], 2);
    }
}
