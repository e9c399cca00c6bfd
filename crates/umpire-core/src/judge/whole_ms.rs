//! Milliseconds in judges' explanations, printed without the float formatter's cost.

use std::fmt;

/// Prints an `f64` exactly as `{:.0}` does, through integer formatting wherever that gives
/// the same text: `{:.0}` takes the exact float path (often Dragon4), which was 3.5 % of the
/// evaluator's instructions with the latency judge on every span.
pub(crate) struct WholeMs(pub f64);

/// Integers up to 2^53 are exact in an `f64`.
const EXACT: f64 = 9_007_199_254_740_992.0;

impl fmt::Display for WholeMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:.0}` rounds half to even and keeps the sign of a negative zero ("-0").
        let rounded = self.0.round_ties_even();
        if rounded.abs() < EXACT && !(rounded == 0.0 && self.0.is_sign_negative()) {
            write!(f, "{}", rounded as i64)
        } else {
            write!(f, "{:.0}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_what_the_float_formatter_prints() {
        let mut values = vec![
            0.0,
            -0.0,
            -0.4,
            0.5,
            1.5,
            2.5,
            -2.5,
            4000.0,
            799.999_999,
            1e15 + 0.5,
            EXACT,
            -EXACT,
            1e300,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        // Latencies as spans produce them: nanosecond differences in milliseconds.
        values.extend((0..10_000u64).map(|n| (n * 7_919 + 13) as f64 / 1e6 * 997.0));
        for value in values {
            assert_eq!(
                WholeMs(value).to_string(),
                format!("{value:.0}"),
                "for {value:?}"
            );
        }
    }
}
