#![allow(clippy::unwrap_used)]
//! Leases on a real nats-server: a renewal that was applied but whose answer was never seen
//! (its caller's budget ran out) does not lose the lease; anyone else's write does.

use std::time::Duration;

use async_nats::jetstream;
use umpire_nats::kv::BucketSettings;
use umpire_nats::lease::LeaseBucket;
use umpire_testkit::nats::NatsServer;

fn settings() -> BucketSettings {
    BucketSettings {
        bucket: "leases".into(),
        description: "test leases".into(),
        history: 1,
        max_age: Duration::from_secs(30),
        replicas: 1,
    }
}

/// A nats-server (kept alive by the caller) and replica-a's lease bucket on it.
async fn replica_a() -> (NatsServer, LeaseBucket) {
    let server = NatsServer::start().unwrap();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let bucket = LeaseBucket::open(&js, &settings(), "replica-a")
        .await
        .unwrap();
    (server, bucket)
}

#[tokio::test]
async fn a_renewal_applied_unseen_keeps_the_lease_and_anothers_write_loses_it() {
    let (_server, bucket) = replica_a().await;
    let kv = bucket.store().clone();

    let mut lease = bucket.try_acquire("partitions.3").await.unwrap().unwrap();
    // What a renewal cut short leaves behind: the update landed, the holder never saw its
    // revision.
    let unseen = kv
        .update("partitions.3", "replica-a".into(), lease.revision())
        .await
        .unwrap();
    assert!(
        bucket.renew(&mut lease).await.unwrap(),
        "the holder's own unseen renewal lost it the lease"
    );
    assert!(lease.revision() > unseen, "renewed on the newer revision");
    assert!(bucket.renew(&mut lease).await.unwrap());

    // Someone else's write (after an expiry, say) is a loss, as before.
    let current = kv.entry("partitions.3").await.unwrap().unwrap().revision;
    kv.update("partitions.3", "replica-b".into(), current)
        .await
        .unwrap();
    assert!(
        !bucket.renew(&mut lease).await.unwrap(),
        "replica-b holds it"
    );

    // So is the key deleted and created afresh by the same member's later lease: the old
    // lease object's revision chain is broken by the delete.
    let mut old = bucket.try_acquire("partitions.4").await.unwrap().unwrap();
    let current = kv.entry("partitions.4").await.unwrap().unwrap().revision;
    kv.delete_expect_revision("partitions.4", Some(current))
        .await
        .unwrap();
    assert!(!bucket.renew(&mut old).await.unwrap(), "deleted: lost");
}

/// A create cut short after NATS applied it leaves the key in this member's name with no
/// lease object; the next attempt adopts it instead of leaving it unserved until it
/// expires. Someone else's key, or a deleted one, is not adopted.
#[tokio::test]
async fn a_create_applied_unseen_is_adopted_and_anothers_key_is_not() {
    let (_server, bucket) = replica_a().await;
    let kv = bucket.store().clone();

    let unseen = kv.create("partitions.5", "replica-a".into()).await.unwrap();
    let lease = bucket
        .try_acquire("partitions.5")
        .await
        .unwrap()
        .expect("its own unseen create is adopted");
    assert!(lease.revision() > unseen, "adopted through a renewal");
    assert!(lease.is_valid(std::time::Instant::now(), bucket.ttl()));

    kv.create("partitions.6", "replica-b".into()).await.unwrap();
    assert!(bucket.try_acquire("partitions.6").await.unwrap().is_none());
}
