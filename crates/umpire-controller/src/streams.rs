//! The JetStream side of reconciling: the project's span stream, the policy's durable
//! consumer, and their removal when the resource is deleted. Every call is bounded in time,
//! so an unreachable NATS turns into a condition, not a stuck reconcile.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use umpire_api::eval_policy::{AlertState, AlertStatus};
use umpire_contract::alert_state::AlertStore;
use umpire_core::alert::state::Phase;
use umpire_nats::consumers::ensure_consumer;
use umpire_nats::streams::ensure_stream;
use umpire_nats::topology::ProjectNames;

const TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: NATS did not answer within {TIMEOUT:?}")),
    }
}

/// Why the span stream is not as the spec asks.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamProblem {
    /// NATS refused the configuration; its own words.
    Rejected(String),
    /// NATS did not answer.
    Unavailable(String),
}

impl StreamProblem {
    pub fn message(&self) -> &str {
        match self {
            StreamProblem::Rejected(m) | StreamProblem::Unavailable(m) => m,
        }
    }
}

/// Creates the span stream, or updates it to the spec's limits.
pub async fn ensure_project_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<String, StreamProblem> {
    let name = config.name.clone();
    match tokio::time::timeout(TIMEOUT, ensure_stream(js, config)).await {
        Ok(Ok(_)) => Ok(name),
        Ok(Err(e)) if e.rejected => Err(StreamProblem::Rejected(format!(
            "NATS refused stream {name}: {}",
            e.message
        ))),
        Ok(Err(e)) => Err(StreamProblem::Unavailable(e.to_string())),
        Err(_) => Err(StreamProblem::Unavailable(format!(
            "setting up stream {name}: NATS did not answer within {TIMEOUT:?}"
        ))),
    }
}

/// Creates the policy's durable consumer, or updates its filter to the policy's selection
/// (the same rule its evaluators apply).
pub async fn ensure_policy_consumer(
    js: &jetstream::Context,
    names: &ProjectNames,
    config: consumer::pull::Config,
) -> Result<String, String> {
    let name = config.durable_name.clone().unwrap_or_default();
    let stream_name = names.spans_stream();
    let stream = bounded(
        &format!("span stream {stream_name}"),
        js.get_stream(&stream_name),
    )
    .await?;
    bounded(
        &format!("consumer {name}"),
        ensure_consumer(&stream, config),
    )
    .await?;
    Ok(name)
}

fn is_not_found(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("not found") || lower.contains("10059") || lower.contains("10014")
}

/// Deletes every stream of the project; missing ones are fine.
pub async fn delete_project_streams(
    js: &jetstream::Context,
    names: &ProjectNames,
) -> Result<Vec<String>, String> {
    let mut deleted = Vec::new();
    for name in names.all_streams() {
        tracing::debug!(event = "stream_deleting", stream = %name, "deleting stream");
        match bounded(&format!("deleting stream {name}"), js.delete_stream(&name)).await {
            Ok(_) => deleted.push(name),
            Err(e) if is_not_found(&e) => {
                tracing::debug!(event = "stream_absent", stream = %name, detail = %e, "nothing to delete");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// The policy's notifier consumers on the outbox: one per route, and the single consumer
/// of earlier builds if it is still there.
async fn notifier_consumer_names(
    stream: &jetstream::stream::Stream,
    names: &ProjectNames,
    policy: &str,
) -> Result<Vec<String>, String> {
    use futures::TryStreamExt;
    let prefix = names.notifier_consumer_prefix(policy);
    let legacy = names.legacy_notifier_consumer(policy);
    let all: Vec<String> = bounded(
        "listing the notifier consumers",
        stream.consumer_names().try_collect::<Vec<String>>(),
    )
    .await?;
    Ok(all
        .into_iter()
        .filter(|name| name.starts_with(&prefix) || *name == legacy)
        .collect())
}

/// Deletes the policy's consumers (span consumer and every route's notifier); missing ones
/// are fine.
pub async fn delete_policy_consumers(
    js: &jetstream::Context,
    names: &ProjectNames,
    policy: &str,
) -> Result<(), String> {
    let mut targets = vec![(names.spans_stream(), names.policy_consumer(policy))];
    match bounded("the outbox", js.get_stream(names.notifications_stream())).await {
        Ok(outbox) => {
            for consumer in notifier_consumer_names(&outbox, names, policy).await? {
                targets.push((names.notifications_stream(), consumer));
            }
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e),
    }
    for (stream_name, consumer_name) in targets {
        let stream = match bounded(
            &format!("stream {stream_name}"),
            js.get_stream(&stream_name),
        )
        .await
        {
            Ok(stream) => stream,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(e),
        };
        match bounded(
            &format!("deleting consumer {consumer_name}"),
            stream.delete_consumer(&consumer_name),
        )
        .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Alerts status lists at most (the count covers all).
const LISTED_ALERTS: usize = 50;

/// Alerts of `policy` firing now (count) and pending or firing (the first
/// [`LISTED_ALERTS`], firing first), from the alert state its evaluators keep in NATS KV.
pub async fn alerts(
    js: &jetstream::Context,
    names: &ProjectNames,
    policy: &str,
) -> Result<(i32, Vec<AlertStatus>), String> {
    let store = bounded(
        "opening the alert state",
        AlertStore::open_existing(js, names, policy),
    )
    .await?;
    // No bucket yet: no evaluator has stored alert state, so nothing fires.
    let Some(mut store) = store else {
        return Ok((0, Vec::new()));
    };
    let stored = bounded("reading the alert state", store.load()).await?;
    let firing = stored.iter().filter(|a| a.status.is_firing()).count() as i32;
    let mut listed: Vec<AlertStatus> = stored
        .iter()
        .filter_map(|alert| {
            let (state, since_ns) = match alert.status.phase {
                Phase::Firing { since_ns, .. } => (AlertState::Firing, since_ns),
                Phase::Pending { since_ns } => (AlertState::Pending, since_ns),
                Phase::Inactive => return None,
            };
            let since = k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(since_ns))
                .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
            Some(AlertStatus {
                rule: alert.rule.clone(),
                group: alert.group.clone(),
                state,
                since: Time(since),
                value: alert.status.value,
            })
        })
        .collect();
    listed.sort_by(|a, b| {
        (a.state != AlertState::Firing, &a.rule, &a.group).cmp(&(
            b.state != AlertState::Firing,
            &b.rule,
            &b.group,
        ))
    });
    listed.truncate(LISTED_ALERTS);
    Ok((firing, listed))
}

/// Where a deleted policy's alerts stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertsRetiring {
    /// None left open, and the outbox delivered what was sent for them.
    Done,
    /// Still resolving or delivering: what is left.
    Pending(String),
}

/// Marks the policy as being deleted so its alert leader resolves and forgets its alerts,
/// and reports whether that is finished (no alert stored, the notifier's queue empty).
pub async fn retire_policy_alerts(
    js: &jetstream::Context,
    names: &ProjectNames,
    policy: &str,
) -> Result<AlertsRetiring, String> {
    let store = bounded(
        "opening the alert state",
        AlertStore::open_existing(js, names, policy),
    )
    .await?;
    // No bucket: no evaluator of the project ever stored alert state.
    let Some(mut store) = store else {
        return Ok(AlertsRetiring::Done);
    };
    bounded("marking the policy deleted", store.retire_policy()).await?;
    let open = bounded("reading the alert state", store.load())
        .await?
        .len();
    if open > 0 {
        return Ok(AlertsRetiring::Pending(format!(
            "{open} alert(s) of the policy still stored; its alert leader resolves them"
        )));
    }
    let stream = match bounded("the outbox", js.get_stream(names.notifications_stream())).await {
        Ok(stream) => stream,
        Err(e) if is_not_found(&e) => return Ok(AlertsRetiring::Done),
        Err(e) => return Err(e),
    };
    let mut queued = 0u64;
    for name in notifier_consumer_names(&stream, names, policy).await? {
        let mut notifier = match bounded(
            "a notifier consumer",
            stream.get_consumer::<consumer::pull::Config>(&name),
        )
        .await
        {
            Ok(consumer) => consumer,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(e),
        };
        let info = bounded("a notifier's queue", notifier.info()).await?;
        queued += info.num_pending + info.num_ack_pending as u64;
    }
    Ok(if queued == 0 {
        AlertsRetiring::Done
    } else {
        AlertsRetiring::Pending(format!(
            "{queued} notification(s) of the policy still being delivered"
        ))
    })
}

/// Removes the deleted policy's mark and any alert left, so a policy re-created under the
/// same name starts clean.
pub async fn forget_policy_alerts(
    js: &jetstream::Context,
    names: &ProjectNames,
    policy: &str,
) -> Result<(), String> {
    let store = bounded(
        "opening the alert state",
        AlertStore::open_existing(js, names, policy),
    )
    .await?;
    match store {
        Some(mut store) => bounded("forgetting the alert state", store.clear_policy()).await,
        None => Ok(()),
    }
}

/// How many of `policy`'s notifications are on the dead-letter stream, and the reason the
/// latest was given up (`None` when there are none or no stream).
pub async fn dead_lettered_notifications(
    js: &jetstream::Context,
    names: &ProjectNames,
    policy: &str,
) -> Result<(u64, Option<String>), String> {
    use futures::TryStreamExt;
    let subject = names.notification_dead_letter_subject(policy);
    let stream = match bounded(
        "the dead-letter stream",
        js.get_stream(names.dead_letter_stream()),
    )
    .await
    {
        Ok(stream) => stream,
        Err(e) if is_not_found(&e) => return Ok((0, None)),
        Err(e) => return Err(e),
    };
    let counts: Vec<(String, usize)> = bounded("counting dead-lettered notifications", async {
        stream
            .info_with_subjects(&subject)
            .await
            .map_err(|e| e.to_string())?
            .try_collect::<Vec<(String, usize)>>()
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    let count: u64 = counts.iter().map(|(_, n)| *n as u64).sum();
    if count == 0 {
        return Ok((0, None));
    }
    let reason = bounded(
        "reading the latest dead-lettered notification",
        stream.get_last_raw_message_by_subject(&subject),
    )
    .await
    .ok()
    .and_then(|message| {
        message
            .headers
            .get("Umpire-Reason")
            .map(|v| v.as_str().to_owned())
    });
    Ok((count, reason))
}
