//! OTLP spans as tail sampling buffers them: compact, as their protobuf encoding.
//!
//! Most spans are dropped by sampling (a typical policy keeps 10 %), so decoding each one
//! into prost's structs — a heap block per string, per attribute, per event — was a tenth
//! of ingest's CPU and most of its buffer's memory, for spans nobody reads again. A buffered
//! span is instead its encoding plus the few fields every sampling decision needs (ids,
//! parent, times, status), read by prost from message types that declare only those fields
//! (prost skips the rest without allocating). The full span is decoded only when it is
//! kept (to normalise and publish it) or when a sampling condition asks for an attribute.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use prost::Message;
use umpire_core::ids::{SpanId, TraceId};
use umpire_core::sampling::{AttrRef, SampledSpan};
use umpire_core::span::{Span, StatusCode};

use crate::convert::{InvalidSpan, domain_span};

/// The resource and scope a batch of spans shares.
#[derive(Debug, Default)]
pub struct SpanOrigin {
    pub resource: Resource,
    pub scope: Option<InstrumentationScope>,
}

/// An export request with its spans left encoded (`ExportTraceServiceRequest`'s layout;
/// schema URLs are not kept).
#[derive(Clone, PartialEq, Message)]
struct EncodedRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<EncodedResourceSpans>,
}

#[derive(Clone, PartialEq, Message)]
struct EncodedResourceSpans {
    #[prost(message, optional, tag = "1")]
    resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<EncodedScopeSpans>,
}

#[derive(Clone, PartialEq, Message)]
struct EncodedScopeSpans {
    #[prost(message, optional, tag = "1")]
    scope: Option<InstrumentationScope>,
    /// Each span's encoding (a `Span` message is length-delimited like `bytes`).
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<Bytes>,
}

/// The fields of an OTLP `Span` sampling reads (same tags); ids and name stay slices of the
/// encoding.
#[derive(Clone, PartialEq, Message)]
struct SpanHeader {
    #[prost(bytes = "bytes", tag = "1")]
    trace_id: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    span_id: Bytes,
    #[prost(bytes = "bytes", tag = "4")]
    parent_span_id: Bytes,
    #[prost(bytes = "bytes", tag = "5")]
    name: Bytes,
    #[prost(fixed64, tag = "7")]
    start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    end_time_unix_nano: u64,
    #[prost(message, optional, tag = "15")]
    status: Option<StatusHeader>,
}

#[derive(Clone, PartialEq, Message)]
struct StatusHeader {
    #[prost(int32, tag = "3")]
    code: i32,
}

/// A span awaiting a sampling decision.
#[derive(Debug, Clone)]
pub struct BufferedSpan {
    /// The span's encoding, copied out of its request so each span holds exactly its own
    /// bytes (a slice would keep the whole request alive for one straggler).
    encoded: Bytes,
    header: SpanHeader,
    pub origin: Arc<SpanOrigin>,
    /// This span's share of its origin's size: the resource and scope are decoded once per
    /// scope and shared, and a request of many scopes with one span each must not hold
    /// memory the buffer does not count.
    origin_share: usize,
    /// The decoded span, when a sampling condition needed its attributes.
    decoded: OnceLock<Option<Box<OtlpSpan>>>,
}

/// The spans of one encoded export request; a span whose own fields do not decode is an
/// error in its place.
pub type EncodedBatch = Vec<Result<BufferedSpan, prost::DecodeError>>;

/// Splits an encoded `ExportTraceServiceRequest` into buffered spans. Fails only when the
/// request's structure is not a trace export.
pub fn decode_request(encoded: Bytes) -> Result<EncodedBatch, prost::DecodeError> {
    let request = EncodedRequest::decode(encoded)?;
    let mut batch = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            let origin = Arc::new(SpanOrigin {
                resource: resource.clone(),
                scope: scope_spans.scope,
            });
            let origin_bytes = std::mem::size_of::<SpanOrigin>()
                + origin.resource.encoded_len()
                + origin.scope.as_ref().map_or(0, Message::encoded_len);
            let share = origin_bytes.div_ceil(scope_spans.spans.len().max(1));
            batch.extend(scope_spans.spans.iter().map(|span| {
                BufferedSpan::from_encoding(Bytes::copy_from_slice(span), &origin, share)
            }));
        }
    }
    Ok(batch)
}

impl BufferedSpan {
    fn from_encoding(
        encoded: Bytes,
        origin: &Arc<SpanOrigin>,
        origin_share: usize,
    ) -> Result<Self, prost::DecodeError> {
        let header = SpanHeader::decode(encoded.clone())?;
        Ok(Self {
            encoded,
            header,
            origin: origin.clone(),
            origin_share,
            decoded: OnceLock::new(),
        })
    }

    /// Buffers a decoded span (tests, and callers that hold one already).
    pub fn new(span: &OtlpSpan, origin: Arc<SpanOrigin>) -> Self {
        let encoded = Bytes::from(span.encode_to_vec());
        match Self::from_encoding(encoded, &origin, 0) {
            Ok(buffered) => buffered,
            // A span prost just encoded decodes.
            Err(_) => Self {
                encoded: Bytes::new(),
                header: SpanHeader::default(),
                origin,
                origin_share: 0,
                decoded: OnceLock::new(),
            },
        }
    }

    /// The span's ids, validated as OTLP requires.
    pub fn ids(&self) -> Result<(TraceId, SpanId), InvalidSpan> {
        let (trace, span) = (&self.header.trace_id, &self.header.span_id);
        let trace_id = TraceId::from_bytes(trace).ok_or(InvalidSpan::TraceId(trace.len()))?;
        let span_id = SpanId::from_bytes(span).ok_or(InvalidSpan::SpanId(span.len()))?;
        Ok((trace_id, span_id))
    }

    pub fn trace_id_bytes(&self) -> &[u8] {
        &self.header.trace_id
    }

    pub fn span_id_bytes(&self) -> &[u8] {
        &self.header.span_id
    }

    /// The span's name, for reports (lossy UTF-8).
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.header.name).into_owned()
    }

    /// A root span: no parent (absent or all zero).
    pub fn is_root(&self) -> bool {
        self.header.parent_span_id.iter().all(|b| *b == 0)
    }

    /// The whole span.
    pub fn decode(&self) -> Result<OtlpSpan, InvalidSpan> {
        OtlpSpan::decode(self.encoded.clone()).map_err(|e| InvalidSpan::Undecodable(e.to_string()))
    }

    /// The span normalised, ready to publish.
    pub fn to_domain(&self) -> Result<Span, InvalidSpan> {
        domain_span(
            self.decode()?,
            &self.origin.resource.attributes,
            self.origin.scope.as_ref(),
        )
    }

    /// Memory held, for buffer accounting: this struct, the encoding and the span's share
    /// of its origin. (A span decoded for an attribute condition holds more until its trace
    /// is decided, which happens right after.)
    pub fn approximate_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.encoded.len() + self.origin_share
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
        StatusCode::from_otlp(self.header.status.as_ref().map_or(0, |s| s.code))
    }

    fn start_unix_nano(&self) -> u64 {
        self.header.start_time_unix_nano
    }

    fn end_unix_nano(&self) -> u64 {
        self.header.end_time_unix_nano
    }

    /// Decodes the span the first time a condition asks (only attribute conditions do).
    fn attribute(&self, key: &str) -> Option<AttrRef<'_>> {
        let span = self
            .decoded
            .get_or_init(|| self.decode().ok().map(Box::new));
        span.as_deref()
            .and_then(|span| find(&span.attributes, key))
            .or_else(|| find(&self.origin.resource.attributes, key))
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    use super::*;
    use crate::attributes::string_kv as attribute;

    #[test]
    fn a_request_splits_into_spans_that_read_like_the_decoded_ones() {
        let child = OtlpSpan {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![3; 8],
            name: "chat gpt-4o".into(),
            start_time_unix_nano: 10,
            end_time_unix_nano: 30,
            attributes: vec![attribute("gen_ai.request.model", "gpt-4o")],
            status: Some(Status {
                message: "boom".into(),
                code: 2,
            }),
            ..Default::default()
        };
        let root = OtlpSpan {
            trace_id: vec![1; 16],
            span_id: vec![3; 8],
            name: "invoke_agent".into(),
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![attribute("service.name", "bot")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "agents".into(),
                        ..Default::default()
                    }),
                    spans: vec![child.clone(), root],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let batch = decode_request(Bytes::from(request.encode_to_vec())).unwrap();
        let spans: Vec<&BufferedSpan> = batch.iter().map(|s| s.as_ref().unwrap()).collect();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].origin.scope.as_ref().unwrap().name, "agents");
        let (first, root) = (spans[0], spans[1]);
        assert_eq!(first.ids().unwrap(), (TraceId([1; 16]), SpanId([2; 8])));
        assert!(!first.is_root() && root.is_root());
        assert_eq!(first.name(), "chat gpt-4o");
        assert_eq!(first.status(), StatusCode::Error);
        assert_eq!((first.start_unix_nano(), first.end_unix_nano()), (10, 30));
        assert!(matches!(
            first.attribute("gen_ai.request.model"),
            Some(AttrRef::Str("gpt-4o"))
        ));
        assert!(matches!(
            first.attribute("service.name"),
            Some(AttrRef::Str("bot"))
        ));
        assert!(first.attribute("absent").is_none());
        assert_eq!(first.decode().unwrap(), child);
        assert_eq!(first.to_domain().unwrap().name, "chat gpt-4o");
        let origin = std::mem::size_of::<SpanOrigin>()
            + first.origin.resource.encoded_len()
            + first.origin.scope.as_ref().unwrap().encoded_len();
        assert_eq!(
            first.approximate_bytes(),
            std::mem::size_of::<BufferedSpan>() + child.encoded_len() + origin.div_ceil(2)
        );
    }

    #[test]
    fn a_span_that_does_not_decode_is_reported_in_its_place() {
        let good = OtlpSpan {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        };
        // A scope whose second span claims a 100-byte trace id in 3 bytes.
        let mut scope = Vec::new();
        prost::encoding::message::encode(2, &good, &mut scope);
        prost::encoding::bytes::encode(2, &vec![0x0a, 100, 1], &mut scope);
        let mut resource = Vec::new();
        prost::encoding::bytes::encode(2, &scope, &mut resource);
        let mut request = Vec::new();
        prost::encoding::bytes::encode(1, &resource, &mut request);
        let batch = decode_request(Bytes::from(request)).unwrap();
        assert!(batch[0].is_ok());
        assert!(batch[1].is_err());
        assert!(decode_request(Bytes::from_static(&[0x0a, 50, 1])).is_err());
    }
}
