//! What `umpire eval` reports: per-judge aggregates, every span's verdicts, the table, and
//! the JUnit XML CI systems display.

use std::collections::BTreeMap;

use quick_junit::{NonSuccessKind, Report as JunitReport, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;
use umpire_core::judge::Outcome;
use umpire_core::span::Span;
use umpire_evaluator::judging::JudgeResult;

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JudgeReport {
    pub judge: String,
    pub kind: String,
    pub spans: u64,
    pub scored: u64,
    pub passed: u64,
    pub pass_rate: Option<f64>,
    pub mean_score: Option<f64>,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub skipped: u64,
    /// Means, over the scored spans that carry them, of a judge's several measurements
    /// (retrieval rating: precisionAtK, mrr, ndcgAtK, …).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mean_measurements: BTreeMap<String, f64>,
    #[serde(skip)]
    pub score_sum: f64,
    /// Sum and count per measurement, for the means.
    #[serde(skip)]
    measurement_sums: BTreeMap<String, (f64, u64)>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Report {
    pub policy: String,
    pub spans_read: usize,
    pub spans_selected: usize,
    pub judges: Vec<JudgeReport>,
    pub gate_failures: Vec<String>,
    /// Every selected span's verdict from every judge.
    pub verdicts: Vec<SpanVerdict>,
}

impl JudgeReport {
    pub(super) fn new(judge: &str, kind: &str) -> Self {
        Self {
            judge: judge.to_owned(),
            kind: kind.to_owned(),
            ..Self::default()
        }
    }

    pub(super) fn record(&mut self, outcome: &Outcome) {
        self.spans += 1;
        match outcome {
            Outcome::Scored(verdict) => {
                self.scored += 1;
                self.passed += u64::from(verdict.passed);
                self.score_sum += verdict.value;
                for (name, value) in verdict.measurements.iter().flat_map(|m| m.iter()) {
                    let sum = self.measurement_sums.entry(name.clone()).or_default();
                    sum.0 += value;
                    sum.1 += 1;
                }
            }
            Outcome::Failed(failure) => {
                self.errors += 1;
                *self
                    .errors_by_kind
                    .entry(failure.kind.as_str().to_owned())
                    .or_default() += 1;
            }
            Outcome::Skipped { .. } => self.skipped += 1,
        }
    }

    pub(super) fn finish(&mut self) {
        if self.scored > 0 {
            self.pass_rate = Some(self.passed as f64 / self.scored as f64);
            self.mean_score = Some(self.score_sum / self.scored as f64);
        }
        self.mean_measurements = self
            .measurement_sums
            .iter()
            .map(|(name, (sum, count))| (name.clone(), sum / *count as f64))
            .collect();
    }
}

/// One judge's verdict on one span, as CI output shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpanVerdict {
    pub trace_id: String,
    pub span_id: String,
    pub span_name: String,
    pub judge: String,
    /// `pass`, `fail`, `error` or `skipped`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
    /// A judge's several measurements (retrieval rating: precisionAtK, mrr, ndcgAtK, …).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub measurements: BTreeMap<String, f64>,
}

impl SpanVerdict {
    pub(super) fn new(span: &Span, result: &JudgeResult) -> Self {
        let mut verdict = Self {
            trace_id: span.trace_id.to_string(),
            span_id: span.span_id.to_string(),
            span_name: span.name.clone(),
            judge: result.judge.clone(),
            result: "skipped",
            score: None,
            label: None,
            explanation: None,
            error_kind: None,
            measurements: BTreeMap::new(),
        };
        match &result.outcome {
            Outcome::Scored(scored) => {
                verdict.result = if scored.passed { "pass" } else { "fail" };
                verdict.score = Some(scored.value);
                verdict.label = scored.label.clone();
                verdict.explanation = scored.explanation.clone();
                verdict.measurements = scored.measurements.as_deref().cloned().unwrap_or_default();
            }
            Outcome::Failed(failure) => {
                verdict.result = "error";
                verdict.error_kind = Some(failure.kind.as_str());
                verdict.explanation = Some(failure.message.clone());
            }
            Outcome::Skipped { reason } => {
                verdict.explanation = Some(reason.as_str().to_owned());
            }
        }
        verdict
    }
}

/// The JUnit XML report: a suite per judge, a test case per span it judged — failed
/// verdicts as failures (message: the explanation), judge errors as errors (type: the
/// error kind), skips as skipped.
pub(super) fn junit(report: &Report) -> anyhow::Result<String> {
    let mut junit = JunitReport::new(format!("umpire eval {}", report.policy));
    let mut suites: BTreeMap<&str, TestSuite> = BTreeMap::new();
    let order: Vec<&str> = report.judges.iter().map(|j| j.judge.as_str()).collect();
    for verdict in &report.verdicts {
        let mut status = match verdict.result {
            "pass" => TestCaseStatus::success(),
            "skipped" => TestCaseStatus::skipped(),
            "error" => TestCaseStatus::non_success(NonSuccessKind::Error),
            _ => TestCaseStatus::non_success(NonSuccessKind::Failure),
        };
        if verdict.result != "pass" {
            let message = match (verdict.score, &verdict.explanation) {
                (Some(score), Some(explanation)) => format!("score {score:.3}: {explanation}"),
                (Some(score), None) => format!("score {score:.3}"),
                (None, Some(explanation)) => explanation.clone(),
                (None, None) => String::new(),
            };
            status.set_message(message);
            if let Some(kind) = verdict.error_kind {
                status.set_type(kind);
            }
        }
        let mut case = TestCase::new(
            format!(
                "{} [{}-{}]",
                verdict.span_name, verdict.trace_id, verdict.span_id
            ),
            status,
        );
        case.set_classname(format!("{}.{}", report.policy, verdict.judge));
        suites
            .entry(verdict.judge.as_str())
            .or_insert_with(|| TestSuite::new(format!("{}/{}", report.policy, verdict.judge)))
            .add_test_case(case);
    }
    for judge in order {
        if let Some(suite) = suites.remove(judge) {
            junit.add_test_suite(suite);
        }
    }
    Ok(junit.to_string()?)
}

pub(super) fn print_table(report: &Report) {
    println!(
        "policy {}: {} spans read, {} selected",
        report.policy, report.spans_read, report.spans_selected
    );
    println!(
        "{:<24} {:<12} {:>6} {:>7} {:>10} {:>7} {:>7} {:>8}",
        "JUDGE", "KIND", "SPANS", "SCORED", "PASS RATE", "MEAN", "ERRORS", "SKIPPED"
    );
    for j in &report.judges {
        let rate = j
            .pass_rate
            .map(|r| format!("{:.1}%", r * 100.0))
            .unwrap_or_else(|| "-".into());
        let mean = j
            .mean_score
            .map(|m| format!("{m:.3}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<24} {:<12} {:>6} {:>7} {:>10} {:>7} {:>7} {:>8}",
            j.judge, j.kind, j.spans, j.scored, rate, mean, j.errors, j.skipped
        );
        for (kind, count) in &j.errors_by_kind {
            println!("{:<24}   error {kind}: {count}", "");
        }
        if !j.mean_measurements.is_empty() {
            let means: Vec<String> = j
                .mean_measurements
                .iter()
                .map(|(name, mean)| format!("{name} {mean:.3}"))
                .collect();
            println!("{:<24}   mean {}", "", means.join(", "));
        }
    }
    if report.gate_failures.is_empty() {
        println!("gate: passed");
    } else {
        for failure in &report.gate_failures {
            println!("gate failed: {failure}");
        }
    }
}
