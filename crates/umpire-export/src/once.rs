//! One-off export outside JetStream: `umpire eval --export` sends a CI run's judged traces
//! and their evaluations to the same targets production exports to, so they land next to
//! production's. Each request is retried like the pumps retry, for a bounded time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use umpire_api::trace_project::{EvaluationFormat, ExportTarget, OtlpExport};
use umpire_core::ids::TraceId;
use umpire_core::score::SpanEvaluation;
use umpire_core::span::Span;
use umpire_nats::topology::ProjectNames;
use umpire_otlp::export::trace_request;
use umpire_runtime::retry::Backoff;
use umpire_runtime::secrets::MountedSecrets;

use crate::client::{OtlpClient, SendError};
use crate::outcome::outcome_selects;
use crate::pump::{Request, evaluation_requests};

/// How long one request is retried before the export gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
const RETRY: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));

/// What one target took.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub traces: usize,
    pub spans: usize,
    pub evaluations: usize,
}

/// An OTLP/HTTP target for a URL given on the command line: spans and evaluations, the
/// evaluations as span events (what trace-only backends such as Phoenix and Jaeger show).
pub fn ad_hoc_target(name: &str, endpoint: &str) -> ExportTarget {
    ExportTarget {
        name: name.to_owned(),
        otlp: OtlpExport {
            endpoint: endpoint.to_owned(),
            protocol: None,
            compression: None,
            headers: None,
            spans: None,
            evaluations: None,
            evaluations_as: Some(EvaluationFormat::SpanEvents),
        },
        outcome: None,
    }
}

/// Sends `spans` and `evaluations` to `target` as its spec says (signals, evaluation form,
/// headers from `secrets`; an outcome target takes only the traces it would select).
pub async fn send_once(
    target: &ExportTarget,
    secrets: MountedSecrets,
    names: &ProjectNames,
    spans: &[Span],
    evaluations: &[SpanEvaluation],
) -> Result<Delivered, String> {
    let client = OtlpClient::new(target, secrets, None).map_err(|e| e.to_string())?;
    let mut by_trace: HashMap<TraceId, Vec<&SpanEvaluation>> = HashMap::new();
    for evaluation in evaluations {
        by_trace
            .entry(evaluation.trace_id)
            .or_default()
            .push(evaluation);
    }
    let taken = |trace: &TraceId| match &target.outcome {
        Some(outcome) => outcome_selects(
            outcome,
            trace,
            by_trace.get(trace).map_or(&[][..], Vec::as_slice),
        ),
        None => true,
    };
    let spans: Vec<Span> = spans
        .iter()
        .filter(|s| taken(&s.trace_id))
        .cloned()
        .collect();
    let evaluations: Vec<SpanEvaluation> = evaluations
        .iter()
        .filter(|e| taken(&e.trace_id))
        .cloned()
        .collect();
    let mut delivered = Delivered {
        traces: spans
            .iter()
            .map(|s| s.trace_id)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        ..Delivered::default()
    };
    let mut requests = Vec::new();
    if target.otlp.spans.unwrap_or(true) {
        for chunk in spans.chunks(1_000) {
            requests.push(Request::Traces(trace_request(chunk), chunk.len()));
        }
        delivered.spans = spans.len();
    }
    if target.otlp.evaluations.unwrap_or(true) {
        let format = target
            .otlp
            .evaluations_as
            .unwrap_or(EvaluationFormat::LogRecords);
        for chunk in evaluations.chunks(500) {
            requests.extend(evaluation_requests(chunk, format, names));
        }
        delivered.evaluations = evaluations.len();
    }
    for request in requests {
        send_with_retries(&client, request)
            .await
            .map_err(|e| format!("export target {}: {e}", target.name))?;
    }
    Ok(delivered)
}

async fn send_with_retries(client: &OtlpClient, request: Request) -> Result<(), String> {
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        let sent = match &request {
            Request::Traces(r, _) => client.send_traces(r.clone()).await,
            Request::Logs(r, _) => client.send_logs(r.clone()).await,
        };
        match sent {
            Ok(()) => return Ok(()),
            Err(SendError::Rejected(reason)) => {
                return Err(format!("refused as invalid: {reason}"));
            }
            Err(SendError::Retryable { reason, after }) => {
                if started.elapsed() >= GIVE_UP_AFTER {
                    return Err(format!("still failing after {GIVE_UP_AFTER:?}: {reason}"));
                }
                tokio::time::sleep(after.unwrap_or_else(|| RETRY.delay(attempt))).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}
