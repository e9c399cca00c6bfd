//! One export target's OTLP client: HTTP/protobuf through the egress-checked HTTPS client the
//! judges and routes use, or gRPC through tonic over the same checked connector. Header
//! values are read from the mounted Secrets at every send, so a rotated key applies without
//! a restart.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use hyper::header::{HeaderName, HeaderValue};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use umpire_api::trace_project::{ExportTarget, OtlpCompression, OtlpProtocol};
use umpire_otlp::{ExportLogsServiceRequest, ExportTraceServiceRequest};
use umpire_runtime::egress::EgressPolicy;
use umpire_runtime::https::{JsonClient, TransportError, check_literal_address, checked_connector};
use umpire_runtime::secrets::MountedSecrets;

/// Longest a send may take before it counts as failed (and is retried).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Most of a backend's reply read back (error messages only).
const MAX_REPLY_BYTES: usize = 16 << 10;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("export target {target}: the endpoint {reason}")]
    Endpoint { target: String, reason: String },
    #[error("export target {target}: {reason}")]
    Tls { target: String, reason: String },
}

/// Why a send did not land.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// The backend (or the way to it) failed: retry later, nothing is lost. `after`: what
    /// the backend asked for (`Retry-After`).
    #[error("{reason}")]
    Retryable {
        reason: String,
        after: Option<Duration>,
    },
    /// The backend refused the payload itself (HTTP 400, gRPC INVALID_ARGUMENT): sending it
    /// again cannot help.
    #[error("{0}")]
    Rejected(String),
}

impl SendError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Retryable { .. } => "retryable",
            Self::Rejected(_) => "rejected",
        }
    }
}

enum Transport {
    Http {
        client: JsonClient,
        traces_url: String,
        logs_url: String,
        /// OTLP/JSON bodies instead of protobuf.
        json: bool,
    },
    Grpc {
        traces: TraceServiceClient<Channel>,
        logs: LogsServiceClient<Channel>,
    },
}

pub struct OtlpClient {
    transport: Transport,
    gzip: bool,
    headers: Vec<(HeaderName, String, String)>,
    secrets: MountedSecrets,
}

impl OtlpClient {
    pub fn new(
        target: &ExportTarget,
        secrets: MountedSecrets,
        egress: Option<&EgressPolicy>,
    ) -> Result<Self, SetupError> {
        let otlp = &target.otlp;
        let endpoint_error = |reason: String| SetupError::Endpoint {
            target: target.name.clone(),
            reason,
        };
        check_literal_address(egress, &otlp.endpoint).map_err(|e| endpoint_error(e.to_string()))?;
        let base = otlp.endpoint.trim_end_matches('/');
        let gzip = otlp.compression != Some(OtlpCompression::None);
        let transport = match otlp.protocol.unwrap_or(OtlpProtocol::HttpProtobuf) {
            protocol @ (OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson) => Transport::Http {
                json: protocol == OtlpProtocol::HttpJson,
                client: JsonClient::new(2, MAX_REPLY_BYTES, egress.cloned()).map_err(|e| {
                    SetupError::Tls {
                        target: target.name.clone(),
                        reason: e.to_string(),
                    }
                })?,
                traces_url: format!("{base}/v1/traces"),
                logs_url: format!("{base}/v1/logs"),
            },
            OtlpProtocol::Grpc => {
                let connector = checked_connector(egress.cloned().map(Arc::new)).map_err(|e| {
                    SetupError::Tls {
                        target: target.name.clone(),
                        reason: e.to_string(),
                    }
                })?;
                let channel = tonic::transport::Endpoint::from_shared(base.to_owned())
                    .map_err(|e| endpoint_error(format!("is not a gRPC URL: {e}")))?
                    .timeout(SEND_TIMEOUT)
                    .connect_timeout(Duration::from_secs(10))
                    .connect_with_connector_lazy(connector);
                let mut traces = TraceServiceClient::new(channel.clone());
                let mut logs = LogsServiceClient::new(channel);
                if gzip {
                    traces = traces.send_compressed(CompressionEncoding::Gzip);
                    logs = logs.send_compressed(CompressionEncoding::Gzip);
                }
                Transport::Grpc { traces, logs }
            }
        };
        let headers = otlp
            .headers
            .iter()
            .flatten()
            .map(|h| {
                let name = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes())
                    .map_err(|e| endpoint_error(format!("header {}: {e}", h.name)))?;
                Ok((name, h.value_from.name.clone(), h.value_from.key.clone()))
            })
            .collect::<Result<Vec<_>, SetupError>>()?;
        let client = Self {
            transport,
            gzip,
            headers,
            secrets,
        };
        // A missing Secret fails the start, not every send.
        client
            .header_values()
            .map_err(|reason| endpoint_error(format!("headers: {reason}")))?;
        Ok(client)
    }

    fn header_values(&self) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        self.headers
            .iter()
            .map(|(name, secret, key)| {
                let value = self.secrets.read(secret, key).map_err(|e| e.to_string())?;
                let mut value = HeaderValue::from_str(value.expose().trim())
                    .map_err(|_| format!("Secret {secret}/{key} is not a valid header value"))?;
                value.set_sensitive(true);
                Ok((name.clone(), value))
            })
            .collect()
    }

    pub async fn send_traces(&self, request: ExportTraceServiceRequest) -> Result<(), SendError> {
        match &self.transport {
            Transport::Http {
                client,
                traces_url,
                json,
                ..
            } => {
                let body = encode_body(&request, *json)?;
                self.post(client, traces_url, body, *json).await
            }
            Transport::Grpc { traces, .. } => {
                let request = self.grpc_request(request)?;
                traces
                    .clone()
                    .export(request)
                    .await
                    .map(|_| ())
                    .map_err(grpc_error)
            }
        }
    }

    pub async fn send_logs(&self, request: ExportLogsServiceRequest) -> Result<(), SendError> {
        match &self.transport {
            Transport::Http {
                client,
                logs_url,
                json,
                ..
            } => {
                let body = encode_body(&request, *json)?;
                self.post(client, logs_url, body, *json).await
            }
            Transport::Grpc { logs, .. } => {
                let request = self.grpc_request(request)?;
                logs.clone()
                    .export(request)
                    .await
                    .map(|_| ())
                    .map_err(grpc_error)
            }
        }
    }

    fn grpc_request<T>(&self, message: T) -> Result<tonic::Request<T>, SendError> {
        let mut request = tonic::Request::new(message);
        for (name, value) in self.header_values().map_err(secret_error)? {
            let key = tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes())
                .map_err(|e| SendError::Rejected(format!("header {name}: {e}")))?;
            let value = tonic::metadata::MetadataValue::try_from(value.as_bytes())
                .map_err(|e| SendError::Rejected(format!("header {name}: {e}")))?;
            request.metadata_mut().insert(key, value);
        }
        Ok(request)
    }

    async fn post(
        &self,
        client: &JsonClient,
        url: &str,
        body: Vec<u8>,
        json: bool,
    ) -> Result<(), SendError> {
        let mut headers = self.header_values().map_err(secret_error)?;
        let body = if self.gzip {
            headers.push((
                hyper::header::CONTENT_ENCODING,
                HeaderValue::from_static("gzip"),
            ));
            gzip(&body)
        } else {
            body
        };
        let reply = client
            .post(
                url,
                if json {
                    "application/json"
                } else {
                    "application/x-protobuf"
                },
                &headers,
                Bytes::from(body),
                SEND_TIMEOUT,
            )
            .await
            .map_err(|e| match e {
                // The egress policy will not change its mind between attempts — but the
                // install's policy can be widened: retry slowly rather than drop.
                TransportError::Refused(reason) => SendError::Retryable {
                    reason: format!("refused by the egress policy: {reason}"),
                    after: Some(Duration::from_secs(60)),
                },
                other => SendError::Retryable {
                    reason: other.to_string(),
                    after: None,
                },
            })?;
        let status = reply.status.as_u16();
        let snippet = umpire_runtime::https::snippet(&reply.text);
        match status {
            200..=299 => Ok(()),
            // OTLP/HTTP: 429, 502, 503, 504 are retryable. Credentials (401, 403) and a
            // missing route (404) are fixed by people, after which the backlog must still
            // arrive: those are retried too, slowly.
            429 | 502 | 503 | 504 => Err(SendError::Retryable {
                reason: format!("HTTP {status}: {snippet}"),
                after: reply.retry_after,
            }),
            401 | 403 | 404 | 408 | 500 => Err(SendError::Retryable {
                reason: format!("HTTP {status}: {snippet}"),
                after: Some(Duration::from_secs(30)),
            }),
            _ => Err(SendError::Rejected(format!("HTTP {status}: {snippet}"))),
        }
    }
}

fn secret_error(reason: String) -> SendError {
    // A Secret mid-rotation or briefly missing: the backlog waits for it.
    SendError::Retryable {
        reason: format!("reading a header Secret: {reason}"),
        after: Some(Duration::from_secs(10)),
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

/// A request as its OTLP/HTTP body: protobuf, or the OTLP JSON mapping (opentelemetry-proto's
/// serde implementation: hex ids, camelCase fields, enums as integers).
pub fn encode_body<T: prost::Message + serde::Serialize>(
    request: &T,
    json: bool,
) -> Result<Vec<u8>, SendError> {
    if json {
        serde_json::to_vec(request)
            .map_err(|e| SendError::Rejected(format!("encoding OTLP/JSON: {e}")))
    } else {
        Ok(request.encode_to_vec())
    }
}

fn grpc_error(status: tonic::Status) -> SendError {
    use tonic::Code;
    let reason = format!("gRPC {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange | Code::Unimplemented => {
            SendError::Rejected(reason)
        }
        Code::Unauthenticated | Code::PermissionDenied | Code::NotFound => SendError::Retryable {
            reason,
            after: Some(Duration::from_secs(30)),
        },
        _ => SendError::Retryable {
            reason,
            after: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use umpire_otlp::decode::{Encoding, decode_request};

    /// The OTLP/JSON bodies `httpJson` sends read back, through ingest's own OTLP/JSON
    /// decoder (written to the spec and tested on recorded exports), as the very request
    /// that was encoded — for recordings of three instrumentations.
    #[test]
    fn json_bodies_round_trip_through_an_otlp_json_decoder() {
        let fixtures = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/otlp"
        ));
        for name in [
            "openinference-00.pb",
            "openllmetry-00.pb",
            "otel-genai-00.pb",
        ] {
            let bytes = std::fs::read(fixtures.join(name)).expect("fixture");
            let request = decode_request(&bytes, Encoding::Protobuf).expect("protobuf fixture");
            let json = encode_body(&request, true).expect("encodes");
            let text = String::from_utf8(json.clone()).expect("utf-8");
            let first_span = &request.resource_spans[0].scope_spans[0].spans[0];
            let hex: String = first_span
                .trace_id
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert!(
                text.contains(&format!("\"traceId\":\"{hex}\"")),
                "{name}: ids are hex"
            );
            let read_back = decode_request(&json, Encoding::Json).expect("OTLP/JSON decodes");
            assert_eq!(read_back, request, "{name}");
        }
    }
}
