//! The HTTP client.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::RngExt;
use serde_json::{Value, json};
use umpire_core::judge::llm::{
    ChatBackend, ChatError, ChatFuture, ChatRequest, ChatResponse, ResponseFormat,
};

use crate::secret::ApiKey;

#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Base URL, e.g. `http://vllm.models:8000/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub api_key: Option<ApiKey>,
    /// Per attempt.
    pub timeout: Duration,
    pub max_retries: u32,
    /// First backoff step; doubles per retry up to `max_backoff`, with full jitter.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Completion tokens the model may use for a verdict.
    pub max_completion_tokens: u32,
}

impl ClientSettings {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            timeout: Duration::from_secs(30),
            max_retries: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            max_completion_tokens: 512,
        }
    }
}

/// Largest reply body read (a verdict is a few hundred bytes).
const MAX_REPLY_BYTES: usize = 4 << 20;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct OpenAiClient {
    http: HttpsClient,
    url: String,
    settings: ClientSettings,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for the judge client: {0}")]
pub struct ClientSetupError(String);

impl OpenAiClient {
    /// HTTP/1.1 and HTTP/2 over TLS with rustls and ring (as kube uses), trusting the Mozilla
    /// root set compiled in, so judge endpoints work from minimal container images.
    pub fn new(settings: ClientSettings) -> Result<Self, ClientSetupError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .map_err(|e| ClientSetupError(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(https);
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

    /// Full jitter: a random wait in [0, min(max, initial × 2^attempt)].
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .settings
            .initial_backoff
            .saturating_mul(1 << attempt.min(16))
            .min(self.settings.max_backoff);
        Duration::from_millis(rand::rng().random_range(0..=ceiling.as_millis() as u64))
    }

    async fn attempt(&self, body: &Value) -> Attempt {
        let timeout = self.settings.timeout;
        match tokio::time::timeout(timeout, self.exchange(body)).await {
            Ok(Ok((status, retry_after, text))) => self.classify(status, retry_after, &text),
            Ok(Err(error)) => Attempt::Retry(error, None),
            Err(_) => Attempt::Retry(ChatError::Timeout(timeout), None),
        }
    }

    /// One request and its whole (bounded) reply.
    async fn exchange(
        &self,
        body: &Value,
    ) -> Result<(StatusCode, Option<Duration>, String), ChatError> {
        let mut request = Request::post(&self.url).header(CONTENT_TYPE, "application/json");
        if let Some(key) = &self.settings.api_key {
            request = request.header(AUTHORIZATION, format!("Bearer {}", key.expose()));
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| ChatError::Transport(format!("building the request: {e}")))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| ChatError::Transport(transport_reason(&e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(60)));
        let bytes = Limited::new(response.into_body(), MAX_REPLY_BYTES)
            .collect()
            .await
            .map_err(|e| ChatError::Transport(format!("reading the reply: {e}")))?
            .to_bytes();
        Ok((
            status,
            retry_after,
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
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

/// The cause of a failed exchange, without the URL (which may embed credentials).
fn transport_reason(error: &hyper_util::client::legacy::Error) -> String {
    let kind = if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let detail = std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_else(|| "no detail".into());
    format!("{kind}: {detail}")
}

fn snippet(text: &str) -> String {
    if text.len() <= 300 {
        text.to_owned()
    } else {
        format!(
            "{}…",
            &text[..text.char_indices().nth(300).map_or(text.len(), |(i, _)| i)]
        )
    }
}
