use serde_json::{Value, json};

use super::*;
use crate::batch::batch_message;
use crate::span::Span;

/// A chat span as ingest writes it: the prompt in its attributes and in the GenAI view.
fn chat_wire(span_id: &str) -> Vec<u8> {
    crate::stream_codec::to_vec(&chat_span(span_id)).unwrap_or_default()
}

fn chat_span(span_id: &str) -> Value {
    let span = json!({
        "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": span_id, "name": "chat",
        "startTimeUnixNano": 1, "endTimeUnixNano": 2,
        "attributes": {
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.input.messages": "[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"content\":\"hi\"}]}]",
            "input.value": "hi",
            "llm.input_messages.0.message.content": "hi",
            "key with \"escapes\"": 1,
        },
        "ai": {"kind": "LLM", "input": "hi", "inputMessages": [{"role": "user", "content": "hi"}]},
    });
    span
}

fn keys(span: &Span) -> Vec<&str> {
    span.attributes.keys().map(String::as_str).collect()
}

#[test]
fn a_policy_that_names_no_attribute_decodes_only_unusual_keys() {
    let reading = SpanReading::for_policy("judges: [{name: j, regex: {field: output}}]");
    assert!(!reading.decodes("input.value"));
    let spans = reading
        .read(&chat_wire("0102030405060708"))
        .map(MessageSpans::into_vec)
        .unwrap_or_default();
    assert_eq!(spans.len(), 1);
    assert_eq!(keys(&spans[0]), ["key with \"escapes\""]);
    assert_eq!(spans[0].ai.input_text(), Some("hi"));
    assert_eq!(spans[0].ai.input_messages.len(), 1);
}

#[test]
fn named_sources_are_decoded() {
    let reading = SpanReading::for_policy(
        "{\"field\": \"attributes.input.value\", \"groupBy\": [\"llm.input_messages.0.message.content\"]}",
    );
    assert!(reading.decodes("input.value"));
    assert!(reading.decodes("llm.input_messages.0.message.content"));
    assert!(!reading.decodes("llm.input_messages.1.message.content"));
    let spans = reading
        .read(&batch_message([
            chat_wire("0102030405060708").as_slice(),
            chat_wire("0102030405060709").as_slice(),
        ]))
        .map(MessageSpans::into_vec)
        .unwrap_or_default();
    assert_eq!(spans.len(), 2);
    for span in &spans {
        assert_eq!(
            keys(span),
            [
                "input.value",
                "key with \"escapes\"",
                "llm.input_messages.0.message.content"
            ]
        );
        assert_eq!(span.attribute("input.value"), Some(&Value::from("hi")));
    }
}

#[test]
fn other_readers_on_the_thread_still_read_everything() {
    let wire = chat_wire("0102030405060708");
    let skipping = SpanReading::for_policy("");
    assert!(skipping.read(&wire).is_ok());
    assert!(skipping.read(b"{\"traceId\": 1}").is_err());
    for spans in [
        MessageSpans::read(&wire).map(MessageSpans::into_vec),
        SpanReading::whole().read(&wire).map(MessageSpans::into_vec),
    ] {
        let spans = spans.unwrap_or_default();
        assert_eq!(spans.first().map(|s| s.attributes.len()), Some(5));
    }
}

#[test]
fn attributes_the_policy_does_not_name_are_not_decoded() {
    let span = json!({
        "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708", "name": "chat",
        "startTimeUnixNano": 1, "endTimeUnixNano": 2,
        "attributes": {
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.id": "chatcmpl-1",
            "gen_ai.usage.input_tokens": 12,
            "app.tenant": "acme",
            "key with \"escapes\"": 1,
        },
    });
    let reading = SpanReading::for_policy(
        "{\"select\": {\"matchers\": [{\"attribute\": \"gen_ai.request.model\"}]}, \"judges\": [{\"field\": \"attributes.app.tenant\"}]}",
    );
    let spans = reading
        .read(&serde_json::to_vec(&span).unwrap_or_default())
        .map(MessageSpans::into_vec)
        .unwrap_or_default();
    assert_eq!(
        spans.first().map(keys).unwrap_or_default(),
        [
            "app.tenant",
            "gen_ai.request.model",
            "gen_ai.response.id",
            "key with \"escapes\""
        ]
    );
}

#[test]
fn spans_stored_as_json_are_read_the_same_way() {
    let reading = SpanReading::for_policy("{\"field\": \"attributes.input.value\"}");
    let json = serde_json::to_vec(&chat_span("0102030405060708")).unwrap_or_default();
    let from_json = reading
        .read(&json)
        .map(MessageSpans::into_vec)
        .unwrap_or_default();
    let from_wire = reading
        .read(&chat_wire("0102030405060708"))
        .map(MessageSpans::into_vec)
        .unwrap_or_default();
    assert_eq!(from_json.len(), 1);
    assert_eq!(from_json, from_wire);
    assert_eq!(keys(&from_json[0]), ["input.value", "key with \"escapes\""]);
}

#[test]
fn resource_attributes_the_policy_does_not_name_are_not_decoded() {
    let span = Span {
        resource: [
            ("service.name", json!("bot")),
            ("service.version", json!("1.2.0")),
            ("host.name", json!("node-7")),
            ("process.pid", json!(42)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        ..Span::blank()
    };
    let record = crate::stream_codec::to_vec(&span).unwrap_or_default();
    let resource = |policy: &str| {
        let spans = SpanReading::for_policy(policy)
            .read(&record)
            .map(MessageSpans::into_vec)
            .unwrap_or_default();
        let span = spans.into_iter().next().unwrap_or_else(Span::blank);
        span.resource.into_keys().collect::<Vec<_>>()
    };
    assert_eq!(
        resource("judges: [{name: j, regex: {field: resource.service.version, pattern: x}}]"),
        ["service.version"]
    );
    // `Span::attribute` falls back to the resource: a groupBy or selector key finds it.
    assert_eq!(resource("groupBy: [service.name]"), ["service.name"]);
    assert!(resource("judges: [{name: j, json: {}}]").is_empty());
    let whole = SpanReading::whole()
        .read(&record)
        .map(MessageSpans::into_vec);
    assert_eq!(whole.ok().map(|s| s[0].resource.len()), Some(4));
}
