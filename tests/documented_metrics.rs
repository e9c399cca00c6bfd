//! The metrics the README documents are the ones the processes export: a renamed or removed
//! metric fails here until the README says so.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;

use support::metrics::exported;
use support::tools::repo;

/// The metric names the README documents: every full `umpire_<component>_…` name, and the
/// names listed under a `**Metrics** (`<prefix>`)` bullet with that prefix; labels dropped.
fn documented_metrics(readme: &str) -> BTreeSet<String> {
    let full = regex::Regex::new(
        r"\bumpire_(?:ingest|evaluator|alerts|notifications|export|controller)_[a-z0-9_]+\b(?:[^:]|$)",
    )
    .unwrap();
    let mut names: BTreeSet<String> = full
        .find_iter(readme)
        .map(|m| {
            m.as_str()
                .trim_end_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .to_owned()
        })
        .collect();
    let bullet = regex::Regex::new(r"^- \*\*Metrics\*\* \(`(umpire_[a-z]+_)`\):").unwrap();
    let listed = regex::Regex::new(r"`([a-z0-9_]+)(?:\{[^`]*\})?`").unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(prefix) = bullet.captures(line).map(|c| c[1].to_owned()) else {
            continue;
        };
        let continued = lines[i + 1..]
            .iter()
            .take_while(|l| l.starts_with("  ") && !l.trim().is_empty());
        for text in std::iter::once(line).chain(continued) {
            // The bullet's list ends where its prose about endpoints and logs begins.
            let (text, rest) = text.split_once("`/healthz`").unwrap_or((text, ""));
            for name in listed.captures_iter(text) {
                if !name[1].starts_with("umpire_") {
                    names.insert(format!("{prefix}{}", &name[1]));
                }
            }
            if !rest.is_empty() {
                break;
            }
        }
    }
    names
}

#[test]
fn every_metric_the_readme_documents_is_exported() {
    let exported = exported();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let documented = documented_metrics(&readme);
    // Sanity checks on the reading, so an empty or unexpanded set cannot pass.
    for name in [
        "umpire_evaluator_evaluations_published_total",
        "umpire_controller_reconciles_total",
        "umpire_ingest_admission_refused_total",
    ] {
        assert!(
            documented.contains(name),
            "{name} not read: {documented:#?}"
        );
    }
    let missing: Vec<&String> = documented
        .iter()
        .filter(|name| !exported.contains(*name) && !exported.contains(&format!("{name}_bucket")))
        .collect();
    assert!(
        missing.is_empty(),
        "the README documents metrics no Umpire process exports: {missing:?}"
    );
}
