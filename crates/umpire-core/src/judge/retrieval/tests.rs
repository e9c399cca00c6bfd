//! Which documents are rated, and the verdict their ratings make — values worked by hand.

use super::*;
use crate::judge::{JudgeInput, TraceContext};
use crate::span::{AiView, Span};

fn document(id: &str, content: Option<&str>) -> RetrievedDocument {
    RetrievedDocument {
        id: Some(id.to_owned()),
        content: content.map(str::to_owned),
        score: None,
    }
}

fn retriever_span(documents: Vec<RetrievedDocument>, expected: Option<&str>) -> Span {
    let mut span: Span = serde_json::from_value(serde_json::json!({
        "traceId": "0748feb976cd256641cc0ff1847e6c60", "spanId": "9d8fc259f94501bd",
        "name": "retrieve", "startTimeUnixNano": 0, "endTimeUnixNano": 1,
        "attributes": expected.map_or(serde_json::json!({}), |e| serde_json::json!({"eval.expected_ids": e})),
    }))
    .unwrap();
    span.ai = AiView {
        explicit_input: Some("How long is the refund window?".into()),
        documents,
        ..AiView::default()
    };
    span
}

fn rating(pass_on: RankingMeasure) -> RetrievalRating {
    RetrievalRating {
        k: 3,
        max_documents: 10,
        expected_ids: Some("attributes.eval.expected_ids".parse().unwrap()),
        pass_on,
        min: 0.5,
    }
}

fn rated(relevant: bool) -> Outcome {
    Outcome::Scored(Verdict {
        value: if relevant { 1.0 } else { 0.0 },
        passed: relevant,
        label: Some(if relevant { "relevant" } else { "unrelated" }.into()),
        explanation: None,
        measurement: None,
        measurements: None,
        usage: Some(JudgeUsage {
            input_tokens: 100,
            output_tokens: 10,
            cost_usd: Some(0.001),
        }),
    })
}

fn five() -> Vec<RetrievedDocument> {
    (1..=5)
        .map(|i| document(&format!("d{i}"), Some("text")))
        .collect()
}

#[test]
fn rates_the_spans_own_documents_else_the_traces_with_text_and_bounded() {
    let mut trace = TraceContext::default();
    trace.documents = vec![document("t1", Some("from the trace"))];
    let mut documents = vec![document("no-text", None), document("blank", Some("  "))];
    documents.extend(five());
    let span = retriever_span(documents, None);
    let input = JudgeInput {
        span: &span,
        trace: &trace,
    };
    let mut bounded = rating(RankingMeasure::PrecisionAtK);
    bounded.max_documents = 4;
    let ids = |input: &JudgeInput<'_>| -> Vec<String> {
        bounded
            .documents(input)
            .iter()
            .filter_map(|d| d.id.clone())
            .collect()
    };
    assert_eq!(ids(&input), ["d1", "d2", "d3", "d4"]);
    let llm_span = retriever_span(Vec::new(), None);
    let input = JudgeInput {
        span: &llm_span,
        trace: &trace,
    };
    assert_eq!(ids(&input), ["t1"]);
}

/// Ratings by rank: unrelated, relevant, relevant, unrelated, relevant; k = 3; expected
/// ids d2 and d9.
/// - precision@3 = 2/3; MRR = 1/2 (first relevant at rank 2);
/// - NDCG@3 = (1/log2 3 + 1/log2 4) / (1 + 1/log2 3 + 1/log2 4) = 1.130930 / 2.130930
///   = 0.530721;
/// - recall@3 = |{d2}| / |{d2, d9}| = 0.5.
#[test]
fn ratings_make_the_ranking_measures_and_the_verdict() {
    let span = retriever_span(five(), Some("d2, d9"));
    let trace = TraceContext::default();
    let input = JudgeInput {
        span: &span,
        trace: &trace,
    };
    let judge = rating(RankingMeasure::NdcgAtK);
    let documents = judge.documents(&input);
    let ratings = [false, true, true, false, true].map(rated).to_vec();
    let Outcome::Scored(verdict) = judge.aggregate(&input, &documents, ratings) else {
        panic!("not scored");
    };
    let m = verdict.measurements.as_deref().unwrap();
    assert!((m["precisionAtK"] - 2.0 / 3.0).abs() < 1e-9);
    assert!((m["mrr"] - 0.5).abs() < 1e-9);
    assert!((m["ndcgAtK"] - 0.530_721).abs() < 1e-6, "{}", m["ndcgAtK"]);
    assert!((m["recallAtK"] - 0.5).abs() < 1e-9);
    assert_eq!((m["ratedDocuments"], m["relevantDocuments"]), (5.0, 3.0));
    assert!((verdict.value - m["ndcgAtK"]).abs() < 1e-12);
    assert!(verdict.passed, "0.53 >= 0.5");
    let usage = verdict.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (500, 50));
    assert!((usage.cost_usd.unwrap() - 0.005).abs() < 1e-12);
    assert_eq!(
        verdict.explanation.as_deref(),
        Some(
            "3 of 5 documents relevant; precision@3 0.67, MRR 0.50, NDCG@3 0.53, recall@3 0.50 of 2 expected"
        )
    );
}

#[test]
fn one_unrated_document_fails_the_whole_judgement_with_every_cost_counted() {
    let span = retriever_span(five(), None);
    let trace = TraceContext::default();
    let input = JudgeInput {
        span: &span,
        trace: &trace,
    };
    let judge = rating(RankingMeasure::PrecisionAtK);
    let documents = judge.documents(&input);
    let mut ratings = [true, true, true, true, true].map(rated).to_vec();
    ratings[1] = Outcome::Failed(JudgeFailure {
        kind: JudgeErrorKind::InvalidVerdict,
        message: "no label".into(),
        usage: Some(JudgeUsage {
            input_tokens: 100,
            output_tokens: 3,
            cost_usd: Some(0.001),
        }),
    });
    let Outcome::Failed(failure) = judge.aggregate(&input, &documents, ratings) else {
        panic!("not failed");
    };
    assert_eq!(failure.kind, JudgeErrorKind::InvalidVerdict);
    assert_eq!(failure.message, "rating document 2 of 5: no label");
    assert_eq!(failure.usage.unwrap().output_tokens, 43);
}

#[test]
fn recall_needs_expected_ids_and_a_span_without_documents_is_not_applicable() {
    let span = retriever_span(five(), None);
    let trace = TraceContext::default();
    let input = JudgeInput {
        span: &span,
        trace: &trace,
    };
    let judge = rating(RankingMeasure::RecallAtK);
    let documents = judge.documents(&input);
    let ratings = [true; 5].map(rated).to_vec();
    let Outcome::Failed(failure) = judge.aggregate(&input, &documents, ratings) else {
        panic!("not failed");
    };
    assert_eq!(failure.kind, JudgeErrorKind::MissingField);
    assert!(
        failure.message.contains("attributes.eval.expected_ids"),
        "{}",
        failure.message
    );
    assert_eq!(
        judge.aggregate(&input, &[], Vec::new()),
        Outcome::skipped(SkipReason::NotApplicable)
    );
}
