//! Traffic through the real OpenTelemetry SDK exporters (`opentelemetry-otlp`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Sends GenAI chat spans through the real SDK: a gRPC exporter to one ingest pod and an HTTP
/// exporter to the other, one span every 200 ms each; `stale` makes the answers ungrounded.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    pub sent: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn chat_span(provider: &SdkTracerProvider, stale: bool) {
    let answer = if stale {
        "STALE: the jacket ships from the moon"
    } else {
        "Returns are accepted within 30 days."
    };
    let tracer = provider.tracer("e2e");
    let mut span = tracer.start("chat gpt-4o-mini");
    span.set_attributes([
        KeyValue::new("gen_ai.operation.name", "chat"),
        KeyValue::new("gen_ai.provider.name", "openai"),
        KeyValue::new("gen_ai.request.model", "gpt-4o-mini"),
        KeyValue::new("gen_ai.usage.input_tokens", 40),
        KeyValue::new("gen_ai.usage.output_tokens", 9),
        KeyValue::new(
            "gen_ai.input.messages",
            r#"[{"role":"user","parts":[{"type":"text","content":"How long can I return a jacket?"}]}]"#,
        ),
        KeyValue::new(
            "gen_ai.output.messages",
            format!(
                r#"[{{"role":"assistant","parts":[{{"type":"text","content":"{answer}"}}],"finish_reason":"stop"}}]"#
            ),
        ),
    ]);
    span.end();
}

impl Traffic {
    pub fn start(
        grpc: String,
        http: String,
        stale: Arc<AtomicBool>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for grpc_exporter in [true, false] {
            let (stopping, counting, stale) = (stop.clone(), sent.clone(), stale.clone());
            let (grpc, http, runtime) = (grpc.clone(), http.clone(), runtime.clone());
            threads.push(std::thread::spawn(move || {
                // The gRPC exporter needs a runtime entered; the HTTP one is a blocking
                // client, which must not run inside one.
                let _entered = grpc_exporter.then(|| runtime.enter());
                let exporter = if grpc_exporter {
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_tonic()
                        .with_endpoint(format!("http://{grpc}"))
                        .build()
                        .unwrap()
                } else {
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_http()
                        .with_protocol(Protocol::HttpBinary)
                        .with_endpoint(format!("http://{http}/v1/traces"))
                        .build()
                        .unwrap()
                };
                let provider = SdkTracerProvider::builder()
                    .with_simple_exporter(exporter)
                    .with_resource(
                        Resource::builder()
                            .with_service_name("shop-assistant")
                            .build(),
                    )
                    .build();
                while !stopping.load(Ordering::Relaxed) {
                    chat_span(&provider, stale.load(Ordering::Relaxed));
                    counting.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(200));
                }
                let _ = provider.shutdown();
            }));
        }
        Self {
            stop,
            sent,
            threads,
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
