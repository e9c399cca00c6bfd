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
use prost::Message;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use umpire_otlp::decode::{Encoding, decode_request, encode_response, gunzip};

use super::{ExportFailure, ExportPipeline, RETRY_AFTER};
use crate::metrics::Protocol;

pub struct HttpReceiver {
    listener: TcpListener,
    pipeline: Arc<ExportPipeline>,
}

impl HttpReceiver {
    pub async fn bind(addr: SocketAddr, pipeline: Arc<ExportPipeline>) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            pipeline,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, then finishes requests in flight.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(self.pipeline);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
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
        Err(refusal) => {
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

/// Authenticates, reads, decompresses and decodes the body; every refusal here happens
/// before the pipeline runs.
async fn read_request(
    pipeline: &ExportPipeline,
    headers: &HeaderMap,
    encoding: Option<Encoding>,
    body: Body,
) -> Result<umpire_otlp::ExportTraceServiceRequest, ExportFailure> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    pipeline.authorize(authorization)?;
    let Some(encoding) = encoding else {
        return Err(ExportFailure::UnsupportedMediaType(
            "Content-Type must be application/x-protobuf or application/json".into(),
        ));
    };
    let limit = pipeline.max_request_bytes();
    let raw: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ExportFailure::TooLarge(format!(
            "the request body exceeds the {limit}-byte limit (spec.ingest.maxRequestSize)"
        ))
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
            )));
        }
    };
    decode_request(&body, encoding).map_err(|e| ExportFailure::InvalidPayload(e.to_string()))
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
