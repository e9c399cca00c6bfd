#![allow(clippy::unwrap_used)]
//! An R3 project on a three-node JetStream cluster keeps no state on one node only: the
//! span and intake streams, the scores and dead letters, the ingest leases, the alert state
//! and leader leases, and the outbox all have three replicas.

use std::time::Duration;

use async_nats::jetstream;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use umpire_evaluator::config::EvaluatorConfig;
use umpire_ingest::config::{IngestConfig, ListenAddresses};
use umpire_nats::connect::NatsSettings;
use umpire_nats::names::ProjectNames;
use umpire_testkit::nats::NatsCluster;
use umpire_testkit::wait::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_and_bucket_of_an_r3_project_has_three_replicas() {
    let cluster = NatsCluster::start(3, &[]).unwrap();
    let nats = NatsSettings {
        url: cluster.urls(),
        ..Default::default()
    };
    let project = json!({"sampling": {"decisionWait": "200ms"}, "stream": {"replicas": 3}});
    let shutdown = CancellationToken::new();
    let ingest = umpire_ingest::start(
        IngestConfig {
            listen: ListenAddresses {
                grpc: "127.0.0.1:0".parse().unwrap(),
                http: "127.0.0.1:0".parse().unwrap(),
                admin: "127.0.0.1:0".parse().unwrap(),
            },
            ..IngestConfig::for_project(
                "team",
                "bot",
                serde_json::from_value(project.clone()).unwrap(),
                nats.clone(),
            )
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let project_spec: umpire_api::trace_project::TraceProjectSpec =
        serde_json::from_value(project).unwrap();
    let evaluator = umpire_evaluator::start(
        EvaluatorConfig {
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            state_replicas: project_spec.stream_replicas(),
            ..EvaluatorConfig::for_policy(
                "team",
                "quality",
                serde_json::from_value(json!({
                    "projectRef": {"name": "bot"},
                    "judges": [{"name": "fast", "latency": {"maxMs": 1000}}],
                    "alerts": [{"name": "slow", "metric": {"latency": "p95"}, "window": "1m",
                                "condition": {"above": 1000}, "severity": "warning", "route": "hook"}],
                    "routes": [{"name": "hook", "webhook": {"url": "http://127.0.0.1:9/hook"}}],
                }))
                .unwrap(),
                nats,
                None,
                None,
            )
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    for readiness in [ingest.readiness.clone(), evaluator.readiness.clone()] {
        eventually("worker ready", Duration::from_secs(30), || {
            let readiness = readiness.clone();
            async move { readiness.status().ok() }
        })
        .await;
    }

    let servers: Vec<async_nats::ServerAddr> = cluster
        .nodes
        .iter()
        .map(|n| n.url().parse().unwrap())
        .collect();
    let js = jetstream::new(async_nats::connect(servers).await.unwrap());
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
    shutdown.cancel();
    ingest.wait().await;
    evaluator.wait().await;
}
