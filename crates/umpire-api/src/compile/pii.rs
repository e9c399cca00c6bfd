//! The `pii` judge's spec into the domain judge.

use umpire_core::field::SpanField;
use umpire_core::judge::pii::{PiiJudge, PiiKind};

use crate::eval_policy::{PiiExpectation, PiiJudge as PiiSpec, PiiKindName};
use crate::validate::{FieldError, FieldPath};

pub(super) fn pii_judge(
    spec: &PiiSpec,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) -> PiiJudge {
    let fields = match &spec.fields {
        None => vec![SpanField::Output],
        Some(fields) => fields
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
            .collect(),
    };
    let kinds = match &spec.kinds {
        None => PiiKind::ALL.to_vec(),
        Some(kinds) => {
            let mut kinds: Vec<PiiKind> = kinds.iter().map(|k| kind(*k)).collect();
            kinds.sort();
            kinds.dedup();
            kinds
        }
    };
    PiiJudge {
        fields,
        kinds,
        expect_none: spec.expect.unwrap_or(PiiExpectation::None) == PiiExpectation::None,
    }
}

fn kind(name: PiiKindName) -> PiiKind {
    match name {
        PiiKindName::Email => PiiKind::Email,
        PiiKindName::Phone => PiiKind::Phone,
        PiiKindName::PaymentCard => PiiKind::PaymentCard,
        PiiKindName::Iban => PiiKind::Iban,
        PiiKindName::UsSsn => PiiKind::UsSsn,
        PiiKindName::Secret => PiiKind::Secret,
    }
}
