//! Drift rules' inputs: the span fields they compare, embedded into each span evaluation.

use std::collections::BTreeMap;

use umpire_core::alert::rule::DriftField;
use umpire_core::embedding::CompactEmbedding;
use umpire_core::judge::embedding::bounded;
use umpire_core::judge::{JudgeInput, TraceContext};
use umpire_core::span::Span;
use umpire_embed::EmbeddingBatcher;

/// The span fields drift rules compare, embedded into each span evaluation.
#[derive(Debug, Clone)]
pub struct DriftEmbeddings {
    pub fields: Vec<DriftField>,
    pub batcher: EmbeddingBatcher,
}

impl DriftEmbeddings {
    /// The fields' embeddings; a field the span lacks is left out (the span then does not
    /// count towards that drift rule). A model failure is logged and leaves all out.
    pub async fn embed(&self, span: &Span) -> BTreeMap<String, CompactEmbedding> {
        let trace = TraceContext::default();
        let input = JudgeInput {
            span,
            trace: &trace,
        };
        let (fields, texts): (Vec<DriftField>, Vec<String>) = self
            .fields
            .iter()
            .filter_map(|field| {
                let text = input.field_text(&field.span_field())?;
                Some((*field, bounded(&text)))
            })
            .unzip();
        if texts.is_empty() {
            return BTreeMap::new();
        }
        match self.batcher.embed(texts).await {
            Ok(vectors) => fields
                .iter()
                .zip(vectors)
                .map(|(field, vector)| {
                    (
                        field.as_str().to_owned(),
                        CompactEmbedding::quantise(&vector),
                    )
                })
                .collect(),
            Err(failure) => {
                tracing::warn!(event = "drift_embedding_failed", error = %failure);
                BTreeMap::new()
            }
        }
    }
}
