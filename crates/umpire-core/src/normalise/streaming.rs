//! Time to first token, where each instrumentation records it.
//!
//! - OpenTelemetry GenAI conventions: `gen_ai.response.time_to_first_chunk`, seconds from
//!   the request (a span attribute, for streaming calls).
//! - `gen_ai.response.time_to_first_token`, seconds (Sentry's and other SDKs' name for the
//!   same).
//! - OpenInference: the span event `First Token Stream Event`, added when the first chunk
//!   arrives (no attributes: its timestamp is the signal).
//! - OpenLLMetry and the older GenAI event conventions: one event per streamed chunk
//!   (`llm.content.completion.chunk`, `gen_ai.content.completion.chunk`): the first one's
//!   timestamp.
//!
//! Events are measured from the span's start; an attribute is taken as it is.

use serde_json::Value;

use crate::span::{Attributes, SpanEvent};

const SECONDS_ATTRIBUTES: [&str; 2] = [
    "gen_ai.response.time_to_first_chunk",
    "gen_ai.response.time_to_first_token",
];

const FIRST_CHUNK_EVENTS: [&str; 3] = [
    "First Token Stream Event",
    "llm.content.completion.chunk",
    "gen_ai.content.completion.chunk",
];

/// Milliseconds from the span's start to its first streamed token, if it records one.
pub fn time_to_first_token_ms(
    attributes: &Attributes,
    events: &[SpanEvent],
    start_unix_nano: u64,
) -> Option<f64> {
    let from_attribute = SECONDS_ATTRIBUTES.iter().find_map(|key| {
        let seconds = match attributes.get(*key)? {
            Value::Number(n) => n.as_f64()?,
            Value::String(s) => s.trim().parse().ok()?,
            _ => return None,
        };
        (seconds.is_finite() && seconds >= 0.0).then_some(seconds * 1e3)
    });
    from_attribute.or_else(|| {
        let first = events
            .iter()
            .filter(|e| FIRST_CHUNK_EVENTS.contains(&e.name.as_str()))
            .map(|e| e.time_unix_nano)
            .filter(|t| *t >= start_unix_nano && start_unix_nano > 0)
            .min()?;
        Some((first - start_unix_nano) as f64 / 1e6)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, at: u64) -> SpanEvent {
        SpanEvent {
            name: name.into(),
            time_unix_nano: at,
            attributes: Attributes::new(),
        }
    }

    #[test]
    fn each_convention() {
        let start = 1_000_000_000;
        let mut attributes = Attributes::new();
        attributes.insert(
            "gen_ai.response.time_to_first_chunk".into(),
            serde_json::json!(0.25),
        );
        assert_eq!(time_to_first_token_ms(&attributes, &[], start), Some(250.0));
        let openinference = [event("First Token Stream Event", start + 412_000_000)];
        assert_eq!(
            time_to_first_token_ms(&Attributes::new(), &openinference, start),
            Some(412.0)
        );
        let chunks = [
            event("llm.content.completion.chunk", start + 90_000_000),
            event("llm.content.completion.chunk", start + 80_000_000),
            event("gen_ai.content.prompt", start + 1_000_000),
        ];
        assert_eq!(
            time_to_first_token_ms(&Attributes::new(), &chunks, start),
            Some(80.0)
        );
        assert_eq!(time_to_first_token_ms(&Attributes::new(), &[], start), None);
        // An attribute wins over events; a negative or malformed one is ignored.
        attributes.insert(
            "gen_ai.response.time_to_first_chunk".into(),
            serde_json::json!(-1),
        );
        assert_eq!(
            time_to_first_token_ms(&attributes, &openinference, start),
            Some(412.0)
        );
    }
}
