//! The evaluator worker for one EvalPolicy: a durable pull consumer on its project's span
//! stream, shared by all replicas of the policy; judges; scores published to the project's
//! score stream with idempotent ids.

pub mod drift;
pub mod judging;
pub mod metrics;
pub mod shared_counters;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umpire_nats::consumers::ensure_consumer;
use umpire_nats::streams::ensure_stream;
use umpire_nats::topology::{self, ProjectNames};
use umpire_runtime::admin::AdminServer;
use umpire_runtime::readiness::Readiness;
use umpire_runtime::retry::set_up_until_ready;

use umpire_alerting::delivery::DeliverySettings;
use umpire_alerting::delivery::report::{DeliveryObserver, PrintedRoutes};
use umpire_alerting::metrics::AlertMetrics;
use umpire_alerting::{AlertingConfig, DEFAULT_LEASE_TTL, DEFAULT_SNAPSHOT_INTERVAL, DEFAULT_TICK};

use crate::judging::{JudgeSetupError, PolicyJudges};
use crate::metrics::EvaluatorMetrics;
use crate::shared_counters::KvCounters;
use crate::worker::{Worker, WorkerSettings};
use umpire_api::compile::PolicyPlan;
use umpire_contract::evaluator::{ConfigError, DEFAULT_ACK_WAIT, EvaluatorConfig};
use umpire_core::span::SpanReading;
use umpire_embed::EmbeddingBatcher;

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
    #[error("the embedding model: {0}")]
    EmbeddingModel(#[from] umpire_embed::LoadError),
    #[error(
        "drift alerts compare sentence embeddings, but no embedding model is configured (the chart's `embeddings.model`, or `--embedding-model DIR`)"
    )]
    NoEmbeddingModel,
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

/// What the evaluator process serves on `/metrics` (judging and alerting); the dashboard
/// test reads the metric names from here.
pub fn metrics_registry() -> (Registry, Arc<EvaluatorMetrics>, Arc<AlertMetrics>) {
    let mut registry = Registry::with_prefix("umpire");
    let metrics = Arc::new(EvaluatorMetrics::new(&mut registry));
    let alert_metrics = Arc::new(AlertMetrics::new(&mut registry));
    (registry, metrics, alert_metrics)
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
    let counters =
        PolicyJudges::has_shared_limits(&plan).then(|| Arc::new(KvCounters::new(&config.policy)));
    let embeddings = match (&config.embedding_model, plan.needs_embeddings()) {
        (Some(dir), true) => Some(EmbeddingBatcher::load(dir.clone()).await?),
        (None, true) if !plan.drift_fields().is_empty() => {
            return Err(EvaluatorError::NoEmbeddingModel);
        }
        _ => None,
    };
    let judges = PolicyJudges::new(
        &plan,
        &config.references(),
        std::env::var("UMPIRE_JUDGE_API_KEY")
            .ok()
            .map(umpire_llm::ApiKey::new),
        config.egress.as_ref(),
        counters
            .clone()
            .map(|c| c as Arc<dyn umpire_llm::SharedCounters>),
        embeddings.as_ref(),
    )
    .await?;
    let project = config.spec.project_ref.name.clone();
    if project.is_empty() {
        return Err(EvaluatorError::NoProject);
    }
    let names = ProjectNames::new(&config.namespace, &project);

    let (registry, metrics, alert_metrics) = metrics_registry();
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

    let settings = worker_settings(&config, &plan, embeddings.as_ref());
    let consumer_config = config.policy_consumer(&plan);
    tracing::info!(
        event = "evaluator_starting",
        namespace = %config.namespace,
        policy = %config.policy,
        project = %project,
        judges = ?judges.names().collect::<Vec<_>>(),
        filter = %consumer_config.filter_subject,
        filters = ?consumer_config.filter_subjects,
        // Otherwise only the attributes the policy names (and gen_ai.response.id).
        decodes_all_attributes = settings.reading.decodes_all(),
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
            snapshot_interval: config
                .alert_snapshot_interval
                .unwrap_or(DEFAULT_SNAPSHOT_INTERVAL),
            replicas: config.state_replicas,
            delivery: DeliverySettings {
                secret_dir: config.secret_dir.clone(),
                printed: overrides.printed,
                observer: overrides.observer,
                egress: config.egress.clone(),
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
            counters.as_deref(),
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

fn worker_settings(
    config: &EvaluatorConfig,
    plan: &PolicyPlan,
    embeddings: Option<&EmbeddingBatcher>,
) -> WorkerSettings {
    let drift_fields = plan.drift_fields();
    WorkerSettings {
        drift: embeddings
            .filter(|_| !drift_fields.is_empty())
            .map(|batcher| crate::drift::DriftEmbeddings {
                fields: drift_fields,
                batcher: batcher.clone(),
            }),
        policy: config.policy.clone(),
        concurrency: plan.concurrency,
        needs_trace: plan.needs_trace(),
        ack_wait: config.ack_wait.unwrap_or(DEFAULT_ACK_WAIT),
        group_keys: config.group_keys().into_iter().collect(),
        // The policy's whole text: any attribute it reads is named in it. Should it not
        // serialise, every attribute is decoded.
        reading: serde_json::to_string(&config.spec).map_or_else(
            |_| SpanReading::whole(),
            |policy| SpanReading::for_policy(&policy),
        ),
    }
}

/// Score and dead-letter streams, the shared-limit bucket when LLM judges have limits, and
/// the policy's durable consumer on the span stream (which ingest or the controller
/// creates), retried until NATS accepts or shutdown.
async fn set_up(
    js: &jetstream::Context,
    names: &ProjectNames,
    replicas: usize,
    config: consumer::pull::Config,
    counters: Option<&KvCounters>,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Option<consumer::PullConsumer> {
    set_up_until_ready(SETUP_CHECK, readiness, shutdown, || async {
        if let Some(counters) = counters {
            let store =
                umpire_nats::kv::ensure_bucket(js, &topology::budget_bucket(names, replicas))
                    .await
                    .map_err(|e| e.to_string())?;
            counters.set_store(store);
        }
        ensure_stream(js, topology::scores_stream(names, replicas))
            .await
            .map_err(|e| e.to_string())?;
        ensure_stream(js, topology::dead_letter_stream(names, replicas))
            .await
            .map_err(|e| e.to_string())?;
        let stream = js.get_stream(names.spans_stream()).await.map_err(|e| {
            format!(
                "span stream {} is not available yet: {e}",
                names.spans_stream()
            )
        })?;
        ensure_consumer(&stream, config.clone())
            .await
            .map_err(|e| e.to_string())
    })
    .await
}
