//! Shared by the benchmark binaries: measuring another process's CPU and memory from
//! `/proc`, and latency percentiles.

pub mod kept;
pub mod synthetic;
pub mod traffic;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Resident set size now and at its peak, in MiB, from `/proc/<pid>/status`.
pub fn memory_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// The `q` quantile (0–1) of `samples`, which it sorts.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[index.min(samples.len() - 1)]
}

/// A loopback port free right now (for a child process's listener).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The NATS a benchmark runs against: one node, or a three-node JetStream cluster (routes on
/// loopback, the project at three replicas) — what teams run in production.
pub enum BenchNats {
    Single(umpire_testkit::nats::NatsServer),
    Cluster(umpire_testkit::nats::NatsCluster),
}

impl BenchNats {
    pub fn start(cluster: bool) -> anyhow::Result<Self> {
        Ok(if cluster {
            Self::Cluster(umpire_testkit::nats::NatsCluster::start(3, &[])?)
        } else {
            Self::Single(umpire_testkit::nats::NatsServer::start()?)
        })
    }

    /// Every node's URL, comma-separated (what `--nats-url` and configs take).
    pub fn url(&self) -> String {
        match self {
            Self::Single(server) => server.url(),
            Self::Cluster(cluster) => cluster.urls(),
        }
    }

    /// Stream replicas a project gets on this NATS.
    pub fn replicas(&self) -> usize {
        match self {
            Self::Single(_) => 1,
            Self::Cluster(cluster) => cluster.nodes.len(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Single(_) => "nats-server, one node".into(),
            Self::Cluster(cluster) => format!(
                "nats-server cluster of {} nodes, project at R{}",
                cluster.nodes.len(),
                self.replicas()
            ),
        }
    }

    /// A client, once JetStream answers (a new cluster elects its meta leader first).
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        let client = match self {
            Self::Single(server) => async_nats::connect(server.url()).await?,
            Self::Cluster(cluster) => cluster.client().await?,
        };
        let js = async_nats::jetstream::new(client.clone());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while let Err(e) = js.query_account().await {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "JetStream did not answer within 30 s: {e}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(client)
    }

    /// CPU every node has used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let pids: Vec<u32> = match self {
            Self::Single(server) => server.pid().into_iter().collect(),
            Self::Cluster(cluster) => cluster.nodes.iter().filter_map(|n| n.pid()).collect(),
        };
        pids.into_iter()
            .map(cpu_time)
            .try_fold(Duration::ZERO, |sum, cpu| Ok(sum + cpu?))
    }
}
