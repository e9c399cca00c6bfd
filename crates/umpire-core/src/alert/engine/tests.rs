//! Rules over synthetic evaluations: firing, resolving, regressions, noise, group caps, no-data and restored state.

use std::collections::BTreeMap;

use super::*;
use crate::alert::rule::{Aggregation, NoData, Severity};
use crate::alert::state::Phase;
use crate::ids::{SpanId, TraceId};
use crate::judge::{Outcome, Verdict as JudgeVerdict};
use crate::score::JudgeScore;

pub(super) const S: u64 = 1_000_000_000;

pub(super) fn rule(threshold: Threshold, for_s: u64, group_by: &[&str]) -> AlertRule {
    AlertRule {
        name: "grounded-drop".into(),
        metric: Metric::Judge {
            judge: "grounded".into(),
            aggregation: Aggregation::PassRate,
        },
        window: Duration::from_secs(60),
        min_samples: 20,
        group_by: group_by.iter().map(|g| (*g).to_owned()).collect(),
        max_groups: 10,
        threshold,
        for_: Duration::from_secs(for_s),
        clear_for: Duration::from_secs(30),
        no_data: NoData::KeepState,
        severity: Severity::Critical,
        route: "oncall".into(),
        repeat_interval: None,
        group_expiry: None,
    }
}

pub(super) fn engine(rules: Vec<AlertRule>) -> AlertEngine {
    AlertEngine::new(
        PolicyScope {
            namespace: "ml".into(),
            project: "bot".into(),
            policy: "quality".into(),
        },
        rules,
    )
}

pub(super) fn evaluation(n: u64, at: u64, passed: bool, model: &str) -> SpanEvaluation {
    let mut trace = [0u8; 16];
    trace[..8].copy_from_slice(&n.to_be_bytes());
    SpanEvaluation {
        response_id: None,
        id: format!("quality/{n}"),
        policy: "quality".into(),
        trace_id: TraceId(trace),
        span_id: SpanId([1; 8]),
        observed_at_unix_nano: at,
        scored_at_unix_nano: at,
        latency_ms: 100.0,
        time_to_first_token_ms: None,
        groups: [("gen_ai.request.model".to_owned(), model.to_owned())]
            .into_iter()
            .collect(),
        model: None,
        embeddings: Default::default(),
        scores: vec![JudgeScore {
            judge: "grounded".into(),
            outcome: Outcome::Scored(JudgeVerdict {
                value: if passed { 1.0 } else { 0.0 },
                passed,
                label: None,
                explanation: None,
                measurement: None,
                measurements: Default::default(),
                usage: None,
            }),
            judge_latency_ms: 1.0,
        }],
    }
}

/// Feeds `per_second` evaluations a second from `from` to `to` (seconds), ticking every
/// second; `pass` decides each sample.
fn run(
    engine: &mut AlertEngine,
    from: u64,
    to: u64,
    per_second: u64,
    model: &str,
    pass: impl Fn(u64, u64) -> bool,
) -> Vec<Notification> {
    let mut out = Vec::new();
    for second in from..to {
        for i in 0..per_second {
            let at = second * S + i * (S / per_second.max(1));
            out.extend(engine.observe(
                &evaluation(second * 1000 + i, at, pass(second, i), model),
                at,
                true,
            ));
        }
        out.extend(engine.tick((second + 1) * S));
    }
    out
}

#[test]
fn fires_once_after_for_and_resolves_once_after_clear_for() {
    let mut engine = engine(vec![rule(Threshold::Below(0.9), 30, &[])]);
    let mut notes = run(&mut engine, 0, 120, 2, "m", |_, _| true);
    assert!(notes.is_empty(), "healthy: {notes:?}");
    notes = run(&mut engine, 120, 300, 2, "m", |_, i| i == 0); // 50% pass
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].action, Action::Trigger);
    assert_eq!(notes[0].dedup_key, "umpire/ml/quality/grounded-drop");
    // The 60 s window at 2 spans/s, give or take one bucket edge.
    assert!(
        (120..=124).contains(&notes[0].samples),
        "{}",
        notes[0].samples
    );
    // Fired 30 s (`for`) after the rate first crossed 0.9, while the window still mixes
    // healthy and broken traffic.
    let value = notes[0].value.unwrap();
    assert!((0.5..0.9).contains(&value), "{value}");
    assert!(
        notes[0]
            .summary
            .contains(&format!("grounded pass rate {value:.3} < 0.9 over 1m")),
        "{}",
        notes[0].summary
    );
    assert!(!notes[0].example_trace_ids.is_empty());
    notes = run(&mut engine, 300, 500, 2, "m", |_, _| true);
    assert_eq!(
        notes.iter().map(|n| n.action).collect::<Vec<_>>(),
        [Action::Resolve]
    );
}

#[test]
fn a_short_dip_shorter_than_for_does_not_page() {
    let mut engine = engine(vec![rule(Threshold::Below(0.9), 120, &[])]);
    let mut notes = run(&mut engine, 0, 100, 2, "m", |_, _| true);
    notes.extend(run(&mut engine, 100, 160, 2, "m", |_, i| i == 0));
    notes.extend(run(&mut engine, 160, 400, 2, "m", |_, _| true));
    assert!(notes.is_empty(), "{notes:?}");
}

fn regression() -> Threshold {
    Threshold::Regression {
        baseline: Duration::from_secs(3600),
        max_drop: Some(0.10),
        max_rise: None,
        confidence: 0.99,
    }
}

#[test]
fn regression_pages_per_group_and_noise_does_not() {
    let mut engine = engine(vec![rule(regression(), 0, &["gen_ai.request.model"])]);
    // An hour of 90% pass rates for two models (deterministic pattern).
    let healthy = |s: u64, i: u64| !(s * 3 + i).is_multiple_of(10);
    let mut notes = Vec::new();
    for second in 0..3600 {
        notes.extend(run(&mut engine, second, second + 1, 2, "gpt-4o", healthy));
        notes.extend(run(
            &mut engine,
            second,
            second + 1,
            2,
            "gpt-4o-mini",
            healthy,
        ));
    }
    assert!(notes.is_empty(), "steady traffic must not page: {notes:?}");
    // gpt-4o drops to 50%; gpt-4o-mini stays.
    for second in 3600..3720 {
        notes.extend(run(&mut engine, second, second + 1, 2, "gpt-4o", |_, i| {
            i == 0
        }));
        notes.extend(run(
            &mut engine,
            second,
            second + 1,
            2,
            "gpt-4o-mini",
            healthy,
        ));
    }
    let triggers: Vec<&Notification> = notes
        .iter()
        .filter(|n| n.action == Action::Trigger)
        .collect();
    assert_eq!(triggers.len(), 1, "{notes:?}");
    assert_eq!(triggers[0].group, "gen_ai.request.model=gpt-4o");
    assert!(triggers[0].baseline.unwrap() > 0.85);
}

#[test]
fn small_noisy_samples_never_page() {
    // A true 80 % pass rate, random per span, evaluated after every span for 4 hours:
    // one span every 2 s gives ~30-sample windows whose rate swings by ±20 points.
    let mut rule = rule(regression(), 0, &[]);
    rule.min_samples = 20;
    let mut engine = engine(vec![rule]);
    let mut notes = Vec::new();
    let mut state = 12345u64;
    let mut worst = 1.0f64;
    for second in (0..4 * 3600u64).step_by(2) {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let passed = (state >> 33) % 100 < 80;
        notes.extend(engine.observe(
            &evaluation(second, second * S, passed, "m"),
            second * S,
            true,
        ));
        notes.extend(engine.tick(second * S + 1));
        if second > 3600
            && let Some(value) = engine.rules[0].groups[""]
                .last
                .as_ref()
                .and_then(|e| e.value)
        {
            worst = worst.min(value);
        }
    }
    // The stream did dip well past the 10 % limit at some point; it still never paged.
    assert!(
        worst < 0.72,
        "the stream should be noisy: worst window {worst}"
    );
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn groups_beyond_the_cap_fold_into_other() {
    let mut capped = rule(Threshold::Below(0.5), 0, &["gen_ai.request.model"]);
    capped.max_groups = 2;
    let mut engine = engine(vec![capped]);
    for (n, model) in ["a", "b", "c", "d"].iter().enumerate() {
        engine.observe(&evaluation(n as u64, S, true, model), S, true);
    }
    let mut groups: Vec<&str> = engine.alerts().iter().map(|a| a.group).collect();
    groups.sort();
    assert_eq!(
        groups,
        [
            "__other__",
            "gen_ai.request.model=a",
            "gen_ai.request.model=b"
        ]
    );
    assert_eq!(engine.overflowed(), 2);
}

#[test]
fn no_data_can_alert_and_repeats_are_sent() {
    let mut silent = rule(Threshold::Below(1.0), 0, &[]);
    silent.metric = Metric::Judge {
        judge: "grounded".into(),
        aggregation: Aggregation::Count,
    };
    silent.no_data = NoData::Alert;
    silent.repeat_interval = Some(Duration::from_secs(600));
    let mut engine = engine(vec![silent]);
    let mut notes = Vec::new();
    for second in 0..1300 {
        notes.extend(engine.tick(second * S));
    }
    let kinds: Vec<(Action, u64)> = notes.iter().map(|n| (n.action, n.repeat)).collect();
    assert_eq!(
        kinds,
        [
            (Action::Trigger, 0),
            (Action::Trigger, 1),
            (Action::Trigger, 2)
        ]
    );
    // The episode is the firing's start in milliseconds: 60 s in, once a whole window was
    // empty.
    assert!(notes.iter().all(|n| n.episode == 60_000));
    assert_eq!(
        notes[0].id(),
        "umpire/ml/quality/grounded-drop/60000/trigger/0"
    );
}

#[test]
fn a_restored_firing_alert_is_not_paged_again() {
    let mut engine = engine(vec![rule(Threshold::Below(0.9), 0, &[])]);
    let firing = AlertStatus {
        phase: Phase::Firing {
            since_ns: 10 * S,
            last_notified_ns: 10 * S,
            clear_since_ns: None,
        },
        episode: 3,
        repeats: 0,
        value: Some(0.4),
    };
    engine.restore("grounded-drop", "", BTreeMap::new(), firing);
    let notes = run(&mut engine, 20, 100, 2, "m", |_, _| false);
    assert!(notes.is_empty(), "{notes:?}");
    let notes = run(&mut engine, 100, 300, 2, "m", |_, _| true);
    assert_eq!(notes.len(), 1);
    assert_eq!((notes[0].action, notes[0].episode), (Action::Resolve, 3));
}

/// `umpire local manifests/examples` paged "no traffic" 0.1 s after start: a window
/// that has not been watched for its whole length has not shown an absence yet.
#[test]
fn no_data_alerts_only_after_a_whole_window_was_watched() {
    let mut silent = rule(Threshold::Below(1.0), 0, &[]);
    silent.metric = Metric::Judge {
        judge: "grounded".into(),
        aggregation: Aggregation::Count,
    };
    silent.no_data = NoData::Alert;
    let start = 1_000 * S;
    let mut engine = engine(vec![silent]);
    let mut notes = Vec::new();
    for second in 0..59 {
        notes.extend(engine.tick(start + second * S));
    }
    assert!(notes.is_empty(), "paged before a window passed: {notes:?}");
    for second in 59..62 {
        notes.extend(engine.tick(start + second * S));
    }
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].action, Action::Trigger);
}

#[test]
fn a_snapshot_and_the_tail_rebuild_what_a_full_replay_does() {
    let rules = || vec![rule(Threshold::Below(0.8), 0, &["gen_ai.request.model"])];
    let mut full = engine(rules());
    let mut restored = engine(rules());
    let models = ["a", "b", "c"];
    let sample = |n: u64| {
        evaluation(
            n,
            n * S / 10,
            !n.is_multiple_of(4),
            models[(n % 3) as usize],
        )
    };
    for n in 0..400 {
        full.observe(&sample(n), 40 * S, false);
    }
    let saved = serde_json::to_string(&full.windows()).unwrap();
    restored
        .restore_windows(serde_json::from_str(&saved).unwrap())
        .unwrap();
    let mut fired = 0;
    for n in 400..500 {
        let at = 50 * S;
        let notes = full.observe(&sample(n), at, true);
        assert_eq!(notes, restored.observe(&sample(n), at, true));
        fired += notes.len();
    }
    assert_eq!(
        fired,
        models.len(),
        "each group's pass rate of 3/4 fires once"
    );
    assert_eq!(full.tick(60 * S), restored.tick(60 * S));
    assert_eq!(
        serde_json::to_value(full.windows()).unwrap(),
        serde_json::to_value(restored.windows()).unwrap()
    );
}

#[test]
fn a_snapshot_of_other_rules_is_refused() {
    let mut before = engine(vec![rule(Threshold::Below(0.8), 0, &[])]);
    before.observe(&evaluation(1, S, false, "a"), S, false);
    let mut changed = engine(vec![rule(Threshold::Below(0.9), 0, &[])]);
    let refused = changed.restore_windows(before.windows()).unwrap_err();
    assert_eq!(refused.found, before.fingerprint());
    assert!(
        serde_json::to_value(changed.windows()).unwrap()["rules"][0]["groups"][0]["recent"]
            ["buckets"]
            .as_object()
            .unwrap()
            .is_empty(),
        "nothing restored"
    );
}
