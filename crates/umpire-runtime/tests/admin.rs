#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use umpire_runtime::admin::AdminServer;
use umpire_runtime::readiness::Readiness;

#[tokio::test]
async fn serves_metrics_health_and_readiness_then_stops() {
    let mut registry = Registry::with_prefix("umpire");
    let counter: Counter = Counter::default();
    registry.register("test_events", "Events seen by the test", counter.clone());
    counter.inc_by(3);
    let readiness = Readiness::default();
    readiness.register("nats", "not connected");
    let server = AdminServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(registry),
        readiness.clone(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));

    let client = reqwest::Client::new();
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("umpire_test_events_total 3"), "{metrics}");
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let not_ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(not_ready.status(), 503);
    assert!(
        not_ready
            .text()
            .await
            .unwrap()
            .contains("nats: not connected")
    );
    readiness.set_ok("nats");
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    shutdown.cancel();
    task.await.unwrap().unwrap();
}
