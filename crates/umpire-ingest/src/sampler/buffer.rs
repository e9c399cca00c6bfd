//! Spans awaiting their trace's sampling decision, grouped by trace, with the intake
//! messages each trace came from (so a message is acknowledged only when every trace in it
//! is settled).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use umpire_core::ids::{SpanId, TraceId};
use umpire_otlp::buffered::BufferedSpan;

/// An intake message, by its stream sequence.
pub type MessageKey = u64;

#[derive(Debug)]
pub struct PendingTrace {
    pub partition: u32,
    pub first_seen: Instant,
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
    /// Traces in arrival order of their first span; stale entries (traces already taken out)
    /// are skipped when popped.
    arrival: VecDeque<(Instant, TraceId)>,
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
        let (trace, added) = match self.traces.get_mut(&trace_id) {
            Some(trace) => (trace, Added::Appended),
            None => {
                self.arrival.push_back((now, trace_id));
                let trace = self.traces.entry(trace_id).or_insert_with(|| PendingTrace {
                    partition,
                    first_seen: now,
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

    /// When the oldest trace's decision is due.
    pub fn next_due(&self, wait: Duration) -> Option<Instant> {
        self.arrival
            .iter()
            .find(|(seen, id)| self.traces.get(id).is_some_and(|t| t.first_seen == *seen))
            .map(|(seen, _)| *seen + wait)
    }

    /// Takes out up to `limit` traces whose first span arrived at least `wait` ago.
    pub fn take_due(
        &mut self,
        now: Instant,
        wait: Duration,
        limit: usize,
    ) -> Vec<(TraceId, PendingTrace)> {
        let mut due = Vec::new();
        while let Some((seen, _)) = self.arrival.front() {
            if due.len() >= limit {
                break;
            }
            if *seen + wait > now {
                break;
            }
            if let Some(taken) = self.pop_front() {
                due.push(taken);
            }
        }
        due
    }

    /// Takes out the oldest trace (to make room when the buffer is full).
    pub fn take_oldest(&mut self) -> Option<(TraceId, PendingTrace)> {
        while !self.arrival.is_empty() {
            if let Some(taken) = self.pop_front() {
                return Some(taken);
            }
        }
        None
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
        self.spans = 0;
        self.bytes = 0;
        self.traces.drain().collect()
    }

    fn pop_front(&mut self) -> Option<(TraceId, PendingTrace)> {
        let (seen, id) = self.arrival.pop_front()?;
        if self.traces.get(&id).is_some_and(|t| t.first_seen == seen) {
            self.remove(&id).map(|t| (id, t))
        } else {
            None
        }
    }

    fn remove(&mut self, id: &TraceId) -> Option<PendingTrace> {
        let trace = self.traces.remove(id)?;
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

    fn span(trace: u8, id: u8) -> (TraceId, SpanId, BufferedSpan) {
        let otlp = Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            ..Default::default()
        };
        (
            TraceId([trace; 16]),
            SpanId([id; 8]),
            BufferedSpan {
                span: otlp,
                origin: Arc::new(SpanOrigin::default()),
            },
        )
    }

    #[test]
    fn groups_by_trace_dedups_and_expires_in_arrival_order() {
        let mut buffer = TraceBuffer::default();
        let t0 = Instant::now();
        let (a, a1, s) = span(1, 1);
        assert_eq!(buffer.add(0, a, a1, s, 10, t0), Added::NewTrace);
        let (b, b1, s) = span(2, 1);
        assert_eq!(
            buffer.add(1, b, b1, s, 10, t0 + Duration::from_secs(1)),
            Added::NewTrace
        );
        let (_, a2, s) = span(1, 2);
        assert_eq!(
            buffer.add(0, a, a2, s, 11, t0 + Duration::from_secs(2)),
            Added::Appended
        );
        let (_, a2_again, s) = span(1, 2);
        assert_eq!(
            buffer.add(0, a, a2_again, s, 12, t0 + Duration::from_secs(2)),
            Added::Duplicate
        );
        assert_eq!((buffer.trace_count(), buffer.span_count()), (2, 3));
        assert_eq!(
            buffer.next_due(Duration::from_secs(10)),
            Some(t0 + Duration::from_secs(10))
        );

        assert!(
            buffer
                .take_due(
                    t0 + Duration::from_secs(9),
                    Duration::from_secs(10),
                    usize::MAX
                )
                .is_empty()
        );
        let due = buffer.take_due(
            t0 + Duration::from_secs(10),
            Duration::from_secs(10),
            usize::MAX,
        );
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, a);
        assert_eq!(due[0].1.spans.len(), 2);
        assert_eq!(due[0].1.messages, [10, 11, 12]);
        assert_eq!((buffer.trace_count(), buffer.span_count()), (1, 1));
    }

    #[test]
    fn takes_partitions_and_oldest_without_leaving_stale_order() {
        let mut buffer = TraceBuffer::default();
        let now = Instant::now();
        for trace in 1..=4u8 {
            let (t, s_id, s) = span(trace, 1);
            buffer.add(u32::from(trace % 2), t, s_id, s, 1, now);
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
    }
}
