//! Alerting end to end: three `umpire evaluator` processes share one policy; a score stream
//! with an injected regression in one group pages PagerDuty exactly once and resolves
//! exactly once, through a crash of the alert leader mid-incident (and its restart) and a
//! receiver that answers 429 and 5xx; a noisy but healthy group never pages.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use support::UmpireProcess;
use support::scores::{
    HEALTHY, REGRESSED, ROUTING_KEY, STOPPED, leaders, publish_batch, publish_scores, write_policy,
};
use umpire_testkit::nats::NatsServer;
use umpire_testkit::pager::{PagerDutyReceiver, Received};
use umpire_testkit::wait::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_page_and_one_resolve_per_group_through_a_leader_crash_and_receiver_errors() {
    let nats = NatsServer::start().unwrap();
    let pager = PagerDutyReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_policy(dir.path(), &nats, &pager, REGRESSION);
    let spawn = || UmpireProcess::spawn(&["evaluator", "--config", &config], dir.path());
    let mut replicas = vec![spawn(), spawn(), spawn()];

    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    score_stream_created(&js).await;
    let phase = Arc::new(AtomicU8::new(HEALTHY));
    let publisher = tokio::spawn(publish_scores(js.clone(), phase.clone(), 40));

    // Exactly one replica leads.
    let leader = eventually("an alert leader", Duration::from_secs(30), || {
        let found = leaders(&mut replicas);
        async move { (found.len() == 1).then(|| found[0]) }
    })
    .await;
    // Fill the 20 s baseline with healthy traffic, then break gpt-4o.
    tokio::time::sleep(Duration::from_secs(22)).await;
    pager.fail_next(&[429, 500]);
    phase.store(REGRESSED, Ordering::SeqCst);
    let triggered = eventually("the trigger", Duration::from_secs(30), || async {
        pager.events().into_iter().find(|e| e.action() == "trigger")
    })
    .await;
    assert_eq!(
        &pager.answers()[..3],
        [429, 500, 202],
        "retried through 429 and 500"
    );
    let payload = &triggered.body["payload"];
    assert_eq!(
        payload["custom_details"]["group"]["gen_ai.request.model"],
        "gpt-4o"
    );
    assert!(payload["custom_details"]["baseline"].as_f64().unwrap() > 0.8);
    assert!(payload["custom_details"]["value"].as_f64().unwrap() < 0.72);
    assert!(
        !payload["custom_details"]["example_trace_ids"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The leader crashes mid-incident; another replica takes over (after the lease TTL),
    // restores the firing alert from KV, rebuilds its windows, and must not page again.
    // The crash comes once the page's delivery is acknowledged to the outbox: a replica
    // killed between the receiver's 202 and that ack sends the page again (at least once;
    // the same dedup key), which is not what this test is about — seen once in CI, where
    // the kill landed in that window.
    eventually(
        "the page's delivery acknowledged",
        Duration::from_secs(30),
        || {
            let acked = replicas.iter_mut().any(|r| {
                r.events("notification_delivered")
                    .iter()
                    .any(|e| e["acked"] == true)
            });
            async move { acked.then_some(()) }
        },
    )
    .await;
    replicas[leader].kill();
    let successor = eventually("a new alert leader", Duration::from_secs(30), || {
        let found: Vec<usize> = leaders(&mut replicas)
            .into_iter()
            .filter(|i| *i != leader)
            .collect();
        async move { found.first().copied() }
    })
    .await;
    eventually("the successor's replay", Duration::from_secs(30), || {
        let done = !replicas[successor].events("alert_replay_done").is_empty();
        async move { done.then_some(()) }
    })
    .await;
    let replay = replicas[successor].events("alert_replay_started");
    assert_eq!(
        replay[0]["restored_firing"], 1,
        "the successor restored the firing alert from KV"
    );
    replicas[leader] = spawn();
    // Still regressed for a while under the new leader.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        pager.events().len(),
        1,
        "no second page: {:?}",
        pager
            .events()
            .iter()
            .map(|e| e.body.clone())
            .collect::<Vec<_>>()
    );

    // Recovery; the receiver fails the first resolve attempts.
    pager.fail_next(&[503, 500, 429]);
    phase.store(HEALTHY, Ordering::SeqCst);
    let resolved = eventually("the resolve", Duration::from_secs(60), || async {
        pager.events().into_iter().find(|e| e.action() == "resolve")
    })
    .await;
    assert_eq!(resolved.dedup_key(), triggered.dedup_key());

    // Healthy traffic for two more windows: nothing else is sent.
    tokio::time::sleep(Duration::from_secs(10)).await;
    phase.store(STOPPED, Ordering::SeqCst);
    publisher.await.unwrap();
    let events: Vec<(String, String)> = pager
        .events()
        .iter()
        .map(|e| {
            (
                e.action().to_owned(),
                e.body["payload"]["custom_details"]["group"]["gen_ai.request.model"]
                    .as_str()
                    .unwrap_or("-")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("trigger".to_owned(), "gpt-4o".to_owned()),
            ("resolve".to_owned(), "-".to_owned())
        ]
    );
    assert!(pager.rejected().is_empty(), "{:?}", pager.rejected());

    // Everything handed to the outbox was delivered and acknowledged.
    let outbox = js
        .get_stream("UMPIRE_NOTIFICATIONS_team_bot")
        .await
        .unwrap();
    let mut notifier = outbox
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("notifier-quality_oncall")
        .await
        .unwrap();
    let info = notifier.info().await.unwrap();
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));
    for replica in &mut replicas {
        assert_eq!(replica.terminate(), Some(0));
    }
    // The routing key never reaches the logs.
    for replica in &replicas {
        assert!(replica.log.iter().all(|l| !l.contains(ROUTING_KEY)));
    }
}

/// Grouped by model: a regression against each group's own 20 s baseline.
const REGRESSION: &str = "  alerts:\n    - name: grounded-regression\n      metric: {judge: grounded, aggregate: passRate}\n      window: 5s\n      minSamples: 50\n      groupBy: [gen_ai.request.model]\n      condition: {regression: {baseline: 20s, maxRelativeDrop: 0.2, confidence: 0.99}}\n      for: 2s\n      clearFor: 3s\n      severity: critical\n      route: oncall";

const GROUNDED_DROP: &str = "  alerts:\n    - {name: grounded-drop, metric: {judge: grounded, aggregate: passRate}, window: 3s, minSamples: 20, condition: {below: 0.75}, severity: critical, route: oncall}";

/// Waits until the evaluators created the project's score stream.
async fn score_stream_created(js: &jetstream::Context) {
    eventually("the score stream", Duration::from_secs(30), || async {
        js.get_stream("UMPIRE_SCORES_team_bot")
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

/// Starts an evaluator of `config` and a regressed score stream until the alert fires;
/// returns the evaluator, the JetStream context and the trigger.
async fn fire(
    dir: &Path,
    nats: &NatsServer,
    pager: &PagerDutyReceiver,
    config: &str,
) -> (UmpireProcess, jetstream::Context, Received) {
    let evaluator = UmpireProcess::spawn(&["evaluator", "--config", config], dir);
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    score_stream_created(&js).await;
    let trigger = regress_until_triggered(&js, pager).await;
    (evaluator, js, trigger)
}

/// Publishes regressed scores (gpt-4o passing ~10 %) until the receiver gets a trigger;
/// returns it.
async fn regress_until_triggered(js: &jetstream::Context, pager: &PagerDutyReceiver) -> Received {
    let phase = Arc::new(AtomicU8::new(REGRESSED));
    let publisher = tokio::spawn(publish_scores(js.clone(), phase.clone(), 10));
    let trigger = eventually("the trigger", Duration::from_secs(30), || async {
        pager.events().into_iter().find(|e| e.action() == "trigger")
    })
    .await;
    phase.store(STOPPED, Ordering::SeqCst);
    publisher.await.unwrap();
    trigger
}

/// Waits for the resolve of `trigger`, for the policy's alert state to be empty, and checks
/// the receiver saw exactly one trigger and one resolve.
async fn resolved_and_forgotten(
    js: &jetstream::Context,
    pager: &PagerDutyReceiver,
    trigger: &Received,
) {
    let resolve = eventually("the resolve", Duration::from_secs(30), || async {
        pager.events().into_iter().find(|e| e.action() == "resolve")
    })
    .await;
    assert_eq!(resolve.dedup_key(), trigger.dedup_key());
    let kv = js.get_key_value("umpire-alerts-team-bot").await.unwrap();
    eventually("the alert forgotten", Duration::from_secs(10), || async {
        kv.get("quality.grounded-drop.all")
            .await
            .ok()
            .filter(Option::is_none)
            .map(|_| ())
    })
    .await;
    let actions = pager.actions();
    assert_eq!(actions, ["trigger", "resolve"]);
}

/// An alert fires, then its rule is removed from the policy (the evaluator restarts with the
/// new spec, as a rollout does): the receiver gets the resolve for the open incident, and
/// the stored state forgets the alert — nothing stays firing, nothing counts it. Re-added,
/// the rule pages again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_firing_rule_resolves_its_incident_and_forgets_it() {
    let nats = NatsServer::start().unwrap();
    let pager = PagerDutyReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_policy(dir.path(), &nats, &pager, GROUNDED_DROP);
    let (mut evaluator, js, trigger) = fire(dir.path(), &nats, &pager, &config).await;
    assert_eq!(evaluator.terminate(), Some(0));

    // The rule is gone from the policy (here every rule: the alerts section is removed).
    let config = write_policy(dir.path(), &nats, &pager, "");
    let mut without_rule = UmpireProcess::spawn(&["evaluator", "--config", &config], dir.path());
    resolved_and_forgotten(&js, &pager, &trigger).await;
    assert_eq!(without_rule.terminate(), Some(0));

    // Re-added under the same name, the rule starts clean and pages again — typically within
    // the second of its first page, as it replays the regressed scores. Its page must be a
    // new notification: with episodes counted from 1, or in whole seconds, it had the
    // forgotten page's id, and the outbox dropped it as a duplicate.
    let config = write_policy(dir.path(), &nats, &pager, GROUNDED_DROP);
    let _evaluator = UmpireProcess::spawn(&["evaluator", "--config", &config], dir.path());
    let phase = Arc::new(AtomicU8::new(REGRESSED));
    let publisher = tokio::spawn(publish_scores(js.clone(), phase.clone(), 10));
    let again = eventually(
        "the re-added rule's page",
        Duration::from_secs(30),
        || async {
            pager
                .events()
                .into_iter()
                .filter(|e| e.action() == "trigger")
                .nth(1)
        },
    )
    .await;
    phase.store(STOPPED, Ordering::SeqCst);
    publisher.await.unwrap();
    assert_eq!(again.dedup_key(), trigger.dedup_key());
    assert_eq!(pager.actions(), ["trigger", "resolve", "trigger"]);
}

/// The policy is deleted while its alert fires: the controller's finalizer marks it (as
/// here) while its evaluators still run, and the running leader resolves the incident at
/// its route and forgets the alert before the finalizer lets the policy go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_policy_resolves_its_firing_alerts() {
    let nats = NatsServer::start().unwrap();
    let pager = PagerDutyReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_policy(dir.path(), &nats, &pager, GROUNDED_DROP);
    let (_evaluator, js, trigger) = fire(dir.path(), &nats, &pager, &config).await;
    let names = umpire_nats::topology::ProjectNames::new("team", "bot");
    let store = umpire_contract::alert_state::AlertStore::open_existing(&js, &names, "quality")
        .await
        .unwrap()
        .unwrap();
    store.retire_policy().await.unwrap();
    resolved_and_forgotten(&js, &pager, &trigger).await;
}

/// A long baseline is not replayed on takeover: the leader snapshots its windows to the
/// project's object store, and its successor restores them and replays only the scores
/// stored after the snapshot — yet judges the regression against the whole baseline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_restores_the_window_snapshot_and_replays_only_the_tail() {
    const BASELINE_SCORES: u64 = 20_000;
    const TAIL_SCORES: u64 = 20;
    let nats = NatsServer::start().unwrap();
    let pager = PagerDutyReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_policy(dir.path(), &nats, &pager, LONG_BASELINE);
    let mut first = UmpireProcess::spawn(&["evaluator", "--config", &config], dir.path());
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    score_stream_created(&js).await;
    publish_healthy(&js, 0, BASELINE_SCORES).await;
    eventually(
        "a snapshot of the whole baseline",
        Duration::from_secs(60),
        || {
            let saved = first.events("alert_snapshot_saved");
            async move {
                saved
                    .iter()
                    .any(|e| e["through_sequence"].as_u64() == Some(BASELINE_SCORES))
                    .then_some(())
            }
        },
    )
    .await;
    eprintln!("injected: the leader is killed after snapshotting {BASELINE_SCORES} scores");
    first.kill();
    publish_healthy(&js, BASELINE_SCORES, TAIL_SCORES).await;

    let mut successor = UmpireProcess::spawn(&["evaluator", "--config", &config], dir.path());
    let done = eventually("the successor's replay", Duration::from_secs(60), || {
        let done = successor.events("alert_replay_done");
        async move { done.first().cloned() }
    })
    .await;
    let started = successor.events("alert_replay_started");
    assert_eq!(started[0]["snapshot_through"], BASELINE_SCORES);
    assert_eq!(
        done["replayed"], TAIL_SCORES,
        "only the scores after the snapshot are replayed"
    );

    // Fewer than minSamples scores were replayed: the regression can only be judged against
    // the baseline restored from the snapshot.
    let trigger = regress_until_triggered(&js, &pager).await;
    let details = &trigger.body["payload"]["custom_details"];
    // gpt-4o's restored scores (the even-numbered ones) fail one in five.
    let baseline = details["baseline"].as_f64().unwrap();
    assert!((baseline - 0.8).abs() < 0.02, "{details}");
    assert_eq!(successor.terminate(), Some(0));
}

/// A regression against a 2 h baseline.
const LONG_BASELINE: &str = "  alerts:\n    - name: grounded-regression\n      metric: {judge: grounded, aggregate: passRate}\n      window: 5s\n      minSamples: 50\n      groupBy: [gen_ai.request.model]\n      condition: {regression: {baseline: 2h, maxRelativeDrop: 0.2, confidence: 0.99}}\n      severity: critical\n      route: oncall";

/// Publishes `count` healthy scores (90 % pass, both models) numbered from `from`,
/// 500 in flight at a time, and waits until JetStream stored each.
async fn publish_healthy(js: &jetstream::Context, from: u64, count: u64) {
    let mut acks = Vec::new();
    for n in from..from + count {
        let model = if n.is_multiple_of(2) {
            "gpt-4o"
        } else {
            "gpt-4o-mini"
        };
        let evaluation = support::scores::evaluation(n + 1_000_000, model, !n.is_multiple_of(10));
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", evaluation.id.as_str());
        let payload = umpire_core::stream_codec::to_vec(&evaluation).unwrap();
        acks.push(
            js.publish_with_headers(support::scores::SCORES, headers, payload.into())
                .await
                .unwrap(),
        );
        // The client bounds acks in flight: collect them before publishing further.
        if acks.len() == 500 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

/// Scores stored batched — the evaluations of a trace's spans judged together travel as one
/// message — count once each: every evaluation of a batch is folded into the windows, and a
/// trace's evaluations stored again in a differently-grouped batch (ingest regrouped the
/// trace after a partition moved, so its spans were judged twice) are recognised by their
/// ids and not counted twice. 24 failing evaluations, 4 to a message, page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_scores_count_once_each() {
    let nats = NatsServer::start().unwrap();
    let pager = PagerDutyReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_policy(dir.path(), &nats, &pager, GROUNDED_DROP);
    let admin = support::free_port();
    let yaml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        yaml.replace("127.0.0.1:0", &format!("127.0.0.1:{admin}")),
    )
    .unwrap();
    let mut evaluator = UmpireProcess::spawn(&["evaluator", "--config", &config], dir.path());
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    score_stream_created(&js).await;

    let failing: Vec<_> = (1..=24)
        .map(|n| support::scores::evaluation(n, "gpt-4o", false))
        .collect();
    for (i, batch) in failing.chunks(4).enumerate() {
        publish_batch(&js, batch, &format!("quality/batch-of-4-{i}")).await;
    }
    for (i, batch) in failing.chunks(3).enumerate() {
        publish_batch(&js, batch, &format!("quality/batch-of-3-{i}")).await;
    }
    let observed = "umpire_alerts_scores_observed_total";
    let duplicates = "umpire_alerts_duplicate_scores_total";
    let counted = eventually(
        "every stored evaluation read",
        Duration::from_secs(30),
        || async {
            let seen = support::metric(admin, observed, "").await
                + support::metric(admin, duplicates, "").await;
            (seen >= 48.0).then_some(())
        },
    );
    counted.await;
    assert_eq!(support::metric(admin, observed, "").await, 24.0);
    assert_eq!(support::metric(admin, duplicates, "").await, 24.0);
    assert_eq!(
        support::metric(admin, "umpire_alerts_undecodable_scores_total", "").await,
        0.0
    );
    let trigger = eventually("the trigger", Duration::from_secs(30), || async {
        pager.events().into_iter().find(|e| e.action() == "trigger")
    })
    .await;
    assert!(!trigger.dedup_key().is_empty());
    assert_eq!(evaluator.terminate(), Some(0));
}
