//! A span as stored on the span stream: a record ([`crate::stream_codec`]) that fits the
//! stream's message budget. What does not fit is cut, largest first, and named in
//! `truncated`:
//!
//! 1. long texts — attribute values, the GenAI view's texts, messages, tool-call arguments
//!    and results, documents, event attributes, resource attributes — end in a marker;
//! 2. then, for spans of very many small values, whole collections: events, then
//!    attributes, then resource attributes (largest entries first).
//!
//! A span that still does not fit (its GenAI view alone exceeds the budget) is an error:
//! the publisher dead-letters it with the reason instead of retrying it for ever.

use serde_json::Value;

use super::Span;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("encoding the span: {0}")]
    Encode(#[from] crate::stream_codec::Error),
    #[error(
        "the span takes {bytes} bytes after truncation, more than the {limit} a message may carry"
    )]
    TooLarge { bytes: usize, limit: usize },
}

/// The buffer a span's record starts in.
const WIRE_CAPACITY: usize = 8 * 1024;

/// Texts shorter than this are never cut (a marker would not save anything).
const SHORTEST_CUT: usize = 128;

impl Span {
    /// Serialises the span to its wire form within `max_bytes`, cutting as the module says.
    pub fn to_wire(&mut self, max_bytes: usize) -> Result<Vec<u8>, WireError> {
        // A GenAI span's record is kilobytes: starting there saves the growing buffer's
        // reallocations and copies (a few percent of ingest's kept path).
        let mut record = Vec::with_capacity(WIRE_CAPACITY.min(max_bytes));
        crate::stream_codec::write(&mut record, self)?;
        for _ in 0..256 {
            if record.len() <= max_bytes {
                return Ok(record);
            }
            let excess = record.len() - max_bytes;
            let Some((name, text)) = self.longest_text() else {
                break;
            };
            // A little extra: the cut's marker is added to the text.
            let target = text.len().saturating_sub(excess + excess / 8 + 64);
            let mut cut = target;
            while cut > 0 && !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let removed = text.len() - cut;
            if removed == 0 {
                break;
            }
            text.truncate(cut);
            text.push_str(&format!("…[truncated by umpire: {removed} bytes]"));
            if !self.truncated.contains(&name) {
                self.truncated.push(name);
            }
            record = crate::stream_codec::to_vec(self)?;
        }
        if record.len() > max_bytes && !self.events.is_empty() {
            self.truncated
                .push(format!("events ({} dropped)", self.events.len()));
            self.events.clear();
            record = crate::stream_codec::to_vec(self)?;
        }
        for resource in [false, true] {
            if record.len() <= max_bytes {
                break;
            }
            // Room for the note this adds to `truncated`.
            let excess = record.len() - max_bytes + 256;
            let (map, label) = if resource {
                (&mut self.resource, "resource")
            } else {
                (&mut self.attributes, "attributes")
            };
            let dropped = shed(map, excess);
            if dropped > 0 {
                self.truncated.push(format!("{label} ({dropped} dropped)"));
                record = crate::stream_codec::to_vec(self)?;
            }
        }
        if record.len() > max_bytes {
            return Err(WireError::TooLarge {
                bytes: record.len(),
                limit: max_bytes,
            });
        }
        Ok(record)
    }

    fn longest_text(&mut self) -> Option<(String, &mut String)> {
        let mut candidates: Vec<(String, &mut String)> = Vec::new();
        for (key, value) in self.attributes.iter_mut() {
            if let Value::String(text) = value {
                candidates.push((format!("attributes.{key}"), text));
            }
        }
        for (key, value) in self.resource.iter_mut() {
            if let Value::String(text) = value {
                candidates.push((format!("resource.{key}"), text));
            }
        }
        for (i, event) in self.events.iter_mut().enumerate() {
            for (key, value) in event.attributes.iter_mut() {
                if let Value::String(text) = value {
                    candidates.push((format!("events[{i}].{key}"), text));
                }
            }
        }
        if self.status.message.len() > SHORTEST_CUT {
            candidates.push(("status.message".to_owned(), &mut self.status.message));
        }
        let ai = &mut self.ai;
        for (name, text) in [
            ("ai.input", ai.explicit_input.as_mut()),
            ("ai.output", ai.explicit_output.as_mut()),
            ("ai.systemInstructions", ai.system_instructions.as_mut()),
        ] {
            if let Some(text) = text {
                candidates.push((name.to_owned(), text));
            }
        }
        for (i, message) in ai.input_messages.iter_mut().enumerate() {
            if let Some(text) = message.content.as_mut() {
                candidates.push((format!("ai.inputMessages[{i}]"), text));
            }
        }
        for (i, message) in ai.output_messages.iter_mut().enumerate() {
            if let Some(text) = message.content.as_mut() {
                candidates.push((format!("ai.outputMessages[{i}]"), text));
            }
        }
        for (i, call) in ai.tool_calls.iter_mut().enumerate() {
            if let Some(text) = call.arguments.as_mut() {
                candidates.push((format!("ai.toolCalls[{i}].arguments"), text));
            }
        }
        for (i, document) in ai.documents.iter_mut().enumerate() {
            if let Some(text) = document.content.as_mut() {
                candidates.push((format!("ai.documents[{i}]"), text));
            }
        }
        if let Some(tool) = ai.tool.as_mut() {
            for (name, text) in [
                ("ai.tool.arguments", tool.arguments.as_mut()),
                ("ai.tool.result", tool.result.as_mut()),
            ] {
                if let Some(text) = text {
                    candidates.push((name.to_owned(), text));
                }
            }
        }
        candidates
            .into_iter()
            .filter(|(_, t)| t.len() > SHORTEST_CUT)
            .max_by_key(|(_, t)| t.len())
    }
}

/// Removes the largest entries of `map` until `excess` bytes are gone; returns how many it
/// removed.
fn shed(map: &mut super::Attributes, excess: usize) -> usize {
    use crate::stream_codec::encoded_len;
    let mut sizes: Vec<(usize, String)> = map
        .iter()
        .map(|(key, value)| (encoded_len(key) + encoded_len(value), key.clone()))
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let (mut freed, mut dropped) = (0, 0);
    for (size, key) in sizes {
        if freed >= excess {
            break;
        }
        map.remove(&key);
        freed += size;
        dropped += 1;
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SpanId, TraceId};
    use crate::span::{AiView, Attributes, OtelSpanKind, Scope, Status, ToolCall};

    fn span_with(content: &str) -> Span {
        Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            parent_span_id: None,
            name: "chat".into(),
            kind: OtelSpanKind::Client,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            status: Status::default(),
            attributes: [("input.value".to_owned(), Value::String(content.to_owned()))]
                .into_iter()
                .collect(),
            events: Vec::new(),
            resource: Attributes::new(),
            scope: Scope::default(),
            ai: AiView {
                explicit_input: Some(content.to_owned()),
                ..AiView::default()
            },
            truncated: Vec::new(),
        }
    }

    #[test]
    fn small_spans_are_unchanged() {
        let mut span = span_with("hello");
        let wire = span.to_wire(10_000).unwrap();
        assert_eq!(
            crate::stream_codec::from_slice::<Span>(&wire).unwrap(),
            span_with("hello")
        );
    }

    #[test]
    fn large_spans_are_shortened_with_markers() {
        let mut span = span_with(&"é\"x".repeat(200_000));
        let wire = span.to_wire(100_000).unwrap();
        assert!(wire.len() <= 100_000, "{}", wire.len());
        let back: Span = crate::stream_codec::from_slice(&wire).unwrap();
        assert!(back.ai.input_text().unwrap_or_default().ends_with("bytes]"));
        assert_eq!(back.truncated, ["ai.input", "attributes.input.value"]);
    }

    #[test]
    fn very_many_small_attributes_are_shed_largest_first() {
        let mut span = span_with("hello");
        for i in 0..60_000 {
            span.attributes.insert(
                format!("app.field.{i}"),
                Value::String(format!("value-{i:012}")),
            );
        }
        let wire = span.to_wire(100_000).unwrap();
        assert!(wire.len() <= 100_000, "{}", wire.len());
        let back: Span = crate::stream_codec::from_slice(&wire).unwrap();
        assert!(
            back.truncated.iter().any(|t| t.starts_with("attributes (")),
            "{:?}",
            back.truncated
        );
        assert_eq!(back.ai.input_text(), Some("hello"));
    }

    #[test]
    fn a_span_whose_genai_view_alone_is_too_large_is_refused() {
        let mut span = span_with("hello");
        span.ai.tool_calls = (0..20_000)
            .map(|i| ToolCall {
                id: Some(format!("call_{i}")),
                name: format!("tool_{i}"),
                arguments: None,
            })
            .collect();
        match span.to_wire(100_000) {
            Err(WireError::TooLarge { bytes, limit }) => {
                assert!(bytes > limit);
                assert_eq!(limit, 100_000);
            }
            other => panic!("expected TooLarge, got {:?}", other.map(|w| w.len())),
        }
    }
}
