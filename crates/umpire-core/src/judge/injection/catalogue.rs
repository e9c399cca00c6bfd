//! The catalogue of prompt-injection and jailbreak patterns. Each entry names its category
//! and what it catches; add an entry with an example to the labelled set
//! (`tests/fixtures/injection_labelled.jsonl`) and the measured figures follow.

use std::sync::LazyLock;

use base64::Engine;
use regex::{Regex, RegexSet};

/// What an injection attempt tries to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InjectionCategory {
    /// "Ignore the previous instructions", "from now on you will …".
    InstructionOverride,
    /// A new persona or mode without the model's rules, or forged role markers.
    RoleOverride,
    /// Asking the model to print its system prompt or hidden instructions.
    PromptExtraction,
    /// Instructions hidden in base64, or in invisible Unicode tag characters.
    EncodedPayload,
    /// Text in a document or tool result addressed to the model reading it.
    ToolOutputInjection,
}

impl InjectionCategory {
    pub const ALL: [Self; 5] = [
        Self::InstructionOverride,
        Self::RoleOverride,
        Self::PromptExtraction,
        Self::EncodedPayload,
        Self::ToolOutputInjection,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::InstructionOverride => "instructionOverride",
            Self::RoleOverride => "roleOverride",
            Self::PromptExtraction => "promptExtraction",
            Self::EncodedPayload => "encodedPayload",
            Self::ToolOutputInjection => "toolOutputInjection",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

use InjectionCategory::*;

/// (category, pattern). Patterns are case-insensitive and allow any run of spaces.
const PATTERNS: &[(InjectionCategory, &str)] = &[
    // Telling the model its earlier instructions no longer count.
    (
        InstructionOverride,
        r"\b(?:ignore|disregard|forget|skip|override|bypass)\b(?:\s+\w+){0,3}?\s+(?:previous|prior|preceding|above|earlier|original|initial|system|all)\b(?:\s+\w+){0,2}?\s+(?:instructions?|prompts?|rules|directions|guidelines|directives|context|messages?)\b",
    ),
    (
        InstructionOverride,
        r"\b(?:ignore|disregard|forget)\s+(?:everything|anything|all)\s+(?:you\s+(?:were|have\s+been)\s+told|(?:that\s+was\s+)?(?:said|written)\s+(?:above|before))",
    ),
    (
        InstructionOverride,
        r"\b(?:new|updated|revised|real)\s+(?:system\s+)?instructions?\s*:",
    ),
    (
        InstructionOverride,
        r"\bfrom\s+now\s+on,?\s+you\s+(?:will|must|shall|are\s+to|should)\s+(?:only\s+)?(?:respond|answer|reply|obey|follow|ignore|act)",
    ),
    // A persona without rules, or a "mode" that lifts them.
    (
        RoleOverride,
        r"\byou\s+are\s+(?:now|no\s+longer)\s+(?:an?\s+)?(?:dan\b|unrestricted|unfiltered|uncensored|jailbroken|evil|bound\s+by|restricted|an?\s+ai\s+without)",
    ),
    (
        RoleOverride,
        r"\b(?:do\s+anything\s+now|developer\s+mode\s+(?:enabled|on|activated)|jailbreak(?:ed)?\s+mode|god\s+mode\s+(?:enabled|on))",
    ),
    (
        RoleOverride,
        r"\b(?:act|pretend|behave|roleplay)\s+(?:as|like|to\s+be)\b[^.\n]{0,60}\b(?:no|without|free\s+(?:of|from))\s+(?:any\s+)?(?:rules|restrictions|filters|limits|limitations|guidelines|ethics|morals|censorship)",
    ),
    (
        RoleOverride,
        r"\byou\s+(?:have|has)\s+no\s+(?:rules|restrictions|limitations|filters|guidelines|content\s+polic(?:y|ies))",
    ),
    // Forged chat-template role markers inside user or document text.
    (
        RoleOverride,
        r"(?:<\|im_start\|>\s*system|<\|system\|>|\[/?inst\]|<<sys>>|^\s*#{2,}\s*system\s*:|^\s*\[system\]|^\s*system\s*(?:prompt|override)\s*:)",
    ),
    // Getting the hidden instructions out.
    (
        PromptExtraction,
        r"\b(?:reveal|show|print|repeat|output|display|leak|dump|tell\s+me|give\s+me|what\s+(?:is|are|were))\b(?:\s+\w+){0,3}?\s+(?:system\s+prompt|initial\s+(?:prompt|instructions)|hidden\s+(?:prompt|instructions)|original\s+instructions|(?:your|the)\s+instructions\s+(?:above|verbatim)|developer\s+(?:message|prompt))",
    ),
    (
        PromptExtraction,
        r"\brepeat\s+(?:the\s+)?(?:words|text|everything)\s+above\b",
    ),
    // Decoding as an instruction.
    (
        EncodedPayload,
        r"\bdecode\s+(?:this|the\s+following|it)\b[^.\n]{0,40}\b(?:and|then)\s+(?:follow|execute|run|do|obey|carry\s+out)",
    ),
    // Text meant for the model that reads a document or a tool's result.
    (
        ToolOutputInjection,
        r"\b(?:note|message|instructions?|attention)\s+(?:to|for)\s+(?:the\s+|any\s+)?(?:ai|assistant|llm|language\s+model|chatbot|agent|model)\b",
    ),
    (
        ToolOutputInjection,
        r"\bif\s+you\s+are\s+(?:an?\s+)?(?:ai|llm|large\s+language\s+model|language\s+model|assistant|chatbot|ai\s+agent)\b[^.\n]{0,20}(?:reading|processing|summari[sz]ing|,)",
    ),
    (
        ToolOutputInjection,
        r"\b(?:ai|llm|assistant|agent|model)s?\s+(?:reading|processing|summari[sz]ing)\s+this\b",
    ),
    (
        ToolOutputInjection,
        r"<!--[^>]{0,200}\b(?:assistant|ai|llm|ignore|instructions?)\b[^>]{0,200}-->",
    ),
    (
        ToolOutputInjection,
        r"\b(?:important|urgent|attention)\s*[:!]\s*(?:the\s+)?(?:ai|assistant|agent|model)\s+(?:must|should|will|needs\s+to)\b",
    ),
];

struct Compiled {
    set: RegexSet,
    categories: Vec<InjectionCategory>,
}

static CATALOGUE: LazyLock<Compiled> = LazyLock::new(|| {
    let sources: Vec<String> = PATTERNS
        .iter()
        .map(|(_, source)| format!("(?im){source}"))
        .collect();
    // The patterns are constants covered by this module's tests.
    #[allow(clippy::expect_used)]
    let set = RegexSet::new(&sources).expect("the injection catalogue compiles");
    Compiled {
        set,
        categories: PATTERNS.iter().map(|(category, _)| *category).collect(),
    }
});

#[allow(clippy::expect_used)]
static BASE64_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9+/]{40,}={0,2}").expect("a constant pattern"));

/// The categories `text` shows (each once, in order).
pub fn scan(text: &str) -> Vec<InjectionCategory> {
    let mut found: Vec<InjectionCategory> = CATALOGUE
        .set
        .matches(text)
        .into_iter()
        .map(|index| CATALOGUE.categories[index])
        .collect();
    if hides_instructions(text) {
        found.push(EncodedPayload);
    }
    found.sort();
    found.dedup();
    found
}

/// Instructions the reader cannot see: a base64 run that decodes to text the catalogue
/// flags, or Unicode tag characters (U+E0000–U+E007F, invisible, read by some models as
/// ASCII).
fn hides_instructions(text: &str) -> bool {
    let tags = text
        .chars()
        .filter(|c| ('\u{E0000}'..='\u{E007F}').contains(c))
        .count();
    if tags >= 8 {
        return true;
    }
    BASE64_RUN.find_iter(text).take(16).any(|run| {
        base64::engine::general_purpose::STANDARD
            .decode(run.as_str())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .is_some_and(|decoded| CATALOGUE.set.is_match(&decoded))
    })
}
