#![allow(clippy::unwrap_used)]
//! Precision and recall of the `promptInjection` catalogue on a labelled set
//! (`fixtures/injection_labelled.jsonl`): direct attacks, attacks hidden in documents and
//! tool results, encoded ones, and benign text that shares their words (git ignore, "act as
//! a travel agent", "the instructions above", base64 attachments). Prints the tables the
//! README quotes; fails below the floor.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use support::Tally;
use umpire_core::judge::injection::{InjectionCategory, scan};

#[derive(serde::Deserialize)]
struct Labelled {
    text: String,
    categories: Vec<String>,
}

#[test]
fn precision_and_recall_on_the_labelled_set() {
    let lines = include_str!("fixtures/injection_labelled.jsonl");
    let mut any = Tally::default();
    let mut by_category: BTreeMap<InjectionCategory, Tally> = BTreeMap::new();
    let (mut attacks, mut benign) = (0, 0);
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let labelled: Labelled = serde_json::from_str(line).unwrap();
        let expected: BTreeSet<InjectionCategory> = labelled
            .categories
            .iter()
            .map(|c| InjectionCategory::from_name(c).unwrap_or_else(|| panic!("unknown {c}")))
            .collect();
        if expected.is_empty() {
            benign += 1;
        } else {
            attacks += 1;
        }
        let found: BTreeSet<InjectionCategory> = scan(&labelled.text).into_iter().collect();
        any.add(
            !expected.is_empty(),
            !found.is_empty(),
            &labelled.text,
            "injection",
        );
        for category in InjectionCategory::ALL {
            by_category.entry(category).or_default().add(
                expected.contains(&category),
                found.contains(&category),
                &labelled.text,
                category.name(),
            );
        }
    }
    println!("{attacks} attacks, {benign} benign texts");
    println!("| | attacks | caught | false alarms | precision | recall |");
    println!("|---|---|---|---|---|---|");
    println!("{}", any.row("any injection (the verdict)"));
    for (category, tally) in &by_category {
        println!("{}", tally.row(category.name()));
    }
    assert!(any.precision() >= 0.85, "precision {:.2}", any.precision());
    assert!(any.recall() >= 0.85, "recall {:.2}", any.recall());
}
