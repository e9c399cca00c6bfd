//! `umpire evaluator --config FILE`: the evaluator worker for one EvalPolicy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use umpire_contract::evaluator::{EvaluatorConfig, RuntimeDefaults};
use umpire_contract::validation::validate_policy;
use umpire_runtime::telemetry::{self, LogFormat};

#[derive(clap::Args)]
pub struct Args {
    /// An evaluator config (as the controller renders it) or an EvalPolicy manifest.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    #[command(flatten)]
    nats: super::NatsArgs,
    /// Secrets laid out as `<dir>/<secret>/<key>` (judge API keys), for a manifest.
    #[arg(long)]
    secret_dir: Option<PathBuf>,
    /// ConfigMaps laid out as `<dir>/<configmap>/<key>` (JSON Schemas), for a manifest.
    #[arg(long)]
    config_map_dir: Option<PathBuf>,
    /// The sentence-embedding model's directory (`embedding` judges, drift alerts); overrides
    /// the config's `embeddingModel`.
    #[arg(long, value_name = "DIR", env = "UMPIRE_EMBEDDING_MODEL")]
    embedding_model: Option<PathBuf>,
    /// Admin (metrics, health) listen address, for a manifest.
    #[arg(long, default_value = "0.0.0.0:9465")]
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
        admin_listen: args.admin_listen,
        secret_dir: args.secret_dir.clone(),
        config_map_dir: args.config_map_dir.clone(),
    };
    let mut config = EvaluatorConfig::load(&args.config, &defaults)?;
    if let Some(dir) = &args.embedding_model {
        config.embedding_model = Some(dir.clone());
    }
    validate_policy(&config)
        .map_err(|lines| anyhow::anyhow!("the EvalPolicy spec is invalid:\n{lines}"))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        umpire_runtime::shutdown::cancel_on_signal(shutdown.clone());
        let running = umpire_evaluator::start(config, shutdown).await?;
        running.wait().await;
        Ok(ExitCode::SUCCESS)
    })
}
