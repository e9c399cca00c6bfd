//! Deletion's consequences: garbage collection of dependents (background or orphan) and
//! the contents of a deleted namespace.

use serde_json::Value;

use super::*;

impl Store {
    /// Removes an object for good (rv already bumped), then collects what it owned.
    pub(super) fn remove(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        last: Value,
        propagation: Option<&str>,
    ) {
        self.objects.remove(&Self::key(t, namespace, name));
        let uid = last["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.emit(t, EventType::Deleted, last.clone(), None);
        if t.group == "apiextensions.k8s.io" && t.plural == "customresourcedefinitions" {
            self.unregister_crd(&last);
        }
        if t.group.is_empty() && t.plural == "namespaces" {
            self.delete_namespace_contents(name);
        }
        self.collect_dependents(&uid, propagation == Some("Orphan"));
    }

    /// Garbage collection: dependents whose owners are all gone are deleted (through the
    /// normal delete path, so their own finalizers are honoured); `orphan` only strips the
    /// reference.
    pub(super) fn collect_dependents(&mut self, owner_uid: &str, orphan: bool) {
        if owner_uid.is_empty() {
            return;
        }
        let dependents: Vec<ObjectKey> = self
            .objects
            .iter()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (group, plural, namespace, name) in dependents {
            let Some(t) = self
                .types
                .iter()
                .find(|t| t.group == group && t.plural == plural)
                .cloned()
            else {
                continue;
            };
            let Ok(object) = self.get(&t, &namespace, &name) else {
                continue;
            };
            let remaining: Vec<Value> = object["metadata"]["ownerReferences"]
                .as_array()
                .map(|refs| {
                    refs.iter()
                        .filter(|r| r["uid"] != owner_uid)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let owners_alive = remaining.iter().any(|r| {
                let uid = r["uid"].as_str().unwrap_or_default();
                self.objects.values().any(|o| o["metadata"]["uid"] == uid)
            });
            if orphan || owners_alive {
                let mut stripped = object.clone();
                stripped["metadata"]["ownerReferences"] = json!(remaining);
                let _ = self.commit(
                    &t,
                    &namespace,
                    &name,
                    object,
                    stripped,
                    "garbage-collector",
                    "update",
                );
            } else {
                let _ = self.delete(&t, &namespace, &name, &DeleteOptions::default());
            }
        }
    }

    pub(super) fn delete_namespace_contents(&mut self, namespace: &str) {
        let keys: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|(_, _, ns, _)| ns == namespace)
            .cloned()
            .collect();
        for (group, plural, ns, name) in keys {
            if let Some(t) = self
                .types
                .iter()
                .find(|t| t.group == group && t.plural == plural)
                .cloned()
            {
                let _ = self.delete(&t, &ns, &name, &DeleteOptions::default());
            }
        }
    }
}
