//! Drift: do the window's embeddings come from the same distribution as the baseline's?
//!
//! The statistic is the distance between the two samples' centroids (mean vectors). Its
//! null distribution is found by permutation: pool both samples, split them at random into
//! groups of the same sizes many times, and count how often a random split lies as far
//! apart as the real one. The test assumes nothing about the vectors' distribution, which
//! for sentence embeddings is far from normal; it is exact up to the number of
//! permutations. Permutations are seeded from the samples, so the same windows always give
//! the same answer (replicas, replays and snapshot restores agree).

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::embedding::CompactEmbedding;

/// Vectors per side at most: the samples are subsampled (by their keys, a uniform and
/// stable choice) beyond this. A centroid of 200 unit vectors is already precise to a few
/// hundredths, and each permutation costs `size × dimensions`.
pub const MAX_VECTORS_PER_SIDE: usize = 200;

/// A vector with the key that decides which vectors a bounded sample keeps: a hash of the
/// span, so the sample is uniform and the same on every replica and replay.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyedVector {
    pub key: u64,
    pub vector: CompactEmbedding,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftTest {
    /// Euclidean distance between the centroids (0 = same centre; unit vectors pointing in
    /// opposite directions would be 2 apart).
    pub distance: f64,
    /// Share of random splits at least as far apart, with the +1 correction (never 0).
    pub p_value: f64,
    pub permutations: usize,
    pub window: usize,
    pub baseline: usize,
}

/// Permutations for a test at `confidence`: enough that p-values well below
/// `1 - confidence` can be seen (about ten random splits per unit of alpha).
pub fn permutations_for(confidence: f64) -> usize {
    let alpha = (1.0 - confidence).max(1e-4);
    ((10.0 / alpha).ceil() as usize).clamp(200, 10_000) - 1
}

/// The keys' smallest `MAX_VECTORS_PER_SIDE` vectors.
pub fn bounded_sample(mut vectors: Vec<&KeyedVector>) -> Vec<&KeyedVector> {
    if vectors.len() > MAX_VECTORS_PER_SIDE {
        vectors.select_nth_unstable_by_key(MAX_VECTORS_PER_SIDE - 1, |v| v.key);
        vectors.truncate(MAX_VECTORS_PER_SIDE);
    }
    vectors
}

/// The centroid-distance permutation test, or `None` when a side is empty or the vectors'
/// dimensions differ (a model change mid-window).
pub fn centroid_shift(
    window: &[&KeyedVector],
    baseline: &[&KeyedVector],
    permutations: usize,
) -> Option<DriftTest> {
    let (n, m) = (window.len(), baseline.len());
    let dimensions = window.first()?.vector.dimensions();
    if m == 0
        || window
            .iter()
            .chain(baseline)
            .any(|v| v.vector.dimensions() != dimensions)
    {
        return None;
    }
    let pooled: Vec<Vec<f64>> = window
        .iter()
        .chain(baseline)
        .map(|v| {
            let mut row = vec![0.0; dimensions];
            v.vector.add_to(&mut row, 1.0);
            row
        })
        .collect();
    let total = sum_rows(pooled.iter(), dimensions);
    let distance_of = |window_sum: &[f64]| -> f64 {
        window_sum
            .iter()
            .zip(&total)
            .map(|(w, t)| {
                let d = w / n as f64 - (t - w) / m as f64;
                d * d
            })
            .sum::<f64>()
            .sqrt()
    };
    let observed = distance_of(&sum_rows(pooled[..n].iter(), dimensions));
    let seed = window
        .iter()
        .chain(baseline)
        .fold(0x9e37_79b9_7f4a_7c15u64, |h, v| {
            h.rotate_left(5) ^ v.key.wrapping_mul(0xff51_afd7_ed55_8ccd)
        });
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n + m).collect();
    let mut as_far = 0usize;
    let mut window_sum = vec![0.0; dimensions];
    for _ in 0..permutations {
        // A random n-subset: the first n places of a partial Fisher–Yates shuffle.
        for i in 0..n {
            let j = rng.random_range(i..n + m);
            order.swap(i, j);
        }
        window_sum.iter_mut().for_each(|x| *x = 0.0);
        for &row in &order[..n] {
            for (s, x) in window_sum.iter_mut().zip(&pooled[row]) {
                *s += x;
            }
        }
        // A split as far apart as the real one, up to rounding, counts as "as far".
        if distance_of(&window_sum) >= observed - 1e-12 {
            as_far += 1;
        }
    }
    Some(DriftTest {
        distance: observed,
        p_value: (as_far + 1) as f64 / (permutations + 1) as f64,
        permutations,
        window: n,
        baseline: m,
    })
}

fn sum_rows<'a>(rows: impl Iterator<Item = &'a Vec<f64>>, dimensions: usize) -> Vec<f64> {
    let mut sum = vec![0.0; dimensions];
    for row in rows {
        for (s, x) in sum.iter_mut().zip(row) {
            *s += x;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unit vectors around `centre` (8 dimensions), spread by a deterministic wobble.
    fn cloud(centre: usize, count: usize, salt: u64) -> Vec<KeyedVector> {
        (0..count)
            .map(|i| {
                let mut v = [0.0f32; 8];
                v[centre] = 1.0;
                for (d, x) in v.iter_mut().enumerate() {
                    let h = (i as u64 * 31 + d as u64 * 17 + salt).wrapping_mul(0x9e37_79b9);
                    *x += ((h % 1000) as f32 / 1000.0 - 0.5) * 0.8;
                }
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                KeyedVector {
                    key: salt * 100_000 + i as u64,
                    vector: CompactEmbedding::quantise(&v),
                }
            })
            .collect()
    }

    #[test]
    fn a_shifted_topic_is_significant_and_the_same_one_is_not() {
        let baseline = cloud(0, 150, 1);
        let same = cloud(0, 60, 2);
        let shifted = cloud(3, 60, 3);
        fn refs(v: &[KeyedVector]) -> Vec<&KeyedVector> {
            v.iter().collect()
        }
        let quiet = centroid_shift(&refs(&same), &refs(&baseline), 999).unwrap();
        let drift = centroid_shift(&refs(&shifted), &refs(&baseline), 999).unwrap();
        assert!(quiet.p_value > 0.05, "{quiet:?}");
        assert!(drift.p_value <= 0.002, "{drift:?}");
        assert!(
            drift.distance > 0.5 && quiet.distance < 0.2,
            "{quiet:?} {drift:?}"
        );
        assert_eq!(
            (drift.window, drift.baseline, drift.permutations),
            (60, 150, 999)
        );
        // Seeded from the samples: the same samples give the same p-value.
        let again = centroid_shift(&refs(&same), &refs(&baseline), 999).unwrap();
        assert_eq!(again, quiet);
    }

    #[test]
    fn samples_are_bounded_by_key_and_permutations_follow_confidence() {
        let many = cloud(0, 500, 4);
        let kept = bounded_sample(many.iter().collect());
        assert_eq!(kept.len(), MAX_VECTORS_PER_SIDE);
        let largest = kept.iter().map(|v| v.key).max().unwrap();
        assert_eq!(largest, 4 * 100_000 + MAX_VECTORS_PER_SIDE as u64 - 1);
        assert_eq!(permutations_for(0.99), 999);
        assert_eq!(permutations_for(0.9), 199);
        assert_eq!(permutations_for(0.9999), 9_999);
        assert!(centroid_shift(&[], &kept, 10).is_none());
    }
}
