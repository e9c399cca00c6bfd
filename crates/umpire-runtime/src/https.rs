//! Outbound HTTPS for calls to services we do not run (LLM judges, PagerDuty, webhooks):
//! HTTP/1.1 and HTTP/2 over rustls with ring (as kube uses), trusting the Mozilla root set
//! compiled in, so minimal container images need no CA bundle. Plain `http://` works too,
//! for in-cluster endpoints and local test servers.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type Inner = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for outbound HTTPS: {0}")]
pub struct TlsSetupError(String);

/// Why no answer came back. Never holds the URL, which may embed credentials.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransportError {
    #[error("{0}")]
    Failed(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// An HTTP answer, its body read up to the client's limit.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    /// `Retry-After` in seconds, capped at a minute.
    pub retry_after: Option<Duration>,
    pub text: String,
}

#[derive(Clone)]
pub struct JsonClient {
    http: Inner,
    max_reply_bytes: usize,
}

impl JsonClient {
    pub fn new(max_idle_per_host: usize, max_reply_bytes: usize) -> Result<Self, TlsSetupError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .map_err(|e| TlsSetupError(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(max_idle_per_host)
            .build(https);
        Ok(Self {
            http,
            max_reply_bytes,
        })
    }

    /// POSTs a JSON body and reads the whole (bounded) reply within `timeout`.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Reply, TransportError> {
        match tokio::time::timeout(timeout, self.exchange(url, headers, body)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout(timeout)),
        }
    }

    async fn exchange(
        &self,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Reply, TransportError> {
        let mut request = Request::post(url).header(CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| TransportError::Failed(format!("building the request: {e}")))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| TransportError::Failed(transport_reason(&e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(60)));
        let bytes = Limited::new(response.into_body(), self.max_reply_bytes)
            .collect()
            .await
            .map_err(|e| TransportError::Failed(format!("reading the reply: {e}")))?
            .to_bytes();
        Ok(Reply {
            status,
            retry_after,
            text: without_sent_credentials(String::from_utf8_lossy(&bytes).into_owned(), headers),
        })
    }
}

/// Shorter header values (`json`, `gzip`) are not secrets and would match everywhere.
const SHORTEST_SECRET: usize = 8;

/// `text` with every header value this request sent (and a bearer token's token alone)
/// replaced: replies end up in scores, logs and Events as error snippets, and a proxy or
/// gateway that echoes the request would otherwise put the API key or routing key there.
fn without_sent_credentials(mut text: String, headers: &[(HeaderName, HeaderValue)]) -> String {
    for (_, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        let token = value.strip_prefix("Bearer ").unwrap_or(value);
        for secret in [value, token] {
            if secret.len() >= SHORTEST_SECRET && text.contains(secret) {
                text = text.replace(secret, "<redacted: sent in a request header>");
            }
        }
    }
    text
}

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

/// The first 300 characters of a reply, for error messages.
pub fn snippet(text: &str) -> String {
    match text.char_indices().nth(300) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    /// A server that answers 500 with every request header echoed back — what some proxies
    /// and misconfigured gateways do. The reply ends up in scores and logs as an error
    /// snippet, so the credentials sent must not come back in it.
    async fn echoing_server() -> String {
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(|headers: HeaderMap| async move {
                let echoed: Vec<String> = headers
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or_default()))
                    .collect();
                (StatusCode::INTERNAL_SERVER_ERROR, echoed.join("\n"))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn replies_never_echo_the_credentials_sent() {
        let url = echoing_server().await;
        let client = JsonClient::new(1, 64 << 10).unwrap();
        let headers = [
            (
                hyper::header::AUTHORIZATION,
                HeaderValue::from_static("Bearer sk-live-0123456789abcdef"),
            ),
            (
                HeaderName::from_static("x-routing-key"),
                HeaderValue::from_static("R0UT1NGKEY42"),
            ),
        ];
        let reply = client
            .post_json(
                &url,
                &headers,
                Bytes::from_static(b"{}"),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(reply.text.contains("authorization:"), "{}", reply.text);
        assert!(
            !reply.text.contains("sk-live-0123456789abcdef"),
            "{}",
            reply.text
        );
        assert!(!reply.text.contains("R0UT1NGKEY42"), "{}", reply.text);
        assert!(
            reply.text.contains("<redacted: sent in a request header>"),
            "{}",
            reply.text
        );
    }
}
