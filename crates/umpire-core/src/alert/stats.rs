//! Significance tests for baseline regressions: a small window must not page because it is
//! noisy. Both tests are one-sided ("worse than baseline") and return a p-value.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// One-sided test that the window's pass rate is worse than `ratio` × the baseline's:
/// H0 is `p_window >= ratio * p_baseline` (`lower`) or `p_window <= ratio * p_baseline`.
/// Testing against the margin, not against "no change", is what keeps noise quiet: a rule
/// with `maxRelativeDrop: 0.1` pages only when the window is confidently more than 10 %
/// worse, not when it is confidently a little worse and its point estimate happens to be
/// 10 % off. Agresti–Caffo pseudo-counts keep all-pass / all-fail windows well-defined.
pub fn two_proportion_p_value(
    window: u64,
    window_n: u64,
    baseline: u64,
    baseline_n: u64,
    ratio: f64,
    lower: bool,
) -> Option<f64> {
    if window_n == 0 || baseline_n == 0 {
        return None;
    }
    let (n1, n2) = (window_n as f64 + 2.0, baseline_n as f64 + 2.0);
    let (p1, p2) = ((window as f64 + 1.0) / n1, (baseline as f64 + 1.0) / n2);
    let se = (p1 * (1.0 - p1) / n1 + ratio * ratio * p2 * (1.0 - p2) / n2).sqrt();
    let z = (p1 - ratio * p2) / se;
    let normal = Normal::standard();
    Some(if lower {
        normal.cdf(z)
    } else {
        1.0 - normal.cdf(z)
    })
}

/// Sample statistics for Welch's t-test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub n: u64,
    pub mean: f64,
    pub variance: f64,
}

impl Moments {
    pub fn from_sums(n: u64, sum: f64, sum_of_squares: f64) -> Option<Self> {
        if n < 2 {
            return None;
        }
        let nf = n as f64;
        let mean = sum / nf;
        let variance = ((sum_of_squares - nf * mean * mean) / (nf - 1.0)).max(0.0);
        Some(Self { n, mean, variance })
    }
}

/// One-sided Welch's t-test that the window's mean is worse than `ratio` × the baseline's
/// (H0 `mean_window >= ratio * mean_baseline` when `lower`), for the same reason as above.
pub fn welch_p_value(window: Moments, baseline: Moments, ratio: f64, lower: bool) -> Option<f64> {
    let (v1, v2) = (
        window.variance / window.n as f64,
        ratio * ratio * baseline.variance / baseline.n as f64,
    );
    let se2 = v1 + v2;
    let difference = window.mean - ratio * baseline.mean;
    if se2 == 0.0 {
        let worse = if lower {
            difference < 0.0
        } else {
            difference > 0.0
        };
        return Some(if worse { 0.0 } else { 1.0 });
    }
    let t = difference / se2.sqrt();
    // Welch–Satterthwaite degrees of freedom.
    let df_denominator = v1 * v1 / (window.n as f64 - 1.0) + v2 * v2 / (baseline.n as f64 - 1.0);
    let df = if df_denominator > 0.0 {
        se2 * se2 / df_denominator
    } else {
        (window.n + baseline.n - 2) as f64
    };
    let dist = StudentsT::new(0.0, 1.0, df.max(1.0)).ok()?;
    Some(if lower {
        dist.cdf(t)
    } else {
        1.0 - dist.cdf(t)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportion_test_separates_signal_from_noise() {
        // 80% of 1,000 against a 95% baseline of 10,000: certain.
        let p = two_proportion_p_value(800, 1_000, 9_500, 10_000, 1.0, true).unwrap();
        assert!(p < 1e-6, "{p}");
        // ... and confidently more than 10 % lower (85.5 %).
        assert!(two_proportion_p_value(800, 1_000, 9_500, 10_000, 0.9, true).unwrap() < 1e-4);
        // 8 of 10 against the same baseline: a small sample, not significant at 99%.
        let p = two_proportion_p_value(8, 10, 9_500, 10_000, 1.0, true).unwrap();
        assert!(p > 0.01, "{p}");
        // 90 % of 1,000 is significantly lower than 95 %, but not more than 10 % lower.
        assert!(two_proportion_p_value(900, 1_000, 9_500, 10_000, 1.0, true).unwrap() < 1e-6);
        assert!(two_proportion_p_value(900, 1_000, 9_500, 10_000, 0.9, true).unwrap() > 0.5);
        // Better than baseline is never "lower"; all-pass windows stay defined.
        assert!(two_proportion_p_value(990, 1_000, 9_500, 10_000, 1.0, true).unwrap() > 0.5);
        assert!(two_proportion_p_value(0, 20, 1_000, 1_000, 1.0, true).unwrap() < 1e-6);
        assert_eq!(two_proportion_p_value(0, 0, 1, 1, 1.0, true), None);
    }

    #[test]
    fn welch_test_on_means() {
        let baseline = Moments {
            n: 5_000,
            mean: 0.9,
            variance: 0.01,
        };
        let drop = Moments {
            n: 200,
            mean: 0.8,
            variance: 0.02,
        };
        assert!(welch_p_value(drop, baseline, 1.0, true).unwrap() < 1e-6);
        assert!(welch_p_value(drop, baseline, 0.95, true).unwrap() < 1e-3);
        assert!(welch_p_value(drop, baseline, 0.85, true).unwrap() > 0.5);
        let noisy = Moments {
            n: 5,
            mean: 0.85,
            variance: 0.04,
        };
        assert!(welch_p_value(noisy, baseline, 1.0, true).unwrap() > 0.05);
        let moments = Moments::from_sums(4, 2.0, 1.5).unwrap();
        assert_eq!(moments.mean, 0.5);
        assert!((moments.variance - (1.5 - 1.0) / 3.0).abs() < 1e-12);
    }
}
