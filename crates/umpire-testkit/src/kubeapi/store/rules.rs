//! The API server's write rules and small helpers: kind checks, field managers, conflicts,
//! patch preconditions, status/spec restrictions, continue tokens.

use serde_json::Value;

use super::*;

pub(super) fn check_kind(t: &ResourceType, body: &Value) -> Result<()> {
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

pub(super) fn require_manager(options: &WriteOptions) -> Result<()> {
    if options.manager.is_empty() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    Ok(())
}

pub(super) fn conflict(t: &ResourceType, name: &str) -> ApiError {
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
pub(super) fn patch_rv(candidate: &Value, old: &Value) -> Option<String> {
    let rv = candidate["metadata"]["resourceVersion"].as_str()?;
    (Some(rv) != old["metadata"]["resourceVersion"].as_str()).then(|| rv.to_owned())
}

/// What an endpoint may change: the main endpoint everything but status (when status is a
/// subresource), the status endpoint only status.
pub(super) fn merge_by_endpoint(
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
pub(super) fn restrict(t: &ResourceType, subresource: Option<&str>, mut config: Value) -> Value {
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
pub(super) fn without_times(object: &Value) -> Value {
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

pub(super) fn encode_continue(object: &Value) -> String {
    let ns = object["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    format!("{ns}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn decode_continue(token: &str) -> Option<(String, String)> {
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
