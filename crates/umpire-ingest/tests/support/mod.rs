//! Shared by the ingest tests: an in-process ingest worker on loopback ports, OTLP request
//! builders, and readers for what reached JetStream.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use umpire_contract::ingest::{IngestConfig, ListenAddresses};
use umpire_core::span::{Span as DomainSpan, spans_of_message};
use umpire_ingest::RunningIngest;
use umpire_nats::connect::NatsSettings;
use umpire_otlp::ExportTraceServiceRequest;
pub use umpire_otlp::attributes::string_kv;
use umpire_otlp::proto::{ResourceSpans, ScopeSpans, Span, Status};
use umpire_testkit::nats::{StoredMessage, read_stream_on};
use umpire_testkit::wait::eventually;

pub const NAMESPACE: &str = "test";
pub const PROJECT: &str = "app";

/// The span stream's spans (it also holds the trace summaries).
pub const SPAN_SUBJECTS: &str = "umpire.spans.>";

pub fn spans_stream() -> String {
    format!("UMPIRE_SPANS_{NAMESPACE}_{PROJECT}")
}

pub struct TestIngest {
    pub http: String,
    pub grpc: String,
    pub admin: String,
    shutdown: CancellationToken,
    running: Option<RunningIngest>,
}

pub struct Options {
    pub member: String,
    pub token_file: Option<PathBuf>,
    pub lease_ttl: Duration,
    pub ack_wait: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            member: "replica-0".into(),
            token_file: None,
            lease_ttl: Duration::from_secs(3),
            ack_wait: Some(Duration::from_secs(5)),
        }
    }
}

impl TestIngest {
    /// Starts ingest for `spec` (TraceProject spec JSON) and waits until it owns partitions
    /// and is ready.
    pub async fn start(nats_url: &str, spec: Value) -> Self {
        Self::start_with(nats_url, spec, Options::default()).await
    }

    pub async fn start_with(nats_url: &str, spec: Value, options: Options) -> Self {
        umpire_runtime::telemetry::init_with(
            umpire_runtime::telemetry::LogFormat::Text,
            "umpire=info,warn",
            umpire_runtime::telemetry::LogTarget::TestOutput,
        );
        let config = IngestConfig {
            namespace: NAMESPACE.into(),
            project: PROJECT.into(),
            spec: serde_json::from_value(spec).unwrap(),
            nats: NatsSettings {
                url: nats_url.into(),
                ..Default::default()
            },
            listen: ListenAddresses {
                grpc: "127.0.0.1:0".parse().unwrap(),
                http: "127.0.0.1:0".parse().unwrap(),
                admin: "127.0.0.1:0".parse().unwrap(),
            },
            auth_token_file: options.token_file,
            secret_dir: None,
            egress: None,
            member_id: Some(options.member),
            partitions: 16,
            intake_max_bytes: 256 << 20,
            intake_ack_wait: options.ack_wait,
            lease_ttl: Some(options.lease_ttl),
        };
        let shutdown = CancellationToken::new();
        let running = umpire_ingest::start(config, shutdown.clone())
            .await
            .unwrap();
        let ingest = Self {
            http: format!("http://{}/v1/traces", running.http_addr),
            grpc: format!("http://{}", running.grpc_addr),
            admin: format!("http://{}", running.admin_addr),
            shutdown,
            running: Some(running),
        };
        ingest.wait_ready().await;
        ingest
    }

    pub async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.admin);
        // 60 s: on the 2-core CI machine a three-node cluster and ingest starting together once
        // took over 20 s.
        eventually("ingest to be ready", Duration::from_secs(60), || {
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
                    .map(|_| ())
            }
        })
        .await;
    }

    /// Waits until this replica owns at least `count` partitions.
    pub async fn wait_partitions(&self, count: f64) {
        eventually("partition leases", Duration::from_secs(30), || async move {
            (self.metric("umpire_ingest_partitions_owned").await >= count).then_some(())
        })
        .await;
    }

    /// Sum of every sample of a metric (all label sets).
    pub async fn metric(&self, name: &str) -> f64 {
        metric_sum(&self.admin, name, None).await
    }

    pub async fn metric_with(&self, name: &str, label: &str) -> f64 {
        metric_sum(&self.admin, name, Some(label)).await
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Graceful shutdown, awaited.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.wait().await;
        }
    }
}

impl Drop for TestIngest {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn metric_sum(admin: &str, name: &str, label: Option<&str>) -> f64 {
    let Ok(response) = reqwest::get(format!("{admin}/metrics")).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.split(['{', ' ']).next() == Some(name))
        .filter(|line| label.is_none_or(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn trace_id(n: u32) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id[4..8].copy_from_slice(&0x5eed_u32.to_be_bytes());
    id[15] = 1;
    id
}

pub fn trace_hex(n: u32) -> String {
    trace_id(n).iter().map(|b| format!("{b:02x}")).collect()
}

/// A span of trace `trace`, number `index` within it.
pub fn span(
    trace: u32,
    index: u32,
    error: bool,
    duration_ms: u64,
    attributes: Vec<KeyValue>,
) -> Span {
    let mut span_id = [0u8; 8];
    span_id[..4].copy_from_slice(&trace.to_be_bytes());
    span_id[4..].copy_from_slice(&(index + 1).to_be_bytes());
    let start = 1_800_000_000_000_000_000u64;
    Span {
        trace_id: trace_id(trace).to_vec(),
        span_id: span_id.to_vec(),
        name: format!("step-{index}"),
        kind: 3,
        start_time_unix_nano: start,
        end_time_unix_nano: start + duration_ms * 1_000_000,
        attributes,
        status: Some(Status {
            code: if error { 2 } else { 0 },
            message: String::new(),
        }),
        ..Default::default()
    }
}

pub fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", "test-app")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub async fn post_protobuf(url: &str, request: &ExportTraceServiceRequest) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap()
}

pub fn fixture(name: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/otlp");
    std::fs::read(dir.join(name)).unwrap()
}

/// A JetStream context on `nats_url` (comma-separated URLs: any of the servers).
pub async fn jetstream(nats_url: &str) -> jetstream::Context {
    let servers: Vec<async_nats::ServerAddr> =
        nats_url.split(',').map(|u| u.parse().unwrap()).collect();
    jetstream::new(async_nats::connect(servers).await.unwrap())
}

/// Every span the span stream holds, each with the message it travelled in (a message
/// holds one span or a batch of a trace's spans). Reading is retried: after a node is
/// killed and restarted, a direct get can briefly find no responder (503) while the
/// stream's leader is elected again.
pub async fn stored_spans(js: &jetstream::Context) -> Option<Vec<(StoredMessage, DomainSpan)>> {
    let messages = read_stream_on(js, &spans_stream(), Some(SPAN_SUBJECTS))
        .await
        .ok()?;
    let mut spans = Vec::new();
    for message in messages {
        for span in spans_of_message(&message.payload).unwrap() {
            spans.push((message.clone(), span));
        }
    }
    Some(spans)
}

/// Waits until the span stream holds at least `count` spans, then returns them.
pub async fn kept_spans(js: &jetstream::Context, count: usize) -> Vec<(StoredMessage, DomainSpan)> {
    eventually(
        &format!("{count} spans in the span stream, read back"),
        Duration::from_secs(60),
        || async move { stored_spans(js).await.filter(|spans| spans.len() >= count) },
    )
    .await
}

/// Kept span ids grouped by trace id (hex).
pub fn by_trace(spans: &[(StoredMessage, DomainSpan)]) -> BTreeMap<String, Vec<String>> {
    let mut traces: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, span) in spans {
        traces
            .entry(span.trace_id.to_string())
            .or_default()
            .push(span.span_id.to_string());
    }
    traces
}

pub fn keep_all(decision_wait: &str) -> Value {
    json!({"sampling": {"decisionWait": decision_wait}})
}

/// Sends one request until ingest accepts it, backing off on retryable answers.
pub async fn send_until_accepted(url: &str, request: &umpire_otlp::ExportTraceServiceRequest) {
    let client = reqwest::Client::new();
    let body = prost::Message::encode_to_vec(request);
    let mut delay = Duration::from_millis(50);
    for _ in 0..400 {
        let sent = client
            .post(url)
            .header("content-type", "application/x-protobuf")
            .timeout(Duration::from_secs(10))
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status() == 200 => return,
            Ok(response) => {
                let status = response.status().as_u16();
                assert!(
                    matches!(status, 429 | 502 | 503 | 504),
                    "non-retryable answer {status}"
                );
            }
            Err(_) => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
    panic!("a request was never accepted");
}

/// Span ids (`<trace hex>-<span id>`) ingest acknowledged to the clients.
pub type Acknowledged = std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>;

/// `clients` OTLP/HTTP clients, each sending `requests` requests of `spans` spans (one trace
/// per request) until accepted, pausing `pause` between requests; every acknowledged span id
/// lands in `acknowledged`.
pub fn client_load(
    url: &str,
    clients: u32,
    requests: u32,
    spans: u32,
    pause: Duration,
    acknowledged: &Acknowledged,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|client| {
            let url = url.to_owned();
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                for n in 0..requests {
                    let trace = client * 10_000 + n + 1;
                    let batch: Vec<_> = (0..spans)
                        .map(|i| span(trace, i, false, 1, vec![]))
                        .collect();
                    let ids: Vec<String> = (0..spans)
                        .map(|i| format!("{}-{:08x}{:08x}", trace_hex(trace), trace, i + 1))
                        .collect();
                    send_until_accepted(&url, &request(batch)).await;
                    acknowledged.lock().unwrap().extend(ids);
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
            })
        })
        .collect()
}
