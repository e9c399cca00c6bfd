//! Evaluator metrics (prefix `umpire_evaluator_`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use umpire_core::judge::Outcome;

use crate::judging::JudgeResult;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JudgeLabels {
    pub judge: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub judge: String,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub judge: String,
    pub kind: &'static str,
}

/// Why a trace is incomplete: `root_missing`, `buffer_full`, `shutdown`, `too_large`,
/// `spans_missing` (a bounded set chosen by ingest and the evaluator, never by clients).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub judge: String,
    pub direction: &'static str,
}

/// Tenths, written out: computed steps would print as `le="0.30000000000000004"`.
const SCORE_BUCKETS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

pub struct EvaluatorMetrics {
    pub spans_consumed: Counter,
    pub spans_selected: Counter,
    pub judgements: Family<OutcomeLabels, Counter>,
    pub judge_errors: Family<KindLabels, Counter>,
    pub judge_skips: Family<KindLabels, Counter>,
    pub judge_latency: Family<JudgeLabels, Histogram>,
    /// Score values (0–1) of scored verdicts, for score distributions per judge.
    pub scores: Family<JudgeLabels, Histogram>,
    pub llm_tokens: Family<TokenLabels, Counter>,
    pub llm_cost_usd: Family<JudgeLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub evaluations_published: Counter,
    pub publish_failures: Counter,
    pub dead_letters: Counter,
    pub consumer_pending: Gauge,
    pub in_flight: Gauge,
    pub traces_read: Counter,
    pub traces_incomplete: Family<ReasonLabels, Counter>,
    pub trace_span_messages_missing: Counter,
    /// Each judge's series, looked up once: recording every judge of every span through the
    /// families cloned the judge's name and hashed a label set three times per result (5 %
    /// of the evaluator's CPU with code judges).
    per_judge: RwLock<HashMap<String, Arc<JudgeSeries>, foldhash::fast::RandomState>>,
}

/// One judge's outcome counters and histograms, each created in its family on first use (so
/// the exposition is the same as looking them up every time).
#[derive(Default)]
struct JudgeSeries {
    outcomes: [OnceLock<Counter>; 4],
    latency: OnceLock<Histogram>,
    scores: OnceLock<Histogram>,
}

impl EvaluatorMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            spans_consumed: Counter::default(),
            spans_selected: Counter::default(),
            judgements: Family::default(),
            judge_errors: Family::default(),
            judge_skips: Family::default(),
            judge_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 2.0, 20))
            }),
            scores: Family::new_with_constructor(|| Histogram::new(SCORE_BUCKETS)),
            llm_tokens: Family::default(),
            llm_cost_usd: Family::default(),
            evaluations_published: Counter::default(),
            publish_failures: Counter::default(),
            dead_letters: Counter::default(),
            consumer_pending: Gauge::default(),
            in_flight: Gauge::default(),
            traces_read: Counter::default(),
            traces_incomplete: Family::default(),
            trace_span_messages_missing: Counter::default(),
            per_judge: RwLock::default(),
        };
        let r = registry.sub_registry_with_prefix("evaluator");
        r.register(
            "spans_consumed",
            "Span messages received",
            metrics.spans_consumed.clone(),
        );
        r.register(
            "spans_selected",
            "Spans the policy selected for judging",
            metrics.spans_selected.clone(),
        );
        r.register(
            "judgements",
            "Judge outcomes: pass, fail, error, skipped",
            metrics.judgements.clone(),
        );
        r.register(
            "judge_errors",
            "Judge failures by kind (never scores)",
            metrics.judge_errors.clone(),
        );
        r.register(
            "judge_skips",
            "Judges not run, by reason",
            metrics.judge_skips.clone(),
        );
        r.register(
            "judge_latency_seconds",
            "Time a judge took per span",
            metrics.judge_latency.clone(),
        );
        r.register(
            "scores",
            "Scores of scored verdicts (0 to 1, 1 is good), per judge",
            metrics.scores.clone(),
        );
        r.register(
            "llm_tokens",
            "Tokens LLM judges spent, by direction",
            metrics.llm_tokens.clone(),
        );
        r.register(
            "llm_cost_usd",
            "US dollars LLM judges spent (judge pricing)",
            metrics.llm_cost_usd.clone(),
        );
        r.register(
            "evaluations_published",
            "Span evaluations stored on the scores stream (a message may carry several)",
            metrics.evaluations_published.clone(),
        );
        r.register(
            "publish_failures",
            "Failed attempts to publish scores (retried)",
            metrics.publish_failures.clone(),
        );
        r.register(
            "dead_letters",
            "Undecodable span messages moved to the dead-letter stream",
            metrics.dead_letters.clone(),
        );
        r.register(
            "consumer_pending",
            "Span messages not yet delivered to the policy's consumer (lag)",
            metrics.consumer_pending.clone(),
        );
        r.register("in_flight", "Spans being judged", metrics.in_flight.clone());
        r.register(
            "traces_read",
            "Trace summaries whose traces were read back from the span stream and judged",
            metrics.traces_read.clone(),
        );
        r.register(
            "traces_incomplete",
            "Traces judged as incomplete (trace-level judges report incomplete_trace), by reason",
            metrics.traces_incomplete.clone(),
        );
        r.register(
            "trace_span_messages_missing",
            "Span-stream messages (one span or a batch of a trace's spans) a trace summary named that the stream no longer held (its limits removed them)",
            metrics.trace_span_messages_missing.clone(),
        );
        metrics
    }

    pub fn record(&self, result: &JudgeResult) {
        let judge = &result.judge;
        let (slot, outcome) = match &result.outcome {
            Outcome::Scored(v) if v.passed => (0, "pass"),
            Outcome::Scored(_) => (1, "fail"),
            Outcome::Failed(_) => (2, "error"),
            Outcome::Skipped { .. } => (3, "skipped"),
        };
        let series = self.series(judge);
        series.outcomes[slot]
            .get_or_init(|| {
                self.judgements
                    .get_or_create(&OutcomeLabels {
                        judge: judge.clone(),
                        outcome,
                    })
                    .clone()
            })
            .inc();
        series
            .latency
            .get_or_init(|| {
                self.judge_latency
                    .get_or_create(&JudgeLabels {
                        judge: judge.clone(),
                    })
                    .clone()
            })
            .observe(result.latency_ms / 1e3);
        let usage = match &result.outcome {
            Outcome::Failed(failure) => {
                self.judge_errors
                    .get_or_create(&KindLabels {
                        judge: judge.clone(),
                        kind: failure.kind.as_str(),
                    })
                    .inc();
                failure.usage
            }
            Outcome::Skipped { reason } => {
                self.judge_skips
                    .get_or_create(&KindLabels {
                        judge: judge.clone(),
                        kind: reason.as_str(),
                    })
                    .inc();
                None
            }
            Outcome::Scored(verdict) => {
                series
                    .scores
                    .get_or_init(|| {
                        self.scores
                            .get_or_create(&JudgeLabels {
                                judge: judge.clone(),
                            })
                            .clone()
                    })
                    .observe(verdict.value);
                verdict.usage
            }
        };
        if let Some(usage) = usage {
            self.llm_tokens
                .get_or_create(&TokenLabels {
                    judge: judge.clone(),
                    direction: "input",
                })
                .inc_by(usage.input_tokens);
            self.llm_tokens
                .get_or_create(&TokenLabels {
                    judge: judge.clone(),
                    direction: "output",
                })
                .inc_by(usage.output_tokens);
            if let Some(cost) = usage.cost_usd {
                self.llm_cost_usd
                    .get_or_create(&JudgeLabels {
                        judge: judge.clone(),
                    })
                    .inc_by(cost);
            }
        }
    }

    /// The judge's series; created on a judge's first result.
    fn series(&self, judge: &str) -> Arc<JudgeSeries> {
        if let Some(series) = self
            .per_judge
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(judge)
        {
            return series.clone();
        }
        self.per_judge
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(judge.to_owned())
            .or_default()
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use umpire_core::judge::JudgeErrorKind;

    use super::*;

    fn result(judge: &str, outcome: Outcome) -> JudgeResult {
        JudgeResult {
            judge: judge.into(),
            outcome,
            latency_ms: 2.0,
        }
    }

    /// Series looked up once per judge still land on the judge's own labels, and only the
    /// outcomes that occurred appear.
    #[test]
    fn each_judges_results_count_under_its_own_labels() {
        let mut registry = Registry::default();
        let metrics = EvaluatorMetrics::new(&mut registry);
        for _ in 0..3 {
            metrics.record(&result("json", Outcome::pass(1.0, "valid")));
        }
        metrics.record(&result("json", Outcome::fail(0.0, "invalid")));
        metrics.record(&result(
            "fast",
            Outcome::failed(JudgeErrorKind::MissingField, "no end time"),
        ));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap_or_default();
        for line in [
            r#"evaluator_judgements_total{judge="json",outcome="pass"} 3"#,
            r#"evaluator_judgements_total{judge="json",outcome="fail"} 1"#,
            r#"evaluator_judgements_total{judge="fast",outcome="error"} 1"#,
            r#"evaluator_judge_latency_seconds_count{judge="json"} 4"#,
            r#"evaluator_judge_latency_seconds_count{judge="fast"} 1"#,
            r#"evaluator_scores_count{judge="json"} 4"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains(r#"judge="fast",outcome="pass""#));
        assert!(!text.contains(r#"evaluator_scores_count{judge="fast"}"#));
    }
}
