//! The span-stream messages ingest writes for the [`traffic`](crate::traffic)'s chat spans,
//! made by ingest's own encoder (`umpire_ingest::sampler::span_messages::encode`: each span
//! normalised and cut to its wire form, a trace's spans of one subject per message) — so the
//! evaluator benchmark reads what an evaluator reads in production, prompts, replies and
//! their `gen_ai.*.messages` attributes included.

use bytes::Bytes;
use prost::Message;
use umpire_ingest::sampler::span_messages::encode;
use umpire_nats::topology::ProjectNames;
use umpire_otlp::buffered::{BufferedSpan, decode_request};

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
/// may take the total a few spans past `count`), for project `perf/bench`.
pub fn chat_messages(count: u64) -> anyhow::Result<Vec<KeptMessage>> {
    let names = ProjectNames::new("perf", "bench");
    let chat = names.spans_subject("llm", "chat");
    let (mut messages, mut spans, mut sequence) = (Vec::new(), 0u64, 0u64);
    while spans < count {
        let request = traffic::request(sequence, 512);
        sequence += 1;
        let buffered = decode_request(Bytes::from(request.encode_to_vec()))?
            .into_iter()
            .collect::<Result<Vec<BufferedSpan>, _>>()?;
        let encoded = encode(&names, &buffered, BUDGET);
        anyhow::ensure!(
            encoded.dead_letters.is_empty(),
            "the traffic has spans ingest cannot publish"
        );
        for message in encoded.messages {
            if spans >= count {
                break;
            }
            if message.subject == chat {
                spans += message.spans as u64;
                messages.push(KeptMessage {
                    id: message.id,
                    payload: message.payload,
                    spans: message.spans as u64,
                });
            }
        }
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use umpire_core::span::{AiSpanKind, spans_of_message};

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
            assert!(read.iter().all(|s| s.ai.output_text().is_some()
                && s.attributes.contains_key("gen_ai.input.messages")));
        }
    }
}
