//! OTLP/HTTP: `POST /v1/traces` with protobuf or JSON bodies, optionally gzip-compressed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prost::Message;
use tokio_util::sync::CancellationToken;
use umpire_otlp::decode::{Encoding, decode_request, encode_response, gunzip};

use super::admission::{
    Admission, AdmissionError, AdmissionLayer, AdmissionProtocol, MeteredBody, admission_error,
};
use super::listener::{HEADER_READ_TIMEOUT, KEEPALIVE_INTERVAL, LimitedListener};
use super::{ExportFailure, ExportPipeline, RETRY_AFTER};
use crate::metrics::Protocol;

/// Largest read buffer per HTTP/1 connection.
const READ_BUFFER_BYTES: usize = 16 << 10;

pub struct HttpReceiver {
    listener: LimitedListener,
    pipeline: Arc<ExportPipeline>,
    admission: Arc<Admission>,
}

impl HttpReceiver {
    pub async fn bind(
        addr: SocketAddr,
        pipeline: Arc<ExportPipeline>,
        admission: Arc<Admission>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            listener: LimitedListener::bind(addr).await?,
            pipeline,
            admission,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, then finishes requests in flight. Served with hyper directly
    /// rather than `axum::serve`, which sets no timer and so no header read timeout.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(self.pipeline)
            .layer(AdmissionLayer::<HttpAdmission>::new(self.admission));
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            // hyper's read buffer grows to ~400 KiB per connection on large bodies; with a
            // thousand connections that alone outgrew a 512 MiB pod.
            .max_buf_size(READ_BUFFER_BYTES);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEPALIVE_INTERVAL);
        let graceful = GracefulShutdown::new();
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                stream = self.listener.accept() => stream,
            };
            let connection = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()))
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(event = "http_connection_ended", error = %e, "an OTLP/HTTP connection ended with an error");
                }
            });
        }
        drop(self.listener);
        graceful.shutdown().await;
        Ok(())
    }
}

/// HTTP bodies and refusals for the admission layer.
pub struct HttpAdmission;

impl AdmissionProtocol for HttpAdmission {
    type Body = Body;
    type ResponseBody = Body;
    const PROTOCOL: Protocol = Protocol::Http;

    fn compressed(headers: &HeaderMap) -> bool {
        headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    }

    fn wrap(body: MeteredBody<Body>) -> Body {
        Body::new(body)
    }
}

fn admission_failure(error: &AdmissionError) -> ExportFailure {
    match error {
        AdmissionError::Overloaded { .. } => ExportFailure::Overloaded(error.to_string()),
        AdmissionError::TimedOut(_) => ExportFailure::TimedOut(error.to_string()),
    }
}

async fn export(
    State(pipeline): State<Arc<ExportPipeline>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let encoding = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Encoding::from_content_type);
    let request = match read_request(&pipeline, &headers, encoding, body).await {
        Ok(request) => request,
        Err(Refused::Admission(refusal)) => {
            // Counted by umpire_ingest_admission_refused_total.
            return failure_response(&refusal, encoding.unwrap_or(Encoding::Json));
        }
        Err(Refused::Request(refusal)) => {
            pipeline.record_refusal(Protocol::Http, &refusal, started);
            return failure_response(&refusal, encoding.unwrap_or(Encoding::Json));
        }
    };
    let encoding = encoding.unwrap_or(Encoding::Json);
    match pipeline.export(Protocol::Http, request, started).await {
        Ok(response) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(encoding.content_type()),
            )],
            encode_response(&response, encoding),
        )
            .into_response(),
        Err(failure) => failure_response(&failure, encoding),
    }
}

enum Refused {
    /// By the byte budget or the body deadline, while the body was read.
    Admission(ExportFailure),
    Request(ExportFailure),
}

impl From<ExportFailure> for Refused {
    fn from(failure: ExportFailure) -> Self {
        Self::Request(failure)
    }
}

/// Authenticates, reads, decompresses and decodes the body; every refusal here happens
/// before the pipeline runs.
async fn read_request(
    pipeline: &ExportPipeline,
    headers: &HeaderMap,
    encoding: Option<Encoding>,
    body: Body,
) -> Result<umpire_otlp::ExportTraceServiceRequest, Refused> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    pipeline.authorize(authorization)?;
    let Some(encoding) = encoding else {
        return Err(ExportFailure::UnsupportedMediaType(
            "Content-Type must be application/x-protobuf or application/json".into(),
        )
        .into());
    };
    let limit = pipeline.max_request_bytes();
    let raw: Bytes =
        axum::body::to_bytes(body, limit)
            .await
            .map_err(|e| match admission_error(&e) {
                Some(admission) => Refused::Admission(admission_failure(admission)),
                None => Refused::Request(ExportFailure::TooLarge(format!(
                    "the request body exceeds the {limit}-byte limit (spec.ingest.maxRequestSize)"
                ))),
            })?;
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    let body = match content_encoding.to_ascii_lowercase().as_str() {
        "gzip" => gunzip(&raw, limit).map_err(|e| match e {
            umpire_otlp::decode::DecodeError::TooLarge { .. } => {
                ExportFailure::TooLarge(e.to_string())
            }
            other => ExportFailure::InvalidPayload(other.to_string()),
        })?,
        "identity" | "" => raw.to_vec(),
        other => {
            return Err(ExportFailure::UnsupportedMediaType(format!(
                "unsupported Content-Encoding {other:?} (use gzip or none)"
            ))
            .into());
        }
    };
    decode_request(&body, encoding).map_err(|e| ExportFailure::InvalidPayload(e.to_string()).into())
}

/// An OTLP/HTTP error: the status code the spec prescribes and a `google.rpc.Status` body in
/// the request's encoding; `Retry-After` on retryable refusals.
fn failure_response(failure: &ExportFailure, encoding: Encoding) -> Response {
    let (status, grpc_code) = match failure {
        ExportFailure::InvalidPayload(_) => (StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument),
        ExportFailure::TooLarge(_) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            tonic::Code::ResourceExhausted,
        ),
        ExportFailure::UnsupportedMediaType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
        ),
        ExportFailure::Unauthenticated => (StatusCode::UNAUTHORIZED, tonic::Code::Unauthenticated),
        ExportFailure::TimedOut(_) => (StatusCode::REQUEST_TIMEOUT, tonic::Code::DeadlineExceeded),
        ExportFailure::Unavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable)
        }
        ExportFailure::Overloaded(_) => (
            StatusCode::TOO_MANY_REQUESTS,
            tonic::Code::ResourceExhausted,
        ),
    };
    let message = failure.message();
    let body = match encoding {
        Encoding::Protobuf => tonic_types::Status {
            code: grpc_code as i32,
            message,
            details: Vec::new(),
        }
        .encode_to_vec(),
        Encoding::Json => serde_json::json!({"code": grpc_code as i32, "message": message})
            .to_string()
            .into_bytes(),
    };
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        )],
        body,
    )
        .into_response();
    if matches!(
        failure,
        ExportFailure::Unavailable(_) | ExportFailure::Overloaded(_)
    ) {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(RETRY_AFTER.as_secs()),
        );
    }
    if matches!(failure, ExportFailure::Unauthenticated) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
