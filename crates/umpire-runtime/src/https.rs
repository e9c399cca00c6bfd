//! Outbound HTTPS for calls to services we do not run (LLM judges, PagerDuty, webhooks):
//! HTTP/1.1 and HTTP/2 over rustls with ring (as kube uses), trusting the Mozilla root set
//! compiled in, so minimal container images need no CA bundle. Plain `http://` works too,
//! for in-cluster endpoints and local test servers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::egress::{CheckedResolver, EgressPolicy};

/// HTTP(S) connections whose destinations the egress policy checks: what [`JsonClient`]
/// sends through, and what gRPC clients (OTLP export over tonic) connect with.
pub type CheckedConnector = hyper_rustls::HttpsConnector<HttpConnector<CheckedResolver>>;

type Inner = Client<CheckedConnector, Full<Bytes>>;

/// A connector for `http://` and `https://` (HTTP/1.1 and HTTP/2 by ALPN) that resolves
/// names through the egress policy.
pub fn checked_connector(
    egress: Option<Arc<EgressPolicy>>,
) -> Result<CheckedConnector, TlsSetupError> {
    let mut connector = HttpConnector::new_with_resolver(CheckedResolver { policy: egress });
    connector.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .map_err(|e| TlsSetupError(e.to_string()))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(connector))
}

/// Refuses a URL whose host is an address the egress policy forbids. Names are checked on
/// what they resolve to ([`CheckedResolver`]); an address written in the URL is never
/// resolved, so it is checked here.
pub fn check_literal_address(
    policy: Option<&EgressPolicy>,
    url: &str,
) -> Result<(), TransportError> {
    let Some(policy) = policy else {
        return Ok(());
    };
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| TransportError::Failed(format!("invalid URL: {e}")))?;
    let host = uri.host().unwrap_or_default();
    if let Ok(address) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        policy
            .check(host, &[address])
            .map_err(|e| TransportError::Refused(e.to_string()))?;
    }
    Ok(())
}

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
    /// The install's egress policy forbids the destination: retrying cannot help.
    #[error("{0}")]
    Refused(String),
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
    egress: Option<Arc<EgressPolicy>>,
}

impl JsonClient {
    /// `egress`: where requests may go (`None`: anywhere, for runs outside a cluster).
    pub fn new(
        max_idle_per_host: usize,
        max_reply_bytes: usize,
        egress: Option<EgressPolicy>,
    ) -> Result<Self, TlsSetupError> {
        let egress = egress.map(Arc::new);
        let https = checked_connector(egress.clone())?;
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(max_idle_per_host)
            .build(https);
        Ok(Self {
            http,
            max_reply_bytes,
            egress,
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
        self.post(url, "application/json", headers, body, timeout)
            .await
    }

    /// POSTs `body` as `content_type` and reads the whole (bounded) reply within `timeout`.
    pub async fn post(
        &self,
        url: &str,
        content_type: &'static str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Reply, TransportError> {
        let exchange = self.exchange(url, content_type, headers, body);
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout(timeout)),
        }
    }

    async fn exchange(
        &self,
        url: &str,
        content_type: &'static str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Reply, TransportError> {
        check_literal_address(self.egress.as_deref(), url)?;
        let mut request = Request::post(url).header(CONTENT_TYPE, content_type);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| TransportError::Failed(format!("building the request: {e}")))?;
        let response = self.http.request(request).await.map_err(|e| {
            if refused_by_policy(&e) {
                TransportError::Refused(transport_reason(&e))
            } else {
                TransportError::Failed(transport_reason(&e))
            }
        })?;
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

/// Whether the resolver refused the destination (`CheckedResolver`).
fn refused_by_policy(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        // An io::Error does not list its custom payload as a source: look inside.
        let payload = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        if [Some(cause), payload]
            .into_iter()
            .flatten()
            .any(|e| e.downcast_ref::<crate::egress::EgressRefused>().is_some())
        {
            return true;
        }
        source = cause.source();
    }
    false
}

fn transport_reason(error: &hyper_util::client::legacy::Error) -> String {
    let kind = if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // The whole chain: the cause that matters (a refused address, a TLS failure) is often
    // several levels below hyper's "dns error" or "client error (Connect)".
    let mut details: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !details.iter().any(|d| d.contains(&text)) {
            details.push(text);
        }
        source = cause.source();
    }
    if details.is_empty() {
        details.push("no detail".into());
    }
    format!("{kind}: {}", details.join(": "))
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
        let client = JsonClient::new(1, 64 << 10, None).unwrap();
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

#[cfg(test)]
mod egress_tests {
    use super::*;

    async fn server() -> std::net::SocketAddr {
        let app = axum::Router::new().route("/", axum::routing::post(|| async { "{}" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    async fn post(client: &JsonClient, url: &str) -> Result<Reply, TransportError> {
        client
            .post_json(url, &[], Bytes::from_static(b"{}"), Duration::from_secs(5))
            .await
    }

    #[tokio::test]
    async fn internal_addresses_are_refused_by_address_and_by_name() {
        let addr = server().await;
        let strict = JsonClient::new(1, 1024, Some(EgressPolicy::default())).unwrap();
        for url in [
            format!("http://{addr}/"),
            format!("http://localhost:{}/", addr.port()),
        ] {
            let refused = post(&strict, &url).await.unwrap_err();
            assert!(
                matches!(&refused, TransportError::Refused(m) if m.contains("loopback address")),
                "{url}: {refused:?}"
            );
        }
        let allowed = EgressPolicy {
            allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
            ..Default::default()
        };
        let client = JsonClient::new(1, 1024, Some(allowed)).unwrap();
        for url in [
            format!("http://{addr}/"),
            format!("http://localhost:{}/", addr.port()),
        ] {
            assert_eq!(
                post(&client, &url).await.unwrap().status,
                StatusCode::OK,
                "{url}"
            );
        }
        let open = JsonClient::new(1, 1024, None).unwrap();
        assert_eq!(
            post(&open, &format!("http://{addr}/"))
                .await
                .unwrap()
                .status,
            StatusCode::OK
        );
    }
}
