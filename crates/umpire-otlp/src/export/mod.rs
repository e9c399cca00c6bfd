//! Umpire's results as OTLP, for the trace backends teams already use: kept spans back as
//! OTLP spans, and each judge's verdict as the GenAI event `gen_ai.evaluation.result` — an
//! OTLP log record carrying the evaluated span's trace and span ids.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan, Status};
use serde_json::Value;
use umpire_core::judge::Outcome;
use umpire_core::score::SpanEvaluation;
use umpire_core::span::{Attributes, OtelSpanKind, Span, StatusCode};

use crate::ExportTraceServiceRequest;

/// The GenAI semantic conventions' event for one evaluation result.
pub const EVALUATION_EVENT: &str = "gen_ai.evaluation.result";
/// Scope of the evaluation records Umpire emits.
pub const SCOPE_NAME: &str = "umpire";

/// A JSON attribute value back as OTLP: integers stay integers, fractions doubles, objects
/// key-value lists. (Ingest stored bytes as hex strings; they go out as those strings.)
pub fn any_value(value: &Value) -> AnyValue {
    let value = match value {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(any_value::Value::IntValue(i)),
            None => n.as_f64().map(any_value::Value::DoubleValue),
        },
        Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
        Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(any_value).collect(),
        })),
        Value::Object(map) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: map.iter().map(|(k, v)| key_value(k, v)).collect(),
        })),
    };
    AnyValue { value }
}

fn key_value(key: &str, value: &Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(any_value(value)),
        ..Default::default()
    }
}

pub fn key_values(attributes: &Attributes) -> Vec<KeyValue> {
    attributes.iter().map(|(k, v)| key_value(k, v)).collect()
}

fn kind(kind: OtelSpanKind) -> i32 {
    match kind {
        OtelSpanKind::Unspecified => 0,
        OtelSpanKind::Internal => 1,
        OtelSpanKind::Server => 2,
        OtelSpanKind::Client => 3,
        OtelSpanKind::Producer => 4,
        OtelSpanKind::Consumer => 5,
    }
}

fn status_code(code: StatusCode) -> i32 {
    match code {
        StatusCode::Unset => 0,
        StatusCode::Ok => 1,
        StatusCode::Error => 2,
    }
}

/// The span as OTLP, with the attributes and events it was kept with (after redaction).
pub fn otlp_span(span: &Span) -> OtlpSpan {
    OtlpSpan {
        trace_id: span.trace_id.0.to_vec(),
        span_id: span.span_id.0.to_vec(),
        parent_span_id: span
            .parent_span_id
            .map(|p| p.0.to_vec())
            .unwrap_or_default(),
        // W3C "sampled": the span was kept.
        flags: 0x101,
        name: span.name.clone(),
        kind: kind(span.kind),
        start_time_unix_nano: span.start_time_unix_nano,
        end_time_unix_nano: span.end_time_unix_nano,
        attributes: key_values(&span.attributes),
        events: span
            .events
            .iter()
            .map(|e| Event {
                time_unix_nano: e.time_unix_nano,
                name: e.name.clone(),
                attributes: key_values(&e.attributes),
                dropped_attributes_count: 0,
            })
            .collect(),
        status: Some(Status {
            message: span.status.message.clone(),
            code: status_code(span.status.code),
        }),
        ..Default::default()
    }
}

/// One export request for `spans`, grouped by resource and instrumentation scope as an SDK
/// would send them.
pub fn trace_request<'a>(spans: impl IntoIterator<Item = &'a Span>) -> ExportTraceServiceRequest {
    // Resource and scope as JSON text: a cheap, exact grouping key.
    let mut groups: BTreeMap<(String, String, String), (&'a Span, Vec<OtlpSpan>)> = BTreeMap::new();
    for span in spans {
        let key = (
            serde_json::to_string(&span.resource).unwrap_or_default(),
            span.scope.name.clone(),
            span.scope.version.clone(),
        );
        groups
            .entry(key)
            .or_insert_with(|| (span, Vec::new()))
            .1
            .push(otlp_span(span));
    }
    let mut resource_spans: Vec<ResourceSpans> = Vec::new();
    let mut last_resource: Option<String> = None;
    for ((resource, _, _), (first, spans)) in groups {
        let scope_spans = ScopeSpans {
            scope: Some(InstrumentationScope {
                name: first.scope.name.clone(),
                version: first.scope.version.clone(),
                ..Default::default()
            }),
            spans,
            schema_url: String::new(),
        };
        match resource_spans.last_mut() {
            Some(last) if last_resource.as_deref() == Some(resource.as_str()) => {
                last.scope_spans.push(scope_spans);
            }
            _ => {
                resource_spans.push(ResourceSpans {
                    resource: Some(Resource {
                        attributes: key_values(&first.resource),
                        ..Default::default()
                    }),
                    scope_spans: vec![scope_spans],
                    schema_url: String::new(),
                });
                last_resource = Some(resource);
            }
        }
    }
    ExportTraceServiceRequest { resource_spans }
}

fn string(key: &str, value: &str) -> KeyValue {
    key_value(key, &Value::String(value.to_owned()))
}

/// The `gen_ai.evaluation.result` attributes of one judge's outcome; `None` for a judge that
/// skipped the span (nothing was evaluated).
pub fn evaluation_attributes(
    judge: &str,
    outcome: &Outcome,
    response_id: Option<&str>,
) -> Option<Vec<KeyValue>> {
    let mut attributes = vec![string("gen_ai.evaluation.name", judge)];
    match outcome {
        Outcome::Scored(verdict) => {
            attributes.push(KeyValue {
                key: "gen_ai.evaluation.score.value".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::DoubleValue(verdict.value)),
                }),
                ..Default::default()
            });
            // The judge's own label (an LLM judge's choice) when it has one; else pass/fail.
            let label =
                verdict
                    .label
                    .as_deref()
                    .unwrap_or(if verdict.passed { "pass" } else { "fail" });
            attributes.push(string("gen_ai.evaluation.score.label", label));
            if let Some(explanation) = &verdict.explanation {
                attributes.push(string("gen_ai.evaluation.explanation", explanation));
            }
            // Not in the GenAI conventions: a judge's several measurements (retrieval
            // rating's precisionAtK, mrr, ndcgAtK, …) under Umpire's own namespace.
            for (name, value) in verdict.measurements.iter().flat_map(|m| m.iter()) {
                attributes.push(KeyValue {
                    key: format!("umpire.evaluation.measurement.{name}"),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::DoubleValue(*value)),
                    }),
                    ..Default::default()
                });
            }
        }
        Outcome::Failed(failure) => {
            attributes.push(string("error.type", failure.kind.as_str()));
            attributes.push(string("gen_ai.evaluation.explanation", &failure.message));
        }
        Outcome::Skipped { .. } => return None,
    }
    if let Some(id) = response_id {
        attributes.push(string("gen_ai.response.id", id));
    }
    Some(attributes)
}

/// Severity of an evaluation record: INFO for a verdict, WARN when the judge failed.
fn severity(outcome: &Outcome) -> (i32, &'static str) {
    match outcome {
        Outcome::Failed(_) => (13, "WARN"),
        _ => (9, "INFO"),
    }
}

/// One `gen_ai.evaluation.result` log record per judge that evaluated the span, parented to
/// it by trace and span id.
pub fn evaluation_records(evaluation: &SpanEvaluation) -> Vec<LogRecord> {
    evaluation
        .scores
        .iter()
        .filter_map(|score| {
            let attributes = evaluation_attributes(
                &score.judge,
                &score.outcome,
                evaluation.response_id.as_deref(),
            )?;
            let (severity_number, severity_text) = severity(&score.outcome);
            Some(LogRecord {
                time_unix_nano: evaluation.scored_at_unix_nano,
                observed_time_unix_nano: evaluation.scored_at_unix_nano,
                severity_number,
                severity_text: severity_text.into(),
                attributes,
                flags: 0x01,
                trace_id: evaluation.trace_id.0.to_vec(),
                span_id: evaluation.span_id.0.to_vec(),
                event_name: EVALUATION_EVENT.into(),
                ..Default::default()
            })
        })
        .collect()
}

/// The evaluation as a zero-duration child span of the evaluated span, named
/// `gen_ai.evaluation`, with one `gen_ai.evaluation.result` span event per verdict — for
/// backends that read traces only. `None` when no judge evaluated the span.
pub fn evaluation_span(evaluation: &SpanEvaluation) -> Option<OtlpSpan> {
    let events: Vec<Event> = evaluation
        .scores
        .iter()
        .filter_map(|score| {
            Some(Event {
                time_unix_nano: evaluation.scored_at_unix_nano,
                name: EVALUATION_EVENT.into(),
                attributes: evaluation_attributes(
                    &score.judge,
                    &score.outcome,
                    evaluation.response_id.as_deref(),
                )?,
                dropped_attributes_count: 0,
            })
        })
        .collect();
    if events.is_empty() {
        return None;
    }
    let failed = evaluation.scores.iter().any(|s| match &s.outcome {
        Outcome::Scored(verdict) => !verdict.passed,
        Outcome::Failed(_) => true,
        Outcome::Skipped { .. } => false,
    });
    Some(OtlpSpan {
        trace_id: evaluation.trace_id.0.to_vec(),
        span_id: umpire_core::hashing::evaluation_span_id(&evaluation.id)
            .0
            .to_vec(),
        parent_span_id: evaluation.span_id.0.to_vec(),
        flags: 0x101,
        name: "gen_ai.evaluation".into(),
        kind: kind(OtelSpanKind::Internal),
        start_time_unix_nano: evaluation.scored_at_unix_nano,
        end_time_unix_nano: evaluation.scored_at_unix_nano,
        // A failed verdict is not an error of the span: the status stays unset, the outcome
        // is in each event's label, and `umpire.evaluation.failed` makes it searchable.
        attributes: vec![
            string("umpire.policy", &evaluation.policy),
            key_value("umpire.evaluation.failed", &Value::Bool(failed)),
        ],
        events,
        status: None,
        ..Default::default()
    })
}

/// One traces export of `evaluations` as [`evaluation_span`]s, under the same resource and
/// scope as [`logs_request`].
pub fn evaluation_spans_request<'a>(
    project_resource: &[(&str, &str)],
    evaluations: impl IntoIterator<Item = &'a SpanEvaluation>,
) -> ExportTraceServiceRequest {
    let spans: Vec<OtlpSpan> = evaluations
        .into_iter()
        .filter_map(evaluation_span)
        .collect();
    if spans.is_empty() {
        return ExportTraceServiceRequest::default();
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: project_resource.iter().map(|(k, v)| string(k, v)).collect(),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// One logs export of `evaluations`, under a resource naming the project and an `umpire`
/// scope carrying the policy.
pub fn logs_request<'a>(
    project_resource: &[(&str, &str)],
    evaluations: impl IntoIterator<Item = &'a SpanEvaluation>,
) -> ExportLogsServiceRequest {
    let mut by_policy: BTreeMap<&str, Vec<LogRecord>> = BTreeMap::new();
    for evaluation in evaluations {
        by_policy
            .entry(evaluation.policy.as_str())
            .or_default()
            .extend(evaluation_records(evaluation));
    }
    let scope_logs = by_policy
        .into_iter()
        .filter(|(_, records)| !records.is_empty())
        .map(|(policy, log_records)| ScopeLogs {
            scope: Some(InstrumentationScope {
                name: SCOPE_NAME.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                attributes: vec![string("umpire.policy", policy)],
                ..Default::default()
            }),
            log_records,
            schema_url: String::new(),
        })
        .collect::<Vec<_>>();
    if scope_logs.is_empty() {
        return ExportLogsServiceRequest::default();
    }
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: project_resource.iter().map(|(k, v)| string(k, v)).collect(),
                ..Default::default()
            }),
            scope_logs,
            schema_url: String::new(),
        }],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
