#![allow(clippy::unwrap_used)]
//! LLM judges' limits hold across replicas and restarts: the daily token budget and the
//! requests per minute are kept in NATS KV, shared by a policy's evaluators.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use umpire_contract::evaluator::EvaluatorConfig;
use umpire_contract::ingest::{IngestConfig, ListenAddresses};
use umpire_core::judge::{Outcome, SkipReason};
use umpire_core::score::SpanEvaluation;
use umpire_evaluator::RunningEvaluator;
use umpire_nats::connect::NatsSettings;
use umpire_nats::topology::ProjectNames;
use umpire_testkit::judge::JudgeServer;
use umpire_testkit::nats::{NatsServer, read_evaluations};
use umpire_testkit::wait::eventually;

fn settings(nats: &NatsServer) -> NatsSettings {
    NatsSettings {
        url: nats.url(),
        ..Default::default()
    }
}

async fn start_ingest(nats: &NatsServer, shutdown: &CancellationToken) -> String {
    let spec = serde_json::from_value(json!({"sampling": {"decisionWait": "100ms"}})).unwrap();
    let config = IngestConfig {
        listen: ListenAddresses {
            grpc: "127.0.0.1:0".parse().unwrap(),
            http: "127.0.0.1:0".parse().unwrap(),
            admin: "127.0.0.1:0".parse().unwrap(),
        },
        partitions: 2,
        ..IngestConfig::for_project("team", "bot", spec, settings(nats))
    };
    let running = umpire_ingest::start(config, shutdown.clone())
        .await
        .unwrap();
    let readiness = running.readiness.clone();
    eventually("ingest ready", Duration::from_secs(30), || {
        let readiness = readiness.clone();
        async move { readiness.status().ok() }
    })
    .await;
    format!("http://{}/v1/traces", running.http_addr)
}

async fn start_evaluator(
    nats: &NatsServer,
    policy: &Value,
) -> (RunningEvaluator, CancellationToken) {
    let shutdown = CancellationToken::new();
    let config = EvaluatorConfig {
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        ..EvaluatorConfig::for_policy(
            "team",
            "quality",
            serde_json::from_value(policy.clone()).unwrap(),
            settings(nats),
            None,
            None,
        )
    };
    let running = umpire_evaluator::start(config, shutdown.clone())
        .await
        .unwrap();
    let readiness = running.readiness.clone();
    eventually("evaluator ready", Duration::from_secs(30), || {
        let readiness = readiness.clone();
        async move { readiness.status().ok() }
    })
    .await;
    (running, shutdown)
}

/// `count` one-span traces: an LLM call with a question and an answer.
async fn send_llm_spans(url: &str, first: u64, count: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans: Vec<Value> = (first..first + count)
        .map(|n| {
            json!({
            "traceId": format!("{:032x}", n + 1), "spanId": format!("{:016x}", n + 1),
            "name": "chat", "kind": 3,
            "startTimeUnixNano": (now - 1_000_000).to_string(), "endTimeUnixNano": now.to_string(),
            "attributes": [
                {"key": "openinference.span.kind", "value": {"stringValue": "LLM"}},
                {"key": "input.value", "value": {"stringValue": format!("question {n}")}},
                {"key": "output.value", "value": {"stringValue": format!("answer {n}")}},
            ]})
        })
        .collect();
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]});
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn evaluations(js: &jetstream::Context, count: usize) -> Vec<SpanEvaluation> {
    let stream = ProjectNames::new("team", "bot").scores_stream();
    eventually(
        &format!("{count} evaluations"),
        Duration::from_secs(30),
        || async {
            let stored = read_evaluations(js, &stream).await.ok()?;
            (stored.len() >= count).then_some(stored)
        },
    )
    .await
    .into_iter()
    .map(|(_, evaluation)| evaluation)
    .collect()
}

fn budget_skips(evaluations: &[SpanEvaluation]) -> usize {
    evaluations
        .iter()
        .filter(|e| {
            matches!(
                e.scores[0].outcome,
                Outcome::Skipped {
                    reason: SkipReason::BudgetExhausted
                }
            )
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_token_budget_survives_a_restart() {
    let nats = NatsServer::start().unwrap();
    let judge = JudgeServer::start().await.unwrap();
    let shutdown = CancellationToken::new();
    let url = start_ingest(&nats, &shutdown).await;
    // The judge server bills 150 tokens per request: the budget pays for three.
    let policy = json!({
        "projectRef": {"name": "bot"},
        "select": {"kinds": ["LLM"]},
        "judges": [{"name": "relevant", "llm": {
            "template": "answerRelevance", "endpoint": judge.url(), "model": "m",
            "maxConcurrency": 1, "maxRetries": 0, "dailyTokenBudget": 450}}],
    });
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());

    let (first, stop_first) = start_evaluator(&nats, &policy).await;
    send_llm_spans(&url, 0, 5).await;
    let judged = evaluations(&js, 5).await;
    assert_eq!(
        judge.requests().len(),
        3,
        "the budget pays for three requests"
    );
    assert_eq!(budget_skips(&judged), 2);
    stop_first.cancel();
    first.wait().await;
    eprintln!("injected: restarted the evaluator after it spent the day's 450 tokens");

    let (second, stop_second) = start_evaluator(&nats, &policy).await;
    send_llm_spans(&url, 5, 5).await;
    let judged = evaluations(&js, 10).await;
    assert_eq!(
        judge.requests().len(),
        3,
        "a restarted evaluator spent the day's budget again"
    );
    assert_eq!(budget_skips(&judged), 7);
    stop_second.cancel();
    second.wait().await;
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_changing_one_counter_at_once_never_pass_its_limit_or_lose_an_update() {
    use std::sync::Arc;
    use umpire_evaluator::shared_counters::KvCounters;
    use umpire_llm::SharedCounters;

    let nats = NatsServer::start().unwrap();
    let names = ProjectNames::new("team", "bot");
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        let store =
            umpire_nats::kv::ensure_bucket(&js, &umpire_nats::topology::budget_bucket(&names, 1))
                .await
                .unwrap();
        let counters = KvCounters::new("quality");
        counters.set_store(store);
        replicas.push(Arc::new(counters));
    }
    // 2 replicas × 8 tasks, each taking grants of 3 until none is left, against a limit
    // of 100; and each adding 1 token ten times.
    let mut tasks = tokio::task::JoinSet::new();
    for replica in &replicas {
        for _ in 0..8 {
            let replica = replica.clone();
            tasks.spawn(async move {
                let mut taken = 0;
                loop {
                    let granted = replica.take("relevant.requests.1", 3, 100).await.unwrap();
                    if granted == 0 {
                        break;
                    }
                    taken += granted;
                }
                for _ in 0..10 {
                    replica.add("relevant.tokens.1", 1).await.unwrap();
                }
                taken
            });
        }
    }
    let mut taken = 0;
    while let Some(result) = tasks.join_next().await {
        taken += result.unwrap();
    }
    assert_eq!(
        taken, 100,
        "grants across replicas add up to the limit exactly"
    );
    assert_eq!(replicas[0].add("relevant.tokens.1", 0).await.unwrap(), 160);
}
