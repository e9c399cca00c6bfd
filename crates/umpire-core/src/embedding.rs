//! Sentence embeddings as the domain sees them: unit vectors from some model (the adapter
//! in `umpire-embed` runs one on CPU), their cosine similarity, and a compact form that
//! travels in span evaluations for drift alerts.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Turns texts into unit-length vectors, one per text, in order.
pub trait TextEmbedder: Send + Sync {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedFailure>;
    /// The model's name, for explanations and logs.
    fn model(&self) -> &str;
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("embedding failed: {0}")]
pub struct EmbedFailure(pub String);

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        dot / (aa.sqrt() * bb.sqrt())
    }
}

/// A vector quantised to one byte per dimension with one scale: all-MiniLM-L6-v2's 384
/// dimensions take 384 bytes (512 in base64) instead of ~3 KB as JSON floats. The error
/// per dimension is at most `scale / 254`, far below what separates topics.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactEmbedding {
    scale: f32,
    values: Vec<i8>,
}

impl CompactEmbedding {
    pub fn quantise(vector: &[f32]) -> Self {
        let scale = vector.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let values = vector
            .iter()
            .map(|x| {
                if scale == 0.0 {
                    0
                } else {
                    // In [-127, 127] by construction of `scale`.
                    (x / scale * 127.0).round().clamp(-127.0, 127.0) as i8
                }
            })
            .collect();
        Self { scale, values }
    }

    pub fn dimensions(&self) -> usize {
        self.values.len()
    }

    /// Adds the vector, times `weight`, to `sum` (which must have the same length).
    pub fn add_to(&self, sum: &mut [f64], weight: f64) {
        let factor = f64::from(self.scale) / 127.0 * weight;
        for (s, v) in sum.iter_mut().zip(&self.values) {
            *s += f64::from(*v) * factor;
        }
    }

    pub fn to_vec(&self) -> Vec<f32> {
        let factor = self.scale / 127.0;
        self.values.iter().map(|v| f32::from(*v) * factor).collect()
    }
}

/// `"<scale>:<base64 of the bytes>"`.
impl Serialize for CompactEmbedding {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = self.values.iter().map(|v| v.to_ne_bytes()[0]).collect();
        serializer.serialize_str(&format!("{}:{}", self.scale, STANDARD.encode(bytes)))
    }
}

impl<'de> Deserialize<'de> for CompactEmbedding {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let (scale, data) = text
            .split_once(':')
            .ok_or_else(|| D::Error::custom("an embedding is \"<scale>:<base64>\""))?;
        let scale: f32 = scale
            .parse()
            .map_err(|_| D::Error::custom(format!("embedding scale {scale:?} is not a number")))?;
        if !scale.is_finite() || scale < 0.0 {
            return Err(D::Error::custom("embedding scale must be finite and >= 0"));
        }
        let bytes = STANDARD
            .decode(data)
            .map_err(|e| D::Error::custom(format!("embedding data: {e}")))?;
        Ok(Self {
            scale,
            values: bytes.into_iter().map(|b| i8::from_ne_bytes([b])).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantised_vectors_keep_their_cosines_and_round_trip() {
        let a: Vec<f32> = (0..384)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) / 40.0)
            .collect();
        let b: Vec<f32> = (0..384)
            .map(|i| ((i * 5 % 19) as f32 - 9.0) / 35.0)
            .collect();
        let (qa, qb) = (
            CompactEmbedding::quantise(&a),
            CompactEmbedding::quantise(&b),
        );
        assert!((cosine(&qa.to_vec(), &qb.to_vec()) - cosine(&a, &b)).abs() < 0.005);
        let json = serde_json::to_string(&qa).unwrap();
        assert!(json.len() < 530, "{} bytes", json.len());
        let back: CompactEmbedding = serde_json::from_str(&json).unwrap();
        assert_eq!(back, qa);
        assert!(serde_json::from_str::<CompactEmbedding>("\"x:AAAA\"").is_err());
        assert!(serde_json::from_str::<CompactEmbedding>("\"1.0\"").is_err());
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
