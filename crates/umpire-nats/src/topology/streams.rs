//! The project's streams: kept spans, the intake awaiting sampling, scores, dead letters and
//! the notification outbox.

use std::time::Duration;

use async_nats::jetstream::stream;

use super::ProjectNames;

/// The span stream's limits, from the TraceProject's `spec.stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanStreamLimits {
    pub max_age: Duration,
    pub max_bytes: u64,
    pub max_messages: Option<u64>,
    pub replicas: usize,
    pub duplicate_window: Duration,
}

/// Kept spans, deduplicated by span id within the duplicate window; trace summaries; and the
/// partition owners' fence markers (rolled up: one message per marker subject).
pub fn span_stream(names: &ProjectNames, limits: &SpanStreamLimits) -> stream::Config {
    stream::Config {
        name: names.spans_stream(),
        description: Some(format!(
            "Umpire: kept spans of TraceProject {}/{}",
            names.namespace(),
            names.project()
        )),
        subjects: vec![
            names.spans_wildcard(),
            names.traces_subject(),
            names.fences_wildcard(),
        ],
        allow_rollup: true,
        max_age: limits.max_age,
        max_bytes: i64::try_from(limits.max_bytes).unwrap_or(i64::MAX),
        max_messages: limits
            .max_messages
            .and_then(|m| i64::try_from(m).ok())
            .unwrap_or(-1),
        num_replicas: limits.replicas.max(1),
        duplicate_window: limits.duplicate_window,
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// Every span as received (redacted), awaiting its trace's sampling decision.
pub fn intake_stream(names: &ProjectNames, max_bytes: u64, replicas: usize) -> stream::Config {
    stream::Config {
        name: names.intake_stream(),
        description: Some("Umpire: spans awaiting their trace's sampling decision".into()),
        subjects: vec![names.intake_wildcard()],
        // Each partition's consumer removes what it acknowledged.
        retention: stream::RetentionPolicy::WorkQueue,
        max_bytes: i64::try_from(max_bytes).unwrap_or(i64::MAX),
        max_age: Duration::from_secs(3600),
        // Full means "sampling is behind": refuse new data (clients retry) rather than
        // silently dropping what was already acknowledged.
        discard: stream::DiscardPolicy::New,
        num_replicas: replicas.max(1),
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// How long scores are kept: the longest an alert rule may look back (window + baseline),
/// since a new alert leader rebuilds its windows from them. The EvalPolicy CRD refuses
/// rules that look back further (`192h`).
pub const SCORES_MAX_AGE: Duration = Duration::from_secs(8 * 24 * 3600);

/// Every policy's scores and span observations for one project.
pub fn scores_stream(names: &ProjectNames, replicas: usize) -> stream::Config {
    stream::Config {
        name: names.scores_stream(),
        description: Some(format!(
            "Umpire: scores of TraceProject {}/{}",
            names.namespace(),
            names.project()
        )),
        subjects: vec![names.scores_wildcard()],
        max_age: SCORES_MAX_AGE,
        max_bytes: 4 << 30,
        duplicate_window: Duration::from_secs(15 * 60),
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        num_replicas: replicas.max(1),
        ..Default::default()
    }
}

/// Span messages evaluators could not decode.
pub fn dead_letter_stream(names: &ProjectNames, replicas: usize) -> stream::Config {
    stream::Config {
        name: names.dead_letter_stream(),
        description: Some("Umpire: span messages evaluators could not decode".into()),
        subjects: vec![names.dead_letter_wildcard()],
        max_age: Duration::from_secs(14 * 24 * 3600),
        max_bytes: 1 << 30,
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        ..Default::default()
    }
}

/// Notifications kept undelivered at most (per project).
pub const OUTBOX_MAX_MESSAGES: i64 = 100_000;
/// How long an undeliverable notification is retried before JetStream ages it out.
pub const OUTBOX_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Re-derived notifications within this window of the original are dropped as duplicates;
/// it exceeds any leader hand-over by far.
pub const OUTBOX_DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 3600);

/// Notifications awaiting delivery. Bounded by count and age, and refusing new entries when
/// full rather than dropping undelivered ones.
pub fn outbox_stream(names: &ProjectNames, replicas: usize) -> stream::Config {
    stream::Config {
        name: names.notifications_stream(),
        description: Some(format!(
            "Umpire: alert notifications of TraceProject {}/{} awaiting delivery",
            names.namespace(),
            names.project()
        )),
        subjects: vec![names.notifications_wildcard()],
        max_messages: OUTBOX_MAX_MESSAGES,
        max_age: OUTBOX_MAX_AGE,
        duplicate_window: OUTBOX_DUPLICATE_WINDOW,
        discard: stream::DiscardPolicy::New,
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        ..Default::default()
    }
}
