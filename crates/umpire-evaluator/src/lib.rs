//! The evaluator worker for one EvalPolicy: a durable pull consumer on its project's span
//! stream, shared by all replicas of the policy; judges; scores published to the project's
//! score stream with idempotent ids.

pub mod config;
pub mod judging;
pub mod metrics;
pub mod references;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umpire_nats::names::ProjectNames;
use umpire_nats::streams::ensure_stream;
use umpire_runtime::admin::AdminServer;
use umpire_runtime::readiness::Readiness;

use umpire_alerting::delivery::DeliverySettings;
use umpire_alerting::delivery::report::{DeliveryObserver, PrintedRoutes};
use umpire_alerting::metrics::AlertMetrics;
use umpire_alerting::{AlertingConfig, DEFAULT_LEASE_TTL, DEFAULT_TICK};

use crate::config::{ConfigError, DEFAULT_ACK_WAIT, DEFAULT_TRACE_SETTLE, EvaluatorConfig};
use crate::judging::{JudgeSetupError, PolicyJudges};
use crate::metrics::EvaluatorMetrics;
use crate::worker::{Worker, WorkerSettings};
use umpire_api::compile::PolicyPlan;

const SETUP_CHECK: &str = "consumer";

#[derive(Debug, thiserror::Error)]
pub enum EvaluatorError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Judges(#[from] JudgeSetupError),
    #[error(transparent)]
    Nats(#[from] umpire_nats::connect::ConnectError),
    #[error(transparent)]
    Admin(#[from] umpire_runtime::admin::AdminError),
    #[error("the EvalPolicy names no TraceProject")]
    NoProject,
    #[error(transparent)]
    Alerting(#[from] umpire_alerting::AlertingError),
}

pub struct RunningEvaluator {
    pub admin_addr: SocketAddr,
    pub readiness: Readiness,
    /// The worker's metrics, as served on the admin endpoint (`umpire local` reads them).
    pub metrics: Arc<EvaluatorMetrics>,
    pub alert_metrics: Arc<AlertMetrics>,
    task: JoinHandle<()>,
}

impl RunningEvaluator {
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// The score stream: every policy's scores and span observations for one project.
pub fn scores_stream_config(names: &ProjectNames, replicas: usize) -> stream::Config {
    stream::Config {
        name: names.scores_stream(),
        description: Some(format!(
            "Umpire: scores of TraceProject {}/{}",
            names.namespace(),
            names.project()
        )),
        subjects: vec![names.scores_wildcard()],
        max_age: Duration::from_secs(8 * 24 * 3600),
        max_bytes: 4 << 30,
        duplicate_window: Duration::from_secs(15 * 60),
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        num_replicas: replicas.max(1),
        ..Default::default()
    }
}

pub fn dead_letter_stream_config(names: &ProjectNames, replicas: usize) -> stream::Config {
    stream::Config {
        name: names.dead_letter_stream(),
        description: Some("Umpire: span messages evaluators could not decode".into()),
        subjects: vec![names.dead_letter_wildcard()],
        max_age: Duration::from_secs(14 * 24 * 3600),
        max_bytes: 1 << 30,
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        ..Default::default()
    }
}

/// How notifications leave when the evaluator does not run in a cluster (`umpire local`).
#[derive(Debug, Clone, Default)]
pub struct DeliveryOverrides {
    pub printed: PrintedRoutes,
    pub observer: Option<DeliveryObserver>,
}

pub async fn start(
    config: EvaluatorConfig,
    shutdown: CancellationToken,
) -> Result<RunningEvaluator, EvaluatorError> {
    start_with(config, DeliveryOverrides::default(), shutdown).await
}

/// [`start`], with notifications printed or observed as `overrides` say.
pub async fn start_with(
    config: EvaluatorConfig,
    overrides: DeliveryOverrides,
    shutdown: CancellationToken,
) -> Result<RunningEvaluator, EvaluatorError> {
    let plan = config.plan()?;
    let judges = PolicyJudges::new(
        &plan,
        &config.references(),
        std::env::var("UMPIRE_JUDGE_API_KEY")
            .ok()
            .map(umpire_llm::ApiKey::new),
    )?;
    let project = config.spec.project_ref.name.clone();
    if project.is_empty() {
        return Err(EvaluatorError::NoProject);
    }
    let names = ProjectNames::new(&config.namespace, &project);

    let mut registry = Registry::with_prefix("umpire");
    let metrics = Arc::new(EvaluatorMetrics::new(&mut registry));
    let alert_metrics = Arc::new(AlertMetrics::new(&mut registry));
    let readiness = Readiness::default();
    readiness.register(SETUP_CHECK, "the policy's consumer is not set up yet");
    let client = umpire_nats::connect::connect(
        &config.nats,
        &format!("umpire-evaluator {}", config.policy),
        &readiness,
        "nats",
    )
    .await?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .max_ack_inflight(16_384)
        .build(client.clone());
    let admin =
        AdminServer::bind(config.admin_listen, Arc::new(registry), readiness.clone()).await?;
    let admin_addr = admin.local_addr().unwrap_or(config.admin_listen);

    let settings = worker_settings(&config, &plan);
    let consumer_config = Worker::consumer_config(&names, &settings, &plan.selector);
    tracing::info!(
        event = "evaluator_starting",
        namespace = %config.namespace,
        policy = %config.policy,
        project = %project,
        judges = ?judges.names().collect::<Vec<_>>(),
        filter = %consumer_config.filter_subject,
        filters = ?consumer_config.filter_subjects,
        admin = %admin_addr,
        "evaluator starting"
    );
    let worker = Worker::new(
        js.clone(),
        names.clone(),
        plan.selector.clone(),
        judges,
        settings,
        metrics.clone(),
    );
    let alerting = umpire_alerting::start(
        js.clone(),
        AlertingConfig {
            names: names.clone(),
            policy: config.policy.clone(),
            rules: plan.alerts.clone(),
            routes: plan.routes.clone(),
            member: member_name(),
            lease_ttl: config.alert_lease_ttl.unwrap_or(DEFAULT_LEASE_TTL),
            tick: DEFAULT_TICK,
            replicas: config.state_replicas,
            delivery: DeliverySettings {
                secret_dir: config.secret_dir.clone(),
                printed: overrides.printed,
                observer: overrides.observer,
                ..DeliverySettings::default()
            },
        },
        alert_metrics.clone(),
        readiness.clone(),
        shutdown.clone(),
    )?;
    let setup_readiness = readiness.clone();
    let replicas = config.state_replicas;
    let task = tokio::spawn(async move {
        let admin_stop = CancellationToken::new();
        let admin_task = tokio::spawn(admin.run(admin_stop.clone()));
        if let Some(consumer) = set_up(
            &js,
            &names,
            replicas,
            consumer_config,
            &setup_readiness,
            &shutdown,
        )
        .await
        {
            worker.run(consumer, shutdown).await;
        }
        if let Some(alerting) = alerting {
            let _ = alerting.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
        admin_stop.cancel();
        let _ = admin_task.await;
        tracing::info!(event = "evaluator_stopped", "evaluator stopped");
    });
    Ok(RunningEvaluator {
        admin_addr,
        readiness,
        metrics,
        alert_metrics,
        task,
    })
}

/// This replica's name in leases: the pod name, or host and process id outside Kubernetes.
fn member_name() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
        format!("{host}-{}", std::process::id())
    })
}

fn worker_settings(config: &EvaluatorConfig, plan: &PolicyPlan) -> WorkerSettings {
    WorkerSettings {
        policy: config.policy.clone(),
        concurrency: plan.concurrency,
        needs_trace: plan.needs_trace(),
        trace_settle: config.trace_settle.unwrap_or(DEFAULT_TRACE_SETTLE),
        ack_wait: config.ack_wait.unwrap_or(DEFAULT_ACK_WAIT),
        group_keys: config.group_keys().into_iter().collect(),
    }
}

/// The policy's durable consumer on its project's span stream, exactly as its evaluators
/// create it (the controller creates it first, so no span published after the policy is
/// accepted is missed while pods start).
pub fn durable_consumer_config(
    config: &EvaluatorConfig,
    plan: &PolicyPlan,
) -> consumer::pull::Config {
    let names = ProjectNames::new(&config.namespace, &config.spec.project_ref.name);
    Worker::consumer_config(&names, &worker_settings(config, plan), &plan.selector)
}

/// Score and dead-letter streams, and the policy's durable consumer on the span stream
/// (which ingest or the controller creates), retried until NATS accepts or shutdown.
async fn set_up(
    js: &jetstream::Context,
    names: &ProjectNames,
    replicas: usize,
    config: consumer::pull::Config,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Option<consumer::PullConsumer> {
    let mut attempt = 0u32;
    loop {
        let result: Result<consumer::PullConsumer, String> = async {
            ensure_stream(js, scores_stream_config(names, replicas)).await.map_err(|e| e.to_string())?;
            ensure_stream(js, dead_letter_stream_config(names, replicas)).await.map_err(|e| e.to_string())?;
            let stream = js
                .get_stream(names.spans_stream())
                .await
                .map_err(|e| format!("span stream {} is not available yet: {e}", names.spans_stream()))?;
            let name = config.durable_name.clone().unwrap_or_default();
            match stream.get_consumer::<consumer::pull::Config>(&name).await {
                Ok(mut existing) => {
                    let current = existing.info().await.map_err(|e| e.to_string())?.config.clone();
                    if current.filter_subject != config.filter_subject
                        || current.filter_subjects != config.filter_subjects
                    {
                        // The policy's selection changed: the consumer follows it (an update
                        // keeps its position in the stream).
                        tracing::info!(event = "consumer_filter_updated", from = ?(&current.filter_subject, &current.filter_subjects), to = ?(&config.filter_subject, &config.filter_subjects), "updating the policy consumer's filter");
                        stream
                            .update_consumer(config.clone())
                            .await
                            .map_err(|e| format!("updating the consumer's filter: {e}"))
                    } else {
                        Ok(existing)
                    }
                }
                Err(_) => stream.create_consumer(config.clone()).await.map_err(|e| e.to_string()),
            }
        }
        .await;
        match result {
            Ok(consumer) => {
                readiness.set_ok(SETUP_CHECK);
                return Some(consumer);
            }
            Err(e) => {
                attempt += 1;
                readiness.set_failing(SETUP_CHECK, &e);
                if attempt % 10 == 1 {
                    tracing::warn!(event = "evaluator_setup_failed", error = %e, "retrying");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}
