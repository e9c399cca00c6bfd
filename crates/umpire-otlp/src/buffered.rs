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
    pub fn approximate_bytes(&self) -> usize {
        prost::Message::encoded_len(&self.span) + 64
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
