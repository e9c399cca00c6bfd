pub mod check;
pub mod controller;
pub mod crdgen;
pub mod eval;
pub mod evaluator;
pub mod ingest;
pub mod local;

use std::path::PathBuf;

use umpire_nats::connect::NatsSettings;

/// How every role reaches NATS (for the controller also what it hands on to the workers).
#[derive(clap::Args, Debug, Clone)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "UMPIRE_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Folder with the NATS credentials as a mounted Secret lays them out: `creds` (a
    /// `.creds` file), `nkey`, `token`, or `username` + `password`.
    #[arg(long, env = "UMPIRE_NATS_AUTH_DIR")]
    nats_auth_dir: Option<PathBuf>,
    /// Folder with `ca.crt` (the CA to trust) and optionally `tls.crt` + `tls.key` (a client
    /// certificate); TLS is then required.
    #[arg(long, env = "UMPIRE_NATS_TLS_DIR")]
    nats_tls_dir: Option<PathBuf>,
}

impl NatsArgs {
    pub fn settings(&self) -> NatsSettings {
        NatsSettings {
            url: self.nats_url.clone(),
            auth_dir: self.nats_auth_dir.clone(),
            tls_dir: self.nats_tls_dir.clone(),
        }
    }
}
