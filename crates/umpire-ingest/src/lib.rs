//! The ingest worker for one TraceProject:
//! OTLP gRPC/HTTP → redact → intake stream (per trace partition) → tail sampling by the
//! partition's owner → normalised spans in the project's span stream.

pub mod budget;
pub mod intake;
pub mod metrics;
pub mod receiver;
pub mod sampler;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umpire_contract::export_status::ExportStatusStore;
use umpire_nats::streams::ensure_stream;
use umpire_nats::topology::{self, ProjectNames};
use umpire_runtime::admin::AdminServer;
use umpire_runtime::readiness::Readiness;
use umpire_runtime::retry::set_up_until_ready;

use crate::budget::MemoryBudget;
use crate::intake::IntakePublisher;
use crate::metrics::IngestMetrics;
use crate::receiver::ExportPipeline;
use crate::receiver::admission::Admission;
use crate::receiver::grpc::GrpcReceiver;
use crate::receiver::http::HttpReceiver;
use crate::sampler::{Sampler, SamplerSettings};
use umpire_contract::ingest::{ConfigError, IngestConfig, span_stream_limits};

const STREAMS_CHECK: &str = "streams";
/// Headers an intake message may carry beyond the server's payload limit (which the
/// publisher fits the payload to).
const INTAKE_HEADER_SLACK: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Nats(#[from] umpire_nats::connect::ConnectError),
    #[error("binding the {what} listener on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Admin(#[from] umpire_runtime::admin::AdminError),
}

/// A started ingest worker.
pub struct RunningIngest {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub readiness: Readiness,
    /// The worker's metrics, as served on the admin endpoint (`umpire local` reads them).
    pub metrics: Arc<IngestMetrics>,
    task: JoinHandle<()>,
}

impl RunningIngest {
    /// Waits until the worker has shut down (after `shutdown` was cancelled).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// What the ingest process serves on `/metrics` (its own and its exporters' metrics); the
/// dashboard test reads the metric names from here.
pub fn metrics_registry() -> (Registry, Arc<IngestMetrics>, umpire_export::ExportMetrics) {
    let mut registry = Registry::with_prefix("umpire");
    let metrics = Arc::new(IngestMetrics::new(&mut registry));
    let export_metrics = umpire_export::ExportMetrics::new(&mut registry);
    (registry, metrics, export_metrics)
}

/// Starts the worker; it runs until `shutdown` is cancelled, then stops accepting requests,
/// finishes those in flight, flushes buffered decisions and leaves.
pub async fn start(
    config: IngestConfig,
    shutdown: CancellationToken,
) -> Result<RunningIngest, IngestError> {
    let plan = config.plan()?;
    let token = config.bearer_token()?;
    let member = config.member_id();
    let names = ProjectNames::new(&config.namespace, &config.project);

    let (registry, metrics, export_metrics) = metrics_registry();
    let secrets = umpire_runtime::secrets::MountedSecrets::new(config.secret_dir.clone());
    let egress = config.egress.clone();
    let readiness = Readiness::default();
    readiness.register(STREAMS_CHECK, "streams not set up yet");
    // Three connections, because one TCP stream is one queue: receivers' publish
    // acknowledgements must not wait behind the sampler's megabytes of intake deliveries, and
    // lease renewals must not wait behind either.
    let client = umpire_nats::connect::connect(
        &config.nats,
        &format!("umpire-ingest {member}"),
        &readiness,
        "nats",
    )
    .await?;
    let sampler_client = umpire_nats::connect::connect(
        &config.nats,
        &format!("umpire-ingest {member} sampler"),
        &readiness,
        "nats_sampler",
    )
    .await?;
    let control = umpire_nats::connect::connect(
        &config.nats,
        &format!("umpire-ingest {member} control"),
        &readiness,
        "nats_control",
    )
    .await?;
    // Each role gets its own JetStream context, hence its own budget of unacknowledged
    // publishes; none waits for a permit (a full budget is an error the role handles), so no
    // role can starve another or itself.
    let context = |client: &async_nats::Client, inflight: usize| {
        jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .max_ack_inflight(inflight)
            .backpressure_on_inflight(false)
            .build(client.clone())
    };
    let intake_js = context(&client, 65_536);
    let publish_js = context(&sampler_client, 16_384);
    let control_js = context(&control, 1_024);

    let budget = MemoryBudget::from_limit(umpire_runtime::memory::memory_limit());
    let max_request_bytes = usize::try_from(plan.max_request_bytes).unwrap_or(usize::MAX);
    let admission = Arc::new(Admission::new(
        budget.requests,
        max_request_bytes,
        metrics.clone(),
    ));
    let pipeline = Arc::new(ExportPipeline::new(
        plan.redactor.clone(),
        config.partitions,
        IntakePublisher::new(intake_js, names.clone()),
        token,
        max_request_bytes,
        metrics.clone(),
    ));
    let bind_error = |what, addr| move |source| IngestError::Bind { what, addr, source };
    let grpc = GrpcReceiver::bind(config.listen.grpc, pipeline.clone(), admission.clone())
        .await
        .map_err(bind_error("gRPC", config.listen.grpc))?;
    let http = HttpReceiver::bind(config.listen.http, pipeline, admission.clone())
        .await
        .map_err(bind_error("HTTP", config.listen.http))?;
    let admin =
        AdminServer::bind(config.listen.admin, Arc::new(registry), readiness.clone()).await?;
    let (grpc_addr, http_addr) = (
        grpc.local_addr()
            .map_err(bind_error("gRPC", config.listen.grpc))?,
        http.local_addr()
            .map_err(bind_error("HTTP", config.listen.http))?,
    );
    let admin_addr = admin.local_addr().unwrap_or(config.listen.admin);

    // Intake messages are cut to the server's max payload, so one pull batch of that size
    // always fits the largest (a batch smaller than a message would stall the partition).
    let intake_message_bytes = sampler_client
        .server_info()
        .max_payload
        .max(1 << 20)
        .saturating_add(INTAKE_HEADER_SLACK);
    let sampler = Sampler::new(
        publish_js,
        control_js.clone(),
        names.clone(),
        plan.sampler.clone(),
        SamplerSettings {
            member: member.clone(),
            partitions: config.partitions,
            decision_wait: plan.decision_wait,
            trace_timeout: plan.trace_timeout.max(plan.decision_wait),
            max_buffered_spans: usize::try_from(plan.max_buffered_spans).unwrap_or(usize::MAX),
            max_buffered_bytes: budget.buffer,
            intake_batch_bytes: intake_message_bytes,
            max_pending_delivery_bytes: budget.deliveries(intake_message_bytes),
            kv_replicas: plan.stream.replicas,
            ack_wait: config
                .intake_ack_wait
                .filter(|wait| *wait > plan.decision_wait)
                .unwrap_or(plan.decision_wait + Duration::from_secs(60)),
            lease_ttl: config
                .lease_ttl
                .unwrap_or(sampler::leases::DEFAULT_LEASE_TTL),
        },
        metrics.clone(),
    );
    let mut streams = vec![
        topology::intake_stream(&names, config.intake_max_bytes, plan.stream.replicas),
        topology::span_stream(&names, &span_stream_limits(&plan)),
        topology::dead_letter_stream(&names, plan.stream.replicas),
    ];
    let replicas = plan.stream.replicas;
    let export_targets = config.spec.export.clone().unwrap_or_default();
    let export = if export_targets.is_empty() {
        None
    } else {
        // Evaluations are exported from the scores stream, which exists before any policy.
        streams.push(topology::scores_stream(&names, plan.stream.replicas));
        let export_client = umpire_nats::connect::connect(
            &config.nats,
            &format!("umpire-ingest {member} export"),
            &readiness,
            "nats_export",
        )
        .await?;
        Some((export_client, export_targets))
    };

    tracing::info!(
        event = "ingest_starting",
        namespace = %config.namespace,
        project = %config.project,
        member = %member,
        grpc = %grpc_addr,
        http = %http_addr,
        admin = %admin_addr,
        partitions = config.partitions,
        memory_limit = budget.limit,
        request_budget_bytes = admission.capacity(),
        buffer_budget_bytes = budget.buffer,
        "ingest starting"
    );
    let setup_readiness = readiness.clone();
    let task = tokio::spawn(async move {
        let admin_stop = CancellationToken::new();
        let admin_task = tokio::spawn(admin.run(admin_stop.clone()));
        // The export status bucket exists whether or not the project exports, so adding a
        // target later needs no other set-up and the project's state has one shape.
        let buckets = vec![topology::export_status_bucket(&names, replicas)];
        set_up_streams(&control_js, streams, buckets, &setup_readiness, &shutdown).await;
        let export_stop = CancellationToken::new();
        let mut exports = tokio::task::JoinSet::new();
        if let Some((export_client, targets)) = &export {
            let js = jetstream::new(export_client.clone());
            let store = match ExportStatusStore::open(&js, &names, replicas).await {
                Ok(store) => Some(Arc::new(store)),
                Err(e) => {
                    tracing::warn!(event = "export_status_unavailable", error = %e, "exporting without reporting delivery state");
                    None
                }
            };
            let reporting = umpire_export::Reporting {
                store,
                member: member.clone(),
            };
            let (tasks, errors) = umpire_export::start(
                &js,
                &names,
                targets,
                &secrets,
                egress.as_ref(),
                &export_metrics,
                &reporting,
                &export_stop,
            );
            for error in errors {
                tracing::error!(event = "export_target_invalid", error = %error, "not exporting to this target");
            }
            exports = tasks;
        }
        let sampler_stop = CancellationToken::new();
        let sampler_task = spawn_sampler_thread(sampler, sampler_stop.clone());
        let (grpc_result, http_result) =
            tokio::join!(grpc.run(shutdown.clone()), http.run(shutdown.clone()));
        if let Err(e) = grpc_result {
            tracing::error!(event = "grpc_server_failed", error = %e, "gRPC receiver stopped with an error");
        }
        if let Err(e) = http_result {
            tracing::error!(event = "http_server_failed", error = %e, "HTTP receiver stopped with an error");
        }
        // Receivers are closed: nothing new enters the intake. Drain the sampler.
        sampler_stop.cancel();
        let _ = sampler_task.await;
        // Stop exporting: a batch being sent finishes; one waiting for a down backend is
        // handed back to JetStream for the next replica or start.
        export_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while exports.join_next().await.is_some() {}
        })
        .await;
        // Bounded: with NATS unreachable a flush would wait for a reconnection forever.
        let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), sampler_client.flush()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), control.flush()).await;
        admin_stop.cancel();
        let _ = admin_task.await;
        tracing::info!(event = "ingest_stopped", "ingest stopped");
    });
    Ok(RunningIngest {
        grpc_addr,
        http_addr,
        admin_addr,
        readiness,
        metrics,
        task,
    })
}

/// Runs the sampler on its own thread and single-threaded runtime. Its work comes in bursts
/// (a wave of decisions, a batch of publications); on the receivers' runtime those bursts
/// would sit in front of OTLP requests, while as a separate thread the OS interleaves them
/// finely and request latency stays flat.
fn spawn_sampler_thread(
    sampler: Sampler,
    stop: CancellationToken,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done, finished) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("umpire-sampler".into()).spawn(move || {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => {
                if let Err(e) = runtime.block_on(sampler.run(stop)) {
                    tracing::error!(event = "sampler_failed", error = %e, "the sampler stopped");
                }
            }
            Err(e) => tracing::error!(event = "sampler_failed", error = %e, "cannot start the sampler's runtime"),
        }
        let _ = done.send(());
    });
    if let Err(e) = spawned {
        tracing::error!(event = "sampler_failed", error = %e, "cannot start the sampler thread");
    }
    finished
}

/// Creates or updates the project's streams, retrying until NATS accepts (or shutdown).
async fn set_up_streams(
    js: &jetstream::Context,
    configs: Vec<stream::Config>,
    buckets: Vec<umpire_nats::kv::BucketSettings>,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) {
    set_up_until_ready(STREAMS_CHECK, readiness, shutdown, || async {
        for config in &configs {
            ensure_stream(js, config.clone()).await?;
        }
        for bucket in &buckets {
            umpire_nats::kv::ensure_bucket(js, bucket).await?;
        }
        Ok::<_, umpire_nats::streams::StreamSetupError>(())
    })
    .await;
}
