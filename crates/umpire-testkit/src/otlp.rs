//! A trace backend stand-in: real OTLP receivers — HTTP (`POST /v1/traces`, `/v1/logs`,
//! protobuf, gzip or not) and gRPC (TraceService, LogsService, gzip or not) — that record
//! every request with its headers, and can be made unavailable (HTTP 503, gRPC UNAVAILABLE)
//! to play an outage.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;

#[derive(Default)]
struct Recorded {
    spans: Mutex<Vec<Span>>,
    records: Mutex<Vec<LogRecord>>,
    headers: Mutex<Vec<HashMap<String, String>>>,
    unavailable: AtomicBool,
    refused: AtomicU64,
}

impl Recorded {
    fn keep_headers(&self, headers: HashMap<String, String>) {
        if let Ok(mut all) = self.headers.lock() {
            all.push(headers);
        }
    }

    fn traces(&self, request: ExportTraceServiceRequest) {
        let spans = request
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        if let Ok(mut all) = self.spans.lock() {
            all.extend(spans);
        }
    }

    fn logs(&self, request: ExportLogsServiceRequest) {
        let records = request
            .resource_logs
            .into_iter()
            .flat_map(|r| r.scope_logs)
            .flat_map(|s| s.log_records);
        if let Ok(mut all) = self.records.lock() {
            all.extend(records);
        }
    }

    /// During an outage every request is refused (and counted).
    fn down(&self) -> bool {
        let down = self.unavailable.load(Ordering::SeqCst);
        if down {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        down
    }
}

pub struct OtlpReceiver {
    http: SocketAddr,
    grpc: SocketAddr,
    recorded: Arc<Recorded>,
    tasks: Vec<JoinHandle<()>>,
}

impl OtlpReceiver {
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(std::net::IpAddr::from([127, 0, 0, 1])).await
    }

    /// Listens on `listen` (e.g. a pod network's gateway) instead of loopback.
    pub async fn start_on(listen: std::net::IpAddr) -> std::io::Result<Self> {
        let recorded = Arc::new(Recorded::default());
        let http_listener = TcpListener::bind((listen, 0)).await?;
        let http = http_listener.local_addr()?;
        let app = Router::new()
            .route("/v1/traces", post(http_traces))
            .route("/v1/logs", post(http_logs))
            .with_state(recorded.clone());
        let http_task = tokio::spawn(async move {
            let _ = axum::serve(http_listener, app).await;
        });
        let grpc_listener = TcpListener::bind((listen, 0)).await?;
        let grpc = grpc_listener.local_addr()?;
        let service = GrpcService(recorded.clone());
        let grpc_task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(
                    TraceServiceServer::new(service.clone())
                        .accept_compressed(CompressionEncoding::Gzip),
                )
                .add_service(
                    LogsServiceServer::new(service).accept_compressed(CompressionEncoding::Gzip),
                )
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc_listener))
                .await;
        });
        Ok(Self {
            http,
            grpc,
            recorded,
            tasks: vec![http_task, grpc_task],
        })
    }

    /// The OTLP/HTTP base URL (`http://host:port`).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The OTLP/gRPC URL.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Answer every request with 503 / UNAVAILABLE (`true`) or normally again.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.recorded
            .unavailable
            .store(unavailable, Ordering::SeqCst);
    }

    /// Requests refused while unavailable.
    pub fn refused(&self) -> u64 {
        self.recorded.refused.load(Ordering::SeqCst)
    }

    pub fn spans(&self) -> Vec<Span> {
        self.recorded
            .spans
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    pub fn log_records(&self) -> Vec<LogRecord> {
        self.recorded
            .records
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Headers of every accepted request (names lowercase).
    pub fn headers(&self) -> Vec<HashMap<String, String>> {
        self.recorded
            .headers
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn header_map(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

fn body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, StatusCode> {
    let gzipped = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzipped {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    Ok(out)
}

/// Decodes an OTLP/HTTP body (gzip or not; protobuf, or JSON when the content type says so)
/// as `T` and records it with `keep`.
fn accept<T: Message + Default + serde::de::DeserializeOwned>(
    recorded: &Recorded,
    headers: &HeaderMap,
    raw: &[u8],
    keep: fn(&Recorded, T),
) -> StatusCode {
    if recorded.down() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let decoded = body(headers, raw).and_then(|b| {
        if json {
            serde_json::from_slice(&b).map_err(|_| StatusCode::BAD_REQUEST)
        } else {
            T::decode(b.as_slice()).map_err(|_| StatusCode::BAD_REQUEST)
        }
    });
    match decoded {
        Ok(request) => {
            recorded.keep_headers(header_map(headers));
            keep(recorded, request);
            StatusCode::OK
        }
        Err(status) => status,
    }
}

async fn http_traces(
    State(recorded): State<Arc<Recorded>>,
    headers: HeaderMap,
    raw: Bytes,
) -> StatusCode {
    accept(&recorded, &headers, &raw, Recorded::traces)
}

async fn http_logs(
    State(recorded): State<Arc<Recorded>>,
    headers: HeaderMap,
    raw: Bytes,
) -> StatusCode {
    accept(&recorded, &headers, &raw, Recorded::logs)
}

#[derive(Clone)]
struct GrpcService(Arc<Recorded>);

fn metadata_map(metadata: &tonic::metadata::MetadataMap) -> HashMap<String, String> {
    header_map(&metadata.clone().into_headers())
}

#[tonic::async_trait]
impl TraceService for GrpcService {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if self.0.down() {
            return Err(tonic::Status::unavailable("the backend is down"));
        }
        self.0.keep_headers(metadata_map(request.metadata()));
        self.0.traces(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for GrpcService {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        if self.0.down() {
            return Err(tonic::Status::unavailable("the backend is down"));
        }
        self.0.keep_headers(metadata_map(request.metadata()));
        self.0.logs(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}
