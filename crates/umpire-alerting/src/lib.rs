//! Alerting for one EvalPolicy, run inside each evaluator replica.
//!
//! - [`evaluation::AlertEvaluator`]: the leader-elected writer of the policy's alert state
//!   ([`leader`]), evaluating rules over the score stream and persisting state ([`store`]).
//! - [`snapshot`]: the leader's windows, saved periodically so a successor replays only the
//!   scores stored since.
//! - [`outbox`]: notifications are stored in JetStream before anything else happens.
//! - [`delivery`]: every replica delivers from the outbox, one notification at a time, to
//!   PagerDuty Events v2 or webhooks, retrying until accepted.

pub mod delivery;
pub mod evaluation;
pub mod leader;
pub mod metrics;
pub mod outbox;
mod retired;
pub mod snapshot;
mod transitions;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umpire_api::compile::PlannedRoute;
use umpire_core::alert::rule::AlertRule;
use umpire_nats::streams::ensure_stream;
use umpire_nats::topology::{self, ProjectNames};
use umpire_runtime::readiness::Readiness;
use umpire_runtime::retry::set_up_until_ready;

use crate::delivery::{DeliverySettings, Notifier, run_deliveries};
use crate::evaluation::AlertEvaluator;
use crate::leader::PolicyLease;
use crate::metrics::AlertMetrics;
use crate::snapshot::WindowSnapshots;
use umpire_contract::alert_state::AlertStore;

pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
pub const DEFAULT_TICK: Duration = Duration::from_millis(250);
pub const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(60);
const READINESS_CHECK: &str = "alerting";

#[derive(Debug, Clone)]
pub struct AlertingConfig {
    pub names: ProjectNames,
    pub policy: String,
    pub rules: Vec<AlertRule>,
    pub routes: Vec<PlannedRoute>,
    /// This replica's name in the leader lease (pod name).
    pub member: String,
    pub lease_ttl: Duration,
    pub tick: Duration,
    /// How often the leader snapshots its windows ([`snapshot`]).
    pub snapshot_interval: Duration,
    /// Replicas of the alert buckets and the outbox stream (JetStream clustering).
    pub replicas: usize,
    pub delivery: DeliverySettings,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertingError {
    #[error(transparent)]
    Notifier(#[from] delivery::NotifierSetupError),
}

/// Starts the alert evaluator (if the policy has rules) and the notifier; they run until
/// `shutdown`. Setup against NATS is retried in the background; readiness reports it.
pub fn start(
    js: jetstream::Context,
    config: AlertingConfig,
    metrics: Arc<AlertMetrics>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<Option<JoinHandle<()>>, AlertingError> {
    // Without rules the leader still runs once: alerts stored for rules the policy no
    // longer has are resolved and forgotten (see `retired`). A policy without routes has
    // nowhere to send anything and never had alerts.
    if config.rules.is_empty() && config.routes.is_empty() {
        return Ok(None);
    }
    let notifier = Notifier::new(
        config.routes.clone(),
        config.delivery.clone(),
        metrics.clone(),
    )?;
    readiness.register(READINESS_CHECK, "alert state and outbox are not set up yet");
    Ok(Some(tokio::spawn(async move {
        let Some((evaluator, consumers)) =
            set_up(&js, &config, metrics, &readiness, &shutdown).await
        else {
            return;
        };
        let notifier = Arc::new(notifier);
        let dead_letters = delivery::DeadLetters::new(js.clone(), &config.names, &config.policy);
        let deliveries: Vec<_> = consumers
            .into_iter()
            .map(|consumer| {
                tokio::spawn(run_deliveries(
                    consumer,
                    notifier.clone(),
                    dead_letters.clone(),
                    shutdown.clone(),
                ))
            })
            .collect();
        evaluator.run(shutdown).await;
        for delivery in deliveries {
            let _ = delivery.await;
        }
    })))
}

async fn set_up(
    js: &jetstream::Context,
    config: &AlertingConfig,
    metrics: Arc<AlertMetrics>,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Option<(
    AlertEvaluator,
    Vec<async_nats::jetstream::consumer::PullConsumer>,
)> {
    set_up_until_ready(READINESS_CHECK, readiness, shutdown, || async {
        let names = &config.names;
        ensure_stream(js, topology::outbox_stream(names, config.replicas))
            .await
            .map_err(|e| e.to_string())?;
        let consumers =
            delivery::consumers::notifier_consumers(js, names, &config.policy, &config.routes)
                .await?;
        let lease = PolicyLease::open(
            js,
            names,
            &config.policy,
            &config.member,
            config.lease_ttl,
            config.replicas,
        )
        .await
        .map_err(|e| e.to_string())?;
        let store = AlertStore::open(js, names, &config.policy, config.replicas)
            .await
            .map_err(|e| e.to_string())?;
        let snapshots = WindowSnapshots::open(js, names, &config.policy, config.replicas).await?;
        // The leader replays scores; the stream is made by the evaluator workers.
        js.get_stream(names.scores_stream())
            .await
            .map_err(|e| format!("score stream {}: {e}", names.scores_stream()))?;
        Ok::<_, String>((
            AlertEvaluator {
                js: js.clone(),
                names: names.clone(),
                policy: config.policy.clone(),
                rules: config.rules.clone(),
                lease,
                store,
                metrics: metrics.clone(),
                tick: config.tick,
                outbox_fence: None,
                snapshots,
                snapshot_interval: config.snapshot_interval,
            },
            consumers,
        ))
    })
    .await
}
