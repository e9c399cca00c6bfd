//! A kept job's spans as span-stream messages: the spans of one trace that share a subject
//! travel together (a list of wire spans, see `umpire_core::batch`), up
//! to the payload budget and [`MAX_SPANS_PER_MESSAGE`]. One message per span cost a
//! publish, a stream write, an acknowledgement and, in the evaluator, a delivery and an ack
//! each — more than the span's own work for small spans.
//!
//! Grouping is deterministic: spans are ordered by (trace, subject, span id) before they
//! are packed, so a retried job — or another replica regrouping the same trace after a
//! partition moved — produces the same messages with the same ids, which JetStream
//! deduplicates. Only a trace regrouped with a different set of spans (a straggler that
//! arrived in between) yields differently-named batches: then spans are stored twice and
//! judged twice, and the scores stream deduplicates their evaluations by evaluation id.

use bytes::Bytes;
use umpire_core::batch::{batch_message, batch_message_id, pack};
use umpire_core::ids::{SpanId, TraceId};
use umpire_core::span::{GENAI_OPERATIONS, Span};
use umpire_nats::topology::ProjectNames;
use umpire_otlp::buffered::BufferedSpan;

use super::dead_letter::DeadLetter;

/// Spans one message carries at most: the evaluator settles a message once every span in it
/// is judged, so a batch waits for its slowest span.
pub const MAX_SPANS_PER_MESSAGE: usize = 64;

/// One span-stream message ready to publish.
#[derive(Debug)]
pub struct SpanMessage {
    pub subject: String,
    /// Its `Nats-Msg-Id`: a lone span's own id, or the batch's.
    pub id: String,
    pub payload: Bytes,
    pub spans: usize,
}

/// A job's spans encoded: the messages to publish and the spans that can never be.
#[derive(Debug, Default)]
pub struct EncodedSpans {
    pub messages: Vec<SpanMessage>,
    pub dead_letters: Vec<DeadLetter>,
}

/// A span in its wire form, with what it is grouped and ordered by.
struct WireSpan {
    trace_id: TraceId,
    subject: String,
    span_id: SpanId,
    dedup_id: String,
    wire: Vec<u8>,
}

/// Encodes `spans` into messages of at most `budget` bytes each.
pub fn encode(names: &ProjectNames, spans: &[BufferedSpan], budget: usize) -> EncodedSpans {
    let mut encoded = EncodedSpans::default();
    let mut wires = Vec::with_capacity(spans.len());
    for buffered in spans {
        let mut span = match buffered.to_domain() {
            Ok(span) => span,
            Err(e) => {
                encoded
                    .dead_letters
                    .push(DeadLetter::undecodable(buffered, &e.to_string()));
                continue;
            }
        };
        match span.to_wire(budget) {
            Ok(wire) => wires.push(WireSpan {
                trace_id: span.trace_id,
                subject: subject_of(names, &span),
                span_id: span.span_id,
                dedup_id: span.dedup_id(),
                wire,
            }),
            Err(e) => encoded
                .dead_letters
                .push(DeadLetter::of(&span, &e.to_string())),
        }
    }
    wires.sort_unstable_by(|a, b| {
        (a.trace_id, &a.subject, a.span_id).cmp(&(b.trace_id, &b.subject, b.span_id))
    });
    let groups = pack(
        wires,
        |a, b| a.trace_id == b.trace_id && a.subject == b.subject,
        |span| span.wire.len(),
        MAX_SPANS_PER_MESSAGE,
        budget,
    );
    encoded.messages = groups.into_iter().map(message_of).collect();
    encoded
}

/// A group's message: a lone span as itself (the form and id it always had), several as a
/// batch.
fn message_of(mut group: Vec<WireSpan>) -> SpanMessage {
    if group.len() == 1
        && let Some(span) = group.pop()
    {
        return SpanMessage {
            subject: span.subject,
            id: span.dedup_id,
            payload: span.wire.into(),
            spans: 1,
        };
    }
    let ids: Vec<SpanId> = group.iter().map(|span| span.span_id).collect();
    SpanMessage {
        id: batch_message_id(&group[0].trace_id, &ids),
        payload: batch_message(group.iter().map(|span| span.wire.as_slice())).into(),
        spans: group.len(),
        subject: group.swap_remove(0).subject,
    }
}

fn subject_of(names: &ProjectNames, span: &Span) -> String {
    let kind = span
        .ai
        .kind
        .map(|k| k.name().to_ascii_lowercase())
        .unwrap_or_else(|| "none".into());
    let operation = span
        .ai
        .operation
        .as_deref()
        .map(operation_token)
        .unwrap_or("_");
    names.spans_subject(&kind, operation)
}

/// The span's GenAI operation as a subject token: an operation policies can select by (see
/// `AiSpanKind::from_genai_operation`) as it is, anything else `other`. The value comes from
/// the client: taken as sent, it would mint subjects without bound (and of any length).
fn operation_token(operation: &str) -> &'static str {
    GENAI_OPERATIONS
        .iter()
        .find(|known| **known == operation)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests;
