//! Nothing unredacted is ever published to NATS: every intake and span message is captured
//! from the wire and searched for the secrets a client sent.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use support::*;
use umpire_core::redaction::hash_text;
use umpire_ingest::intake;
use umpire_testkit::nats::NatsServer;
use umpire_testkit::wait::eventually;

const EMAIL: &str = "jane.doe+vip@example.com";
const API_KEY: &str = "sk-live4f8Qz2Xw9Lm3Np7Rt5Vb1Kc6";
const AUTH_HEADER: &str = "Basic YWRtaW46aHVudGVyMg==";
const USER_ID: &str = "user-8841";

/// Records every message published under `umpire.>` (intake and span streams alike), as
/// plain bytes: intake payloads are decompressed first so a secret cannot hide in LZ4.
async fn capture(nats_url: &str) -> Arc<Mutex<Vec<Vec<u8>>>> {
    let client = async_nats::connect(nats_url).await.unwrap();
    let mut subscription = client.subscribe("umpire.>").await.unwrap();
    // `flush` only writes the SUB to the socket; a message to ourselves coming back proves the
    // server registered the interest before the ingest worker publishes anything.
    client
        .publish("umpire.capture-ready", "".into())
        .await
        .unwrap();
    let ready = subscription.next().await.unwrap();
    assert_eq!(ready.subject.as_str(), "umpire.capture-ready");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        let _client = client;
        while let Some(message) = subscription.next().await {
            let codec = message
                .headers
                .as_ref()
                .and_then(|h| h.get(intake::CODEC_HEADER))
                .map(|v| v.as_str().to_owned());
            let plain = intake::decompress(&message.payload, codec.as_deref())
                .unwrap()
                .into_owned();
            sink.lock().unwrap().push(plain);
        }
    });
    seen
}

fn secret_span(trace: u32) -> umpire_otlp::proto::Span {
    let mut span = span(
        trace,
        0,
        true,
        10,
        vec![
            string_kv("gen_ai.operation.name", "chat"),
            string_kv(
                "gen_ai.input.messages",
                &format!(
                    r#"[{{"role":"user","parts":[{{"type":"text","content":"Mail me at {EMAIL}, key {API_KEY}"}}]}}]"#
                ),
            ),
            string_kv("http.request.header.authorization", AUTH_HEADER),
            string_kv("user.id", USER_ID),
        ],
    );
    span.events.push(umpire_otlp::proto::span::Event {
        name: "gen_ai.user.message".into(),
        attributes: vec![string_kv("content", &format!("again: {EMAIL}"))],
        ..Default::default()
    });
    span
}

#[tokio::test]
async fn secrets_in_prompts_never_reach_nats() {
    let nats = NatsServer::start().unwrap();
    let spec = json!({
        "sampling": {"decisionWait": "200ms"},
        "redaction": {"rules": [
            {"name": "emails", "pattern": "[\\w.+-]+@[\\w-]+\\.[\\w.]+", "replace": "<email>"},
            {"name": "api-keys", "pattern": "sk-[A-Za-z0-9]{20,}", "replace": "<api-key>"},
            {"name": "auth-headers", "attributes": ["http.request.header.*"], "action": "drop"},
            {"name": "user-ids", "pattern": ".+", "attributes": ["user.id"], "action": "hash"}
        ]}
    });
    let ingest = TestIngest::start(&nats.url(), spec).await;
    let seen = capture(&nats.url()).await;
    assert_eq!(
        post_protobuf(&ingest.http, &request(vec![secret_span(1)]))
            .await
            .status(),
        200
    );

    let spans = kept_spans(&jetstream(&nats.url()).await, 1).await;
    let stored = &spans[0].1;
    let input = stored.attributes["gen_ai.input.messages"].as_str().unwrap();
    assert!(
        input.contains("Mail me at <email>, key <api-key>"),
        "{input}"
    );
    assert_eq!(
        stored.ai.input_text(),
        Some("Mail me at <email>, key <api-key>")
    );
    assert!(
        !stored
            .attributes
            .contains_key("http.request.header.authorization")
    );
    assert_eq!(stored.attributes["user.id"], hash_text(USER_ID));
    assert_eq!(stored.events[0].attributes["content"], "again: <email>");

    eventually(
        "intake and span messages captured",
        Duration::from_secs(10),
        || {
            let count = seen.lock().unwrap().len();
            async move { (count >= 2).then_some(()) }
        },
    )
    .await;
    for payload in seen.lock().unwrap().iter() {
        let text = String::from_utf8_lossy(payload);
        for secret in [EMAIL, API_KEY, AUTH_HEADER, USER_ID] {
            assert!(!text.contains(secret), "{secret} reached NATS");
        }
    }
    assert!(ingest.metric("umpire_ingest_redacted_values_total").await >= 3.0);
    assert_eq!(
        ingest
            .metric("umpire_ingest_redacted_attributes_total")
            .await,
        1.0
    );
}

#[tokio::test]
async fn capture_content_off_keeps_metadata_but_no_content() {
    let nats = NatsServer::start().unwrap();
    let spec =
        json!({"sampling": {"decisionWait": "200ms"}, "redaction": {"captureContent": false}});
    let ingest = TestIngest::start(&nats.url(), spec).await;
    let seen = capture(&nats.url()).await;
    let response = reqwest::Client::new()
        .post(&ingest.http)
        .header("content-type", "application/x-protobuf")
        .body(fixture("openinference-00.pb"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let spans = kept_spans(&jetstream(&nats.url()).await, 36).await;
    let llm = spans
        .iter()
        .find(|(_, s)| s.span_id.to_string() == "db2f96c6b8f9de08")
        .unwrap();
    assert_eq!(llm.1.ai.input_text(), None);
    assert_eq!(llm.1.ai.output_text(), None);
    assert_eq!(
        llm.1.ai.response_model.as_deref(),
        Some("gpt-4o-2026-01-01")
    );
    assert_eq!(llm.1.ai.usage.total, Some(35));
    assert_eq!(
        llm.1.attributes["llm.input_messages.1.message.role"],
        "user"
    );
    eventually("messages captured", Duration::from_secs(30), || {
        let count = seen.lock().unwrap().len();
        async move { (count > 36).then_some(()) }
    })
    .await;
    for payload in seen.lock().unwrap().iter() {
        let text = String::from_utf8_lossy(payload);
        for content in [
            "What is your refund policy?",
            "Refunds are available within 90 days",
            "Used items cannot be returned",
        ] {
            assert!(!text.contains(content), "content {content:?} reached NATS");
        }
    }
}
