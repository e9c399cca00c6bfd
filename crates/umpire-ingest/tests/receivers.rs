//! The OTLP receivers answer exactly as the OTLP specification prescribes, and accepted
//! spans reach the span stream normalised.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use serde_json::json;
use support::*;
use umpire_core::batch::batch_message_id;
use umpire_core::span::{AiSpanKind, spans_of_message};
use umpire_otlp::ExportTraceServiceResponse;
use umpire_testkit::nats::NatsServer;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn accepts_protobuf_json_and_gzip_and_stores_normalised_spans() {
    let nats = NatsServer::start().unwrap();
    let ingest = TestIngest::start(&nats.url(), keep_all("200ms")).await;
    let client = reqwest::Client::new();

    let pb = client
        .post(&ingest.http)
        .header("content-type", "application/x-protobuf")
        .body(fixture("openinference-00.pb"))
        .send()
        .await
        .unwrap();
    assert_eq!(pb.status(), 200);
    assert_eq!(pb.headers()["content-type"], "application/x-protobuf");
    let answer = ExportTraceServiceResponse::decode(pb.bytes().await.unwrap()).unwrap();
    assert_eq!(answer.partial_success, None);

    let json = client
        .post(&ingest.http)
        .header("content-type", "application/json")
        .body(fixture("openllmetry-00.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 200);
    assert_eq!(json.text().await.unwrap(), "{}");

    let gzipped = client
        .post(&ingest.http)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gzip(&fixture("otel-genai-00.pb")))
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.status(), 200);

    let js = jetstream(&nats.url()).await;
    let spans = kept_spans(&js, 36 + 12 + 27).await;
    assert_eq!(spans.len(), 75);
    let ids: std::collections::HashSet<_> = spans.iter().map(|(_, s)| s.dedup_id()).collect();
    assert_eq!(ids.len(), 75, "each span stored once");
    for (message, span) in &spans {
        // A lone span's message carries the span's id; a batch's names its spans.
        let carried: Vec<_> = spans_of_message(&message.payload)
            .unwrap()
            .iter()
            .map(|s| s.span_id)
            .collect();
        let expected = match carried.len() {
            1 => span.dedup_id(),
            _ => batch_message_id(&span.trace_id, &carried),
        };
        assert_eq!(
            message.message_id.as_deref(),
            Some(expected.as_str()),
            "deduplicated by Nats-Msg-Id"
        );
        let kind = span
            .ai
            .kind
            .map(|k| k.name().to_ascii_lowercase())
            .unwrap_or_else(|| "none".into());
        assert!(
            message
                .subject
                .starts_with(&format!("umpire.spans.test.app.{kind}.")),
            "{}",
            message.subject
        );
    }
    let chat = spans
        .iter()
        .find(|(_, s)| s.span_id.to_string() == "fcf745955fa3b6af")
        .unwrap();
    assert_eq!(chat.0.subject, "umpire.spans.test.app.llm.chat");
    assert_eq!(chat.1.ai.kind, Some(AiSpanKind::Llm));
    assert_eq!(
        chat.1.ai.output_text().as_deref(),
        Some("{\"answer\": \"42\", \"confidence\": 0.9}")
    );
    assert_eq!(
        ingest.metric("umpire_ingest_spans_received_total").await,
        75.0
    );
    assert_eq!(
        ingest
            .metric_with("umpire_ingest_requests_total", "outcome=\"accepted\"")
            .await,
        3.0
    );
    ingest.stop().await;
}

#[tokio::test]
async fn reports_partial_success_for_spans_with_invalid_ids() {
    let nats = NatsServer::start().unwrap();
    let ingest = TestIngest::start(&nats.url(), keep_all("200ms")).await;
    let mut bad = span(1, 0, false, 5, vec![]);
    bad.trace_id = vec![0; 16];
    let response = post_protobuf(
        &ingest.http,
        &request(vec![span(2, 0, false, 5, vec![]), bad]),
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    let partial = answer.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("trace_id"),
        "{}",
        partial.error_message
    );
    let spans = kept_spans(&jetstream(&nats.url()).await, 1).await;
    assert_eq!(spans[0].1.trace_id.to_string(), trace_hex(2));
    assert_eq!(
        ingest
            .metric_with("umpire_ingest_spans_rejected_total", "invalid_id")
            .await,
        1.0
    );
}

#[tokio::test]
async fn refuses_bad_requests_with_otlp_codes() {
    let nats = NatsServer::start().unwrap();
    let spec = json!({"ingest": {"maxRequestSize": "64Ki"}, "sampling": {"decisionWait": "200ms"}});
    let ingest = TestIngest::start(&nats.url(), spec).await;
    let client = reqwest::Client::new();
    let post = |content_type: &'static str, body: Vec<u8>| {
        client
            .post(&ingest.http)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let garbage = post("application/x-protobuf", vec![0xff, 0xff, 0xff, 0x01])
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    let status = tonic_types::Status::decode(garbage.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, tonic::Code::InvalidArgument as i32);
    assert!(status.message.contains("protobuf"), "{}", status.message);

    let bad_json = post("application/json", b"{\"resourceSpans\": 3}".to_vec())
        .await
        .unwrap();
    assert_eq!(bad_json.status(), 400);
    let body: serde_json::Value = serde_json::from_slice(&bad_json.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], 3);

    let text = post("text/plain", b"hello".to_vec()).await.unwrap();
    assert_eq!(text.status(), 415);

    let big = request(vec![span(
        1,
        0,
        false,
        1,
        vec![string_kv("input.value", &"x".repeat(100_000))],
    )]);
    let too_large = post("application/x-protobuf", big.encode_to_vec())
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    assert!(
        tonic_types::Status::decode(too_large.bytes().await.unwrap())
            .unwrap()
            .message
            .contains("65536-byte limit")
    );

    // Small on the wire, too large once inflated.
    let bomb = client
        .post(&ingest.http)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gzip(&big.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(bomb.status(), 413);

    let mut grpc = TraceServiceClient::connect(ingest.grpc.clone())
        .await
        .unwrap();
    let refused = grpc.export(big.clone()).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("spec.ingest.maxRequestSize"),
        "{}",
        refused.message()
    );

    assert_eq!(
        ingest
            .metric_with("umpire_ingest_requests_total", "invalid_payload")
            .await,
        2.0
    );
    assert_eq!(
        ingest
            .metric_with("umpire_ingest_requests_total", "unsupported_media_type")
            .await,
        1.0
    );
    assert_eq!(
        ingest
            .metric_with("umpire_ingest_requests_total", "too_large")
            .await,
        3.0
    );
    // Nothing refused reached the span store.
    let js = jetstream(&nats.url()).await;
    let spans = umpire_testkit::nats::count_on(&js, &spans_stream(), SPAN_SUBJECTS)
        .await
        .unwrap();
    assert_eq!(spans, 0);
}

#[tokio::test]
async fn requires_the_bearer_token_when_configured() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let spec = json!({
        "ingest": {"auth": {"bearerTokenSecretRef": {"name": "otlp", "key": "token"}}},
        "sampling": {"decisionWait": "200ms"}
    });
    let ingest = TestIngest::start_with(
        &nats.url(),
        spec,
        Options {
            token_file: Some(token_file),
            ..Options::default()
        },
    )
    .await;
    let body = request(vec![span(1, 0, false, 1, vec![])]).encode_to_vec();
    let client = reqwest::Client::new();
    let send = |token: Option<&'static str>| {
        let mut builder = client
            .post(&ingest.http)
            .header("content-type", "application/x-protobuf")
            .body(body.clone());
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        builder.send()
    };
    let missing = send(None).await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_eq!(send(Some("wrong")).await.unwrap().status(), 401);
    assert_eq!(send(Some("s3cret-token")).await.unwrap().status(), 200);

    let mut grpc = TraceServiceClient::connect(ingest.grpc.clone())
        .await
        .unwrap();
    let refused = grpc
        .export(request(vec![span(2, 0, false, 1, vec![])]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut authorized = tonic::Request::new(request(vec![span(3, 0, false, 1, vec![])]));
    authorized
        .metadata_mut()
        .insert("authorization", "Bearer s3cret-token".parse().unwrap());
    grpc.export(authorized).await.unwrap();

    let spans = kept_spans(&jetstream(&nats.url()).await, 2).await;
    let traces = by_trace(&spans);
    assert_eq!(
        traces.keys().cloned().collect::<Vec<_>>(),
        [trace_hex(1), trace_hex(3)]
    );
    assert_eq!(
        ingest
            .metric_with("umpire_ingest_requests_total", "unauthenticated")
            .await,
        3.0
    );
}

#[tokio::test]
async fn answers_unavailable_while_nats_is_down_and_recovers() {
    let mut nats = NatsServer::start().unwrap();
    let ingest = TestIngest::start(&nats.url(), keep_all("200ms")).await;
    let body = |trace| request(vec![span(trace, 0, false, 1, vec![])]);
    assert_eq!(post_protobuf(&ingest.http, &body(1)).await.status(), 200);

    nats.kill();
    let readyz = format!("{}/readyz", ingest.admin);
    umpire_testkit::wait::eventually("readiness to fail", Duration::from_secs(15), || {
        let url = readyz.clone();
        async move { (reqwest::get(&url).await.ok()?.status() == 503).then_some(()) }
    })
    .await;
    let refused = post_protobuf(&ingest.http, &body(2)).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "2");
    let mut grpc = TraceServiceClient::connect(ingest.grpc.clone())
        .await
        .unwrap();
    assert_eq!(
        grpc.export(body(3)).await.unwrap_err().code(),
        tonic::Code::Unavailable
    );

    nats.restart().unwrap();
    ingest.wait_ready().await;
    umpire_testkit::wait::eventually("exports to succeed again", Duration::from_secs(20), || {
        let url = ingest.http.clone();
        async move { (post_protobuf(&url, &body(4)).await.status() == 200).then_some(()) }
    })
    .await;
    let spans = kept_spans(&jetstream(&nats.url()).await, 2).await;
    let traces = by_trace(&spans);
    assert!(
        traces.contains_key(&trace_hex(1)) && traces.contains_key(&trace_hex(4)),
        "{traces:?}"
    );
    assert!(
        !traces.contains_key(&trace_hex(2)) && !traces.contains_key(&trace_hex(3)),
        "refused spans must not be stored"
    );
    assert!(
        ingest
            .metric_with("umpire_ingest_requests_total", "unavailable")
            .await
            >= 2.0
    );
}
