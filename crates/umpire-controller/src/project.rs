//! Reconciling a TraceProject: validate, apply the ingest children, prune, set up the span
//! stream, report status. Deletion removes the project's streams (children go by GC).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizing, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;
use umpire_api::compile::{ProjectPlan, compile_trace_project};
use umpire_api::trace_project::{OtlpEndpoints, TraceProject, TraceProjectStatus};
use umpire_api::validate::UmpireKind;
use umpire_nats::topology::ProjectNames;

use crate::apply::{FIELD_MANAGER, apply, network_policies, prune};
use crate::children::project::{desired, endpoints};
use crate::children::{MANAGED_BY, Owner, PROJECT_LABEL};
use crate::consent;
use crate::context::{Error, Shared, finalizer_outcome};
use crate::exports;
use crate::status::{Observed, conditions};
use crate::streams::{self, StreamProblem};

pub const FINALIZER: &str = "umpire.dev/cleanup";

pub fn validate(shared: &Shared, tp: &TraceProject) -> Result<ProjectPlan, String> {
    shared.validate(
        UmpireKind::TraceProject,
        &tp.name_any(),
        &tp.namespace().unwrap_or_default(),
        &tp.spec,
        compile_trace_project(&tp.spec),
    )
}

pub async fn reconcile(tp: Arc<TraceProject>, shared: Arc<Shared>) -> Result<Action, Error> {
    let namespace = tp.namespace().ok_or(Error::NoNamespace)?;
    tracing::debug!(event = "reconcile_started", namespace = %namespace, name = %tp.name_any(), generation = ?tp.metadata.generation, deleting = tp.metadata.deletion_timestamp.is_some(), "reconciling");
    let api: Api<TraceProject> = Api::namespaced(shared.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, tp, |event| async {
        match event {
            Finalizing::Apply(tp) => apply_project(&tp, &shared).await,
            Finalizing::Cleanup(tp) => cleanup(&tp, &shared).await,
        }
    })
    .await;
    finalizer_outcome(result)
}

fn owner(tp: &TraceProject, namespace: &str) -> Owner {
    Owner {
        api_version: TraceProject::api_version(&()).into_owned(),
        kind: TraceProject::kind(&()).into_owned(),
        name: tp.name_any(),
        namespace: namespace.to_owned(),
        uid: tp.uid().unwrap_or_default(),
    }
}

/// Writes status only when it differs from what is stored.
async fn write_status(
    shared: &Shared,
    tp: &TraceProject,
    status: TraceProjectStatus,
) -> Result<(), Error> {
    if tp.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<TraceProject> =
        Api::namespaced(shared.client.clone(), &tp.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": TraceProject::api_version(&()),
        "kind": "TraceProject",
        "status": status,
    });
    api.patch_status(
        &tp.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    shared
        .ready_event(
            tp,
            tp.status.as_ref().map(|s| s.conditions.as_slice()),
            &status.conditions,
        )
        .await;
    Ok(())
}

async fn apply_project(tp: &TraceProject, shared: &Shared) -> Result<Action, Error> {
    let namespace = tp.namespace().ok_or(Error::NoNamespace)?;
    let name = tp.name_any();
    let generation = tp.metadata.generation;
    let previous = tp.status.clone().unwrap_or_default();

    let plan = match validate(shared, tp) {
        Ok(plan) => plan,
        Err(message) => {
            // Nothing is changed for an invalid spec: the workers keep the last valid one.
            let status = TraceProjectStatus {
                observed_generation: generation,
                conditions: conditions(
                    &previous.conditions,
                    &[Observed::new("Ready", false, "InvalidSpec", message)],
                    generation,
                ),
                ..previous.clone()
            };
            write_status(shared, tp, status).await?;
            return Ok(Action::await_change());
        }
    };

    if let Some(message) = consent::refusal(&shared.client, &namespace, &tp.spec).await? {
        let status = TraceProjectStatus {
            observed_generation: generation,
            conditions: conditions(
                &previous.conditions,
                &[Observed::new("Ready", false, "SecretNotAllowed", message)],
                generation,
            ),
            ..previous.clone()
        };
        write_status(shared, tp, status).await?;
        return Ok(Action::requeue(consent::RECHECK));
    }

    let children = desired(&owner(tp, &namespace), &tp.spec, &shared.worker_context()?);
    let client = &shared.client;
    apply(client, &namespace, &children.service_account).await?;
    if let Some(secret) = &children.nats_secret {
        apply(client, &namespace, secret).await?;
    }
    apply(client, &namespace, &children.config_map).await?;
    let deployment = apply(client, &namespace, &children.deployment).await?;
    apply(client, &namespace, &children.service).await?;
    apply(client, &namespace, &children.disruption_budget).await?;
    if let Some(policy) = &children.network_policy {
        apply(client, &namespace, policy).await?;
    }
    let mut keep_autoscaler = Vec::new();
    if let Some(hpa) = &children.autoscaler {
        apply(client, &namespace, hpa).await?;
        keep_autoscaler.push(hpa.name_any());
    }
    let selector = format!("{PROJECT_LABEL}={name},{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let keep = vec![children.deployment.name_any()];
    let mut pruned =
        prune::<HorizontalPodAutoscaler>(client, &namespace, &selector, &keep_autoscaler).await?;
    pruned.extend(prune::<ServiceAccount>(client, &namespace, &selector, &keep).await?);
    pruned.extend(prune::<ConfigMap>(client, &namespace, &selector, &keep).await?);
    pruned.extend(prune::<Deployment>(client, &namespace, &selector, &keep).await?);
    pruned.extend(prune::<Service>(client, &namespace, &selector, &keep).await?);
    pruned.extend(prune::<PodDisruptionBudget>(client, &namespace, &selector, &keep).await?);
    pruned.extend(
        network_policies(
            client,
            &namespace,
            &selector,
            children.network_policy.as_ref(),
        )
        .await?,
    );
    if !pruned.is_empty() {
        tracing::info!(event = "children_pruned", namespace = %namespace, name = %name, pruned = ?pruned, "removed children no longer desired");
    }

    let names = ProjectNames::new(&namespace, &name);
    let stream = streams::ensure_project_stream(
        &shared.js,
        umpire_nats::topology::span_stream(
            &names,
            &umpire_contract::ingest::span_stream_limits(&plan),
        ),
    )
    .await;
    let stream_condition = match &stream {
        Ok(stream) => Observed::new(
            "StreamReady",
            true,
            "StreamReady",
            format!("JetStream stream {stream} matches the spec"),
        ),
        Err(StreamProblem::Rejected(message)) => {
            Observed::new("StreamReady", false, "StreamRejected", message.clone())
        }
        Err(StreamProblem::Unavailable(message)) => {
            Observed::new("StreamReady", false, "NatsUnavailable", message.clone())
        }
    };

    let wanted = children
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .or(tp
            .spec
            .ingest
            .as_ref()
            .and_then(|i| i.autoscaling.as_ref())
            .map(|a| a.min_replicas))
        .unwrap_or(1);
    let deployment_status = deployment.status.clone().unwrap_or_default();
    let ready_replicas = deployment_status.ready_replicas.unwrap_or(0);
    let rolled_out = deployment_status.observed_generation >= deployment.metadata.generation;
    let available = ready_replicas >= wanted && rolled_out;
    let ingest_condition = Observed::new(
        "IngestAvailable",
        available,
        if available {
            "Available"
        } else {
            "PodsNotReady"
        },
        format!("{ready_replicas}/{wanted} ingest pods ready"),
    );
    let ready = match (&stream, available) {
        (Ok(_), true) => Observed::new("Ready", true, "Available", "accepting OTLP spans"),
        (Err(StreamProblem::Rejected(_)), _) => Observed::new(
            "Ready",
            false,
            "StreamRejected",
            stream_condition.message.clone(),
        ),
        (Err(StreamProblem::Unavailable(_)), _) => Observed::new(
            "Ready",
            false,
            "StreamUnavailable",
            stream_condition.message.clone(),
        ),
        (Ok(_), false) => Observed::new(
            "Ready",
            false,
            "IngestUnavailable",
            ingest_condition.message.clone(),
        ),
    };
    let (grpc, http) = endpoints(&name, &namespace);
    let targets: Vec<String> = tp
        .spec
        .export
        .iter()
        .flatten()
        .map(|t| t.name.clone())
        .collect();
    let mut observed = vec![ready, stream_condition, ingest_condition];
    observed.extend(exports::conditions(&shared.js, &names, &targets, &previous.conditions).await);
    let status = TraceProjectStatus {
        observed_generation: generation,
        conditions: conditions(&previous.conditions, &observed, generation),
        endpoints: Some(OtlpEndpoints { grpc, http }),
        stream: Some(names.spans_stream()),
        ingest_replicas_ready: Some(ready_replicas),
    };
    write_status(shared, tp, status).await?;
    match stream {
        // Export targets' conditions follow the ingest replicas' reports.
        Ok(_) if !targets.is_empty() => Ok(Action::requeue(
            shared.alert_status_interval.min(shared.resync),
        )),
        Ok(_) => Ok(Action::requeue(shared.resync)),
        // Not an outage: retrying fast will not help until the spec or the NATS cluster
        // changes (a spec change reconciles at once; a grown cluster is seen within a minute).
        Err(StreamProblem::Rejected(_)) => Ok(Action::requeue(REJECTED_RECHECK)),
        Err(StreamProblem::Unavailable(message)) => Err(Error::Nats(message)),
    }
}

/// How often a stream NATS refused is tried again.
const REJECTED_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// Deletes the project's streams. When NATS stays unreachable past the cleanup timeout, the
/// deletion completes anyway (with a Warning event naming what was left behind) rather than
/// blocking the namespace forever.
async fn cleanup(tp: &TraceProject, shared: &Shared) -> Result<Action, Error> {
    let namespace = tp.namespace().ok_or(Error::NoNamespace)?;
    let names = ProjectNames::new(&namespace, &tp.name_any());
    match streams::delete_project_streams(&shared.js, &names).await {
        Ok(deleted) => {
            tracing::info!(event = "streams_deleted", namespace = %namespace, name = %tp.name_any(), streams = ?deleted, "deleted the project's streams");
            Ok(Action::await_change())
        }
        Err(e) if deletion_age(tp) > shared.cleanup_timeout => {
            shared
                .event(
                    tp,
                    true,
                    "StreamsLeftBehind",
                    format!(
                        "gave up deleting the project's JetStream streams after {:?}: {e}",
                        shared.cleanup_timeout
                    ),
                )
                .await;
            Ok(Action::await_change())
        }
        Err(e) => {
            let previous = tp.status.clone().unwrap_or_default();
            let status = TraceProjectStatus {
                conditions: conditions(
                    &previous.conditions,
                    &[Observed::new(
                        "Ready",
                        false,
                        "CleanupPending",
                        format!(
                            "deleting: waiting for NATS to delete the streams (gives up after {:?}): {e}",
                            shared.cleanup_timeout
                        ),
                    )],
                    tp.metadata.generation,
                ),
                ..previous
            };
            write_status(shared, tp, status).await?;
            Err(Error::Nats(e))
        }
    }
}

pub fn deletion_age<K: Resource>(object: &K) -> std::time::Duration {
    object
        .meta()
        .deletion_timestamp
        .as_ref()
        .and_then(|t| {
            let now = k8s_openapi::jiff::Timestamp::now();
            now.duration_since(t.0).try_into().ok()
        })
        .unwrap_or_default()
}
