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

/// `(group, plural)`.
pub type TypeKey = (String, String);
/// `(group, plural, namespace or "", name)`.
type ObjectKey = (String, String, String, String);

/// A Kubernetes `Status` failure.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    pub fn not_found(t: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{}.{} \"{name}\" not found", t.plural, t.group),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        })
    }
}

pub type Result<T> = std::result::Result<T, ApiError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub type_key: TypeKey,
    pub namespace: String,
    pub kind: EventType,
    pub object: Value,
    /// The previous version (for selector transitions).
    pub old: Option<Value>,
}

/// A successful write, for tests that check who wrote what.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRecord {
    pub verb: &'static str,
    pub plural: String,
    pub namespace: String,
    pub name: String,
    pub manager: String,
}

/// How a PATCH body is interpreted (from its content type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// RFC 7386. Strategic merge patches are treated as merge patches (lists replaced whole).
    Merge,
    /// RFC 6902, including `test`.
    Json,
    /// Server-side apply.
    Apply,
}

/// Parameters of a write that are not in the body.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub manager: String,
    pub force: bool,
    pub subresource: Option<String>,
}

/// `DeleteOptions` the emulator honours.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `Orphan` keeps dependents (their ownerReference to this object is removed);
    /// `Background` and `Foreground` both delete dependents once the owner is gone.
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

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

    /// PATCH of any kind; an apply patch creates the object when it is missing.
    pub fn patch(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        kind: PatchKind,
        patch: Value,
        options: &WriteOptions,
    ) -> Result<Value> {
        let existing = self.objects.get(&Self::key(t, namespace, name)).cloned();
        let old = match (existing, kind) {
            (Some(old), _) => old,
            (None, PatchKind::Apply) => {
                if options.subresource.is_some() {
                    return Err(ApiError::not_found(t, name));
                }
                return self.apply_create(t, namespace, name, patch, options);
            }
            (None, _) => return Err(ApiError::not_found(t, name)),
        };
        let candidate = match kind {
            PatchKind::Merge => {
                let mut candidate = old.clone();
                json_patch::merge(&mut candidate, &patch);
                candidate
            }
            PatchKind::Json => {
                // Like the real server (evanphx/json-patch), `test` of a missing path against
                // `null` passes: kube-runtime's finalizer helper relies on it.
                let patch = match patch {
                    Value::Array(ops) => Value::Array(
                        ops.into_iter()
                            .filter(|op| {
                                !(op["op"] == "test"
                                    && op["value"].is_null()
                                    && op["path"]
                                        .as_str()
                                        .is_some_and(|p| old.pointer(p).is_none()))
                            })
                            .collect(),
                    ),
                    other => other,
                };
                let operations: json_patch::Patch = serde_json::from_value(patch)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                let mut candidate = old.clone();
                json_patch::patch(&mut candidate, &operations).map_err(|e| {
                    // A failed `test` is a conflict in the real API server's answer too.
                    ApiError::new(422, "Invalid", format!("the JSON patch failed: {e}"))
                })?;
                candidate
            }
            PatchKind::Apply => {
                check_kind(t, &patch)?;
                return self.apply_existing(t, namespace, name, old, patch, options);
            }
        };
        if let Some(rv) = patch_rv(&candidate, &old)
            && rv
                != old["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
        {
            return Err(conflict(t, name));
        }
        self.write(t, namespace, name, old, candidate, options, "patch")
    }

    fn apply_create(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        config: Value,
        options: &WriteOptions,
    ) -> Result<Value> {
        check_kind(t, &config)?;
        require_manager(options)?;
        let (key, name, mut body) =
            self.prepare_new(t, namespace, json!({"metadata": {"name": name}}))?;
        let config = restrict(t, None, config);
        let mut managers = Managers::default();
        managers
            .apply(
                &options.manager,
                None,
                &mut body,
                &config,
                true,
                &t.api_version(),
                &now_rfc3339(),
            )
            .map_err(|_| ApiError::new(500, "InternalError", "conflict on a new object"))?;
        managers.write(&mut body);
        Ok(self.insert(t, key, namespace, &name, body, &options.manager))
    }

    fn apply_existing(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        old: Value,
        config: Value,
        options: &WriteOptions,
    ) -> Result<Value> {
        require_manager(options)?;
        let config = restrict(t, options.subresource.as_deref(), config);
        let mut managers = Managers::read(&old);
        let mut candidate = old.clone();
        managers
            .apply(
                &options.manager,
                options.subresource.as_deref(),
                &mut candidate,
                &config,
                options.force,
                &t.api_version(),
                &now_rfc3339(),
            )
            .map_err(|conflicts| {
                let list: Vec<String> = conflicts
                    .iter()
                    .map(|c| format!("conflict with \"{}\": .{}", c.manager, c.path.join(".")))
                    .collect();
                ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Apply failed with {} conflict(s): {}",
                        list.len(),
                        list.join("; ")
                    ),
                )
            })?;
        managers.write(&mut candidate);
        self.commit(
            t,
            namespace,
            name,
            old,
            candidate,
            &options.manager,
            "apply",
        )
    }

    /// Update and non-apply patches: keep what the endpoint may not change, record field
    /// ownership, commit.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        old: Value,
        candidate: Value,
        options: &WriteOptions,
        verb: &'static str,
    ) -> Result<Value> {
        let mut new = merge_by_endpoint(t, options.subresource.as_deref(), &old, candidate);
        let mut managers = Managers::read(&old);
        managers.record_update(
            &options.manager,
            options.subresource.as_deref(),
            &old,
            &new,
            &t.api_version(),
            &now_rfc3339(),
        );
        managers.write(&mut new);
        self.commit(t, namespace, name, old, new, &options.manager, verb)
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

    /// Removes an object for good (rv already bumped), then collects what it owned.
    fn remove(
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
    fn collect_dependents(&mut self, owner_uid: &str, orphan: bool) {
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

    fn delete_namespace_contents(&mut self, namespace: &str) {
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

    /// What other controllers would do after a write: CRDs become served and Established;
    /// Deployments get a status as if their pods were (or were not) ready, with the
    /// replicas a HorizontalPodAutoscaler targeting them asks for at least.
    fn after_write(&mut self, t: &ResourceType, object: &Value) {
        if t.group == "apiextensions.k8s.io" && t.plural == "customresourcedefinitions" {
            self.register_crd(t, object);
        }
        if t.group == "apps" && t.plural == "deployments" {
            self.simulate_deployment(t, object);
        }
        if t.group == "autoscaling" && t.plural == "horizontalpodautoscalers" {
            let target = &object["spec"]["scaleTargetRef"];
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
            if target["kind"] == "Deployment"
                && let (Ok(deployments), Some(name)) = (
                    self.resolve("apps", "v1", "deployments"),
                    target["name"].as_str(),
                )
                && let Ok(deployment) = self.get(&deployments, namespace, name)
            {
                self.simulate_deployment(&deployments, &deployment);
            }
        }
    }

    /// `minReplicas` of an autoscaler scaling this Deployment (the HPA stand-in).
    fn autoscaled_replicas(&self, namespace: &str, name: &str) -> Option<i64> {
        self.objects
            .iter()
            .filter(|((g, p, ns, _), _)| {
                g == "autoscaling" && p == "horizontalpodautoscalers" && ns == namespace
            })
            .map(|(_, hpa)| &hpa["spec"])
            .find(|spec| {
                spec["scaleTargetRef"]["kind"] == "Deployment"
                    && spec["scaleTargetRef"]["name"] == name
            })
            .map(|spec| spec["minReplicas"].as_i64().unwrap_or(1))
    }

    fn register_crd(&mut self, t: &ResourceType, crd: &Value) {
        let Some(served) = ResourceType::from_crd(crd) else {
            return;
        };
        self.types
            .retain(|x| !(x.group == served.group && x.plural == served.plural));
        self.types.push(served);
        let established = json!({
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now_rfc3339()},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now_rfc3339()},
            ],
            "acceptedNames": crd["spec"]["names"],
            "storedVersions": crd["spec"]["versions"].as_array().map(|vs| vs.iter().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
        });
        if crd["status"]["acceptedNames"] == crd["spec"]["names"]
            && crd["status"]["conditions"].is_array()
        {
            return;
        }
        let mut updated = crd.clone();
        updated["status"] = established;
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let _ = self.commit(
            t,
            "",
            &name,
            crd.clone(),
            updated,
            "apiextensions-apiserver",
            "update",
        );
    }

    fn unregister_crd(&mut self, crd: &Value) {
        let Some(served) = ResourceType::from_crd(crd) else {
            return;
        };
        let keys: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|(g, p, _, _)| *g == served.group && *p == served.plural)
            .cloned()
            .collect();
        for (_, _, ns, name) in keys {
            if let Ok(object) = self.get(&served, &ns, &name) {
                self.rv += 1;
                self.remove(&served, &ns, &name, object, None);
            }
        }
        self.types
            .retain(|x| !(x.group == served.group && x.plural == served.plural));
    }

    /// Sets whether simulated Deployments report their pods ready (default true), and
    /// updates every existing Deployment's status accordingly.
    pub fn set_deployments_ready(&mut self, ready: bool) {
        self.deployments_ready = ready;
        let Ok(t) = self.resolve("apps", "v1", "deployments") else {
            return;
        };
        let all: Vec<Value> = self
            .objects
            .iter()
            .filter(|((g, p, _, _), _)| g == "apps" && p == "deployments")
            .map(|(_, o)| o.clone())
            .collect();
        for deployment in all {
            self.simulate_deployment(&t, &deployment);
        }
    }

    /// Hands Deployment status to a pod runner: the stand-in stops writing it.
    pub fn stop_simulating_deployments(&mut self) {
        self.deployments_simulated = false;
    }

    fn simulate_deployment(&mut self, t: &ResourceType, deployment: &Value) {
        if !self.deployments_simulated || deployment["metadata"]["deletionTimestamp"].is_string() {
            return;
        }
        let namespace = deployment["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let replicas = deployment["spec"]["replicas"]
            .as_i64()
            .or_else(|| self.autoscaled_replicas(namespace, name))
            .unwrap_or(1);
        let ready = if self.deployments_ready { replicas } else { 0 };
        let status = json!({
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [{
                "type": "Available",
                "status": if ready >= replicas { "True" } else { "False" },
                "reason": if ready >= replicas { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
            }],
        });
        if deployment["status"] == status {
            return;
        }
        let mut updated = deployment.clone();
        updated["status"] = status;
        let namespace = deployment["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = deployment["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let _ = self.commit(
            t,
            &namespace,
            &name,
            deployment.clone(),
            updated,
            "kube-controller-manager",
            "update",
        );
    }
}

fn check_kind(t: &ResourceType, body: &Value) -> Result<()> {
    if let Some(kind) = body["kind"].as_str()
        && kind != t.kind
    {
        return Err(ApiError::bad_request(format!(
            "the body's kind {kind} does not match the resource {}",
            t.kind
        )));
    }
    if let Some(api_version) = body["apiVersion"].as_str()
        && api_version != t.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the body's apiVersion {api_version} does not match {}",
            t.api_version()
        )));
    }
    Ok(())
}

fn require_manager(options: &WriteOptions) -> Result<()> {
    if options.manager.is_empty() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    Ok(())
}

fn conflict(t: &ResourceType, name: &str) -> ApiError {
    ApiError::new(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            t.plural, t.group
        ),
    )
}

/// A patch that set `metadata.resourceVersion` asks for optimistic concurrency.
fn patch_rv(candidate: &Value, old: &Value) -> Option<String> {
    let rv = candidate["metadata"]["resourceVersion"].as_str()?;
    (Some(rv) != old["metadata"]["resourceVersion"].as_str()).then(|| rv.to_owned())
}

/// What an endpoint may change: the main endpoint everything but status (when status is a
/// subresource), the status endpoint only status.
fn merge_by_endpoint(
    t: &ResourceType,
    subresource: Option<&str>,
    old: &Value,
    candidate: Value,
) -> Value {
    match (t.status_subresource, subresource) {
        (true, Some("status")) => {
            let mut new = old.clone();
            match candidate.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            new
        }
        (true, _) => {
            let mut new = candidate;
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            new
        }
        (false, _) => candidate,
    }
}

/// The part of an apply config an endpoint takes.
fn restrict(t: &ResourceType, subresource: Option<&str>, mut config: Value) -> Value {
    if let Value::Object(map) = &mut config {
        map.remove("apiVersion");
        map.remove("kind");
        match (t.status_subresource, subresource) {
            (true, Some("status")) => map.retain(|k, _| k == "status"),
            (true, _) => {
                map.remove("status");
            }
            _ => {}
        }
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            meta.retain(|k, _| {
                ![
                    "name",
                    "namespace",
                    "uid",
                    "resourceVersion",
                    "generation",
                    "creationTimestamp",
                    "managedFields",
                ]
                .contains(&k.as_str())
            });
            if meta.is_empty() {
                map.remove("metadata");
            }
        }
    }
    config
}

/// An object without the `time` of its managed-field entries (a no-op write is detected on
/// content and ownership, not on when it was attempted).
fn without_times(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(entries) = copy["metadata"]["managedFields"].as_array_mut() {
        for entry in entries {
            if let Some(e) = entry.as_object_mut() {
                e.remove("time");
            }
        }
    }
    copy
}

fn encode_continue(object: &Value) -> String {
    let ns = object["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    format!("{ns}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Option<(String, String)> {
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let (ns, name) = text.split_once('/')?;
    Some((ns.to_owned(), name.to_owned()))
}
