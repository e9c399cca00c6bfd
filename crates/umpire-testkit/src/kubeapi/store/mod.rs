//! The emulator's object store: one global `resourceVersion` counter, objects as JSON, a
//! bounded event history for watches, and the write rules of the real API server
//! (optimistic concurrency, generation, status subresource, finalizers, garbage collection,
//! field ownership), plus a stand-in for the Deployment controller.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::fields::Managers;
use super::select::{FieldSelector, LabelSelector};
use super::types::{self, ResourceType};

mod controllers;
mod gc;
mod model;
mod patch;
mod rules;

pub use model::*;
use rules::*;

/// `(group, plural)`.
pub type TypeKey = (String, String);
/// `(group, plural, namespace or "", name)`.
type ObjectKey = (String, String, String, String);

pub struct Store {
    rv: u64,
    types: Vec<ResourceType>,
    objects: BTreeMap<ObjectKey, Value>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// Events at or below this version are no longer in the history (410 for watches
    /// starting before it).
    compacted_rv: u64,
    changes: broadcast::Sender<Arc<Change>>,
    uid_seed: u64,
    uids: u64,
    deployments_ready: bool,
    /// False once a pod runner writes Deployment status instead of the stand-in.
    deployments_simulated: bool,
    writes: Vec<WriteRecord>,
}

pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Everything but `metadata` and `status`: what a generation covers.
fn spec_part(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Value::Object(map) = &mut copy {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            rv: 1,
            types: types::builtins(),
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted_rv: 0,
            changes: broadcast::channel(65_536).0,
            uid_seed: seed,
            uids: 0,
            deployments_ready: true,
            deployments_simulated: true,
            writes: Vec::new(),
        }
    }

    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn compacted_rv(&self) -> u64 {
        self.compacted_rv
    }

    pub fn writes(&self) -> &[WriteRecord] {
        &self.writes
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    /// Events after `rv` still in the history.
    pub fn history_after(&self, rv: u64) -> Vec<Arc<Change>> {
        self.history.iter().filter(|c| c.rv > rv).cloned().collect()
    }

    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Result<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "NotFound",
                    format!("the server could not find the requested resource ({group}/{version} {plural})"),
                )
            })
    }

    fn key(t: &ResourceType, namespace: &str, name: &str) -> ObjectKey {
        (
            t.group.clone(),
            t.plural.clone(),
            if t.namespaced {
                namespace.to_owned()
            } else {
                String::new()
            },
            name.to_owned(),
        )
    }

    fn next_uid(&mut self) -> String {
        self.uids += 1;
        let a = self.uid_seed ^ self.uids.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            (a as u16) & 0xfff,
            (self.uids as u16) & 0xfff,
            self.uids
        )
    }

    fn emit(&mut self, t: &ResourceType, kind: EventType, object: Value, old: Option<Value>) {
        let change = Arc::new(Change {
            rv: self.rv,
            type_key: (t.group.clone(), t.plural.clone()),
            namespace: object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            kind,
            object,
            old,
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted_rv = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(change);
    }

    fn record(
        &mut self,
        verb: &'static str,
        t: &ResourceType,
        ns: &str,
        name: &str,
        manager: &str,
    ) {
        self.writes.push(WriteRecord {
            verb,
            plural: t.plural.clone(),
            namespace: ns.to_owned(),
            name: name.to_owned(),
            manager: manager.to_owned(),
        });
    }

    pub fn get(&self, t: &ResourceType, namespace: &str, name: &str) -> Result<Value> {
        self.objects
            .get(&Self::key(t, namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(t, name))
    }

    /// Objects of a type, optionally in one namespace, filtered, sorted by namespace/name,
    /// from after the `continue` token, at most `limit`. Returns the items and the next token.
    pub fn list(
        &self,
        t: &ResourceType,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        after: Option<&str>,
    ) -> (Vec<Value>, Option<String>, usize) {
        let start = after.and_then(decode_continue);
        let mut matching = self
            .objects
            .iter()
            .filter(|((g, p, ns, _), _)| {
                *g == t.group && *p == t.plural && namespace.is_none_or(|n| n == ns)
            })
            .filter(|((_, _, ns, name), _)| {
                start
                    .as_ref()
                    .is_none_or(|(sns, sname)| (ns, name) > (sns, sname))
            })
            .filter(|(_, o)| labels.matches(o) && fields.matches(o))
            .map(|(_, o)| o.clone());
        let mut items = Vec::new();
        let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        for object in matching.by_ref() {
            items.push(object);
            if items.len() == limit {
                break;
            }
        }
        let remaining = matching.count();
        let token = (remaining > 0)
            .then(|| items.last().map(encode_continue))
            .flatten();
        (items, token, remaining)
    }

    /// POST: a new object.
    pub fn create(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        body: Value,
        options: &WriteOptions,
    ) -> Result<Value> {
        let (key, name, mut body) = self.prepare_new(t, namespace, body)?;
        let mut managers = Managers::default();
        managers.record_update(
            &options.manager,
            None,
            &json!({}),
            &body,
            &t.api_version(),
            &now_rfc3339(),
        );
        managers.write(&mut body);
        Ok(self.insert(t, key, namespace, &name, body, &options.manager))
    }

    /// Checks and fills in a new object's identity (name, uid, timestamps, generation).
    fn prepare_new(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        mut body: Value,
    ) -> Result<(ObjectKey, String, Value)> {
        check_kind(t, &body)?;
        let meta = body["metadata"].clone();
        let name = match meta["name"].as_str() {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => match meta["generateName"].as_str() {
                Some(prefix) => format!("{prefix}{}", &self.next_uid()[..5]),
                None => {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        "metadata.name: Required value",
                    ));
                }
            },
        };
        if t.namespaced && namespace.is_empty() {
            return Err(ApiError::bad_request(
                "a namespaced resource needs a namespace",
            ));
        }
        let key = Self::key(t, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{}.{} \"{name}\" already exists", t.plural, t.group),
            ));
        }
        if t.status_subresource
            && let Value::Object(map) = &mut body
        {
            map.remove("status");
        }
        body["apiVersion"] = json!(t.api_version());
        body["kind"] = json!(t.kind);
        let uid = self.next_uid();
        let metadata = &mut body["metadata"];
        metadata["name"] = json!(name);
        if t.namespaced {
            metadata["namespace"] = json!(namespace);
        }
        metadata["uid"] = json!(uid);
        metadata["creationTimestamp"] = json!(now_rfc3339());
        if let Value::Object(m) = metadata {
            m.remove("deletionTimestamp");
            m.remove("managedFields");
            m.remove("resourceVersion");
        }
        if t.status_subresource {
            metadata["generation"] = json!(1);
        }
        Ok((key, name, body))
    }

    fn insert(
        &mut self,
        t: &ResourceType,
        key: ObjectKey,
        namespace: &str,
        name: &str,
        mut body: Value,
        manager: &str,
    ) -> Value {
        self.rv += 1;
        body["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(key, body.clone());
        self.emit(t, EventType::Added, body.clone(), None);
        self.record("create", t, namespace, name, manager);
        self.after_write(t, &body);
        body
    }

    /// PUT (`subresource` `None` or `status`).
    pub fn update(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        body: Value,
        options: &WriteOptions,
    ) -> Result<Value> {
        check_kind(t, &body)?;
        let old = self.get(t, namespace, name)?;
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
            && rv
                != old["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
        {
            return Err(conflict(t, name));
        }
        self.write(t, namespace, name, old, body, options, "update")
    }

    /// Stores a changed object (no-op writes change nothing, as in the real server),
    /// bumping `resourceVersion` and, on spec changes, `generation`; finishes a deletion
    /// once the last finalizer is gone.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        old: Value,
        mut new: Value,
        manager: &str,
        verb: &'static str,
    ) -> Result<Value> {
        // System metadata always comes from the stored object.
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
            "resourceVersion",
            "name",
            "namespace",
        ] {
            match old["metadata"].get(field) {
                Some(value) => new["metadata"][field] = value.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        new["apiVersion"] = json!(t.api_version());
        new["kind"] = json!(t.kind);
        if without_times(&new) == without_times(&old) {
            return Ok(old);
        }
        if t.status_subresource && spec_part(&new) != spec_part(&old) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        let finalizers_empty = new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(verb, t, namespace, name, manager);
        if new["metadata"]["deletionTimestamp"].is_string() && finalizers_empty {
            self.remove(t, namespace, name, new.clone(), None);
            return Ok(new);
        }
        self.objects
            .insert(Self::key(t, namespace, name), new.clone());
        self.emit(t, EventType::Modified, new.clone(), Some(old));
        self.after_write(t, &new);
        Ok(new)
    }

    /// DELETE: immediate without finalizers; otherwise marks `deletionTimestamp` and waits.
    pub fn delete(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Value> {
        let old = self.get(t, namespace, name)?;
        if let Some(uid) = &options.precondition_uid
            && old["metadata"]["uid"].as_str() != Some(uid)
        {
            return Err(conflict(t, name));
        }
        if let Some(rv) = &options.precondition_rv
            && old["metadata"]["resourceVersion"].as_str() != Some(rv)
        {
            return Err(conflict(t, name));
        }
        let has_finalizers = old["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if old["metadata"]["deletionTimestamp"].is_string() {
                return Ok(old);
            }
            let mut marked = old.clone();
            marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            self.rv += 1;
            marked["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            self.objects
                .insert(Self::key(t, namespace, name), marked.clone());
            self.emit(t, EventType::Modified, marked.clone(), Some(old));
            self.record("delete", t, namespace, name, "");
            return Ok(marked);
        }
        self.rv += 1;
        let mut gone = old;
        gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record("delete", t, namespace, name, "");
        self.remove(
            t,
            namespace,
            name,
            gone.clone(),
            options.propagation.as_deref(),
        );
        Ok(gone)
    }
}
