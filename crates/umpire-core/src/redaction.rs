//! Redaction: what must never leave ingest.
//!
//! Rules replace (or hash) what a pattern matches in attribute values, or drop whole
//! attributes; `captureContent: false` drops prompt and completion content entirely. The
//! ingest adapter walks every span, event and resource attribute through a [`Redactor`].

use std::borrow::Cow;

use regex::Regex;
use sha2::{Digest, Sha256};

/// Which attribute keys a rule applies to: exact keys, or prefixes written `prefix*`.
#[derive(Debug, Clone, Default)]
pub struct KeyMatcher {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl KeyMatcher {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(patterns: I) -> Self {
        let mut matcher = Self::default();
        for pattern in patterns {
            match pattern.as_ref().strip_suffix('*') {
                Some(prefix) => matcher.prefixes.push(prefix.to_owned()),
                None => matcher.exact.push(pattern.as_ref().to_owned()),
            }
        }
        matcher
    }

    pub fn matches(&self, key: &str) -> bool {
        self.exact.iter().any(|k| k == key)
            || self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }
}

#[derive(Debug, Clone)]
pub enum RedactionAction {
    /// Replace matches with this text (`$1`-style groups expand).
    Replace(String),
    /// Replace matches with a stable SHA-256 prefix: equal values stay joinable.
    Hash,
}

#[derive(Debug, Clone)]
pub enum RedactionRule {
    /// Rewrite what `pattern` matches, in the attributes `scope` names (all when `None`).
    Rewrite {
        name: String,
        pattern: Regex,
        scope: Option<KeyMatcher>,
        action: RedactionAction,
    },
    /// Remove attributes with these keys.
    Drop { name: String, keys: KeyMatcher },
}

/// The project's redaction, compiled.
#[derive(Debug, Clone)]
pub struct Redactor {
    capture_content: bool,
    rewrites: Vec<(Regex, Option<KeyMatcher>, RedactionAction)>,
    drops: KeyMatcher,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(true, Vec::new())
    }
}

impl Redactor {
    pub fn new(capture_content: bool, rules: Vec<RedactionRule>) -> Self {
        let mut rewrites = Vec::new();
        let mut drops = KeyMatcher::default();
        for rule in rules {
            match rule {
                RedactionRule::Rewrite {
                    pattern,
                    scope,
                    action,
                    ..
                } => rewrites.push((pattern, scope, action)),
                RedactionRule::Drop { keys, .. } => {
                    drops.exact.extend(keys.exact);
                    drops.prefixes.extend(keys.prefixes);
                }
            }
        }
        Self {
            capture_content,
            rewrites,
            drops,
        }
    }

    /// Whether the redactor can change anything at all (lets callers skip work).
    pub fn is_noop(&self) -> bool {
        self.capture_content
            && self.rewrites.is_empty()
            && self.drops.exact.is_empty()
            && self.drops.prefixes.is_empty()
    }

    /// Whether an attribute must be removed: a drop rule names it, or it is content and
    /// content capture is off.
    pub fn drops_attribute(&self, key: &str) -> bool {
        self.drops.matches(key) || (!self.capture_content && is_content_key(key))
    }

    /// Whether an attribute of an event named `event` must be removed (message events carry
    /// content in `content` / `message` / `tool_calls`).
    pub fn drops_event_attribute(&self, event: &str, key: &str) -> bool {
        self.drops_attribute(key)
            || (!self.capture_content
                && is_content_event(event)
                && matches!(key, "content" | "message" | "tool_calls" | "body"))
    }

    /// The value with every applicable rule applied; borrowed when nothing matched.
    ///
    /// Each rule is tried on its own, not through one `RegexSet`: a single regex searches
    /// with its literal prefilters (the `@` of an e-mail pattern is found with memchr), a
    /// set scans every byte of every value. Measured on 650-byte prose without a match:
    /// 17 ns per value against 1.35 µs — the set was 14 % of ingest's CPU.
    pub fn redact_value<'v>(&self, key: &str, value: &'v str) -> Cow<'v, str> {
        let mut current = Cow::Borrowed(value);
        for (pattern, scope, action) in &self.rewrites {
            if scope.as_ref().is_some_and(|scope| !scope.matches(key))
                || !pattern.is_match(&current)
            {
                continue;
            }
            let replaced = match action {
                RedactionAction::Replace(with) => {
                    pattern.replace_all(&current, with.as_str()).into_owned()
                }
                RedactionAction::Hash => pattern
                    .replace_all(&current, |caps: &regex::Captures<'_>| hash_text(&caps[0]))
                    .into_owned(),
            };
            current = Cow::Owned(replaced);
        }
        current
    }
}

/// `<sha256:` + the first 12 hex digits of the SHA-256 of `text` + `>`. Unsalted: it keeps
/// equal values joinable and hides them from casual readers, but short or guessable values
/// (e-mails, ids) can be recovered by a dictionary attack — prefer `replace` for those.
pub fn hash_text(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(12);
    for byte in &digest[..6] {
        hex.push_str(&format!("{byte:02x}"));
    }
    format!("<sha256:{hex}>")
}

/// Prompt / completion content attributes in the GenAI, OpenLLMetry and OpenInference
/// conventions.
pub fn is_content_key(key: &str) -> bool {
    const EXACT: [&str; 13] = [
        "input.value",
        "output.value",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "tool.parameters",
        "llm.prompt_template.variables",
        "reranker.query",
        "llm.invocation_parameters",
    ];
    const INDEXED: [&str; 8] = [
        "gen_ai.prompt.",
        "gen_ai.completion.",
        "llm.input_messages.",
        "llm.output_messages.",
        "retrieval.documents.",
        "reranker.input_documents.",
        "reranker.output_documents.",
        "embedding.embeddings.",
    ];
    const CONTENT_SUFFIXES: [&str; 4] = [".content", ".text", ".arguments", ".function.arguments"];
    EXACT.contains(&key)
        || (INDEXED.iter().any(|prefix| key.starts_with(prefix))
            && CONTENT_SUFFIXES.iter().any(|suffix| key.ends_with(suffix)))
}

/// Older GenAI message events.
pub fn is_content_event(name: &str) -> bool {
    name == "gen_ai.choice" || (name.starts_with("gen_ai.") && name.ends_with(".message"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email_rule() -> RedactionRule {
        RedactionRule::Rewrite {
            name: "emails".into(),
            pattern: Regex::new(r"[\w.+-]+@[\w-]+\.[\w.]+").unwrap(),
            scope: None,
            action: RedactionAction::Replace("<email>".into()),
        }
    }

    #[test]
    fn replaces_matches_and_borrows_when_clean() {
        let redactor = Redactor::new(true, vec![email_rule()]);
        assert_eq!(
            redactor.redact_value("input.value", "mail me at a.b@example.com now"),
            "mail me at <email> now"
        );
        assert!(matches!(
            redactor.redact_value("input.value", "nothing here"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn scoped_and_hash_rules() {
        let redactor = Redactor::new(
            true,
            vec![RedactionRule::Rewrite {
                name: "user-ids".into(),
                pattern: Regex::new(".+").unwrap(),
                scope: Some(KeyMatcher::new(["user.id"])),
                action: RedactionAction::Hash,
            }],
        );
        let hashed = redactor.redact_value("user.id", "user-42");
        assert_eq!(hashed, hash_text("user-42"));
        assert!(hashed.starts_with("<sha256:") && hashed.len() == "<sha256:>".len() + 12);
        assert_eq!(redactor.redact_value("session.id", "user-42"), "user-42");
    }

    #[test]
    fn drops_attributes_by_key_and_prefix() {
        let redactor = Redactor::new(
            true,
            vec![RedactionRule::Drop {
                name: "headers".into(),
                keys: KeyMatcher::new([
                    "http.request.header.authorization",
                    "http.request.header.x-api-*",
                ]),
            }],
        );
        assert!(redactor.drops_attribute("http.request.header.authorization"));
        assert!(redactor.drops_attribute("http.request.header.x-api-key"));
        assert!(!redactor.drops_attribute("http.request.header.accept"));
        assert!(!redactor.drops_attribute("input.value"));
    }

    #[test]
    fn capture_content_off_drops_content_but_keeps_metadata() {
        let redactor = Redactor::new(false, vec![]);
        for key in [
            "input.value",
            "gen_ai.input.messages",
            "gen_ai.prompt.0.content",
            "llm.output_messages.0.message.content",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments",
            "retrieval.documents.1.document.content",
        ] {
            assert!(redactor.drops_attribute(key), "{key}");
        }
        for key in [
            "gen_ai.request.model",
            "llm.token_count.prompt",
            "llm.input_messages.0.message.role",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name",
            "retrieval.documents.1.document.id",
        ] {
            assert!(!redactor.drops_attribute(key), "{key}");
        }
        assert!(redactor.drops_event_attribute("gen_ai.user.message", "content"));
        assert!(!redactor.drops_event_attribute("exception", "exception.message"));
    }
}
