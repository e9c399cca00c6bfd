use serde_json::{Value, json};

use crate::field::SpanField;
use crate::judge::{JudgeInput, TraceContext};
use crate::normalise::read_ai_view;
use crate::span::{Attributes, Span, StatusCode};

const PROMPT: &str = "Where is my parcel? It left Oslo on Monday.";
const REPLY: &str = "It is in Bergen and arrives tomorrow.";
const SECOND_REPLY: &str = "Anything else?";

fn chat_span(attributes: &[(&str, Value)]) -> Span {
    let attributes: Attributes = attributes
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let mut span = Span::blank();
    span.ai = read_ai_view(&attributes, &[], StatusCode::Unset, 1);
    span.attributes = attributes;
    span
}

fn genai_chat() -> Span {
    let input = json!([
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]},
    ]);
    let output = json!([{"role": "assistant", "parts": [
        {"type": "text", "content": REPLY}, {"type": "text", "content": SECOND_REPLY}]}]);
    chat_span(&[
        ("gen_ai.operation.name", json!("chat")),
        ("gen_ai.input.messages", json!(input.to_string())),
        ("gen_ai.output.messages", json!(output.to_string())),
    ])
}

fn text(span: &Span, field: SpanField) -> Option<String> {
    let trace = TraceContext::default();
    let input = JudgeInput {
        span,
        trace: &trace,
    };
    input.field_text(&field).map(|t| t.into_owned())
}

fn round_trip(span: &mut Span) -> Span {
    let wire = span.to_wire(1 << 20).unwrap_or_default();
    crate::stream_codec::from_slice(&wire).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_chat_spans_prompt_and_reply_are_stored_once_in_its_view() {
    let mut span = genai_chat();
    let wire = span.to_wire(1 << 20).unwrap_or_default();
    /// The record's view as stored (attribute texts are bytes, which `Value` cannot read).
    #[derive(serde::Deserialize)]
    struct StoredView {
        ai: Value,
    }
    let stored: Option<StoredView> = crate::stream_codec::from_slice(&wire).ok();
    let view = stored.map(|s| s.ai.to_string()).unwrap_or_default();
    assert_eq!(view.matches(PROMPT).count(), 1, "{view}");
    assert_eq!(view.matches(REPLY).count(), 1, "{view}");
}

#[test]
fn readers_derive_the_texts_the_wire_leaves_out() {
    let mut span = genai_chat();
    let back = round_trip(&mut span);
    assert_eq!(text(&back, SpanField::Input).as_deref(), Some(PROMPT));
    assert_eq!(
        text(&back, SpanField::Output),
        Some(format!("{REPLY}\n{SECOND_REPLY}"))
    );
    assert_eq!(text(&back, SpanField::Input), text(&span, SpanField::Input));
}

#[test]
fn spans_written_with_both_texts_read_the_same() {
    let mut span = genai_chat();
    let stored = round_trip(&mut span);
    let mut json = serde_json::to_value(stored).unwrap_or_default();
    json["ai"]["input"] = json!("the stored input");
    json["ai"]["output"] = json!(REPLY);
    let back: Span = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.ai.input_text(), Some("the stored input"));
    assert_eq!(back.ai.output_text().as_deref(), Some(REPLY));
}

#[test]
fn a_text_the_messages_do_not_hold_stays_on_the_wire() {
    let mut span = chat_span(&[
        ("openinference.span.kind", json!("LLM")),
        ("input.value", json!(PROMPT)),
        ("output.value", json!(REPLY)),
    ]);
    let back = round_trip(&mut span);
    assert_eq!(back.ai.explicit_input.as_deref(), Some(PROMPT));
    assert_eq!(text(&back, SpanField::Output).as_deref(), Some(REPLY));
}

#[test]
fn a_tool_spans_texts_are_its_arguments_and_result() {
    let mut span = chat_span(&[
        ("gen_ai.operation.name", json!("execute_tool")),
        ("gen_ai.tool.name", json!("track_parcel")),
        ("gen_ai.tool.call.arguments", json!("{\"id\":42}")),
        ("gen_ai.tool.call.result", json!(REPLY)),
    ]);
    assert_eq!(span.ai.explicit_input, None);
    assert_eq!(span.ai.explicit_output, None);
    let back = round_trip(&mut span);
    assert_eq!(
        text(&back, SpanField::Input).as_deref(),
        Some("{\"id\":42}")
    );
    assert_eq!(text(&back, SpanField::Output).as_deref(), Some(REPLY));
}

#[test]
fn a_cut_prompt_is_read_as_cut() {
    let long = "parcel ".repeat(40_000);
    let input = json!([{"role": "user", "parts": [{"type": "text", "content": long}]}]);
    let mut span = chat_span(&[
        ("gen_ai.operation.name", json!("chat")),
        ("gen_ai.input.messages", json!(input.to_string())),
    ]);
    let back = round_trip_within(&mut span, 100_000);
    let read = text(&back, SpanField::Input).unwrap_or_default();
    assert!(read.starts_with("parcel parcel"), "{read:.40}");
    assert!(read.ends_with("bytes]"), "{}", &read[read.len() - 40..]);
    assert!(
        back.truncated.contains(&"ai.inputMessages[0]".to_owned()),
        "{:?}",
        back.truncated
    );
}

fn round_trip_within(span: &mut Span, budget: usize) -> Span {
    let wire = span.to_wire(budget).unwrap_or_else(|e| panic!("{e}"));
    assert!(wire.len() <= budget);
    crate::stream_codec::from_slice(&wire).unwrap_or_else(|e| panic!("{e}"))
}
