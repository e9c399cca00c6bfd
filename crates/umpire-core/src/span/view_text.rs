//! The GenAI view's request and response texts (`input`, `output`) are, for almost every
//! span, text the view already holds: the last user message and the replies, or a tool's
//! arguments and result. Stored again, every prompt and reply would travel a third time on
//! the span stream (the raw attribute, the messages, the text) — about a quarter of a chat
//! span's bytes, which every evaluator parses. So the view stores them only when it holds
//! nothing they could be derived from (a span's `input.value` without messages; see
//! `normalise::read_ai_view`), and readers derive them otherwise. Spans written with both
//! read the same.

use std::borrow::Cow;

use super::AiView;

impl AiView {
    /// The request as text: the last user message, else `input.value` (a tool's arguments
    /// for a tool span).
    pub fn input_text(&self) -> Option<&str> {
        self.explicit_input
            .as_deref()
            .or_else(|| self.derived_input())
    }

    /// The response as text: the output messages' text, one per line, else `output.value`
    /// (a tool's result for a tool span).
    pub fn output_text(&self) -> Option<Cow<'_, str>> {
        self.explicit_output
            .as_deref()
            .map(Cow::Borrowed)
            .or_else(|| self.derived_output())
    }

    fn derived_input(&self) -> Option<&str> {
        match &self.tool {
            Some(tool) => tool.arguments.as_deref(),
            None => self
                .input_messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .and_then(|m| m.content.as_deref()),
        }
    }

    fn derived_output(&self) -> Option<Cow<'_, str>> {
        if let Some(tool) = &self.tool {
            return tool.result.as_deref().map(Cow::Borrowed);
        }
        let mut texts = self
            .output_messages
            .iter()
            .filter_map(|m| m.content.as_deref())
            .filter(|text| !text.is_empty());
        let first = texts.next()?;
        let rest: Vec<&str> = texts.collect();
        if rest.is_empty() {
            return Some(Cow::Borrowed(first));
        }
        let mut joined = String::from(first);
        for text in rest {
            joined.push('\n');
            joined.push_str(text);
        }
        Some(Cow::Owned(joined))
    }
}

#[cfg(test)]
mod tests;
