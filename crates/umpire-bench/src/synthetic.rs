//! The evaluator benchmark's synthetic traffic: one small LLM span shape (a one-line prompt,
//! a one-sentence reply or a small JSON answer, two attributes), as every evaluator figure
//! before the agent traffic of [`crate::kept`] was measured.

use umpire_core::ids::{SpanId, TraceId};
use umpire_core::span::{AiSpanKind, AiView, Span, Status, StatusCode, TokenUsage};

use crate::kept::KeptMessage;

/// Span `n`, ending at `project_end`: every 50th has an error status, every third answers
/// in JSON.
fn span(n: u64, project_end: u64) -> Span {
    let mut trace = [0u8; 16];
    trace[..8].copy_from_slice(&n.to_be_bytes());
    trace[15] = 1;
    let mut id = [0u8; 8];
    id.copy_from_slice(&(n + 1).to_be_bytes());
    Span {
        trace_id: TraceId(trace),
        span_id: SpanId(id),
        parent_span_id: None,
        name: "chat gpt-4o-mini".into(),
        kind: umpire_core::span::OtelSpanKind::Client,
        start_time_unix_nano: project_end - 800_000_000,
        end_time_unix_nano: project_end,
        status: Status {
            code: if n.is_multiple_of(50) {
                StatusCode::Error
            } else {
                StatusCode::Unset
            },
            message: String::new(),
        },
        attributes: [
            ("gen_ai.operation.name".to_owned(), "chat".into()),
            ("gen_ai.request.model".to_owned(), "gpt-4o-mini".into()),
        ]
        .into_iter()
        .collect(),
        events: Vec::new(),
        resource: [("service.name".to_owned(), "support-bot".into())]
            .into_iter()
            .collect(),
        scope: Default::default(),
        ai: AiView {
            kind: Some(AiSpanKind::Llm),
            operation: Some("chat".into()),
            request_model: Some("gpt-4o-mini".into()),
            response_model: Some("gpt-4o-mini-2026-01-01".into()),
            usage: TokenUsage {
                input: Some(412),
                output: Some(96),
                total: None,
            },
            explicit_input: Some(
                "My order arrived damaged, can I get a refund or a replacement?".into(),
            ),
            explicit_output: Some(if n.is_multiple_of(3) {
                r#"{"answer": "We can ship a replacement or refund you within 30 days.", "sources": ["kb-0"]}"#.into()
            } else {
                "I'm sorry your order arrived damaged. Refunds are accepted within 30 days of delivery with a receipt.".into()
            }),
            ..AiView::default()
        },
        truncated: Vec::new(),
    }
}

/// Synthetic span messages: spans `from..from + count` of one small shape, `per_message`
/// to a message.
pub fn synthetic_messages(
    from: u64,
    count: u64,
    per_message: u64,
) -> anyhow::Result<Vec<KeptMessage>> {
    let end = 1_800_000_000_000_000_000u64;
    let per_message = per_message.max(1);
    let mut messages = Vec::new();
    let mut first = from;
    while first < from + count {
        let last = (first + per_message).min(from + count);
        let spans: Vec<Span> = (first..last).map(|n| span(n, end + n)).collect();
        let (payload, id) = if let [one] = spans.as_slice() {
            (umpire_core::stream_codec::to_vec(one)?, one.dedup_id())
        } else {
            let encoded = spans
                .iter()
                .map(umpire_core::stream_codec::to_vec)
                .collect::<Result<Vec<_>, _>>()?;
            (
                umpire_core::batch::batch_message(encoded.iter().map(Vec::as_slice)),
                format!("batch-{first}-{last}"),
            )
        };
        messages.push(KeptMessage {
            id,
            payload: payload.into(),
            spans: last - first,
        });
        first = last;
    }
    Ok(messages)
}
