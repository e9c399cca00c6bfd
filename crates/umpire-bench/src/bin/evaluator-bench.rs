//! Evaluator throughput and LLM-judge overhead, per CPU-second of the `umpire evaluator`
//! process.
//!
//! 1. Code judges: spans published to the span stream as fast as possible (by default the
//!    chat spans of the ingest benchmark's agent runs, as ingest writes them: see
//!    `--traffic`); the evaluator pulls, judges (JSON validity, latency, error status,
//!    refusal phrases) and stores an evaluation per span (one scores message per span
//!    message); measured until every span message is acknowledged, which the evaluator does
//!    once its evaluations are stored.
//! 2. LLM judge: 1,000 concurrent verdicts against the test kit's judge server (500 ms
//!    latency), reporting wall time, evaluator CPU and peak RSS (memory stays bounded by the
//!    judge's concurrency and the consumer's ack window).
//!
//! `cargo run --release -p umpire-bench --bin evaluator-bench -- --umpire target/release/umpire`

use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use clap::{Parser, ValueEnum};
use umpire_bench::kept::{self, KeptMessage};
use umpire_bench::synthetic::synthetic_messages;
use umpire_bench::{BenchNats, cpu_time, free_port, memory_mib};
use umpire_testkit::judge::JudgeServer;

const SPANS_STREAM: &str = "UMPIRE_SPANS_perf_bench";

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "target/release/umpire")]
    umpire: String,
    /// Spans for the code-judge run.
    #[arg(long, default_value_t = 200_000)]
    spans: u64,
    /// Verdicts for the LLM run.
    #[arg(long, default_value_t = 1_000)]
    llm_spans: u64,
    /// Run against a three-node JetStream cluster with the project at R3.
    #[arg(long)]
    cluster: bool,
    /// Spans per span-stream message (1: one message per span, as ingest publishes a lone
    /// span; more: a list of wire spans, as ingest publishes a trace's spans of one
    /// subject — about 6 for the chat spans of the ingest bench's agent runs).
    #[arg(long, default_value_t = 1)]
    spans_per_message: u64,
    /// What the code judges read: `agent`, the chat spans of the ingest benchmark's agent
    /// runs as ingest writes them (prompts and replies of 20–300 words, their
    /// `gen_ai.*.messages` attributes, a trace's chat spans per message: 2–10, about 6);
    /// `synthetic`, one small span shape with short texts, `--spans-per-message` per message.
    #[arg(long, value_enum, default_value_t = Traffic::Agent)]
    traffic: Traffic,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Traffic {
    Agent,
    Synthetic,
}

/// Publishes messages built beforehand (so building them does not compete with the
/// evaluator for the CPU while it is measured).
async fn publish_messages(
    js: &jetstream::Context,
    messages: Vec<KeptMessage>,
) -> anyhow::Result<()> {
    // Publishes in flight, bounded in count and bytes: kilobyte-sized batches 4,096 at a
    // time made nats-server 2.15 refuse publishes (429, too many requests).
    const WINDOW_MESSAGES: usize = 4096;
    const WINDOW_BYTES: usize = 8 << 20;
    let mut pending = Vec::with_capacity(WINDOW_MESSAGES);
    let mut pending_bytes = 0;
    for message in messages {
        pending_bytes += message.payload.len();
        let publish = jetstream::message::PublishMessage::build()
            .payload(message.payload)
            .message_id(message.id);
        pending.push(
            js.send_publish("umpire.spans.perf.bench.llm.chat", publish)
                .await?,
        );
        if pending.len() == WINDOW_MESSAGES || pending_bytes >= WINDOW_BYTES {
            for ack in pending.drain(..) {
                ack.await?;
            }
            pending_bytes = 0;
        }
    }
    for ack in pending {
        ack.await?;
    }
    Ok(())
}

/// Whether `policy`'s consumer has acknowledged every span message up to the stream's last:
/// the evaluator acknowledges a message only once its evaluations are stored, whatever form
/// the scores take (one evaluation per message, or a batch).
async fn all_acknowledged(js: &jetstream::Context, policy: &str) -> bool {
    let Ok(mut stream) = js.get_stream(SPANS_STREAM).await else {
        return false;
    };
    let Ok(last) = stream.info().await.map(|i| i.state.last_sequence) else {
        return false;
    };
    let Ok(mut consumer) = stream
        .get_consumer::<jetstream::consumer::pull::Config>(&format!("policy-{policy}"))
        .await
    else {
        return false;
    };
    consumer
        .info()
        .await
        .is_ok_and(|i| i.num_ack_pending == 0 && i.ack_floor.stream_sequence >= last)
}

/// Waits until `policy`'s evaluator has stored the evaluations of every span published.
async fn judged(js: &jetstream::Context, policy: &str, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while !all_acknowledged(js, policy).await {
        anyhow::ensure!(
            started.elapsed() < limit,
            "the {policy} evaluator did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The sum of the evaluator's metric samples named `name`.
async fn metric_sum(admin: &str, name: &str) -> anyhow::Result<f64> {
    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await?
        .text()
        .await?;
    Ok(metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        // Not `sum()`: a float sum of nothing is -0, printed "-0".
        .fold(0.0, |total, n| total + n))
}

/// Evaluations the evaluator stored (its metric; named `records_published` before
/// `a43f957`, read too so that older builds can be measured against newer ones).
async fn stored_evaluations(admin: &str) -> anyhow::Result<f64> {
    Ok(
        metric_sum(admin, "umpire_evaluator_evaluations_published_total").await?
            + metric_sum(admin, "umpire_evaluator_records_published_total").await?,
    )
}

fn write_config(
    dir: &std::path::Path,
    nats: &BenchNats,
    admin_port: u16,
    policy: &str,
    judges: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(format!("{policy}.yaml"));
    std::fs::write(
        &path,
        format!(
            "namespace: perf\npolicy: {policy}\nnats: {{url: \"{}\"}}\nstateReplicas: {}\nadminListen: 127.0.0.1:{admin_port}\nspec:\n  projectRef: {{name: bench}}\n  select: {{kinds: [LLM]}}\n  evaluator: {{concurrency: 256}}\n  judges:\n{judges}",
            nats.url(),
            nats.replicas()
        ),
    )?;
    Ok(path)
}

struct Evaluator {
    child: std::process::Child,
    admin: String,
}

impl Evaluator {
    async fn start(
        umpire: &str,
        config: &std::path::Path,
        admin_port: u16,
    ) -> anyhow::Result<Self> {
        let child = std::process::Command::new(umpire)
            .args(["evaluator", "--config"])
            .arg(config)
            .env(
                "UMPIRE_LOG",
                std::env::var("UMPIRE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .spawn()
            .with_context(|| format!("starting {umpire}"))?;
        let admin = format!("http://127.0.0.1:{admin_port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{admin}/readyz"))
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            anyhow::ensure!(Instant::now() < deadline, "evaluator did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self { child, admin })
    }

    fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Evaluator {
    /// A bench that fails part-way does not leave its evaluator running (after `stop`, the
    /// process is already gone and this does nothing).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let nats = BenchNats::start(args.cluster).context("starting nats-server")?;
    println!("{}", nats.describe());
    let client = nats.client().await?;
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(8192)
        .build(client);
    js.create_stream(stream::Config {
        name: SPANS_STREAM.into(),
        subjects: vec!["umpire.spans.perf.bench.>".into()],
        duplicate_window: Duration::from_secs(300),
        num_replicas: nats.replicas(),
        ..Default::default()
    })
    .await?;
    let dir = std::env::temp_dir().join(format!("umpire-evaluator-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    // 1. Code judges.
    let judges = "    - {name: valid-json, json: {}}\n    - {name: fast, latency: {maxMs: 4000}}\n    - {name: no-errors, errorStatus: {}}\n    - {name: no-refusal, notContains: {values: [\"As an AI language model\"]}}\n";
    let port = free_port()?;
    let config = write_config(&dir, &nats, port, "code", judges)?;
    let messages = match args.traffic {
        Traffic::Agent => kept::chat_messages(args.spans)?,
        Traffic::Synthetic => synthetic_messages(0, args.spans, args.spans_per_message)?,
    };
    let spans: u64 = messages.iter().map(|m| m.spans).sum();
    let evaluator = Evaluator::start(&args.umpire, &config, port).await?;
    let pid = evaluator.child.id();
    let cpu_before = cpu_time(pid)?;
    let started = Instant::now();
    publish_messages(&js, messages).await?;
    let published = started.elapsed();
    judged(&js, "code", Duration::from_secs(600)).await?;
    let wall = started.elapsed();
    let cpu = cpu_time(pid)? - cpu_before;
    let (_, peak) = memory_mib(pid)?;
    let stored = stored_evaluations(&evaluator.admin).await?;
    anyhow::ensure!(
        stored == spans as f64,
        "the evaluator stored {stored} evaluations of {spans} spans"
    );
    println!(
        "code judges (4 per span, {} traffic): {} spans in {:.1}s wall (published in {:.1}s); evaluator CPU {:.2}s → {:.0} spans per CPU-second; peak RSS {peak:.0} MiB",
        args.traffic
            .to_possible_value()
            .map(|value| value.get_name().to_owned())
            .unwrap_or_default(),
        spans,
        wall.as_secs_f64(),
        published.as_secs_f64(),
        cpu.as_secs_f64(),
        spans as f64 / cpu.as_secs_f64()
    );
    evaluator.stop();

    // 2. LLM judge, 1,000 in flight.
    let judge = JudgeServer::start().await?;
    judge.set_latency(Duration::from_millis(500));
    let judges = format!(
        "    - name: relevant\n      llm: {{template: answerRelevance, endpoint: \"{}\", model: m, maxConcurrency: 1000, maxRetries: 0}}\n",
        judge.url()
    );
    let port = free_port()?;
    let config = write_config(&dir, &nats, port, "llm", &judges)?;
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)?.replace("concurrency: 256", "concurrency: 1000"),
    )?;
    let messages = synthetic_messages(args.spans, args.llm_spans, args.spans_per_message)?;
    let evaluator = Evaluator::start(&args.umpire, &config, port).await?;
    let pid = evaluator.child.id();
    let cpu_before = cpu_time(pid)?;
    let started = Instant::now();
    publish_messages(&js, messages).await?;
    judged(&js, "llm", Duration::from_secs(300)).await?;
    let wall = started.elapsed();
    let cpu = cpu_time(pid)? - cpu_before;
    let (_, peak) = memory_mib(pid)?;
    println!(
        "LLM judge: {} verdicts in {:.2}s wall, judge server saw at most {} concurrent requests; evaluator CPU {:.2}s ({:.0} µs per verdict); peak RSS {peak:.0} MiB",
        args.llm_spans,
        wall.as_secs_f64(),
        judge.max_concurrency(),
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / args.llm_spans as f64
    );
    let errors = metric_sum(&evaluator.admin, "umpire_evaluator_judge_errors_total").await?;
    println!("LLM judge errors: {errors}");
    evaluator.stop();
    Ok(())
}
