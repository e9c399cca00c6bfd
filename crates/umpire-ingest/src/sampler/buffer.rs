//! Spans awaiting their trace's sampling decision, grouped by trace, with the intake
//! messages each trace came from (so a message is acknowledged only when every trace in it
//! is settled).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use umpire_core::ids::{SpanId, TraceId};
use umpire_otlp::buffered::BufferedSpan;

/// An intake message, by its stream sequence.
pub type MessageKey = u64;

#[derive(Debug)]
pub struct PendingTrace {
    pub partition: u32,
    pub first_seen: Instant,
    /// When the trace's root span (no parent) arrived: the trace is then whole but for
    /// stragglers of other services.
    pub root_seen: Option<Instant>,
    pub spans: Vec<BufferedSpan>,
    pub messages: Vec<MessageKey>,
    span_ids: HashSet<SpanId>,
    bytes: usize,
}

/// What adding a span did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The first span of a trace not seen before.
    NewTrace,
    Appended,
    /// The span was already buffered (a client retry or a redelivery).
    Duplicate,
}

#[derive(Debug, Default)]
pub struct TraceBuffer {
    traces: HashMap<TraceId, PendingTrace>,
    /// Traces in arrival order of their first span, removed with their trace: a trace may
    /// wait minutes for its root, and lazily skipped entries would pile up behind it.
    arrival: BTreeSet<(Instant, TraceId)>,
    /// Traces in arrival order of their root span. Every entry is due `decisionWait` after
    /// it was pushed, so entries of traces taken out otherwise are skipped when popped.
    rooted: VecDeque<(Instant, TraceId)>,
    spans: usize,
    bytes: usize,
}

impl TraceBuffer {
    pub fn add(
        &mut self,
        partition: u32,
        trace_id: TraceId,
        span_id: SpanId,
        span: BufferedSpan,
        message: MessageKey,
        now: Instant,
    ) -> Added {
        let bytes = span.approximate_bytes();
        let is_root = span.is_root();
        let (trace, added) = match self.traces.get_mut(&trace_id) {
            Some(trace) => (trace, Added::Appended),
            None => {
                self.arrival.insert((now, trace_id));
                let trace = self.traces.entry(trace_id).or_insert_with(|| PendingTrace {
                    partition,
                    first_seen: now,
                    root_seen: None,
                    spans: Vec::new(),
                    messages: Vec::new(),
                    span_ids: HashSet::new(),
                    bytes: 0,
                });
                (trace, Added::NewTrace)
            }
        };
        if !trace.messages.contains(&message) {
            trace.messages.push(message);
        }
        if !trace.span_ids.insert(span_id) {
            return Added::Duplicate;
        }
        if is_root && trace.root_seen.is_none() {
            trace.root_seen = Some(now);
            self.rooted.push_back((now, trace_id));
        }
        trace.spans.push(span);
        trace.bytes += bytes;
        self.spans += 1;
        self.bytes += bytes;
        added
    }

    /// Whether `message` is already referenced by the trace (so the caller counts each
    /// message once per trace).
    pub fn references(&self, trace_id: &TraceId, message: MessageKey) -> bool {
        self.traces
            .get(trace_id)
            .is_some_and(|t| t.messages.contains(&message))
    }

    pub fn span_count(&self) -> usize {
        self.spans
    }

    pub fn trace_count(&self) -> usize {
        self.traces.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes out up to `limit` traces that are due: `wait` after their root span arrived,
    /// or, still without a root, `timeout` after their first span.
    pub fn take_due(
        &mut self,
        now: Instant,
        wait: Duration,
        timeout: Duration,
        limit: usize,
    ) -> Vec<(TraceId, PendingTrace)> {
        let mut due = Vec::new();
        while due.len() < limit {
            let Some(&(seen, id)) = self.rooted.front() else {
                break;
            };
            if seen + wait > now {
                break;
            }
            self.rooted.pop_front();
            let current = self
                .traces
                .get(&id)
                .is_some_and(|t| t.root_seen == Some(seen));
            if let Some(trace) = current.then(|| self.remove(&id)).flatten() {
                due.push((id, trace));
            }
        }
        while due.len() < limit {
            let Some(&(seen, _)) = self.arrival.first() else {
                break;
            };
            if seen + timeout > now {
                break;
            }
            if let Some(taken) = self.take_oldest() {
                due.push(taken);
            }
        }
        due
    }

    /// Takes out the oldest trace (to make room when the buffer is full).
    pub fn take_oldest(&mut self) -> Option<(TraceId, PendingTrace)> {
        let &(_, id) = self.arrival.first()?;
        self.remove(&id).map(|trace| (id, trace))
    }

    /// Takes out every trace of a partition (rebalancing, lease loss, shutdown).
    pub fn take_partition(&mut self, partition: u32) -> Vec<(TraceId, PendingTrace)> {
        let ids: Vec<TraceId> = self
            .traces
            .iter()
            .filter(|(_, t)| t.partition == partition)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.remove(&id).map(|t| (id, t)))
            .collect()
    }

    pub fn take_all(&mut self) -> Vec<(TraceId, PendingTrace)> {
        self.arrival.clear();
        self.rooted.clear();
        self.spans = 0;
        self.bytes = 0;
        self.traces.drain().collect()
    }

    fn remove(&mut self, id: &TraceId) -> Option<PendingTrace> {
        let trace = self.traces.remove(id)?;
        self.arrival.remove(&(trace.first_seen, *id));
        self.spans -= trace.spans.len();
        self.bytes -= trace.bytes;
        Some(trace)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use umpire_otlp::buffered::SpanOrigin;
    use umpire_otlp::proto::Span;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);
    const TIMEOUT: Duration = Duration::from_secs(300);

    /// Span `id` of trace `trace`; a root when `parent` is 0.
    fn span(trace: u8, id: u8, parent: u8) -> (TraceId, SpanId, BufferedSpan) {
        let otlp = Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: if parent == 0 {
                Vec::new()
            } else {
                vec![parent; 8]
            },
            ..Default::default()
        };
        (
            TraceId([trace; 16]),
            SpanId([id; 8]),
            BufferedSpan::new(&otlp, Arc::new(SpanOrigin::default())),
        )
    }

    fn ids(due: &[(TraceId, PendingTrace)]) -> Vec<u8> {
        due.iter().map(|(id, _)| id.0[0]).collect()
    }

    #[test]
    fn a_trace_is_due_after_its_root_and_without_one_at_the_timeout() {
        let mut buffer = TraceBuffer::default();
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        // Trace 1: a long run — children over four minutes, the root last.
        let (a, a2, s) = span(1, 2, 1);
        assert_eq!(buffer.add(0, a, a2, s, 10, at(0)), Added::NewTrace);
        let (_, a3, s) = span(1, 3, 1);
        assert_eq!(buffer.add(0, a, a3, s, 11, at(240)), Added::Appended);
        // Trace 2: root and child together.
        let (b, b1, s) = span(2, 1, 0);
        buffer.add(1, b, b1, s, 12, at(1));
        let (_, b2, s) = span(2, 2, 1);
        buffer.add(1, b, b2, s, 12, at(1));
        // Trace 3: its root never comes.
        let (c, c2, s) = span(3, 2, 1);
        buffer.add(1, c, c2, s, 13, at(2));
        let (_, dup, s) = span(3, 2, 1);
        assert_eq!(buffer.add(1, c, dup, s, 14, at(3)), Added::Duplicate);
        assert_eq!((buffer.trace_count(), buffer.span_count()), (3, 5));

        assert!(
            buffer
                .take_due(at(10), WAIT, TIMEOUT, usize::MAX)
                .is_empty()
        );
        let due = buffer.take_due(at(11), WAIT, TIMEOUT, usize::MAX);
        assert_eq!(ids(&due), [2]);
        assert_eq!(due[0].1.spans.len(), 2);
        assert!(due[0].1.root_seen.is_some());

        // The long run's first span is older than trace 3's, but it is not due yet: its
        // root arrives at 250 s, before the timeout.
        let (_, a1, s) = span(1, 1, 0);
        buffer.add(0, a, a1, s, 15, at(250));
        assert!(
            buffer
                .take_due(at(259), WAIT, TIMEOUT, usize::MAX)
                .is_empty()
        );
        let due = buffer.take_due(at(260), WAIT, TIMEOUT, usize::MAX);
        assert_eq!(ids(&due), [1]);
        assert_eq!(due[0].1.spans.len(), 3);
        assert_eq!(due[0].1.messages, [10, 11, 15]);

        assert!(
            buffer
                .take_due(at(301), WAIT, TIMEOUT, usize::MAX)
                .is_empty()
        );
        let due = buffer.take_due(at(302), WAIT, TIMEOUT, usize::MAX);
        assert_eq!(ids(&due), [3]);
        assert!(due[0].1.root_seen.is_none());
        assert_eq!(due[0].1.messages, [13, 14]);
        assert_eq!(
            (buffer.trace_count(), buffer.span_count(), buffer.bytes()),
            (0, 0, 0)
        );
        assert!(buffer.arrival.is_empty());
    }

    #[test]
    fn takes_partitions_and_oldest_without_leaving_stale_order() {
        let mut buffer = TraceBuffer::default();
        let now = Instant::now();
        for trace in 1..=4u8 {
            let (t, s_id, s) = span(trace, 1, 9);
            buffer.add(
                u32::from(trace % 2),
                t,
                s_id,
                s,
                1,
                now + Duration::from_millis(u64::from(trace)),
            );
        }
        let odd = buffer.take_partition(1);
        assert_eq!(odd.len(), 2);
        assert_eq!(
            buffer.take_oldest().map(|(id, _)| id),
            Some(TraceId([2; 16]))
        );
        assert_eq!(
            buffer.take_oldest().map(|(id, _)| id),
            Some(TraceId([4; 16]))
        );
        assert!(buffer.take_oldest().is_none());
        assert_eq!((buffer.span_count(), buffer.bytes()), (0, 0));
        assert!(buffer.arrival.is_empty());
    }
}
