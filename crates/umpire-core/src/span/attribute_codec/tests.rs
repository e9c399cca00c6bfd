use serde_json::{Value, json};

use crate::span::{MessageSpans, Span, SpanReading};
use crate::stream_codec;

const PROMPT: &str = "[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"content\":\"héllo\"}]}]";

/// A span whose attributes, event attributes and resource hold every kind of value.
fn span_json() -> Value {
    json!({
        "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708",
        "name": "chat", "startTimeUnixNano": 1, "endTimeUnixNano": 2,
        "attributes": {
            "gen_ai.input.messages": PROMPT,
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 12,
            "delta": -3,
            "temperature": 0.25,
            "stream": true,
            "tags": ["a", "b", 3],
            "nested": {"k": "v", "n": [1.5]},
            "empty": "",
        },
        "events": [{"name": "e", "timeUnixNano": 3, "attributes": {"exception.message": "boom"}}],
        "resource": {"service.name": "bot", "pid": 7},
    })
}

fn span() -> Span {
    serde_json::from_value(span_json()).unwrap_or_else(|e| panic!("span: {e}"))
}

/// `text` as MessagePack `bin` (bin 8: shorter than 256 bytes).
fn as_bin(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xc4, u8::try_from(text.len()).unwrap_or(u8::MAX)];
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn read(record: &[u8]) -> Result<Span, stream_codec::Error> {
    stream_codec::from_slice(record)
}

#[test]
fn text_values_are_stored_as_bytes_and_read_back_as_text() {
    let span = span();
    let record = stream_codec::to_vec(&span).unwrap_or_default();
    for text in [PROMPT, "gpt-4o", "boom", "bot"] {
        assert!(
            contains(&record, &as_bin(text)),
            "{text} is not stored as bin"
        );
    }
    assert_eq!(read(&record).ok(), Some(span.clone()));
    // A reading that keeps some attributes and skips the rest gets the kept ones as text.
    let kept = SpanReading::for_policy("groupBy: [gen_ai.request.model, tags, pid]")
        .read(&record)
        .map(MessageSpans::into_vec)
        .unwrap_or_default();
    assert_eq!(kept.len(), 1);
    let keys: Vec<&str> = kept[0].attributes.keys().map(String::as_str).collect();
    assert_eq!(keys, ["gen_ai.request.model", "tags"]);
    assert_eq!(kept[0].attributes["gen_ai.request.model"], json!("gpt-4o"));
    assert_eq!(kept[0].resource.get("pid"), Some(&json!(7)));
    assert_eq!(kept[0].resource.len(), 1);
    assert_eq!(kept[0].events, span.events);
}

#[test]
fn records_with_text_values_as_earlier_versions_wrote_them_read_the_same() {
    // Written from the JSON value: every text a MessagePack `str`.
    let earlier = stream_codec::to_vec(&span_json()).unwrap_or_default();
    assert!(!contains(&earlier, &as_bin(PROMPT)));
    assert_eq!(read(&earlier).ok(), Some(span()));
    let json = serde_json::to_vec(&span_json()).unwrap_or_default();
    assert_eq!(read(&json).ok(), Some(span()));
}

#[test]
fn human_readable_formats_keep_writing_text() {
    let json = serde_json::to_value(span()).unwrap_or_default();
    for part in ["attributes", "events", "resource"] {
        assert_eq!(json[part], span_json()[part], "{part}");
    }
}

#[test]
fn a_stored_text_that_is_not_utf8_is_an_error_to_a_reader_that_keeps_it() {
    let mut record = stream_codec::to_vec(&span()).unwrap_or_default();
    let stored = as_bin("gpt-4o");
    let at = record
        .windows(stored.len())
        .position(|w| w == stored)
        .unwrap_or_else(|| panic!("the model is stored as bin"));
    record[at + 2] = 0xff;
    let error = read(&record)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("UTF-8"), "{error}");
    let keeping = SpanReading::for_policy("groupBy: [gen_ai.request.model]").read(&record);
    assert!(keeping.is_err());
    // Skipped by a jump, as any text a reader does not decode.
    let skipping = SpanReading::for_policy("judges: [{name: j, json: {}}]").read(&record);
    assert!(skipping.is_ok());
}
