//! The `pii` and `promptInjection` judges' specs into the domain judges (both search a list
//! of span fields).

use umpire_core::field::SpanField;
use umpire_core::judge::injection::{InjectionCategory, PromptInjectionJudge};
use umpire_core::judge::pii::{PiiJudge, PiiKind};

use crate::eval_policy::{
    InjectionCategoryName, PiiExpectation, PiiJudge as PiiSpec, PiiKindName,
    PromptInjectionJudge as InjectionSpec,
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
