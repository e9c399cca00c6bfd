//! Deterministic per-trace choices (sampling, evaluation sampling, partitioning).
//!
//! Every replica and every rerun must reach the same answer for the same trace, and the
//! different choices must be *independent*: if tail sampling keeps traces whose hash is below
//! 10% and an EvalPolicy then samples 50% with the same hash, it would select all of them.
//! Each use therefore hashes the trace id with its own salt.

use crate::ids::{SpanId, TraceId};

/// What a per-trace hash is used for; each purpose gets an independent hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashPurpose {
    /// Tail sampling's probabilistic policy.
    TailSampling,
    /// An EvalPolicy's `samplePercentage`.
    EvaluationSampling,
    /// Which ingest partition owns a trace.
    Partition,
    /// An outcome-based export target's share of healthy traces.
    OutcomeExport,
}

impl HashPurpose {
    fn salt(self) -> u64 {
        match self {
            Self::TailSampling => 0x7461_696c_5f73_616d,
            Self::EvaluationSampling => 0x6576_616c_5f73_616d,
            Self::Partition => 0x7061_7274_6974_696f,
            Self::OutcomeExport => 0x6f75_7463_6f6d_6578,
        }
    }
}

/// The span id of the zero-duration span that carries an evaluation's verdicts as span
/// events (for backends that read traces only): the same for every export of the same
/// evaluation, so a backend that keys spans by id keeps one copy. Never all zero.
pub fn evaluation_span_id(evaluation_id: &str) -> SpanId {
    let hash =
        xxhash_rust::xxh3::xxh3_64_with_seed(evaluation_id.as_bytes(), 0x6576_616c_5f73_7061);
    SpanId(hash.max(1).to_be_bytes())
}

/// The key that decides whether an evaluation's embedding stays in a drift rule's bounded
/// sample: uniform, and the same on every replica and replay.
pub fn drift_sample_key(evaluation_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(evaluation_id.as_bytes(), 0x6472_6966_745f_736d)
}

/// A 64-bit hash of the trace id for `purpose`, stable across processes, versions and
/// platforms (XXH3 with a fixed per-purpose seed, whose output is specified).
pub fn trace_hash(trace_id: &TraceId, purpose: HashPurpose) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(&trace_id.0, purpose.salt())
}

/// Whether the trace falls within `percentage` (0–100) for `purpose`.
pub fn trace_in_percentage(trace_id: &TraceId, purpose: HashPurpose, percentage: f64) -> bool {
    if percentage >= 100.0 {
        return true;
    }
    if percentage <= 0.0 {
        return false;
    }
    let fraction = trace_hash(trace_id, purpose) as f64 / u64::MAX as f64;
    fraction < percentage / 100.0
}

/// The partition (0..partitions) owning the trace.
pub fn trace_partition(trace_id: &TraceId, partitions: u32) -> u32 {
    (trace_hash(trace_id, HashPurpose::Partition) % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(count: u32) -> Vec<TraceId> {
        (0..count)
            .map(|i| {
                let mut bytes = [0u8; 16];
                bytes[..4].copy_from_slice(&i.to_le_bytes());
                bytes[15] = 1;
                TraceId(bytes)
            })
            .collect()
    }

    const PINNED_TAIL_SAMPLING_HASH: u64 = 14_785_573_811_069_611_586;

    #[test]
    fn is_stable_across_releases() {
        let id: TraceId = "0748feb976cd256641cc0ff1847e6c60".parse().unwrap();
        // Pinned: a change here silently changes every deployed sampling decision.
        assert_eq!(
            trace_hash(&id, HashPurpose::TailSampling),
            PINNED_TAIL_SAMPLING_HASH
        );
        assert_ne!(
            trace_hash(&id, HashPurpose::TailSampling),
            trace_hash(&id, HashPurpose::EvaluationSampling)
        );
    }

    #[test]
    fn percentages_are_close_and_purposes_independent() {
        let ids = ids(20_000);
        let kept: Vec<&TraceId> = ids
            .iter()
            .filter(|id| trace_in_percentage(id, HashPurpose::TailSampling, 10.0))
            .collect();
        let share = kept.len() as f64 / ids.len() as f64;
        assert!((0.09..0.11).contains(&share), "{share}");
        // Of the tail-sampled traces, evaluation sampling at 50% still picks about half.
        let evaluated = kept
            .iter()
            .filter(|id| trace_in_percentage(id, HashPurpose::EvaluationSampling, 50.0))
            .count();
        let share = evaluated as f64 / kept.len() as f64;
        assert!((0.45..0.55).contains(&share), "{share}");
        assert!(
            ids.iter()
                .all(|id| trace_in_percentage(id, HashPurpose::TailSampling, 100.0))
        );
        assert!(
            !ids.iter()
                .any(|id| trace_in_percentage(id, HashPurpose::TailSampling, 0.0))
        );
    }

    #[test]
    fn partitions_spread_evenly() {
        let mut counts = [0u32; 8];
        for id in ids(8_000) {
            counts[trace_partition(&id, 8) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (850..1150).contains(c)), "{counts:?}");
    }
}
