#![allow(clippy::unwrap_used)]
//! Evaluators on a three-node JetStream cluster with an R3 project: the node leading the
//! policy's consumer is killed and restarted while spans flow. Every selected span is judged,
//! and no span gets two scores.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream;
use serde_json::json;
use support::R3Workers;
use umpire_nats::topology::ProjectNames;
use umpire_testkit::nats::{NatsCluster, read_evaluations};
use umpire_testkit::wait::eventually;

const SPANS: u64 = 300;

fn otlp_json(n: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    json!({"resourceSpans": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "bot"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": format!("{:032x}", n + 1), "spanId": format!("{:016x}", n + 1),
            "name": "chat gpt-4o", "kind": 3,
            "startTimeUnixNano": (now - 300_000_000).to_string(), "endTimeUnixNano": now.to_string(),
            "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                           {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}}]}]}]}]})
    .to_string()
}

async fn send(url: &str, n: u64) {
    let client = reqwest::Client::new();
    loop {
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .timeout(Duration::from_secs(5))
            .body(otlp_json(n))
            .send()
            .await;
        if sent.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_span_judged_once_through_the_loss_of_the_consumer_leader() {
    let mut cluster = NatsCluster::start(3, &[]).unwrap();
    let workers = R3Workers::start(
        &cluster,
        json!({
            "projectRef": {"name": "bot"},
            "judges": [{"name": "fast", "latency": {"maxMs": 60000}}],
        }),
        |config| {
            config.ack_wait = Some(Duration::from_secs(10));
        },
    )
    .await;
    let url = format!("http://{}/v1/traces", workers.ingest.http_addr);
    let js = jetstream::new(cluster.client().await.unwrap());
    let names = ProjectNames::new("team", "bot");

    for n in 0..SPANS / 3 {
        send(&url, n).await;
    }
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream(names.spans_stream())
        .await
        .unwrap()
        .get_consumer(&names.policy_consumer("quality"))
        .await
        .unwrap();
    let leader = consumer
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .unwrap()
        .leader
        .unwrap();
    eprintln!("injected: killed {leader}, the policy consumer's leader, for 5 s while spans flow");
    let node = cluster.node_named(&leader).unwrap();
    node.kill();
    for n in SPANS / 3..2 * SPANS / 3 {
        send(&url, n).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    node.restart().unwrap();
    for n in 2 * SPANS / 3..SPANS {
        send(&url, n).await;
    }

    let scores = eventually("every span judged", Duration::from_secs(60), || async {
        let stored = read_evaluations(&js, &names.scores_stream()).await.ok()?;
        (stored.len() as u64 >= SPANS).then_some(stored)
    })
    .await;
    // Settle a little: redeliveries after the fault must not add scores.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let scores = read_evaluations(&js, &names.scores_stream())
        .await
        .unwrap_or(scores);
    let ids: BTreeSet<String> = scores
        .iter()
        .map(|(_, evaluation)| evaluation.id.clone())
        .collect();
    eprintln!(
        "lost: {} of {SPANS}; duplicates: {}",
        SPANS as usize - ids.len(),
        scores.len() - ids.len()
    );
    assert_eq!(ids.len() as u64, SPANS, "every span judged");
    assert_eq!(scores.len(), ids.len(), "no span scored twice");
    workers.stop().await;
}
