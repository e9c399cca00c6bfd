//! `umpire controller`: the operator. Talks to the Kubernetes API from `KUBECONFIG` or the
//! in-cluster service account.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{ResourceRequirements, Volume};
use tokio_util::sync::CancellationToken;
use umpire_controller::children::network::WorkerNetworkPolicy;
use umpire_controller::children::pod::EmbeddingModel;
use umpire_controller::{ControllerConfig, LeaderElection};
use umpire_runtime::egress::EgressPolicy;
use umpire_runtime::telemetry::{self, LogFormat};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    nats: super::NatsArgs,
    /// The image ingest and evaluator pods run (this same binary).
    #[arg(
        long,
        env = "UMPIRE_IMAGE",
        default_value = "ghcr.io/umpire-dev/umpire:0.1.0"
    )]
    image: String,
    /// Admin (metrics, health) listen address.
    #[arg(long, default_value = "0.0.0.0:9466")]
    admin_listen: SocketAddr,
    /// Run without leader election (a single replica).
    #[arg(long)]
    no_leader_election: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "umpire-system")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "umpire-controller")]
    lease_name: String,
    /// This replica's identity in the election (default: the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds the Lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// How long a deletion retries NATS cleanup before letting the resource go.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    cleanup_timeout: Duration,
    /// How often `status.firingAlerts` of policies with alert rules is refreshed.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    alert_status_interval: Duration,
    /// Watch only these namespaces (repeat the flag or separate with commas); default: the
    /// whole cluster.
    #[arg(
        long = "watch-namespace",
        env = "UMPIRE_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    watch_namespaces: Vec<String>,
    /// Image pull policy of worker pods (`Always`, `IfNotPresent`, `Never`).
    #[arg(long, value_parser = ["Always", "IfNotPresent", "Never"])]
    image_pull_policy: Option<String>,
    /// Image pull Secret every worker pod gets (repeatable).
    #[arg(long = "image-pull-secret", value_delimiter = ',')]
    image_pull_secrets: Vec<String>,
    /// Resources (Kubernetes `resources` as JSON) of ingest pods whose TraceProject sets none.
    #[arg(long, value_parser = parse_resources)]
    ingest_resources: Option<ResourceRequirements>,
    /// Resources (Kubernetes `resources` as JSON) of evaluator pods whose EvalPolicy sets none.
    #[arg(long, value_parser = parse_resources)]
    evaluator_resources: Option<ResourceRequirements>,
    /// Give every worker a NetworkPolicy (JSON: `natsPeers`, `natsPort`, `otlpFrom`,
    /// `metricsFrom`, `evaluatorEgress` — Kubernetes NetworkPolicy peers and egress rules).
    #[arg(long, value_parser = parse_network_policy)]
    worker_network_policy: Option<WorkerNetworkPolicy>,
    /// Where judges and alert routes may send requests (JSON: `allowedHosts` — names or
    /// `*.suffix`; `allowedCidrs` — internal addresses allowed anyway). Internal addresses
    /// (loopback, private, link-local, CGNAT, unique-local) are refused unless allowed.
    #[arg(long, value_parser = parse_egress, default_value = "{}")]
    egress: EgressPolicy,
    /// The sentence-embedding model evaluators mount when their policy needs one
    /// (`embedding` judges, drift alerts): a Kubernetes volume source as JSON, e.g.
    /// `{"image": {"reference": "registry.example/minilm:1", "pullPolicy": "IfNotPresent"}}`
    /// or `{"persistentVolumeClaim": {"claimName": "models", "readOnly": true}}`.
    #[arg(long, value_parser = parse_volume_source)]
    embedding_model_volume: Option<Volume>,
    /// The model's directory inside that volume (default: its root).
    #[arg(long, default_value = "", requires = "embedding_model_volume")]
    embedding_model_path: String,
    /// Human-readable logs instead of JSON lines.
    #[arg(long)]
    text_logs: bool,
}

/// A volume source as JSON, named `embedding-model`.
fn parse_volume_source(text: &str) -> Result<Volume, String> {
    let mut source: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("not a Kubernetes volume source as JSON: {e}"))?;
    let object = source
        .as_object_mut()
        .ok_or("a volume source is a JSON object, e.g. {\"persistentVolumeClaim\": {…}}")?;
    object.insert("name".into(), "embedding-model".into());
    if object.len() != 2 {
        return Err("name exactly one volume source (image, persistentVolumeClaim, …)".into());
    }
    let volume: Volume = serde_json::from_value(source.clone())
        .map_err(|e| format!("not a Kubernetes volume source: {e}"))?;
    // Unknown fields are dropped when reading: a misspelt source would leave none.
    let known = serde_json::to_value(&volume).map_err(|e| e.to_string())?;
    if known.as_object().map_or(0, |o| o.len()) != 2 {
        return Err(format!("not a Kubernetes volume source: {source}"));
    }
    Ok(volume)
}

fn parse_resources(text: &str) -> Result<ResourceRequirements, String> {
    serde_json::from_str(text).map_err(|e| format!("not Kubernetes resources as JSON: {e}"))
}

fn parse_network_policy(text: &str) -> Result<WorkerNetworkPolicy, String> {
    serde_json::from_str(text).map_err(|e| format!("not a worker network policy as JSON: {e}"))
}

fn parse_egress(text: &str) -> Result<EgressPolicy, String> {
    serde_json::from_str(text).map_err(|e| format!("not an egress policy as JSON: {e}"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<umpire_api::common::Duration>()
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    telemetry::init(if args.text_logs {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
        format!("{host}-{}", std::process::id())
    });
    let config = ControllerConfig {
        nats: args.nats.settings(),
        image: args.image.clone(),
        admin_listen: args.admin_listen,
        leader_election: (!args.no_leader_election).then(|| LeaderElection {
            namespace: args.lease_namespace.clone(),
            lease_name: args.lease_name.clone(),
            identity,
            lease_seconds: args.lease_seconds,
        }),
        cleanup_timeout: args.cleanup_timeout,
        alert_status_interval: args.alert_status_interval,
        watch_namespaces: args
            .watch_namespaces
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect(),
        image_pull_policy: args.image_pull_policy.clone(),
        image_pull_secrets: args.image_pull_secrets.clone(),
        ingest_resources: args.ingest_resources.clone(),
        evaluator_resources: args.evaluator_resources.clone(),
        worker_network_policy: args.worker_network_policy.clone(),
        egress: args.egress.clone(),
        embedding_model: args
            .embedding_model_volume
            .clone()
            .map(|volume| EmbeddingModel {
                volume,
                path: args.embedding_model_path.clone(),
            }),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("loading the Kubernetes client config (KUBECONFIG or in-cluster)")?;
        let shutdown = CancellationToken::new();
        umpire_runtime::shutdown::cancel_on_signal(shutdown.clone());
        umpire_controller::run(client, config, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}
