//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use umpire_otlp::trace_service_server::{TraceService, TraceServiceServer};
use umpire_otlp::{ExportTraceServiceRequest, ExportTraceServiceResponse};

use super::{ExportFailure, ExportPipeline, RETRY_AFTER};
use crate::metrics::Protocol;

pub struct GrpcReceiver {
    listener: TcpListener,
    pipeline: Arc<ExportPipeline>,
}

struct TraceEndpoint {
    pipeline: Arc<ExportPipeline>,
}

impl GrpcReceiver {
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
        let incoming = tokio_stream_listener(self.listener);
        Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move { shutdown.cancelled().await })
            .await
    }
}

fn tokio_stream_listener(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((accepted, listener))
    })
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
        ExportFailure::Unauthenticated => Status::unauthenticated(message),
        ExportFailure::Unavailable(_) => Status::unavailable(message),
        ExportFailure::Overloaded(_) => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
        ),
    }
}
