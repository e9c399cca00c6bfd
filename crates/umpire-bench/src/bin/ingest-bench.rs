//! Ingest throughput and latency, per CPU-second of the `umpire ingest` process.
//!
//! Starts a private nats-server and `umpire ingest` (release build recommended), drives
//! OTLP/gRPC and OTLP/HTTP protobuf load from this process with realistic GenAI traffic
//! ([`umpire_bench::traffic`]: agent runs of 5–20 spans, varied payloads) and a probabilistic
//! tail-sampling policy (`--kept-percent`, default 10) plus an errors policy, and reports:
//! - spans accepted per CPU-second used by the ingest process (user + system, from /proc),
//!   counting every span through decode → redact → intake → sample → publish;
//! - request latency p50/p99 at half the measured maximum rate (or `--latency-rate`), from
//!   each request's scheduled send time (paced, staggered senders: no coordinated omission);
//! - the ingest process's RSS.
//!
//! `cargo run --release -p umpire-bench --bin ingest-bench -- --umpire target/release/umpire`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use umpire_bench::traffic::request;
use umpire_bench::{BenchNats, cpu_time, free_port, memory_mib, quantile};

#[derive(Parser)]
struct Args {
    /// The umpire binary to benchmark.
    #[arg(long, default_value = "target/release/umpire")]
    umpire: String,
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Spans per export request (the OTel SDK's default batch is 512).
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Concurrent requests in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Run against a three-node JetStream cluster with the project at R3.
    #[arg(long)]
    cluster: bool,
    /// Percentage of traces the probabilistic policy keeps (plus the 2 % with a failing
    /// tool call, kept by the errors policy).
    #[arg(long, default_value_t = 10.0)]
    kept_percent: f64,
    /// Spans per second for the latency run (default: half the measured maximum rate). Set
    /// it to a target's rate (e.g. 100000) to measure latency there; if the box cannot
    /// sustain it, requests fall behind their schedule and the delay is counted.
    #[arg(long)]
    latency_rate: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    Grpc,
    Http,
}

struct Load {
    spans: AtomicU64,
    failures: AtomicU64,
    sequence: AtomicU64,
}

/// Sends requests until `until`; `interval` paces each worker (None: as fast as possible).
async fn drive(
    transport: Transport,
    endpoint: String,
    args: &Args,
    load: Arc<Load>,
    until: Instant,
    interval: Option<Duration>,
) -> Vec<Duration> {
    let mut workers = Vec::new();
    for worker in 0..args.concurrency {
        let endpoint = endpoint.clone();
        let load = load.clone();
        let batch = args.batch;
        let concurrency = args.concurrency;
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let http = reqwest::Client::new();
            let mut grpc = match transport {
                Transport::Grpc => Some(
                    TraceServiceClient::connect(endpoint.clone())
                        .await
                        .expect("gRPC connects"),
                ),
                Transport::Http => None,
            };
            // Paced workers are staggered evenly over the interval: an open-loop arrival
            // stream, not synchronised bursts of `concurrency` requests.
            let mut next = Instant::now()
                + interval.map_or(Duration::ZERO, |i| i * worker as u32 / concurrency as u32);
            while Instant::now() < until {
                // Paced: latency counts from when the request was due, not from when this
                // worker got round to sending it, so a stall that delays later sends is
                // counted in theirs too (no coordinated omission).
                // The request is built before it is due: the generator's own work is not
                // the server's latency (gRPC's encoding, inside tonic, still is).
                let request = request(load.sequence.fetch_add(1, Ordering::Relaxed), batch);
                let body = match grpc {
                    Some(_) => Vec::new(),
                    None => request.encode_to_vec(),
                };
                let mut started = Instant::now();
                if let Some(interval) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    started = next;
                    next += interval;
                }
                let ok = match &mut grpc {
                    Some(client) => client.export(request).await.is_ok(),
                    None => http
                        .post(&endpoint)
                        .header("content-type", "application/x-protobuf")
                        .body(body)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200),
                };
                latencies.push(started.elapsed());
                if ok {
                    load.spans.fetch_add(batch as u64, Ordering::Relaxed);
                } else {
                    load.failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap_or_default());
    }
    all
}

async fn metric(admin: &str, name: &str) -> f64 {
    let Ok(response) = reqwest::get(format!("http://{admin}/metrics")).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let nats = BenchNats::start(args.cluster).context("starting nats-server")?;
    let dir = tempfile_dir()?;
    let manifest = dir.join("bench.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: umpire.dev/v1alpha1\nkind: TraceProject\nmetadata: {name: bench, namespace: perf}\nspec:\n  ingest: {maxRequestSize: 16Mi}\n  stream: {replicas: REPLICAS}\n  sampling:\n    decisionWait: 2s\n    policies:\n      - {name: errors, statusCode: [ERROR]}\n      - {name: baseline, probabilistic: {percentage: KEPT}}\n  redaction:\n    rules:\n      - {name: emails, pattern: '[\\w.+-]+@[\\w-]+\\.[\\w.]+', replace: '<email>'}\n"
            .replace("REPLICAS", &nats.replicas().to_string())
            .replace("KEPT", &args.kept_percent.to_string()),
    )?;
    let ports = (free_port()?, free_port()?, free_port()?);
    let mut child = std::process::Command::new(&args.umpire)
        .args(["ingest", "--config"])
        .arg(&manifest)
        .args(["--nats-url", &nats.url()])
        .args(["--grpc-listen", &format!("127.0.0.1:{}", ports.0)])
        .args(["--http-listen", &format!("127.0.0.1:{}", ports.1)])
        .args(["--admin-listen", &format!("127.0.0.1:{}", ports.2)])
        .env(
            "UMPIRE_LOG",
            std::env::var("UMPIRE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .spawn()
        .with_context(|| format!("starting {}", args.umpire))?;
    let pid = child.id();
    let admin = format!("127.0.0.1:{}", ports.2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://{admin}/readyz"))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        anyhow::ensure!(Instant::now() < deadline, "ingest did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while metric(&admin, "umpire_ingest_partitions_owned").await < 16.0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "umpire ingest pid {pid}; batch {} spans, concurrency {}, {} s per run; {}",
        args.batch,
        args.concurrency,
        args.seconds,
        nats.describe()
    );

    let load = Arc::new(Load {
        spans: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        sequence: AtomicU64::new(0),
    });
    for transport in [Transport::Grpc, Transport::Http] {
        let endpoint = match transport {
            Transport::Grpc => format!("http://127.0.0.1:{}", ports.0),
            Transport::Http => format!("http://127.0.0.1:{}/v1/traces", ports.1),
        };
        // Throughput: as fast as the clients can send; CPU counted until every received span
        // was decided and the kept ones published.
        let spans_before = load.spans.load(Ordering::Relaxed);
        let failures_before = load.failures.load(Ordering::Relaxed);
        let received_before = metric(&admin, "umpire_ingest_spans_received_total").await;
        let cpu_before = cpu_time(pid)?;
        let nats_cpu_before = nats.cpu_time()?;
        let own_cpu_before = cpu_time(std::process::id())?;
        let started = Instant::now();
        let until = started + Duration::from_secs(args.seconds);
        drive(
            transport,
            endpoint.clone(),
            &args,
            load.clone(),
            until,
            None,
        )
        .await;
        let wall = started.elapsed();
        let spans = load.spans.load(Ordering::Relaxed) - spans_before;
        let received = metric(&admin, "umpire_ingest_spans_received_total").await - received_before;
        let kept_and_dropped = || async {
            metric(&admin, "umpire_ingest_spans_kept_total").await
                + metric(&admin, "umpire_ingest_spans_dropped_total").await
        };
        let settled_target = metric(&admin, "umpire_ingest_spans_received_total").await;
        let drain_deadline = Instant::now() + Duration::from_secs(120);
        while kept_and_dropped().await < settled_target && Instant::now() < drain_deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let cpu = cpu_time(pid)? - cpu_before;
        println!(
            "  (same window: nats-server CPU {:.2}s, load generator CPU {:.2}s)",
            (nats.cpu_time()? - nats_cpu_before).as_secs_f64(),
            (cpu_time(std::process::id())? - own_cpu_before).as_secs_f64()
        );
        let per_core = received / cpu.as_secs_f64();
        let rate = spans as f64 / wall.as_secs_f64();
        let (rss, peak) = memory_mib(pid)?;
        println!(
            "{transport:?} max load: {spans} spans in {:.1}s = {rate:.0} spans/s wall; ingest CPU {:.2}s → {per_core:.0} spans per CPU-second; failures {}; RSS {rss:.0} MiB (peak {peak:.0} MiB)",
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            load.failures.load(Ordering::Relaxed) - failures_before,
        );

        // Latency at half the measured rate, or the rate asked for.
        let (latency_rate, label) = match args.latency_rate {
            Some(asked) => (asked, "asked"),
            None => (rate / 2.0, "half the maximum"),
        };
        let per_worker =
            Duration::from_secs_f64(args.batch as f64 * args.concurrency as f64 / latency_rate);
        let server_before = (
            metric(&admin, "umpire_ingest_request_duration_seconds_sum").await,
            metric(&admin, "umpire_ingest_request_duration_seconds_count").await,
            metric(&admin, "umpire_ingest_intake_publish_duration_seconds_sum").await,
            metric(
                &admin,
                "umpire_ingest_intake_publish_duration_seconds_count",
            )
            .await,
        );
        let until = Instant::now() + Duration::from_secs(args.seconds);
        let mut latencies = drive(
            transport,
            endpoint,
            &args,
            load.clone(),
            until,
            Some(per_worker),
        )
        .await;
        let p50 = quantile(&mut latencies, 0.50);
        let p90 = quantile(&mut latencies, 0.90);
        let p99 = quantile(&mut latencies, 0.99);
        let max = quantile(&mut latencies, 1.0);
        let server_mean = (metric(&admin, "umpire_ingest_request_duration_seconds_sum").await
            - server_before.0)
            / (metric(&admin, "umpire_ingest_request_duration_seconds_count").await
                - server_before.1)
                .max(1.0);
        let intake_mean = (metric(&admin, "umpire_ingest_intake_publish_duration_seconds_sum")
            .await
            - server_before.2)
            / (metric(
                &admin,
                "umpire_ingest_intake_publish_duration_seconds_count",
            )
            .await
                - server_before.3)
                .max(1.0);
        println!(
            "{transport:?} latency at {:.0} spans/s ({label}): {} requests, latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (server-side mean {:.2} ms, of which JetStream acks {:.2} ms); ingest peak RSS so far {:.0} MiB",
            latency_rate,
            latencies.len(),
            p50.as_secs_f64() * 1e3,
            p90.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            server_mean * 1e3,
            intake_mean * 1e3,
            memory_mib(pid)?.1,
        );
    }
    let kept = metric(&admin, "umpire_ingest_spans_kept_total").await;
    let received = metric(&admin, "umpire_ingest_spans_received_total").await;
    println!(
        "kept {:.1}% of {received:.0} spans",
        100.0 * kept / received.max(1.0)
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("umpire-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
