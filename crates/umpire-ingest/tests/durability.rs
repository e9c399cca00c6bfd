//! Nothing acknowledged is lost: clients that retry as OTLP prescribes keep sending while
//! nats-server is killed and restarted; every span ingest acknowledged ends up stored, once.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use umpire_testkit::nats::NatsServer;
use umpire_testkit::wait::eventually;

const CLIENTS: u32 = 4;
const REQUESTS_PER_CLIENT: u32 = 60;
const SPANS_PER_REQUEST: u32 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_acknowledged_is_lost_across_a_nats_crash() {
    let mut nats = NatsServer::start().unwrap();
    let ingest = TestIngest::start(&nats.url(), keep_all("200ms")).await;
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));

    let clients = client_load(
        &ingest.http,
        CLIENTS,
        REQUESTS_PER_CLIENT,
        SPANS_PER_REQUEST,
        Duration::ZERO,
        &acknowledged,
    );

    // Crash NATS once the load is under way, keep it down for a moment, bring it back.
    let total = (CLIENTS * REQUESTS_PER_CLIENT * SPANS_PER_REQUEST) as usize;
    eventually("load under way", Duration::from_secs(30), || {
        let count = acknowledged.lock().unwrap().len();
        async move { (count >= total / 4).then_some(()) }
    })
    .await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nats.restart().unwrap();
    for client in clients {
        client.await.unwrap();
    }

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), total);
    let stored = kept_spans(&jetstream(&nats.url()).await, total).await;
    let stored_ids: BTreeSet<String> = stored.iter().map(|(_, s)| s.dedup_id()).collect();
    assert_eq!(stored.len(), stored_ids.len(), "no span stored twice");
    let missing: Vec<&String> = acknowledged.difference(&stored_ids).take(5).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert_eq!(stored_ids, acknowledged, "count in = count out");
    assert!(
        ingest
            .metric_with("umpire_ingest_requests_total", "unavailable")
            .await
            > 0.0,
        "the outage was seen"
    );
}
