//! EvalPolicy alert rules and routes → the alert engine's rules and the notifiers' targets.

use std::time::Duration;

use umpire_core::alert::rule::{
    Aggregation, AlertRule as CoreRule, DriftField, Metric, NoData, Severity as CoreSeverity,
    Threshold,
};

use crate::common::SecretKeyRef;
use crate::eval_policy::{
    Aggregate, AlertRule, DriftFieldName, EvalPolicySpec, LatencyStatistic, NoDataPolicy,
    PAGERDUTY_EVENTS_URL, Route, Severity,
};

pub const DEFAULT_MIN_SAMPLES: u64 = 20;
pub const DEFAULT_MAX_GROUPS: usize = 100;
pub const DEFAULT_CLEAR_FOR: Duration = Duration::from_secs(60);
pub const DEFAULT_CONFIDENCE: f64 = 0.99;

/// Where a route delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteTarget {
    PagerDuty {
        url: String,
        routing_key: SecretKeyRef,
        component: Option<String>,
        class: Option<String>,
    },
    Webhook {
        url: WebhookUrl,
        hmac_key: Option<SecretKeyRef>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum WebhookUrl {
    Plain(String),
    Secret(SecretKeyRef),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRoute {
    pub name: String,
    pub target: RouteTarget,
    /// Retried this long, then dead-lettered.
    pub max_delivery_age: std::time::Duration,
}

/// How long a notification is retried when the route does not say.
pub const DEFAULT_MAX_DELIVERY_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl PlannedRoute {
    /// The Secret keys the route reads (mounted into evaluator pods).
    pub fn secrets(&self) -> Vec<&SecretKeyRef> {
        match &self.target {
            RouteTarget::PagerDuty { routing_key, .. } => vec![routing_key],
            RouteTarget::Webhook { url, hmac_key } => {
                let url = match url {
                    WebhookUrl::Secret(secret) => Some(secret),
                    WebhookUrl::Plain(_) => None,
                };
                url.into_iter().chain(hmac_key).collect()
            }
        }
    }
}

pub fn plan_alerts(spec: &EvalPolicySpec) -> Vec<CoreRule> {
    spec.alerts.iter().flatten().map(plan_rule).collect()
}

pub fn plan_routes(spec: &EvalPolicySpec) -> Vec<PlannedRoute> {
    spec.routes
        .iter()
        .flatten()
        .filter_map(plan_route)
        .collect()
}

fn statistic(statistic: LatencyStatistic) -> Aggregation {
    match statistic {
        LatencyStatistic::Mean => Aggregation::Mean,
        LatencyStatistic::P50 => Aggregation::Quantile(0.5),
        LatencyStatistic::P95 => Aggregation::Quantile(0.95),
        LatencyStatistic::P99 => Aggregation::Quantile(0.99),
    }
}

/// Centroid distance a drift rule needs by default (see `DriftCondition::min_distance`).
pub const DEFAULT_DRIFT_DISTANCE: f64 = 0.1;

fn plan_rule(rule: &AlertRule) -> CoreRule {
    let metric = match (
        &rule.metric.judge,
        rule.metric.aggregate,
        rule.metric.latency,
    ) {
        (Some(judge), Some(aggregate), _) => Metric::Judge {
            judge: judge.clone(),
            aggregation: aggregation(aggregate),
        },
        (_, _, Some(latency)) => Metric::Latency(statistic(latency)),
        _ if rule.metric.drift.is_some() => Metric::Drift(match rule.metric.drift {
            Some(DriftFieldName::Input) => DriftField::Input,
            _ => DriftField::Output,
        }),
        _ if rule.metric.time_to_first_token.is_some() => Metric::TimeToFirstToken(statistic(
            rule.metric
                .time_to_first_token
                .unwrap_or(LatencyStatistic::Mean),
        )),
        // The schema's CEL rules make this unreachable for admitted objects.
        _ => Metric::Latency(Aggregation::Mean),
    };
    let condition = &rule.condition;
    let threshold = if let Some(drift) = &condition.drift {
        Threshold::Drift {
            baseline: drift.baseline.as_std(),
            min_distance: drift.min_distance.unwrap_or(DEFAULT_DRIFT_DISTANCE),
            confidence: drift.confidence.unwrap_or(DEFAULT_CONFIDENCE),
        }
    } else if let Some(regression) = &condition.regression {
        Threshold::Regression {
            baseline: regression.baseline.as_std(),
            max_drop: regression.max_relative_drop,
            max_rise: regression.max_relative_rise,
            confidence: regression.confidence.unwrap_or(DEFAULT_CONFIDENCE),
        }
    } else if let Some(above) = condition.above {
        Threshold::Above(above)
    } else {
        Threshold::Below(condition.below.unwrap_or(f64::NEG_INFINITY))
    };
    CoreRule {
        name: rule.name.clone(),
        metric,
        window: rule.window.as_std(),
        min_samples: rule
            .min_samples
            .and_then(|m| u64::try_from(m).ok())
            .unwrap_or(DEFAULT_MIN_SAMPLES),
        group_by: rule.group_by.clone().unwrap_or_default(),
        max_groups: rule
            .max_groups
            .and_then(|m| usize::try_from(m).ok())
            .unwrap_or(DEFAULT_MAX_GROUPS),
        threshold,
        for_: rule.for_.as_ref().map(|d| d.as_std()).unwrap_or_default(),
        clear_for: rule
            .clear_for
            .as_ref()
            .map_or(DEFAULT_CLEAR_FOR, |d| d.as_std()),
        no_data: match rule.no_data.unwrap_or(NoDataPolicy::KeepState) {
            NoDataPolicy::KeepState => NoData::KeepState,
            NoDataPolicy::Resolve => NoData::Resolve,
            NoDataPolicy::Alert => NoData::Alert,
        },
        severity: match rule.severity {
            Severity::Critical => CoreSeverity::Critical,
            Severity::Error => CoreSeverity::Error,
            Severity::Warning => CoreSeverity::Warning,
            Severity::Info => CoreSeverity::Info,
        },
        route: rule.route.clone(),
        repeat_interval: rule.repeat_interval.as_ref().map(|d| d.as_std()),
        group_expiry: rule.group_expiry.as_ref().map(|d| d.as_std()),
    }
}

fn aggregation(aggregate: Aggregate) -> Aggregation {
    match aggregate {
        Aggregate::Mean => Aggregation::Mean,
        Aggregate::PassRate => Aggregation::PassRate,
        Aggregate::ErrorRate => Aggregation::ErrorRate,
        Aggregate::Count => Aggregation::Count,
        Aggregate::P50 => Aggregation::Quantile(0.5),
        Aggregate::P95 => Aggregation::Quantile(0.95),
        Aggregate::P99 => Aggregation::Quantile(0.99),
    }
}

fn plan_route(route: &Route) -> Option<PlannedRoute> {
    let target = if let Some(pd) = &route.pager_duty {
        RouteTarget::PagerDuty {
            url: pd
                .url
                .clone()
                .unwrap_or_else(|| PAGERDUTY_EVENTS_URL.to_owned()),
            routing_key: pd.routing_key_secret_ref.clone(),
            component: pd.component.clone(),
            class: pd.class.clone(),
        }
    } else {
        let hook = route.webhook.as_ref()?;
        let url = match (&hook.url, &hook.url_secret_ref) {
            (Some(url), _) => WebhookUrl::Plain(url.clone()),
            (None, Some(secret)) => WebhookUrl::Secret(secret.clone()),
            (None, None) => return None,
        };
        RouteTarget::Webhook {
            url,
            hmac_key: hook.hmac_secret_ref.clone(),
        }
    };
    Some(PlannedRoute {
        name: route.name.clone(),
        target,
        max_delivery_age: route
            .max_delivery_age
            .as_ref()
            .map_or(DEFAULT_MAX_DELIVERY_AGE, |d| d.as_std()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> EvalPolicySpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn the_product_briefs_rules_compile_with_documented_defaults() {
        let spec = spec(
            r#"
projectRef: {name: bot}
judges: [{name: grounded, latency: {maxMs: 10}}]
alerts:
  - {name: grounded-drop, metric: {judge: grounded, aggregate: mean}, window: 10m, minSamples: 50, condition: {below: 0.85}, for: 2m, severity: critical, route: oncall}
  - name: grounded-regression
    metric: {judge: grounded, aggregate: passRate}
    window: 15m
    groupBy: [gen_ai.request.model]
    condition: {regression: {baseline: 24h, maxRelativeDrop: 0.10}}
    groupExpiry: 72h
    severity: error
    route: oncall
  - {name: slow, metric: {latency: p95}, window: 5m, condition: {above: 8000}, severity: warning, route: team-hook, noData: alert, repeatInterval: 4h}
routes:
  - {name: oncall, pagerDuty: {routingKeySecretRef: {name: pd, key: routing-key}}}
  - {name: team-hook, webhook: {urlSecretRef: {name: hooks, key: team}, hmacSecretRef: {name: hooks, key: hmac}}}
"#,
        );
        let rules = plan_alerts(&spec);
        assert_eq!(rules[0].threshold, Threshold::Below(0.85));
        assert_eq!(
            (rules[0].min_samples, rules[0].for_),
            (50, Duration::from_secs(120))
        );
        assert_eq!(rules[0].clear_for, DEFAULT_CLEAR_FOR);
        assert_eq!(
            rules[1].threshold,
            Threshold::Regression {
                baseline: Duration::from_secs(86_400),
                max_drop: Some(0.10),
                max_rise: None,
                confidence: DEFAULT_CONFIDENCE
            }
        );
        assert_eq!(rules[1].min_samples, DEFAULT_MIN_SAMPLES);
        assert_eq!(rules[1].max_groups, DEFAULT_MAX_GROUPS);
        assert_eq!(
            (rules[0].group_expiry, rules[1].group_expiry),
            (None, Some(Duration::from_secs(72 * 3600)))
        );
        assert_eq!(
            rules[2].metric,
            Metric::Latency(Aggregation::Quantile(0.95))
        );
        assert_eq!(rules[2].no_data, NoData::Alert);
        assert_eq!(
            rules[2].repeat_interval,
            Some(Duration::from_secs(4 * 3600))
        );

        let routes = plan_routes(&spec);
        assert_eq!(
            routes[0].target,
            RouteTarget::PagerDuty {
                url: PAGERDUTY_EVENTS_URL.into(),
                routing_key: SecretKeyRef {
                    name: "pd".into(),
                    key: "routing-key".into()
                },
                component: None,
                class: None
            }
        );
        assert_eq!(routes[1].secrets().len(), 2);
    }
}
