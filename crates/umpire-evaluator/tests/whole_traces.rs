#![allow(clippy::unwrap_used)]
//! Trace-level judges see whole traces: a long agent run, exported over minutes with its
//! root span last (as OpenTelemetry SDKs export: a span when it ends), is judged once its
//! root has arrived — across two ingest and two evaluator replicas — and a trace whose root
//! never arrives is reported incomplete instead of being judged on a fragment.
//!
//! The agent run lasts `UMPIRE_AGENT_RUN_SECONDS` (default 180).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use umpire_contract::evaluator::EvaluatorConfig;
use umpire_contract::ingest::{IngestConfig, ListenAddresses};
use umpire_core::judge::{JudgeErrorKind, Outcome};
use umpire_core::score::SpanEvaluation;
use umpire_evaluator::RunningEvaluator;
use umpire_ingest::RunningIngest;
use umpire_nats::connect::NatsSettings;
use umpire_nats::topology::ProjectNames;
use umpire_testkit::nats::{NatsServer, read_evaluations};
use umpire_testkit::wait::eventually;

const PARTITIONS: u32 = 4;

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

struct Replicas {
    ingests: Vec<RunningIngest>,
    evaluators: Vec<RunningEvaluator>,
    shutdown: CancellationToken,
}

impl Replicas {
    /// Two ingest replicas of `team/<project>` and two evaluator replicas of its policy
    /// `quality`; returns once every partition is owned and every worker is ready.
    async fn start(nats: &NatsServer, project: &str, sampling: Value, policy: Value) -> Self {
        let settings = NatsSettings {
            url: nats.url(),
            ..Default::default()
        };
        let shutdown = CancellationToken::new();
        let mut ingests = Vec::new();
        for member in ["ingest-0", "ingest-1"] {
            let spec = serde_json::from_value(json!({ "sampling": sampling })).unwrap();
            let config = IngestConfig {
                listen: ListenAddresses {
                    grpc: "127.0.0.1:0".parse().unwrap(),
                    http: "127.0.0.1:0".parse().unwrap(),
                    admin: "127.0.0.1:0".parse().unwrap(),
                },
                member_id: Some(member.into()),
                partitions: PARTITIONS,
                intake_ack_wait: Some(Duration::from_secs(5)),
                // Long enough that a loaded CI machine does not lose leases mid-run (a
                // rebalance decides the traces a replica holds, as incomplete).
                lease_ttl: Some(Duration::from_secs(10)),
                ..IngestConfig::for_project("team", project, spec, settings.clone())
            };
            ingests.push(
                umpire_ingest::start(config, shutdown.clone())
                    .await
                    .unwrap(),
            );
        }
        let mut evaluators = Vec::new();
        for _ in 0..2 {
            let mut spec = policy.clone();
            spec["projectRef"] = json!({ "name": project });
            let config = EvaluatorConfig {
                admin_listen: "127.0.0.1:0".parse().unwrap(),
                ack_wait: Some(Duration::from_secs(5)),
                ..EvaluatorConfig::for_policy(
                    "team",
                    "quality",
                    serde_json::from_value(spec).unwrap(),
                    settings.clone(),
                    None,
                    None,
                )
            };
            evaluators.push(
                umpire_evaluator::start(config, shutdown.clone())
                    .await
                    .unwrap(),
            );
        }
        let replicas = Self {
            ingests,
            evaluators,
            shutdown,
        };
        // Balanced, not only owned: the second replica joining later takes half of the
        // partitions from the first, and that rebalance decides the traces held then.
        eventually(
            "partitions spread over both replicas",
            Duration::from_secs(60),
            || async {
                for ingest in &replicas.ingests {
                    let text = metrics(ingest.admin_addr).await?;
                    let owned = metric(&text, "umpire_ingest_partitions_owned")? as u32;
                    (owned == PARTITIONS / 2).then_some(())?;
                }
                Some(())
            },
        )
        .await;
        for evaluator in &replicas.evaluators {
            let readiness = evaluator.readiness.clone();
            eventually("evaluator ready", Duration::from_secs(30), || {
                let readiness = readiness.clone();
                async move { readiness.status().ok() }
            })
            .await;
        }
        replicas
    }

    fn url(&self, replica: usize) -> String {
        format!(
            "http://{}/v1/traces",
            self.ingests[replica % self.ingests.len()].http_addr
        )
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for ingest in self.ingests {
            ingest.wait().await;
        }
        for evaluator in self.evaluators {
            evaluator.wait().await;
        }
    }
}

async fn metrics(admin: std::net::SocketAddr) -> Option<String> {
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// A sample's value, by its full name with labels (`name{a="b"}`) or bare name.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// One OTLP span of the agent run, as OpenInference instrumentation records it.
fn span(
    trace: &str,
    id: &str,
    parent: Option<&str>,
    kind: &str,
    name: &str,
    start: u64,
    end: u64,
) -> Value {
    let mut attributes =
        vec![json!({"key": "openinference.span.kind", "value": {"stringValue": kind}})];
    if kind == "TOOL" {
        attributes.push(json!({"key": "tool.name", "value": {"stringValue": "search"}}));
        attributes.push(
            json!({"key": "input.value", "value": {"stringValue": format!("{{\"q\": \"{id}\"}}")}}),
        );
    }
    if kind == "LLM" {
        attributes.push(json!({"key": "llm.model_name", "value": {"stringValue": "gpt-4o"}}));
        attributes.push(json!({"key": "output.value", "value": {"stringValue": "thinking"}}));
    }
    json!({
        "traceId": trace, "spanId": id, "parentSpanId": parent.unwrap_or(""),
        "name": name, "kind": 1,
        "startTimeUnixNano": start.to_string(), "endTimeUnixNano": end.to_string(),
        "attributes": attributes,
    })
}

/// Sends spans as one OTLP/HTTP JSON export, retrying until ingest accepts it.
async fn export(url: &str, spans: Vec<Value>) {
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "agent"}}]},
        "scopeSpans": [{"scope": {"name": "openinference"}, "spans": spans}]}]});
    let client = reqwest::Client::new();
    for _ in 0..50 {
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        if sent.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("ingest never accepted an export");
}

async fn evaluations(js: &jetstream::Context, project: &str) -> Vec<SpanEvaluation> {
    read_evaluations(js, &ProjectNames::new("team", project).scores_stream())
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(_, evaluation)| evaluation)
        .collect()
}

fn outcome<'a>(evaluation: &'a SpanEvaluation, judge: &str) -> &'a Outcome {
    &evaluation
        .scores
        .iter()
        .find(|s| s.judge == judge)
        .unwrap()
        .outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_agent_run_is_judged_whole_when_its_root_arrives_last() {
    let run = Duration::from_secs(
        std::env::var("UMPIRE_AGENT_RUN_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(180),
    );
    let nats = NatsServer::start().unwrap();
    let replicas = Replicas::start(
        &nats,
        "agents",
        json!({"decisionWait": "1s"}),
        json!({
            "select": {"kinds": ["AGENT"]},
            "judges": [{"name": "loop", "agentLoop": {"maxLlmCalls": 5}}],
        }),
    )
    .await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());

    // A short, healthy run: root and two LLM calls exported together.
    let (short, long) = ("5".repeat(32), "a".repeat(32));
    let t = now_nanos();
    export(
        &replicas.url(0),
        vec![
            span(
                &short,
                "5000000000000001",
                Some("5000000000000000"),
                "LLM",
                "plan",
                t,
                t + 1,
            ),
            span(
                &short,
                "5000000000000002",
                Some("5000000000000000"),
                "LLM",
                "answer",
                t + 1,
                t + 2,
            ),
            span(
                &short,
                "5000000000000000",
                None,
                "AGENT",
                "short run",
                t,
                t + 3,
            ),
        ],
    )
    .await;

    // The long run: an LLM call and a tool call per step, each exported when it ends, to
    // one ingest replica or the other; the root (the agent) ends — and is exported — last.
    const STEPS: u64 = 12;
    let started = now_nanos();
    let root = "a000000000000000";
    for step in 0..STEPS {
        let t = now_nanos();
        let (llm, tool) = (format!("a1{step:014x}"), format!("a2{step:014x}"));
        export(
            &replicas.url(step as usize),
            vec![
                span(&long, &llm, Some(root), "LLM", "decide", t, t + 1_000),
                span(
                    &long,
                    &tool,
                    Some(root),
                    "TOOL",
                    "search",
                    t + 1_000,
                    t + 2_000,
                ),
            ],
        )
        .await;
        tokio::time::sleep(run / STEPS as u32).await;
    }
    export(
        &replicas.url(1),
        vec![span(
            &long,
            root,
            None,
            "AGENT",
            "long run",
            started,
            now_nanos(),
        )],
    )
    .await;
    eprintln!(
        "sent: a {}s agent run of {} spans in {} exports, root last; a short run of 3 spans",
        run.as_secs(),
        2 * STEPS + 1,
        STEPS + 1
    );

    let judged = eventually("both roots judged", Duration::from_secs(60), || async {
        let all = evaluations(&js, "agents").await;
        (all.len() >= 2).then_some(all)
    })
    .await;
    let by_trace: BTreeMap<String, &SpanEvaluation> =
        judged.iter().map(|e| (e.trace_id.to_string(), e)).collect();
    assert_eq!(judged.len(), 2, "one evaluation per agent root: {judged:?}");

    let long_run = outcome(by_trace[&long], "loop");
    let verdict = long_run.verdict().unwrap_or_else(|| panic!("{long_run:?}"));
    assert!(!verdict.passed, "{verdict:?}");
    assert!(
        verdict
            .explanation
            .as_deref()
            .unwrap_or_default()
            .contains(&format!(
                "{STEPS} LLM calls, {STEPS} tool calls in {} spans",
                2 * STEPS + 1
            )),
        "the long run was judged on a fragment: {verdict:?}"
    );
    let short_run = outcome(by_trace[&short], "loop");
    let verdict = short_run.verdict().unwrap();
    assert!(verdict.passed, "{verdict:?}");
    assert!(
        verdict
            .explanation
            .as_deref()
            .unwrap_or_default()
            .contains("2 LLM calls, 0 tool calls in 3 spans"),
        "{verdict:?}"
    );
    replicas.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trace_whose_root_never_arrives_is_reported_incomplete_not_judged() {
    let nats = NatsServer::start().unwrap();
    let replicas = Replicas::start(
        &nats,
        "orphans",
        json!({"decisionWait": "500ms", "traceTimeout": "3s"}),
        json!({
            "select": {"kinds": ["LLM"]},
            "judges": [
                {"name": "loop", "agentLoop": {"maxLlmCalls": 5}},
                {"name": "fast", "latency": {"maxMs": 60000}},
            ],
        }),
    )
    .await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let trace = "b".repeat(32);
    let t = now_nanos();
    export(
        &replicas.url(0),
        vec![
            span(
                &trace,
                "b000000000000001",
                Some("b000000000000000"),
                "LLM",
                "decide",
                t,
                t + 1,
            ),
            span(
                &trace,
                "b000000000000002",
                Some("b000000000000000"),
                "LLM",
                "decide",
                t + 1,
                t + 2,
            ),
        ],
    )
    .await;
    eprintln!("sent: two LLM spans of a trace whose root never arrives (traceTimeout 3s)");

    let judged = eventually(
        "the orphan's spans reported",
        Duration::from_secs(30),
        || async {
            let all = evaluations(&js, "orphans").await;
            (all.len() >= 2).then_some(all)
        },
    )
    .await;
    assert_eq!(judged.len(), 2);
    for evaluation in &judged {
        match outcome(evaluation, "loop") {
            Outcome::Failed(failure) => {
                assert_eq!(failure.kind, JudgeErrorKind::IncompleteTrace, "{failure:?}")
            }
            other => panic!("a trace-level judge ran on a fragment: {other:?}"),
        }
        // Judges of the span alone still run.
        assert!(
            outcome(evaluation, "fast")
                .verdict()
                .is_some_and(|v| v.passed)
        );
    }
    let ingest_incomplete: f64 = {
        let mut total = 0.0;
        for ingest in &replicas.ingests {
            let text = metrics(ingest.admin_addr).await.unwrap();
            total += metric(
                &text,
                "umpire_ingest_traces_incomplete_total{reason=\"root_missing\"}",
            )
            .unwrap_or(0.0);
        }
        total
    };
    assert_eq!(ingest_incomplete, 1.0);
    let mut evaluator_incomplete = 0.0;
    for evaluator in &replicas.evaluators {
        let text = metrics(evaluator.admin_addr).await.unwrap();
        evaluator_incomplete += metric(
            &text,
            "umpire_evaluator_traces_incomplete_total{reason=\"root_missing\"}",
        )
        .unwrap_or(0.0);
    }
    assert_eq!(evaluator_incomplete, 1.0);
    replicas.stop().await;
}
