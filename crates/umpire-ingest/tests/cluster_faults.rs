//! Ingest on a three-node JetStream cluster with an R3 project: the node leading the span
//! stream is killed under steady OTLP load and restarted. Every span acknowledged to a
//! client reaches the span stream exactly once — and promptly, not after the intake's
//! redelivery timeout (decisionWait + 60 s): the report was 16,729 of 46,100 acknowledged
//! spans stored a minute after such a kill.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use umpire_testkit::nats::NatsCluster;
use umpire_testkit::wait::eventually;

const CLIENTS: u32 = 4;
const REQUESTS_PER_CLIENT: u32 = 80;
const SPANS_PER_REQUEST: u32 = 10;
/// Well under the intake's redelivery timeout (61 s here): lost-and-redelivered messages
/// would miss it.
const CATCH_UP: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_span_stream_leader_loses_nothing_acknowledged() {
    let mut cluster = NatsCluster::start(3, &[]).unwrap();
    let urls = cluster.urls();
    let spec = json!({"sampling": {"decisionWait": "1s"}, "stream": {"replicas": 3}});
    let ingest = TestIngest::start(&urls, spec).await;
    let js = jetstream(&urls).await;
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));

    let clients = client_load(
        &ingest.http,
        CLIENTS,
        REQUESTS_PER_CLIENT,
        SPANS_PER_REQUEST,
        Duration::from_millis(20),
        &acknowledged,
    );

    let total = (CLIENTS * REQUESTS_PER_CLIENT * SPANS_PER_REQUEST) as usize;
    eventually("load under way", Duration::from_secs(30), || {
        let count = acknowledged.lock().unwrap().len();
        async move { (count >= total / 4).then_some(()) }
    })
    .await;
    let leader = js
        .get_stream(spans_stream())
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .and_then(|c| c.leader)
        .unwrap();
    eprintln!("injected: killed {leader}, the span stream's leader, for 10 s under load");
    let node = cluster.node_named(&leader).unwrap();
    node.kill();
    tokio::time::sleep(Duration::from_secs(10)).await;
    node.restart().unwrap();
    for client in clients {
        client.await.unwrap();
    }
    let done = Instant::now();

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), total);
    let stored_count = || async {
        umpire_testkit::nats::count_on(&js, &spans_stream(), SPAN_SUBJECTS)
            .await
            .ok()
            .map(|n| n as usize)
    };
    let mut stored = 0;
    while done.elapsed() < CATCH_UP {
        stored = stored_count().await.unwrap_or(stored);
        if stored >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "lost: {} of {total} acknowledged spans not stored {:.0?} after the load ended",
        total.saturating_sub(stored),
        done.elapsed()
    );
    let spans = kept_spans(&js, total).await;
    let ids: BTreeSet<String> = spans.iter().map(|(_, s)| s.dedup_id()).collect();
    assert_eq!(spans.len(), ids.len(), "no span stored twice");
    assert_eq!(ids, acknowledged, "every acknowledged span stored");
    assert!(
        stored >= total,
        "only {stored} of {total} acknowledged spans stored {CATCH_UP:?} after the load"
    );
}

/// The whole cluster goes down and comes back (same ports, same storage): ingest reconnects,
/// re-acquires its partitions and stores what clients send afterwards, no operator involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_cluster_restart_needs_no_operator() {
    let mut cluster = NatsCluster::start(3, &[]).unwrap();
    let urls = cluster.urls();
    let spec = json!({"sampling": {"decisionWait": "500ms"}, "stream": {"replicas": 3}});
    let ingest = TestIngest::start(&urls, spec).await;
    let send = |from: u32, to: u32| {
        let url = ingest.http.clone();
        async move {
            for trace in from..to {
                let spans: Vec<_> = (0..5).map(|i| span(trace, i, false, 1, vec![])).collect();
                send_until_accepted(&url, &request(spans)).await;
            }
        }
    };
    send(1, 21).await;
    let js = jetstream(&urls).await;
    kept_spans(&js, 100).await;

    eprintln!("injected: all three nodes killed, then restarted");
    for node in &mut cluster.nodes {
        node.kill();
    }
    for node in &mut cluster.nodes {
        node.restart().unwrap();
    }
    send(21, 41).await;
    let spans = kept_spans(&js, 200).await;
    let ids: BTreeSet<String> = spans.iter().map(|(_, s)| s.dedup_id()).collect();
    assert_eq!((spans.len(), ids.len()), (200, 200), "every span once");
}

/// A node frozen (SIGSTOP) for three lease TTLs: replica A talks only to it, replica B to
/// the other two. A keeps its connection but nothing answers, so it must stop acting on its
/// partitions by itself (self-fence at 4/5 of the TTL) before B may take them (at expiry).
/// Sampled every 20 ms while the node is frozen, the two replicas never own more than the
/// 16 partitions between them; every span acknowledged to a client is stored exactly once,
/// and once the node runs again the partitions spread back to A.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_node_past_the_lease_ttl_leaves_one_owner_per_partition() {
    const PARTITIONS: f64 = 16.0;
    const PAUSE: Duration = Duration::from_secs(9);
    let mut cluster = NatsCluster::start(3, &[]).unwrap();
    let spec = json!({"sampling": {"decisionWait": "1s"}, "stream": {"replicas": 3}});
    let replica = |member: &str| Options {
        member: member.into(),
        ..Options::default()
    };
    let a =
        TestIngest::start_with(&cluster.nodes[0].url(), spec.clone(), replica("replica-a")).await;
    let b_urls = format!("{},{}", cluster.nodes[1].url(), cluster.nodes[2].url());
    let b = TestIngest::start_with(&b_urls, spec, replica("replica-b")).await;
    eventually(
        "partitions spread over both replicas",
        Duration::from_secs(30),
        || async {
            let (a, b) = (
                a.metric("umpire_ingest_partitions_owned").await,
                b.metric("umpire_ingest_partitions_owned").await,
            );
            (a >= 1.0 && b >= 1.0 && a + b == PARTITIONS).then_some(())
        },
    )
    .await;

    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let clients = client_load(
        &b.http,
        CLIENTS,
        REQUESTS_PER_CLIENT,
        SPANS_PER_REQUEST,
        Duration::from_millis(30),
        &acknowledged,
    );
    let total = (CLIENTS * REQUESTS_PER_CLIENT * SPANS_PER_REQUEST) as usize;
    eventually("load under way", Duration::from_secs(30), || {
        let count = acknowledged.lock().unwrap().len();
        async move { (count >= total / 5).then_some(()) }
    })
    .await;

    let owned_by_a = a.metric("umpire_ingest_partitions_owned").await;
    eprintln!(
        "injected: node {} (replica A's only server; A owned {owned_by_a} partitions) paused for {PAUSE:?}, three lease TTLs, under load",
        cluster.nodes[0].url()
    );
    cluster.nodes[0].pause();
    let paused = Instant::now();
    let (mut most_owned, mut b_took_all) = (0.0f64, false);
    while paused.elapsed() < PAUSE {
        let (owned_a, owned_b) = (
            a.metric("umpire_ingest_partitions_owned").await,
            b.metric("umpire_ingest_partitions_owned").await,
        );
        most_owned = most_owned.max(owned_a + owned_b);
        b_took_all |= owned_b == PARTITIONS && owned_a == 0.0;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.nodes[0].resume();
    eprintln!(
        "while paused: at most {most_owned} partitions owned at once; B took all of them: {b_took_all}"
    );
    assert!(
        most_owned <= PARTITIONS,
        "two owners at once: {most_owned} partitions owned"
    );
    assert!(b_took_all, "B never took over A's partitions");

    for client in clients {
        client.await.unwrap();
    }
    let js = jetstream(&b_urls).await;
    let spans = kept_spans(&js, total).await;
    let ids: BTreeSet<String> = spans.iter().map(|(_, s)| s.dedup_id()).collect();
    let acknowledged = acknowledged.lock().unwrap().clone();
    eprintln!(
        "lost: {} of {total} acknowledged spans; stored twice: {}; A's duplicate publishes: {}",
        acknowledged.difference(&ids).count(),
        spans.len() - ids.len(),
        a.metric("umpire_ingest_publish_duplicates_total").await
    );
    assert_eq!(spans.len(), ids.len(), "no span stored twice");
    assert_eq!(ids, acknowledged, "every acknowledged span stored");
    a.wait_partitions(1.0).await;
}
