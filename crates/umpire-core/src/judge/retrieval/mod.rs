//! Retrieval quality: an LLM judge rates each document a retriever returned for relevance
//! to the query (one request per document, bounded per span), and the ratings, in rank
//! order, become the verdict's ranking measurements — precision@k, recall@k (when the span
//! names the documents that should have come back), MRR and NDCG@k. The verdict passes on
//! one of them.

pub mod ranking;

use std::collections::BTreeMap;

use super::{JudgeErrorKind, JudgeFailure, JudgeInput, JudgeUsage, Outcome, SkipReason, Verdict};
use crate::field::SpanField;
use crate::span::RetrievedDocument;

/// A ranking measure a verdict can pass on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankingMeasure {
    PrecisionAtK,
    RecallAtK,
    Mrr,
    NdcgAtK,
}

impl RankingMeasure {
    /// The key in the verdict's measurements.
    pub fn name(self) -> &'static str {
        match self {
            Self::PrecisionAtK => "precisionAtK",
            Self::RecallAtK => "recallAtK",
            Self::Mrr => "mrr",
            Self::NdcgAtK => "ndcgAtK",
        }
    }
}

/// How a per-document LLM judge's ratings are turned into a verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalRating {
    /// Rank cut-off of precision@k, recall@k and NDCG@k.
    pub k: usize,
    /// Documents rated per span (one LLM request each), the first by rank.
    pub max_documents: usize,
    /// The span field naming the ids that should have been retrieved.
    pub expected_ids: Option<SpanField>,
    pub pass_on: RankingMeasure,
    pub min: f64,
}

impl RetrievalRating {
    /// The documents to rate, in rank order: the span's own retrieved documents (a
    /// retriever span), or else those retrieved anywhere in its trace (an LLM span of a RAG
    /// trace); those without text cannot be rated and are left out; at most
    /// `max_documents`.
    pub fn documents<'a>(&self, input: &JudgeInput<'a>) -> Vec<&'a RetrievedDocument> {
        let own = &input.span.ai.documents;
        let documents = if own.is_empty() {
            &input.trace.documents
        } else {
            own
        };
        documents
            .iter()
            .filter(|d| d.content.as_deref().is_some_and(|c| !c.trim().is_empty()))
            .take(self.max_documents)
            .collect()
    }

    /// The verdict from each document's rating (same order as [`Self::documents`]). Any
    /// document not rated makes the whole judgement fail or skip — a ranking with holes
    /// would report wrong measures — with every request's usage counted.
    pub fn aggregate(
        &self,
        input: &JudgeInput<'_>,
        documents: &[&RetrievedDocument],
        ratings: Vec<Outcome>,
    ) -> Outcome {
        if documents.is_empty() {
            return Outcome::skipped(SkipReason::NotApplicable);
        }
        let usage = total_usage(&ratings);
        let mut grades = Vec::with_capacity(ratings.len());
        let mut relevant = Vec::with_capacity(ratings.len());
        for (rank, rating) in ratings.into_iter().enumerate() {
            match rating {
                Outcome::Scored(verdict) => {
                    grades.push(verdict.value.clamp(0.0, 1.0));
                    relevant.push(verdict.passed);
                }
                Outcome::Failed(failure) => {
                    return Outcome::Failed(JudgeFailure {
                        kind: failure.kind,
                        message: format!(
                            "rating document {} of {}: {}",
                            rank + 1,
                            documents.len(),
                            failure.message
                        ),
                        usage,
                    });
                }
                Outcome::Skipped { reason } => return Outcome::skipped(reason),
            }
        }
        let ids: Vec<Option<String>> = documents.iter().map(|d| d.id.clone()).collect();
        let k = self.k;
        let precision = ranking::precision_at_k(&relevant, k);
        let mrr = ranking::reciprocal_rank(&relevant);
        let ndcg = ranking::ndcg_at_k(&grades, k);
        let mut measurements: BTreeMap<String, f64> = [
            (RankingMeasure::PrecisionAtK, precision),
            (RankingMeasure::Mrr, mrr),
            (RankingMeasure::NdcgAtK, ndcg),
        ]
        .into_iter()
        .map(|(measure, value)| (measure.name().to_owned(), value))
        .collect();
        let expected = self
            .expected_ids
            .as_ref()
            .and_then(|field| input.field_text(field))
            .map(|text| ranking::parse_ids(&text))
            .unwrap_or_default();
        let recall = ranking::recall_at_k(&ids, &expected, k);
        if let Some(recall) = recall {
            measurements.insert(RankingMeasure::RecallAtK.name().to_owned(), recall);
        }
        let Some(value) = measurements.get(self.pass_on.name()).copied() else {
            return Outcome::Failed(JudgeFailure {
                kind: JudgeErrorKind::MissingField,
                message: match &self.expected_ids {
                    Some(field) => format!(
                        "recall@{k} needs the expected document ids: the span has none in {field}"
                    ),
                    None => format!("recall@{k} needs expectedIds"),
                },
                usage,
            });
        };
        let rated = relevant.len();
        let found = relevant.iter().filter(|r| **r).count();
        let mut explanation = format!(
            "{found} of {rated} documents relevant; precision@{k} {precision:.2}, MRR {mrr:.2}, NDCG@{k} {ndcg:.2}"
        );
        if let Some(recall) = recall {
            explanation.push_str(&format!(
                ", recall@{k} {recall:.2} of {} expected",
                expected.len()
            ));
        }
        measurements.insert("ratedDocuments".to_owned(), rated as f64);
        measurements.insert("relevantDocuments".to_owned(), found as f64);
        Outcome::Scored(Verdict {
            value,
            passed: value >= self.min,
            label: None,
            explanation: Some(explanation),
            measurement: Some(value),
            measurements: Some(Box::new(measurements)),
            usage,
        })
    }
}

/// What every request cost together, when any reported usage.
fn total_usage(ratings: &[Outcome]) -> Option<JudgeUsage> {
    let usages: Vec<JudgeUsage> = ratings
        .iter()
        .filter_map(|r| match r {
            Outcome::Scored(v) => v.usage,
            Outcome::Failed(f) => f.usage,
            Outcome::Skipped { .. } => None,
        })
        .collect();
    if usages.is_empty() {
        return None;
    }
    let costs: Vec<f64> = usages.iter().filter_map(|u| u.cost_usd).collect();
    Some(JudgeUsage {
        input_tokens: usages.iter().map(|u| u.input_tokens).sum(),
        output_tokens: usages.iter().map(|u| u.output_tokens).sum(),
        cost_usd: (!costs.is_empty()).then(|| costs.iter().sum()),
    })
}

#[cfg(test)]
mod tests;
