#![allow(clippy::unwrap_used)]
//! `umpire local` as a user runs it: the demo from nothing, and the shipped examples from
//! `manifests/examples`, each as a process with its private nats-server.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::UmpireProcess;
use support::controller::repo;

const ANY_PORT: [&str; 6] = [
    "--grpc-listen",
    "127.0.0.1:0",
    "--http-listen",
    "127.0.0.1:0",
    "--admin-listen",
    "127.0.0.1:0",
];

fn local(args: &[&str]) -> UmpireProcess {
    let mut all = vec!["local", "--format", "json"];
    all.extend_from_slice(args);
    all.extend_from_slice(&ANY_PORT);
    UmpireProcess::spawn(&all, repo())
}

fn notification(process: &mut UmpireProcess, action: &str, timeout: Duration) -> Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(found) = process
            .events("notification")
            .into_iter()
            .find(|n| n["action"] == action)
        {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {action} notification within {timeout:?}; log:\n{}",
            process.log.join("\n")
        );
        process.wait_for_event("stats", Duration::from_secs(30));
        // `stats` events come every few seconds: each is a chance to look again.
        let _ = process.events("stats");
    }
}

#[test]
fn the_demo_pages_and_resolves_and_prints_its_manifests() {
    // With --export-otlp the judged traces also land in a trace backend (the test kit's).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let backend = runtime
        .block_on(umpire_testkit::otlp::OtlpReceiver::start())
        .unwrap();
    let mut demo = local(&["--demo", "--export-otlp", &backend.http_url()]);
    let started = demo.wait_for_event("started", Duration::from_secs(60));
    assert_eq!(started["projects"][0]["name"], "shop-assistant");
    let adapted = demo.events("adapted");
    assert!(
        adapted.iter().any(|a| a["field"] == "spec.routes[0]"
            && a["message"].as_str().unwrap().contains("printed")),
        "{adapted:?}"
    );

    let trigger = notification(&mut demo, "trigger", Duration::from_secs(120));
    assert_eq!(trigger["rule"], "grounded-drop");
    assert_eq!(trigger["outcome"], "printed");
    let body = &trigger["body"];
    assert_eq!(body["event_action"], "trigger");
    assert_eq!(body["payload"]["severity"], "critical");
    assert_eq!(
        body["routing_key"],
        "<from Secret pagerduty, key routing-key>"
    );
    let incident = demo
        .events("demo")
        .into_iter()
        .find(|d| d["message"].as_str().unwrap().starts_with("INCIDENT"))
        .expect("the incident was announced before the page");
    assert!(trigger["atSeconds"].as_f64() > incident["atSeconds"].as_f64());

    let resolve = notification(&mut demo, "resolve", Duration::from_secs(120));
    assert_eq!(resolve["body"]["event_action"], "resolve");
    assert_eq!(resolve["body"]["dedup_key"], body["dedup_key"]);

    let summary = demo.wait_for_event("summary", Duration::from_secs(60));
    assert_eq!(demo.wait_exit(), Some(0));
    assert_eq!(summary["demoCompleted"], true);
    assert!(summary["projects"][0]["spansReceived"].as_u64().unwrap() > 100);
    let judges = summary["policies"][0]["judges"].as_array().unwrap();
    let grounded = judges.iter().find(|j| j["name"] == "grounded").unwrap();
    assert!(grounded["failed"].as_u64().unwrap() > 0, "{grounded}");
    assert!(grounded["passed"].as_u64().unwrap() > grounded["failed"].as_u64().unwrap());
    // The stale index's documents miss the question: retrieval fails during the incident
    // only. The demo's answers carry no personal data and no injection.
    let judge = |name: &str| judges.iter().find(|j| j["name"] == name).unwrap();
    let retrieval = judge("retrieval");
    assert!(retrieval["failed"].as_u64().unwrap() > 0, "{retrieval}");
    assert!(
        retrieval["passed"].as_u64().unwrap() > retrieval["failed"].as_u64().unwrap(),
        "{retrieval}"
    );
    for clean in ["no-pii", "no-injection"] {
        let judge = judge(clean);
        assert!(judge["passed"].as_u64().unwrap() > 0, "{judge}");
        assert_eq!(judge["failed"].as_u64(), Some(0), "{judge}");
    }
    let manifests = summary["demoManifests"].as_str().unwrap();
    assert!(manifests.contains("kind: TraceProject") && manifests.contains("apiKeySecretRef"));
    assert!(
        !manifests.contains("127.0.0.1"),
        "the published manifests name no local stand-in"
    );

    let exported = backend.spans();
    let evaluations: Vec<_> = exported
        .iter()
        .filter(|s| s.name == "gen_ai.evaluation")
        .collect();
    assert!(
        exported.len() > evaluations.len() + 100,
        "{} spans exported",
        exported.len()
    );
    assert!(!evaluations.is_empty());
    let judged: std::collections::BTreeSet<_> =
        exported.iter().map(|s| s.span_id.clone()).collect();
    assert!(
        evaluations
            .iter()
            .all(|e| judged.contains(&e.parent_span_id)
                && e.events
                    .iter()
                    .all(|v| v.name == "gen_ai.evaluation.result")),
        "every evaluation span is the child of an exported span"
    );
}

#[test]
fn the_shipped_examples_run_locally_and_say_what_was_adapted() {
    let mut local = local(&["manifests/examples"]);
    let started = local.wait_for_event("started", Duration::from_secs(60));
    let adapted: Vec<(String, String)> = local
        .events("adapted")
        .into_iter()
        .map(|a| {
            (
                a["field"].as_str().unwrap().to_owned(),
                a["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let said =
        |field: &str, words: &str| adapted.iter().any(|(f, m)| f == field && m.contains(words));
    assert!(said("spec.stream.replicas", "3 → 1"), "{adapted:?}");
    assert!(said("spec.ingest.auth", "otlp-token"), "{adapted:?}");
    assert!(said("spec.routes[0]", "printed"), "{adapted:?}");
    assert!(
        said("spec.evaluator.replicas", "one evaluator"),
        "{adapted:?}"
    );

    // Real OTLP to the printed port.
    let http = started["projects"][0]["http"].as_str().unwrap().to_owned();
    let body = std::fs::read(repo().join("tests/fixtures/otlp/openinference-00.pb")).unwrap();
    let status = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::Client::new()
            .post(format!("http://{http}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(status.is_success(), "{status}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats = local.wait_for_event("stats", Duration::from_secs(30));
        let _ = stats;
        let received = local
            .events("stats")
            .last()
            .map(|s| s["projects"][0]["spansReceived"].as_u64().unwrap())
            .unwrap_or(0);
        if received > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no spans counted");
        local.log.retain(|l| !l.contains("\"stats\""));
    }
    assert_eq!(local.terminate(), Some(0));
    assert!(!local.events("summary").is_empty());
}

#[test]
fn without_nats_server_local_says_how_to_install_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_umpire"))
        .args(["local", "manifests/examples", "--format", "plain"])
        .current_dir(repo())
        .env("PATH", "/nonexistent")
        .env_remove("UMPIRE_NATS_SERVER")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("nats-server is not on PATH") && last.contains("--nats-url"),
        "{stderr}"
    );
}
