//! Addressing a piece of a span: what a judge reads and what a template variable maps to.

use std::fmt;
use std::str::FromStr;

/// A field of a normalised span that judges and prompt templates can read.
///
/// Written in resources as `input`, `output`, `context`, `system`, `messages`,
/// `toolArguments`, `attributes.<key>` or `resource.<key>` (attribute keys keep their dots:
/// `attributes.gen_ai.request.model`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpanField {
    /// The prompt / request text (last user message, or `input.value`).
    Input,
    /// The completion / response text (`output.value`, output messages).
    Output,
    /// Retrieved documents, joined — what groundedness is judged against.
    Context,
    /// System instructions given to the model.
    System,
    /// Every input and output message's content, joined (the whole conversation a span
    /// carries, not only the last user message).
    Messages,
    /// The arguments of the tool calls a model asked for and of the tool a tool span ran.
    ToolArguments,
    /// A span attribute by key.
    Attribute(String),
    /// A resource attribute by key (e.g. `service.version`).
    Resource(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown span field `{0}`: use input, output, context, system, messages, toolArguments, attributes.<key> or resource.<key>"
)]
pub struct UnknownSpanField(pub String);

impl FromStr for SpanField {
    type Err = UnknownSpanField;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let keyed = |prefix: &str| {
            text.strip_prefix(prefix)
                .filter(|key| !key.is_empty())
                .map(str::to_owned)
        };
        match text {
            "input" => Ok(Self::Input),
            "output" => Ok(Self::Output),
            "context" => Ok(Self::Context),
            "system" => Ok(Self::System),
            "messages" => Ok(Self::Messages),
            "toolArguments" => Ok(Self::ToolArguments),
            _ => keyed("attributes.")
                .map(Self::Attribute)
                .or_else(|| keyed("resource.").map(Self::Resource))
                .ok_or_else(|| UnknownSpanField(text.to_owned())),
        }
    }
}

impl fmt::Display for SpanField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Input => f.write_str("input"),
            Self::Output => f.write_str("output"),
            Self::Context => f.write_str("context"),
            Self::System => f.write_str("system"),
            Self::Messages => f.write_str("messages"),
            Self::ToolArguments => f.write_str("toolArguments"),
            Self::Attribute(key) => write!(f, "attributes.{key}"),
            Self::Resource(key) => write!(f, "resource.{key}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for text in [
            "input",
            "output",
            "context",
            "system",
            "messages",
            "toolArguments",
            "attributes.gen_ai.request.model",
            "resource.service.version",
        ] {
            let field: SpanField = text.parse().unwrap();
            assert_eq!(field.to_string(), text);
        }
        assert_eq!(
            "attributes.a.b".parse::<SpanField>().unwrap(),
            SpanField::Attribute("a.b".into())
        );
    }

    #[test]
    fn rejects_unknown_and_empty_keys() {
        for text in ["prompt", "attributes.", "resource.", "", "Output"] {
            assert!(
                text.parse::<SpanField>().is_err(),
                "{text} should be rejected"
            );
        }
    }
}
