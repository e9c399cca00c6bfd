//! Reconciling an EvalPolicy: validate, wait for its TraceProject, apply the evaluator
//! children, create the durable consumer, report status. Deletion removes its consumers.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizing, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;
use umpire_api::compile::{PolicyPlan, compile_eval_policy};
use umpire_api::eval_policy::{EvalPolicy, EvalPolicyStatus};
use umpire_api::trace_project::TraceProject;
use umpire_api::validate::{NoReferences, UmpireKind};
use umpire_nats::topology::ProjectNames;

use crate::apply::{FIELD_MANAGER, apply, network_policies, prune};
use crate::children::policy::{desired, evaluator_config};
use crate::children::{MANAGED_BY, Owner, POLICY_LABEL};
use crate::consent;
use crate::context::{Error, Shared, finalizer_outcome};
use crate::project::{FINALIZER, deletion_age};
use crate::status::{Observed, conditions, is_ready};
use crate::streams::{self, AlertsRetiring};

/// How often a deletion checks whether the policy's alerts are resolved.
const RETIRE_POLL: std::time::Duration = std::time::Duration::from_secs(2);

pub fn validate(shared: &Shared, ep: &EvalPolicy) -> Result<PolicyPlan, String> {
    let namespace = ep.namespace().unwrap_or_default();
    shared.validate(
        UmpireKind::EvalPolicy,
        &ep.name_any(),
        &namespace,
        &ep.spec,
        compile_eval_policy(&namespace, &ep.spec, &NoReferences),
    )
}

pub async fn reconcile(ep: Arc<EvalPolicy>, shared: Arc<Shared>) -> Result<Action, Error> {
    let namespace = ep.namespace().ok_or(Error::NoNamespace)?;
    tracing::debug!(event = "reconcile_started", namespace = %namespace, name = %ep.name_any(), generation = ?ep.metadata.generation, deleting = ep.metadata.deletion_timestamp.is_some(), "reconciling");
    let api: Api<EvalPolicy> = Api::namespaced(shared.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, ep, |event| async {
        match event {
            Finalizing::Apply(ep) => apply_policy(&ep, &shared).await,
            Finalizing::Cleanup(ep) => cleanup(&ep, &shared).await,
        }
    })
    .await;
    finalizer_outcome(result)
}

async fn write_status(
    shared: &Shared,
    ep: &EvalPolicy,
    status: EvalPolicyStatus,
) -> Result<(), Error> {
    if ep.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<EvalPolicy> =
        Api::namespaced(shared.client.clone(), &ep.namespace().unwrap_or_default());
    let patch =
        json!({"apiVersion": EvalPolicy::api_version(&()), "kind": "EvalPolicy", "status": status});
    api.patch_status(
        &ep.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    shared
        .ready_event(
            ep,
            ep.status.as_ref().map(|s| s.conditions.as_slice()),
            &status.conditions,
        )
        .await;
    Ok(())
}

/// A not-ready status that changes nothing else (waiting, invalid).
fn waiting(ep: &EvalPolicy, valid: bool, reason: &str, message: String) -> EvalPolicyStatus {
    let previous = ep.status.clone().unwrap_or_default();
    let generation = ep.metadata.generation;
    let mut observed = vec![Observed::new("Ready", false, reason, message.clone())];
    observed.push(if valid {
        Observed::new("Valid", true, "Valid", "the spec is valid")
    } else {
        Observed::new("Valid", false, "InvalidSpec", message)
    });
    EvalPolicyStatus {
        observed_generation: generation,
        conditions: conditions(&previous.conditions, &observed, generation),
        judges: Some(ep.spec.judges.len() as i32),
        ..previous
    }
}

async fn apply_policy(ep: &EvalPolicy, shared: &Shared) -> Result<Action, Error> {
    let namespace = ep.namespace().ok_or(Error::NoNamespace)?;
    let name = ep.name_any();
    let generation = ep.metadata.generation;

    let plan = match validate(shared, ep) {
        Ok(plan) => plan,
        Err(message) => {
            write_status(shared, ep, waiting(ep, false, "InvalidSpec", message)).await?;
            return Ok(Action::await_change());
        }
    };

    // Wait (a condition, not an error loop) for the project; its watch wakes us up.
    let project_name = &ep.spec.project_ref.name;
    let projects: Api<TraceProject> = Api::namespaced(shared.client.clone(), &namespace);
    let project = projects.get_opt(project_name).await?;
    match &project {
        None => {
            let message = format!(
                "TraceProject {namespace}/{project_name} does not exist; create it or fix spec.projectRef.name"
            );
            write_status(shared, ep, waiting(ep, true, "ProjectNotFound", message)).await?;
            return Ok(Action::await_change());
        }
        // A project being deleted is going away with its streams and buckets: touch none of
        // them (reading alert state could re-create a bucket its finalizer just removed).
        Some(project) if project.metadata.deletion_timestamp.is_some() => {
            let message = format!("TraceProject {namespace}/{project_name} is being deleted");
            write_status(shared, ep, waiting(ep, true, "ProjectNotReady", message)).await?;
            return Ok(Action::await_change());
        }
        Some(project)
            if !project
                .status
                .as_ref()
                .is_some_and(|s| is_ready(&s.conditions)) =>
        {
            let message =
                format!("waiting for TraceProject {namespace}/{project_name} to become Ready");
            write_status(shared, ep, waiting(ep, true, "ProjectNotReady", message)).await?;
            return Ok(Action::await_change());
        }
        Some(_) => {}
    }
    if let Some(message) = consent::refusal(&shared.client, &namespace, &ep.spec).await? {
        write_status(shared, ep, waiting(ep, true, "SecretNotAllowed", message)).await?;
        return Ok(Action::requeue(consent::RECHECK));
    }

    let context = shared.worker_context()?;
    if ep.spec.needs_embeddings() && context.embedding_model.is_none() {
        let message = "embedding judges and drift alerts need the install's sentence-embedding model, and none is mounted: set the chart's embeddings.model (the controller's --embedding-model-volume)".to_owned();
        write_status(
            shared,
            ep,
            waiting(ep, true, "EmbeddingModelMissing", message),
        )
        .await?;
        return Ok(Action::await_change());
    }

    let owner = Owner {
        api_version: EvalPolicy::api_version(&()).into_owned(),
        kind: EvalPolicy::kind(&()).into_owned(),
        name: name.clone(),
        namespace: namespace.clone(),
        uid: ep.uid().unwrap_or_default(),
    };
    // The missing-project case returned above.
    let Some(project_spec) = project.map(|p| p.spec) else {
        return Ok(Action::await_change());
    };
    let children = desired(&owner, &ep.spec, &project_spec, &context);
    let client = &shared.client;
    apply(client, &namespace, &children.service_account).await?;
    if let Some(secret) = &children.nats_secret {
        apply(client, &namespace, secret).await?;
    }
    apply(client, &namespace, &children.config_map).await?;
    let deployment = apply(client, &namespace, &children.deployment).await?;
    if let Some(policy) = &children.network_policy {
        apply(client, &namespace, policy).await?;
    }
    let selector = format!("{POLICY_LABEL}={name},{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let keep = vec![children.deployment.name_any()];
    prune::<ServiceAccount>(client, &namespace, &selector, &keep).await?;
    prune::<ConfigMap>(client, &namespace, &selector, &keep).await?;
    prune::<Deployment>(client, &namespace, &selector, &keep).await?;
    network_policies(
        client,
        &namespace,
        &selector,
        children.network_policy.as_ref(),
    )
    .await?;

    let names = ProjectNames::new(&namespace, project_name);
    let consumer = streams::ensure_policy_consumer(
        &shared.js,
        &names,
        evaluator_config(&owner, &ep.spec, &project_spec, &context).policy_consumer(&plan),
    )
    .await;

    let wanted = children
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let deployment_status = deployment.status.clone().unwrap_or_default();
    let ready_replicas = deployment_status.ready_replicas.unwrap_or(0);
    let available = ready_replicas >= wanted
        && deployment_status.observed_generation >= deployment.metadata.generation;
    let evaluator_condition = Observed::new(
        "EvaluatorAvailable",
        available,
        if available {
            "Available"
        } else {
            "PodsNotReady"
        },
        format!("{ready_replicas}/{wanted} evaluator pods ready"),
    );
    let ready = match (&consumer, available) {
        (Ok(_), true) => Observed::new("Ready", true, "Available", "judging live traffic"),
        (Err(e), _) => Observed::new("Ready", false, "ConsumerUnavailable", e.clone()),
        (Ok(_), false) => Observed::new(
            "Ready",
            false,
            "EvaluatorUnavailable",
            evaluator_condition.message.clone(),
        ),
    };
    let has_alerts = ep.spec.alerts.as_ref().is_some_and(|a| !a.is_empty());
    let (firing, alerts) = if has_alerts {
        match streams::alerts(&shared.js, &names, &name).await {
            Ok((count, listed)) => (Some(count), Some(listed)),
            Err(e) => {
                tracing::warn!(event = "alert_state_unreadable", namespace = %namespace, name = %name, error = %e, "keeping the last firingAlerts and alerts");
                let previous = ep.status.as_ref();
                (
                    previous.and_then(|s| s.firing_alerts),
                    previous.and_then(|s| s.alerts.clone()),
                )
            }
        }
    } else {
        (Some(0), Some(Vec::new()))
    };
    let previous = ep.status.clone().unwrap_or_default();
    let has_routes = ep.spec.routes.as_ref().is_some_and(|r| !r.is_empty());
    let dead_lettered = if has_routes {
        match streams::dead_lettered_notifications(&shared.js, &names, &name).await {
            Ok((count, reason)) => {
                let before = previous.dead_lettered_notifications.unwrap_or(0);
                if count as i64 > before {
                    shared
                        .event(
                            ep,
                            true,
                            "NotificationsDeadLettered",
                            format!(
                                "{} notification(s) given up after their route's maxDeliveryAge and moved to the dead-letter stream {} (subject {}); latest: {}",
                                count as i64 - before,
                                names.dead_letter_stream(),
                                names.notification_dead_letter_subject(&name),
                                reason.unwrap_or_else(|| "no reason recorded".into())
                            ),
                        )
                        .await;
                }
                Some(count as i64)
            }
            Err(e) => {
                tracing::warn!(event = "dead_letters_unreadable", namespace = %namespace, name = %name, error = %e, "keeping the last deadLetteredNotifications");
                previous.dead_lettered_notifications
            }
        }
    } else {
        None
    };
    let status = EvalPolicyStatus {
        observed_generation: generation,
        firing_alerts: firing,
        alerts,
        dead_lettered_notifications: dead_lettered,
        conditions: conditions(
            &previous.conditions,
            &[
                ready,
                Observed::new("Valid", true, "Valid", "the spec is valid"),
                evaluator_condition,
            ],
            generation,
        ),
        judges: Some(ep.spec.judges.len() as i32),
        consumer: Some(names.policy_consumer(&name)),
    };
    write_status(shared, ep, status).await?;
    match consumer {
        // Alert transitions do not touch the resource: revisit to keep firingAlerts current.
        Ok(_) if has_alerts => Ok(Action::requeue(shared.alert_status_interval)),
        Ok(_) => Ok(Action::requeue(shared.resync)),
        Err(e) => Err(Error::Nats(e)),
    }
}

async fn cleanup(ep: &EvalPolicy, shared: &Shared) -> Result<Action, Error> {
    let namespace = ep.namespace().ok_or(Error::NoNamespace)?;
    let names = ProjectNames::new(&namespace, &ep.spec.project_ref.name);
    let policy = ep.name_any();
    // Its evaluators still run while the finalizer holds the policy: they resolve its open
    // alerts at their routes before the consumers (and then the pods) go.
    let retiring = match streams::retire_policy_alerts(&shared.js, &names, &policy).await {
        Ok(retiring) => retiring,
        Err(e) => AlertsRetiring::Pending(e),
    };
    if let AlertsRetiring::Pending(left) = retiring {
        tracing::info!(event = "policy_alerts_retiring", namespace = %namespace, policy = %policy, left = %left, "deleting: waiting for the policy's alerts to be resolved");
        if deletion_age(ep) <= shared.cleanup_timeout {
            cleanup_pending(
                shared,
                ep,
                format!(
                    "deleting: resolving the policy's open alerts (gives up after {:?}): {left}",
                    shared.cleanup_timeout
                ),
            )
            .await?;
            return Err(Error::Waiting {
                reason: left,
                after: RETIRE_POLL,
            });
        }
        shared
            .event(
                ep,
                true,
                "AlertsLeftOpen",
                format!(
                    "gave up resolving the policy's alerts after {:?} (are its evaluators running?): {left}; resolve them at the receiver",
                    shared.cleanup_timeout
                ),
            )
            .await;
    }
    match streams::delete_policy_consumers(&shared.js, &names, &policy).await {
        Ok(()) => {
            if let Err(e) = streams::forget_policy_alerts(&shared.js, &names, &policy).await {
                tracing::warn!(event = "alert_state_left", namespace = %namespace, policy = %policy, error = %e, "could not forget the deleted policy's alert state");
            }
            Ok(Action::await_change())
        }
        Err(e) if deletion_age(ep) > shared.cleanup_timeout => {
            shared
                .event(
                    ep,
                    true,
                    "ConsumersLeftBehind",
                    format!(
                        "gave up deleting the policy's consumers after {:?}: {e}",
                        shared.cleanup_timeout
                    ),
                )
                .await;
            Ok(Action::await_change())
        }
        Err(e) => {
            cleanup_pending(
                shared,
                ep,
                format!(
                    "deleting: waiting for NATS to delete the consumers (gives up after {:?}): {e}",
                    shared.cleanup_timeout
                ),
            )
            .await?;
            Err(Error::Nats(e))
        }
    }
}

/// A deletion still in progress: `Ready` false with reason `CleanupPending` and `message`.
async fn cleanup_pending(shared: &Shared, ep: &EvalPolicy, message: String) -> Result<(), Error> {
    let status = EvalPolicyStatus {
        conditions: conditions(
            &ep.status.clone().unwrap_or_default().conditions,
            &[Observed::new("Ready", false, "CleanupPending", message)],
            ep.metadata.generation,
        ),
        ..ep.status.clone().unwrap_or_default()
    };
    write_status(shared, ep, status).await
}
