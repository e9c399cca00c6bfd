//! OTLP spans → domain spans.

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use serde_json::Value;
use umpire_core::ids::{SpanId, TraceId};
use umpire_core::normalise::read_ai_view;
use umpire_core::span::{Attributes, OtelSpanKind, Scope, Span, SpanEvent, Status, StatusCode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSpan {
    #[error("trace_id must be 16 bytes and not all zero (got {0} bytes)")]
    TraceId(usize),
    #[error("span_id must be 8 bytes and not all zero (got {0} bytes)")]
    SpanId(usize),
    #[error("the span does not decode: {0}")]
    Undecodable(String),
}

/// The span's ids, validated as OTLP requires.
pub fn span_ids(span: &OtlpSpan) -> Result<(TraceId, SpanId), InvalidSpan> {
    let trace_id =
        TraceId::from_bytes(&span.trace_id).ok_or(InvalidSpan::TraceId(span.trace_id.len()))?;
    let span_id =
        SpanId::from_bytes(&span.span_id).ok_or(InvalidSpan::SpanId(span.span_id.len()))?;
    Ok((trace_id, span_id))
}

/// An OTLP value as JSON: strings, numbers, booleans, arrays and maps keep their shape;
/// bytes become lowercase hex. Takes the value so its strings move rather than copy: a
/// kept GenAI span's attributes are kilobytes of prompts and replies.
pub fn value_to_json(value: AnyValue) -> Value {
    match value.value {
        // String-table references are only used by the profiles signal, never in traces.
        None | Some(any_value::Value::StringValueStrindex(_)) => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(b),
        Some(any_value::Value::IntValue(i)) => Value::from(i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(d).map_or(Value::Null, Value::Number)
        }
        Some(any_value::Value::ArrayValue(array)) => {
            Value::Array(array.values.into_iter().map(value_to_json).collect())
        }
        Some(any_value::Value::KvlistValue(list)) => Value::Object(
            list.values
                .into_iter()
                .map(|kv| (kv.key, kv.value.map(value_to_json).unwrap_or(Value::Null)))
                .collect(),
        ),
        Some(any_value::Value::BytesValue(bytes)) => {
            Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect())
        }
    }
}

pub fn attributes(pairs: Vec<KeyValue>) -> Attributes {
    pairs
        .into_iter()
        .map(|kv| (kv.key, kv.value.map(value_to_json).unwrap_or(Value::Null)))
        .collect()
}

/// Normalises one OTLP span with its resource and scope (shared by the span's batch, so
/// borrowed and copied; the span's own fields are moved).
pub fn domain_span(
    span: OtlpSpan,
    resource: &[KeyValue],
    scope: Option<&InstrumentationScope>,
) -> Result<Span, InvalidSpan> {
    let (trace_id, span_id) = span_ids(&span)?;
    let mut attributes = attributes(span.attributes);
    // Ingest lists what it cut to fit a message (`attributes.<key>`, `name`, `attributes (N
    // dropped)`, …); that is metadata, not data.
    let truncated: Vec<String> = match attributes.remove(crate::batching::TRUNCATED_ATTRIBUTE) {
        Some(Value::Array(keys)) => keys
            .into_iter()
            .filter_map(|key| match key {
                Value::String(key) => Some(key),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let events: Vec<SpanEvent> = span
        .events
        .into_iter()
        .map(|event| SpanEvent {
            name: event.name,
            time_unix_nano: event.time_unix_nano,
            attributes: self::attributes(event.attributes),
        })
        .collect();
    let status = span
        .status
        .map(|s| Status {
            code: StatusCode::from_otlp(s.code),
            message: s.message,
        })
        .unwrap_or_default();
    let ai = read_ai_view(&attributes, &events, status.code, span.start_time_unix_nano);
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id: SpanId::from_bytes(&span.parent_span_id),
        name: span.name,
        kind: OtelSpanKind::from_otlp(span.kind),
        start_time_unix_nano: span.start_time_unix_nano,
        end_time_unix_nano: span.end_time_unix_nano,
        status,
        attributes,
        events,
        resource: self::attributes(resource.to_vec()),
        scope: scope
            .map(|s| Scope {
                name: s.name.clone(),
                version: s.version.clone(),
            })
            .unwrap_or_default(),
        ai,
        truncated,
    })
}

/// Every valid span of an export, normalised; invalid spans are counted, not returned.
pub fn domain_spans(request: &crate::ExportTraceServiceRequest) -> (Vec<Span>, usize) {
    let mut spans = Vec::new();
    let mut invalid = 0;
    for resource_spans in &request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                match domain_span(span.clone(), resource, scope_spans.scope.as_ref()) {
                    Ok(span) => spans.push(span),
                    Err(_) => invalid += 1,
                }
            }
        }
    }
    (spans, invalid)
}
