//! Umpire's NATS topology: every name, stream, consumer and key-value bucket of a project
//! and its policies, with their settings, in one place. The controller (which creates the
//! span stream and the policy consumers before any pod starts) and the workers (which
//! create the rest on start) both build them from here, so the two sides cannot disagree.
//!
//! Every piece of state takes the project's replica count, so an R3 project keeps nothing
//! on one node only.

mod buckets;
mod consumers;
mod names;
mod streams;

pub use buckets::{
    EXPORT_REPORT_REFRESH, EXPORT_REPORT_TTL, alert_lease_bucket, alert_snapshot_store,
    alert_state_bucket, budget_bucket, export_status_bucket, ingest_lease_bucket,
};
pub use consumers::{
    EXPORT_ACK_WAIT, NOTIFIER_ACK_WAIT, PolicyConsumer, export_consumer, intake_consumer,
    notifier_consumer, policy_consumer,
};
pub use names::ProjectNames;
pub use streams::{
    OUTBOX_DUPLICATE_WINDOW, OUTBOX_MAX_AGE, OUTBOX_MAX_MESSAGES, SCORES_MAX_AGE, SpanStreamLimits,
    dead_letter_stream, intake_stream, outbox_stream, scores_stream, span_stream,
};
