#![allow(clippy::unwrap_used)]
//! Precision and recall of the `pii` judge's detectors on a labelled set of realistic
//! assistant and tool text (`fixtures/pii_labelled.jsonl`: each line a text and the kinds
//! it contains, hard negatives included — amounts, dates, ids, hashes, ISBNs, IP addresses,
//! checksum-invalid card numbers and IBANs, never-issued SSNs, placeholders). Prints the
//! table the README quotes; fails if a kind falls below the floor.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use support::Tally;
use umpire_core::judge::pii::{PiiKind, find};

#[derive(serde::Deserialize)]
struct Labelled {
    text: String,
    kinds: Vec<String>,
}

#[test]
fn precision_and_recall_on_the_labelled_set() {
    let lines = include_str!("fixtures/pii_labelled.jsonl");
    let mut tallies: BTreeMap<PiiKind, Tally> = BTreeMap::new();
    let mut texts = 0;
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let labelled: Labelled = serde_json::from_str(line).unwrap();
        texts += 1;
        let expected: BTreeSet<PiiKind> = labelled
            .kinds
            .iter()
            .map(|k| PiiKind::from_name(k).unwrap_or_else(|| panic!("unknown kind {k}")))
            .collect();
        let found: BTreeSet<PiiKind> = find(&labelled.text, &PiiKind::ALL).into_keys().collect();
        for kind in PiiKind::ALL {
            tallies.entry(kind).or_default().add(
                expected.contains(&kind),
                found.contains(&kind),
                &labelled.text,
                kind.name(),
            );
        }
    }
    println!("{texts} texts");
    println!("| kind | present | found correctly | false positives | precision | recall |");
    println!("|---|---|---|---|---|---|");
    for (kind, tally) in &tallies {
        println!("{}", tally.row(kind.name()));
    }
    for (kind, tally) in &tallies {
        assert!(
            tally.present() >= 5,
            "{}: too few labelled examples to measure",
            kind.name()
        );
        assert!(
            tally.precision() >= 0.85,
            "{} precision {:.2}",
            kind.name(),
            tally.precision()
        );
        assert!(
            tally.recall() >= 0.85,
            "{} recall {:.2}",
            kind.name(),
            tally.recall()
        );
    }
}
