//! `umpire`: one binary, every role. Long-running roles (`controller`, `ingest`,
//! `evaluator`) and offline tools (`crdgen`, `check`, …) are subcommands.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Workers allocate and free many small buffers per span on several threads; glibc's
/// allocator spent a third of ingest's CPU on that (measured with perf), mimalloc a fraction.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc asks the kernel for transparent huge pages on its arenas (`MADV_HUGEPAGE`) and
/// returns freed ranges to it a second later in 64 KiB pieces; under ingest's churn the
/// kernel then kept faulting fresh 2 MiB pages and zeroing them whole — 13 % of ingest's
/// CPU in `clear_page_erms`, plus 12 % in mimalloc's page search (perf, ingest-bench at
/// ~50 % kept; both fell to ~2 % with THP off). The flag covers the whole process (and
/// children it starts, such as `umpire local`'s nats-server); a kernel that refuses the
/// call only loses that gain.
fn disable_transparent_huge_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

#[derive(Parser)]
#[command(
    name = "umpire",
    version,
    about = "Online evaluation and alerting for LLM apps on Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print or write the CustomResourceDefinitions generated from the Rust types.
    Crdgen(commands::crdgen::Args),
    /// Validate TraceProject and EvalPolicy manifests offline, exactly as the API server and
    /// the controller would.
    Check(commands::check::Args),
    /// Run the ingest worker for one TraceProject: OTLP in, sampled and redacted spans out
    /// to JetStream.
    Ingest(commands::ingest::Args),
    /// Run the evaluator for one EvalPolicy: judge its spans from JetStream, publish scores.
    Evaluator(commands::evaluator::Args),
    /// Run the operator: reconcile TraceProjects and EvalPolicies into workers.
    Controller(Box<commands::controller::Args>),
    /// Run a policy's judges offline over recorded spans and gate on pass rates (for CI).
    Eval(commands::eval::Args),
    /// Run TraceProjects and EvalPolicies from files on this machine, no Kubernetes
    /// (`--demo`: a built-in project, traffic and incident).
    Local(Box<commands::local::Args>),
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Crdgen(args) => commands::crdgen::run(&args),
        Command::Check(args) => commands::check::run(&args),
        Command::Ingest(args) => commands::ingest::run(&args),
        Command::Evaluator(args) => commands::evaluator::run(&args),
        Command::Controller(args) => commands::controller::run(&args),
        Command::Eval(args) => commands::eval::run(&args),
        Command::Local(args) => commands::local::run(&args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
