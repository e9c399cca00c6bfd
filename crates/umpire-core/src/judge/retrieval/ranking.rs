//! Ranking measures over the documents a retriever returned, in rank order.
//!
//! `grades` are each document's relevance (the LLM judge's score for it, 0–1), `relevant`
//! whether that score passed. Conventions, chosen to be the common IR ones and stated so
//! figures can be checked by hand:
//! - precision@k: relevant documents among the first k, divided by how many documents the
//!   first k actually hold (`min(k, n)`): a retriever that returned 3 documents, all
//!   relevant, has precision@5 = 1, not 0.6;
//! - recall@k: expected ids found among the first k, divided by the number of expected ids;
//! - MRR (reciprocal rank): 1 / the rank of the first relevant document, 0 when none is;
//! - NDCG@k: Σ grade_i / log2(i + 1) over ranks i = 1..k, divided by the same sum over the
//!   grades sorted best first (the ideal order of the same documents); 0 when no document
//!   has any relevance.

use std::collections::HashSet;

pub fn precision_at_k(relevant: &[bool], k: usize) -> f64 {
    let top = k.min(relevant.len());
    if top == 0 {
        return 0.0;
    }
    relevant[..top].iter().filter(|r| **r).count() as f64 / top as f64
}

/// `None` when nothing was expected.
pub fn recall_at_k(ids: &[Option<String>], expected: &HashSet<String>, k: usize) -> Option<f64> {
    if expected.is_empty() {
        return None;
    }
    let found: HashSet<&str> = ids
        .iter()
        .take(k)
        .filter_map(|id| id.as_deref())
        .filter(|id| expected.contains(*id))
        .collect();
    Some(found.len() as f64 / expected.len() as f64)
}

pub fn reciprocal_rank(relevant: &[bool]) -> f64 {
    relevant
        .iter()
        .position(|r| *r)
        .map_or(0.0, |index| 1.0 / (index + 1) as f64)
}

pub fn ndcg_at_k(grades: &[f64], k: usize) -> f64 {
    let dcg = |grades: &[f64]| -> f64 {
        grades
            .iter()
            .take(k)
            .enumerate()
            .map(|(index, grade)| grade / ((index + 2) as f64).log2())
            .sum()
    };
    let mut ideal = grades.to_vec();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let best = dcg(&ideal);
    if best <= 0.0 { 0.0 } else { dcg(grades) / best }
}

/// Ids written as a JSON array of strings, or separated by commas or whitespace.
pub fn parse_ids(text: &str) -> HashSet<String> {
    if let Ok(ids) = serde_json::from_str::<Vec<serde_json::Value>>(text.trim()) {
        return ids
            .into_iter()
            .filter_map(|id| match id {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|id| !id.is_empty())
            .collect();
    }
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn precision_counts_relevant_in_the_first_k_of_what_was_returned() {
        let relevant = [true, false, true, false, false, true];
        assert!(close(precision_at_k(&relevant, 5), 2.0 / 5.0));
        assert!(close(precision_at_k(&relevant, 1), 1.0));
        assert!(close(precision_at_k(&[true, true, true], 5), 1.0));
        assert!(close(precision_at_k(&[], 5), 0.0));
    }

    #[test]
    fn recall_counts_expected_ids_found_in_the_first_k() {
        let ids: Vec<Option<String>> = ["d1", "d7", "d3", "d9"]
            .iter()
            .map(|s| Some((*s).to_owned()))
            .chain([None])
            .collect();
        let expected: HashSet<String> = ["d3", "d9", "d42"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert!(close(recall_at_k(&ids, &expected, 3).unwrap(), 1.0 / 3.0));
        assert!(close(recall_at_k(&ids, &expected, 5).unwrap(), 2.0 / 3.0));
        assert_eq!(recall_at_k(&ids, &HashSet::new(), 5), None);
    }

    #[test]
    fn reciprocal_rank_of_the_first_relevant_document() {
        assert!(close(
            reciprocal_rank(&[false, false, true, true]),
            1.0 / 3.0
        ));
        assert!(close(reciprocal_rank(&[true]), 1.0));
        assert!(close(reciprocal_rank(&[false, false]), 0.0));
    }

    /// Worked by hand: grades [0, 1, 0.5, 1] at k = 3.
    /// DCG = 0/log2(2) + 1/log2(3) + 0.5/log2(4) = 0.6309298 + 0.25 = 0.8809298.
    /// Ideal order [1, 1, 0.5, 0]: 1 + 0.6309298 + 0.25 = 1.8809298. NDCG = 0.4683480.
    #[test]
    fn ndcg_against_the_ideal_order_of_the_same_documents() {
        let ndcg = ndcg_at_k(&[0.0, 1.0, 0.5, 1.0], 3);
        assert!((ndcg - 0.468_348_0).abs() < 1e-6, "{ndcg}");
        assert!(close(ndcg_at_k(&[1.0, 1.0, 0.0], 3), 1.0));
        assert!(close(ndcg_at_k(&[0.0, 0.0], 2), 0.0));
    }

    #[test]
    fn ids_from_json_arrays_or_separated_text() {
        let want: HashSet<String> = ["a", "b", "7"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(parse_ids(r#"["a", "b", 7]"#), want);
        assert_eq!(parse_ids("a, b 7"), want);
        assert!(parse_ids("  ").is_empty());
    }
}
