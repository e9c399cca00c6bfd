//! The chat-completions protocol the judge speaks, independent of any HTTP client: request,
//! response, errors, and the backend trait production (an OpenAI-compatible client) and unit
//! tests (a stub) implement.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::judge::JudgeErrorKind;

/// How the model is asked to constrain its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `response_format: {type: json_schema}` with the labels as an enum (structured outputs).
    JsonSchema,
    /// `response_format: {type: json_object}` (JSON mode).
    JsonObject,
    /// No constraint; the reply is parsed.
    Text,
}

/// The configured policy: a fixed format, or `Auto` — start with structured outputs and step
/// down when the endpoint rejects them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatPolicy {
    Auto,
    Fixed(ResponseFormat),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: f64,
    pub format: ResponseFormat,
    /// The labels the answer must use (for the JSON schema).
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub content: String,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

/// Why a chat completion failed, after the backend's own retries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChatError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("rate limited (HTTP 429)")]
    RateLimited,
    #[error("upstream error (HTTP {status}): {message}")]
    Upstream { status: u16, message: String },
    #[error("request refused (HTTP {status}): {message}")]
    BadRequest {
        status: u16,
        message: String,
        response_format_rejected: bool,
    },
    #[error("credentials refused (HTTP {status})")]
    Unauthorized { status: u16 },
    #[error("cannot reach the judge API: {0}")]
    Transport(String),
    #[error("the reply is not a chat completion: {0}")]
    InvalidReply(String),
}

impl ChatError {
    pub(super) fn kind(&self) -> JudgeErrorKind {
        match self {
            Self::Timeout(_) => JudgeErrorKind::Timeout,
            Self::RateLimited => JudgeErrorKind::RateLimited,
            Self::Upstream { .. } | Self::InvalidReply(_) => JudgeErrorKind::Upstream,
            Self::BadRequest { .. } => JudgeErrorKind::BadRequest,
            Self::Unauthorized { .. } => JudgeErrorKind::Unauthorized,
            Self::Transport(_) => JudgeErrorKind::Transport,
        }
    }
}

pub type ChatFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ChatResponse, ChatError>> + Send + 'a>>;

/// A chat-completions API.
pub trait ChatBackend: Send + Sync {
    fn complete<'a>(&'a self, request: &'a ChatRequest) -> ChatFuture<'a>;
}
