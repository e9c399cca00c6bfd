//! OTLP spans as tail sampling buffers them: the span plus shared resource and scope.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use umpire_core::sampling::{AttrRef, SampledSpan};
use umpire_core::span::{Span, StatusCode};

use crate::convert::{InvalidSpan, domain_span};

/// The resource and scope a batch of spans shares.
#[derive(Debug, Default)]
pub struct SpanOrigin {
    pub resource: Resource,
    pub scope: Option<InstrumentationScope>,
}

/// A span awaiting a sampling decision.
#[derive(Debug, Clone)]
pub struct BufferedSpan {
    pub span: OtlpSpan,
    pub origin: Arc<SpanOrigin>,
}

impl BufferedSpan {
    /// The span normalised, ready to publish.
    pub fn to_domain(&self) -> Result<Span, InvalidSpan> {
        domain_span(
            &self.span,
            &self.origin.resource.attributes,
            self.origin.scope.as_ref(),
        )
    }

    /// Approximate memory held, for buffer accounting.
    /// The span's decoded form in memory, not its encoding: prost's structs are several times
    /// larger than the bytes they came from (a 40-byte attribute is a 24-byte key string, a
    /// value enum and their heap blocks), and a byte budget that counted the encoding let
    /// the buffer grow to twice the pod's memory limit.
    pub fn approximate_bytes(&self) -> usize {
        span_heap_bytes(&self.span)
    }
}

/// Bytes a decoded span occupies: its struct and every heap block it owns, counted by
/// capacity (allocator rounding is not counted).
pub fn span_heap_bytes(span: &OtlpSpan) -> usize {
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    let events: usize = span
        .events
        .iter()
        .map(|e| e.name.capacity() + attributes_heap_bytes(&e.attributes))
        .sum();
    let links: usize = span
        .links
        .iter()
        .map(|l| {
            l.trace_id.capacity()
                + l.span_id.capacity()
                + l.trace_state.capacity()
                + attributes_heap_bytes(&l.attributes)
        })
        .sum();
    std::mem::size_of::<OtlpSpan>()
        + span.trace_id.capacity()
        + span.span_id.capacity()
        + span.parent_span_id.capacity()
        + span.trace_state.capacity()
        + span.name.capacity()
        + span.status.as_ref().map_or(0, |s| s.message.capacity())
        + attributes_heap_bytes(&span.attributes)
        + span.events.capacity() * std::mem::size_of::<Event>()
        + events
        + span.links.capacity() * std::mem::size_of::<Link>()
        + links
}

fn attributes_heap_bytes(attributes: &Vec<KeyValue>) -> usize {
    attributes.capacity() * std::mem::size_of::<KeyValue>()
        + attributes
            .iter()
            .map(|kv| kv.key.capacity() + kv.value.as_ref().map_or(0, any_value_heap_bytes))
            .sum::<usize>()
}

fn any_value_heap_bytes(value: &opentelemetry_proto::tonic::common::v1::AnyValue) -> usize {
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.capacity(),
        Some(any_value::Value::BytesValue(b)) => b.capacity(),
        Some(any_value::Value::ArrayValue(array)) => {
            array.values.capacity() * std::mem::size_of::<AnyValue>()
                + array.values.iter().map(any_value_heap_bytes).sum::<usize>()
        }
        Some(any_value::Value::KvlistValue(list)) => attributes_heap_bytes(&list.values),
        _ => 0,
    }
}

fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<AttrRef<'a>> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    Some(match value.value.as_ref()? {
        any_value::Value::StringValue(s) => AttrRef::Str(s),
        any_value::Value::IntValue(i) => AttrRef::Int(*i),
        any_value::Value::DoubleValue(d) => AttrRef::Double(*d),
        any_value::Value::BoolValue(b) => AttrRef::Bool(*b),
        _ => AttrRef::Other,
    })
}

impl SampledSpan for BufferedSpan {
    fn status(&self) -> StatusCode {
        StatusCode::from_otlp(self.span.status.as_ref().map_or(0, |s| s.code))
    }

    fn start_unix_nano(&self) -> u64 {
        self.span.start_time_unix_nano
    }

    fn end_unix_nano(&self) -> u64 {
        self.span.end_time_unix_nano
    }

    fn attribute(&self, key: &str) -> Option<AttrRef<'_>> {
        find(&self.span.attributes, key).or_else(|| find(&self.origin.resource.attributes, key))
    }
}
