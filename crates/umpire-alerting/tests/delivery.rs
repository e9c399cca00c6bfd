#![allow(clippy::unwrap_used)]
//! Notifications delivered from the outbox to a PagerDuty-compatible receiver and a
//! webhook, over a real nats-server and real HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use umpire_alerting::delivery::report::{DeliveryObserver, PrintedRoutes};
use umpire_alerting::delivery::{Attempt, DeadLetters, DeliverySettings, Notifier, run_deliveries};
use umpire_alerting::metrics::{AlertMetrics, AttemptLabels, DeliveryLabels};
use umpire_alerting::outbox::publish;
use umpire_api::common::SecretKeyRef;
use umpire_api::compile::{DEFAULT_MAX_DELIVERY_AGE, PlannedRoute, RouteTarget, WebhookUrl};
use umpire_core::alert::notification::{Action, Notification, dedup_key};
use umpire_core::alert::rule::Severity;
use umpire_nats::streams::ensure_stream;
use umpire_nats::topology::ProjectNames;
use umpire_nats::topology::{dead_letter_stream, notifier_consumer, outbox_stream};
use umpire_testkit::nats::NatsServer;
use umpire_testkit::pager::PagerDutyReceiver;
use umpire_testkit::wait::eventually;

const ROUTING_KEY: &str = "R0UTINGKEY0123456789abcdef012345";

fn notification(action: Action, episode: u64, route: &str) -> Notification {
    let group = "gen_ai.request.model=gpt-4o";
    Notification {
        dedup_key: dedup_key("ml", "quality", "grounded-drop", group),
        action,
        episode,
        repeat: 0,
        namespace: "ml".into(),
        project: "support-bot".into(),
        policy: "quality".into(),
        rule: "grounded-drop".into(),
        group: group.into(),
        group_values: BTreeMap::from([("gen_ai.request.model".to_owned(), "gpt-4o".to_owned())]),
        severity: Severity::Critical,
        route: route.into(),
        class: "grounded".into(),
        metric: "grounded pass rate".into(),
        value: Some(0.41),
        threshold: Some(0.8),
        baseline: None,
        samples: 212,
        window: "5m".into(),
        description: "grounded pass rate 0.410 < 0.8 over 5m".into(),
        summary: "[critical] quality/grounded-drop (gen_ai.request.model=gpt-4o) firing: grounded pass rate 0.410 < 0.8 over 5m (n=212)".into(),
        since_unix_nano: 1_795_000_000_000_000_000,
        at_unix_nano: 1_795_000_000_000_000_000,
        due_unix_nano: 1_795_000_000_000_000_000,
        example_trace_ids: (0..7).map(|i| format!("{i:032x}")).collect(),
    }
}

struct Setup {
    _secrets: tempfile::TempDir,
    notifier: Notifier,
    receiver: PagerDutyReceiver,
    metrics: Arc<AlertMetrics>,
}

async fn setup() -> Setup {
    let receiver = PagerDutyReceiver::start().await.unwrap();
    let secrets = tempfile::tempdir().unwrap();
    for (name, key, value) in [
        ("pd", "routing-key", ROUTING_KEY),
        ("hooks", "hmac", "s3cret"),
        ("hooks", "url", receiver.hook_url().as_str()),
    ] {
        std::fs::create_dir_all(secrets.path().join(name)).unwrap();
        std::fs::write(secrets.path().join(name).join(key), format!("{value}\n")).unwrap();
    }
    let secret = |name: &str, key: &str| SecretKeyRef {
        name: name.into(),
        key: key.into(),
    };
    let routes = vec![
        PlannedRoute {
            name: "oncall".into(),
            target: RouteTarget::PagerDuty {
                url: receiver.events_url(),
                routing_key: secret("pd", "routing-key"),
                component: None,
                class: None,
            },
            max_delivery_age: DEFAULT_MAX_DELIVERY_AGE,
        },
        PlannedRoute {
            name: "team-hook".into(),
            target: RouteTarget::Webhook {
                url: WebhookUrl::Secret(secret("hooks", "url")),
                hmac_key: Some(secret("hooks", "hmac")),
            },
            max_delivery_age: DEFAULT_MAX_DELIVERY_AGE,
        },
    ];
    let metrics = Arc::new(AlertMetrics::new(&mut Registry::default()));
    let settings = DeliverySettings {
        backoff: umpire_runtime::retry::Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(100),
        ),
        secret_dir: Some(secrets.path().to_owned()),
        ..DeliverySettings::default()
    };
    let notifier = Notifier::new(routes, settings, metrics.clone()).unwrap();
    Setup {
        _secrets: secrets,
        notifier,
        receiver,
        metrics,
    }
}

#[tokio::test]
async fn pagerduty_events_follow_the_documented_schema() {
    let setup = setup().await;
    assert_eq!(
        setup
            .notifier
            .attempt(&notification(Action::Trigger, 1, "oncall"))
            .await,
        Attempt::Delivered
    );
    assert_eq!(
        setup
            .notifier
            .attempt(&notification(Action::Resolve, 1, "oncall"))
            .await,
        Attempt::Delivered
    );
    assert!(
        setup.receiver.rejected().is_empty(),
        "{:?}",
        setup.receiver.rejected()
    );
    let events = setup.receiver.events();
    let trigger = &events[0].body;
    assert_eq!(
        trigger["routing_key"], ROUTING_KEY,
        "the secret is read and trimmed"
    );
    assert_eq!(trigger["event_action"], "trigger");
    assert!(
        trigger["dedup_key"]
            .as_str()
            .unwrap()
            .starts_with("umpire/ml/quality/grounded-drop/")
    );
    let payload = &trigger["payload"];
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["source"], "umpire/ml/support-bot");
    assert_eq!(
        (
            payload["component"].as_str(),
            payload["group"].as_str(),
            payload["class"].as_str()
        ),
        (Some("support-bot"), Some("quality"), Some("grounded"))
    );
    assert_eq!(payload["timestamp"], "2026-11-18T11:06:40Z");
    let details = &payload["custom_details"];
    assert_eq!(
        (
            details["value"].as_f64(),
            details["threshold"].as_f64(),
            details["samples"].as_u64()
        ),
        (Some(0.41), Some(0.8), Some(212))
    );
    assert_eq!(details["window"], "5m");
    assert_eq!(details["group"]["gen_ai.request.model"], "gpt-4o");
    assert_eq!(
        details["example_trace_ids"].as_array().unwrap().len(),
        5,
        "at most five examples"
    );
    let resolve = &events[1].body;
    assert_eq!(
        (
            resolve["event_action"].as_str(),
            resolve["dedup_key"].as_str()
        ),
        (Some("resolve"), trigger["dedup_key"].as_str())
    );
}

#[tokio::test]
async fn retries_429_and_5xx_but_not_400() {
    let setup = setup().await;
    setup.receiver.fail_next(&[429]);
    assert!(matches!(
        setup
            .notifier
            .attempt(&notification(Action::Trigger, 1, "oncall"))
            .await,
        Attempt::Retry { .. }
    ));
    setup.receiver.fail_next(&[503]);
    assert!(matches!(
        setup
            .notifier
            .attempt(&notification(Action::Trigger, 1, "oncall"))
            .await,
        Attempt::Retry { .. }
    ));
    // A summary over PagerDuty's limit can only come from a bug; the receiver's 400 is final.
    let mut broken = notification(Action::Trigger, 2, "oncall");
    broken.severity = Severity::Critical;
    broken.summary = String::new();
    let outcome = setup.notifier.attempt(&broken).await;
    assert!(
        matches!(&outcome, Attempt::Rejected(reason) if reason.contains("400")),
        "{outcome:?}"
    );
    assert_eq!(setup.receiver.answers(), [429, 503, 400]);
    assert!(setup.receiver.events().is_empty());
}

#[tokio::test]
async fn webhooks_are_signed_with_the_secret_key() {
    let setup = setup().await;
    assert_eq!(
        setup
            .notifier
            .attempt(&notification(Action::Trigger, 1, "team-hook"))
            .await,
        Attempt::Delivered
    );
    let hook = &setup.receiver.hooks()[0];
    assert_eq!(hook.body["status"], "firing");
    assert_eq!(hook.body["version"], "umpire.dev/alert/v1");
    assert_eq!(hook.body["group"]["gen_ai.request.model"], "gpt-4o");
    assert_eq!(
        hook.headers["x-umpire-notification-id"],
        notification(Action::Trigger, 1, "team-hook").id()
    );
    let expected = umpire_alerting::delivery::webhook::signature(b"s3cret", &hook.raw);
    assert_eq!(hook.headers["x-umpire-signature"], expected);
    assert!(
        !hook
            .raw
            .windows(ROUTING_KEY.len())
            .any(|w| w == ROUTING_KEY.as_bytes())
    );
}

#[tokio::test]
async fn the_outbox_delivers_in_order_through_failures_without_loss_or_duplicates() {
    let server = NatsServer::start().unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    let names = ProjectNames::new("ml", "support-bot");
    ensure_stream(&js, outbox_stream(&names, 1)).await.unwrap();
    let setup = setup().await;
    setup.receiver.fail_next(&[429, 500, 502, 429]);
    let subject = names.notifications_subject("quality", "oncall");
    let sequence = [
        notification(Action::Trigger, 1, "oncall"),
        notification(Action::Resolve, 1, "oncall"),
        notification(Action::Trigger, 2, "oncall"),
    ];
    for n in &sequence {
        assert!(publish(&js, &subject, n, None).await.unwrap(), "new");
    }
    // A leader that re-derives a transition after a crash publishes it again: dropped.
    assert!(
        !publish(&js, &subject, &sequence[0], None).await.unwrap(),
        "duplicate"
    );

    let stream = js.get_stream(names.notifications_stream()).await.unwrap();
    let consumer = stream
        .get_or_create_consumer(
            &names.notifier_consumer("quality", "oncall"),
            notifier_consumer(&names, "quality", "oncall"),
        )
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let metrics = setup.metrics.clone();
    let receiver = setup.receiver;
    let task = tokio::spawn(run_deliveries(
        consumer,
        Arc::new(setup.notifier),
        DeadLetters::new(js.clone(), &names, "quality"),
        shutdown.clone(),
    ));
    eventually("three accepted events", Duration::from_secs(20), || async {
        (receiver.events().len() >= 3).then_some(())
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
    let actions: Vec<(String, String)> = receiver
        .events()
        .iter()
        .map(|e| (e.action().to_owned(), e.dedup_key().to_owned()))
        .collect();
    let key = sequence[0].dedup_key.clone();
    assert_eq!(
        actions,
        [
            ("trigger".to_owned(), key.clone()),
            ("resolve".to_owned(), key.clone()),
            ("trigger".to_owned(), key)
        ]
    );
    assert_eq!(receiver.answers(), [429, 500, 502, 429, 202, 202, 202]);
    let delivered = metrics
        .deliveries
        .get_or_create(&DeliveryLabels {
            route: "oncall".into(),
            outcome: "delivered",
        })
        .get();
    assert_eq!(delivered, 3);
    let throttled = metrics
        .attempts
        .get_or_create(&AttemptLabels {
            route: "oncall".into(),
            result: "429".into(),
        })
        .get();
    assert_eq!(throttled, 2);
    let mut stream = stream;
    let info = stream.info().await.unwrap();
    assert_eq!(
        info.state.messages, 3,
        "the outbox holds what was sent (JetStream ages it out)"
    );
}

/// `umpire local --print-alerts`: a printed route sends nothing, shows the PagerDuty event it
/// would send with the routing key's Secret named instead of its value, and reports it.
#[tokio::test]
async fn printed_routes_send_nothing_and_never_show_a_secret() {
    let base = setup().await;
    let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = reports.clone();
    let receiver = base.receiver;
    let routes = vec![PlannedRoute {
        name: "oncall".into(),
        target: RouteTarget::PagerDuty {
            url: receiver.events_url(),
            routing_key: SecretKeyRef {
                name: "pd".into(),
                key: "routing-key".into(),
            },
            component: None,
            class: None,
        },
        max_delivery_age: DEFAULT_MAX_DELIVERY_AGE,
    }];
    let settings = DeliverySettings {
        secret_dir: Some(base._secrets.path().to_owned()),
        printed: PrintedRoutes::All,
        observer: Some(DeliveryObserver::new(move |report| {
            seen.lock().unwrap().push(report)
        })),
        ..DeliverySettings::default()
    };
    let notifier = Notifier::new(routes, settings, base.metrics.clone()).unwrap();
    let outcome = notifier
        .attempt(&notification(Action::Trigger, 1, "oncall"))
        .await;
    let Attempt::Printed(body) = outcome else {
        panic!("expected a printed notification, got {outcome:?}");
    };
    assert_eq!(body["event_action"], "trigger");
    assert_eq!(
        body["routing_key"], "<from Secret pd, key routing-key>",
        "{body}"
    );
    assert!(!body.to_string().contains(ROUTING_KEY));
    assert!(receiver.events().is_empty(), "nothing may be sent");
    // Reports come from the delivery loop, not from single attempts.
    assert!(reports.lock().unwrap().is_empty());
}

/// Step 9, seen from outside: all notifications of a policy shared one consumer with one
/// message in flight, retried without limit, so a dead team webhook held back the PagerDuty
/// pages of the same policy for ever. Each route now has its own ordered delivery, and a
/// notification its route cannot deliver within `maxDeliveryAge` is dead-lettered.
#[tokio::test]
async fn a_dead_webhook_holds_back_neither_pages_nor_itself_for_ever() {
    let server = NatsServer::start().unwrap();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let names = ProjectNames::new("ml", "support-bot");
    ensure_stream(&js, outbox_stream(&names, 1)).await.unwrap();
    ensure_stream(&js, dead_letter_stream(&names, 1))
        .await
        .unwrap();
    let base = setup().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let routes = vec![
        PlannedRoute {
            name: "oncall".into(),
            target: RouteTarget::PagerDuty {
                url: base.receiver.events_url(),
                routing_key: SecretKeyRef {
                    name: "pd".into(),
                    key: "routing-key".into(),
                },
                component: None,
                class: None,
            },
            max_delivery_age: DEFAULT_MAX_DELIVERY_AGE,
        },
        PlannedRoute {
            name: "dead-hook".into(),
            target: RouteTarget::Webhook {
                url: WebhookUrl::Plain(dead_url),
                hmac_key: None,
            },
            max_delivery_age: Duration::from_secs(3),
        },
    ];
    let settings = DeliverySettings {
        backoff: umpire_runtime::retry::Backoff::new(
            Duration::from_millis(50),
            Duration::from_millis(200),
        ),
        secret_dir: Some(base._secrets.path().to_owned()),
        ..DeliverySettings::default()
    };
    let notifier = Arc::new(Notifier::new(routes.clone(), settings, base.metrics.clone()).unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // The webhook's notification is queued first, then the page.
    let mut hook = notification(Action::Trigger, 1, "dead-hook");
    hook.due_unix_nano = now;
    let mut page = notification(Action::Trigger, 2, "oncall");
    page.due_unix_nano = now;
    for note in [&hook, &page] {
        let subject = names.notifications_subject("quality", &note.route);
        assert!(publish(&js, &subject, note, None).await.unwrap());
    }
    let consumers =
        umpire_alerting::delivery::consumers::notifier_consumers(&js, &names, "quality", &routes)
            .await
            .unwrap();
    assert_eq!(consumers.len(), 2, "one consumer per route");
    let shutdown = CancellationToken::new();
    let tasks: Vec<_> = consumers
        .into_iter()
        .map(|consumer| {
            tokio::spawn(run_deliveries(
                consumer,
                notifier.clone(),
                DeadLetters::new(js.clone(), &names, "quality"),
                shutdown.clone(),
            ))
        })
        .collect();
    let dead_lettered = || {
        base.metrics
            .dead_lettered
            .get_or_create(&umpire_alerting::metrics::RouteLabels {
                route: "dead-hook".into(),
            })
            .get()
    };
    eventually("the page delivered", Duration::from_secs(10), || async {
        (base.receiver.events().len() == 1).then_some(())
    })
    .await;
    assert_eq!(
        dead_lettered(),
        0,
        "the page went out while the webhook was still being retried"
    );
    eventually(
        "the webhook's notification dead-lettered",
        Duration::from_secs(20),
        || async { (dead_lettered() == 1).then_some(()) },
    )
    .await;
    let stored = umpire_testkit::nats::read_stream(&js, &names.dead_letter_stream())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].subject,
        names.notification_dead_letter_subject("quality")
    );
    let parked: Notification = serde_json::from_slice(&stored[0].payload).unwrap();
    assert_eq!((parked.route.as_str(), parked.episode), ("dead-hook", 1));
    shutdown.cancel();
    for task in tasks {
        task.await.unwrap();
    }
}
