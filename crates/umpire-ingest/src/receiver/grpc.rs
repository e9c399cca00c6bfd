//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use umpire_otlp::trace_service_server::{TraceService, TraceServiceServer};
use umpire_otlp::{ExportTraceServiceRequest, ExportTraceServiceResponse};

use super::admission::{
    Admission, AdmissionError, AdmissionLayer, AdmissionProtocol, BODY_TIMEOUT, BoxError,
    MeteredBody,
};
use super::listener::{KEEPALIVE_INTERVAL, LimitedListener};
use super::{ExportFailure, ExportPipeline, RETRY_AFTER};
use crate::metrics::Protocol;

pub struct GrpcReceiver {
    listener: LimitedListener,
    pipeline: Arc<ExportPipeline>,
    admission: Arc<Admission>,
}

struct TraceEndpoint {
    pipeline: Arc<ExportPipeline>,
}

impl GrpcReceiver {
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

    /// Serves until `shutdown`, then finishes requests in flight.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), tonic::transport::Error> {
        let limit = self.pipeline.max_request_bytes();
        let service = TraceServiceServer::new(TraceEndpoint {
            pipeline: self.pipeline,
        })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        // tonic's own cap (on the decompressed message) is a backstop at twice the limit;
        // up to it, `export` refuses with a message that names the setting.
        .max_decoding_message_size(limit.saturating_mul(2));
        Server::builder()
            // A request (body, decoding, publishing) may take this long in all; the body's
            // own deadline is the admission's.
            .timeout(BODY_TIMEOUT * 2)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .layer(AdmissionLayer::<GrpcAdmission>::new(self.admission))
            .add_service(service)
            .serve_with_incoming_shutdown(self.listener.into_stream(), async move {
                shutdown.cancelled().await
            })
            .await
    }
}

/// gRPC bodies and refusals for the admission layer.
pub struct GrpcAdmission;

impl AdmissionProtocol for GrpcAdmission {
    type Body = Body;
    type ResponseBody = Body;
    const PROTOCOL: Protocol = Protocol::Grpc;

    fn compressed(headers: &HeaderMap) -> bool {
        headers
            .get("grpc-encoding")
            .is_some_and(|v| v.as_bytes() != b"identity")
    }

    fn wrap(body: MeteredBody<Body>) -> Body {
        // tonic answers a body error with the first `Status` in its source chain.
        Body::new(body.map_err(|error: BoxError| -> BoxError {
            match error.downcast::<AdmissionError>() {
                Ok(admission) => Box::new(admission_status(&admission)),
                Err(other) => other,
            }
        }))
    }
}

fn admission_status(error: &AdmissionError) -> Status {
    match error {
        AdmissionError::Overloaded { .. } => status(&ExportFailure::Overloaded(error.to_string())),
        AdmissionError::TimedOut(_) => status(&ExportFailure::TimedOut(error.to_string())),
    }
}

#[tonic::async_trait]
impl TraceService for TraceEndpoint {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let started = Instant::now();
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if let Err(failure) = self.pipeline.authorize(authorization) {
            self.pipeline
                .record_refusal(Protocol::Grpc, &failure, started);
            return Err(status(&failure));
        }
        let request = request.into_inner();
        let limit = self.pipeline.max_request_bytes();
        if prost::Message::encoded_len(&request) > limit {
            let failure = ExportFailure::TooLarge(format!(
                "the request exceeds the {limit}-byte limit (spec.ingest.maxRequestSize)"
            ));
            self.pipeline
                .record_refusal(Protocol::Grpc, &failure, started);
            return Err(status(&failure));
        }
        self.pipeline
            .export(Protocol::Grpc, request, started)
            .await
            .map(Response::new)
            .map_err(|failure| status(&failure))
    }
}

/// The gRPC status OTLP prescribes; RetryInfo marks throttling as retryable.
fn status(failure: &ExportFailure) -> Status {
    let message = failure.message();
    match failure {
        ExportFailure::InvalidPayload(_) | ExportFailure::UnsupportedMediaType(_) => {
            Status::invalid_argument(message)
        }
        ExportFailure::TooLarge(_) => Status::resource_exhausted(message),
        ExportFailure::TimedOut(_) => Status::deadline_exceeded(message),
        ExportFailure::Unauthenticated => Status::unauthenticated(message),
        ExportFailure::Unavailable(_) => Status::unavailable(message),
        ExportFailure::Overloaded(_) => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
        ),
    }
}
