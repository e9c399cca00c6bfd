//! A drift rule's evaluation: the permutation test over the window's and the baseline's
//! embeddings, rerun at most once per refresh interval (it costs milliseconds, and rules
//! are evaluated on every score).

use super::drift::{DriftTest, bounded_sample, centroid_shift, permutations_for};
use super::rule::{AlertRule, RuleEvaluation, Threshold, Verdict, show};
use super::window::BucketSeries;
use crate::ids::TraceId;

/// The last test of a group's drift rule.
#[derive(Debug, Clone, Default)]
pub struct DriftCache {
    last: Option<(u64, DriftTest)>,
}

impl AlertRule {
    /// How long a drift test's answer stands before it is rerun: a 30th of the window
    /// (the width of its buckets), between 1 s and 1 min.
    pub fn drift_refresh_ns(&self) -> u64 {
        (self.window.as_nanos() as u64 / 30).clamp(1_000_000_000, 60_000_000_000)
    }

    /// Evaluates the rule; drift rules reuse `cache` while it is fresh.
    pub fn evaluate_cached(
        &self,
        recent: &BucketSeries,
        trailing: &BucketSeries,
        now_ns: u64,
        cache: &mut DriftCache,
    ) -> RuleEvaluation {
        let Threshold::Drift {
            baseline,
            min_distance,
            confidence,
        } = self.threshold
        else {
            return self.evaluate(recent, trailing, now_ns);
        };
        let start = now_ns.saturating_sub(self.window.as_nanos() as u64);
        let window = recent.range(start, now_ns.saturating_add(1));
        let samples = window.count;
        let examples: Vec<TraceId> = window.examples.iter().copied().collect();
        let metric = self.metric_name();
        let result = |verdict, value, description: String| RuleEvaluation {
            verdict,
            value,
            baseline: None,
            samples,
            description,
            examples: examples.clone(),
        };
        if samples == 0 {
            return result(
                Verdict::NoData,
                None,
                format!("no {metric} samples in {}", show(self.window)),
            );
        }
        let base_start = start.saturating_sub(baseline.as_nanos() as u64);
        let base_samples = trailing.range(base_start, start).count;
        let least = self.min_samples.max(2);
        if samples < least || base_samples < least {
            return result(
                Verdict::TooFewSamples,
                None,
                format!("{samples} window and {base_samples} baseline samples (< {least})"),
            );
        }
        let fresh = cache
            .last
            .filter(|(at, _)| now_ns.saturating_sub(*at) < self.drift_refresh_ns());
        let test = match fresh {
            Some((_, test)) => Some(test),
            None => {
                let window_vectors =
                    bounded_sample(recent.vectors(start, now_ns.saturating_add(1)));
                let base_vectors = bounded_sample(trailing.vectors(base_start, start));
                let test =
                    centroid_shift(&window_vectors, &base_vectors, permutations_for(confidence));
                cache.last = test.map(|t| (now_ns, t));
                test
            }
        };
        let Some(test) = test else {
            return result(
                Verdict::TooFewSamples,
                None,
                "the embeddings cannot be compared (none kept, or of different models)".into(),
            );
        };
        let significant = test.p_value < 1.0 - confidence;
        let holds = significant && test.distance > min_distance;
        result(
            if holds {
                Verdict::Holds
            } else {
                Verdict::Clear
            },
            Some(test.distance),
            format!(
                "{metric}: centroid distance {:.3} {} {min_distance} (p={:.2e}, {} permutations; {} window vs {} baseline embeddings) over {} against the {} before",
                test.distance,
                if test.distance > min_distance {
                    ">"
                } else {
                    "<="
                },
                test.p_value,
                test.permutations,
                test.window,
                test.baseline,
                show(self.window),
                show(baseline),
            ),
        )
    }
}
