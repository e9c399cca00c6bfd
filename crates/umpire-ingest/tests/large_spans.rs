//! Spans larger than NATS' payload limit (1 MiB by default) are stored truncated, with a
//! marker, instead of failing the request.
#![allow(clippy::unwrap_used)]

mod support;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use serde_json::json;
use support::*;
use umpire_core::span::Span as DomainSpan;
use umpire_testkit::nats::{NatsServer, StoredMessage};

/// Sends span `step-0` with `attributes` and a small sibling `step-1` in one request to a
/// fresh ingest; returns ingest (for its metrics) and both spans as stored, after checking
/// the request was accepted and the big one's message fits NATS' 1 MiB payload limit.
async fn store_with_sibling(
    trace: u32,
    attributes: Vec<KeyValue>,
) -> (NatsServer, TestIngest, Vec<(StoredMessage, DomainSpan)>) {
    let nats = NatsServer::start().unwrap();
    let spec = json!({"ingest": {"maxRequestSize": "8Mi"}, "sampling": {"decisionWait": "200ms"}});
    let ingest = TestIngest::start(&nats.url(), spec).await;
    let spans = vec![
        span(trace, 0, false, 5, attributes),
        span(trace, 1, false, 5, vec![string_kv("note", "small")]),
    ];
    assert_eq!(
        post_protobuf(&ingest.http, &request(spans)).await.status(),
        200
    );
    let stored = kept_spans(&jetstream(&nats.url()).await, 2).await;
    let (message, _) = stored.iter().find(|(_, s)| s.name == "step-0").unwrap();
    assert!(
        message.payload.len() <= 1 << 20,
        "{} bytes",
        message.payload.len()
    );
    (nats, ingest, stored)
}

#[tokio::test]
async fn oversized_spans_are_truncated_to_fit() {
    let huge = "The quick brown fox. ".repeat(150_000); // ~3 MiB
    let (_nats, ingest, stored) = store_with_sibling(
        1,
        vec![
            string_kv("input.value", &huge),
            string_kv("openinference.span.kind", "CHAIN"),
        ],
    )
    .await;
    let (_, big) = stored.iter().find(|(_, s)| s.name == "step-0").unwrap();
    let input = big.attributes["input.value"].as_str().unwrap();
    assert!(
        input.starts_with("The quick brown fox.") && input.contains("truncated by umpire"),
        "{}",
        &input[input.len() - 80..]
    );
    // Cut once to fit the intake message, and the normalised copy (ai.input) again to fit
    // the span message.
    assert_eq!(
        big.truncated,
        ["attributes.input.value", "ai.input"],
        "ingest marks what it cut"
    );
    assert!(!big.attributes.contains_key("umpire.truncated"));
    let small = stored.iter().find(|(_, s)| s.name == "step-1").unwrap();
    assert!(small.1.truncated.is_empty());
    assert_eq!(
        ingest.metric("umpire_ingest_spans_truncated_total").await,
        1.0
    );
}

/// A span of very many small values — nothing long enough to shorten — used to stay larger
/// than any message after truncation: its intake publish failed, so the request was refused
/// every time the client retried it (and a domain copy still too large would have failed its
/// publish job for ever). Now whole collections go (attributes largest first, named in
/// `truncated`) and it is stored like any other.
#[tokio::test]
async fn spans_of_very_many_small_values_are_stored_not_retried_for_ever() {
    let many: Vec<_> = (0..60_000)
        .map(|i| string_kv(&format!("app.field.{i}"), &format!("value-{i:012}")))
        .chain([string_kv("openinference.span.kind", "CHAIN")])
        .collect();
    let (_nats, ingest, stored) = store_with_sibling(2, many).await;
    let (_, big) = stored.iter().find(|(_, s)| s.name == "step-0").unwrap();
    assert!(
        big.truncated.iter().any(|t| t.starts_with("attributes (")),
        "{:?}",
        big.truncated
    );
    assert!(stored.iter().any(|(_, s)| s.name == "step-1"));
    assert_eq!(
        ingest.metric("umpire_ingest_publish_failures_total").await,
        0.0
    );
    assert_eq!(
        ingest
            .metric("umpire_ingest_spans_dead_lettered_total")
            .await,
        0.0
    );
}
