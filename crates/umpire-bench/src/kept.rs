//! The span-stream messages ingest writes for the [`traffic`](crate::traffic)'s chat spans:
//! each buffered span normalised (`to_domain`) and cut to its wire form (`to_wire`), a
//! trace's chat spans in one message (a lone one as itself), as ingest groups them — so the
//! evaluator benchmark reads what an evaluator reads in production, prompts, replies and
//! their `gen_ai.*.messages` attributes included.

use bytes::Bytes;
use prost::Message;
use umpire_core::batch::{batch_message, batch_message_id};
use umpire_core::ids::SpanId;
use umpire_core::span::{AiSpanKind, Span};
use umpire_otlp::buffered::decode_request;

use crate::traffic;

/// The span stream's message budget with the default 1 MiB NATS payload.
pub const BUDGET: usize = 1024 * 1024 - 4096;

/// One span-stream message of chat spans.
pub struct KeptMessage {
    /// Its `Nats-Msg-Id`.
    pub id: String,
    pub payload: Bytes,
    pub spans: u64,
}

/// Messages holding at least `count` chat spans of the traffic (whole messages: the last
/// may take the total a few spans past `count`).
pub fn chat_messages(count: u64) -> anyhow::Result<Vec<KeptMessage>> {
    let (mut messages, mut spans, mut sequence) = (Vec::new(), 0u64, 0u64);
    while spans < count {
        let request = traffic::request(sequence, 512);
        sequence += 1;
        let mut chats: Vec<Span> = Vec::new();
        for buffered in decode_request(Bytes::from(request.encode_to_vec()))? {
            let span = buffered?.to_domain()?;
            if span.ai.kind == Some(AiSpanKind::Llm) {
                chats.push(span);
            }
        }
        chats.sort_unstable_by_key(|span| (span.trace_id, span.span_id));
        for trace in chats.chunk_by_mut(|a, b| a.trace_id == b.trace_id) {
            if spans >= count {
                break;
            }
            messages.push(message_of(trace)?);
            spans += trace.len() as u64;
        }
    }
    Ok(messages)
}

fn message_of(trace: &mut [Span]) -> anyhow::Result<KeptMessage> {
    let wires = trace
        .iter_mut()
        .map(|span| span.to_wire(BUDGET))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match (&*trace, wires.as_slice()) {
        ([span], [wire]) => KeptMessage {
            id: span.dedup_id(),
            payload: Bytes::copy_from_slice(wire),
            spans: 1,
        },
        _ => {
            let ids: Vec<SpanId> = trace.iter().map(|span| span.span_id).collect();
            KeptMessage {
                id: batch_message_id(&trace[0].trace_id, &ids),
                payload: batch_message(wires.iter().map(Vec::as_slice)).into(),
                spans: trace.len() as u64,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use umpire_core::span::spans_of_message;

    #[test]
    fn messages_hold_one_traces_chat_spans_with_their_texts() {
        let messages = chat_messages(100).unwrap_or_default();
        let spans: u64 = messages.iter().map(|m| m.spans).sum();
        assert!((100..100 + 20).contains(&spans), "{spans}");
        assert!(messages.iter().any(|m| m.spans > 1));
        for message in &messages {
            let read = spans_of_message(&message.payload).unwrap_or_default();
            assert_eq!(read.len() as u64, message.spans);
            assert!(read.iter().all(|s| s.trace_id == read[0].trace_id));
            assert!(read.iter().all(|s| s.ai.kind == Some(AiSpanKind::Llm)));
            assert!(read.iter().all(
                |s| s.ai.output.is_some() && s.attributes.contains_key("gen_ai.input.messages")
            ));
        }
    }
}
