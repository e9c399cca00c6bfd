//! Structured logs: JSON lines on stdout, filtered by `UMPIRE_LOG` (or `RUST_LOG`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line (the default for workers, for log pipelines).
    #[default]
    Json,
    /// Human-readable, for a terminal.
    Text,
}

/// Where log lines go.
#[derive(Debug)]
pub enum LogTarget {
    Stdout,
    Stderr,
    /// A file (`umpire local`'s live view owns the terminal).
    File(std::fs::File),
    /// The running test's output, which the test harness shows when a test fails (in-process
    /// workers in tests otherwise log nothing, and a failure says only what timed out).
    TestOutput,
}

/// Installs the global subscriber once; later calls (tests) are ignored.
pub fn init(format: LogFormat) {
    init_with(format, "info", LogTarget::Stdout);
}

/// [`init`] with another default level (when `UMPIRE_LOG`/`RUST_LOG` are unset) and target.
pub fn init_with(format: LogFormat, default_filter: &str, target: LogTarget) {
    let filter = std::env::var("UMPIRE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let writer = match target {
        LogTarget::Stdout => BoxMakeWriter::new(std::io::stdout),
        LogTarget::Stderr => BoxMakeWriter::new(std::io::stderr),
        LogTarget::File(file) => BoxMakeWriter::new(std::sync::Mutex::new(file)),
        LogTarget::TestOutput => BoxMakeWriter::new(tracing_subscriber::fmt::TestWriter::new()),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
