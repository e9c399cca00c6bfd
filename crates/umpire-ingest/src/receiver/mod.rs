//! The OTLP receivers (gRPC and HTTP) and the export pipeline they share:
//! authenticate → decode → redact → split by trace partition → publish to intake.

pub mod admission;
pub mod grpc;
pub mod http;
pub mod listener;

use std::sync::Arc;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use umpire_core::redaction::Redactor;
use umpire_otlp::batching::split_by_partition;
use umpire_otlp::redact::redact_request;
use umpire_otlp::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use crate::intake::{IntakeError, IntakePublisher};
use crate::metrics::{IngestMetrics, Outcome, Protocol, ProtocolLabels, RequestLabels};

/// How long an overloaded client is asked to wait before retrying.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Requests processed at once; past it ingest answers "overloaded" at once instead of
/// queueing without bound.
pub const MAX_IN_FLIGHT_REQUESTS: usize = 1024;

/// Why an export was refused, as the OTLP spec classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportFailure {
    /// Not retryable: HTTP 400 / gRPC INVALID_ARGUMENT.
    InvalidPayload(String),
    /// Not retryable: HTTP 413 / gRPC RESOURCE_EXHAUSTED without retry info.
    TooLarge(String),
    /// Not retryable: HTTP 415 (OTLP/HTTP only).
    UnsupportedMediaType(String),
    /// HTTP 401 / gRPC UNAUTHENTICATED.
    Unauthenticated,
    /// Retryable: HTTP 503 / gRPC UNAVAILABLE.
    Unavailable(String),
    /// Retryable after `RETRY_AFTER`: HTTP 429 / gRPC RESOURCE_EXHAUSTED with RetryInfo.
    Overloaded(String),
    /// The body did not arrive in time: HTTP 408 / gRPC DEADLINE_EXCEEDED.
    TimedOut(String),
}

impl ExportFailure {
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::InvalidPayload(_) => Outcome::InvalidPayload,
            Self::TooLarge(_) => Outcome::TooLarge,
            Self::UnsupportedMediaType(_) => Outcome::UnsupportedMediaType,
            Self::Unauthenticated => Outcome::Unauthenticated,
            Self::Unavailable(_) => Outcome::Unavailable,
            Self::Overloaded(_) => Outcome::Overloaded,
            Self::TimedOut(_) => Outcome::TimedOut,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::InvalidPayload(m)
            | Self::TooLarge(m)
            | Self::UnsupportedMediaType(m)
            | Self::Unavailable(m)
            | Self::Overloaded(m)
            | Self::TimedOut(m) => m.clone(),
            Self::Unauthenticated => "missing or wrong bearer token".into(),
        }
    }
}

/// Shared by both receivers.
pub struct ExportPipeline {
    redactor: Redactor,
    partitions: u32,
    intake: IntakePublisher,
    token: Option<String>,
    max_request_bytes: usize,
    in_flight: Semaphore,
    metrics: Arc<IngestMetrics>,
}

impl ExportPipeline {
    pub fn new(
        redactor: Redactor,
        partitions: u32,
        intake: IntakePublisher,
        token: Option<String>,
        max_request_bytes: usize,
        metrics: Arc<IngestMetrics>,
    ) -> Self {
        Self {
            redactor,
            partitions,
            intake,
            token,
            max_request_bytes,
            in_flight: Semaphore::new(MAX_IN_FLIGHT_REQUESTS),
            metrics,
        }
    }

    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }

    /// Checks an `Authorization` header value in constant time.
    pub fn authorize(&self, authorization: Option<&str>) -> Result<(), ExportFailure> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let presented = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if presented.as_bytes().ct_eq(expected.as_bytes()).into() {
            Ok(())
        } else {
            Err(ExportFailure::Unauthenticated)
        }
    }

    /// Records a request refused before it reached [`Self::export`].
    pub fn record_refusal(&self, protocol: Protocol, failure: &ExportFailure, started: Instant) {
        self.record(protocol, failure.outcome(), started);
    }

    fn record(&self, protocol: Protocol, outcome: Outcome, started: Instant) {
        self.metrics
            .requests
            .get_or_create(&RequestLabels { protocol, outcome })
            .inc();
        self.metrics
            .request_duration
            .get_or_create(&ProtocolLabels { protocol })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Redacts, partitions and publishes a decoded export; the answer is sent only after
    /// JetStream acknowledged every span.
    pub async fn export(
        &self,
        protocol: Protocol,
        mut request: ExportTraceServiceRequest,
        started: Instant,
    ) -> Result<ExportTraceServiceResponse, ExportFailure> {
        let result = self.export_inner(&mut request).await;
        let outcome = match &result {
            Ok(response) if response.partial_success.is_some() => Outcome::PartiallyAccepted,
            Ok(_) => Outcome::Accepted,
            Err(failure) => failure.outcome(),
        };
        self.record(protocol, outcome, started);
        result
    }

    async fn export_inner(
        &self,
        request: &mut ExportTraceServiceRequest,
    ) -> Result<ExportTraceServiceResponse, ExportFailure> {
        let Ok(_permit) = self.in_flight.try_acquire() else {
            return Err(ExportFailure::Overloaded(format!(
                "more than {MAX_IN_FLIGHT_REQUESTS} requests in flight"
            )));
        };
        let counts = redact_request(request, &self.redactor);
        self.metrics.redacted_values.inc_by(counts.values_rewritten);
        self.metrics
            .redacted_attributes
            .inc_by(counts.attributes_dropped);
        let partitioned = split_by_partition(std::mem::take(request), self.partitions);
        let (accepted, rejected) = (partitioned.spans as u64, partitioned.rejected as u64);
        let first_rejection = partitioned.first_rejection.clone();
        if accepted > 0 {
            let publish_started = Instant::now();
            let truncated = self
                .intake
                .publish(partitioned)
                .await
                .map_err(|e| match e {
                    IntakeError::Unavailable(m) => ExportFailure::Unavailable(m),
                    IntakeError::Overloaded(m) => ExportFailure::Overloaded(m),
                })?;
            self.metrics
                .intake_publish_duration
                .observe(publish_started.elapsed().as_secs_f64());
            self.metrics.spans_truncated.inc_by(truncated as u64);
        }
        self.metrics.spans_received.inc_by(accepted);
        if rejected == 0 {
            return Ok(ExportTraceServiceResponse {
                partial_success: None,
            });
        }
        self.metrics.reject("invalid_id", rejected);
        Ok(ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: rejected as i64,
                error_message: first_rejection.unwrap_or_default(),
            }),
        })
    }
}
