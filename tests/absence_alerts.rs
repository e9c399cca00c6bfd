//! The "model deprecation" page end to end: an `umpire evaluator` with a per-model rule
//! (`groupBy: [gen_ai.request.model]`, `noData: alert`, `groupExpiry`) over a live score
//! stream pages PagerDuty when one model's calls stop — and only for that model —, resolves
//! and forgets the model's group once it has been gone for `groupExpiry`, and pages afresh
//! (a new notification id, not dropped as a duplicate) when the model returns and stops
//! again.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use support::UmpireProcess;
use support::scores::{SCORES, evaluation, write_policy};
use umpire_testkit::nats::NatsServer;
use umpire_testkit::pager::{PagerDutyReceiver, Received};
use umpire_testkit::wait::eventually;

const MINI: &str = "gen_ai.request.model=gpt-4o-mini";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_whose_calls_stop_pages_alone_then_expires_and_pages_again_on_return() {
    let nats = NatsServer::start().unwrap();
    let pager = PagerDutyReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_policy(dir.path(), &nats, &pager, MODEL_SILENT);
    let mut evaluator = UmpireProcess::spawn(&["evaluator", "--config", &config], dir.path());
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    evaluator.wait_for_event("alert_replay_done", Duration::from_secs(30));

    let mini_calls = Arc::new(AtomicBool::new(true));
    let publisher = tokio::spawn(publish_calls(js.clone(), mini_calls.clone()));
    // Both models called for longer than the window, so both groups are watched.
    tokio::time::sleep(Duration::from_secs(6)).await;
    mini_calls.store(false, Ordering::SeqCst);
    eprintln!("injected: gpt-4o-mini's calls stop; gpt-4o's go on");

    let trigger = next_event(&pager, "trigger", 0).await;
    let details = &trigger.body["payload"]["custom_details"];
    assert_eq!(details["group"]["gen_ai.request.model"], "gpt-4o-mini");
    let summary = trigger.body["payload"]["summary"].as_str().unwrap();
    assert!(summary.contains("no grounded count samples"), "{summary}");

    // Gone for the 12 s groupExpiry: resolved, and its stored state forgotten.
    let resolve = next_event(&pager, "resolve", 0).await;
    assert_eq!(resolve.dedup_key(), trigger.dedup_key());
    let expired = evaluator.wait_for_event("alert_group_expired", Duration::from_secs(10));
    assert_eq!(expired["group"], MINI);
    let kv = js.get_key_value("umpire-alerts-team-bot").await.unwrap();
    let keys: Vec<String> = futures::TryStreamExt::try_collect(kv.keys().await.unwrap())
        .await
        .unwrap();
    assert!(
        keys.iter().all(|k| !k.starts_with("quality.model-silent.")),
        "the expired group's state is forgotten: {keys:?}"
    );

    // The model returns, then stops again: a new page, which the outbox must not take for
    // a duplicate of the first (same dedup key, a new episode).
    mini_calls.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    mini_calls.store(false, Ordering::SeqCst);
    let second = next_event(&pager, "trigger", 1).await;
    assert_eq!(second.dedup_key(), trigger.dedup_key());
    assert_eq!(
        second.body["payload"]["custom_details"]["group"]["gen_ai.request.model"],
        "gpt-4o-mini"
    );

    // gpt-4o was called all along: never paged. (Resolves carry no payload.)
    let models: Vec<String> = pager
        .events()
        .iter()
        .filter(|e| e.action() == "trigger")
        .map(|e| e.body["payload"]["custom_details"]["group"]["gen_ai.request.model"].to_string())
        .collect();
    assert!(
        models.iter().all(|m| m.contains("gpt-4o-mini")),
        "{models:?}"
    );
    assert_eq!(pager.actions(), ["trigger", "resolve", "trigger"]);
    publisher.abort();
    assert_eq!(evaluator.terminate(), Some(0));
}

/// The `index`-th event of `action` the receiver got.
async fn next_event(pager: &PagerDutyReceiver, action: &str, index: usize) -> Received {
    eventually(action, Duration::from_secs(30), || async {
        pager
            .events()
            .into_iter()
            .filter(|e| e.action() == action)
            .nth(index)
    })
    .await
}

/// Ten calls a second of gpt-4o, and of gpt-4o-mini while `mini` is set.
async fn publish_calls(js: jetstream::Context, mini: Arc<AtomicBool>) {
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    let mut n = 0u64;
    loop {
        ticks.tick().await;
        let models: &[&str] = if mini.load(Ordering::SeqCst) {
            &["gpt-4o", "gpt-4o-mini"]
        } else {
            &["gpt-4o"]
        };
        for model in models {
            n += 1;
            let evaluation = evaluation(n, model, true);
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", evaluation.id.as_str());
            let payload = umpire_core::stream_codec::to_vec(&evaluation).unwrap();
            js.publish_with_headers(SCORES, headers, payload.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }
}

/// The "model deprecation" rule: calls per model, an empty window (5 s) pages, gone for 12 s
/// retires the model's group. The window is wider than the test needs so that a busy CI
/// machine delaying the evaluator's reads a few seconds cannot empty gpt-4o's window.
const MODEL_SILENT: &str = "  alerts:\n    - name: model-silent\n      metric: {judge: grounded, aggregate: count}\n      window: 5s\n      minSamples: 1\n      groupBy: [gen_ai.request.model]\n      condition: {below: 1}\n      noData: alert\n      groupExpiry: 12s\n      clearFor: 1s\n      severity: critical\n      route: oncall";
