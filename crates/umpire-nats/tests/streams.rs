#![allow(clippy::unwrap_used)]

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use umpire_nats::connect::{NatsSettings, connect, is_connected};
use umpire_nats::streams::ensure_stream;
use umpire_runtime::readiness::Readiness;
use umpire_testkit::nats::NatsServer;

#[tokio::test]
async fn creates_then_updates_a_stream_without_losing_messages() {
    let server = NatsServer::start().unwrap();
    let readiness = Readiness::default();
    let client = connect(
        &NatsSettings {
            url: server.url(),
            ..Default::default()
        },
        "test",
        &readiness,
        "nats",
    )
    .await
    .unwrap();
    wait_until(|| is_connected(&client)).await;
    assert_eq!(readiness.status(), Ok(()));
    let js = jetstream::new(client);
    let config = stream::Config {
        name: "S".into(),
        subjects: vec!["s.>".into()],
        max_age: Duration::from_secs(3600),
        ..Default::default()
    };
    let created = ensure_stream(&js, config.clone()).await.unwrap();
    assert_eq!(created.config.max_age, Duration::from_secs(3600));
    js.publish("s.a", "one".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let unchanged = ensure_stream(&js, config.clone()).await.unwrap();
    assert_eq!(unchanged.state.messages, 1);

    let updated = ensure_stream(
        &js,
        stream::Config {
            max_age: Duration::from_secs(7200),
            ..config
        },
    )
    .await
    .unwrap();
    assert_eq!(updated.config.max_age, Duration::from_secs(7200));
    assert_eq!(
        updated.state.messages, 1,
        "an update keeps the stream's messages"
    );
}

#[tokio::test]
async fn readiness_follows_the_connection() {
    let mut server = NatsServer::start().unwrap();
    let readiness = Readiness::default();
    let client = connect(
        &NatsSettings {
            url: server.url(),
            ..Default::default()
        },
        "test",
        &readiness,
        "nats",
    )
    .await
    .unwrap();
    wait_until(|| readiness.status().is_ok()).await;
    server.kill();
    wait_until(|| readiness.status().is_err()).await;
    server.restart().unwrap();
    wait_until(|| readiness.status().is_ok()).await;
    assert!(is_connected(&client));
}

async fn wait_until(condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn buckets_work_on_the_installed_nats_server() {
    use umpire_nats::kv::{BucketSettings, ensure_bucket};
    let server = NatsServer::start().unwrap();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let settings = BucketSettings {
        bucket: "leases".into(),
        description: "test".into(),
        history: 1,
        max_age: Duration::from_secs(60),
        replicas: 1,
    };
    let kv = ensure_bucket(&js, &settings).await.unwrap();
    let revision = kv.create("partitions.0", "a".into()).await.unwrap();
    assert!(
        kv.create("partitions.0", "b".into()).await.is_err(),
        "create is exclusive"
    );
    assert!(
        kv.update("partitions.0", "b".into(), revision + 100)
            .await
            .is_err(),
        "update is compare-and-set"
    );
    kv.update("partitions.0", "a".into(), revision)
        .await
        .unwrap();
    let reopened = ensure_bucket(&js, &settings).await.unwrap();
    assert_eq!(reopened.get("partitions.0").await.unwrap().unwrap(), "a");
}

/// Step 8, seen from outside: `--nats-url` refused a comma-separated server list, which every
/// NATS client accepts (and the official chart's clients are given).
#[tokio::test]
async fn a_comma_separated_server_list_connects() {
    let server = NatsServer::start().unwrap();
    // The first server is down: the client moves on to the next.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let readiness = Readiness::default();
    let client = connect(
        &NatsSettings::plain(format!("nats://127.0.0.1:{down}, {}", server.url())),
        "test",
        &readiness,
        "nats",
    )
    .await
    .unwrap();
    wait_until(|| readiness.status().is_ok()).await;
    assert!(is_connected(&client));
}
