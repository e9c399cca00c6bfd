use std::sync::Arc;

use umpire_core::span::spans_of_message;
use umpire_otlp::attributes::string_kv as kv;
use umpire_otlp::buffered::SpanOrigin;
use umpire_otlp::proto::Span as OtlpSpan;

use super::*;

/// Span `span` of trace `trace`: a chat call when `chat`, else a plain span; `text` as its
/// input.
fn buffered(trace: u8, span: u8, chat: bool, text: &str) -> BufferedSpan {
    let mut attributes = vec![kv("input.value", text)];
    if chat {
        attributes.push(kv("gen_ai.operation.name", "chat"));
    }
    let otlp = OtlpSpan {
        trace_id: vec![trace; 16],
        span_id: vec![span; 8],
        name: format!("step {span}"),
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        attributes,
        ..Default::default()
    };
    BufferedSpan::new(&otlp, Arc::new(SpanOrigin::default()))
}

fn names() -> ProjectNames {
    ProjectNames::new("ns", "app")
}

/// Every (trace, span) id a message set carries, read back as the evaluator reads them.
fn carried(messages: &[SpanMessage]) -> Vec<String> {
    let mut ids: Vec<String> = messages
        .iter()
        .flat_map(|m| spans_of_message(&m.payload).unwrap_or_default())
        .map(|span| span.dedup_id())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_traces_spans_travel_together_per_subject() {
    let spans = vec![
        buffered(1, 1, true, "a"),
        buffered(1, 2, false, "b"),
        buffered(1, 3, true, "c"),
        buffered(1, 4, true, "d"),
        buffered(1, 5, false, "e"),
    ];
    let encoded = encode(&names(), &spans, 1 << 20);
    assert!(encoded.dead_letters.is_empty());
    let shape: Vec<(&str, usize)> = encoded
        .messages
        .iter()
        .map(|m| (m.subject.as_str(), m.spans))
        .collect();
    assert_eq!(
        shape,
        [
            ("umpire.spans.ns.app.llm.chat", 3),
            ("umpire.spans.ns.app.none._", 2)
        ]
    );
    let chat = &encoded.messages[0];
    let trace = TraceId([1; 16]);
    assert_eq!(
        chat.id,
        batch_message_id(&trace, &[SpanId([1; 8]), SpanId([3; 8]), SpanId([4; 8])])
    );
    let read: Vec<SpanId> = spans_of_message(&chat.payload)
        .unwrap_or_default()
        .iter()
        .map(|s| s.span_id)
        .collect();
    assert_eq!(read, [SpanId([1; 8]), SpanId([3; 8]), SpanId([4; 8])]);
    assert_eq!(carried(&encoded.messages).len(), 5);
}

#[test]
fn a_lone_span_keeps_its_own_form_and_id() {
    let spans = vec![buffered(1, 1, true, "a"), buffered(1, 2, false, "b")];
    let encoded = encode(&names(), &spans, 1 << 20);
    assert_eq!(encoded.messages.len(), 2);
    for message in &encoded.messages {
        assert_eq!(message.spans, 1);
        assert!(
            !umpire_core::batch::is_batch(&message.payload),
            "a span, not a batch"
        );
        let span = spans_of_message(&message.payload).unwrap_or_default();
        assert_eq!(message.id, span[0].dedup_id());
    }
}

#[test]
fn grouping_does_not_depend_on_the_order_spans_arrived_in() {
    let spans: Vec<BufferedSpan> = (1..=12)
        .map(|n| buffered(1 + n % 2, n, n % 3 == 0, &"x".repeat(usize::from(n) * 50)))
        .collect();
    let mut shuffled = spans.clone();
    shuffled.reverse();
    shuffled.swap(2, 7);
    let form = |spans: &[BufferedSpan]| -> Vec<(String, String, bytes::Bytes)> {
        encode(&names(), spans, 1 << 20)
            .messages
            .into_iter()
            .map(|m| (m.subject, m.id, m.payload))
            .collect()
    };
    assert_eq!(form(&spans), form(&shuffled));
}

#[test]
fn batches_never_mix_traces_and_stay_within_the_budget() {
    let text = "y".repeat(2_000);
    let mut spans: Vec<BufferedSpan> = (1..=150).map(|n| buffered(1, n, true, &text)).collect();
    spans.extend((1..=3).map(|n| buffered(2, n, true, &text)));
    let budget = 24 * 1024;
    let encoded = encode(&names(), &spans, budget);
    assert!(encoded.messages.len() > 1);
    for message in &encoded.messages {
        assert!(message.payload.len() <= budget, "{}", message.payload.len());
        let read = spans_of_message(&message.payload).unwrap_or_default();
        assert_eq!(read.len(), message.spans);
        assert!(read.iter().all(|s| s.trace_id == read[0].trace_id));
    }
    assert_eq!(carried(&encoded.messages).len(), 153, "every span, once");

    // Without a byte limit, the span-count limit splits a large trace.
    let encoded = encode(&names(), &spans, 64 << 20);
    let counts: Vec<usize> = encoded.messages.iter().map(|m| m.spans).collect();
    assert_eq!(
        counts,
        [MAX_SPANS_PER_MESSAGE, MAX_SPANS_PER_MESSAGE, 22, 3]
    );
}

#[test]
fn operation_tokens_are_a_bounded_set() {
    assert_eq!(operation_token("chat"), "chat");
    assert_eq!(operation_token("execute_tool"), "execute_tool");
    assert_eq!(operation_token("text.completion *"), "other");
    assert_eq!(operation_token(">"), "other");
    assert_eq!(operation_token(&"x".repeat(100_000)), "other");
    assert_eq!(operation_token(""), "other");
    // Every token is one a policy can select by.
    for operation in GENAI_OPERATIONS {
        assert!(umpire_core::span::AiSpanKind::from_genai_operation(operation).is_some());
    }
}
