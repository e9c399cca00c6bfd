//! `gen_ai.input.messages`, `gen_ai.output.messages` and `gen_ai.system_instructions` (JSON
//! text, or already structured) read straight into what the view keeps.
//!
//! They hold a chat span's prompt and reply, usually the largest part of a kept span, and
//! ingest reads them for every kept span. Parsed into a `serde_json::Value` first, each
//! message and part became a map of owned keys and values that was then searched and
//! copied again: 10.8k of the 36.6k instructions normalising a kept span of the ingest
//! benchmark took. Here texts stay borrowed from the input where they have no escapes and
//! are copied once, into the message; keys are never allocated. Any JSON shape is accepted
//! where the conventions expect an object or a text, with the meaning the `Value` reading
//! gave it (test `normalise::tests::genai_json_messages_of_every_shape`).

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::span::{Key, Message, ToolCall};

/// A visitor's answer to null, a boolean or a number where it expects another shape.
macro_rules! any_scalar {
    ($value:ty, $answer:expr) => {
        fn visit_unit<E>(self) -> Result<$value, E> {
            Ok($answer)
        }
        fn visit_none<E>(self) -> Result<$value, E> {
            Ok($answer)
        }
        fn visit_bool<E>(self, _: bool) -> Result<$value, E> {
            Ok($answer)
        }
        fn visit_i64<E>(self, _: i64) -> Result<$value, E> {
            Ok($answer)
        }
        fn visit_u64<E>(self, _: u64) -> Result<$value, E> {
            Ok($answer)
        }
        fn visit_f64<E>(self, _: f64) -> Result<$value, E> {
            Ok($answer)
        }
    };
}

/// Messages of a `gen_ai.*.messages` attribute; none unless it is a JSON list.
pub(super) fn genai_messages(value: Option<&Value>) -> Vec<Message> {
    let Some(value) = value else {
        return Vec::new();
    };
    let parsed = match value {
        Value::String(text) => serde_json::from_str::<Vec<WireMessage>>(text),
        Value::Array(_) => Vec::<WireMessage>::deserialize(value),
        _ => return Vec::new(),
    };
    parsed
        .map(|list| list.into_iter().map(WireMessage::into_message).collect())
        .unwrap_or_default()
}

/// The texts of a list of parts (`[{type: text, content}]` or strings), one per line; the
/// text itself when it is not such a list.
pub(super) fn parts_text(value: &Value) -> String {
    let parsed = match value {
        Value::String(text) => serde_json::from_str::<Vec<Part>>(text),
        Value::Array(_) => Vec::<Part>::deserialize(value),
        _ => return String::new(),
    };
    match parsed {
        Ok(parts) => parts
            .into_iter()
            .filter_map(|part| match part {
                Part::Loose(text) => Some(text.into_owned()),
                Part::Object(fields) => fields.text(),
                Part::Other => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(_) => value.as_str().map(str::to_owned).unwrap_or_default(),
    }
}

/// A JSON value read for its text: a string borrowed where it can be, anything else kept as
/// a value (rare: numbers, objects where a text was expected).
enum Field<'a> {
    Null,
    Text(Cow<'a, str>),
    Other(Value),
}

impl Field<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Field::Text(text) => Some(text),
            _ => None,
        }
    }

    /// None for null, else the text: a string as it is, anything else (tool-call arguments
    /// given as an object, say) as its JSON.
    fn into_text(self) -> Option<String> {
        match self {
            Field::Null => None,
            Field::Text(text) => Some(text.into_owned()),
            Field::Other(value) => Some(value.to_string()),
        }
    }

    /// As [`Field::into_text`], with "" as none.
    fn non_empty_text(self) -> Option<String> {
        self.into_text().filter(|text| !text.is_empty())
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(decoder: D) -> Result<Self, D::Error> {
        decoder.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }
    fn visit_none<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }
    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::Text(Cow::Borrowed(text)))
    }
    fn visit_str<E>(self, text: &str) -> Result<Field<'de>, E> {
        Ok(Field::Text(Cow::Owned(text.to_owned())))
    }
    fn visit_string<E>(self, text: String) -> Result<Field<'de>, E> {
        Ok(Field::Text(Cow::Owned(text)))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<'de>, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(Field::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field<'de>, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(Field::Other)
    }
}

/// One element of a message's `parts`.
// Parts live only while their message is read, a few in one Vec: boxing the large variant
// would add an allocation per part to save memory no one holds.
#[allow(clippy::large_enum_variant)]
enum Part<'a> {
    Object(PartFields<'a>),
    /// A plain string in a list of parts (system instructions may be written so).
    Loose(Cow<'a, str>),
    Other,
}

/// The fields of a part the view reads; `Some(Field::Null)` is a field present as null,
/// which (as in the JSON object) hides a fallback field.
#[derive(Default)]
struct PartFields<'a> {
    kind: Option<Field<'a>>,
    content: Option<Field<'a>>,
    text: Option<Field<'a>>,
    id: Option<Field<'a>>,
    name: Option<Field<'a>>,
    arguments: Option<Field<'a>>,
    response: Option<Field<'a>>,
    result: Option<Field<'a>>,
}

impl<'a> PartFields<'a> {
    fn kind(&self) -> Option<&str> {
        self.kind.as_ref().and_then(Field::as_str)
    }

    /// A text part's text (parts without a `type` are text).
    fn text(self) -> Option<String> {
        if self.kind().unwrap_or("text") != "text" {
            return None;
        }
        self.content.or(self.text).and_then(Field::non_empty_text)
    }
}

impl<'de> Deserialize<'de> for Part<'de> {
    fn deserialize<D: Deserializer<'de>>(decoder: D) -> Result<Self, D::Error> {
        decoder.deserialize_any(PartVisitor)
    }
}

struct PartVisitor;

impl<'de> Visitor<'de> for PartVisitor {
    type Value = Part<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a message part")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Part<'de>, A::Error> {
        let mut part = PartFields::default();
        while let Some(Key(key)) = map.next_key()? {
            let slot = match key.as_ref() {
                "type" => &mut part.kind,
                "content" => &mut part.content,
                "text" => &mut part.text,
                "id" => &mut part.id,
                "name" => &mut part.name,
                "arguments" => &mut part.arguments,
                "response" => &mut part.response,
                "result" => &mut part.result,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(Part::Object(part))
    }
    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Part<'de>, E> {
        Ok(Part::Loose(Cow::Borrowed(text)))
    }
    fn visit_str<E>(self, text: &str) -> Result<Part<'de>, E> {
        Ok(Part::Loose(Cow::Owned(text.to_owned())))
    }
    fn visit_string<E>(self, text: String) -> Result<Part<'de>, E> {
        Ok(Part::Loose(Cow::Owned(text)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Part<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Part::Other)
    }
    any_scalar!(Part<'de>, Part::Other);
}

/// One element of a messages list: `{role, parts: [...], finish_reason}`.
#[derive(Default)]
struct WireMessage<'a> {
    role: Option<Field<'a>>,
    parts: Vec<Part<'a>>,
}

impl WireMessage<'_> {
    fn into_message(self) -> Message {
        let role = self
            .role
            .as_ref()
            .and_then(Field::as_str)
            .unwrap_or("user")
            .to_owned();
        let mut texts = Vec::new();
        let mut tool_calls = Vec::new();
        let mut response = None;
        for part in self.parts {
            let Part::Object(part) = part else { continue };
            match part.kind() {
                Some("tool_call") => tool_calls.push(ToolCall {
                    id: part.id.and_then(Field::non_empty_text),
                    name: part
                        .name
                        .and_then(Field::non_empty_text)
                        .unwrap_or_default(),
                    arguments: part.arguments.and_then(Field::into_text),
                }),
                Some("tool_call_response") => {
                    if response.is_none() {
                        response = Some(part);
                    }
                }
                _ => texts.extend(part.text()),
            }
        }
        let (content, tool_call_id) = match response {
            Some(response) => (
                response.response.or(response.result),
                response.id.and_then(Field::non_empty_text),
            ),
            None => (None, None),
        };
        let content = if texts.is_empty() {
            content.and_then(Field::non_empty_text)
        } else {
            Some(texts.join("\n"))
        };
        Message {
            role,
            content,
            tool_calls,
            tool_call_id,
        }
    }
}

impl<'de> Deserialize<'de> for WireMessage<'de> {
    fn deserialize<D: Deserializer<'de>>(decoder: D) -> Result<Self, D::Error> {
        decoder.deserialize_any(MessageVisitor)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = WireMessage<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a message")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireMessage<'de>, A::Error> {
        let mut message = WireMessage::default();
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "role" => message.role = Some(map.next_value()?),
                "parts" => message.parts = map.next_value::<PartList>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(message)
    }
    // Anything but an object is a message with no role and no parts.
    fn visit_str<E>(self, _: &str) -> Result<WireMessage<'de>, E> {
        Ok(WireMessage::default())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<WireMessage<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(WireMessage::default())
    }
    any_scalar!(WireMessage<'de>, WireMessage::default());
}

/// A message's `parts`: none unless it is a list.
struct PartList<'a>(Vec<Part<'a>>);

impl<'de> Deserialize<'de> for PartList<'de> {
    fn deserialize<D: Deserializer<'de>>(decoder: D) -> Result<Self, D::Error> {
        decoder.deserialize_any(PartListVisitor)
    }
}

struct PartListVisitor;

impl<'de> Visitor<'de> for PartListVisitor {
    type Value = PartList<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of message parts")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PartList<'de>, A::Error> {
        let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
        while let Some(part) = seq.next_element()? {
            parts.push(part);
        }
        Ok(PartList(parts))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PartList<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(PartList(Vec::new()))
    }
    fn visit_str<E>(self, _: &str) -> Result<PartList<'de>, E> {
        Ok(PartList(Vec::new()))
    }
    any_scalar!(PartList<'de>, PartList(Vec::new()));
}
