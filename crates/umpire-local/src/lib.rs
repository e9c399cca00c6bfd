//! `umpire local`: the TraceProjects and EvalPolicies of manifest files (or the built-in
//! demo) run on one machine — a NATS server, an ingest worker per project and an evaluator
//! (with alerting) per policy, all in this process through the same worker code the
//! controller deploys — with a live view of what they do.

pub mod adapt;
pub mod demo;
pub mod nats_server;
pub mod resources;
mod session;
pub mod view;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use umpire_nats::connect::NatsSettings;

pub use session::{LocalError, Summary, run};
pub use view::render::OutputFormat;

#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Manifest files or folders (empty with `demo`).
    pub paths: Vec<PathBuf>,
    /// Run the built-in demo instead of manifests.
    pub demo: bool,
    /// An existing NATS (with JetStream); `None`: a private `nats-server` from PATH.
    pub nats: Option<NatsSettings>,
    /// The private NATS server's store and local mode's files; `None`: a temporary folder.
    pub data_dir: Option<PathBuf>,
    /// The first project's OTLP addresses; further projects take the next ports.
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// The first worker's admin (metrics, health) address; further workers take the next.
    pub admin_listen: SocketAddr,
    /// Print notifications instead of sending them.
    pub print_alerts: bool,
    /// An OTLP/HTTP endpoint every project also exports to (`--export-otlp`).
    pub export_otlp: Option<String>,
    /// The sentence-embedding model's directory (`embedding` judges, drift alerts).
    pub embedding_model: Option<PathBuf>,
    pub format: OutputFormat,
    /// How often the table is redrawn (plain and JSON print figures every 5 such periods).
    pub refresh: Duration,
}

/// `addr` moved `offset` ports on (port 0 stays 0: the OS picks each).
pub fn nth_port(addr: SocketAddr, offset: u16) -> SocketAddr {
    if addr.port() == 0 {
        return addr;
    }
    SocketAddr::new(addr.ip(), addr.port().saturating_add(offset))
}
