//! Alerting on a three-node JetStream cluster (R3 policy state): an alert fires, then the
//! node leading the outbox — where notifications wait for delivery — is killed and
//! restarted mid-incident. The PagerDuty receiver gets exactly one trigger and exactly one
//! resolve.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use support::UmpireProcess;
use support::scores::{HEALTHY, REGRESSED, STOPPED, publish_scores};
use umpire_testkit::nats::NatsCluster;
use umpire_testkit::pager::PagerDutyReceiver;
use umpire_testkit::wait::eventually;

const ROUTING_KEY: &str = "c1u5ter0routing0key000000000000a";

async fn leader_of(js: &jetstream::Context, stream: &str) -> String {
    eventually(
        &format!("{stream}'s leader"),
        Duration::from_secs(30),
        || async {
            js.get_stream(stream)
                .await
                .ok()?
                .info()
                .await
                .ok()?
                .cluster
                .clone()?
                .leader
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trigger_and_one_resolve_through_the_loss_of_the_outbox_leader() {
    let mut cluster = NatsCluster::start(3, &[]).unwrap();
    let pager = PagerDutyReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("secrets/pd")).unwrap();
    std::fs::write(dir.path().join("secrets/pd/routing-key"), ROUTING_KEY).unwrap();
    let config = dir.path().join("evaluator.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
namespace: team
policy: quality
nats: {{url: "{nats}"}}
adminListen: 127.0.0.1:0
secretDir: {secrets}
stateReplicas: 3
alertLeaseTtl: 3s
spec:
  projectRef: {{name: bot}}
  judges: [{{name: grounded, latency: {{maxMs: 60000}}}}]
  alerts:
    - name: grounded-drop
      metric: {{judge: grounded, aggregate: passRate}}
      window: 5s
      minSamples: 50
      condition: {{below: 0.75}}
      clearFor: 3s
      severity: critical
      route: oncall
  routes:
    - {{name: oncall, pagerDuty: {{url: "{pd}", routingKeySecretRef: {{name: pd, key: routing-key}}}}}}
"#,
            nats = cluster.urls(),
            secrets = dir.path().join("secrets").display(),
            pd = pager.events_url(),
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let spawn = || UmpireProcess::spawn(&["evaluator", "--config", &config], dir.path());
    let _replicas = [spawn(), spawn()];

    let js = jetstream::new(cluster.client().await.unwrap());
    leader_of(&js, "UMPIRE_SCORES_team_bot").await;
    let phase = Arc::new(AtomicU8::new(HEALTHY));
    let publisher = tokio::spawn(publish_scores(js.clone(), phase.clone(), 20));
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(pager.events().is_empty(), "healthy traffic paged");

    phase.store(REGRESSED, Ordering::SeqCst);
    let trigger = eventually("the trigger", Duration::from_secs(30), || async {
        pager.events().into_iter().find(|e| e.action() == "trigger")
    })
    .await;

    let leader = leader_of(&js, "UMPIRE_NOTIFICATIONS_team_bot").await;
    eprintln!("injected: killed {leader}, the outbox's leader, for 5 s while the alert fires");
    let node = cluster.node_named(&leader).unwrap();
    node.kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    node.restart().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    phase.store(HEALTHY, Ordering::SeqCst);
    let resolve = eventually("the resolve", Duration::from_secs(60), || async {
        pager.events().into_iter().find(|e| e.action() == "resolve")
    })
    .await;
    assert_eq!(resolve.dedup_key(), trigger.dedup_key());
    // Healthy for two more windows: nothing else arrives.
    tokio::time::sleep(Duration::from_secs(10)).await;
    phase.store(STOPPED, Ordering::SeqCst);
    publisher.await.unwrap();
    let actions: Vec<String> = pager
        .events()
        .iter()
        .map(|e| e.action().to_owned())
        .collect();
    eprintln!("received: {actions:?}");
    assert_eq!(
        actions,
        ["trigger", "resolve"],
        "exactly one page and one resolve"
    );
}
