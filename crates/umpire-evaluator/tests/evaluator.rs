//! The evaluator end to end: spans ingested by the real ingest worker are judged (code judges
//! and an LLM judge served by the test kit's OpenAI-compatible server), and the scores land
//! in JetStream with the values checked by hand against the fixture.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use umpire_contract::evaluator::EvaluatorConfig;
use umpire_contract::ingest::{IngestConfig, ListenAddresses};
use umpire_core::batch::batch_message_id;
use umpire_core::ids::SpanId;
use umpire_core::judge::{JudgeErrorKind, Outcome};
use umpire_core::score::SpanEvaluation;
use umpire_nats::connect::NatsSettings;
use umpire_testkit::judge::JudgeServer;
use umpire_testkit::nats::{NatsServer, read_evaluations, read_stream};
use umpire_testkit::wait::eventually;

const NAMESPACE: &str = "team";
const PROJECT: &str = "bot";
const SCORES: &str = "UMPIRE_SCORES_team_bot";

async fn start_ingest(nats: &NatsServer) -> (String, CancellationToken) {
    let config = IngestConfig {
        namespace: NAMESPACE.into(),
        project: PROJECT.into(),
        spec: serde_json::from_value(json!({"sampling": {"decisionWait": "200ms"}})).unwrap(),
        nats: NatsSettings {
            url: nats.url(),
            ..Default::default()
        },
        listen: ListenAddresses {
            grpc: "127.0.0.1:0".parse().unwrap(),
            http: "127.0.0.1:0".parse().unwrap(),
            admin: "127.0.0.1:0".parse().unwrap(),
        },
        auth_token_file: None,
        secret_dir: None,
        egress: None,
        member_id: Some("ingest-0".into()),
        partitions: 4,
        intake_max_bytes: 64 << 20,
        intake_ack_wait: Some(Duration::from_secs(5)),
        lease_ttl: Some(Duration::from_secs(3)),
    };
    let shutdown = CancellationToken::new();
    let running = umpire_ingest::start(config, shutdown.clone())
        .await
        .unwrap();
    let ready = format!("http://{}/readyz", running.admin_addr);
    eventually("ingest ready", Duration::from_secs(20), || {
        let url = ready.clone();
        async move { (reqwest::get(&url).await.ok()?.status() == 200).then_some(()) }
    })
    .await;
    let metrics = format!("http://{}/metrics", running.admin_addr);
    eventually(
        "ingest owns its partitions",
        Duration::from_secs(20),
        || {
            let url = metrics.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?
                    .contains("umpire_ingest_partitions_owned 4")
                    .then_some(())
            }
        },
    )
    .await;
    (format!("http://{}/v1/traces", running.http_addr), shutdown)
}

fn secrets(dir: &Path) -> PathBuf {
    let secret = dir.join("secrets/judge-key");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("api-key"), "sk-evaluator-test\n").unwrap();
    dir.join("secrets")
}

fn policy(judge_url: &str) -> Value {
    json!({
        "projectRef": {"name": PROJECT},
        "select": {"kinds": ["LLM"]},
        "judges": [
            {"name": "valid-json", "json": {}},
            {"name": "fast", "latency": {"maxMs": 60000}},
            {"name": "grounded", "llm": {
                "template": "groundedness", "endpoint": judge_url, "model": "judge-7b",
                "apiKeySecretRef": {"name": "judge-key", "key": "api-key"}, "maxRetries": 1, "timeout": "5s"
            }}
        ],
        "alerts": [{"name": "drop", "metric": {"judge": "grounded", "aggregate": "mean"}, "window": "10m",
                    "groupBy": ["llm.model_name"], "condition": {"below": 0.5}, "severity": "info", "route": "hook"}],
        "routes": [{"name": "hook", "webhook": {"url": "http://hooks.example/x"}}]
    })
}

async fn start_evaluator(
    nats: &NatsServer,
    spec: Value,
    secret_dir: PathBuf,
) -> (
    String,
    CancellationToken,
    umpire_evaluator::RunningEvaluator,
) {
    start_evaluator_with(nats, spec, secret_dir, Duration::from_secs(10)).await
}

async fn start_evaluator_with(
    nats: &NatsServer,
    spec: Value,
    secret_dir: PathBuf,
    ack_wait: Duration,
) -> (
    String,
    CancellationToken,
    umpire_evaluator::RunningEvaluator,
) {
    let config = EvaluatorConfig {
        namespace: NAMESPACE.into(),
        policy: "quality".into(),
        spec: serde_json::from_value(spec).unwrap(),
        nats: NatsSettings {
            url: nats.url(),
            ..Default::default()
        },
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        secret_dir: Some(secret_dir),
        config_map_dir: None,
        embedding_model: None,
        ack_wait: Some(ack_wait),
        state_replicas: 1,
        alert_lease_ttl: None,
        alert_snapshot_interval: None,
        egress: None,
    };
    let shutdown = CancellationToken::new();
    let running = umpire_evaluator::start(config, shutdown.clone())
        .await
        .unwrap();
    let admin = format!("http://{}", running.admin_addr);
    let ready = format!("{admin}/readyz");
    eventually("evaluator ready", Duration::from_secs(20), || {
        let url = ready.clone();
        async move { (reqwest::get(&url).await.ok()?.status() == 200).then_some(()) }
    })
    .await;
    (admin, shutdown, running)
}

async fn scores(
    js: &jetstream::Context,
    count: usize,
) -> Vec<(String, SpanEvaluation, Option<String>)> {
    eventually(
        &format!("{count} span evaluations"),
        Duration::from_secs(60),
        || async move {
            let stored = read_evaluations(js, SCORES).await.ok()?;
            (stored.len() >= count).then_some(stored)
        },
    )
    .await
    .into_iter()
    .map(|(m, evaluation)| (m.subject, evaluation, m.message_id))
    .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/otlp")
            .join(name),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judges_ingested_spans_and_stores_hand_checked_scores() {
    let nats = NatsServer::start().unwrap();
    let judge = JudgeServer::start().await.unwrap();
    judge.require_key("sk-evaluator-test");
    // The documents say 30 days; answers claiming 90 days are not grounded in them.
    judge.set_verdict(|request| {
        if request.prompt().contains("90 days") {
            "ungrounded".into()
        } else {
            "grounded".into()
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (ingest_url, ingest_stop) = start_ingest(&nats).await;
    let (admin, evaluator_stop, evaluator) =
        start_evaluator(&nats, policy(&judge.url()), secrets(dir.path())).await;

    let response = reqwest::Client::new()
        .post(&ingest_url)
        .header("content-type", "application/x-protobuf")
        .body(fixture("openinference-00.pb"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // One evaluation per LLM span (12), each with a score per judge (3).
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let records = scores(&js, 12).await;
    assert_eq!(records.len(), 12);
    let ids: BTreeSet<&str> = records.iter().map(|(_, r, _)| r.id.as_str()).collect();
    assert_eq!(ids.len(), 12, "idempotent ids are unique per span");
    // Nats-Msg-Id is the evaluation's id, or its batch's: the evaluations of the spans of one
    // trace judged together travel in one message, named after the trace and its spans.
    let mut batches: BTreeMap<&str, Vec<&SpanEvaluation>> = BTreeMap::new();
    for (_, evaluation, id) in &records {
        batches
            .entry(id.as_deref().unwrap())
            .or_default()
            .push(evaluation);
    }
    for (id, evaluations) in &batches {
        let expected = match evaluations.as_slice() {
            [one] => one.id.clone(),
            many => {
                let spans: Vec<SpanId> = many.iter().map(|e| e.span_id).collect();
                format!("quality/{}", batch_message_id(&many[0].trace_id, &spans))
            }
        };
        assert_eq!(*id, expected);
    }

    let mut by_judge: BTreeMap<String, Vec<&Outcome>> = BTreeMap::new();
    for (subject, evaluation, _) in &records {
        assert_eq!(subject, "umpire.scores.team.bot.quality");
        assert!(evaluation.groups.contains_key("llm.model_name"));
        assert!(evaluation.latency_ms >= 0.0);
        assert_eq!(evaluation.scores.len(), 3);
        for score in &evaluation.scores {
            by_judge
                .entry(score.judge.clone())
                .or_default()
                .push(&score.outcome);
        }
    }
    let tally = |judge: &str| {
        let outcomes = &by_judge[judge];
        let passed = outcomes
            .iter()
            .filter(|o| o.verdict().is_some_and(|v| v.passed))
            .count();
        let failed = outcomes
            .iter()
            .filter(|o| o.verdict().is_some_and(|v| !v.passed))
            .count();
        let missing = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Failed(f) if f.kind == JudgeErrorKind::MissingField))
            .count();
        (passed, failed, missing)
    };
    // Hand-checked against the fixture: 12 LLM spans — 5 answer "90 days", 3 other texts,
    // 1 tool call without text, 3 failed calls without output.
    assert_eq!(tally("grounded"), (3, 5, 4));
    assert_eq!(tally("valid-json"), (1, 7, 4));
    assert_eq!(tally("fast"), (12, 0, 0));

    // The groundedness prompt carried the documents of the trace's retriever span.
    let requests = judge.requests();
    assert_eq!(requests.len(), 8, "one request per LLM span with an output");
    assert!(requests.iter().all(|r| {
        r.prompt()
            .contains("[kb-0] Refunds are accepted within 30 days of delivery with a receipt.")
    }));
    assert!(
        requests
            .iter()
            .all(|r| r.headers["authorization"] == "Bearer sk-evaluator-test")
    );
    assert!(requests.iter().all(|r| r.body["model"] == "judge-7b"));

    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("umpire_evaluator_judgements_total{judge=\"grounded\",outcome=\"fail\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "umpire_evaluator_judge_errors_total{judge=\"grounded\",kind=\"missing_field\"} 4"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "umpire_evaluator_llm_tokens_total{judge=\"grounded\",direction=\"input\"} 960"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("sk-evaluator-test"));

    evaluator_stop.cancel();
    evaluator.wait().await;
    ingest_stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_outages_are_recorded_errors_not_scores() {
    let nats = NatsServer::start().unwrap();
    let judge = JudgeServer::start().await.unwrap();
    for _ in 0..100 {
        judge.push(umpire_testkit::judge::Scripted::Status {
            code: 503,
            retry_after: None,
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let (ingest_url, ingest_stop) = start_ingest(&nats).await;
    let spec = json!({
        "projectRef": {"name": PROJECT},
        "select": {"kinds": ["chat"]},
        "judges": [{"name": "relevant", "llm": {"template": "answerRelevance", "endpoint": judge.url(), "model": "m", "maxRetries": 1}}]
    });
    let (admin, stop, evaluator) = start_evaluator(&nats, spec, secrets(dir.path())).await;
    reqwest::Client::new()
        .post(&ingest_url)
        .header("content-type", "application/json")
        .body(fixture("openllmetry-00.json"))
        .send()
        .await
        .unwrap();
    // 12 chat spans: 10 with text output get judged (and fail upstream); the failed call and
    // the tool-call turn have no text.
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let records = scores(&js, 12).await;
    let kinds: Vec<JudgeErrorKind> = records
        .iter()
        .flat_map(|(_, evaluation, _)| evaluation.scores.iter())
        .map(|score| match &score.outcome {
            Outcome::Failed(f) => f.kind,
            other => panic!("an outage must not produce a score: {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == JudgeErrorKind::Upstream)
            .count(),
        10
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == JudgeErrorKind::MissingField)
            .count(),
        2
    );
    assert_eq!(
        judge.requests().len(),
        20,
        "each judged span: one try and one retry"
    );
    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "umpire_evaluator_judge_errors_total{judge=\"relevant\",kind=\"upstream\"} 10"
        ),
        "{metrics}"
    );
    stop.cancel();
    evaluator.wait().await;
    ingest_stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_spans_go_to_the_dead_letter_stream() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_ingest_url, ingest_stop) = start_ingest(&nats).await;
    let spec = json!({"projectRef": {"name": PROJECT}, "judges": [{"name": "fast", "latency": {"maxMs": 1000}}]});
    let (admin, stop, evaluator) = start_evaluator(&nats, spec, secrets(dir.path())).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.publish("umpire.spans.team.bot.llm.chat", "not a span".into())
        .await
        .unwrap()
        .await
        .unwrap();
    eventually("the dead letter", Duration::from_secs(60), || async {
        let stored = js
            .get_stream("UMPIRE_DLQ_team_bot")
            .await
            .ok()?
            .info()
            .await
            .ok()?
            .state
            .messages;
        (stored == 1).then_some(())
    })
    .await;
    let letters = read_stream(&js, "UMPIRE_DLQ_team_bot").await.unwrap();
    assert_eq!(letters[0].payload, b"not a span");
    assert_eq!(letters[0].subject, "umpire.dlq.team.bot.quality");
    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("umpire_evaluator_dead_letters_total 1"),
        "{metrics}"
    );
    stop.cancel();
    evaluator.wait().await;
    ingest_stop.cancel();
}

/// Step 9, seen from outside: a rotated judge API key was read once at start, so after
/// Kubernetes updated the mounted Secret every call failed with 401 until the pod restarted.
/// The key is read at each call now (Kubernetes swaps the files atomically).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_api_key_is_used_without_a_restart() {
    let nats = NatsServer::start().unwrap();
    let judge = JudgeServer::start().await.unwrap();
    judge.require_key("sk-evaluator-test");
    let dir = tempfile::tempdir().unwrap();
    let secret_dir = secrets(dir.path());
    let (ingest_url, ingest_stop) = start_ingest(&nats).await;
    let spec = json!({
        "projectRef": {"name": PROJECT},
        "select": {"kinds": ["chat"]},
        "judges": [{"name": "relevant", "llm": {"template": "answerRelevance", "endpoint": judge.url(),
                    "model": "m", "maxRetries": 0, "apiKeySecretRef": {"name": "judge-key", "key": "api-key"}}}]
    });
    let (_admin, stop, evaluator) = start_evaluator(&nats, spec, secret_dir.clone()).await;
    let send = || async {
        let response = reqwest::Client::new()
            .post(&ingest_url)
            .header("content-type", "application/json")
            .body(fixture("openllmetry-00.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    };
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    send().await;
    let before = scores(&js, 12).await;

    // The Secret is rotated: the old key stops working, the new one is mounted.
    judge.require_key("sk-rotated");
    std::fs::write(secret_dir.join("judge-key/api-key"), "sk-rotated\n").unwrap();
    // The same spans again would be deduplicated; new trace ids make them new spans.
    let mut request: Value = serde_json::from_slice(&fixture("openllmetry-00.json")).unwrap();
    for resource in request["resourceSpans"].as_array_mut().unwrap() {
        for scope in resource["scopeSpans"].as_array_mut().unwrap() {
            for span in scope["spans"].as_array_mut().unwrap() {
                let reversed: String = span["traceId"].as_str().unwrap().chars().rev().collect();
                span["traceId"] = Value::from(reversed);
            }
        }
    }
    let rotated_body = serde_json::to_vec(&request).unwrap();
    let response = reqwest::Client::new()
        .post(&ingest_url)
        .header("content-type", "application/json")
        .body(rotated_body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let all = scores(&js, 24).await;
    let judged_after: Vec<&Outcome> = all[before.len()..]
        .iter()
        .flat_map(|(_, evaluation, _)| evaluation.scores.iter())
        .map(|score| &score.outcome)
        .filter(|outcome| !matches!(outcome, Outcome::Skipped { .. }))
        .filter(|outcome| !matches!(outcome, Outcome::Failed(f) if f.kind == JudgeErrorKind::MissingField))
        .collect();
    assert_eq!(judged_after.len(), 10, "{judged_after:?}");
    assert!(
        judged_after.iter().all(|o| o.verdict().is_some()),
        "every call after the rotation used the new key: {judged_after:?}"
    );
    stop.cancel();
    evaluator.wait().await;
    ingest_stop.cancel();
}

/// Step 9, seen from outside: spans waiting for a judging slot (a slow or rate-limited LLM
/// judge) outlived the consumer's ack wait and were redelivered while still queued, so the
/// same span was judged — and paid for — twice. Waiting spans now tell JetStream they are in
/// progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_waiting_for_a_slow_judge_are_judged_once() {
    let nats = NatsServer::start().unwrap();
    let judge = JudgeServer::start().await.unwrap();
    judge.set_latency(Duration::from_millis(600));
    let dir = tempfile::tempdir().unwrap();
    let (ingest_url, ingest_stop) = start_ingest(&nats).await;
    // One judging slot: the 10 judged spans take ~6 s in turn, three ack waits.
    let spec = json!({
        "projectRef": {"name": PROJECT},
        "select": {"kinds": ["chat"]},
        "evaluator": {"concurrency": 1},
        "judges": [{"name": "relevant", "llm": {"template": "answerRelevance", "endpoint": judge.url(),
                    "model": "m", "maxRetries": 0}}]
    });
    let (_admin, stop, evaluator) =
        start_evaluator_with(&nats, spec, secrets(dir.path()), Duration::from_secs(2)).await;
    reqwest::Client::new()
        .post(&ingest_url)
        .header("content-type", "application/json")
        .body(fixture("openllmetry-00.json"))
        .send()
        .await
        .unwrap();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    scores(&js, 12).await;
    // Everything acknowledged: nothing is pending or waiting for redelivery.
    let consumer_name =
        umpire_nats::topology::ProjectNames::new(NAMESPACE, PROJECT).policy_consumer("quality");
    eventually("every span acknowledged", Duration::from_secs(30), || {
        let js = js.clone();
        let consumer_name = consumer_name.clone();
        async move {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
                .get_stream(format!("UMPIRE_SPANS_{NAMESPACE}_{PROJECT}"))
                .await
                .ok()?
                .get_consumer(&consumer_name)
                .await
                .ok()?;
            let info = consumer.info().await.ok()?;
            (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
        }
    })
    .await;
    assert_eq!(
        judge.requests().len(),
        10,
        "each judged span called the judge once (the other two have no text)"
    );
    stop.cancel();
    evaluator.wait().await;
    ingest_stop.cancel();
}
