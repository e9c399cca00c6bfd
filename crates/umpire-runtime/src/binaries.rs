//! Programs Umpire starts: where to find them.

use std::path::PathBuf;

/// The nats-server to start (`umpire local`, the test kit): `UMPIRE_NATS_SERVER` when it
/// names an existing file (the repository's `.cargo/config.toml` points it at the pinned
/// release `.ci/setup` installs into `.venv`), else `nats-server` from `PATH`.
pub fn nats_server() -> PathBuf {
    std::env::var_os("UMPIRE_NATS_SERVER")
        .map(PathBuf::from)
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}
