//! The metric names Umpire's processes export, read from the same registries they serve.

use std::collections::BTreeSet;

use prometheus_client::registry::Registry;

/// Sample names a registry exposes: counters as `_total`, histograms as `_bucket`, `_sum`
/// and `_count`, as Prometheus stores them.
fn sample_names(registry: &Registry) -> BTreeSet<String> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(declaration) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = declaration.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The metric names the processes export. A labelled family is encoded only once it has a
/// series, so each family gets one here, as running processes would give it — through the
/// evaluator's own recording of judge results where there is one.
pub fn exported() -> BTreeSet<String> {
    use umpire_alerting::metrics as alerts;
    use umpire_core::judge::{JudgeErrorKind, JudgeUsage, Outcome, SkipReason};
    use umpire_ingest::metrics as ingest;

    let (registry, metrics, export) = umpire_ingest::metrics_registry();
    let protocol = ingest::Protocol::Http;
    metrics
        .requests
        .get_or_create(&ingest::RequestLabels {
            protocol,
            outcome: ingest::Outcome::Accepted,
        })
        .inc();
    metrics
        .request_duration
        .get_or_create(&ingest::ProtocolLabels { protocol })
        .observe(0.001);
    let reason = ingest::ReasonLabels {
        reason: "root_missing".into(),
    };
    for family in [
        &metrics.spans_rejected,
        &metrics.late_spans,
        &metrics.early_decisions,
        &metrics.traces_incomplete,
    ] {
        family.get_or_create(&reason).inc();
    }
    metrics
        .traces_kept
        .get_or_create(&ingest::PolicyLabels {
            policy: "errors".into(),
        })
        .inc();
    metrics
        .admission_refused
        .get_or_create(&ingest::AdmissionLabels {
            protocol,
            reason: "budget",
        })
        .inc();
    let target = umpire_export::metrics::TargetLabels {
        target: "phoenix".into(),
        signal: "spans",
    };
    export.sent.get_or_create(&target).inc();
    export.rejected.get_or_create(&target).inc();
    export.lag.get_or_create(&target).set(1);
    export
        .traces
        .get_or_create(&umpire_export::metrics::DecisionLabels {
            target: "phoenix".into(),
            decision: "failed",
        })
        .inc();
    export
        .failures
        .get_or_create(&umpire_export::metrics::FailureLabels {
            target: "phoenix".into(),
            signal: "spans",
            kind: "retryable",
        })
        .inc();
    let mut names = sample_names(&registry);

    let (registry, metrics, alerting) = umpire_evaluator::metrics_registry();
    let usage = JudgeUsage {
        input_tokens: 10,
        output_tokens: 2,
        cost_usd: Some(0.01),
    };
    let mut scored = Outcome::pass(0.9, "grounded");
    if let Outcome::Scored(verdict) = &mut scored {
        verdict.usage = Some(usage);
    }
    for outcome in [
        scored,
        Outcome::failed(JudgeErrorKind::MissingField, "no output"),
        Outcome::skipped(SkipReason::NotApplicable),
    ] {
        metrics.record(&umpire_evaluator::judging::JudgeResult {
            judge: "grounded".into(),
            outcome,
            latency_ms: 3.0,
        });
    }
    metrics
        .traces_incomplete
        .get_or_create(&umpire_evaluator::metrics::ReasonLabels {
            reason: "root_missing".into(),
        })
        .inc();
    let rule = alerts::RuleLabels {
        rule: "quality".into(),
    };
    alerting.firing.get_or_create(&rule).set(1);
    alerting.pending.get_or_create(&rule).set(0);
    alerting
        .transitions
        .get_or_create(&alerts::TransitionLabels {
            rule: "quality".into(),
            transition: "trigger",
        })
        .inc();
    alerting
        .snapshots
        .get_or_create(&alerts::SnapshotLabels { outcome: "saved" })
        .inc();
    let route = alerts::RouteLabels {
        route: "pagerduty".into(),
    };
    alerting
        .attempts
        .get_or_create(&alerts::AttemptLabels {
            route: "pagerduty".into(),
            result: "2xx".into(),
        })
        .inc();
    alerting
        .deliveries
        .get_or_create(&alerts::DeliveryLabels {
            route: "pagerduty".into(),
            outcome: "delivered",
        })
        .inc();
    alerting.delay.get_or_create(&route).observe(0.01);
    alerting.delivery_time.get_or_create(&route).observe(0.01);
    alerting.dead_lettered.get_or_create(&route).inc();
    alerting.groups_expired.get_or_create(&rule).inc();
    names.extend(sample_names(&registry));

    use umpire_controller::metrics as controller;
    let (registry, metrics) = umpire_controller::metrics_registry();
    let kind = controller::KindLabels { kind: "EvalPolicy" };
    metrics
        .reconciles
        .get_or_create(&controller::ResultLabels {
            kind: "EvalPolicy",
            result: "success",
        })
        .inc();
    metrics
        .failures
        .get_or_create(&controller::FailureLabels {
            kind: "EvalPolicy".into(),
            reason: "kube",
        })
        .inc();
    metrics.duration.get_or_create(&kind).observe(0.01);
    metrics.queue_depth.get_or_create(&kind).set(0);
    metrics.objects.get_or_create(&kind).set(1);
    names.extend(sample_names(&registry));
    names
}
