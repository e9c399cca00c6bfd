//! Drift rules through the engine: a group whose inputs move to another region of the
//! embedding space pages; a group whose inputs keep their distribution does not.

use super::tests::{S, engine, evaluation, rule};
use super::*;
use crate::alert::rule::DriftField;
use crate::embedding::CompactEmbedding;

/// A unit vector near axis `centre` (16 dimensions), wobbling with `n`.
fn near(centre: usize, n: u64) -> CompactEmbedding {
    let mut v = [0.0f32; 16];
    for (d, x) in v.iter_mut().enumerate() {
        let h = (n * 131 + d as u64 * 7919).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
        *x = (h % 1000) as f32 / 1000.0 - 0.5;
    }
    v[centre] += 2.0;
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    CompactEmbedding::quantise(&v.map(|x| x / norm))
}

fn drift_rule() -> AlertRule {
    AlertRule {
        name: "questions-drift".into(),
        metric: Metric::Drift(DriftField::Input),
        window: Duration::from_secs(60),
        threshold: Threshold::Drift {
            baseline: Duration::from_secs(600),
            min_distance: 0.2,
            confidence: 0.99,
        },
        ..rule(Threshold::Above(0.0), 0, &["gen_ai.request.model"])
    }
}

#[test]
fn a_shifted_group_pages_and_a_steady_one_does_not() {
    let mut engine = engine(vec![drift_rule()]);
    let mut pages = Vec::new();
    let mut n = 0;
    // 15 minutes, one call per model every 2 s; gpt-4o-mini's inputs move at minute 12.
    for second in (0..900u64).step_by(2) {
        let now = 1_000 * S + second * S;
        for model in ["gpt-4o", "gpt-4o-mini"] {
            n += 1;
            let centre = if model == "gpt-4o-mini" && second >= 720 {
                5
            } else {
                0
            };
            let mut e = evaluation(n, now, true, model);
            e.embeddings.insert("input".into(), near(centre, n));
            pages.extend(engine.observe(&e, now, true));
        }
        pages.extend(engine.tick(now));
    }
    let triggers: Vec<&Notification> = pages
        .iter()
        .filter(|p| p.action == Action::Trigger)
        .collect();
    assert_eq!(triggers.len(), 1, "{pages:#?}");
    let page = triggers[0];
    assert_eq!(page.group, "gen_ai.request.model=gpt-4o-mini");
    assert_eq!(page.class, "drift");
    assert_eq!(page.threshold, Some(0.2));
    assert!(page.value.is_some_and(|d| d > 0.2), "{page:#?}");
    assert!(
        page.description
            .starts_with("input drift: centroid distance"),
        "{}",
        page.description
    );
    // Paged within the window after the shift (the test reruns once per 2 s bucket).
    assert!(page.at_unix_nano <= 1_000 * S + 780 * S, "{page:#?}");
}

#[test]
fn evaluations_without_the_fields_embedding_are_not_samples() {
    let rule = drift_rule();
    let e = evaluation(1, S, true, "gpt-4o");
    assert!(rule.sample(&e).is_none());
    let mut with = e.clone();
    with.embeddings.insert("output".into(), near(0, 1));
    assert!(
        rule.sample(&with).is_none(),
        "an output embedding is not an input one"
    );
    with.embeddings.insert("input".into(), near(0, 1));
    assert!(matches!(
        rule.sample(&with),
        Some(crate::alert::window::Sample::Embedding(_))
    ));
}

#[test]
fn short_windows_page_too() {
    let mut rule = drift_rule();
    rule.window = Duration::from_secs(4);
    rule.threshold = Threshold::Drift {
        baseline: Duration::from_secs(16),
        min_distance: 0.2,
        confidence: 0.99,
    };
    let mut engine = engine(vec![rule]);
    let mut pages = Vec::new();
    let mut n = 0;
    let ms = S / 1000;
    for tick in 0..400u64 {
        let now = 1_000 * S + tick * 100 * ms;
        for model in ["gpt-4o", "gpt-4o-mini"] {
            n += 1;
            let centre = if model == "gpt-4o-mini" && tick >= 250 {
                5
            } else {
                0
            };
            let mut e = evaluation(n, now, true, model);
            e.embeddings.insert("input".into(), near(centre, n));
            pages.extend(engine.observe(&e, now, true));
        }
        if tick % 10 == 0 {
            pages.extend(engine.tick(now));
        }
    }
    let last = engine.rules[0]
        .groups
        .values()
        .map(|g| g.last.clone())
        .collect::<Vec<_>>();
    assert!(
        pages.iter().any(|p| p.action == Action::Trigger),
        "{last:#?}"
    );
}

#[test]
fn a_snapshot_keeps_the_drift_samples() {
    let feed = |engine: &mut AlertEngine, from: u64, to: u64| {
        let mut pages = Vec::new();
        for second in (from..to).step_by(2) {
            let now = 1_000 * S + second * S;
            let n = second + 1;
            let centre = if second >= 720 { 5 } else { 0 };
            let mut e = evaluation(n, now, true, "gpt-4o-mini");
            e.embeddings.insert("input".into(), near(centre, n));
            pages.extend(engine.observe(&e, now, true));
            pages.extend(engine.tick(now));
        }
        pages
    };
    let mut full = engine(vec![drift_rule()]);
    feed(&mut full, 0, 700);
    let saved = serde_json::to_string(&full.windows()).unwrap();
    // Each sample is a 512-character vector at most 16 times per bucket: bounded.
    assert!(saved.len() < 2_000_000, "{} bytes", saved.len());
    let mut restored = engine(vec![drift_rule()]);
    restored
        .restore_windows(serde_json::from_str(&saved).unwrap())
        .unwrap();
    assert_eq!(
        serde_json::to_value(full.windows()).unwrap(),
        serde_json::to_value(restored.windows()).unwrap()
    );
    // The shift then pages both the same way.
    let (a, b) = (feed(&mut full, 700, 800), feed(&mut restored, 700, 800));
    let triggers = |pages: &[Notification]| {
        pages
            .iter()
            .filter(|p| p.action == Action::Trigger)
            .map(|p| (p.at_unix_nano, p.description.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(triggers(&a).len(), 1);
    assert_eq!(triggers(&a), triggers(&b));
}
