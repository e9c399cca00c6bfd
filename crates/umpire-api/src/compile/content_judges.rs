//! The `pii` and `promptInjection` judges' specs into the domain judges (both search a list
//! of span fields).

use umpire_core::field::SpanField;
use umpire_core::judge::embedding::{Comparison, EmbeddingJudge};
use umpire_core::judge::injection::{InjectionCategory, PromptInjectionJudge};
use umpire_core::judge::pii::{PiiJudge, PiiKind};

use crate::eval_policy::{
    EmbeddingJudge as EmbeddingSpec, InjectionCategoryName, PiiExpectation, PiiJudge as PiiSpec,
    PiiKindName, PromptInjectionJudge as InjectionSpec,
};
use crate::validate::{FieldError, FieldPath};

pub(super) fn pii_judge(
    spec: &PiiSpec,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) -> PiiJudge {
    let kinds = match &spec.kinds {
        None => PiiKind::ALL.to_vec(),
        Some(kinds) => {
            let mut kinds: Vec<PiiKind> = kinds.iter().map(|k| pii_kind(*k)).collect();
            kinds.sort();
            kinds.dedup();
            kinds
        }
    };
    PiiJudge {
        fields: fields(spec.fields.as_ref(), &[SpanField::Output], path, errors),
        kinds,
        expect_none: spec.expect.unwrap_or(PiiExpectation::None) == PiiExpectation::None,
    }
}

pub(super) fn prompt_injection_judge(
    spec: &InjectionSpec,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) -> PromptInjectionJudge {
    let categories = match &spec.categories {
        None => InjectionCategory::ALL.to_vec(),
        Some(categories) => {
            let mut categories: Vec<InjectionCategory> =
                categories.iter().map(|c| category(*c)).collect();
            categories.sort();
            categories.dedup();
            categories
        }
    };
    PromptInjectionJudge {
        fields: fields(
            spec.fields.as_ref(),
            &[SpanField::Input, SpanField::Context],
            path,
            errors,
        ),
        categories,
    }
}

pub const DEFAULT_EMBEDDING_MIN: f64 = 0.5;

pub(super) fn embedding_judge(
    spec: &EmbeddingSpec,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) -> Option<EmbeddingJudge> {
    let field = span_field(
        spec.field.as_deref().unwrap_or("output"),
        path,
        "field",
        errors,
    )?;
    let compare = match (&spec.compare_to, &spec.references) {
        (Some(other), _) => Comparison::Field(span_field(other, path, "compareTo", errors)?),
        (None, Some(references)) => Comparison::References(references.clone()),
        (None, None) => {
            errors.push(FieldError::new(
                path.clone(),
                "set exactly one of compareTo (another field) or references (reference answers)"
                    .to_owned(),
            ));
            return None;
        }
    };
    Some(EmbeddingJudge {
        field,
        compare,
        min: spec.min.unwrap_or(DEFAULT_EMBEDDING_MIN),
    })
}

fn span_field(
    text: &str,
    path: &FieldPath,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<SpanField> {
    text.parse::<SpanField>()
        .map_err(|e| errors.push(FieldError::new(path.field(name), e.to_string())))
        .ok()
}

/// The listed span fields (each checked at `path.fields[i]`), or `default`.
fn fields(
    listed: Option<&Vec<String>>,
    default: &[SpanField],
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) -> Vec<SpanField> {
    let Some(listed) = listed else {
        return default.to_vec();
    };
    listed
        .iter()
        .enumerate()
        .filter_map(|(index, text)| match text.parse::<SpanField>() {
            Ok(field) => Some(field),
            Err(e) => {
                errors.push(FieldError::new(
                    path.field("fields").index(index),
                    e.to_string(),
                ));
                None
            }
        })
        .collect()
}

fn pii_kind(name: PiiKindName) -> PiiKind {
    match name {
        PiiKindName::Email => PiiKind::Email,
        PiiKindName::Phone => PiiKind::Phone,
        PiiKindName::PaymentCard => PiiKind::PaymentCard,
        PiiKindName::Iban => PiiKind::Iban,
        PiiKindName::UsSsn => PiiKind::UsSsn,
        PiiKindName::Secret => PiiKind::Secret,
    }
}

fn category(name: InjectionCategoryName) -> InjectionCategory {
    match name {
        InjectionCategoryName::InstructionOverride => InjectionCategory::InstructionOverride,
        InjectionCategoryName::RoleOverride => InjectionCategory::RoleOverride,
        InjectionCategoryName::PromptExtraction => InjectionCategory::PromptExtraction,
        InjectionCategoryName::EncodedPayload => InjectionCategory::EncodedPayload,
        InjectionCategoryName::ToolOutputInjection => InjectionCategory::ToolOutputInjection,
    }
}
