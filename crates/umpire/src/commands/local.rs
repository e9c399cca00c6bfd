//! `umpire local [PATH...]` / `umpire local --demo`: the product on one machine.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use umpire_local::{LocalOptions, OutputFormat, Summary};
use umpire_nats::connect::NatsSettings;
use umpire_runtime::telemetry::{self, LogFormat, LogTarget};

#[derive(clap::Args)]
pub struct Args {
    /// Files or folders with TraceProjects, EvalPolicies and the ConfigMaps and Secrets they
    /// reference (searched recursively for *.yaml, *.yml, *.json).
    #[arg(
        value_name = "PATH",
        required_unless_present = "demo",
        conflicts_with = "demo"
    )]
    paths: Vec<PathBuf>,
    /// Run the built-in demo: traffic, judges, an incident that pages and resolves.
    #[arg(long)]
    demo: bool,
    /// Use this NATS (JetStream enabled; URLs comma-separated) instead of starting a private
    /// nats-server from PATH.
    #[arg(long, env = "UMPIRE_NATS_URL")]
    nats_url: Option<String>,
    /// Credentials for --nats-url, laid out as a mounted Secret (`creds`, `nkey`, `token`,
    /// or `username` + `password`).
    #[arg(long, requires = "nats_url")]
    nats_auth_dir: Option<PathBuf>,
    /// `ca.crt` (and optionally `tls.crt` + `tls.key`) for --nats-url.
    #[arg(long, requires = "nats_url")]
    nats_tls_dir: Option<PathBuf>,
    /// Where the private nats-server keeps its store (kept across runs); default: a temporary
    /// folder removed on exit.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// OTLP/gRPC address of the first TraceProject; the next ones take the following ports.
    #[arg(long, default_value = "127.0.0.1:4317")]
    grpc_listen: SocketAddr,
    /// OTLP/HTTP address of the first TraceProject; the next ones take the following ports.
    #[arg(long, default_value = "127.0.0.1:4318")]
    http_listen: SocketAddr,
    /// Metrics and health of the first worker; the next workers take the following ports.
    #[arg(long, default_value = "127.0.0.1:9464")]
    admin_listen: SocketAddr,
    /// Print each notification (the exact body, Secrets named not shown) instead of sending it.
    #[arg(long)]
    print_alerts: bool,
    /// Also send every project's kept spans and evaluations to this OTLP/HTTP endpoint (e.g.
    /// `http://localhost:6006` for Phoenix, `http://localhost:4318` for Jaeger or a
    /// Collector); evaluations go as span events, which trace-only backends show.
    #[arg(long, value_name = "URL")]
    export_otlp: Option<String>,
    /// The sentence-embedding model's directory, for policies with `embedding` judges or
    /// drift alerts (e.g. `.venv/models/all-MiniLM-L6-v2` after `.ci/setup`).
    #[arg(long, value_name = "DIR", env = "UMPIRE_EMBEDDING_MODEL")]
    embedding_model: Option<PathBuf>,
    /// `table` (live, default on a terminal), `plain` (log lines, default otherwise), `json`.
    #[arg(long, value_parser = ["table", "plain", "json"])]
    format: Option<String>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let format = match args.format.as_deref() {
        Some("json") => OutputFormat::Json,
        Some("plain") => OutputFormat::Plain,
        Some(_) => OutputFormat::Table,
        None if std::io::stdout().is_terminal() => OutputFormat::Table,
        None => OutputFormat::Plain,
    };
    let log_path = std::env::temp_dir().join(format!("umpire-local-{}.log", std::process::id()));
    match format {
        // The table owns the terminal: workers' logs go to a file.
        OutputFormat::Table => {
            let file = std::fs::File::create(&log_path)
                .with_context(|| format!("creating {}", log_path.display()))?;
            telemetry::init_with(LogFormat::Text, "warn", LogTarget::File(file));
        }
        OutputFormat::Plain => telemetry::init_with(LogFormat::Text, "warn", LogTarget::Stderr),
        OutputFormat::Json => telemetry::init_with(LogFormat::Json, "warn", LogTarget::Stderr),
    }
    let options = LocalOptions {
        paths: args.paths.clone(),
        demo: args.demo,
        nats: args.nats_url.as_ref().map(|url| NatsSettings {
            url: url.clone(),
            auth_dir: args.nats_auth_dir.clone(),
            tls_dir: args.nats_tls_dir.clone(),
        }),
        data_dir: args.data_dir.clone(),
        grpc_listen: args.grpc_listen,
        http_listen: args.http_listen,
        admin_listen: args.admin_listen,
        print_alerts: args.print_alerts,
        export_otlp: args.export_otlp.clone(),
        embedding_model: args.embedding_model.clone(),
        format,
        refresh: Duration::from_secs(1),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let summary = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        umpire_runtime::shutdown::cancel_on_signal(shutdown.clone());
        umpire_local::run(options, shutdown).await
    })?;
    print_summary(&summary, format);
    if format == OutputFormat::Table {
        println!("Worker logs: {}", log_path.display());
    }
    Ok(if args.demo && !summary.demo_completed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_summary(summary: &Summary, format: OutputFormat) {
    if format == OutputFormat::Json {
        let event = serde_json::json!({
            "event": "summary",
            "seconds": summary.seconds,
            "projects": summary.projects,
            "policies": summary.policies,
            "notifications": summary.notifications,
            "demoCompleted": summary.demo_completed,
            "demoManifests": summary.demo_yaml,
        });
        println!("{event}");
        return;
    }
    println!("\nSummary after {:.0}s", summary.seconds);
    for p in &summary.projects {
        println!(
            "  TraceProject {}: {} spans received, {} kept",
            p.name, p.spans_received, p.spans_kept
        );
    }
    for policy in &summary.policies {
        for j in &policy.judges {
            let rate = j
                .pass_rate()
                .map_or("-".into(), |r| format!("{:.0}%", r * 100.0));
            println!(
                "  {}/{}: {} scored, pass rate {rate}, {} errors, {} skipped",
                policy.name,
                j.name,
                j.scored(),
                j.errors,
                j.skipped
            );
        }
    }
    if summary.notifications.is_empty() {
        println!("  no notifications");
    }
    for (rule, action, at) in &summary.notifications {
        println!("  notification: {action} {rule} at {at:.1}s");
    }
    if let Some(yaml) = &summary.demo_yaml {
        if summary.demo_completed {
            println!(
                "\nThe demo paged and resolved. Its manifests, to copy into your repository:\n"
            );
        } else {
            println!("\nThe demo did not complete. Its manifests:\n");
        }
        println!("{yaml}");
    }
}
