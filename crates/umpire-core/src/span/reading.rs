//! Reading span-stream messages for a reader that needs less than the whole span.
//!
//! A kept chat span carries its prompt and reply several times: as the instrumentation sent
//! them (`gen_ai.input.messages` — JSON inside a JSON string — or `input.value`,
//! `llm.input_messages.*`, …) and in the GenAI view normalisation built from them
//! (`ai.inputMessages`, `ai.input`, …). Exporters need the former; judges read the view.
//! Decoding those attributes was the largest single cost of an evaluator's span (allocating
//! and unescaping kilobytes per span), so an evaluator skips them — unless its policy names
//! them anywhere (a judge's `attributes.<key>` field, a selector, a `groupBy`), in which
//! case they are decoded as usual.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::{Attributes, MessageSpans};
use crate::wire_json;

/// Attribute keys (or key prefixes) whose content normalisation copies into the GenAI view:
/// prompts, replies, system instructions, tool definitions, tool arguments and results,
/// retrieved documents.
pub const VIEW_SOURCES: [&str; 15] = [
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.prompt",
    "gen_ai.completion",
    "input.value",
    "output.value",
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.tools.",
    "retrieval.documents.",
    "tool.parameters",
];

/// How a reader decodes span attributes.
#[derive(Debug, Clone, Default)]
pub struct SpanReading {
    /// Keys starting with one of these are skipped (not decoded, not kept).
    skipped: Arc<[&'static str]>,
}

thread_local! {
    /// The prefixes the attribute decoder of this thread skips while a [`SpanReading`]
    /// reads: serde's derived decoders take no context, and a span is decoded on one thread
    /// from start to end.
    static SKIPPED: RefCell<Arc<[&'static str]>> = RefCell::new(Arc::new([]));
}

impl SpanReading {
    /// Every attribute decoded.
    pub fn whole() -> Self {
        Self::default()
    }

    /// Skips the [`VIEW_SOURCES`] that `policy` (its text: JSON or YAML) does not mention.
    /// Conservative by construction: a reference to any key under a source contains the
    /// source's name, so a referenced attribute is always decoded.
    pub fn for_policy(policy: &str) -> Self {
        Self {
            skipped: VIEW_SOURCES
                .into_iter()
                .filter(|source| !policy.contains(source))
                .collect(),
        }
    }

    /// The attribute keys (or prefixes) this reading skips.
    pub fn skipped(&self) -> &[&'static str] {
        &self.skipped
    }

    /// Reads a span-stream message, single span or batch.
    pub fn read(&self, payload: &[u8]) -> Result<MessageSpans, wire_json::Error> {
        if self.skipped.is_empty() {
            return MessageSpans::read(payload);
        }
        let previous = SKIPPED.with(|skipped| skipped.replace(self.skipped.clone()));
        // Restored even if decoding panics, so that no other reader on this thread skips.
        let _restore = Restore(previous);
        MessageSpans::read(payload)
    }
}

struct Restore(Arc<[&'static str]>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = std::mem::take(&mut self.0);
        SKIPPED.with(|skipped| skipped.replace(previous));
    }
}

/// `Span::attributes`' decoder: all of them, or those the thread's reading does not skip.
pub(super) fn attributes<'de, D: Deserializer<'de>>(decoder: D) -> Result<Attributes, D::Error> {
    let skipped = SKIPPED.with(|skipped| skipped.borrow().clone());
    if skipped.is_empty() {
        return serde::Deserialize::deserialize(decoder);
    }
    decoder.deserialize_map(SkippingVisitor(skipped))
}

struct SkippingVisitor(Arc<[&'static str]>);

impl<'de> Visitor<'de> for SkippingVisitor {
    type Value = Attributes;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of span attributes")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
        let mut attributes = Attributes::new();
        while let Some(Key(key)) = map.next_key()? {
            if self.0.iter().any(|prefix| key.starts_with(prefix)) {
                map.next_value::<IgnoredAny>()?;
            } else {
                let value: Value = map.next_value()?;
                attributes.insert(key.into_owned(), value);
            }
        }
        Ok(attributes)
    }
}

/// A map key borrowed from the input where it has no escapes (no allocation for a key that
/// is then skipped).
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(decoder: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an attribute key")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
            fn visit_string<E>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }
        decoder.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests;
