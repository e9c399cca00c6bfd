use std::collections::BTreeMap;

use prometheus_client::registry::Registry;
use umpire_core::ids::{SpanId, TraceId};
use umpire_core::judge::Outcome;
use umpire_core::score::{JudgeScore, SpanEvaluation};

use super::*;

fn board() -> Board {
    let policy = PolicySource {
        stats: PolicyStats {
            name: "quality".into(),
            project: "shop".into(),
            judges: vec![JudgeStats {
                name: "grounded".into(),
                ..JudgeStats::default()
            }],
            alerts: vec![AlertStats {
                rule: "grounded-drop".into(),
                state: AlertState::Ok,
                fired: 0,
            }],
        },
        alert_metrics: Arc::new(AlertMetrics::new(&mut Registry::default())),
    };
    Board::new(Vec::new(), vec![policy])
}

fn evaluation(outcome: Outcome) -> SpanEvaluation {
    SpanEvaluation {
        response_id: None,
        id: "x".into(),
        policy: "quality".into(),
        trace_id: TraceId::from_bytes(&[1; 16]).unwrap(),
        span_id: SpanId::from_bytes(&[2; 8]).unwrap(),
        observed_at_unix_nano: 0,
        scored_at_unix_nano: 0,
        latency_ms: 1.0,
        time_to_first_token_ms: None,
        groups: BTreeMap::new(),
        model: None,
        embeddings: Default::default(),
        scores: vec![JudgeScore {
            judge: "grounded".into(),
            outcome,
            judge_latency_ms: 1.0,
        }],
    }
}

#[test]
fn verdicts_make_pass_rate_and_mean_and_errors_stay_apart() {
    let board = board();
    board.record_scores(&evaluation(Outcome::pass(1.0, "ok")));
    board.record_scores(&evaluation(Outcome::fail(0.0, "no")));
    board.record_scores(&evaluation(Outcome::fail(0.5, "meh")));
    board.record_scores(&evaluation(Outcome::Skipped {
        reason: umpire_core::judge::SkipReason::NotApplicable,
    }));
    let judge = &board.policies()[0].judges[0];
    assert_eq!((judge.passed, judge.failed, judge.skipped), (1, 2, 1));
    assert_eq!(judge.pass_rate(), Some(1.0 / 3.0));
    assert_eq!(judge.mean(), Some(0.5));
}

#[test]
fn alert_state_changes_become_events_once() {
    let board = board();
    let source = board.lock().policies[0].alert_metrics.clone();
    let labels = RuleLabels {
        rule: "grounded-drop".into(),
    };
    board.refresh();
    assert!(board.take_events().is_empty());
    source.firing.get_or_create(&labels).set(1);
    board.refresh();
    board.refresh();
    let events = board.take_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(
        &events[0],
        LocalEvent::Alert { state: AlertState::Firing, rule, .. } if rule == "grounded-drop"
    ));
    assert_eq!(board.policies()[0].alerts[0].fired, 1);
}
