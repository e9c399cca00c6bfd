//! Deciding traces: when each is due (after its root span, or at the trace timeout), early
//! when the buffer is full, and what a decision publishes; and keeping the intake messages
//! of waiting traces alive meanwhile.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use umpire_core::ids::TraceId;
use umpire_core::sampling::Decision;

use super::buffer::PendingTrace;
use super::publish::{DecidedTrace, PublishJob};
use super::{DECISION_BATCH, SamplingLoop};
use crate::metrics::{PolicyLabels, ReasonLabels};

impl SamplingLoop {
    /// Decides the oldest traces early while the buffer is over its limit (the documented
    /// shedding policy: the wait is shortened, no data is dropped unjudged).
    pub(super) fn shed_if_full(&mut self, now: Instant) {
        let (spans, bytes) = (
            self.sampler.settings.max_buffered_spans,
            self.sampler.settings.max_buffered_bytes,
        );
        while self.buffer.span_count() + self.publishing_spans > spans
            || self.buffer.bytes() + self.publishing_bytes > bytes
        {
            let Some((trace_id, trace)) = self.buffer.take_oldest() else {
                break;
            };
            self.settle(trace_id, trace, now, Some("buffer_full"));
        }
    }

    /// Whether to take in intake deliveries. Kept spans waiting for the span stream count
    /// against the buffer's limits, but shedding cannot free them (they are decided
    /// already): when publishing falls behind the intake — NATS slow or the span stream
    /// unavailable — taking more in would decide every new trace early and queue its spans
    /// in memory without bound (measured: 630 MB waiting against a 134 MB budget). Past half
    /// of either limit the sampler pauses until publishes complete; the other half stays for
    /// traces still waiting for their decision. With nothing publishing it always takes
    /// deliveries in, however small the limits.
    pub(super) fn accepts_deliveries(&self) -> bool {
        let settings = &self.sampler.settings;
        self.publishing_spans == 0
            || (self.publishing_spans < settings.max_buffered_spans / 2
                && self.publishing_bytes < settings.max_buffered_bytes / 2)
    }

    /// Decides due traces, a bounded batch at a time so one burst of decisions never holds
    /// a runtime thread long enough to delay the receivers; returns whether more are due.
    pub(super) fn decide_due(&mut self, now: Instant) -> bool {
        let settings = &self.sampler.settings;
        let due = self.buffer.take_due(
            now,
            settings.decision_wait,
            settings.trace_timeout,
            DECISION_BATCH,
        );
        let more = due.len() == DECISION_BATCH;
        for (trace_id, trace) in due {
            self.settle(trace_id, trace, now, None);
        }
        more
    }

    pub(super) fn settle(
        &mut self,
        trace_id: TraceId,
        trace: PendingTrace,
        now: Instant,
        early: Option<&str>,
    ) {
        if let Some(reason) = early {
            self.metrics()
                .early_decisions
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc();
        }
        let incomplete = trace
            .root_seen
            .is_none()
            .then(|| early.unwrap_or("root_missing").to_owned());
        if let Some(reason) = &incomplete {
            self.metrics()
                .traces_incomplete
                .get_or_create(&ReasonLabels {
                    reason: reason.clone(),
                })
                .inc();
        }
        let decision = self.sampler.tail.decide(&trace_id, &trace.spans, now);
        self.decided.put(trace_id, decision.is_keep());
        match decision {
            Decision::Keep(policy) => {
                let policy = policy.unwrap_or_else(|| "all".into());
                self.metrics()
                    .traces_kept
                    .get_or_create(&PolicyLabels { policy })
                    .inc();
                self.start_publish(PublishJob {
                    partition: trace.partition,
                    messages: trace.messages,
                    spans: trace.spans,
                    attempt: 0,
                    trace: Some(DecidedTrace {
                        trace_id,
                        incomplete,
                    }),
                    fence: None,
                });
            }
            Decision::Drop => {
                self.metrics().traces_dropped.inc();
                self.metrics()
                    .spans_dropped
                    .inc_by(trace.spans.len() as u64);
                for key in trace.messages {
                    self.release(key);
                }
            }
        }
    }

    /// How often held intake messages are reported in progress: a third of the ack wait,
    /// so a trace waiting minutes for its root is not redelivered meanwhile (a short ack
    /// wait keeps failover after a crash quick).
    pub(super) fn progress_every(&self) -> Duration {
        (self.sampler.settings.ack_wait / 3).max(Duration::from_millis(100))
    }

    /// Tells JetStream the intake messages held longer than a third of the ack wait are
    /// still being worked on.
    pub(super) fn keep_held_messages(&mut self, now: Instant) {
        let older_than = self.progress_every();
        let replies = self.ledger.held_longer_than(now, older_than);
        if replies.is_empty() {
            return;
        }
        let js = self.sampler.js.clone();
        self.acks.spawn(async move {
            for reply in replies {
                let acker = jetstream::message::Acker::new(js.clone(), Some(reply));
                if let Err(e) = acker.ack_with(jetstream::AckKind::Progress).await {
                    tracing::debug!(event = "intake_progress_failed", error = %e, "telling JetStream an intake message is in progress failed");
                }
            }
        });
    }
}
