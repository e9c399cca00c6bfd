//! What every reconcile shares: clients, the validator, events, metrics, and per-object
//! exponential backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use umpire_api::validate::{FieldError, NoReferences, UmpireKind, Validator};
use umpire_nats::auth::{AUTH_KEYS, SecretFiles, TLS_KEYS};
use umpire_nats::connect::NatsSettings;
use umpire_runtime::retry::Backoff;

use crate::children;
use crate::metrics::{ControllerMetrics, FailureLabels};

const RECONCILE_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));

/// Why a reconcile failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("the resource has no namespace")]
    NoNamespace,
    /// Not a failure: a deletion waits for something to finish (the finalizer helper only
    /// keeps its finalizer when the cleanup returns an error). Polled at `after`.
    #[error("waiting: {reason}")]
    Waiting { reason: String, after: Duration },
}

/// The reconcile's own error out of kube-runtime's finalizer wrapper.
pub fn finalizer_outcome(result: Result<Action, finalizer::Error<Error>>) -> Result<Action, Error> {
    match result {
        Ok(action) => Ok(action),
        Err(finalizer::Error::ApplyFailed(e)) | Err(finalizer::Error::CleanupFailed(e)) => Err(e),
        Err(other) => Err(Error::Finalizer(other.to_string())),
    }
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Nats(_) => "nats",
            Error::Finalizer(_) => "finalizer",
            Error::NoNamespace => "invalid",
            Error::Waiting { .. } => "waiting",
        }
    }
}

pub struct Shared {
    pub client: Client,
    pub js: jetstream::Context,
    pub children: children::Context,
    /// Where the controller's own NATS credentials and TLS material are mounted; workers get
    /// a copy of them (re-read on every reconcile, so a rotation reaches the workers).
    pub nats: NatsSettings,
    pub recorder: Recorder,
    pub metrics: Arc<ControllerMetrics>,
    pub validator: Validator,
    /// How long a deletion retries NATS cleanup before letting the resource go.
    pub cleanup_timeout: Duration,
    /// How often a healthy object is reconciled anyway (drift the watches missed).
    pub resync: Duration,
    /// How often a policy with alert rules is revisited to refresh `status.firingAlerts`.
    pub alert_status_interval: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Shared {
    pub fn new(
        client: Client,
        js: jetstream::Context,
        children: children::Context,
        recorder: Recorder,
        metrics: Arc<ControllerMetrics>,
        validator: Validator,
        cleanup_timeout: Duration,
    ) -> Self {
        Self {
            client,
            js,
            children,
            nats: NatsSettings::default(),
            recorder,
            metrics,
            validator,
            cleanup_timeout,
            resync: Duration::from_secs(300),
            alert_status_interval: Duration::from_secs(60),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Every problem with a spec, as `field: message`: the CRD's schema and CEL rules (as
    /// `umpire check` and the API server apply them), then the Rust-side compile.
    pub fn validate<T>(
        &self,
        kind: UmpireKind,
        name: &str,
        namespace: &str,
        spec: &impl Serialize,
        compiled: Result<T, Vec<FieldError>>,
    ) -> Result<T, String> {
        let object = serde_json::json!({
            "apiVersion": umpire_api::validate::API_VERSION,
            "kind": kind.name(),
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        });
        let outcome = self.validator.validate(kind, &object, &NoReferences);
        let mut errors: Vec<String> = outcome
            .findings
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect();
        match compiled {
            Ok(plan) if errors.is_empty() => Ok(plan),
            Ok(_) => Err(errors.join("; ")),
            Err(more) => {
                errors.extend(more.iter().map(|e| e.to_string()));
                errors.dedup();
                Err(errors.join("; "))
            }
        }
    }

    /// The children context with the NATS material as it is mounted right now.
    pub fn worker_context(&self) -> Result<children::Context, Error> {
        let read = |dir: &Option<std::path::PathBuf>, keys: &[&str]| match dir {
            Some(dir) => SecretFiles::read(dir, keys).map_err(|e| {
                Error::Nats(format!("reading the NATS material to hand to workers: {e}"))
            }),
            None => Ok(SecretFiles::default()),
        };
        let mut files = read(&self.nats.auth_dir, &AUTH_KEYS)?;
        files.extend(read(&self.nats.tls_dir, &TLS_KEYS)?);
        Ok(children::Context {
            nats_files: files,
            ..self.children.clone()
        })
    }

    fn key<K: Resource<DynamicType = ()>>(object: &K) -> String {
        format!(
            "{}/{}/{}",
            K::kind(&()),
            object.namespace().unwrap_or_default(),
            object.name_any()
        )
    }

    pub fn succeeded<K: Resource<DynamicType = ()>>(&self, object: &K) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&Self::key(object));
    }

    /// Per-object exponential backoff: 1s, 2s, 4s … capped at 5 minutes (the shared retry
    /// policy's ceiling: no jitter, so the logged delay is the one applied).
    pub fn backoff<K: Resource<DynamicType = ()>>(&self, object: &K, error: &Error) -> Action {
        if let Error::Waiting { after, .. } = error {
            return Action::requeue(*after);
        }
        let kind = K::kind(&()).into_owned();
        self.metrics
            .failures
            .get_or_create(&FailureLabels {
                kind: kind.clone(),
                reason: error.reason(),
            })
            .inc();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(Self::key(object)).or_insert(0);
        *count = count.saturating_add(1);
        let delay = RECONCILE_BACKOFF.ceiling(*count - 1);
        tracing::warn!(
            event = "reconcile_failed",
            kind = %kind,
            namespace = %object.namespace().unwrap_or_default(),
            name = %object.name_any(),
            attempt = *count,
            retry_in_s = delay.as_secs(),
            error = %error,
            "reconcile failed; retrying"
        );
        Action::requeue(delay)
    }

    /// An Event when the `Ready` condition flips or changes its reason — including the first
    /// status of an object that never becomes ready, which must not stay silent.
    pub async fn ready_event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        before: Option<&[Condition]>,
        after: &[Condition],
    ) {
        let ready = |conditions: &[Condition]| {
            conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| (c.status == "True", c.reason.clone()))
        };
        let now = ready(after);
        if before.and_then(ready) == now {
            return;
        }
        if let Some(condition) = after.iter().find(|c| c.type_ == "Ready") {
            let warning = condition.status != "True";
            self.event(
                object,
                warning,
                &condition.reason,
                condition.message.clone(),
            )
            .await;
        }
    }

    /// Publishes a Kubernetes Event about `object` (best effort: events are informational).
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::debug!(event = "event_publish_failed", error = %e, "could not publish a Kubernetes Event");
        }
    }
}
