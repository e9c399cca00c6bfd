//! Alerting latency: from the moment an alert's state change becomes due (the score that
//! made the rule true once `for` has passed, or the end of `clearFor`) to the notifier's
//! HTTP request, measured at the receiver.
//!
//! An `umpire evaluator` process evaluates one rule over `--groups` groups (10 scores a
//! second each); every group alternates between healthy and broken phases, staggered so
//! state changes arrive spread over time. Each notification goes to the test kit's
//! receiver as a webhook whose body carries `dueAt`; latency = arrival − dueAt (same
//! clock, same machine).
//!
//! `cargo build --release -p umpire -p umpire-bench && ./target/release/alert-bench`

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_nats::jetstream;
use clap::Parser;
use umpire_bench::{BenchNats, cpu_time, free_port, memory_mib, quantile};
use umpire_core::ids::{SpanId, TraceId};
use umpire_core::judge::{Outcome, Verdict};
use umpire_core::score::{JudgeScore, SpanEvaluation};
use umpire_testkit::pager::PagerDutyReceiver;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "target/release/umpire")]
    umpire: String,
    #[arg(long, default_value_t = 100)]
    groups: u64,
    /// Seconds of traffic after the warm-up.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Length of each healthy and each broken phase, in seconds.
    #[arg(long, default_value_t = 20)]
    phase: u64,
    /// Run against a three-node JetStream cluster with the policy's state at R3.
    #[arg(long)]
    cluster: bool,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn evaluation(n: u64, group: u64, passed: bool) -> SpanEvaluation {
    let mut trace = [0u8; 16];
    trace[8..].copy_from_slice(&n.to_be_bytes());
    let now = now_nanos();
    SpanEvaluation {
        response_id: None,
        id: format!("bench/{n}"),
        policy: "bench".into(),
        trace_id: TraceId(trace),
        span_id: SpanId(n.to_be_bytes()),
        observed_at_unix_nano: now,
        scored_at_unix_nano: now,
        latency_ms: 500.0,
        time_to_first_token_ms: None,
        groups: BTreeMap::from([(
            "gen_ai.request.model".to_owned(),
            format!("model-{group:03}"),
        )]),
        model: None,
        embeddings: Default::default(),
        scores: vec![JudgeScore {
            judge: "grounded".into(),
            outcome: Outcome::Scored(Verdict {
                value: if passed { 1.0 } else { 0.0 },
                passed,
                label: None,
                explanation: None,
                measurement: None,
                measurements: Default::default(),
                usage: None,
            }),
            judge_latency_ms: 1.0,
        }],
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let nats = BenchNats::start(args.cluster).context("starting nats-server")?;
    println!("{}", nats.describe());
    let receiver = PagerDutyReceiver::start().await?;
    let js = jetstream::new(nats.client().await?);
    let dir = std::env::temp_dir().join(format!("umpire-alert-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let config = dir.join("evaluator.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
namespace: perf
policy: bench
nats: {{url: "{nats}"}}
stateReplicas: {replicas}
adminListen: 127.0.0.1:{port}
spec:
  projectRef: {{name: bench}}
  judges: [{{name: grounded, latency: {{maxMs: 60000}}}}]
  alerts:
    - name: grounded-low
      metric: {{judge: grounded, aggregate: passRate}}
      window: 10s
      minSamples: 20
      groupBy: [gen_ai.request.model]
      maxGroups: 1000
      condition: {{below: 0.5}}
      for: 2s
      clearFor: 2s
      severity: error
      route: hook
  routes:
    - {{name: hook, webhook: {{url: "{hook}"}}}}
"#,
            nats = nats.url(),
            replicas = nats.replicas(),
            hook = receiver.hook_url(),
        ),
    )?;
    let mut child = std::process::Command::new(&args.umpire)
        .args(["evaluator", "--config"])
        .arg(&config)
        .env(
            "UMPIRE_LOG",
            std::env::var("UMPIRE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .spawn()
        .with_context(|| format!("starting {}", args.umpire))?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while js.get_stream("UMPIRE_SCORES_perf_bench").await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the evaluator did not create the score stream"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu_before = cpu_time(pid)?;

    // Every group: healthy, then alternating broken / healthy phases, offset per group.
    let started = Instant::now();
    let total = Duration::from_secs(args.seconds + 15);
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    let mut n = 0u64;
    let mut published = 0u64;
    while started.elapsed() < total {
        ticks.tick().await;
        let elapsed = started.elapsed().as_secs_f64();
        let mut acks = Vec::new();
        for group in 0..args.groups {
            let offset = 15.0 + (group as f64 / args.groups as f64) * args.phase as f64;
            let broken = elapsed > offset
                && (((elapsed - offset) / args.phase as f64) as u64).is_multiple_of(2);
            n += 1;
            let payload = umpire_core::stream_codec::to_vec(&evaluation(n, group, !broken))?;
            acks.push(
                js.publish("umpire.scores.perf.bench.bench", payload.into())
                    .await?,
            );
        }
        for ack in acks {
            ack.await?;
            published += 1;
        }
    }
    let cpu = cpu_time(pid)? - cpu_before;
    // Let the last state changes arrive.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, peak) = memory_mib(pid)?;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();

    let hooks = receiver.hooks();
    let mut delays = Vec::new();
    let mut firing = 0;
    for hook in &hooks {
        let due = hook.body["dueAt"].as_str().context("dueAt")?;
        let due = time::OffsetDateTime::parse(due, &time::format_description::well_known::Rfc3339)?;
        let arrived = time::OffsetDateTime::from(hook.at);
        let delay = arrived - due;
        delays.push(Duration::from_secs_f64(delay.as_seconds_f64().max(0.0)));
        if hook.body["status"] == "firing" {
            firing += 1;
        }
    }
    anyhow::ensure!(!delays.is_empty(), "no notifications arrived");
    println!(
        "{} groups, {published} scores in {:.0}s; {} notifications ({firing} firing, {} resolved)",
        args.groups,
        total.as_secs_f64(),
        hooks.len(),
        hooks.len() - firing
    );
    println!(
        "due → notifier request: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        quantile(&mut delays, 0.5).as_secs_f64() * 1e3,
        quantile(&mut delays, 0.9).as_secs_f64() * 1e3,
        quantile(&mut delays, 0.99).as_secs_f64() * 1e3,
        quantile(&mut delays, 1.0).as_secs_f64() * 1e3,
    );
    println!(
        "evaluator CPU {:.2}s ({:.1} µs per score); peak RSS {peak:.0} MiB",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / published as f64
    );
    Ok(())
}
