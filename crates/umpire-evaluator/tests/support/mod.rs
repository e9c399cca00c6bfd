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
        umpire_runtime::telemetry::init_with(
            umpire_runtime::telemetry::LogFormat::Text,
            "umpire=info,warn",
            umpire_runtime::telemetry::LogTarget::TestOutput,
        );
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
        for (worker, readiness) in [
            ("ingest", &ingest.readiness),
            ("evaluator", &evaluator.readiness),
        ] {
            // Not `eventually`: a failure should say which check was failing, and why. 60 s:
            // on a fresh cluster every R3 stream and bucket waits for its first leader
            // election, and a request the meta leader did not answer times out after 5 s
            // (measured 0.5–5.5 s on a loaded machine; once over 30 s in CI, cause unknown).
            let started = tokio::time::Instant::now();
            while let Err(reason) = readiness.status() {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{worker} not ready after 60 s: {reason}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            eprintln!("{worker} ready after {:?}", started.elapsed());
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
