use super::*;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    trace_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply: Option<String>,
    latency_ms: f64,
}

fn value() -> Value {
    json!({
        "text": "quote \" backslash \\ newline \n tab \t nul \u{0} é 🦀 \u{2028}",
        "nested": "[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"content\":\"hi\"}]}]",
        "numbers": [0, -1, i64::MIN, u64::MAX, 1.5, 1e-7, 12345678.125],
        "nothing": null, "yes": true, "empty": {}, "list": [],
    })
}

#[test]
fn records_are_messagepack_maps_that_name_their_fields_and_keep_texts_unescaped() {
    let record = Record {
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        reply: Some("{\"answer\": \"a \\\"quoted\\\" word\"}".into()),
        latency_ms: 12.5,
    };
    let bytes = to_vec(&record).unwrap_or_default();
    assert_eq!(bytes.first(), Some(&0x83), "a map of three fields");
    assert!(!is_json(&bytes) && !is_list(&bytes));
    let named = |name: &str| bytes.windows(name.len()).any(|w| w == name.as_bytes());
    assert!(named("traceId") && named("reply") && named("latencyMs"));
    assert!(
        named("{\"answer\": \"a \\\"quoted\\\" word\"}"),
        "the text is stored as it is, not escaped"
    );
    assert_eq!(from_slice::<Record>(&bytes).ok(), Some(record));
}

#[test]
fn records_evolve_as_json_ones_do() {
    // A reader without a field skips it; a field the writer left out takes its default.
    let newer = json!({"traceId": "t", "latencyMs": 1.0, "addedLater": {"x": [1, 2]}});
    let read: Option<Record> = from_slice(&to_vec(&newer).unwrap_or_default()).ok();
    assert_eq!(
        read,
        Some(Record {
            trace_id: "t".into(),
            reply: None,
            latency_ms: 1.0
        })
    );
}

#[test]
fn every_json_value_round_trips() {
    let bytes = to_vec(&value()).unwrap_or_default();
    assert_eq!(from_slice::<Value>(&bytes).ok(), Some(value()));
}

#[test]
fn json_written_before_the_streams_were_messagepack_is_read() {
    let json = serde_json::to_vec(&value()).unwrap_or_default();
    assert!(is_json(&json));
    assert_eq!(from_slice::<Value>(&json).ok(), Some(value()));
    let padded = [b" \n".as_slice(), &json].concat();
    assert_eq!(from_slice::<Value>(&padded).ok(), Some(value()));
    let list = serde_json::to_vec(&[value(), value()]).unwrap_or_default();
    assert!(is_list(&list));
    assert_eq!(
        from_slice::<Vec<Value>>(&list).ok(),
        Some(vec![value(), value()])
    );
}

#[test]
fn a_list_is_its_header_followed_by_its_records() {
    for len in [0usize, 3, 15, 16, 70_000] {
        let mut list = Vec::new();
        write_list_header(&mut list, len);
        assert!(list.len() <= LIST_HEADER_MAX);
        for i in 0..len {
            write(&mut list, &i).unwrap_or_default();
        }
        assert!(is_list(&list), "{len}");
        let read: Vec<usize> = from_slice(&list).unwrap_or_default();
        assert_eq!(read, (0..len).collect::<Vec<_>>());
    }
}

#[test]
fn invalid_records_are_errors() {
    let bytes = to_vec(&value()).unwrap_or_default();
    assert!(
        from_slice::<Value>(&bytes[..bytes.len() - 3]).is_err(),
        "cut short"
    );
    assert!(from_slice::<Value>(b"\xa2\xff\xfe").is_err(), "not UTF-8");
    assert!(from_slice::<Value>(b"").is_err());
    assert!(from_slice::<Value>(b"{\"a\":").is_err());
    assert!(from_slice::<Value>(b"{\"a\": \"\xff\xfe\"}").is_err());
    assert!(from_slice::<Value>(b"{} trailing").is_err());
    let mut list = Vec::new();
    write_list_header(&mut list, 2);
    write(&mut list, &1).unwrap_or_default();
    assert!(
        from_slice::<Vec<u32>>(&list).is_err(),
        "a list missing a record is never read in part"
    );
}

#[test]
fn errors_are_one_line_without_the_record() {
    let json = from_slice::<Value>(b"{\"secret prompt text\": tru}");
    let record = to_vec(&json!({"secret prompt text": "secret"})).unwrap_or_default();
    let messagepack = from_slice::<Record>(&record);
    for error in [json.err(), messagepack.err()] {
        let text = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(!text.is_empty());
        assert!(!text.contains('\n') && !text.contains("secret"), "{text}");
    }
}

#[test]
fn non_finite_numbers_are_kept() {
    // JSON could only write them as null (which a number field then refused to read).
    let read: Vec<f64> =
        from_slice(&to_vec(&[f64::INFINITY, f64::NEG_INFINITY]).unwrap_or_default())
            .unwrap_or_default();
    assert_eq!(read, vec![f64::INFINITY, f64::NEG_INFINITY]);
    let nan: Vec<f64> = from_slice(&to_vec(&[f64::NAN]).unwrap_or_default()).unwrap_or_default();
    assert!(nan.first().is_some_and(|n| n.is_nan()));
}
