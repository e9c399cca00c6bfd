//! What the store's callers exchange with it: API errors, watch changes, write records,
//! and write and delete options.

use serde_json::{Value, json};

use super::*;

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
