#![allow(clippy::unwrap_used)]
//! Fences on a real nats-server: once a second holder claims, the first holder's guarded
//! writes are refused — on any subject of the stream — and the second's go through.

use async_nats::jetstream::{self, message::PublishMessage, stream};
use umpire_nats::fence::{Fence, FencedWriteError, SlottedFence, is_fenced};
use umpire_testkit::nats::{NatsCluster, NatsServer, count_on};

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

/// A slotted fence on a three-node cluster with an R3 stream: as many guarded writes in
/// flight at once as there are slots (one marker subject would refuse all but one while
/// the first is replicated), markers rolled up, re-marking under the holder's own guard, and
/// a successor's claim — or a marker that vanished — refusing the holder's next writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slotted_fences_carry_concurrent_writes_in_a_cluster() {
    const SLOTS: usize = 16;
    let cluster = NatsCluster::start(3, &[]).unwrap();
    let js = jetstream::new(cluster.client().await.unwrap());
    umpire_testkit::wait::eventually(
        "an R3 stream",
        std::time::Duration::from_secs(60),
        || async {
            js.create_stream(stream::Config {
                name: "SLOTTED".into(),
                subjects: vec!["data.>".into(), "fence.>".into()],
                num_replicas: 3,
                allow_rollup: true,
                ..Default::default()
            })
            .await
            .ok()
        },
    )
    .await;
    let write_all = |slots: Vec<umpire_nats::fence::Slot>, round: usize| {
        let js = js.clone();
        async move {
            let mut acks = Vec::new();
            for (i, slot) in slots.iter().enumerate() {
                let message = PublishMessage::build().payload(format!("{round}.{i}").into());
                acks.push(
                    js.send_publish(format!("data.{round}"), slot.fence().guard(message))
                        .await?,
                );
            }
            for ack in acks {
                ack.await?;
            }
            Ok::<_, async_nats::jetstream::context::PublishError>(())
        }
    };

    let a = SlottedFence::claim(&js, "fence.3", "replica-a", SLOTS)
        .await
        .unwrap()
        .refresh_after(std::time::Duration::ZERO);
    for round in 0..10 {
        let taken = a.take(&js, SLOTS).await.unwrap();
        assert_eq!(taken.slots().len(), SLOTS);
        write_all(taken.slots().to_vec(), round).await.unwrap();
    }
    assert_eq!(count_on(&js, "SLOTTED", "data.>").await.unwrap(), 160);
    // Re-marked on every take, yet one marker per slot.
    assert_eq!(
        count_on(&js, "SLOTTED", "fence.>").await.unwrap(),
        SLOTS as u64
    );

    let b = SlottedFence::claim(&js, "fence.3", "replica-b", SLOTS)
        .await
        .unwrap();
    let refused = a.take(&js, 4).await.err().unwrap();
    assert!(matches!(refused, FencedWriteError::Fenced(_)), "{refused}");
    assert!(a.is_revoked());
    // Without re-marking, the stale holder's writes themselves are refused.
    let stale = SlottedFence::claim(&js, "fence.4", "replica-a", 2)
        .await
        .unwrap();
    let stale_slots = stale.take(&js, 2).await.unwrap().slots().to_vec();
    SlottedFence::claim(&js, "fence.4", "replica-b", 2)
        .await
        .unwrap();
    let refused = write_all(stale_slots, 20).await.unwrap_err();
    assert!(is_fenced(&refused), "{refused}");
    let taken = b.take(&js, SLOTS).await.unwrap();
    write_all(taken.slots().to_vec(), 30).await.unwrap();
    drop(taken);

    // A marker removed (by stream limits, here a purge) reads as fenced, not as free.
    let c = SlottedFence::claim(&js, "fence.5", "replica-c", 1)
        .await
        .unwrap()
        .refresh_after(std::time::Duration::ZERO);
    js.get_stream("SLOTTED")
        .await
        .unwrap()
        .purge()
        .filter("fence.5.0")
        .await
        .unwrap();
    assert!(matches!(
        c.take(&js, 1).await.err().unwrap(),
        FencedWriteError::Fenced(_)
    ));
    assert_eq!(count_on(&js, "SLOTTED", "data.>").await.unwrap(), 176);
}
