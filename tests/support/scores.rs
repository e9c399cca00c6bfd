//! Score streams for alerting tests: evaluations published as evaluators publish them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use umpire_core::ids::{SpanId, TraceId};
use umpire_core::judge::{Outcome, Verdict};
use umpire_core::score::{JudgeScore, SpanEvaluation};

use umpire_testkit::nats::NatsServer;
use umpire_testkit::pager::PagerDutyReceiver;

use super::UmpireProcess;

/// A PagerDuty routing key of the documented shape, in the test Secret.
pub const ROUTING_KEY: &str = "e2e0routing0key0000000000000000a";

pub const SCORES: &str = "umpire.scores.team.bot.quality";

/// Healthy: both models pass ~90 %. Regressed: gpt-4o passes ~40 %.
pub const HEALTHY: u8 = 0;
pub const REGRESSED: u8 = 1;
pub const STOPPED: u8 = 2;

pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

pub fn evaluation(n: u64, model: &str, passed: bool) -> SpanEvaluation {
    let mut trace = [0u8; 16];
    trace[8..].copy_from_slice(&n.to_be_bytes());
    let now = now_nanos();
    SpanEvaluation {
        response_id: None,
        id: format!("quality/{n:032x}/{n:016x}"),
        policy: "quality".into(),
        trace_id: TraceId(trace),
        span_id: SpanId(n.to_be_bytes()),
        observed_at_unix_nano: now,
        scored_at_unix_nano: now,
        latency_ms: 800.0,
        time_to_first_token_ms: None,
        groups: BTreeMap::from([("gen_ai.request.model".to_owned(), model.to_owned())]),
        model: Some(model.to_owned()),
        embeddings: Default::default(),
        scores: vec![JudgeScore {
            judge: "grounded".into(),
            outcome: Outcome::Scored(Verdict {
                value: if passed { 1.0 } else { 0.0 },
                passed,
                label: None,
                explanation: None,
                measurement: None,
                measurements: Default::default(),
                usage: None,
            }),
            judge_latency_ms: 1.0,
        }],
    }
}

/// Publishes 40 evaluations a second per model until stopped: random passes (seeded) at
/// the phase's rates.
pub async fn publish_scores(js: jetstream::Context, phase: Arc<AtomicU8>, regressed_rate: u64) {
    let mut state = 0x5eed_u64;
    let mut random = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % 100
    };
    let mut ticks = tokio::time::interval(Duration::from_millis(25));
    let mut n = 0u64;
    loop {
        ticks.tick().await;
        let phase = phase.load(Ordering::SeqCst);
        if phase == STOPPED {
            return;
        }
        for model in ["gpt-4o", "gpt-4o-mini"] {
            n += 1;
            let rate = if phase == REGRESSED && model == "gpt-4o" {
                regressed_rate
            } else {
                90
            };
            let evaluation = evaluation(n, model, random() < rate);
            let payload = umpire_core::stream_codec::to_vec(&evaluation).unwrap();
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", evaluation.id.as_str());
            // Retried until stored (a cluster node may be down): a score is never skipped.
            loop {
                let sent = js
                    .publish_with_headers(SCORES, headers.clone(), payload.clone().into())
                    .await;
                if let Ok(ack) = sent
                    && ack.await.is_ok()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Stores `evaluations` as one scores message with `id`, as the evaluator stores the
/// evaluations of a batch of a trace's spans.
pub async fn publish_batch(js: &jetstream::Context, evaluations: &[SpanEvaluation], id: &str) {
    let encoded: Vec<Vec<u8>> = evaluations
        .iter()
        .map(|e| umpire_core::stream_codec::to_vec(e).unwrap())
        .collect();
    let payload = umpire_core::batch::batch_message(encoded.iter().map(Vec::as_slice));
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    js.publish_with_headers(SCORES, headers, payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

pub fn leaders(processes: &mut [UmpireProcess]) -> Vec<usize> {
    let mut found = Vec::new();
    for (i, p) in processes.iter_mut().enumerate() {
        let acquired = p.events("alert_leadership_acquired").len();
        let left =
            p.events("alert_leadership_lost").len() + p.events("alert_leadership_released").len();
        if acquired > left {
            found.push(i);
        }
    }
    found
}

/// Writes `evaluator.yaml` for policy `quality` with `alerts` (a YAML fragment) and a
/// PagerDuty route to `pager`; returns its path.
pub fn write_policy(
    dir: &Path,
    nats: &NatsServer,
    pager: &PagerDutyReceiver,
    alerts: &str,
) -> String {
    std::fs::create_dir_all(dir.join("secrets/pd")).unwrap();
    std::fs::write(dir.join("secrets/pd/routing-key"), ROUTING_KEY).unwrap();
    let config = dir.join("evaluator.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
namespace: team
policy: quality
nats: {{url: "{nats}"}}
adminListen: 127.0.0.1:0
secretDir: {secrets}
alertLeaseTtl: 3s
alertSnapshotInterval: 1s
spec:
  projectRef: {{name: bot}}
  judges: [{{name: grounded, latency: {{maxMs: 60000}}}}]
{alerts}
  routes:
    - {{name: oncall, pagerDuty: {{url: "{pd}", routingKeySecretRef: {{name: pd, key: routing-key}}}}}}
"#,
            nats = nats.url(),
            secrets = dir.join("secrets").display(),
            pd = pager.events_url(),
        ),
    )
    .unwrap();
    config.to_str().unwrap().to_owned()
}
