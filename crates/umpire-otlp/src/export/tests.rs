use prost::Message;
use umpire_core::ids::{SpanId, TraceId};
use umpire_core::judge::{JudgeErrorKind, Outcome};
use umpire_core::score::{JudgeScore, SpanEvaluation};

use super::*;
use crate::convert::domain_spans;
use crate::decode::{Encoding, decode_request};

fn fixture(name: &str) -> ExportTraceServiceRequest {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/otlp")
        .join(name);
    let body = std::fs::read(&path).unwrap();
    decode_request(&body, Encoding::Protobuf).unwrap()
}

#[test]
fn recorded_spans_survive_the_round_trip_through_the_domain() {
    for name in [
        "openinference-00.pb",
        "otel-genai-00.pb",
        "openllmetry-00.pb",
    ] {
        let (spans, invalid) = domain_spans(&fixture(name));
        assert_eq!(invalid, 0);
        assert!(!spans.is_empty(), "{name}");
        let exported = trace_request(&spans);
        // Through the wire and back: the same domain spans (attributes, events, status,
        // resource, scope, ids, times), so nothing a backend shows is lost or altered.
        let bytes = exported.encode_to_vec();
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let (mut again, invalid) = domain_spans(&decoded);
        assert_eq!(invalid, 0);
        let mut spans = spans;
        let key = |s: &Span| (s.trace_id.0, s.span_id.0);
        spans.sort_by_key(key);
        again.sort_by_key(key);
        assert_eq!(again, spans, "{name}");
    }
}

#[test]
fn spans_are_grouped_by_resource_and_scope() {
    let (spans, _) = domain_spans(&fixture("openinference-00.pb"));
    let resources: std::collections::BTreeSet<String> = spans
        .iter()
        .map(|s| serde_json::to_string(&s.resource).unwrap())
        .collect();
    let exported = trace_request(&spans);
    assert_eq!(exported.resource_spans.len(), resources.len());
    let total: usize = exported
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(total, spans.len());
}

fn evaluation() -> SpanEvaluation {
    SpanEvaluation {
        id: "quality/t-s".into(),
        policy: "quality".into(),
        trace_id: TraceId([7; 16]),
        span_id: SpanId([3; 8]),
        observed_at_unix_nano: 10,
        scored_at_unix_nano: 20,
        latency_ms: 1.0,
        time_to_first_token_ms: None,
        groups: Default::default(),
        model: None,
        response_id: Some("chatcmpl-42".into()),
        embeddings: Default::default(),
        scores: vec![
            JudgeScore {
                judge: "valid-json".into(),
                outcome: Outcome::fail(0.0, "expected value at line 1 column 1"),
                judge_latency_ms: 0.1,
            },
            JudgeScore {
                judge: "relevance".into(),
                outcome: Outcome::failed(JudgeErrorKind::Timeout, "no answer within 30s"),
                judge_latency_ms: 30_000.0,
            },
            JudgeScore {
                judge: "tools".into(),
                outcome: Outcome::Skipped {
                    reason: umpire_core::judge::SkipReason::NotApplicable,
                },
                judge_latency_ms: 0.0,
            },
        ],
    }
}

fn attribute<'a>(record: &'a LogRecord, key: &str) -> Option<&'a any_value::Value> {
    record
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text(value: Option<&any_value::Value>) -> Option<&str> {
    match value {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

#[test]
fn each_verdict_is_a_gen_ai_evaluation_result_parented_to_its_span() {
    let records = evaluation_records(&evaluation());
    // The skipped judge evaluated nothing: no event.
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(record.event_name, "gen_ai.evaluation.result");
        assert_eq!(record.trace_id, vec![7; 16]);
        assert_eq!(record.span_id, vec![3; 8]);
        assert_eq!(record.time_unix_nano, 20);
        assert_eq!(
            text(attribute(record, "gen_ai.response.id")),
            Some("chatcmpl-42")
        );
    }
    let failed = &records[0];
    assert_eq!(
        text(attribute(failed, "gen_ai.evaluation.name")),
        Some("valid-json")
    );
    assert_eq!(
        attribute(failed, "gen_ai.evaluation.score.value"),
        Some(&any_value::Value::DoubleValue(0.0))
    );
    assert_eq!(
        text(attribute(failed, "gen_ai.evaluation.score.label")),
        Some("fail")
    );
    assert_eq!(
        text(attribute(failed, "gen_ai.evaluation.explanation")),
        Some("expected value at line 1 column 1")
    );
    assert_eq!(attribute(failed, "error.type"), None);
    let errored = &records[1];
    assert_eq!(text(attribute(errored, "error.type")), Some("timeout"));
    assert_eq!(attribute(errored, "gen_ai.evaluation.score.value"), None);
    assert_eq!(errored.severity_number, 13);
}

#[test]
fn a_logs_request_names_the_project_and_policy() {
    let request = logs_request(&[("service.name", "umpire")], [&evaluation()]);
    assert_eq!(request.resource_logs.len(), 1);
    let scope = &request.resource_logs[0].scope_logs[0];
    assert_eq!(scope.scope.as_ref().unwrap().name, "umpire");
    assert_eq!(scope.log_records.len(), 2);
    assert!(
        logs_request(&[], std::iter::empty())
            .resource_logs
            .is_empty()
    );
}

#[test]
fn for_trace_only_backends_an_evaluation_is_a_child_span_with_one_event_per_verdict() {
    let evaluation = evaluation();
    let span = evaluation_span(&evaluation).unwrap();
    assert_eq!(span.trace_id, vec![7; 16]);
    assert_eq!(span.parent_span_id, vec![3; 8]);
    assert_eq!(span.start_time_unix_nano, span.end_time_unix_nano);
    assert_eq!(span.events.len(), 2);
    assert!(
        span.events
            .iter()
            .all(|e| e.name == "gen_ai.evaluation.result")
    );
    // Deterministic: a re-export is the same span.
    assert_eq!(evaluation_span(&evaluation).unwrap().span_id, span.span_id);
    assert_ne!(span.span_id, vec![0; 8]);
    let failed = span
        .attributes
        .iter()
        .find(|kv| kv.key == "umpire.evaluation.failed")
        .and_then(|kv| kv.value.as_ref()?.value.as_ref());
    assert_eq!(failed, Some(&any_value::Value::BoolValue(true)));
    let request = evaluation_spans_request(&[("service.name", "umpire")], [&evaluation]);
    assert_eq!(request.resource_spans[0].scope_spans[0].spans.len(), 1);
}

#[test]
fn a_judges_several_measurements_become_umpire_attributes() {
    let mut outcome = Outcome::pass(0.6, "3 of 5 documents relevant");
    if let Outcome::Scored(verdict) = &mut outcome {
        verdict.measurements = Some(Box::new(
            [("precisionAtK".to_owned(), 0.6), ("mrr".to_owned(), 1.0)].into(),
        ));
    }
    let attributes = evaluation_attributes("retrieval", &outcome, None).unwrap();
    let doubles: Vec<(&str, f64)> = attributes
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::DoubleValue(v) => Some((kv.key.as_str(), *v)),
            _ => None,
        })
        .collect();
    assert_eq!(
        doubles,
        [
            ("gen_ai.evaluation.score.value", 0.6),
            ("umpire.evaluation.measurement.mrr", 1.0),
            ("umpire.evaluation.measurement.precisionAtK", 0.6),
        ]
    );
}
