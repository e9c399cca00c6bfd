//! Reading span-stream messages for a reader that needs less than the whole span.
//!
//! A kept chat span carries its prompt and reply in its attributes as the instrumentation
//! sent them (`gen_ai.input.messages` — JSON inside a JSON string — or `input.value`,
//! `llm.input_messages.*`, …) and again in the GenAI view normalisation built from them.
//! Exporters need the former; judges read the view, and an evaluator reads attributes only
//! where its policy names them (a judge's `attributes.<key>` or `resource.<key>` field, a
//! selector, a `groupBy` — the last two also find resource attributes) and for the
//! evaluation's `gen_ai.response.id`; the same holds for the resource's attributes. Decoding the rest — allocating
//! each key and value, unescaping kilobytes — was the largest single cost of an evaluator's
//! span, so [`SpanReading::for_policy`] decodes only the keys the policy's text names.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use super::attribute_codec::{self, StoredValue};
use super::{Attributes, MessageSpans};
use crate::stream_codec;

/// Attributes an evaluator reads whatever its policy says (the evaluation carries it).
const ALWAYS_READ: [&str; 1] = ["gen_ai.response.id"];

/// How a reader decodes span attributes.
#[derive(Debug, Clone, Default)]
pub struct SpanReading {
    /// None: every attribute.
    named: Option<Arc<NamedKeys>>,
}

/// The attribute keys a policy's text names, as the words it is made of.
#[derive(Debug, Default)]
struct NamedKeys {
    /// Looked up once per attribute of every span read: with the standard library's
    /// SipHash, deciding which keys to skip cost more than skipping them (4.7k instructions
    /// per span of the evaluator bench). The set is built from the policy, not from spans,
    /// so a fast hash cannot be flooded with colliding entries.
    words: HashSet<Box<str>, foldhash::fast::RandomState>,
}

impl NamedKeys {
    /// Every run of key characters in `text`, and each of its parts after a dot — so that
    /// `attributes.app.tenant` (a field), `{{attributes.x}}` (a template) or a quoted
    /// `app.tenant` (a selector) all name `app.tenant`.
    fn of(text: &str) -> Self {
        let mut words = HashSet::default();
        for word in text
            .split(|c: char| !is_key_char(c))
            .filter(|w| !w.is_empty())
        {
            words.insert(Box::from(word));
            for (dot, _) in word.match_indices('.') {
                words.insert(Box::from(&word[dot + 1..]));
            }
        }
        Self { words }
    }

    /// Conservative: a key with characters a word cannot hold (spaces, quotes, non-ASCII)
    /// might be named in a form the split does not find, so it is decoded.
    fn keeps(&self, key: &str) -> bool {
        self.words.contains(key)
            || ALWAYS_READ.contains(&key)
            || !key.bytes().all(|b| is_key_char(char::from(b)))
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@')
}

thread_local! {
    /// The keys the attribute decoder of this thread keeps while a [`SpanReading`] reads:
    /// serde's derived decoders take no context, and a span is decoded on one thread from
    /// start to end.
    static NAMED: RefCell<Option<Arc<NamedKeys>>> = const { RefCell::new(None) };
}

impl SpanReading {
    /// Every attribute decoded.
    pub fn whole() -> Self {
        Self::default()
    }

    /// Decodes only the attributes `policy` (its text: JSON or YAML) names, and
    /// `gen_ai.response.id`.
    pub fn for_policy(policy: &str) -> Self {
        Self {
            named: Some(Arc::new(NamedKeys::of(policy))),
        }
    }

    /// Whether every attribute is decoded.
    pub fn decodes_all(&self) -> bool {
        self.named.is_none()
    }

    /// Whether this reading decodes attribute `key`.
    pub fn decodes(&self, key: &str) -> bool {
        self.named.as_ref().is_none_or(|named| named.keeps(key))
    }

    /// Reads a span-stream message, single span or batch.
    pub fn read(&self, payload: &[u8]) -> Result<MessageSpans, stream_codec::Error> {
        let Some(named) = &self.named else {
            return MessageSpans::read(payload);
        };
        let previous = NAMED.with(|current| current.replace(Some(named.clone())));
        // Restored even if decoding panics, so that no other reader on this thread skips.
        let _restore = Restore(previous);
        MessageSpans::read(payload)
    }
}

struct Restore(Option<Arc<NamedKeys>>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        NAMED.with(|current| current.replace(previous));
    }
}

/// The decoder of a span's attributes and of its resource's: all of them, or those the
/// thread's reading keeps.
pub(super) fn attributes<'de, D: Deserializer<'de>>(decoder: D) -> Result<Attributes, D::Error> {
    match NAMED.with(|current| current.borrow().clone()) {
        None => attribute_codec::read(decoder),
        Some(named) => decoder.deserialize_map(SkippingVisitor(named)),
    }
}

struct SkippingVisitor(Arc<NamedKeys>);

impl<'de> Visitor<'de> for SkippingVisitor {
    type Value = Attributes;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of span attributes")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
        let mut attributes = Attributes::new();
        while let Some(Key(key)) = map.next_key()? {
            if self.0.keeps(&key) {
                let StoredValue(value) = map.next_value()?;
                attributes.insert(key.into_owned(), value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(attributes)
    }
}

/// A map key borrowed from the input where it has no escapes (no allocation for a key that
/// is then skipped or only compared).
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

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
