//! Time-bucketed aggregates: a window is the merge of its buckets, so sliding windows and
//! trailing baselines cost a few merges, and quantiles stay mergeable (DDSketch, 1% relative
//! accuracy).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};

use super::drift::KeyedVector;
use crate::ids::TraceId;

/// One sample: a judge's verdict (or its failure) on a span, a span's latency, or the
/// embedding of one of its fields (drift rules).
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    Verdict { value: f64, passed: bool },
    JudgeError,
    Measurement(f64),
    Embedding(KeyedVector),
}

/// Failing traces kept per aggregate, for notifications.
const EXAMPLES: usize = 5;
/// Embeddings kept per bucket (those with the smallest keys: a uniform sample that merges).
/// A window spans ~30 buckets and a baseline ~48, so either side can fill the drift test's
/// 200 vectors; ~420 bytes each bounds a drift group's windows to ~0.5 MB.
pub const VECTORS_PER_BUCKET: usize = 16;

#[derive(Clone, Serialize, Deserialize)]
pub struct Aggregate {
    /// Verdicts (or measurements).
    pub count: u64,
    pub passed: u64,
    pub errors: u64,
    pub sum: f64,
    pub sum_of_squares: f64,
    #[serde(with = "empty_sketch")]
    pub sketch: DDSketch,
    /// Most recent failing (or erroring) traces.
    pub examples: VecDeque<TraceId>,
    /// Drift rules: a bounded sample of the embeddings (not merged by [`Aggregate::merge`];
    /// [`BucketSeries::vectors`] collects them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vectors: Vec<KeyedVector>,
}

impl std::fmt::Debug for Aggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregate")
            .field("count", &self.count)
            .field("passed", &self.passed)
            .field("errors", &self.errors)
            .field("sum", &self.sum)
            .finish_non_exhaustive()
    }
}

impl Default for Aggregate {
    fn default() -> Self {
        Self {
            count: 0,
            passed: 0,
            errors: 0,
            sum: 0.0,
            sum_of_squares: 0.0,
            sketch: DDSketch::new(Config::defaults()),
            examples: VecDeque::new(),
            vectors: Vec::new(),
        }
    }
}

impl Aggregate {
    pub fn add(&mut self, sample: Sample, trace: TraceId) {
        match sample {
            Sample::Verdict { value, passed } => {
                self.observe(value);
                if passed {
                    self.passed += 1;
                } else {
                    self.example(trace);
                }
            }
            Sample::Measurement(value) => {
                self.observe(value);
                self.example(trace);
            }
            Sample::JudgeError => {
                self.errors += 1;
                self.example(trace);
            }
            Sample::Embedding(vector) => {
                self.count += 1;
                self.example(trace);
                self.keep_vector(vector);
            }
        }
    }

    fn observe(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.sum_of_squares += value * value;
        self.sketch.add(value);
    }

    fn keep_vector(&mut self, vector: KeyedVector) {
        if self.vectors.len() < VECTORS_PER_BUCKET {
            self.vectors.push(vector);
            return;
        }
        let Some((largest, key)) = self
            .vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (i, v.key))
            .max_by_key(|(_, key)| *key)
        else {
            return;
        };
        if vector.key < key {
            self.vectors[largest] = vector;
        }
    }

    fn example(&mut self, trace: TraceId) {
        if self.examples.contains(&trace) {
            return;
        }
        if self.examples.len() == EXAMPLES {
            self.examples.pop_front();
        }
        self.examples.push_back(trace);
    }

    pub fn merge(&mut self, other: &Aggregate) {
        self.count += other.count;
        self.passed += other.passed;
        self.errors += other.errors;
        self.sum += other.sum;
        self.sum_of_squares += other.sum_of_squares;
        let _ = self.sketch.merge(&other.sketch);
        for trace in &other.examples {
            self.example(*trace);
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    pub fn pass_rate(&self) -> Option<f64> {
        (self.count > 0).then(|| self.passed as f64 / self.count as f64)
    }

    pub fn error_rate(&self) -> Option<f64> {
        let attempts = self.count + self.errors;
        (attempts > 0).then(|| self.errors as f64 / attempts as f64)
    }

    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.sketch.quantile(q).ok().flatten()
    }
}

/// An empty sketch's minimum and maximum are infinite, which JSON writes as `null` and
/// cannot read back: a bucket with no measured values (only judge errors, or only drift
/// embeddings) made a window snapshot unreadable. Empty sketches are written as `null`.
mod empty_sketch {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use sketches_ddsketch::{Config, DDSketch};

    pub fn serialize<S: Serializer>(sketch: &DDSketch, serializer: S) -> Result<S::Ok, S::Error> {
        (sketch.count() > 0).then_some(sketch).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DDSketch, D::Error> {
        Ok(Option::<DDSketch>::deserialize(deserializer)?
            .unwrap_or_else(|| DDSketch::new(Config::defaults())))
    }
}

/// Aggregates in fixed-width time buckets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketSeries {
    width_ns: u64,
    buckets: BTreeMap<u64, Aggregate>,
}

impl BucketSeries {
    pub fn new(width_ns: u64) -> Self {
        Self {
            width_ns: width_ns.max(1),
            buckets: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, at_ns: u64, sample: Sample, trace: TraceId) {
        self.buckets
            .entry(at_ns / self.width_ns)
            .or_default()
            .add(sample, trace);
    }

    /// The merge of buckets whose start lies in `[from_ns, to_ns)`.
    pub fn range(&self, from_ns: u64, to_ns: u64) -> Aggregate {
        let mut total = Aggregate::default();
        let (from, to) = (from_ns / self.width_ns, to_ns.div_ceil(self.width_ns));
        for (_, bucket) in self.buckets.range(from..to) {
            total.merge(bucket);
        }
        total
    }

    /// The embeddings kept in buckets whose start lies in `[from_ns, to_ns)`.
    pub fn vectors(&self, from_ns: u64, to_ns: u64) -> Vec<&KeyedVector> {
        let (from, to) = (from_ns / self.width_ns, to_ns.div_ceil(self.width_ns));
        self.buckets
            .range(from..to)
            .flat_map(|(_, bucket)| &bucket.vectors)
            .collect()
    }

    /// Forgets buckets that ended before `before_ns`.
    pub fn prune(&mut self, before_ns: u64) {
        let keep_from = before_ns / self.width_ns;
        self.buckets = self.buckets.split_off(&keep_from);
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn windows_merge_buckets_and_quantiles() {
        let mut series = BucketSeries::new(10 * S);
        for i in 0..100u64 {
            let value = i as f64 / 100.0;
            series.add(
                i * S,
                Sample::Verdict {
                    value,
                    passed: value >= 0.5,
                },
                TraceId([i as u8; 16]),
            );
        }
        series.add(50 * S, Sample::JudgeError, TraceId([200; 16]));
        let all = series.range(0, 100 * S);
        assert_eq!((all.count, all.passed, all.errors), (100, 50, 1));
        assert!((all.mean().unwrap() - 0.495).abs() < 1e-9);
        assert!(
            (all.quantile(0.95).unwrap() - 0.94).abs() < 0.02,
            "{:?}",
            all.quantile(0.95)
        );
        assert_eq!(all.error_rate(), Some(1.0 / 101.0));
        assert_eq!(all.examples.len(), 5);
        let late = series.range(60 * S, 100 * S);
        assert_eq!(late.count, 40);
        series.prune(60 * S);
        assert_eq!(series.range(0, 100 * S).count, 40);
    }

    /// A bucket of judge errors only has an empty sketch, whose infinite bounds JSON writes
    /// as null: the snapshot holding it could not be read back (found with drift buckets).
    #[test]
    fn buckets_without_values_survive_a_snapshot() {
        let mut series = BucketSeries::new(10 * S);
        series.add(5 * S, Sample::JudgeError, TraceId([1; 16]));
        series.add(25 * S, Sample::Measurement(3.0), TraceId([2; 16]));
        let json = serde_json::to_string(&series).unwrap();
        let back: BucketSeries = serde_json::from_str(&json).unwrap();
        let all = back.range(0, 30 * S);
        assert_eq!((all.count, all.errors), (1, 1));
        assert_eq!(all.quantile(0.5).map(|q| q.round()), Some(3.0));
    }
}
