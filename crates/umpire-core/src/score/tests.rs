use super::*;
use crate::judge::Outcome;

fn evaluation(trace: u8, span: u8) -> SpanEvaluation {
    let (trace_id, span_id) = (TraceId([trace; 16]), SpanId([span; 8]));
    SpanEvaluation {
        id: SpanEvaluation::id_for("quality", &trace_id, &span_id),
        policy: "quality".into(),
        trace_id,
        span_id,
        observed_at_unix_nano: 1,
        scored_at_unix_nano: 2,
        latency_ms: 3.0,
        time_to_first_token_ms: None,
        groups: BTreeMap::new(),
        model: Some("gpt-4o".into()),
        response_id: None,
        scores: vec![JudgeScore {
            judge: "json".into(),
            outcome: Outcome::pass(1.0, "valid JSON"),
            judge_latency_ms: 0.0,
        }],
        embeddings: BTreeMap::new(),
    }
}

fn read(messages: &[ScoresMessage]) -> Vec<SpanEvaluation> {
    messages
        .iter()
        .flat_map(|m| evaluations_of_message(&m.payload).unwrap_or_default())
        .collect()
}

#[test]
fn a_lone_evaluation_keeps_its_own_form_and_id() {
    let one = evaluation(1, 1);
    let messages = scores_messages(std::slice::from_ref(&one), 1 << 20).unwrap_or_default();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].id, one.id);
    assert_eq!(messages[0].evaluations, 1);
    let single: SpanEvaluation =
        crate::stream_codec::from_slice(&messages[0].payload).unwrap_or(evaluation(9, 9));
    assert_eq!(
        single, one,
        "readers of single evaluations read it as before"
    );
}

#[test]
fn a_traces_evaluations_travel_together_whatever_their_order() {
    let evaluations = [
        evaluation(1, 3),
        evaluation(2, 1),
        evaluation(1, 1),
        evaluation(1, 2),
    ];
    let messages = scores_messages(&evaluations, 1 << 20).unwrap_or_default();
    assert_eq!(messages.len(), 2, "one message per trace");
    let batch = &messages[0];
    assert_eq!(batch.evaluations, 3);
    assert!(
        batch
            .id
            .starts_with(&format!("quality/{}-3x", TraceId([1; 16]))),
        "{}",
        batch.id
    );
    assert_eq!(
        messages[1].id,
        evaluation(2, 1).id,
        "the other trace's lone evaluation"
    );

    let mut reordered = evaluations.clone();
    reordered.reverse();
    let again = scores_messages(&reordered, 1 << 20).unwrap_or_default();
    assert_eq!(
        again, messages,
        "the same evaluations make the same messages and ids"
    );

    let mut expected = evaluations.to_vec();
    expected.sort_by_key(|e| (e.trace_id, e.span_id));
    assert_eq!(
        read(&messages),
        expected,
        "every evaluation reads back, once"
    );
}

#[test]
fn batches_stay_within_the_byte_budget_and_the_count_limit() {
    let many: Vec<SpanEvaluation> = (0..=200).map(|n| evaluation(1, n)).collect();
    let size = crate::stream_codec::to_vec(&many[0])
        .map(|v| v.len())
        .unwrap_or(0);
    let budget = size * 10;
    let messages = scores_messages(&many, budget).unwrap_or_default();
    assert!(messages.iter().all(|m| m.payload.len() <= budget));
    assert!(
        messages
            .iter()
            .all(|m| m.evaluations <= MAX_EVALUATIONS_PER_MESSAGE)
    );
    assert!(messages.iter().any(|m| m.evaluations > 1));
    assert_eq!(read(&messages).len(), many.len());

    let roomy = scores_messages(&many, 1 << 24).unwrap_or_default();
    assert!(
        roomy
            .iter()
            .all(|m| m.evaluations <= MAX_EVALUATIONS_PER_MESSAGE)
    );
    assert_eq!(
        roomy.len(),
        many.len().div_ceil(MAX_EVALUATIONS_PER_MESSAGE)
    );
}

#[test]
fn an_evaluation_id_is_the_policy_then_the_trace_and_span_ids() {
    let id = SpanEvaluation::id_for(
        "team-a/quality",
        &"0748feb976cd256641cc0ff1847e6c60".parse().unwrap(),
        &"00f067aa0ba902b7".parse().unwrap(),
    );
    assert_eq!(
        id,
        "team-a/quality/0748feb976cd256641cc0ff1847e6c60-00f067aa0ba902b7"
    );
}
