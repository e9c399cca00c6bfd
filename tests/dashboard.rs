//! The Grafana dashboard the chart ships: every metric its queries read is one the
//! processes export (names taken from the same registries the processes serve), and the
//! chart's ConfigMap carries the dashboard file unchanged, labelled for Grafana's sidecar.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use support::metrics::exported;
use support::tools::{documents, render_chart, repo};

const DASHBOARD: &str = "charts/umpire/dashboards/umpire.json";

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join(DASHBOARD)).unwrap()).unwrap()
}

/// Every PromQL expression in the dashboard: panel targets and template variables.
fn queries(dashboard: &Value) -> Vec<String> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            queries.push(query.to_owned());
        }
    }
    queries
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let exported = exported();
    // A sanity check on the reading of the registries, so an empty set cannot pass.
    assert!(
        exported.contains("umpire_evaluator_judgements_total")
            && exported.contains("umpire_ingest_request_duration_seconds_bucket"),
        "{exported:#?}"
    );
    let dashboard = dashboard();
    let queries = queries(&dashboard);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let metric = regex::Regex::new(r"\bumpire_[a-z0-9_]+").unwrap();
    let mut used = BTreeSet::new();
    for query in &queries {
        let names: Vec<&str> = metric.find_iter(query).map(|m| m.as_str()).collect();
        assert!(!names.is_empty(), "a query reads no Umpire metric: {query}");
        for name in names {
            assert!(
                exported.contains(name),
                "the dashboard queries `{name}`, which no Umpire process exports:\n{query}"
            );
            used.insert(name.to_owned());
        }
    }
    // What the issue asks the dashboard to show, each by the metric that carries it.
    for (what, name) in [
        ("pass rates", "umpire_evaluator_judgements_total"),
        ("scores", "umpire_evaluator_scores_bucket"),
        ("judge errors", "umpire_evaluator_judge_errors_total"),
        ("LLM cost", "umpire_evaluator_llm_cost_usd_total"),
        ("ingest throughput", "umpire_ingest_spans_received_total"),
        ("sampling", "umpire_ingest_spans_kept_total"),
        ("evaluator lag", "umpire_evaluator_consumer_pending"),
        ("alert states", "umpire_alerts_firing"),
        (
            "notification delivery",
            "umpire_notifications_deliveries_total",
        ),
        ("export", "umpire_export_sent_total"),
    ] {
        assert!(used.contains(name), "no panel shows {what} ({name})");
    }
}

#[test]
fn the_dashboard_panels_are_well_formed() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "umpire-overview");
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate panel id"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            panel["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{panel}"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        let ref_ids: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(ref_ids.len(), targets.len(), "{}", panel["title"]);
    }
    // Variables the queries use are declared.
    let declared: BTreeSet<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let variable = regex::Regex::new(r"\$([a-z_]+)").unwrap();
    for query in queries(&dashboard) {
        for used in variable.captures_iter(&query) {
            let name = used.get(1).unwrap().as_str();
            assert!(
                name.starts_with("__") || declared.contains(name),
                "`${name}` is not a dashboard variable: {query}"
            );
        }
    }
}

fn is_dashboard(doc: &Value) -> bool {
    doc["kind"] == "ConfigMap"
        && doc["metadata"]["labels"]["app.kubernetes.io/component"] == "dashboard"
}

#[test]
fn the_chart_ships_the_dashboard_for_grafanas_sidecar() {
    let file = std::fs::read_to_string(repo().join(DASHBOARD)).unwrap();
    let docs = documents(&render_chart(&[]));
    let config_map = docs
        .iter()
        .find(|d| is_dashboard(d))
        .expect("the default rendering has the dashboard ConfigMap");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        config_map["data"]["umpire.json"].as_str().unwrap(),
        file.trim_end(),
        "the ConfigMap carries the dashboard file unchanged"
    );

    let docs = documents(&render_chart(&[Path::new(
        "tests/chart/values-everything.yaml",
    )]));
    let config_map = docs.iter().find(|d| is_dashboard(d)).unwrap();
    assert_eq!(config_map["metadata"]["namespace"], "monitoring");
    assert_eq!(
        config_map["metadata"]["annotations"]["grafana_folder"],
        "Umpire"
    );

    let off = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        off.path(),
        "metrics: {grafanaDashboard: {enabled: false}}\n",
    )
    .unwrap();
    let docs = documents(&render_chart(&[off.path()]));
    assert!(
        !docs.iter().any(is_dashboard),
        "the dashboard can be left out"
    );
    // The PodMonitor gives worker series the labels the dashboard groups by.
    let docs = documents(&render_chart(&[Path::new(
        "tests/chart/values-everything.yaml",
    )]));
    let monitor = docs.iter().find(|d| d["kind"] == "PodMonitor").unwrap();
    let targets: BTreeSet<&str> = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["targetLabel"].as_str().unwrap())
        .collect();
    assert_eq!(targets, BTreeSet::from(["project", "policy"]));
}
