//! Realistic OTLP traffic for the ingest benchmark: agent runs of 5–20 spans (an
//! `invoke_agent` root over alternating `chat` and `execute_tool` children, the root ending
//! last), GenAI attributes of varied size (prompts and replies of 20–300 words), a few models,
//! and 2 % of traces with a failing tool call. Deterministic in the request's sequence
//! number, so runs are repeatable.

use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use umpire_otlp::ExportTraceServiceRequest;
use umpire_otlp::attributes::{int_kv, string_kv};

const WORDS: &[&str] = &[
    "order",
    "refund",
    "delivery",
    "damaged",
    "replacement",
    "receipt",
    "policy",
    "days",
    "customer",
    "support",
    "account",
    "invoice",
    "shipping",
    "address",
    "warranty",
    "return",
    "package",
    "tracking",
    "the",
    "a",
    "within",
    "of",
    "for",
    "and",
    "can",
    "we",
    "you",
    "your",
    "is",
    "to",
    "please",
    "thanks",
    "document",
    "section",
    "according",
    "context",
];
const MODELS: &[&str] = &["gpt-4o-mini", "gpt-4.1", "claude-sonnet-4", "llama-3.1-70b"];
const TOOLS: &[&str] = &[
    "search_orders",
    "get_policy",
    "create_ticket",
    "lookup_tracking",
];

/// SplitMix64: a fast, well-mixed hash of a counter (deterministic pseudo-randomness).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `words` words drawn from the vocabulary by `seed`, JSON-escaped by construction (no
/// quotes or backslashes in the vocabulary).
fn text(seed: u64, words: usize) -> String {
    let mut out = String::with_capacity(words * 8);
    let mut state = seed;
    for i in 0..words {
        state = mix(state);
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
    }
    out
}

/// Spans in trace `trace`: 5 to 20.
pub fn trace_length(trace: u64) -> usize {
    5 + (mix(trace) % 16) as usize
}

/// One export request of exactly `batch` spans: whole traces, the last one cut short to fit
/// (as an SDK's batch processor also splits traces across requests).
pub fn request(sequence: u64, batch: usize) -> ExportTraceServiceRequest {
    let mut spans = Vec::with_capacity(batch);
    let mut trace_index = 0u64;
    while spans.len() < batch {
        let trace = sequence.wrapping_mul(1 << 20) + trace_index;
        let length = trace_length(trace).min(batch - spans.len());
        push_trace(&mut spans, sequence, trace, length);
        trace_index += 1;
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    string_kv("service.name", "support-bot"),
                    string_kv("deployment.environment", "bench"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn push_trace(spans: &mut Vec<Span>, sequence: u64, trace: u64, length: usize) {
    let seed = mix(trace);
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&trace.to_be_bytes());
    trace_id[8..].copy_from_slice(&seed.to_be_bytes());
    let span_id = |position: usize| ((trace << 8) | position as u64 | 1 << 63).to_be_bytes();
    let failing = seed.is_multiple_of(50);
    let start = 1_800_000_000_000_000_000u64 + sequence * 1_000_000;
    let step = 300_000_000u64;
    let model = MODELS[(seed % MODELS.len() as u64) as usize];
    for position in 0..length {
        let pick = mix(seed ^ position as u64);
        let (name, attributes, error) = if position == 0 {
            (
                "invoke_agent support".to_owned(),
                vec![
                    string_kv("gen_ai.operation.name", "invoke_agent"),
                    string_kv("gen_ai.agent.name", "support"),
                    string_kv("session.id", &format!("session-{}", seed % 997)),
                ],
                false,
            )
        } else if position % 2 == 0 {
            let tool = TOOLS[(pick % TOOLS.len() as u64) as usize];
            (
                format!("execute_tool {tool}"),
                vec![
                    string_kv("gen_ai.operation.name", "execute_tool"),
                    string_kv("gen_ai.tool.name", tool),
                    string_kv("gen_ai.tool.call.id", &format!("call_{pick:x}")),
                    string_kv(
                        "gen_ai.tool.call.arguments",
                        &format!(r#"{{"query":"{}"}}"#, text(pick, 3 + (pick % 8) as usize)),
                    ),
                ],
                failing && position == 2,
            )
        } else {
            let prompt = text(pick, 20 + (pick % 280) as usize);
            let reply = text(pick >> 7, 20 + ((pick >> 17) % 200) as usize);
            (
                format!("chat {model}"),
                vec![
                    string_kv("gen_ai.operation.name", "chat"),
                    string_kv("gen_ai.provider.name", "openai"),
                    string_kv("gen_ai.request.model", model),
                    string_kv("gen_ai.response.model", model),
                    int_kv("gen_ai.usage.input_tokens", 50 + (pick % 2_000) as i64),
                    int_kv(
                        "gen_ai.usage.output_tokens",
                        10 + ((pick >> 11) % 500) as i64,
                    ),
                    string_kv(
                        "gen_ai.input.messages",
                        &format!(
                            r#"[{{"role":"user","parts":[{{"type":"text","content":"{prompt} reach me at customer@example.com"}}]}}]"#
                        ),
                    ),
                    string_kv(
                        "gen_ai.output.messages",
                        &format!(
                            r#"[{{"role":"assistant","parts":[{{"type":"text","content":"{reply}"}}],"finish_reason":"stop"}}]"#
                        ),
                    ),
                ],
                false,
            )
        };
        // Children run one after another inside the root, which ends last.
        let (begin, end) = if position == 0 {
            (start, start + step * length as u64)
        } else {
            (
                start + step * position as u64,
                start + step * position as u64 + step / 2,
            )
        };
        spans.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id(position).to_vec(),
            parent_span_id: if position == 0 {
                Vec::new()
            } else {
                span_id(0).to_vec()
            },
            name,
            kind: if position == 0 { 1 } else { 3 },
            start_time_unix_nano: begin,
            end_time_unix_nano: end,
            attributes,
            status: Some(Status {
                code: if error {
                    status::StatusCode::Error as i32
                } else {
                    status::StatusCode::Unset as i32
                },
                message: if error {
                    "tool failed".into()
                } else {
                    String::new()
                },
            }),
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_hold_exactly_the_batch_in_traces_of_five_to_twenty() {
        let request = request(7, 512);
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 512);
        let mut lengths = std::collections::BTreeMap::<Vec<u8>, usize>::new();
        for span in spans {
            *lengths.entry(span.trace_id.clone()).or_default() += 1;
        }
        let whole: Vec<usize> = lengths.values().copied().collect();
        assert!(
            whole[..whole.len() - 1]
                .iter()
                .all(|l| (5..=20).contains(l))
        );
        assert!(lengths.len() > 512 / 20);
        let sizes: std::collections::BTreeSet<usize> =
            spans.iter().map(prost::Message::encoded_len).collect();
        assert!(sizes.len() > 50, "payloads vary: {} sizes", sizes.len());
        assert_ne!(
            request.resource_spans,
            super::request(8, 512).resource_spans
        );
    }
}
