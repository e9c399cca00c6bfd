//! Spans larger than NATS' payload limit (1 MiB by default) are stored truncated, with a
//! marker, instead of failing the request.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::*;
use umpire_testkit::nats::NatsServer;

#[tokio::test]
async fn oversized_spans_are_truncated_to_fit() {
    let nats = NatsServer::start().unwrap();
    let spec = json!({"ingest": {"maxRequestSize": "8Mi"}, "sampling": {"decisionWait": "200ms"}});
    let ingest = TestIngest::start(&nats.url(), spec).await;
    let huge = "The quick brown fox. ".repeat(150_000); // ~3 MiB
    let spans = vec![
        span(
            1,
            0,
            false,
            5,
            vec![
                string_kv("input.value", &huge),
                string_kv("openinference.span.kind", "CHAIN"),
            ],
        ),
        span(1, 1, false, 5, vec![string_kv("note", "small")]),
    ];
    assert_eq!(
        post_protobuf(&ingest.http, &request(spans)).await.status(),
        200
    );
    let stored = kept_spans(&jetstream(&nats.url()).await, 2).await;
    let (message, big) = stored.iter().find(|(_, s)| s.name == "step-0").unwrap();
    assert!(
        message.payload.len() <= 1 << 20,
        "{} bytes",
        message.payload.len()
    );
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
/// than any message after truncation: its publish failed and was retried for ever, holding
/// its trace's intake messages. Now whole collections go (attributes largest first, named
/// in `truncated`) and it is stored like any other.
#[tokio::test]
async fn spans_of_very_many_small_values_are_stored_not_retried_for_ever() {
    let nats = NatsServer::start().unwrap();
    let spec = json!({"ingest": {"maxRequestSize": "8Mi"}, "sampling": {"decisionWait": "200ms"}});
    let ingest = TestIngest::start(&nats.url(), spec).await;
    let many: Vec<_> = (0..60_000)
        .map(|i| string_kv(&format!("app.field.{i}"), &format!("value-{i:012}")))
        .chain([string_kv("openinference.span.kind", "CHAIN")])
        .collect();
    let spans = vec![
        span(2, 0, false, 5, many),
        span(2, 1, false, 5, vec![string_kv("note", "small")]),
    ];
    assert_eq!(
        post_protobuf(&ingest.http, &request(spans)).await.status(),
        200
    );
    let stored = kept_spans(&jetstream(&nats.url()).await, 2).await;
    let (message, big) = stored.iter().find(|(_, s)| s.name == "step-0").unwrap();
    assert!(
        message.payload.len() <= 1 << 20,
        "{} bytes",
        message.payload.len()
    );
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
