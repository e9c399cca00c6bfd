//! `umpire ingest` end to end: the real OpenTelemetry SDK exporter (opentelemetry-otlp, over
//! gRPC and over HTTP) sends GenAI spans to the binary, and they appear in JetStream,
//! normalised; SIGTERM shuts it down cleanly.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, Tracer, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use support::UmpireProcess;
use umpire_core::span::{AiSpanKind, Span};
use umpire_testkit::nats::{NatsServer, read_stream_on};

const MANIFEST: &str = r#"
apiVersion: umpire.dev/v1alpha1
kind: TraceProject
metadata: {name: e2e, namespace: team}
spec:
  sampling: {decisionWait: 300ms}
  redaction:
    rules:
      - {name: emails, pattern: '[\w.+-]+@[\w-]+\.[\w.]+', replace: '<email>'}
"#;

/// Emits one GenAI chat span through the SDK with `exporter`, on a plain thread (the
/// blocking HTTP client must not run inside an async runtime; the gRPC client needs one
/// entered, `runtime`).
fn emit(
    exporter: opentelemetry_otlp::SpanExporter,
    service: &'static str,
    runtime: Option<tokio::runtime::Handle>,
) {
    std::thread::spawn(move || {
        let _entered = runtime.as_ref().map(|r| r.enter());
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(service).build())
            .build();
        let tracer = provider.tracer("e2e");
        let mut span = tracer.start("chat gpt-4o-mini");
        span.set_attributes([
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "openai"),
            KeyValue::new("gen_ai.request.model", "gpt-4o-mini"),
            KeyValue::new("gen_ai.usage.input_tokens", 12),
            KeyValue::new("gen_ai.usage.output_tokens", 5),
            KeyValue::new(
                "gen_ai.input.messages",
                r#"[{"role":"user","parts":[{"type":"text","content":"write to ann@example.com"}]}]"#,
            ),
        ]);
        span.end();
        provider.force_flush().unwrap();
        provider.shutdown().unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn the_real_otel_sdk_exports_to_umpire_ingest_over_grpc_and_http() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("project.yaml"), MANIFEST).unwrap();
    let mut ingest = UmpireProcess::spawn(
        &[
            "ingest",
            "--config",
            "project.yaml",
            "--nats-url",
            &nats.url(),
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    let started = ingest.wait_for_event("ingest_starting", Duration::from_secs(20));
    let (grpc, http, admin) = (
        started["grpc"].as_str().unwrap().to_owned(),
        started["http"].as_str().unwrap().to_owned(),
        started["admin"].as_str().unwrap().to_owned(),
    );
    runtime.block_on(umpire_testkit::wait::eventually(
        "ingest ready",
        Duration::from_secs(20),
        || {
            let url = format!("http://{admin}/readyz");
            async move { (reqwest::get(&url).await.ok()?.status() == 200).then_some(()) }
        },
    ));

    let grpc_exporter = {
        let _entered = runtime.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{grpc}"))
            .build()
            .unwrap()
    };
    emit(grpc_exporter, "via-grpc", Some(runtime.handle().clone()));
    let http_exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("http://{http}/v1/traces"))
        .build()
        .unwrap();
    emit(http_exporter, "via-http", None);

    let js = runtime.block_on(async {
        async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap())
    });
    let stream = "UMPIRE_SPANS_team_e2e";
    // The span stream also holds the trace summaries.
    runtime.block_on(umpire_testkit::wait::eventually(
        "two spans stored",
        Duration::from_secs(30),
        || {
            let js = js.clone();
            async move {
                (umpire_testkit::nats::count_on(&js, stream, "umpire.spans.>")
                    .await
                    .ok()?
                    == 2)
                    .then_some(())
            }
        },
    ));
    let stored = runtime
        .block_on(read_stream_on(&js, stream, Some("umpire.spans.>")))
        .unwrap();
    let mut services = Vec::new();
    for message in &stored {
        assert_eq!(message.subject, "umpire.spans.team.e2e.llm.chat");
        let span: Span = umpire_core::stream_codec::from_slice(&message.payload).unwrap();
        assert_eq!(span.ai.kind, Some(AiSpanKind::Llm));
        assert_eq!(span.ai.request_model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(
            (span.ai.usage.input, span.ai.usage.output),
            (Some(12), Some(5))
        );
        assert_eq!(span.ai.input_text(), Some("write to <email>"));
        assert_eq!(span.scope.name, "e2e");
        services.push(span.resource["service.name"].as_str().unwrap().to_owned());
    }
    services.sort();
    assert_eq!(services, ["via-grpc", "via-http"]);

    let metrics = runtime.block_on(async {
        reqwest::get(format!("http://{admin}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        metrics.contains("umpire_ingest_requests_total{protocol=\"grpc\",outcome=\"accepted\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("umpire_ingest_requests_total{protocol=\"http\",outcome=\"accepted\"} 1"),
        "{metrics}"
    );

    assert_eq!(ingest.terminate(), Some(0));
    assert!(
        ingest
            .log
            .iter()
            .any(|l| l.contains("\"event\":\"ingest_stopped\"")),
        "{}",
        ingest.log.join("\n")
    );
    // A shutdown is not an outage: closing the NATS connections warns of nothing.
    let warnings: Vec<&String> = ingest
        .log
        .iter()
        .filter(|l| l.contains("\"level\":\"WARN\""))
        .collect();
    assert!(
        warnings.is_empty(),
        "warnings at a clean shutdown: {warnings:#?}"
    );
}

/// A hand-written config is checked as `umpire check` and the API server would before
/// anything starts (the worker library itself carries no schema or CEL engine): a spec
/// breaking one of the CRD's CEL rules is refused with the rule's message.
#[test]
fn a_spec_the_api_server_would_refuse_is_refused_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("project.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: umpire.dev/v1alpha1\nkind: TraceProject\nmetadata: {name: bad, namespace: team}\nspec:\n  ingest:\n    replicas: 2\n    autoscaling: {minReplicas: 1, maxReplicas: 3}\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_umpire"))
        .args(["ingest", "--config"])
        .arg(&manifest)
        .args(["--nats-url", "nats://127.0.0.1:1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("set either replicas or autoscaling, not both"),
        "{stderr}"
    );
}
