//! After a decision: kept spans are published (a bounded number of jobs at once, retried
//! while the partition is still ours), and an intake message is acknowledged once every
//! span it carried is settled — published or dropped.

use std::sync::Arc;

use async_nats::jetstream::message::Acker;

use super::buffer::MessageKey;
use super::publish::{PublishFailure, PublishJob, PublishOutcome, publish_job};
use super::{MAX_CONCURRENT_PUBLISHES, SamplingLoop};

impl SamplingLoop {
    /// Queues a publication; at most `MAX_CONCURRENT_PUBLISHES` run at once, so their
    /// unacknowledged publishes stay within the context's budget.
    pub(super) fn start_publish(&mut self, mut job: PublishJob) {
        if job.fence.is_none() {
            job.fence = self.fences.get(&job.partition).cloned();
        }
        self.publishing_spans += job.spans.len();
        self.publishing_bytes += job.bytes();
        *self
            .publishing_per_partition
            .entry(job.partition)
            .or_default() += 1;
        self.queued.push_back(job);
        self.run_queued();
    }

    pub(super) fn run_queued(&mut self) {
        while self.publishing.len() < MAX_CONCURRENT_PUBLISHES {
            let Some(job) = self.queued.pop_front() else {
                break;
            };
            let js = self.sampler.js.clone();
            let names = self.sampler.names.clone();
            self.publishing.push(Box::pin(publish_job(js, names, job)));
        }
    }

    pub(super) fn on_published(&mut self, outcome: PublishOutcome) {
        let PublishOutcome {
            mut job,
            result,
            elapsed,
        } = outcome;
        self.publishing_spans -= job.spans.len();
        self.publishing_bytes -= job.bytes();
        if let Some(count) = self.publishing_per_partition.get_mut(&job.partition) {
            *count = count.saturating_sub(1);
        }
        // Whatever happens to this job, a slot is free.
        self.run_queued();
        match result {
            Ok(published) => {
                self.metrics().spans_kept.inc_by(job.spans.len() as u64);
                self.metrics()
                    .publish_duplicates
                    .inc_by(published.duplicates);
                self.metrics()
                    .spans_dead_lettered
                    .inc_by(published.dead_lettered);
                self.metrics()
                    .publish_duration
                    .observe(elapsed.as_secs_f64());
                for key in job.messages {
                    self.release(key);
                }
            }
            Err(PublishFailure::Fenced(e)) => {
                self.metrics().publishes_fenced.inc();
                if self.still_owned(&job) {
                    self.on_fenced(job.partition, &e);
                }
                // Otherwise the partition was already given up (and perhaps claimed again
                // since): nothing of this job is ours to act on.
            }
            Err(PublishFailure::Failed(e)) => {
                self.metrics().publish_failures.inc();
                if self.still_owned(&job) {
                    if job.attempt % 10 == 0 {
                        tracing::warn!(event = "publish_retry", attempt = job.attempt, error = %e, "publishing kept spans failed; retrying");
                    }
                    job.attempt += 1;
                    self.start_publish(job);
                }
                // Otherwise the partition is gone: its new owner receives the messages again.
            }
        }
    }

    /// Whether the job's partition is still held under the fence the job started with (a
    /// job of an earlier tenure must not publish under a later one's fence: its messages
    /// were handed back when the partition was lost).
    fn still_owned(&self, job: &PublishJob) -> bool {
        let same_fence = match (&job.fence, self.fences.get(&job.partition)) {
            (Some(started), Some(current)) => Arc::ptr_eq(started, current),
            (Some(_), None) => false,
            // Started before the claim arrived: the retry takes the fence.
            (None, _) => true,
        };
        same_fence
            && (self.fetchers.contains_key(&job.partition)
                || self.draining.contains(&job.partition))
    }

    pub(super) fn release(&mut self, key: MessageKey) {
        if let Some(acker) = self.ledger.release(key) {
            self.ack(acker);
        }
    }

    pub(super) fn ack_if_settled(&mut self, key: MessageKey) {
        if let Some(acker) = self.ledger.release_if_unreferenced(key) {
            self.ack(acker);
        }
    }

    pub(super) fn ack(&mut self, acker: Acker) {
        self.acks.spawn(async move {
            if let Err(e) = acker.ack().await {
                tracing::debug!(event = "intake_ack_failed", error = %e, "acknowledging an intake message failed; it will be redelivered");
            }
        });
    }
}
