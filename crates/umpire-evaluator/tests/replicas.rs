#![allow(clippy::unwrap_used)]
//! An R3 project on a three-node JetStream cluster keeps no state on one node only: the
//! span and intake streams, the scores and dead letters, the ingest leases, the alert state
//! and leader leases, the outbox and the LLM judges' shared budgets all have three replicas.

mod support;

use async_nats::jetstream;
use serde_json::json;
use support::R3Workers;
use umpire_nats::topology::ProjectNames;
use umpire_testkit::nats::NatsCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_and_bucket_of_an_r3_project_has_three_replicas() {
    let cluster = NatsCluster::start(3, &[]).unwrap();
    let workers = R3Workers::start(
        &cluster,
        json!({
            "projectRef": {"name": "bot"},
            "judges": [
                {"name": "fast", "latency": {"maxMs": 1000}},
                // Its shared token budget lives in the project's budget bucket.
                {"name": "relevant", "llm": {"template": "answerRelevance",
                    "endpoint": "http://127.0.0.1:9/v1", "model": "m", "dailyTokenBudget": 1000}},
            ],
            "alerts": [{"name": "slow", "metric": {"latency": "p95"}, "window": "1m",
                        "condition": {"above": 1000}, "severity": "warning", "route": "hook"}],
            "routes": [{"name": "hook", "webhook": {"url": "http://127.0.0.1:9/hook"}}],
        }),
        |_| {},
    )
    .await;

    let js = jetstream::new(cluster.client().await.unwrap());
    let names = ProjectNames::new("team", "bot");
    let mut replicas = Vec::new();
    for stream in names.all_streams() {
        let mut handle = js
            .get_stream(&stream)
            .await
            .unwrap_or_else(|e| panic!("{stream}: {e}"));
        replicas.push((stream, handle.info().await.unwrap().config.num_replicas));
    }
    let single: Vec<_> = replicas.iter().filter(|(_, r)| *r != 3).collect();
    assert!(single.is_empty(), "not R3: {single:?} (all: {replicas:?})");
    workers.stop().await;
}
