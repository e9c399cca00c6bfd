#![allow(clippy::unwrap_used)]
//! Fences on a real nats-server: once a second holder claims, the first holder's guarded
//! writes are refused — on any subject of the stream — and the second's go through.

use async_nats::jetstream::{self, message::PublishMessage, stream};
use umpire_nats::fence::{Fence, is_fenced};
use umpire_testkit::nats::{NatsServer, count_on};

#[tokio::test]
async fn a_newer_claim_fences_off_the_older_holders_writes() {
    let server = NatsServer::start().unwrap();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    js.create_stream(stream::Config {
        name: "FENCED".into(),
        subjects: vec!["data.>".into(), "epoch.*".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let write = |fence: &Fence, n: u32| {
        js.send_publish(
            format!("data.{n}"),
            fence.guard(PublishMessage::build().payload(n.to_string().into())),
        )
    };

    let first = Fence::claim(&js, "epoch.7", "replica-a").await.unwrap();
    write(&first, 1).await.unwrap().await.unwrap();
    write(&first, 2).await.unwrap().await.unwrap();

    let second = Fence::claim(&js, "epoch.7", "replica-b").await.unwrap();
    assert!(second.sequence() > first.sequence());
    let refused = write(&first, 3).await.unwrap().await.unwrap_err();
    assert!(is_fenced(&refused), "{refused}");
    write(&second, 4).await.unwrap().await.unwrap();

    // Another partition's epoch is independent.
    let other = Fence::claim(&js, "epoch.8", "replica-a").await.unwrap();
    write(&other, 5).await.unwrap().await.unwrap();
    write(&second, 6).await.unwrap().await.unwrap();

    assert_eq!(count_on(&js, "FENCED", "data.>").await.unwrap(), 5);
}
