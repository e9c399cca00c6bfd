//! PATCH: merge, JSON (with `test`) and server-side apply (field ownership, conflicts,
//! force, removal of fields a manager stops applying), and the shared write path of updates.

use serde_json::Value;

use super::*;

impl Store {
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

    pub(super) fn apply_create(
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

    pub(super) fn apply_existing(
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
    pub(super) fn write(
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
}
