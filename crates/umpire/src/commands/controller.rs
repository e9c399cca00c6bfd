//! `umpire controller`: the operator. Talks to the Kubernetes API from `KUBECONFIG` or the
//! in-cluster service account.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use umpire_controller::{ControllerConfig, LeaderElection};
use umpire_nats::connect::NatsSettings;
use umpire_runtime::telemetry::{self, LogFormat};

#[derive(clap::Args)]
pub struct Args {
    /// NATS URL, for the controller and rendered into every worker's config.
    #[arg(long, env = "UMPIRE_NATS_URL", default_value = "nats://nats:4222")]
    nats_url: String,
    /// NATS credentials file.
    #[arg(long, env = "UMPIRE_NATS_CREDENTIALS")]
    nats_credentials: Option<PathBuf>,
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
    /// Human-readable logs instead of JSON lines.
    #[arg(long)]
    text_logs: bool,
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
        nats: NatsSettings {
            url: args.nats_url.clone(),
            credentials_file: args.nats_credentials.clone(),
        },
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
