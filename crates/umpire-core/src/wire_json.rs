//! The JSON codec of the records on Umpire's busiest streams: kept spans (written by
//! ingest, read by evaluators and exporters) and evaluations (written by evaluators, read by
//! alerting and exporters). Every such record passes through here, and nothing else does.
//!
//! Why not `serde_json`, which everything else uses: these records are mostly long texts —
//! prompts, replies, documents, and the `gen_ai.*.messages` attributes, JSON inside a JSON
//! string — and `serde_json` escapes and unescapes them a byte at a time. `sonic-rs` does
//! the same with 16-byte SIMD (SSE2 on every x86-64, NEON on aarch64; no `target-cpu`
//! needed), through the same `serde` traits, so the types and their JSON are unchanged.
//! Counted with callgrind, writing a kept span dropped from 84.6k to 62.3k instructions
//! (README, "Where the time goes"). Config, Kubernetes objects, OTLP/JSON from clients and
//! small control records stay on `serde_json`.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A record that could not be written or read: what is wrong and where, on one line.
/// (`sonic-rs` appends a fragment of the input on further lines; that would copy message
/// contents into logs and dead-letter headers, which must be one line.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

impl From<sonic_rs::Error> for Error {
    fn from(error: sonic_rs::Error) -> Self {
        let text = error.to_string();
        Self(
            text.lines()
                .next()
                .unwrap_or_default()
                .trim_end()
                .to_owned(),
        )
    }
}

/// Appends `value`'s JSON to `out`.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    Ok(sonic_rs::to_writer(out, value)?)
}

/// `value` as JSON.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    Ok(sonic_rs::to_vec(value)?)
}

/// Reads a record (or an array of them) from JSON, checking it is valid UTF-8.
pub fn from_slice<T: DeserializeOwned>(json: &[u8]) -> Result<T, Error> {
    Ok(sonic_rs::from_slice(json)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// What this codec writes, `serde_json` reads back as the same value, and the other way
    /// round: readers on either side of an upgrade agree.
    #[test]
    fn agrees_with_serde_json_both_ways() {
        let value = json!({
            "text": "quote \" backslash \\ newline \n tab \t nul \u{0} é 🦀 \u{2028}",
            "nested": "[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"content\":\"hi\"}]}]",
            "numbers": [0, -1, u64::MAX, 1.5, 1e-7, 12345678.125],
            "nothing": null, "yes": true, "empty": {}, "list": [],
        });
        let ours = to_vec(&value).unwrap_or_default();
        assert_eq!(
            serde_json::from_slice::<Value>(&ours).ok(),
            Some(value.clone())
        );
        let theirs = serde_json::to_vec(&value).unwrap_or_default();
        assert_eq!(from_slice::<Value>(&theirs).ok(), Some(value));
    }

    #[test]
    fn invalid_json_and_invalid_utf8_are_errors() {
        assert!(from_slice::<Value>(b"{\"a\":").is_err());
        assert!(from_slice::<Value>(b"\"\xff\xfe\"").is_err());
        assert!(from_slice::<Value>(b"{} trailing").is_err());
    }

    #[test]
    fn errors_are_one_line_without_the_input() {
        let error = from_slice::<Value>(b"{\"secret prompt text\": tru}")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("line 1 column"), "{error}");
        assert!(
            !error.contains('\n') && !error.contains("secret"),
            "{error}"
        );
    }

    #[test]
    fn non_finite_numbers_are_written_as_null() {
        assert_eq!(
            to_vec(&[f64::NAN, f64::INFINITY]).unwrap_or_default(),
            b"[null,null]"
        );
    }
}
