//! Span-stream messages that carry several spans: a list of spans in their wire form (each
//! already cut to fit by [`Span::to_wire`]), the spans of one trace and one subject (see
//! [`crate::batch`]). Readers take both forms, a single span and a batch, in MessagePack or
//! in the JSON earlier versions wrote.

use super::Span;
use crate::batch::is_batch;

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
    pub fn read(payload: &[u8]) -> Result<Self, crate::stream_codec::Error> {
        if is_batch(payload) {
            crate::stream_codec::from_slice(payload).map(Self::Batch)
        } else {
            crate::stream_codec::from_slice(payload).map(Self::One)
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
pub fn spans_of_message(payload: &[u8]) -> Result<Vec<Span>, crate::stream_codec::Error> {
    MessageSpans::read(payload).map(MessageSpans::into_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::batch_message;
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
            encoded.iter().map(Vec::len).sum::<usize>() + 1,
            "the records and a one-byte list header"
        );
        assert_eq!(spans_of_message(&message).ok(), Some(spans));
    }

    #[test]
    fn spans_and_batches_stored_as_json_before_are_read() {
        let spans: Vec<Span> = (1..=3).map(span).collect();
        let one = serde_json::to_vec(&spans[0]).unwrap_or_default();
        assert_eq!(spans_of_message(&one).ok(), Some(vec![span(1)]));
        let batch = serde_json::to_vec(&spans).unwrap_or_default();
        assert_eq!(spans_of_message(&batch).ok(), Some(spans));
        assert_eq!(
            spans_of_message(b" \n [] ").ok(),
            Some(Vec::new()),
            "leading whitespace is allowed, as JSON does"
        );
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
