//! Absence alerts per group and group expiry, over synthetic time.

use std::collections::BTreeMap;

use super::tests::{S, engine, evaluation, rule};
use super::*;
use crate::alert::rule::{Aggregation, NoData};
use crate::alert::state::Phase;

/// The "model deprecation" page: per model, one call a second is the norm; an empty window
/// is the condition (`noData: alert`); after `group_expiry` without calls the model's group
/// is retired.
fn calls_per_model(expiry_s: u64) -> AlertRule {
    let mut rule = rule(Threshold::Below(1.0), 0, &["gen_ai.request.model"]);
    rule.metric = Metric::Judge {
        judge: "grounded".into(),
        aggregation: Aggregation::Count,
    };
    rule.min_samples = 1;
    rule.no_data = NoData::Alert;
    rule.group_expiry = Some(Duration::from_secs(expiry_s));
    rule
}

/// One call a second for each model in `models(second)`, ticking every second.
fn traffic(
    engine: &mut AlertEngine,
    from: u64,
    to: u64,
    models: impl Fn(u64) -> Vec<&'static str>,
) -> Vec<Notification> {
    let mut out = Vec::new();
    for second in from..to {
        for (i, model) in models(second).into_iter().enumerate() {
            let at = second * S + i as u64;
            let call = evaluation(second * 10 + i as u64, at, true, model);
            out.extend(engine.observe(&call, at, true));
        }
        out.extend(engine.tick((second + 1) * S));
    }
    out
}

#[test]
fn a_silent_model_pages_alone_then_its_group_expires_with_a_resolve() {
    let mut engine = engine(vec![calls_per_model(300)]);
    // Both models called until 100 s, then only "a".
    let notes = traffic(&mut engine, 0, 600, |second| {
        if second < 100 {
            vec!["a", "b"]
        } else {
            vec!["a"]
        }
    });
    let seen: Vec<(Action, &str, u64)> = notes
        .iter()
        .map(|n| (n.action, n.group.as_str(), n.at_unix_nano / S))
        .collect();
    // "b"'s last call at 99 s: its window (60 s) is empty from 160 s; retired 300 s after
    // the last call.
    assert_eq!(
        seen,
        [
            (Action::Trigger, "gen_ai.request.model=b", 160),
            (Action::Resolve, "gen_ai.request.model=b", 400),
        ]
    );
    assert_eq!(notes[0].description, "no grounded count samples in 1m");
    assert_eq!(
        notes[1].description,
        "no samples for 5m: the group is retired"
    );
    assert_eq!(notes[0].dedup_key, notes[1].dedup_key);
    assert_eq!(notes[0].episode, notes[1].episode);
    assert_eq!(
        engine.take_expired(),
        [(
            "grounded-drop".to_owned(),
            "gen_ai.request.model=b".to_owned()
        )]
    );
    assert!(engine.take_expired().is_empty(), "taken once");
    let groups: Vec<&str> = engine.alerts().iter().map(|a| a.group).collect();
    assert_eq!(groups, ["gen_ai.request.model=a"]);
}

#[test]
fn a_returning_group_starts_clean_and_its_page_has_a_new_id() {
    let mut engine = engine(vec![calls_per_model(120)]);
    let mut notes = traffic(&mut engine, 0, 300, |second| {
        if second < 50 {
            vec!["a", "b"]
        } else {
            vec!["a"]
        }
    });
    assert_eq!(engine.take_expired().len(), 1);
    // "b" comes back for a while, then goes silent again.
    notes.extend(traffic(&mut engine, 300, 600, |second| {
        if second < 400 {
            vec!["a", "b"]
        } else {
            vec!["a"]
        }
    }));
    let pages: Vec<&Notification> = notes
        .iter()
        .filter(|n| n.action == Action::Trigger)
        .collect();
    assert_eq!(pages.len(), 2, "{notes:?}");
    assert_ne!(
        pages[0].id(),
        pages[1].id(),
        "the second page must not be dropped as a duplicate of the first"
    );
}

#[test]
fn a_group_with_traffic_never_expires_and_ungrouped_rules_have_no_expiry() {
    let mut grouped = calls_per_model(30);
    grouped.no_data = NoData::KeepState;
    let mut ungrouped = calls_per_model(30);
    ungrouped.name = "all-calls".into();
    ungrouped.group_by.clear();
    let mut engine = engine(vec![grouped, ungrouped]);
    let notes = traffic(&mut engine, 0, 200, |_| vec!["a"]);
    assert!(notes.is_empty(), "{notes:?}");
    // Silence: the grouped rule's idle group goes (quietly: it was not firing); the
    // ungrouped rule's one group stays and pages the absence.
    let notes = traffic(&mut engine, 200, 400, |_| vec![]);
    assert_eq!(
        engine.take_expired(),
        [(
            "grounded-drop".to_owned(),
            "gen_ai.request.model=a".to_owned()
        )]
    );
    let rules: Vec<&str> = notes.iter().map(|n| n.rule.as_str()).collect();
    assert_eq!(rules, ["all-calls"]);
    assert_eq!(engine.alerts().len(), 1);
}

#[test]
fn a_restored_group_without_samples_expires_a_whole_expiry_after_the_restart() {
    let mut engine = engine(vec![calls_per_model(100)]);
    let values = BTreeMap::from([("gen_ai.request.model".to_owned(), "b".to_owned())]);
    let firing = AlertStatus {
        phase: Phase::Firing {
            since_ns: 5 * S,
            last_notified_ns: 5 * S,
            clear_since_ns: None,
        },
        episode: 5,
        repeats: 0,
        value: None,
    };
    engine.restore("grounded-drop", "gen_ai.request.model=b", values, firing);
    let notes = traffic(&mut engine, 1000, 1200, |_| vec![]);
    let seen: Vec<(Action, u64, u64)> = notes
        .iter()
        .map(|n| (n.action, n.at_unix_nano / S, n.episode))
        .collect();
    assert_eq!(seen, [(Action::Resolve, 1101, 5)]);
}
