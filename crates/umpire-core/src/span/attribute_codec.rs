//! How attributes (a span's, its events', its resource's) are stored in stream records.
//!
//! Their text values are written as MessagePack `bin`, not `str`. Both carry the text behind
//! its length, but a `str` is checked to be UTF-8 by every reader, even one that skips it:
//! rmp-serde validates each string it meets before handing it on. An evaluator reads only
//! the attributes its policy names and skips the rest — above all `gen_ai.input.messages`
//! and `gen_ai.output.messages`, each a conversation as JSON text — and validating those
//! skipped texts was 7.7k of its 53k instructions per span, half of it on values it then
//! threw away (callgrind, README "Where the time goes"). A `bin` value is skipped by a jump;
//! a reader that keeps one checks it is UTF-8 here, and a value that is not is an error, as
//! a `str` one was. Records written before, with `str` values, read the same; human-readable
//! formats (JSON) keep writing text.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use super::Attributes;

/// `#[serde(serialize_with)]` for attributes: text values as bytes in binary formats.
pub(super) fn write<S: Serializer>(attributes: &Attributes, out: S) -> Result<S::Ok, S::Error> {
    if out.is_human_readable() {
        return attributes.serialize(out);
    }
    let mut map = out.serialize_map(Some(attributes.len()))?;
    for (key, value) in attributes {
        match value {
            Value::String(text) => map.serialize_entry(key, &TextAsBytes(text))?,
            other => map.serialize_entry(key, other)?,
        }
    }
    map.end()
}

struct TextAsBytes<'a>(&'a str);

impl Serialize for TextAsBytes<'_> {
    fn serialize<S: Serializer>(&self, out: S) -> Result<S::Ok, S::Error> {
        out.serialize_bytes(self.0.as_bytes())
    }
}

/// `#[serde(deserialize_with)]` for attributes: every one, text values from `str` or `bin`.
pub(super) fn read<'de, D: Deserializer<'de>>(decoder: D) -> Result<Attributes, D::Error> {
    struct AttributesVisitor;
    impl<'de> Visitor<'de> for AttributesVisitor {
        type Value = Attributes;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of attributes")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
            let mut attributes = Attributes::new();
            while let Some(key) = map.next_key::<String>()? {
                let StoredValue(value) = map.next_value()?;
                attributes.insert(key, value);
            }
            Ok(attributes)
        }
    }
    decoder.deserialize_map(AttributesVisitor)
}

/// An attribute value as stored: what `serde_json::Value` reads, and a text stored as bytes.
pub(super) struct StoredValue(pub(super) Value);

impl<'de> Deserialize<'de> for StoredValue {
    fn deserialize<D: Deserializer<'de>>(decoder: D) -> Result<Self, D::Error> {
        decoder.deserialize_any(StoredValueVisitor).map(StoredValue)
    }
}

/// serde_json's own `Value` visitor, plus bytes read as UTF-8 text.
struct StoredValueVisitor;

impl<'de> Visitor<'de> for StoredValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attribute value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        // As serde_json reads a float it cannot hold (NaN, infinities).
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<Value, E> {
        match std::str::from_utf8(value) {
            Ok(text) => Ok(Value::String(text.to_owned())),
            Err(_) => Err(E::invalid_value(
                de::Unexpected::Bytes(value),
                &"UTF-8 text",
            )),
        }
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, decoder: D) -> Result<Value, D::Error> {
        StoredValue::deserialize(decoder).map(|StoredValue(value)| value)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StoredValue(value)) = seq.next_element()? {
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StoredValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests;
