//! An alert rule and its evaluation over a group's samples.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::stats::{Moments, two_proportion_p_value, welch_p_value};
use super::window::{Aggregate, BucketSeries, Sample};
use crate::ids::TraceId;
use crate::judge::Outcome;
use crate::score::SpanEvaluation;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregation {
    Mean,
    PassRate,
    ErrorRate,
    Count,
    Quantile(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Judge {
        judge: String,
        aggregation: Aggregation,
    },
    /// Span latency in milliseconds: `Mean` or `Quantile`.
    Latency(Aggregation),
    /// Time to first token in milliseconds, of the spans that record one.
    TimeToFirstToken(Aggregation),
    /// The embeddings of a span field: the window's compared with the baseline's.
    Drift(DriftField),
}

/// The span field a drift rule compares (what users ask, or what the model answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DriftField {
    Input,
    Output,
}

impl DriftField {
    /// The key of the field's embedding in a span evaluation.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Output => "output",
        }
    }

    pub fn span_field(self) -> crate::field::SpanField {
        match self {
            Self::Input => crate::field::SpanField::Input,
            Self::Output => crate::field::SpanField::Output,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Threshold {
    Above(f64),
    Below(f64),
    Regression {
        baseline: Duration,
        max_drop: Option<f64>,
        max_rise: Option<f64>,
        confidence: f64,
    },
    /// Drift rules: the window's embeddings lie further than `min_distance` (between
    /// centroids) from the baseline's, and a permutation test at `confidence` says the
    /// two are not one distribution.
    Drift {
        baseline: Duration,
        min_distance: f64,
        confidence: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoData {
    KeepState,
    Resolve,
    Alert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub name: String,
    pub metric: Metric,
    pub window: Duration,
    pub min_samples: u64,
    pub group_by: Vec<String>,
    pub max_groups: usize,
    pub threshold: Threshold,
    pub for_: Duration,
    pub clear_for: Duration,
    pub no_data: NoData,
    pub severity: Severity,
    pub route: String,
    pub repeat_interval: Option<Duration>,
    /// A group without samples for this long is retired: resolved if firing, then
    /// forgotten (grouped rules only). `None`: groups are kept.
    pub group_expiry: Option<Duration>,
}

/// What the rule concluded at one moment.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Holds,
    Clear,
    /// No samples in the window.
    NoData,
    /// Fewer than `minSamples` (window or baseline): no conclusion.
    TooFewSamples,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleEvaluation {
    pub verdict: Verdict,
    pub value: Option<f64>,
    pub baseline: Option<f64>,
    pub samples: u64,
    /// E.g. `grounded mean 0.62 < 0.85`.
    pub description: String,
    pub examples: Vec<TraceId>,
}

impl Aggregation {
    fn measure(self, aggregate: &Aggregate) -> Option<f64> {
        match self {
            Self::Mean => aggregate.mean(),
            Self::PassRate => aggregate.pass_rate(),
            Self::ErrorRate => aggregate.error_rate(),
            Self::Count => Some((aggregate.count + aggregate.errors) as f64),
            Self::Quantile(q) => aggregate.quantile(q),
        }
    }

    pub fn name(self) -> String {
        match self {
            Self::Mean => "mean".into(),
            Self::PassRate => "pass rate".into(),
            Self::ErrorRate => "error rate".into(),
            Self::Count => "count".into(),
            Self::Quantile(q) => format!("p{}", (q * 100.0).round()),
        }
    }
}

impl AlertRule {
    /// The sample this rule takes from an evaluation, if any.
    pub fn sample(&self, evaluation: &SpanEvaluation) -> Option<Sample> {
        match &self.metric {
            Metric::Latency(_) => Some(Sample::Measurement(evaluation.latency_ms)),
            Metric::TimeToFirstToken(_) => {
                evaluation.time_to_first_token_ms.map(Sample::Measurement)
            }
            Metric::Drift(field) => {
                let vector = evaluation.embeddings.get(field.as_str())?;
                Some(Sample::Embedding(super::drift::KeyedVector {
                    key: crate::hashing::drift_sample_key(&evaluation.id),
                    vector: vector.clone(),
                }))
            }
            Metric::Judge { judge, .. } => match &evaluation.score(judge)?.outcome {
                Outcome::Scored(verdict) => Some(Sample::Verdict {
                    value: verdict.value,
                    passed: verdict.passed,
                }),
                Outcome::Failed(_) => Some(Sample::JudgeError),
                Outcome::Skipped { .. } => None,
            },
        }
    }

    pub fn metric_name(&self) -> String {
        match &self.metric {
            Metric::Judge { judge, aggregation } => format!("{judge} {}", aggregation.name()),
            Metric::Latency(aggregation) => format!("latency {} (ms)", aggregation.name()),
            Metric::TimeToFirstToken(aggregation) => {
                format!("time to first token {} (ms)", aggregation.name())
            }
            Metric::Drift(field) => format!("{} drift", field.as_str()),
        }
    }

    fn aggregation(&self) -> Aggregation {
        match &self.metric {
            Metric::Judge { aggregation, .. }
            | Metric::Latency(aggregation)
            | Metric::TimeToFirstToken(aggregation) => *aggregation,
            Metric::Drift(_) => Aggregation::Count,
        }
    }

    pub fn baseline(&self) -> Option<Duration> {
        match self.threshold {
            Threshold::Regression { baseline, .. } | Threshold::Drift { baseline, .. } => {
                Some(baseline)
            }
            _ => None,
        }
    }

    /// Evaluates the rule at `now_ns` over the recent (window) and, for regressions, the
    /// trailing (baseline) series.
    pub fn evaluate(
        &self,
        recent: &BucketSeries,
        trailing: &BucketSeries,
        now_ns: u64,
    ) -> RuleEvaluation {
        let window_ns = self.window.as_nanos() as u64;
        let start = now_ns.saturating_sub(window_ns);
        let window = recent.range(start, now_ns.saturating_add(1));
        let aggregation = self.aggregation();
        let samples = window.count + window.errors;
        let value = aggregation.measure(&window);
        let examples: Vec<TraceId> = window.examples.iter().copied().collect();
        let metric = self.metric_name();
        let result = |verdict, baseline, description: String| RuleEvaluation {
            verdict,
            value,
            baseline,
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
        if samples < self.min_samples {
            return result(
                Verdict::TooFewSamples,
                None,
                format!("{samples} samples (< {})", self.min_samples),
            );
        }
        let Some(value) = value else {
            return result(
                Verdict::TooFewSamples,
                None,
                format!("no {metric} in the window"),
            );
        };
        match &self.threshold {
            // Drift rules test embeddings, not this aggregate (one test, uncached, here).
            Threshold::Drift { .. } => {
                self.evaluate_cached(recent, trailing, now_ns, &mut super::DriftCache::default())
            }
            Threshold::Above(limit) => {
                let holds = value > *limit;
                let verdict = if holds {
                    Verdict::Holds
                } else {
                    Verdict::Clear
                };
                result(
                    verdict,
                    None,
                    format!(
                        "{metric} {} {} {limit} over {}",
                        fmt(value),
                        if holds { ">" } else { "<=" },
                        show(self.window)
                    ),
                )
            }
            Threshold::Below(limit) => {
                let holds = value < *limit;
                let verdict = if holds {
                    Verdict::Holds
                } else {
                    Verdict::Clear
                };
                result(
                    verdict,
                    None,
                    format!(
                        "{metric} {} {} {limit} over {}",
                        fmt(value),
                        if holds { "<" } else { ">=" },
                        show(self.window)
                    ),
                )
            }
            Threshold::Regression {
                baseline,
                max_drop,
                max_rise,
                confidence,
            } => {
                let baseline_ns = baseline.as_nanos() as u64;
                let base = trailing.range(start.saturating_sub(baseline_ns), start);
                let base_samples = base.count + base.errors;
                let Some(base_value) = aggregation
                    .measure(&base)
                    .filter(|_| base_samples >= self.min_samples.max(1))
                else {
                    return result(
                        Verdict::TooFewSamples,
                        None,
                        format!(
                            "{base_samples} baseline samples (< {})",
                            self.min_samples.max(1)
                        ),
                    );
                };
                let lower_is_worse = max_drop.is_some();
                let relative = if base_value == 0.0 {
                    if value == 0.0 { 0.0 } else { f64::INFINITY }
                } else if lower_is_worse {
                    (base_value - value) / base_value.abs()
                } else {
                    (value - base_value) / base_value.abs()
                };
                let limit = max_drop.or(*max_rise).unwrap_or(0.0);
                // H0: the window is within the allowed change of the baseline.
                let ratio = if lower_is_worse {
                    1.0 - limit
                } else {
                    1.0 + limit
                };
                let p_value = match aggregation {
                    Aggregation::PassRate => two_proportion_p_value(
                        window.passed,
                        window.count,
                        base.passed,
                        base.count,
                        ratio,
                        lower_is_worse,
                    ),
                    Aggregation::ErrorRate => two_proportion_p_value(
                        window.errors,
                        samples,
                        base.errors,
                        base_samples,
                        ratio,
                        lower_is_worse,
                    ),
                    // Counts have no per-sample variance: the relative change alone decides.
                    Aggregation::Count => Some(0.0),
                    // Means directly; quantiles via their samples' means (a documented approximation).
                    Aggregation::Mean | Aggregation::Quantile(_) => {
                        match (
                            Moments::from_sums(window.count, window.sum, window.sum_of_squares),
                            Moments::from_sums(base.count, base.sum, base.sum_of_squares),
                        ) {
                            (Some(w), Some(b)) => welch_p_value(w, b, ratio, lower_is_worse),
                            _ => None,
                        }
                    }
                };
                let Some(p_value) = p_value else {
                    return result(
                        Verdict::TooFewSamples,
                        Some(base_value),
                        "too few samples for a significance test".into(),
                    );
                };
                let significant = p_value < 1.0 - confidence;
                let holds = relative > limit && significant;
                let verdict = if holds {
                    Verdict::Holds
                } else {
                    Verdict::Clear
                };
                let direction = if lower_is_worse { "drop" } else { "rise" };
                result(
                    verdict,
                    Some(base_value),
                    format!(
                        "{metric} {} vs baseline {} ({direction} {:.1}%, limit {:.1}%, p={p_value:.2e}) over {}",
                        fmt(value),
                        fmt(base_value),
                        relative * 100.0,
                        limit * 100.0,
                        show(self.window)
                    ),
                )
            }
        }
    }
}

fn fmt(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

pub fn show(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{}s", duration.as_secs_f64())
    }
}
