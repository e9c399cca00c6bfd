//! Span-stream messages that carry several spans: a JSON array of spans in their wire form
//! (each already cut to fit by [`Span::to_wire`]). One message per span costs a publish, an
//! acknowledgement, a delivery and an ack each — more than the span's own work for small
//! spans — so spans of one trace and one subject can travel together.
//!
//! Readers take both forms, a single span (`{…}`) and a batch (`[…]`): readers that
//! understand batches must be deployed before anything writes them, so a rolling upgrade
//! never hands a batch to a reader that would dead-letter it.

use super::Span;
use crate::ids::{SpanId, TraceId};

/// A span-stream message read: one span, or a batch.
// The single span stays unboxed: it is the common case, and a box (or a one-element
// vector) would copy the kilobyte-sized span once more on every message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum MessageSpans {
    One(Span),
    Batch(Vec<Span>),
}

impl MessageSpans {
    /// Reads a message's payload, single span or batch.
    pub fn read(payload: &[u8]) -> Result<Self, serde_json::Error> {
        let first = payload.iter().find(|byte| !byte.is_ascii_whitespace());
        if first == Some(&b'[') {
            serde_json::from_slice(payload).map(Self::Batch)
        } else {
            serde_json::from_slice(payload).map(Self::One)
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Batch(spans) => spans.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn into_vec(self) -> Vec<Span> {
        match self {
            Self::One(span) => vec![span],
            Self::Batch(spans) => spans,
        }
    }
}

/// The spans of one span-stream message, single or batched.
pub fn spans_of_message(payload: &[u8]) -> Result<Vec<Span>, serde_json::Error> {
    MessageSpans::read(payload).map(MessageSpans::into_vec)
}

/// One message of spans already in their wire form; its length is the sum of theirs plus
/// one byte per span (the brackets and commas).
pub fn batch_message<'a>(encoded: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut message = vec![b'['];
    for (i, span) in encoded.into_iter().enumerate() {
        if i > 0 {
            message.push(b',');
        }
        message.extend_from_slice(span);
    }
    message.push(b']');
    message
}

/// The id a batch of `trace_id`'s spans is deduplicated by (`Nats-Msg-Id`): the trace, the
/// number of spans and a hash of their ids in order. The same spans batched again — a
/// retried publish, or another replica regrouping the trace after a partition moved — carry
/// the same id; any other set of spans carries another, so deduplication never drops a
/// batch holding a span the stored one lacks. (A single span's message keeps the span's
/// own id, [`Span::dedup_id`].)
pub fn batch_message_id(trace_id: &TraceId, span_ids: &[SpanId]) -> String {
    let ids: Vec<u8> = span_ids.iter().flat_map(|id| id.0).collect();
    let hash = xxhash_rust::xxh3::xxh3_64(&ids);
    format!("{trace_id}-{}x{hash:016x}", span_ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SpanId, TraceId};
    use crate::span::{AiView, Attributes, OtelSpanKind, Scope, Status};

    fn span(n: u8) -> Span {
        Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([n; 8]),
            parent_span_id: None,
            name: format!("chat \"{n}\"\n"),
            kind: OtelSpanKind::Client,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            status: Status::default(),
            attributes: Attributes::new(),
            events: Vec::new(),
            resource: Attributes::new(),
            scope: Scope::default(),
            ai: AiView::default(),
            truncated: Vec::new(),
        }
    }

    #[test]
    fn a_single_span_and_a_batch_both_read_back() {
        let mut one = span(1);
        let wire = one.to_wire(1 << 20).unwrap_or_default();
        assert_eq!(spans_of_message(&wire).ok(), Some(vec![span(1)]));

        let spans: Vec<Span> = (1..=3).map(span).collect();
        let encoded: Vec<Vec<u8>> = spans
            .iter()
            .map(|s| s.clone().to_wire(1 << 20).unwrap_or_default())
            .collect();
        let message = batch_message(encoded.iter().map(Vec::as_slice));
        assert_eq!(
            message.len(),
            encoded.iter().map(Vec::len).sum::<usize>() + 3 + 1
        );
        assert_eq!(spans_of_message(&message).ok(), Some(spans));
        assert_eq!(
            spans_of_message(b" \n [] ").ok(),
            Some(Vec::new()),
            "leading whitespace is allowed, as JSON does"
        );
    }

    #[test]
    fn a_batch_id_names_exactly_its_spans() {
        let trace = TraceId([7; 16]);
        let ids = [SpanId([1; 8]), SpanId([2; 8]), SpanId([3; 8])];
        let id = batch_message_id(&trace, &ids);
        assert_eq!(id, batch_message_id(&trace, &ids), "stable");
        assert!(id.starts_with(&format!("{trace}-3x")), "{id}");
        assert_ne!(id, batch_message_id(&trace, &ids[..2]));
        assert_ne!(
            id,
            batch_message_id(&trace, &[ids[0], ids[1], SpanId([4; 8])])
        );
        assert_ne!(id, batch_message_id(&TraceId([8; 16]), &ids));
    }

    #[test]
    fn a_malformed_message_is_an_error_not_a_partial_batch() {
        let mut one = span(1);
        let wire = one.to_wire(1 << 20).unwrap_or_default();
        let mut broken = batch_message([wire.as_slice(), wire.as_slice()]);
        broken.truncate(broken.len() - 5);
        assert!(spans_of_message(&broken).is_err());
        assert!(spans_of_message(b"[{\"not\":\"a span\"}]").is_err());
        assert!(spans_of_message(b"").is_err());
    }
}
