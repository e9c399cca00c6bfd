//! Alert rules on judge scores and span latency.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Duration, NAME_PATTERN};

/// A windowed alert rule, evaluated per group.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.condition.regression) || duration(self.condition.regression.baseline) > duration(self.window)").message("a regression baseline must be longer than the rule's window").field_path(".condition.regression.baseline"))]
#[x_kube(validation = Rule::new("!has(self.condition.drift) || duration(self.condition.drift.baseline) > duration(self.window)").message("a drift baseline must be longer than the rule's window").field_path(".condition.drift.baseline"))]
#[x_kube(validation = Rule::new("has(self.metric.drift) == has(self.condition.drift)").message("a drift metric takes a drift condition, and a drift condition a drift metric").field_path(".condition"))]
// The score stream keeps scores `SCORES_MAX_AGE` (192h): a new alert leader rebuilds the
// windows from it, so a rule cannot look back further.
#[x_kube(validation = Rule::new("duration(self.window) + (has(self.condition.regression) ? duration(self.condition.regression.baseline) : has(self.condition.drift) ? duration(self.condition.drift.baseline) : duration('0s')) <= duration('192h')").message("window + baseline must fit in the 8 days (192h) scores are kept: alert windows are rebuilt from them").field_path(".window"))]
#[x_kube(validation = Rule::new("!has(self.metric.judge) || self.metric.aggregate == 'count' || ((!has(self.condition.above) || (self.condition.above >= 0.0 && self.condition.above <= 1.0)) && (!has(self.condition.below) || (self.condition.below >= 0.0 && self.condition.below <= 1.0)))").message("judge scores, pass rates and error rates are between 0 and 1: write 0.85, not 85").field_path(".condition"))]
#[x_kube(validation = Rule::new("!has(self.groupExpiry) || has(self.groupBy)").message("groupExpiry retires groups: it needs groupBy").field_path(".groupExpiry"))]
#[x_kube(validation = Rule::new("!has(self.groupExpiry) || duration(self.groupExpiry) > duration(self.window)").message("groupExpiry must be longer than the window: a group is only absent once a whole window has passed without it").field_path(".groupExpiry"))]
pub struct AlertRule {
    #[schemars(length(min = 1, max = 63), regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// What is measured.
    pub metric: AlertMetric,
    /// Sliding window the metric is computed over, e.g. `10m`.
    pub window: Duration,
    /// Fewest samples in the window before the rule may fire. Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_samples: Option<i64>,
    /// Span attributes to evaluate the rule per value of (e.g. `gen_ai.request.model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4))]
    pub group_by: Option<Vec<String>>,
    /// Most groups tracked; further groups are folded into `__other__`. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_groups: Option<i32>,
    /// When the rule is true.
    pub condition: AlertCondition,
    /// How long the condition must hold before firing. Default 0 (fire at once).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "for")]
    pub for_: Option<Duration>,
    /// How long the condition must stay false before resolving. Default 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_for: Option<Duration>,
    /// What an empty window means: `keepState` (default), `resolve`, or `alert` (page on
    /// missing traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data: Option<NoDataPolicy>,
    pub severity: Severity,
    /// Name of an entry in `spec.routes`.
    #[schemars(length(min = 1, max = 63))]
    pub route: String,
    /// Re-send a still-firing alert this often. Default: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<Duration>,
    /// Retire a group after this long without samples (e.g. `168h`): a firing alert of it
    /// is resolved, its state forgotten and its place under `maxGroups` freed — for groups
    /// gone on purpose, such as a model retired after a `noData: alert` page. Grouped
    /// rules only; longer than `window`. Default: groups are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_expiry: Option<Duration>,
}

/// A judge's scores with an aggregate, selected spans' latency, their time to first
/// token, or the drift of their inputs' or outputs' meaning.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.judge), has(self.latency), has(self.timeToFirstToken), has(self.drift)].filter(x, x).size() == 1").message("a metric needs exactly one of judge, latency, timeToFirstToken or drift"))]
#[x_kube(validation = Rule::new("has(self.judge) == has(self.aggregate)").message("a judge metric needs an aggregate; a latency, timeToFirstToken or drift metric takes none").field_path(".aggregate"))]
pub struct AlertMetric {
    /// Name of a judge in `spec.judges`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub judge: Option<String>,
    /// How the judge's scores are aggregated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Aggregate>,
    /// A latency statistic of the selected spans, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyStatistic>,
    /// A statistic of the selected spans' time to first token, in milliseconds — of the
    /// streaming calls that record it (spans without one are not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_first_token: Option<LatencyStatistic>,
    /// The meaning of the selected spans' `input` (what users ask) or `output` (what the
    /// model answers), as sentence embeddings: the window compared with a baseline (needs
    /// `condition.drift` and an embedding model in the install).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftFieldName>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum DriftFieldName {
    Input,
    Output,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Aggregate {
    /// Mean score.
    Mean,
    /// Share of verdicts that passed.
    PassRate,
    /// Share of evaluations that ended in a judge error.
    ErrorRate,
    /// Number of evaluations.
    Count,
    P50,
    P95,
    P99,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum LatencyStatistic {
    Mean,
    P50,
    P95,
    P99,
}

/// Exactly one of a static threshold or a baseline regression.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.above), has(self.below), has(self.regression), has(self.drift)].filter(x, x).size() == 1").message("a condition needs exactly one of above, below, regression or drift"))]
pub struct AlertCondition {
    /// True when the metric is above this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// True when the metric is below this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// True when the window is significantly worse than a trailing baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<Regression>,
    /// True when the window's embeddings have moved away from the baseline's (drift
    /// metrics only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftCondition>,
}

/// Compares the window's embeddings with the trailing baseline's (which excludes the
/// window) by the distance between their centroids. Fires only when that distance exceeds
/// `minDistance` and a permutation test at `confidence` says the two samples are not one
/// distribution, so a small or noisy window does not page. Up to 200 embeddings per side
/// take part (a uniform sample beyond that).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriftCondition {
    /// Trailing baseline period, e.g. `24h`. Must exceed the rule's window.
    pub baseline: Duration,
    /// Smallest distance between the centroids (unit vectors: 0 = same centre) that
    /// counts as drift. Default 0.1. (all-MiniLM-L6-v2: two samples of one topic lie
    /// ~0.05–0.1 apart, a shift to another topic ~0.4–0.8.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub min_distance: Option<f64>,
    /// Confidence of the permutation test. Default 0.99 (999 permutations; more for
    /// higher confidence, up to 9,999).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.5, max = 0.9999))]
    pub confidence: Option<f64>,
}

/// Compares the window to the trailing baseline (which excludes the window). Fires only
/// when a one-sided significance test at `confidence` shows the window is worse than the
/// baseline by more than the allowed relative change (not merely worse), so small or noisy
/// samples do not page.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.maxRelativeDrop) != has(self.maxRelativeRise)").message("set exactly one of maxRelativeDrop (higher is better) or maxRelativeRise (lower is better)"))]
pub struct Regression {
    /// Trailing baseline period, e.g. `24h`. Must exceed the rule's window.
    pub baseline: Duration,
    /// Largest tolerated drop relative to the baseline, e.g. 0.10 for 10%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_relative_drop: Option<f64>,
    /// Largest tolerated rise relative to the baseline, e.g. 0.5 for +50% (latency, cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_relative_rise: Option<f64>,
    /// Confidence of the significance test (two-proportion z-test with Agresti–Caffo
    /// correction for pass/error rates, Welch's t-test for means, and for quantiles on the
    /// samples' means). Default 0.99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.5, max = 0.9999))]
    pub confidence: Option<f64>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum NoDataPolicy {
    KeepState,
    Resolve,
    Alert,
}

/// PagerDuty severities (webhooks receive the same value).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}
