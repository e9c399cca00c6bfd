//! Time to first token, read from each instrumentation's way of recording it, through the
//! real converter — and used by the `latency` judge (`of: timeToFirstToken`) and by alert
//! rules (`metric: {timeToFirstToken: …}`).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use umpire_core::alert::rule::{Aggregation, AlertRule, Metric, NoData, Severity, Threshold};
use umpire_core::alert::window::Sample;
use umpire_core::judge::code::LatencyJudge;
use umpire_core::judge::{CodeJudge, JudgeInput, Outcome, SkipReason, TraceContext};
use umpire_core::score::SpanEvaluation;
use umpire_core::span::Span;
use umpire_otlp::ExportTraceServiceRequest;
use umpire_otlp::attributes::{double_kv, string_kv};
use umpire_otlp::convert::domain_spans;
use umpire_otlp::proto::{ResourceSpans, ScopeSpans, Span as OtlpSpan, span::Event};

const START: u64 = 1_800_000_000_000_000_000;

fn span(id: u8, attributes: Vec<KeyValue>, events: &[(&str, u64)]) -> OtlpSpan {
    OtlpSpan {
        trace_id: vec![7; 16],
        span_id: vec![id; 8],
        name: "chat gpt-4o".into(),
        start_time_unix_nano: START,
        end_time_unix_nano: START + 2_000_000_000,
        attributes,
        events: events
            .iter()
            .map(|(name, after_ms)| Event {
                name: (*name).into(),
                time_unix_nano: START + after_ms * 1_000_000,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn convert(spans: Vec<OtlpSpan>) -> Vec<Span> {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    domain_spans(&request).0
}

#[test]
fn each_instrumentation_and_the_judge_and_alert_metric_on_it() {
    let chat = || string_kv("gen_ai.operation.name", "chat");
    let spans = convert(vec![
        // OpenTelemetry GenAI: an attribute, seconds.
        span(
            1,
            vec![
                chat(),
                double_kv("gen_ai.response.time_to_first_chunk", 0.35),
            ],
            &[],
        ),
        // OpenInference: an event when the first chunk arrived.
        span(
            2,
            vec![string_kv("openinference.span.kind", "LLM")],
            &[("First Token Stream Event", 820)],
        ),
        // OpenLLMetry: an event per chunk.
        span(
            3,
            vec![chat()],
            &[
                ("llm.content.completion.chunk", 140),
                ("llm.content.completion.chunk", 190),
            ],
        ),
        // Not streamed: nothing to read.
        span(4, vec![chat()], &[]),
    ]);
    let ttft: Vec<Option<f64>> = spans.iter().map(|s| s.ai.time_to_first_token_ms).collect();
    assert_eq!(ttft, [Some(350.0), Some(820.0), Some(140.0), None]);

    let judge = LatencyJudge {
        max_ms: 500.0,
        to_first_token: true,
    };
    let outcomes: Vec<Outcome> = spans
        .iter()
        .map(|span| {
            judge.evaluate(&JudgeInput {
                span,
                trace: &TraceContext::from_spans([span]),
            })
        })
        .collect();
    let passed: Vec<Option<bool>> = outcomes
        .iter()
        .map(|o| o.verdict().map(|v| v.passed))
        .collect();
    assert_eq!(passed, [Some(true), Some(false), Some(true), None]);
    assert_eq!(outcomes[1].verdict().unwrap().measurement, Some(820.0));
    assert_eq!(
        outcomes[3],
        Outcome::skipped(SkipReason::NotApplicable),
        "a call that did not stream has no time to first token"
    );

    let rule = AlertRule {
        name: "slow-first-token".into(),
        metric: Metric::TimeToFirstToken(Aggregation::Quantile(0.95)),
        window: Duration::from_secs(300),
        min_samples: 1,
        group_by: Vec::new(),
        max_groups: 100,
        threshold: Threshold::Above(500.0),
        for_: Duration::ZERO,
        clear_for: Duration::from_secs(60),
        no_data: NoData::KeepState,
        severity: Severity::Warning,
        route: "team".into(),
        repeat_interval: None,
        group_expiry: None,
    };
    let samples: Vec<Option<Sample>> = spans
        .iter()
        .map(|span| {
            let evaluation = SpanEvaluation {
                time_to_first_token_ms: span.ai.time_to_first_token_ms,
                ..serde_json::from_value(serde_json::json!({
                    "id": "p/x", "policy": "p", "traceId": span.trace_id, "spanId": span.span_id,
                    "observedAtUnixNano": 1, "scoredAtUnixNano": 1, "latencyMs": 2000.0, "scores": []
                }))
                .unwrap()
            };
            rule.sample(&evaluation)
        })
        .collect();
    assert_eq!(
        samples,
        [
            Some(Sample::Measurement(350.0)),
            Some(Sample::Measurement(820.0)),
            Some(Sample::Measurement(140.0)),
            None
        ]
    );
    assert_eq!(rule.metric_name(), "time to first token p95 (ms)");
}
