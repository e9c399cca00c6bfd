//! The HTTP client.

use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, HeaderValue};
use serde_json::{Value, json};
use umpire_core::judge::llm::{
    ChatBackend, ChatError, ChatFuture, ChatRequest, ChatResponse, ResponseFormat,
};
use umpire_runtime::egress::EgressPolicy;
use umpire_runtime::https::{JsonClient, TransportError, snippet};
use umpire_runtime::retry::Backoff;

use crate::secret::ApiKey;

#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Base URL, e.g. `http://vllm.models:8000/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub api_key: Option<ApiKey>,
    /// Per attempt.
    pub timeout: Duration,
    pub max_retries: u32,
    /// Waits between retries (exponential, full jitter).
    pub backoff: Backoff,
    /// Completion tokens the model may use for a verdict.
    pub max_completion_tokens: u32,
    /// Where requests may go (`None`: anywhere).
    pub egress: Option<EgressPolicy>,
}

impl ClientSettings {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            timeout: Duration::from_secs(30),
            max_retries: 3,
            backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(10)),
            max_completion_tokens: 512,
            egress: None,
        }
    }
}

/// Largest reply body read (a verdict is a few hundred bytes).
const MAX_REPLY_BYTES: usize = 4 << 20;

pub struct OpenAiClient {
    http: JsonClient,
    url: String,
    settings: ClientSettings,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for the judge client: {0}")]
pub struct ClientSetupError(String);

impl OpenAiClient {
    pub fn new(settings: ClientSettings) -> Result<Self, ClientSetupError> {
        let http = JsonClient::new(64, MAX_REPLY_BYTES, settings.egress.clone())
            .map_err(|e| ClientSetupError(e.to_string()))?;
        let url = format!(
            "{}/chat/completions",
            settings.base_url.trim_end_matches('/')
        );
        Ok(Self {
            http,
            url,
            settings,
        })
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let mut body = json!({
            "model": request.model,
            "messages": request.messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect::<Vec<_>>(),
            "temperature": request.temperature,
            "max_tokens": self.settings.max_completion_tokens,
        });
        let format = match request.format {
            ResponseFormat::JsonSchema => Some(json!({
                "type": "json_schema",
                "json_schema": {
                    "name": "verdict",
                    "strict": true,
                    "schema": {
                        "type": "object",
                        "properties": {
                            "explanation": {"type": "string"},
                            "label": {"type": "string", "enum": request.labels},
                        },
                        "required": ["explanation", "label"],
                        "additionalProperties": false,
                    },
                },
            })),
            ResponseFormat::JsonObject => Some(json!({"type": "json_object"})),
            ResponseFormat::Text => None,
        };
        if let (Some(format), Some(fields)) = (format, body.as_object_mut()) {
            fields.insert("response_format".into(), format);
        }
        body
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.settings.backoff.delay(attempt)
    }

    async fn attempt(&self, body: &Value) -> Attempt {
        let mut headers = Vec::new();
        if let Some(key) = &self.settings.api_key {
            let key = match key.current() {
                Ok(key) => key,
                // Retried: a Secret being re-mounted may be unreadable for a moment.
                Err(e) => {
                    return Attempt::Retry(
                        ChatError::Transport(format!("reading the API key: {e}")),
                        None,
                    );
                }
            };
            match HeaderValue::from_str(&format!("Bearer {}", key.expose())) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    headers.push((AUTHORIZATION, value));
                }
                Err(_) => {
                    return Attempt::Done(Err(ChatError::Transport(
                        "the API key is not a valid HTTP header value".into(),
                    )));
                }
            }
        }
        let body = Bytes::from(body.to_string());
        match self
            .http
            .post_json(&self.url, &headers, body, self.settings.timeout)
            .await
        {
            Ok(reply) => self.classify(reply.status, reply.retry_after, &reply.text),
            Err(TransportError::Timeout(timeout)) => {
                Attempt::Retry(ChatError::Timeout(timeout), None)
            }
            Err(TransportError::Failed(reason)) => {
                Attempt::Retry(ChatError::Transport(reason), None)
            }
            Err(TransportError::Refused(reason)) => {
                Attempt::Done(Err(ChatError::Transport(reason)))
            }
        }
    }

    fn classify(&self, status: StatusCode, retry_after: Option<Duration>, text: &str) -> Attempt {
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Attempt::Retry(ChatError::RateLimited, retry_after);
        }
        if status.is_server_error() {
            return Attempt::Retry(
                ChatError::Upstream {
                    status: status.as_u16(),
                    message: snippet(text),
                },
                retry_after,
            );
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Attempt::Done(Err(ChatError::Unauthorized {
                status: status.as_u16(),
            }));
        }
        if !status.is_success() {
            let lower = text.to_ascii_lowercase();
            let format_rejected = lower.contains("response_format")
                || lower.contains("json_schema")
                || lower.contains("json_object");
            return Attempt::Done(Err(ChatError::BadRequest {
                status: status.as_u16(),
                message: snippet(text),
                response_format_rejected: format_rejected,
            }));
        }
        Attempt::Done(parse_completion(text))
    }
}

enum Attempt {
    Done(Result<ChatResponse, ChatError>),
    Retry(ChatError, Option<Duration>),
}

impl ChatBackend for OpenAiClient {
    fn complete<'a>(&'a self, request: &'a ChatRequest) -> ChatFuture<'a> {
        Box::pin(async move {
            let body = self.body(request);
            let mut attempt = 0;
            loop {
                match self.attempt(&body).await {
                    Attempt::Done(result) => return result,
                    Attempt::Retry(error, retry_after) => {
                        if attempt >= self.settings.max_retries {
                            return Err(error);
                        }
                        let wait = retry_after.unwrap_or_else(|| self.backoff(attempt));
                        tracing::debug!(event = "judge_retry", attempt, error = %error, wait_ms = wait.as_millis() as u64, "retrying the judge request");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                }
            }
        })
    }
}

fn parse_completion(text: &str) -> Result<ChatResponse, ChatError> {
    let reply: Value =
        serde_json::from_str(text).map_err(|e| ChatError::InvalidReply(e.to_string()))?;
    let content = reply
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ChatError::InvalidReply(format!(
                "no choices[0].message.content in {}",
                snippet(text)
            ))
        })?;
    Ok(ChatResponse {
        content: content.to_owned(),
        input_tokens: reply
            .pointer("/usage/prompt_tokens")
            .and_then(Value::as_u64),
        output_tokens: reply
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_u64),
    })
}
