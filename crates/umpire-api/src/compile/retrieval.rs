//! An LLM judge's `retrieval` block into the domain's retrieval rating.

use umpire_core::field::SpanField;
use umpire_core::judge::retrieval::{RankingMeasure, RetrievalRating};

use crate::eval_policy::{RankingMeasureName, RetrievalRating as RetrievalSpec};
use crate::validate::{FieldError, FieldPath};

pub const DEFAULT_K: usize = 5;
pub const DEFAULT_MAX_DOCUMENTS: usize = 10;
pub const DEFAULT_MIN: f64 = 0.5;

pub(super) fn retrieval_rating(
    spec: &RetrievalSpec,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) -> RetrievalRating {
    let expected_ids = spec.expected_ids.as_ref().and_then(|field| {
        field
            .parse::<SpanField>()
            .map_err(|e| errors.push(FieldError::new(path.field("expectedIds"), e.to_string())))
            .ok()
    });
    let pass_on = match spec.pass_on.unwrap_or(RankingMeasureName::PrecisionAtK) {
        RankingMeasureName::PrecisionAtK => RankingMeasure::PrecisionAtK,
        RankingMeasureName::RecallAtK => RankingMeasure::RecallAtK,
        RankingMeasureName::Mrr => RankingMeasure::Mrr,
        RankingMeasureName::NdcgAtK => RankingMeasure::NdcgAtK,
    };
    if pass_on == RankingMeasure::RecallAtK && expected_ids.is_none() {
        errors.push(FieldError::new(
            path.field("expectedIds"),
            "recall@k counts expected documents: set expectedIds".into(),
        ));
    }
    let positive = |value: Option<i32>, default: usize| {
        value
            .and_then(|v| usize::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(default)
    };
    RetrievalRating {
        k: positive(spec.k, DEFAULT_K),
        max_documents: positive(spec.max_documents, DEFAULT_MAX_DOCUMENTS),
        expected_ids,
        pass_on,
        min: spec.min.unwrap_or(DEFAULT_MIN),
    }
}
