//! `umpire ingest` and `umpire evaluator` as processes: killing the evaluator mid-stream
//! (SIGKILL) loses no span and duplicates no score, and the judge API key never reaches the
//! logs.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use support::UmpireProcess;
use umpire_testkit::judge::JudgeServer;
use umpire_testkit::nats::{NatsServer, read_evaluations};
use umpire_testkit::wait::eventually;

const API_KEY: &str = "sk-never-log-me-7f3a";

fn write(dir: &Path, name: &str, text: &str) -> String {
    std::fs::write(dir.join(name), text).unwrap();
    name.to_owned()
}

/// Evaluations stored on `stream` (a message holds one, or a batch of a trace's).
async fn stored(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    read_evaluations(js, stream)
        .await
        .map_or(0, |evaluations| evaluations.len() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_evaluator_mid_stream_loses_nothing_and_duplicates_nothing() {
    let nats = NatsServer::start().unwrap();
    let judge = JudgeServer::start().await.unwrap();
    judge.require_key(API_KEY);
    judge.set_latency(Duration::from_millis(150));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("secrets/judge")).unwrap();
    std::fs::write(dir.path().join("secrets/judge/key"), API_KEY).unwrap();
    let project = write(
        dir.path(),
        "project.yaml",
        "apiVersion: umpire.dev/v1alpha1\nkind: TraceProject\nmetadata: {name: bot, namespace: team}\nspec:\n  sampling: {decisionWait: 200ms}\n",
    );
    let evaluator_config = write(
        dir.path(),
        "evaluator.yaml",
        &format!(
            r#"
namespace: team
policy: quality
nats: {{url: "{nats}"}}
adminListen: 127.0.0.1:0
secretDir: {secrets}
ackWait: 3s
spec:
  projectRef: {{name: bot}}
  select: {{kinds: [LLM]}}
  evaluator: {{concurrency: 4}}
  judges:
    - {{name: fast, latency: {{maxMs: 60000}}}}
    - name: relevant
      llm: {{template: answerRelevance, endpoint: "{judge}", model: m, maxConcurrency: 2, maxRetries: 1,
             apiKeySecretRef: {{name: judge, key: key}}}}
"#,
            nats = nats.url(),
            secrets = dir.path().join("secrets").display(),
            judge = judge.url(),
        ),
    );
    let mut ingest = UmpireProcess::spawn(
        &[
            "ingest",
            "--config",
            &project,
            "--nats-url",
            &nats.url(),
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    let http = ingest.wait_for_event("ingest_starting", Duration::from_secs(20))["http"]
        .as_str()
        .unwrap()
        .to_owned();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    eventually("the span stream", Duration::from_secs(20), || async {
        js.get_stream("UMPIRE_SPANS_team_bot")
            .await
            .ok()
            .map(|_| ())
    })
    .await;

    let mut first = UmpireProcess::spawn(&["evaluator", "--config", &evaluator_config], dir.path());
    first.wait_for_event("evaluator_starting", Duration::from_secs(20));
    eventually("the policy's consumer", Duration::from_secs(20), || async {
        let stream = js.get_stream("UMPIRE_SPANS_team_bot").await.ok()?;
        stream
            .consumer_info("policy-quality")
            .await
            .ok()
            .map(|_| ())
    })
    .await;

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/otlp");
    let client = reqwest::Client::new();
    for name in [
        "openinference-00.pb",
        "openllmetry-00.pb",
        "otel-genai-00.pb",
    ] {
        let response = client
            .post(format!("http://{http}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(std::fs::read(fixtures.join(name)).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // 36 LLM spans (12 per fixture): one evaluation each.
    let expected = 36;
    eventually(
        "the first evaluator under way",
        Duration::from_secs(60),
        || async { (stored(&js, "UMPIRE_SCORES_team_bot").await >= 8).then_some(()) },
    )
    .await;
    first.kill();
    let mid = stored(&js, "UMPIRE_SCORES_team_bot").await;
    assert!(
        mid < expected,
        "the kill must land mid-stream ({mid} of {expected} stored)"
    );

    let mut second =
        UmpireProcess::spawn(&["evaluator", "--config", &evaluator_config], dir.path());
    second.wait_for_event("evaluator_starting", Duration::from_secs(20));
    eventually("every span judged", Duration::from_secs(90), || async {
        (stored(&js, "UMPIRE_SCORES_team_bot").await >= expected).then_some(())
    })
    .await;
    let records = read_evaluations(&js, "UMPIRE_SCORES_team_bot")
        .await
        .unwrap();
    let ids: BTreeSet<&str> = records.iter().map(|(_, e)| e.id.as_str()).collect();
    assert_eq!(records.len(), expected as usize, "no duplicate scores");
    assert_eq!(ids.len(), expected as usize);
    let spans: BTreeSet<String> = records
        .iter()
        .map(|(_, evaluation)| {
            assert_eq!(evaluation.scores.len(), 2);
            format!("{}-{}", evaluation.trace_id, evaluation.span_id)
        })
        .collect();
    assert_eq!(spans.len(), 36, "no span lost");

    assert_eq!(second.terminate(), Some(0));
    let _ = ingest.terminate();
    // A shutdown is not an outage: closing the NATS connections warns of nothing.
    let closing: Vec<&String> = second
        .log
        .iter()
        .filter(|l| l.contains("\"event\":\"nats_disconnected\""))
        .collect();
    assert!(closing.is_empty(), "a clean shutdown logged: {closing:#?}");
    for log in first.log.iter().chain(second.log.iter()) {
        assert!(
            !log.contains(API_KEY),
            "the API key reached a log line: {log}"
        );
    }
    assert!(
        judge
            .requests()
            .iter()
            .all(|r| r.headers["authorization"] == format!("Bearer {API_KEY}"))
    );
}

/// As for ingest: an EvalPolicy breaking a CEL rule of the CRD is refused before the
/// evaluator starts, with the rule's message.
#[test]
fn a_policy_the_api_server_would_refuse_is_refused_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "policy.yaml",
        r#"apiVersion: umpire.dev/v1alpha1
kind: EvalPolicy
metadata: {name: bad, namespace: team}
spec:
  projectRef: {name: bot}
  judges: [{name: fast, latency: {maxMs: 100}}]
  alerts:
    - {name: slow, metric: {judge: fast, aggregate: passRate}, window: 5m, condition: {below: 85}, severity: warning, route: hook}
  routes:
    - {name: hook, webhook: {url: "http://127.0.0.1:9/hook"}}
"#,
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_umpire"))
        .args(["evaluator", "--config", &manifest])
        .args(["--nats-url", "nats://127.0.0.1:1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("write 0.85, not 85"), "{stderr}");
}
