//! Shared by the evaluator's cluster tests: an R3 project's ingest and one policy's
//! evaluator, in-process, on a three-node JetStream cluster.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use umpire_api::trace_project::TraceProjectSpec;
use umpire_contract::evaluator::EvaluatorConfig;
use umpire_contract::ingest::{IngestConfig, ListenAddresses};
use umpire_evaluator::RunningEvaluator;
use umpire_ingest::RunningIngest;
use umpire_nats::connect::NatsSettings;
use umpire_testkit::nats::NatsCluster;
use umpire_testkit::wait::eventually;

pub struct R3Workers {
    pub ingest: RunningIngest,
    pub evaluator: RunningEvaluator,
    shutdown: CancellationToken,
}

impl R3Workers {
    /// Project `team/bot` (R3, decisionWait 200 ms) and policy `quality` with `policy` as its
    /// spec (state replicas from the project, as the controller renders them); `tune` sets
    /// the evaluator's advanced settings. Returns once both are ready.
    pub async fn start(
        cluster: &NatsCluster,
        policy: Value,
        tune: impl FnOnce(&mut EvaluatorConfig),
    ) -> Self {
        let nats = NatsSettings {
            url: cluster.urls(),
            ..Default::default()
        };
        let project: TraceProjectSpec = serde_json::from_value(
            json!({"sampling": {"decisionWait": "200ms"}, "stream": {"replicas": 3}}),
        )
        .unwrap();
        let shutdown = CancellationToken::new();
        let ingest = umpire_ingest::start(
            IngestConfig {
                listen: ListenAddresses {
                    grpc: "127.0.0.1:0".parse().unwrap(),
                    http: "127.0.0.1:0".parse().unwrap(),
                    admin: "127.0.0.1:0".parse().unwrap(),
                },
                ..IngestConfig::for_project("team", "bot", project.clone(), nats.clone())
            },
            shutdown.clone(),
        )
        .await
        .unwrap();
        let mut config = EvaluatorConfig {
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            state_replicas: project.stream_replicas(),
            ..EvaluatorConfig::for_policy(
                "team",
                "quality",
                serde_json::from_value(policy).unwrap(),
                nats,
                None,
                None,
            )
        };
        tune(&mut config);
        let evaluator = umpire_evaluator::start(config, shutdown.clone())
            .await
            .unwrap();
        for readiness in [ingest.readiness.clone(), evaluator.readiness.clone()] {
            eventually("worker ready", Duration::from_secs(30), || {
                let readiness = readiness.clone();
                async move { readiness.status().ok() }
            })
            .await;
        }
        Self {
            ingest,
            evaluator,
            shutdown,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.ingest.wait().await;
        self.evaluator.wait().await;
    }
}
