//! `TraceProject.spec.export` end to end: the `umpire ingest` and `umpire evaluator`
//! binaries against a real nats-server, OTLP traffic in, and the test kit's OTLP receiver
//! (real HTTP and gRPC OTLP servers) as the trace backend — down for part of the run. Every
//! kept span and every judge's `gen_ai.evaluation.result` must arrive at both targets,
//! parented to its span, with the header from the Secret, despite the outage.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use support::UmpireProcess;
use umpire_contract::export_status::{DeliveryState, ExportReport, ExportStatusStore};
use umpire_nats::topology::ProjectNames;
use umpire_otlp::ExportTraceServiceRequest;
use umpire_otlp::attributes::{int_kv, string_kv};
use umpire_testkit::nats::NatsServer;
use umpire_testkit::otlp::OtlpReceiver;
use umpire_testkit::wait::eventually;

const WAIT: Duration = Duration::from_secs(60);
const API_KEY: &str = "sk-export-key-0123456789";

/// A trace of four spans: an agent root, two LLM calls (in every third trace both answer
/// with an error status) and a tool call; returns the request and the LLM calls' span ids. The two calls travel as one span
/// message, and their evaluations as one scores message.
fn trace(n: u64) -> (ExportTraceServiceRequest, Vec<Vec<u8>>) {
    let mut trace_id = vec![0u8; 16];
    trace_id[..8].copy_from_slice(&(n + 1).to_be_bytes());
    trace_id[15] = 0xee;
    let id = |k: u64| (n * 10 + k + 1).to_be_bytes().to_vec();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let span = |span_id: Vec<u8>, parent: Vec<u8>, name: &str, attributes| Span {
        trace_id: trace_id.clone(),
        span_id,
        parent_span_id: parent,
        name: name.into(),
        kind: 1,
        start_time_unix_nano: now - 2_000_000_000,
        end_time_unix_nano: now - 1_000_000_000,
        attributes,
        ..Default::default()
    };
    let mut llm = span(
        id(1),
        id(0),
        "chat gpt-4o-mini",
        vec![
            string_kv("gen_ai.operation.name", "chat"),
            string_kv("gen_ai.request.model", "gpt-4o-mini"),
            string_kv("gen_ai.response.id", &format!("chatcmpl-{n}")),
            int_kv("gen_ai.usage.input_tokens", 40),
        ],
    );
    if n.is_multiple_of(3) {
        llm.status = Some(opentelemetry_proto::tonic::trace::v1::Status {
            code: 2,
            message: "upstream 500".into(),
        });
    }
    let mut second_call = llm.clone();
    second_call.span_id = id(3);
    let spans = vec![
        span(
            id(0),
            vec![],
            "invoke_agent support",
            vec![string_kv("gen_ai.operation.name", "invoke_agent")],
        ),
        llm,
        second_call,
        span(
            id(2),
            id(0),
            "execute_tool lookup",
            vec![string_kv("gen_ai.operation.name", "execute_tool")],
        ),
    ];
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", "support-bot")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    (request, vec![id(1), id(3)])
}

fn write_configs(dir: &std::path::Path, nats: &NatsServer, receiver: &OtlpReceiver) {
    std::fs::create_dir_all(dir.join("secrets/vendor")).unwrap();
    std::fs::write(dir.join("secrets/vendor/api-key"), API_KEY).unwrap();
    let secrets = dir.join("secrets").display().to_string();
    std::fs::write(
        dir.join("ingest.yaml"),
        format!(
            r#"
namespace: team
project: shop
nats: {{url: "{nats}"}}
listen: {{grpc: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0"}}
secretDir: {secrets}
egress: {{allowedCidrs: [127.0.0.1/32]}}
spec:
  export:
    - name: vendor-http
      otlp:
        endpoint: {http}
        headers: [{{name: X-Api-Key, valueFrom: {{name: vendor, key: api-key}}}}]
    - name: collector-grpc
      otlp: {{endpoint: "{grpc}", protocol: grpc, compression: none, evaluationsAs: both}}
    - name: broken
      otlp: {{endpoint: "http://169.254.169.254:4318"}}
"#,
            nats = nats.url(),
            http = receiver.http_url(),
            grpc = receiver.grpc_url(),
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("evaluator.yaml"),
        format!(
            r#"
namespace: team
policy: quality
nats: {{url: "{nats}"}}
adminListen: 127.0.0.1:0
spec:
  projectRef: {{name: shop}}
  select: {{kinds: [LLM]}}
  judges:
    - {{name: no-errors, errorStatus: {{}}}}
    - {{name: quick, latency: {{maxMs: 5000}}}}
"#,
            nats = nats.url(),
        ),
    )
    .unwrap();
}

async fn send(http: &str, from: u64, count: u64) -> Vec<Vec<u8>> {
    let client = reqwest::Client::new();
    let mut llm_spans = Vec::new();
    for n in from..from + count {
        let (request, llm) = trace(n);
        llm_spans.extend(llm);
        let reply = client
            .post(format!("http://{http}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
    }
    llm_spans
}

fn text(record_value: Option<&any_value::Value>) -> Option<String> {
    match record_value {
        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_spans_and_evaluations_reach_both_targets_through_an_outage() {
    let nats = NatsServer::start().unwrap();
    let receiver = OtlpReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_configs(dir.path(), &nats, &receiver);
    let mut ingest = UmpireProcess::spawn(&["ingest", "--config", "ingest.yaml"], dir.path());
    let started = ingest.wait_for_event("ingest_starting", WAIT);
    let http = started["http"].as_str().unwrap().to_owned();
    // Both targets' pumps run (their consumers exist) before any span is kept.
    for _ in 0..4 {
        ingest.wait_for_event("export_started", WAIT);
    }
    let mut evaluator =
        UmpireProcess::spawn(&["evaluator", "--config", "evaluator.yaml"], dir.path());
    evaluator.wait_for_event("evaluator_starting", WAIT);

    const TRACES: u64 = 30;
    let mut llm_spans = send(&http, 0, TRACES).await;
    eventually("the first traces exported", WAIT, || async {
        (receiver.spans().len() >= (TRACES * 4) as usize * 2).then_some(())
    })
    .await;

    // The backend goes down; traffic goes on.
    receiver.set_unavailable(true);
    let before_outage = receiver.spans().len();
    llm_spans.extend(send(&http, TRACES, TRACES).await);
    eventually("exports refused during the outage", WAIT, || async {
        (receiver.refused() >= 8).then_some(())
    })
    .await;
    assert_eq!(receiver.spans().len(), before_outage);
    // Each pump reports the outage (for the TraceProject's condition per target), with the
    // backend's answer and nothing of the request's headers.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let store = ExportStatusStore::open_existing(&js, &ProjectNames::new("team", "shop"))
        .await
        .unwrap()
        .expect("ingest created the export status bucket");
    let state = |reports: &[ExportReport], target: &str, signal: &str| {
        reports
            .iter()
            .find(|r| r.target == target && r.signal == signal)
            .cloned()
    };
    let reports = eventually("the outage reported", WAIT, || async {
        let reports = store.load().await.ok()?;
        ["vendor-http", "collector-grpc"]
            .iter()
            .all(|t| state(&reports, t, "spans").is_some_and(|r| r.state == DeliveryState::Failing))
            .then_some(reports)
    })
    .await;
    let failing = state(&reports, "vendor-http", "spans").unwrap();
    let error = failing.error.unwrap();
    assert!(error.contains("503"), "{error}");
    assert!(!error.contains(API_KEY), "{error}");
    let broken = state(&reports, "broken", "setup").expect("the broken target is reported");
    assert_eq!(broken.state, DeliveryState::Invalid);
    let reason = broken.error.unwrap();
    assert!(reason.contains("egress refused"), "{reason}");
    receiver.set_unavailable(false);
    println!(
        "outage: {} export requests refused; {} traces sent meanwhile",
        receiver.refused(),
        TRACES
    );

    // Every kept span reaches both targets (at least once).
    let expected_spans = (2 * TRACES * 4) as usize;
    let span_ids = |spans: &[Span]| -> BTreeMap<Vec<u8>, usize> {
        let mut counts = BTreeMap::new();
        for span in spans.iter().filter(|s| s.name != "gen_ai.evaluation") {
            *counts.entry(span.span_id.clone()).or_default() += 1;
        }
        counts
    };
    eventually("every span at both targets", WAIT, || async {
        let counts = span_ids(&receiver.spans());
        (counts.len() == expected_spans && counts.values().all(|c| *c >= 2)).then_some(())
    })
    .await;
    // Two verdicts per LLM span (the policy selects LLM spans), at each target.
    let expected_records = llm_spans.len() * 2 * 2;
    eventually("every evaluation at both targets", WAIT, || async {
        (receiver.log_records().len() >= expected_records).then_some(())
    })
    .await;
    eventually("the recovery reported", WAIT, || async {
        let reports = store.load().await.ok()?;
        ["vendor-http", "collector-grpc"]
            .iter()
            .flat_map(|t| [(t, "spans"), (t, "evaluations")])
            .all(|(t, s)| {
                state(&reports, t, s).is_some_and(|r| r.state == DeliveryState::Delivering)
            })
            .then_some(())
    })
    .await;

    let spans = receiver.spans();
    let exported: BTreeMap<Vec<u8>, &Span> = spans.iter().map(|s| (s.span_id.clone(), s)).collect();
    let records = receiver.log_records();
    let mut judged: BTreeMap<(Vec<u8>, String), BTreeSet<String>> = BTreeMap::new();
    for record in &records {
        assert_eq!(record.event_name, "gen_ai.evaluation.result");
        let attribute = |key: &str| {
            text(
                record
                    .attributes
                    .iter()
                    .find(|kv| kv.key == key)
                    .and_then(|kv| kv.value.as_ref()?.value.as_ref()),
            )
        };
        // Parented to the judged span: its trace and span ids.
        let span = exported
            .get(&record.span_id)
            .expect("an evaluation of an exported span");
        assert_eq!(record.trace_id, span.trace_id);
        assert!(llm_spans.contains(&record.span_id));
        let n = u64::from_be_bytes(span.trace_id[..8].try_into().unwrap()) - 1;
        assert_eq!(
            attribute("gen_ai.response.id"),
            Some(format!("chatcmpl-{n}"))
        );
        let name = attribute("gen_ai.evaluation.name").unwrap();
        let label = attribute("gen_ai.evaluation.score.label").unwrap();
        if name == "no-errors" {
            let expected = if n.is_multiple_of(3) { "fail" } else { "pass" };
            assert_eq!(label, expected, "trace {n}");
        }
        judged
            .entry((record.span_id.clone(), name))
            .or_default()
            .insert(label);
    }
    assert_eq!(judged.len(), llm_spans.len() * 2);

    // The HTTP target got the header from the Secret; the gRPC one none.
    let headers = receiver.headers();
    assert!(
        headers
            .iter()
            .any(|h| h.get("x-api-key").map(String::as_str) == Some(API_KEY))
    );
    assert!(headers.iter().any(|h| {
        h.get("content-type")
            .is_some_and(|c| c.starts_with("application/grpc"))
    }));

    // The refused requests are counted as retryable failures; what arrived as sent. The
    // exporter counts a send when the reply reaches it, just after the receiver recorded it:
    // awaited, not read once.
    let admin = started["admin"].as_str().unwrap().to_owned();
    let refused = receiver.refused() as f64;
    let sent_wanted = (expected_spans * 2) as f64;
    let admin = &admin;
    eventually(
        "the export metrics to agree with the receiver",
        WAIT,
        || async move {
            let metrics = reqwest::get(format!("http://{admin}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let sum = |prefix: &str, needle: &str| -> f64 {
                metrics
                    .lines()
                    .filter(|l| l.starts_with(prefix) && l.contains(needle))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum()
            };
            let failures = sum("umpire_export_send_failures_total{", r#"kind="retryable""#);
            let sent = sum("umpire_export_sent_total{", r#"signal="spans""#);
            (failures == refused && sent >= sent_wanted).then_some(())
        },
    )
    .await;
    ingest.terminate();
    evaluator.terminate();
}

/// Outcome-based export: a target that takes every trace in which a judge failed, whole, and
/// a quarter of the others (by trace-id hash) — decided after the evaluator judged them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcome_based_export_sends_every_failing_trace_whole_and_a_share_of_the_rest() {
    use umpire_core::hashing::{HashPurpose, trace_in_percentage};
    use umpire_core::ids::TraceId;

    let nats = NatsServer::start().unwrap();
    let receiver = OtlpReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_configs(dir.path(), &nats, &receiver);
    std::fs::write(
        dir.path().join("ingest.yaml"),
        format!(
            r#"
namespace: team
project: shop
nats: {{url: "{nats}"}}
listen: {{grpc: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0"}}
spec:
  sampling: {{decisionWait: 1s}}
  export:
    - name: failures
      otlp: {{endpoint: {http}}}
      outcome: {{healthyPercentage: 25, decisionWait: 3s}}
"#,
            nats = nats.url(),
            http = receiver.http_url(),
        ),
    )
    .unwrap();
    // Two ingest replicas: each trace is decided by the one that holds its summary.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut ingest = UmpireProcess::spawn(&["ingest", "--config", "ingest.yaml"], dir.path());
        let started = ingest.wait_for_event("ingest_starting", WAIT);
        ingest.wait_for_event("export_started", WAIT);
        replicas.push((
            ingest,
            started["http"].as_str().unwrap().to_owned(),
            started["admin"].as_str().unwrap().to_owned(),
        ));
    }
    let mut evaluator =
        UmpireProcess::spawn(&["evaluator", "--config", "evaluator.yaml"], dir.path());
    evaluator.wait_for_event("evaluator_starting", WAIT);

    const TRACES: u64 = 60;
    let mut llm_spans = send(&replicas[0].1, 0, TRACES / 2).await;
    llm_spans.extend(send(&replicas[1].1, TRACES / 2, TRACES / 2).await);
    // What the target must get, derived independently of the exporter: the traces whose
    // LLM call failed (every third), and the healthy ones the documented hash puts within
    // 25 % — the same on any replica.
    let trace_id = |n: u64| {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(n + 1).to_be_bytes());
        id[15] = 0xee;
        id
    };
    let failing: BTreeSet<[u8; 16]> = (0..TRACES)
        .filter(|n| n.is_multiple_of(3))
        .map(trace_id)
        .collect();
    let sampled: BTreeSet<[u8; 16]> = (0..TRACES)
        .filter(|n| !n.is_multiple_of(3))
        .map(trace_id)
        .filter(|id| trace_in_percentage(&TraceId(*id), HashPurpose::OutcomeExport, 25.0))
        .collect();
    assert!(
        !sampled.is_empty() && sampled.len() < 40,
        "{}",
        sampled.len()
    );
    let expected: BTreeSet<[u8; 16]> = failing.union(&sampled).copied().collect();

    // Every trace decided, once, by one of the two (each counts a decision once acked).
    let admins: Vec<String> = replicas.iter().map(|(_, _, admin)| admin.clone()).collect();
    let admins = &admins;
    let decided = eventually("all 60 traces decided", WAIT, || async move {
        let mut decided = 0.0;
        for admin in admins {
            let metrics = reqwest::get(format!("http://{admin}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            decided += metrics
                .lines()
                .filter(|l| l.starts_with("umpire_export_traces_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        (decided >= TRACES as f64).then_some(decided)
    })
    .await;
    assert_eq!(decided, TRACES as f64, "no trace decided twice");
    let spans = receiver.spans();
    let mut per_trace: BTreeMap<[u8; 16], Vec<Vec<u8>>> = BTreeMap::new();
    for span in &spans {
        per_trace
            .entry(span.trace_id.clone().try_into().unwrap())
            .or_default()
            .push(span.span_id.clone());
    }
    let exported: BTreeSet<[u8; 16]> = per_trace.keys().copied().collect();
    assert_eq!(
        exported, expected,
        "every failing trace and exactly the sampled healthy ones"
    );
    assert!(
        per_trace
            .values()
            .all(|ids| ids.len() == 4 && ids.iter().collect::<BTreeSet<_>>().len() == 4),
        "each exported trace is whole (root, two LLM calls, tool call) and sent once"
    );
    // Their evaluations travel with them: both verdicts of each exported LLM span, none of
    // a dropped trace.
    let records = receiver.log_records();
    let mut verdicts: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for record in &records {
        assert!(
            expected.contains(&<[u8; 16]>::try_from(record.trace_id.clone()).unwrap()),
            "an evaluation of a dropped trace was exported"
        );
        *verdicts.entry(record.span_id.clone()).or_default() += 1;
    }
    let exported_llm: Vec<&Vec<u8>> = llm_spans
        .iter()
        .filter(|id| spans.iter().any(|s| &s.span_id == *id))
        .collect();
    assert_eq!(exported_llm.len(), 2 * expected.len());
    for id in exported_llm {
        assert!(verdicts.get(id).copied().unwrap_or(0) >= 2, "{id:?}");
    }
    println!(
        "outcome export: {} of {TRACES} traces sent ({} failing, {} sampled healthy), {} spans, {} evaluation records",
        exported.len(),
        failing.len(),
        sampled.len(),
        spans.len(),
        records.len()
    );
    for (mut ingest, _, _) in replicas {
        ingest.terminate();
    }
    evaluator.terminate();
}
