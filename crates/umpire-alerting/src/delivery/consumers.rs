//! The notifier consumers of a policy: one per route (so a dead webhook holds back only its
//! own route), the consumers of routes the policy no longer has removed, and the single
//! consumer of earlier builds drained before it is removed.

use async_nats::jetstream::{self, consumer};
use futures::TryStreamExt;
use umpire_api::compile::PlannedRoute;
use umpire_nats::topology::{self, ProjectNames};

/// The consumers to deliver from: every route's, plus the legacy one while it holds
/// undelivered notifications.
pub async fn notifier_consumers(
    js: &jetstream::Context,
    names: &ProjectNames,
    policy: &str,
    routes: &[PlannedRoute],
) -> Result<Vec<consumer::PullConsumer>, String> {
    let stream = js
        .get_stream(names.notifications_stream())
        .await
        .map_err(|e| format!("outbox stream: {e}"))?;
    let mut consumers = Vec::new();
    for route in routes {
        let consumer = stream
            .get_or_create_consumer(
                &names.notifier_consumer(policy, &route.name),
                topology::notifier_consumer(names, policy, &route.name),
            )
            .await
            .map_err(|e| format!("notifier consumer of route {}: {e}", route.name))?;
        consumers.push(consumer);
    }
    let prefix = names.notifier_consumer_prefix(policy);
    let wanted: Vec<String> = routes
        .iter()
        .map(|r| names.notifier_consumer(policy, &r.name))
        .collect();
    let existing: Vec<String> = stream
        .consumer_names()
        .try_collect()
        .await
        .map_err(|e| format!("listing notifier consumers: {e}"))?;
    for name in existing {
        if name.starts_with(&prefix) && !wanted.contains(&name) {
            // A removed route: nothing is published for it any more.
            if let Err(e) = stream.delete_consumer(&name).await {
                tracing::warn!(event = "notifier_consumer_not_deleted", consumer = %name, error = %e, "a removed route's consumer stays until the next start");
            }
        }
    }
    let legacy = names.legacy_notifier_consumer(policy);
    if let Ok(mut consumer) = stream.get_consumer::<consumer::pull::Config>(&legacy).await {
        let info = consumer
            .info()
            .await
            .map_err(|e| format!("legacy notifier consumer: {e}"))?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            let _ = stream.delete_consumer(&legacy).await;
        } else {
            tracing::info!(
                event = "legacy_notifier_draining",
                pending = info.num_pending + info.num_ack_pending as u64,
                "delivering notifications queued by an earlier build"
            );
            consumers.push(consumer);
        }
    }
    Ok(consumers)
}
