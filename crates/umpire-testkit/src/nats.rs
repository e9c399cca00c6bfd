//! A private `nats-server` with JetStream, on a free loopback port, in a temporary folder;
//! or a cluster of them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

#[derive(Debug, thiserror::Error)]
pub enum NatsServerError {
    #[error(
        "nats-server not found (run .ci/setup, which installs the pinned release into .venv, or set UMPIRE_NATS_SERVER): {0}"
    )]
    NotFound(std::io::Error),
    #[error("preparing the server's folder: {0}")]
    Io(#[from] std::io::Error),
    #[error("nats-server did not become ready within {timeout:?}; its log:\n{log}")]
    NotReady { timeout: Duration, log: String },
}

/// How long a fresh server may take to report readiness (a loaded CI machine can be slow).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `nats-server -js`, stopped (and its storage removed) on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    extra_args: Vec<String>,
}

impl NatsServer {
    /// Starts a server with JetStream enabled.
    pub fn start() -> Result<Self, NatsServerError> {
        Self::start_with_args(&[])
    }

    /// Starts a server with extra command-line arguments, e.g. `["-c", "server.conf"]` for
    /// settings that have no flag (such as `max_payload`).
    pub fn start_with_args(extra_args: &[&str]) -> Result<Self, NatsServerError> {
        let dir = tempfile::Builder::new().prefix("umpire-nats-").tempdir()?;
        let mut server = Self {
            child: None,
            port: free_port()?,
            dir,
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.spawn()?;
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server process's id, while it runs (benchmarks read its CPU use).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's folder (JetStream storage under `js/`, log in `nats.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server abruptly (SIGKILL), keeping its storage, to simulate a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): its connections stay open but nothing answers — a
    /// node stalled by a GC pause, a hung disk or an overloaded VM, not a crashed one.
    pub fn pause(&mut self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
        }
    }

    /// Starts the server again on the same port with the same storage.
    pub fn restart(&mut self) -> Result<(), NatsServerError> {
        self.kill();
        self.spawn()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    fn spawn(&mut self) -> Result<(), NatsServerError> {
        let binary = umpire_runtime::binaries::nats_server();
        let log = self.log_path();
        // Readiness is read from a fresh log: the marker line must come from this start.
        let _ = std::fs::remove_file(&log);
        let store = self.dir.path().join("js");
        let mut command = Command::new(binary);
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(&store)
            .arg("-l")
            .arg(&log);
        if !self.extra_args.iter().any(|a| a == "-c") {
            // By default the server reserves at most 75 % of the free disk for streams'
            // `max_bytes`; tests must not fail because the machine's disk is fuller today.
            let config = self.dir.path().join("limits.conf");
            std::fs::write(
                &config,
                "jetstream {\n  max_file_store: 1TB\n  max_memory_store: 1GB\n}\n",
            )?;
            command.arg("-c").arg(config);
        }
        let child = command
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(NatsServerError::NotFound)?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), NatsServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut delay = Duration::from_millis(5);
        loop {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            if log.contains("Server is ready") {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .map(|c| matches!(c.try_wait(), Ok(Some(_))))
                .unwrap_or(true);
            if exited || Instant::now() >= deadline {
                self.kill();
                return Err(NatsServerError::NotReady {
                    timeout: READY_TIMEOUT,
                    log,
                });
            }
            // Polling a log file: there is no readiness event to await from another process.
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A JetStream cluster of nats-servers on loopback (routes between them), each with its own
/// store, for streams with several replicas.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes; `extra_args` go to every node (e.g. client credentials).
    pub fn start(size: usize, extra_args: &[&str]) -> Result<Self, NatsServerError> {
        let routes: Vec<u16> = (0..size).map(|_| free_port()).collect::<Result<_, _>>()?;
        let mut nodes = Vec::with_capacity(size);
        for (i, port) in routes.iter().enumerate() {
            let others: Vec<String> = routes
                .iter()
                .filter(|p| *p != port)
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            let mut args: Vec<String> = extra_args.iter().map(|a| (*a).to_owned()).collect();
            args.extend([
                "--name".into(),
                format!("umpire-{i}"),
                "--cluster_name".into(),
                "umpire".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{port}"),
                "--routes".into(),
                others.join(","),
            ]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            nodes.push(NatsServer::start_with_args(&args)?);
        }
        Ok(Self { nodes })
    }

    /// The first node's URL (clients learn the others from it).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// Every node's URL, comma-separated (a client that must survive losing any one node).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client that knows every node, so it survives losing any one.
    pub async fn client(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        let servers: Vec<async_nats::ServerAddr> = self
            .nodes
            .iter()
            .filter_map(|n| n.url().parse().ok())
            .collect();
        async_nats::connect(servers).await
    }

    /// The node named `umpire-<i>` (as stream and consumer leaders are reported).
    pub fn node_named(&mut self, name: &str) -> Option<&mut NatsServer> {
        let index: usize = name.strip_prefix("umpire-")?.parse().ok()?;
        self.nodes.get_mut(index)
    }
}

/// Moves the leadership of `stream` away from node `node` (`umpire-<i>`): asks the leader to
/// step down until another node leads. For fault tests that need to know where the leader
/// is not.
pub async fn move_stream_leader_off(js: &async_nats::jetstream::Context, stream: &str, node: &str) {
    let what = format!("{stream}'s leader to move off {node}");
    crate::wait::eventually(&what, Duration::from_secs(60), || async {
        let mut handle = js.get_stream(stream).await.ok()?;
        let leader = handle.info().await.ok()?.cluster.clone()?.leader?;
        if leader != node {
            return Some(());
        }
        let subject = format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}");
        let _ = js.client().request(subject, "".into()).await;
        None
    })
    .await;
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A message read back from a stream.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Its sequence in the stream.
    pub sequence: u64,
    pub subject: String,
    pub payload: Vec<u8>,
    pub message_id: Option<String>,
}

/// Every message currently in `stream`, in order, read with an ephemeral consumer.
pub async fn read_stream(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Result<Vec<StoredMessage>, async_nats::Error> {
    read_stream_on(js, stream, None).await
}

/// Every evaluation stored on a scores stream, each with the message it travelled in (one
/// evaluation, or a batch of one trace's).
pub async fn read_evaluations(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Result<Vec<(StoredMessage, umpire_core::score::SpanEvaluation)>, async_nats::Error> {
    let mut evaluations = Vec::new();
    for message in read_stream(js, stream).await? {
        for evaluation in umpire_core::score::evaluations_of_message(&message.payload)? {
            evaluations.push((message.clone(), evaluation));
        }
    }
    Ok(evaluations)
}

/// Messages of `stream` on subjects matching `filter` (a stream can hold several kinds:
/// the span stream holds spans and trace summaries).
pub async fn count_on(
    js: &async_nats::jetstream::Context,
    stream: &str,
    filter: &str,
) -> Result<u64, async_nats::Error> {
    use futures::TryStreamExt;

    let handle = js.get_stream(stream).await?;
    let counts: Vec<(String, usize)> = handle
        .info_with_subjects(filter)
        .await?
        .try_collect()
        .await?;
    Ok(counts.iter().map(|(_, n)| *n as u64).sum())
}

/// Every message of `stream`, or only those on subjects matching `filter`.
pub async fn read_stream_on(
    js: &async_nats::jetstream::Context,
    stream: &str,
    filter: Option<&str>,
) -> Result<Vec<StoredMessage>, async_nats::Error> {
    use async_nats::jetstream::consumer;
    use futures::StreamExt;

    let mut handle = js.get_stream(stream).await?;
    let expected = match filter {
        Some(filter) => count_on(js, stream, filter).await? as usize,
        None => handle.info().await?.state.messages as usize,
    };
    let consumer: consumer::PullConsumer = handle
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            filter_subject: filter.unwrap_or_default().to_owned(),
            ..Default::default()
        })
        .await?;
    let mut out = Vec::with_capacity(expected);
    while out.len() < expected {
        let mut batch = consumer
            .fetch()
            .max_messages(expected - out.len())
            .expires(Duration::from_secs(2))
            .messages()
            .await?;
        let before = out.len();
        while let Some(message) = batch.next().await {
            let message = message?;
            let sequence = message.info().map(|info| info.stream_sequence)?;
            out.push(StoredMessage {
                sequence,
                subject: message.subject.to_string(),
                payload: message.payload.to_vec(),
                message_id: message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                    .map(|v| v.to_string()),
            });
        }
        if out.len() == before {
            break;
        }
    }
    Ok(out)
}
