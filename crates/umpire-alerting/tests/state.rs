#![allow(clippy::unwrap_used)]
//! The leader lease and the alert state store on a real nats-server.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use umpire_alerting::leader::PolicyLease;
use umpire_contract::alert_state::{AlertStore, StoredAlert};
use umpire_core::alert::state::{AlertStatus, Phase};
use umpire_nats::topology::ProjectNames;
use umpire_testkit::nats::NatsServer;

#[tokio::test]
async fn one_leader_at_a_time_and_takeover_after_expiry() {
    let server = NatsServer::start().unwrap();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let names = ProjectNames::new("ml", "bot");
    let ttl = Duration::from_secs(2);
    let mut a = PolicyLease::open(&js, &names, "quality", "a", ttl, 1)
        .await
        .unwrap();
    let mut b = PolicyLease::open(&js, &names, "quality", "b", ttl, 1)
        .await
        .unwrap();
    let mut other_policy = PolicyLease::open(&js, &names, "latency", "b", ttl, 1)
        .await
        .unwrap();

    assert!(a.try_acquire().await.unwrap());
    assert!(!b.try_acquire().await.unwrap(), "held by a");
    assert!(
        other_policy.try_acquire().await.unwrap(),
        "leases are per policy"
    );
    assert!(a.renew().await.unwrap());
    assert!(a.is_leader(Instant::now()));

    // A graceful hand-over needs no waiting.
    a.release().await;
    assert!(!a.is_leader(Instant::now()));
    assert!(b.try_acquire().await.unwrap());

    // b stops renewing (a crash): a takes over once the key expires...
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.try_acquire().await.unwrap() {
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and b, had it only stalled, fenced itself before that and cannot renew.
    assert!(!b.is_leader(Instant::now()));
    assert!(!b.renew().await.unwrap());
    assert!(a.renew().await.unwrap());
}

#[tokio::test]
async fn alert_state_round_trips_per_policy() {
    let server = NatsServer::start().unwrap();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let names = ProjectNames::new("ml", "bot");
    let mut quality = AlertStore::open(&js, &names, "quality", 1).await.unwrap();
    let mut latency = AlertStore::open(&js, &names, "latency", 1).await.unwrap();
    assert!(quality.load().await.unwrap().is_empty());
    let firing = StoredAlert {
        rule: "grounded-drop".into(),
        group: "gen_ai.request.model=gpt-4o".into(),
        values: BTreeMap::from([("gen_ai.request.model".to_owned(), "gpt-4o".to_owned())]),
        status: AlertStatus {
            phase: Phase::Firing {
                since_ns: 5,
                last_notified_ns: 5,
                clear_since_ns: None,
            },
            episode: 2,
            repeats: 0,
            value: Some(0.4),
        },
        trigger: None,
    };
    let pending = StoredAlert {
        rule: "slow".into(),
        group: String::new(),
        values: BTreeMap::new(),
        status: AlertStatus {
            phase: Phase::Pending { since_ns: 9 },
            episode: 0,
            repeats: 0,
            value: None,
        },
        trigger: None,
    };
    quality.save(&firing).await.unwrap();
    quality.save(&pending).await.unwrap();
    latency.save(&pending).await.unwrap();
    let mut updated = firing.clone();
    updated.status.phase = Phase::Inactive;
    quality.save(&updated).await.unwrap();

    let mut loaded = quality.load().await.unwrap();
    loaded.sort_by(|a, b| a.rule.cmp(&b.rule));
    assert_eq!(loaded, [updated, pending.clone()]);
    assert_eq!(latency.load().await.unwrap(), [pending]);
    assert_eq!(quality.key("slow", ""), "quality.slow.all");
    assert!(
        quality
            .key("grounded-drop", "gen_ai.request.model=gpt-4o")
            .starts_with("quality.grounded-drop.")
    );
}

/// A leader paused past its lease (GC, SIGSTOP, a frozen node) may wake mid-write, after its
/// successor took over: JetStream must refuse that write, for the alert state and for the
/// outbox alike, while the successor's writes go through.
#[tokio::test]
async fn a_paused_leaders_writes_are_refused_once_its_successor_claimed_the_policy() {
    use umpire_alerting::outbox;
    use umpire_core::alert::notification::{Action, Notification};
    use umpire_core::alert::rule::Severity;
    use umpire_nats::fence::Fence;

    let server = NatsServer::start().unwrap();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let names = ProjectNames::new("ml", "bot");
    umpire_nats::streams::ensure_stream(&js, umpire_nats::topology::outbox_stream(&names, 1))
        .await
        .unwrap();
    let alert = |episode: u64| StoredAlert {
        rule: "slow".into(),
        group: String::new(),
        values: BTreeMap::new(),
        status: AlertStatus {
            phase: Phase::Pending { since_ns: 9 },
            episode,
            repeats: 0,
            value: None,
        },
        trigger: None,
    };
    let note = |episode: u64| Notification {
        dedup_key: "k".into(),
        action: Action::Trigger,
        episode,
        repeat: 0,
        namespace: "ml".into(),
        project: "bot".into(),
        policy: "quality".into(),
        rule: "slow".into(),
        group: String::new(),
        group_values: BTreeMap::new(),
        severity: Severity::Warning,
        route: "hook".into(),
        class: "latency".into(),
        metric: "p95".into(),
        value: None,
        threshold: None,
        baseline: None,
        samples: 1,
        window: "5m".into(),
        description: "d".into(),
        summary: "s".into(),
        since_unix_nano: 1,
        at_unix_nano: 1,
        due_unix_nano: 1,
        example_trace_ids: Vec::new(),
    };
    let subject = names.notifications_subject("quality", "hook");
    let epoch = outbox::epoch_subject(&names, "quality");

    let mut old = AlertStore::open(&js, &names, "quality", 1).await.unwrap();
    old.claim("replica-a").await.unwrap();
    let old_fence = Fence::claim(&js, &epoch, "replica-a").await.unwrap();
    old.save(&alert(1)).await.unwrap();
    assert!(
        outbox::publish(&js, &subject, &note(1), Some(&old_fence))
            .await
            .unwrap()
    );

    eprintln!("injected: replica-b claims the policy while replica-a is (notionally) paused");
    let mut new = AlertStore::open(&js, &names, "quality", 1).await.unwrap();
    new.claim("replica-b").await.unwrap();
    let new_fence = Fence::claim(&js, &epoch, "replica-b").await.unwrap();

    let refused = old.save(&alert(7)).await.unwrap_err();
    assert!(refused.fenced, "{refused}");
    let refused = old.delete("slow", "").await.unwrap_err();
    assert!(refused.fenced, "{refused}");
    let refused = outbox::publish(&js, &subject, &note(7), Some(&old_fence))
        .await
        .unwrap_err();
    assert!(refused.fenced, "{refused}");

    new.save(&alert(2)).await.unwrap();
    assert!(
        outbox::publish(&js, &subject, &note(2), Some(&new_fence))
            .await
            .unwrap()
    );
    let stored = new.load().await.unwrap();
    assert_eq!(
        stored,
        vec![alert(2)],
        "the successor's state, not the paused leader's"
    );
    let episodes: Vec<u64> = umpire_testkit::nats::read_stream(&js, &names.notifications_stream())
        .await
        .unwrap()
        .iter()
        .filter(|m| m.subject == subject)
        .map(|m| {
            serde_json::from_slice::<Notification>(&m.payload)
                .unwrap()
                .episode
        })
        .collect();
    assert_eq!(
        episodes,
        [1, 2],
        "the paused leader's notification never reached the outbox"
    );
    new.delete("slow", "").await.unwrap();
    assert!(new.load().await.unwrap().is_empty());
}
