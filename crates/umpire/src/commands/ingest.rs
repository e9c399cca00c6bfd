//! `umpire ingest --config FILE`: the ingest worker for one TraceProject.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use umpire_contract::ingest::{IngestConfig, ListenAddresses, RuntimeDefaults};
use umpire_contract::validation::validate_project;
use umpire_runtime::telemetry::{self, LogFormat};

#[derive(clap::Args)]
pub struct Args {
    /// An ingest config (as the controller renders it) or a TraceProject manifest.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    #[command(flatten)]
    nats: super::NatsArgs,
    /// File holding the bearer token, used when --config is a TraceProject manifest.
    #[arg(long, env = "UMPIRE_INGEST_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// OTLP/gRPC listen address, used when --config is a TraceProject manifest.
    #[arg(long, default_value = "0.0.0.0:4317")]
    grpc_listen: SocketAddr,
    /// OTLP/HTTP listen address, used when --config is a TraceProject manifest.
    #[arg(long, default_value = "0.0.0.0:4318")]
    http_listen: SocketAddr,
    /// Admin (metrics, health) listen address, used when --config is a TraceProject manifest.
    #[arg(long, default_value = "0.0.0.0:9464")]
    admin_listen: SocketAddr,
    /// Human-readable logs instead of JSON lines.
    #[arg(long)]
    text_logs: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    telemetry::init(if args.text_logs {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let defaults = RuntimeDefaults {
        nats: args.nats.settings(),
        listen: ListenAddresses {
            grpc: args.grpc_listen,
            http: args.http_listen,
            admin: args.admin_listen,
        },
        auth_token_file: args.token_file.clone(),
    };
    let config = IngestConfig::load(&args.config, &defaults)?;
    validate_project(&config)
        .map_err(|lines| anyhow::anyhow!("the TraceProject spec is invalid:\n{lines}"))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        umpire_runtime::shutdown::cancel_on_signal(shutdown.clone());
        let running = umpire_ingest::start(config, shutdown).await?;
        running.wait().await;
        Ok(ExitCode::SUCCESS)
    })
}
