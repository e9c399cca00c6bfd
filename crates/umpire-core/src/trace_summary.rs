//! A kept trace's summary: what ingest publishes once every span of a decided trace is
//! stored, and what trace-level judging starts from. It says whether the trace is whole
//! (its root span arrived before the decision) and where its spans are in the span stream,
//! so evaluators read the trace back from the stream instead of gathering it in memory.

use serde::{Deserialize, Serialize};

use crate::ids::TraceId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceSummary {
    pub trace_id: TraceId,
    /// Why the trace was decided without its root span (`root_missing`: the trace timeout
    /// passed; `buffer_full`, `shutdown`: decided early). `None`: the trace is whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
    /// Span-stream sequences of the messages holding the trace's spans (each one span or a
    /// batch of them), as inclusive ranges, ascending (a trace published together is mostly
    /// one range).
    pub sequences: Vec<[u64; 2]>,
}

/// Most ranges a summary holds (~22 bytes each in JSON, so a summary stays far below
/// NATS' default 1 MiB payload); a trace whose spans are scattered over more is summarised
/// as incomplete, `too_large`.
pub const MAX_RANGES: usize = 20_000;

impl TraceSummary {
    pub fn new(trace_id: TraceId, incomplete: Option<String>, mut sequences: Vec<u64>) -> Self {
        sequences.sort_unstable();
        sequences.dedup();
        let mut ranges: Vec<[u64; 2]> = Vec::new();
        for sequence in sequences {
            match ranges.last_mut() {
                Some(last) if last[1].checked_add(1) == Some(sequence) => last[1] = sequence,
                _ => ranges.push([sequence, sequence]),
            }
        }
        let incomplete = if ranges.len() > MAX_RANGES {
            ranges.truncate(MAX_RANGES);
            Some("too_large".to_owned())
        } else {
            incomplete
        };
        Self {
            trace_id,
            incomplete,
            sequences: ranges,
        }
    }

    /// How many span-stream messages the summary names.
    pub fn message_count(&self) -> u64 {
        self.sequences
            .iter()
            .map(|[first, last]| last.saturating_sub(*first).saturating_add(1))
            .fold(0u64, u64::saturating_add)
    }

    /// The sequences, ascending.
    pub fn sequences(&self) -> impl Iterator<Item = u64> + '_ {
        self.sequences
            .iter()
            .flat_map(|[first, last]| *first..=*last)
    }

    /// The message id that makes a re-published summary (a retried publication, or a
    /// redelivered intake message re-decided by the next owner) a duplicate.
    pub fn message_id(&self) -> String {
        format!("trace/{}", self.trace_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_kept_as_ranges_and_read_back_in_order() {
        let trace = TraceId([7; 16]);
        let summary = TraceSummary::new(trace, None, vec![12, 10, 11, 11, 20, 14, 13, 21]);
        assert_eq!(summary.sequences, [[10, 14], [20, 21]]);
        assert_eq!(summary.message_count(), 7);
        assert_eq!(
            summary.sequences().collect::<Vec<_>>(),
            [10, 11, 12, 13, 14, 20, 21]
        );
        let json = serde_json::to_string(&summary).unwrap_or_default();
        assert_eq!(
            json,
            format!(r#"{{"traceId":"{trace}","sequences":[[10,14],[20,21]]}}"#)
        );
        let back: TraceSummary = serde_json::from_str(&json).unwrap_or(summary.clone());
        assert_eq!(back, summary);
        assert_eq!(
            TraceSummary::new(trace, None, Vec::new()).message_count(),
            0
        );

        let scattered = TraceSummary::new(
            trace,
            None,
            (0..=2 * MAX_RANGES as u64).map(|n| n * 2).collect(),
        );
        assert_eq!(scattered.sequences.len(), MAX_RANGES);
        assert_eq!(scattered.incomplete.as_deref(), Some("too_large"));
    }
}
