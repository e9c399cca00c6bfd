//! `TraceProject.spec.export`: each target gets the project's kept spans (as stored, after
//! redaction) and every judge's verdict as a `gen_ai.evaluation.result` event, over OTLP.
//! Delivery is at least once: each (target, signal) pair has its own durable JetStream
//! consumer, shared by the ingest replicas, so a backend outage holds back only that target
//! and loses nothing the streams still retain.

pub mod client;
pub mod metrics;
mod once;
mod outcome;
mod pump;
mod report;

use std::sync::Arc;

use async_nats::jetstream;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use umpire_api::trace_project::{EvaluationFormat, ExportTarget};
use umpire_contract::export_status::{DeliveryState, ExportStatusStore};
use umpire_nats::topology::ProjectNames;
use umpire_runtime::egress::EgressPolicy;
use umpire_runtime::secrets::MountedSecrets;

pub use client::{OtlpClient, SendError, SetupError};
pub use metrics::ExportMetrics;
pub use once::{Delivered, ad_hoc_target, send_once};
pub use pump::Signal;

/// Where pumps report their delivery state (the project's export status bucket), and as
/// which ingest replica.
#[derive(Clone)]
pub struct Reporting {
    pub store: Option<Arc<ExportStatusStore>>,
    pub member: String,
}

/// Starts one pump per target and signal it forwards. A target that cannot be set up (an
/// invalid endpoint, a refused address, a missing Secret) is returned with its error and
/// reported as invalid, not started; the others are: one bad target must not hold back the
/// rest, nor ingest.
#[allow(clippy::too_many_arguments)]
pub fn start(
    js: &jetstream::Context,
    names: &ProjectNames,
    targets: &[ExportTarget],
    secrets: &MountedSecrets,
    egress: Option<&EgressPolicy>,
    metrics: &ExportMetrics,
    reporting: &Reporting,
    shutdown: &CancellationToken,
) -> (JoinSet<()>, Vec<SetupError>) {
    let mut pumps = Vec::new();
    let mut errors = Vec::new();
    let mut tasks = JoinSet::new();
    for target in targets {
        let client = match OtlpClient::new(target, secrets.clone(), egress) {
            Ok(client) => Arc::new(client),
            Err(e) => {
                let mut reporter = report::Reporter::new(
                    reporting.store.clone(),
                    &target.name,
                    "setup",
                    &reporting.member,
                );
                let error = e.to_string();
                let shutdown = shutdown.clone();
                // Reported until shutdown: the report expires unless refreshed.
                tasks.spawn(async move {
                    loop {
                        reporter.set(DeliveryState::Invalid, Some(&error)).await;
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(umpire_nats::topology::EXPORT_REPORT_REFRESH) => {}
                        }
                    }
                });
                errors.push(e);
                continue;
            }
        };
        let pump_for = |signal: Signal| pump::Pump {
            js: js.clone(),
            names: names.clone(),
            target: target.name.clone(),
            signal,
            client: client.clone(),
            evaluations_as: target
                .otlp
                .evaluations_as
                .unwrap_or(EvaluationFormat::LogRecords),
            metrics: metrics.clone(),
            reporter: report::Reporter::new(
                reporting.store.clone(),
                &target.name,
                signal.as_str(),
                &reporting.member,
            ),
        };
        let spans = target
            .otlp
            .spans
            .unwrap_or(true)
            .then(|| pump_for(Signal::Spans));
        let evaluations = target
            .otlp
            .evaluations
            .unwrap_or(true)
            .then(|| pump_for(Signal::Evaluations));
        match &target.outcome {
            // Whole traces by their evaluations: one pump decides and sends both signals.
            Some(_) if spans.is_none() && evaluations.is_none() => {}
            Some(outcome) => {
                tasks.spawn(
                    outcome::OutcomePump {
                        js: js.clone(),
                        names: names.clone(),
                        target: target.name.clone(),
                        settings: outcome::OutcomeSettings::from_spec(outcome),
                        spans,
                        evaluations,
                    }
                    .run(shutdown.clone()),
                );
            }
            None => pumps.extend(spans.into_iter().chain(evaluations)),
        }
    }
    for pump in pumps {
        tasks.spawn(pump.run(shutdown.clone()));
    }
    (tasks, errors)
}
