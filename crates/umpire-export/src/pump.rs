//! One signal to one target: pull a batch from the target's durable consumer, encode it as
//! one OTLP request, send it until the backend takes it (reporting progress to JetStream
//! meanwhile, so an outage neither loses nor redelivers the batch), then acknowledge.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use umpire_api::trace_project::EvaluationFormat;
use umpire_core::score::{SpanEvaluation, evaluations_of_message};
use umpire_core::span::{Span, spans_of_message};
use umpire_nats::consumers::ensure_consumer;
use umpire_nats::topology::{EXPORT_ACK_WAIT, ProjectNames, export_consumer};
use umpire_otlp::export::{evaluation_spans_request, logs_request, trace_request};
use umpire_runtime::retry::Backoff;

use crate::client::{OtlpClient, SendError};
use crate::metrics::{ExportMetrics, FailureLabels, TargetLabels};
use crate::report::Reporter;
use umpire_contract::export_status::DeliveryState;

/// Most messages in one export request.
const BATCH_MESSAGES: usize = 512;
/// Most stored bytes in one export request (spans are at most 1 MiB each).
const BATCH_BYTES: usize = 4 << 20;
/// How long a batch waits to fill before it is sent as it is.
const BATCH_WAIT: Duration = Duration::from_millis(500);
/// How long a stopping replica keeps exporting what is stored.
const DRAIN_TIME: Duration = Duration::from_secs(5);
/// The longest pause between attempts while a backend is down.
const RETRY: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Spans,
    Evaluations,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spans => "spans",
            Self::Evaluations => "evaluations",
        }
    }
}

pub(crate) struct Pump {
    pub js: jetstream::Context,
    pub names: ProjectNames,
    pub target: String,
    pub signal: Signal,
    pub client: Arc<OtlpClient>,
    pub evaluations_as: EvaluationFormat,
    pub metrics: ExportMetrics,
    pub reporter: Reporter,
}

impl Pump {
    fn labels(&self) -> TargetLabels {
        TargetLabels {
            target: self.target.clone(),
            signal: self.signal.as_str(),
        }
    }

    /// The target's durable consumer `export-<target>_<name>` on `stream`, filtered to
    /// `filter`, retried until it exists (failures reported) or shutdown.
    pub(crate) async fn set_up_consumer(
        &mut self,
        name: &str,
        stream: &str,
        filter: String,
        shutdown: &CancellationToken,
    ) -> Option<jetstream::consumer::PullConsumer> {
        let mut attempt = 0u32;
        loop {
            let made = async {
                let stream = self
                    .js
                    .get_stream(stream)
                    .await
                    .map_err(|e| format!("stream {stream}: {e}"))?;
                let config = export_consumer(&self.names, &self.target, name, filter.clone());
                ensure_consumer(&stream, config)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            match made {
                Ok(consumer) => return Some(consumer),
                Err(reason) => {
                    if attempt.is_multiple_of(10) {
                        tracing::warn!(event = "export_set_up_failed", target = %self.target, signal = name, error = %reason, "retrying");
                    }
                    self.reporter
                        .set(
                            DeliveryState::Failing,
                            Some(&format!("setting up the stream consumer: {reason}")),
                        )
                        .await;
                    if !Backoff::SET_UP.wait(attempt, shutdown).await {
                        return None;
                    }
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let (stream, filter) = match self.signal {
            Signal::Spans => (self.names.spans_stream(), self.names.spans_wildcard()),
            Signal::Evaluations => (self.names.scores_stream(), self.names.scores_wildcard()),
        };
        let Some(consumer) = self
            .set_up_consumer(self.signal.as_str(), &stream, filter, &shutdown)
            .await
        else {
            return;
        };
        tracing::info!(event = "export_started", target = %self.target, signal = self.signal.as_str(), "exporting");
        self.reporter.set(DeliveryState::Started, None).await;
        let mut lag_updated = Instant::now() - Duration::from_secs(60);
        while !shutdown.is_cancelled() {
            self.reporter.refresh().await;
            if lag_updated.elapsed() >= Duration::from_secs(5) {
                let mut info_consumer = consumer.clone();
                if let Ok(info) = info_consumer.info().await {
                    let lag = info.num_pending + info.num_ack_pending as u64;
                    self.metrics
                        .lag
                        .get_or_create(&self.labels())
                        .set(i64::try_from(lag).unwrap_or(i64::MAX));
                }
                lag_updated = Instant::now();
            }
            let Some(batch) = pull_retrying(&consumer, BATCH_WAIT, &self.target, &shutdown).await
            else {
                return;
            };
            if !batch.is_empty() {
                self.export(batch, &shutdown).await;
            }
        }
        self.drain(&consumer).await;
    }

    /// At shutdown, sends what is stored now — ingest stops its sampler first, so no more
    /// spans come from this replica — for at most [`DRAIN_TIME`], and only while the backend
    /// takes it; the rest waits in the stream for the next replica or start.
    async fn drain(&mut self, consumer: &jetstream::consumer::PullConsumer) {
        let deadline = CancellationToken::new();
        let timer = {
            let deadline = deadline.clone();
            tokio::spawn(async move {
                tokio::time::sleep(DRAIN_TIME).await;
                deadline.cancel();
            })
        };
        while !deadline.is_cancelled() {
            match pull(consumer, Duration::from_millis(200)).await {
                Ok(batch) if !batch.is_empty() => {
                    if !self.export(batch, &deadline).await {
                        break;
                    }
                }
                _ => break,
            }
        }
        timer.abort();
    }

    /// Sends one batch until it lands (or the backend rejects it as invalid), then acks;
    /// false when `shutdown` came first (the batch is handed back).
    async fn export(
        &mut self,
        batch: Vec<jetstream::Message>,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut progress = Progress {
            batch: &batch,
            last: Instant::now(),
        };
        for part in self.encode(&batch) {
            if !self.send_until_taken(&part, &mut progress, shutdown).await {
                // Shutting down: another replica (or the next start) sends the batch.
                for message in &batch {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                }
                return false;
            }
        }
        acknowledge(&batch).await;
        true
    }

    /// Sends one request until the backend takes it or rejects it as invalid (true), or
    /// shutdown comes first (false).
    pub(crate) async fn send_until_taken(
        &mut self,
        part: &Request,
        progress: &mut Progress<'_>,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut attempt = 0u32;
        loop {
            let sent = match part {
                Request::Traces(r, _) => self.client.send_traces(r.clone()).await,
                Request::Logs(r, _) => self.client.send_logs(r.clone()).await,
            };
            let items = part.items();
            let error = match sent {
                Ok(()) => {
                    self.metrics
                        .sent
                        .get_or_create(&self.labels())
                        .inc_by(items as u64);
                    if attempt > 0 {
                        tracing::info!(event = "export_recovered", target = %self.target, signal = self.signal.as_str(), attempts = attempt + 1, "the export target took the batch");
                    }
                    self.reporter.set(DeliveryState::Delivering, None).await;
                    return true;
                }
                Err(error) => error,
            };
            self.metrics
                .failures
                .get_or_create(&FailureLabels {
                    target: self.target.clone(),
                    signal: self.signal.as_str(),
                    kind: error.kind(),
                })
                .inc();
            match error {
                SendError::Rejected(reason) => {
                    tracing::error!(event = "export_rejected", target = %self.target, signal = self.signal.as_str(), items, reason = %reason, "the export target refused the batch as invalid; dropped");
                    self.metrics
                        .rejected
                        .get_or_create(&self.labels())
                        .inc_by(items as u64);
                    self.reporter
                        .set(
                            DeliveryState::Rejecting,
                            Some(&format!(
                                "{items} items refused as invalid and dropped: {reason}"
                            )),
                        )
                        .await;
                    return true;
                }
                SendError::Retryable { reason, after } => {
                    if attempt.is_multiple_of(10) {
                        tracing::warn!(event = "export_failed", target = %self.target, signal = self.signal.as_str(), attempt, error = %reason, "export failed; retrying");
                    }
                    self.reporter
                        .set(DeliveryState::Failing, Some(&reason))
                        .await;
                    let wait = after.unwrap_or_else(|| RETRY.delay(attempt));
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    attempt = attempt.saturating_add(1);
                    progress.report().await;
                }
            }
        }
    }

    /// The batch as the requests this signal and target need: spans as one traces request;
    /// evaluations as a logs request, a traces request of evaluation spans, or both.
    fn encode(&self, batch: &[jetstream::Message]) -> Vec<Request> {
        match self.signal {
            Signal::Spans => {
                let spans: Vec<Span> = batch.iter().flat_map(|m| self.decode_spans(m)).collect();
                self.encode_spans(&spans)
            }
            Signal::Evaluations => {
                let evaluations: Vec<SpanEvaluation> = batch
                    .iter()
                    .flat_map(|m| self.decode_evaluations(m))
                    .collect();
                self.encode_evaluations(&evaluations)
            }
        }
    }

    pub(crate) fn encode_spans(&self, spans: &[Span]) -> Vec<Request> {
        if spans.is_empty() {
            return Vec::new();
        }
        vec![Request::Traces(trace_request(spans), spans.len())]
    }

    pub(crate) fn encode_evaluations(&self, evaluations: &[SpanEvaluation]) -> Vec<Request> {
        evaluation_requests(evaluations, self.evaluations_as, &self.names)
    }

    /// The span or batch of spans of a span-stream message; none, with an error, when it does
    /// not decode (a newer format is skipped rather than blocking the target).
    fn decode_spans(&self, message: &jetstream::Message) -> Vec<Span> {
        spans_of_message(&message.payload).unwrap_or_else(|e| {
            self.undecodable(message, &e);
            Vec::new()
        })
    }

    /// The evaluation or batch of evaluations of a scores message, as [`Self::decode_spans`].
    fn decode_evaluations(&self, message: &jetstream::Message) -> Vec<SpanEvaluation> {
        evaluations_of_message(&message.payload).unwrap_or_else(|e| {
            self.undecodable(message, &e);
            Vec::new()
        })
    }

    fn undecodable(&self, message: &jetstream::Message, error: &umpire_core::stream_codec::Error) {
        tracing::error!(event = "export_undecodable", target = %self.target, signal = self.signal.as_str(), subject = %message.subject, error = %error, "skipping a stored message that does not decode");
    }
}

/// Evaluations as a logs request, a traces request of evaluation spans, or both, with the
/// resource Umpire's evaluations carry (`service.name=umpire`, namespace, project).
pub(crate) fn evaluation_requests(
    evaluations: &[SpanEvaluation],
    format: EvaluationFormat,
    names: &ProjectNames,
) -> Vec<Request> {
    let resource = [
        ("service.name", "umpire"),
        ("umpire.namespace", names.namespace()),
        ("umpire.project", names.project()),
    ];
    let mut parts = Vec::new();
    if format != EvaluationFormat::SpanEvents {
        let request = logs_request(&resource, evaluations);
        let records: usize = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        if records > 0 {
            parts.push(Request::Logs(request, records));
        }
    }
    if format != EvaluationFormat::LogRecords {
        let request = evaluation_spans_request(&resource, evaluations);
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        if spans > 0 {
            parts.push(Request::Traces(request, spans));
        }
    }
    parts
}

pub(crate) enum Request {
    Traces(umpire_otlp::ExportTraceServiceRequest, usize),
    Logs(umpire_otlp::ExportLogsServiceRequest, usize),
}

impl Request {
    fn items(&self) -> usize {
        match self {
            Self::Traces(_, n) | Self::Logs(_, n) => *n,
        }
    }
}

/// Tells JetStream, every third of the ack wait, that a batch held back by a down backend
/// is still being worked on.
pub(crate) struct Progress<'a> {
    pub batch: &'a [jetstream::Message],
    pub last: Instant,
}

impl Progress<'_> {
    pub async fn report(&mut self) {
        if self.last.elapsed() >= EXPORT_ACK_WAIT / 3 {
            for message in self.batch {
                let _ = message.ack_with(AckKind::Progress).await;
            }
            self.last = Instant::now();
        }
    }
}

/// The next batch, a failed pull retried with backoff (logged the first and every tenth
/// time); `None` once shutdown comes first.
pub(crate) async fn pull_retrying(
    consumer: &jetstream::consumer::PullConsumer,
    wait: Duration,
    target: &str,
    shutdown: &CancellationToken,
) -> Option<Vec<jetstream::Message>> {
    let mut failures = 0u32;
    loop {
        match pull(consumer, wait).await {
            Ok(batch) => return Some(batch),
            Err(e) => {
                failures += 1;
                if failures % 10 == 1 {
                    tracing::warn!(event = "export_pull_failed", target = %target, error = %e, "cannot pull; retrying");
                }
                if !Backoff::SET_UP.wait(failures - 1, shutdown).await {
                    return None;
                }
            }
        }
    }
}

/// One batch: what the consumer has, up to the batch limits, waiting at most `wait` for it.
pub(crate) async fn pull(
    consumer: &jetstream::consumer::PullConsumer,
    wait: Duration,
) -> Result<Vec<jetstream::Message>, async_nats::jetstream::consumer::pull::BatchError> {
    let mut messages = consumer
        .batch()
        .max_messages(BATCH_MESSAGES)
        .max_bytes(BATCH_BYTES)
        .expires(wait)
        .messages()
        .await?;
    let mut batch = Vec::new();
    while let Some(message) = messages.next().await {
        match message {
            Ok(message) => batch.push(message),
            Err(e) => {
                tracing::debug!(event = "export_pull_interrupted", error = %e, "pull interrupted");
                break;
            }
        }
    }
    Ok(batch)
}

pub(crate) async fn acknowledge(batch: &[jetstream::Message]) {
    for message in batch {
        if let Err(e) = message.ack().await {
            tracing::debug!(event = "export_ack_failed", error = %e, "acknowledging an exported message failed; it will be sent again");
        }
    }
}
