#![allow(clippy::unwrap_used)]
//! The policy's durable consumer on JetStream 2.10+: the server filters a selection of
//! several span kinds (one filter subject per kind), and a changed selection changes the
//! existing consumer's filters.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use umpire_contract::evaluator::EvaluatorConfig;
use umpire_nats::connect::NatsSettings;
use umpire_nats::topology::ProjectNames;
use umpire_testkit::nats::NatsServer;
use umpire_testkit::wait::eventually;

async fn run_policy(nats: &NatsServer, kinds: &[&str]) {
    let config = EvaluatorConfig {
        namespace: "team".into(),
        policy: "quality".into(),
        spec: serde_json::from_value(json!({
            "projectRef": {"name": "bot"},
            "select": {"kinds": kinds},
            "judges": [{"name": "fast", "latency": {"maxMs": 1000}}],
        }))
        .unwrap(),
        nats: NatsSettings {
            url: nats.url(),
            ..Default::default()
        },
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        secret_dir: None,
        config_map_dir: None,
        embedding_model: None,
        ack_wait: None,
        state_replicas: 1,
        alert_lease_ttl: None,
        alert_snapshot_interval: None,
        egress: None,
    };
    let shutdown = CancellationToken::new();
    let running = umpire_evaluator::start(config, shutdown.clone())
        .await
        .unwrap();
    let readiness = running.readiness.clone();
    eventually("evaluator ready", Duration::from_secs(20), || {
        let readiness = readiness.clone();
        async move { readiness.status().ok() }
    })
    .await;
    shutdown.cancel();
    running.wait().await;
}

async fn filters(js: &jetstream::Context, names: &ProjectNames) -> (String, Vec<String>) {
    let stream = js.get_stream(names.spans_stream()).await.unwrap();
    let mut consumer: consumer::PullConsumer = stream
        .get_consumer(&names.policy_consumer("quality"))
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    (
        info.config.filter_subject.clone(),
        info.config.filter_subjects.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_filters_several_kinds_and_follows_a_changed_selection() {
    let nats = NatsServer::start().unwrap();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let names = ProjectNames::new("team", "bot");
    js.create_stream(stream::Config {
        name: names.spans_stream(),
        subjects: vec![names.spans_wildcard()],
        ..Default::default()
    })
    .await
    .unwrap();

    run_policy(&nats, &["LLM"]).await;
    let (one, many) = filters(&js, &names).await;
    assert!(
        one.starts_with("umpire.spans.team.bot.") && one != names.spans_wildcard(),
        "{one}"
    );
    assert!(many.is_empty());

    // Two kinds: two subjects filtered by the server, on the same (updated) consumer.
    run_policy(&nats, &["LLM", "TOOL"]).await;
    let (one, many) = filters(&js, &names).await;
    assert_eq!(one, "");
    assert_eq!(many.len(), 2, "{many:?}");
    assert!(
        many.iter().all(|s| s.starts_with("umpire.spans.team.bot.")),
        "{many:?}"
    );
    assert!(!many.contains(&names.spans_wildcard()));
}
