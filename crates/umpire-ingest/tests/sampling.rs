//! Tail sampling end to end: whole traces kept by policy, late spans following the decision,
//! three replicas agreeing on one decision per trace, bounded buffering, and a graceful
//! shutdown that flushes what is buffered.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;
use support::*;
use umpire_core::hashing::{HashPurpose, trace_in_percentage};
use umpire_core::ids::TraceId;
use umpire_core::trace_summary::TraceSummary;
use umpire_testkit::nats::{NatsServer, read_stream_on};
use umpire_testkit::wait::eventually;

fn policies() -> serde_json::Value {
    json!({
        "sampling": {
            "decisionWait": "500ms",
            "policies": [
                {"name": "errors", "statusCode": ["ERROR"]},
                {"name": "slow", "latency": {"thresholdMs": 1000}},
                {"name": "premium", "stringAttribute": {"key": "gen_ai.request.model", "values": ["gpt-4o"]}}
            ]
        }
    })
}

/// Trace `t`: 3 spans; an error in span 2 when t % 5 == 0, slow when t % 7 == 0, the
/// premium model when t % 11 == 0.
fn trace_spans(t: u32) -> Vec<umpire_otlp::proto::Span> {
    (0..3)
        .map(|i| {
            let error = t.is_multiple_of(5) && i == 2;
            let duration = if t.is_multiple_of(7) && i == 0 {
                1500
            } else {
                20
            };
            let attributes = if t.is_multiple_of(11) && i == 1 {
                vec![string_kv("gen_ai.request.model", "gpt-4o")]
            } else {
                vec![]
            };
            span(t, i, error, duration, attributes)
        })
        .collect()
}

#[tokio::test]
async fn keeps_whole_traces_by_policy_and_drops_the_rest() {
    let nats = NatsServer::start().unwrap();
    let ingest = TestIngest::start(&nats.url(), policies()).await;
    // Spread each trace over several requests, interleaved with other traces.
    for round in 0..3u32 {
        let spans = (1..=40)
            .map(|t| trace_spans(t).remove(round as usize))
            .collect();
        assert_eq!(
            post_protobuf(&ingest.http, &request(spans)).await.status(),
            200
        );
    }
    let expected: BTreeSet<String> = (1..=40)
        .filter(|t| t % 5 == 0 || t % 7 == 0 || t % 11 == 0)
        .map(trace_hex)
        .collect();
    let spans = kept_spans(&jetstream(&nats.url()).await, expected.len() * 3).await;
    let traces = by_trace(&spans);
    assert_eq!(traces.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(
        traces.values().all(|spans| spans.len() == 3),
        "traces are kept whole: {traces:?}"
    );
    eventually("every trace decided", Duration::from_secs(10), || async {
        (ingest.metric("umpire_ingest_traces_dropped_total").await == (40 - expected.len()) as f64)
            .then_some(())
    })
    .await;
    assert_eq!(
        ingest
            .metric_with("umpire_ingest_traces_kept_total", "policy=\"errors\"")
            .await,
        8.0
    );
    // 35 is both slow and an error: the first policy in order gets the credit.
    assert_eq!(
        ingest
            .metric_with("umpire_ingest_traces_kept_total", "policy=\"slow\"")
            .await,
        4.0
    );
    assert_eq!(
        ingest
            .metric_with("umpire_ingest_traces_kept_total", "policy=\"premium\"")
            .await,
        3.0
    );
}

#[tokio::test]
async fn late_spans_follow_their_trace_decision() {
    let nats = NatsServer::start().unwrap();
    let ingest = TestIngest::start(&nats.url(), policies()).await;
    let js = jetstream(&nats.url()).await;
    // Trace 5 has an error (kept); trace 1 is ordinary (dropped).
    post_protobuf(
        &ingest.http,
        &request(vec![
            span(5, 0, true, 5, vec![]),
            span(1, 0, false, 5, vec![]),
        ]),
    )
    .await;
    kept_spans(&js, 1).await;
    eventually("both traces decided", Duration::from_secs(10), || async {
        (ingest.metric("umpire_ingest_traces_dropped_total").await == 1.0).then_some(())
    })
    .await;
    post_protobuf(
        &ingest.http,
        &request(vec![
            span(5, 1, false, 5, vec![]),
            span(1, 1, false, 5, vec![]),
        ]),
    )
    .await;
    let spans = kept_spans(&js, 2).await;
    eventually("late spans counted", Duration::from_secs(10), || async {
        (ingest.metric("umpire_ingest_late_spans_total").await == 2.0).then_some(())
    })
    .await;
    let traces = by_trace(&spans);
    assert_eq!(traces.len(), 1);
    assert_eq!(
        traces[&trace_hex(5)].len(),
        2,
        "the late span of a kept trace is kept"
    );
    assert_eq!(
        ingest
            .metric_with("umpire_ingest_late_spans_total", "reason=\"dropped\"")
            .await,
        1.0
    );
}

/// Three replicas, each receiving one span of every trace: only each partition's owner
/// decides, so every trace is kept whole or not at all, exactly once.
#[tokio::test]
async fn three_replicas_agree_on_one_decision_per_trace() {
    let nats = NatsServer::start().unwrap();
    let spec = json!({
        "sampling": {
            "decisionWait": "1s",
            "policies": [
                {"name": "errors", "statusCode": ["ERROR"]},
                {"name": "sample", "probabilistic": {"percentage": 30}}
            ]
        }
    });
    let mut replicas = Vec::new();
    for n in 0..3 {
        let options = Options {
            member: format!("replica-{n}"),
            ..Options::default()
        };
        replicas.push(TestIngest::start_with(&nats.url(), spec.clone(), options).await);
    }
    eventually(
        "partitions spread over the replicas",
        Duration::from_secs(40),
        || async {
            let mut owned = Vec::new();
            for replica in &replicas {
                owned.push(replica.metric("umpire_ingest_partitions_owned").await);
            }
            (owned.iter().sum::<f64>() == 16.0 && owned.iter().all(|o| *o >= 5.0)).then_some(())
        },
    )
    .await;

    let traces = 90u32;
    for index in 0..3u32 {
        let spans = (1..=traces)
            .map(|t| span(t, index, t % 3 == 0 && index == 2, 10, vec![]))
            .collect();
        let response = post_protobuf(&replicas[index as usize].http, &request(spans)).await;
        assert_eq!(response.status(), 200);
    }
    let expected: BTreeSet<String> = (1..=traces)
        .filter(|t| {
            t % 3 == 0
                || trace_in_percentage(&TraceId(trace_id(*t)), HashPurpose::TailSampling, 30.0)
        })
        .map(trace_hex)
        .collect();
    let spans = kept_spans(&jetstream(&nats.url()).await, expected.len() * 3).await;
    let kept = by_trace(&spans);
    assert_eq!(
        kept.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "one decision per trace"
    );
    assert!(
        kept.values().all(|ids| ids.len() == 3),
        "whole traces only: {kept:?}"
    );
    let ids: BTreeSet<String> = spans.iter().map(|(_, s)| s.dedup_id()).collect();
    assert_eq!(ids.len(), spans.len(), "no span stored twice");

    let mut decided = 0.0;
    for replica in &replicas {
        decided += replica.metric("umpire_ingest_traces_kept_total").await
            + replica.metric("umpire_ingest_traces_dropped_total").await;
    }
    assert_eq!(
        decided,
        f64::from(traces),
        "each trace decided exactly once across replicas"
    );
    for replica in replicas {
        replica.stop().await;
    }
}

/// Sends `count` traces of one span each (traces 1..=count), 500 per request.
async fn send_one_span_traces(ingest: &TestIngest, count: u32) {
    for first in (1..=count).step_by(500) {
        let spans = (first..(first + 500).min(count + 1))
            .map(|t| span(t, 0, false, 1, vec![]))
            .collect();
        assert_eq!(
            post_protobuf(&ingest.http, &request(spans)).await.status(),
            200
        );
    }
}

#[tokio::test]
async fn sheds_by_deciding_early_when_the_buffer_is_full() {
    let nats = NatsServer::start().unwrap();
    let spec = json!({"sampling": {"decisionWait": "10m", "maxBufferedSpans": 1000}});
    let ingest = TestIngest::start(&nats.url(), spec).await;
    send_one_span_traces(&ingest, 3000).await;
    // With a 10-minute wait, only shedding can have decided these.
    let spans = kept_spans(&jetstream(&nats.url()).await, 2000).await;
    assert!(spans.len() >= 2000);
    let early = ingest
        .metric_with("umpire_ingest_early_decisions_total", "buffer_full")
        .await;
    assert!(early >= 2000.0, "{early}");
    assert!(ingest.metric("umpire_ingest_buffered_spans").await <= 1000.0);
}

/// Kept spans waiting for a span stream that does not answer still count against the buffer:
/// the sampler stops pulling the intake instead of deciding every trace early and queueing
/// its spans in memory without limit (measured before: 630 MB of spans waiting to publish
/// against a 134 MB buffer budget under sustained load, every trace decided early).
#[tokio::test]
async fn spans_waiting_for_the_span_stream_pause_the_intake_instead_of_filling_memory() {
    let nats = NatsServer::start().unwrap();
    let spec = json!({"sampling": {"decisionWait": "10m", "maxBufferedSpans": 1000}});
    let ingest = TestIngest::start(&nats.url(), spec).await;
    let js = jetstream(&nats.url()).await;
    // The span stream refuses new messages (full, discarding new ones): publishes fail and
    // are retried. (Deleting it would also delete the partitions' fence markers.)
    let mut span_stream = js.get_stream(spans_stream()).await.unwrap();
    let info = span_stream.info().await.unwrap().clone();
    let config = info.config.clone();
    js.update_stream(async_nats::jetstream::stream::Config {
        max_messages: i64::try_from(info.state.messages).unwrap(),
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        ..config.clone()
    })
    .await
    .unwrap();
    send_one_span_traces(&ingest, 3000).await;
    eventually("the intake to pause", Duration::from_secs(30), || async {
        (ingest.metric("umpire_ingest_intake_paused").await == 1.0).then_some(())
    })
    .await;
    // Buffered and waiting to publish, together: the limit plus at most one intake message
    // taken in before the pause (a request's spans split over 16 partitions).
    let held = ingest.metric("umpire_ingest_buffered_spans").await;
    assert!(held <= 1000.0 + 500.0, "{held} spans held");
    // The span stream back: the waiting spans are published and the intake resumes (what
    // the 10-minute wait still holds is flushed by the shutdown); nothing was lost.
    js.update_stream(config).await.unwrap();
    kept_spans(&js, 2000).await;
    eventually(
        "the intake to resume and be taken in whole",
        Duration::from_secs(30),
        || async {
            let paused = ingest.metric("umpire_ingest_intake_paused").await;
            let kept = ingest.metric("umpire_ingest_spans_kept_total").await;
            let held = ingest.metric("umpire_ingest_buffered_spans").await;
            (paused == 0.0 && kept + held == 3000.0).then_some(())
        },
    )
    .await;
    ingest.stop().await;
    let spans = kept_spans(&js, 3000).await;
    let ids: BTreeSet<String> = spans.iter().map(|(_, span)| span.dedup_id()).collect();
    assert_eq!(ids.len(), 3000);
}

#[tokio::test]
async fn graceful_shutdown_flushes_buffered_traces() {
    let nats = NatsServer::start().unwrap();
    let ingest = TestIngest::start(&nats.url(), json!({"sampling": {"decisionWait": "1h"}})).await;
    for t in 1..=20 {
        assert_eq!(
            post_protobuf(
                &ingest.http,
                &request(vec![
                    span(t, 0, false, 1, vec![]),
                    span(t, 1, false, 1, vec![])
                ])
            )
            .await
            .status(),
            200
        );
    }
    eventually("spans buffered", Duration::from_secs(10), || async {
        (ingest.metric("umpire_ingest_buffered_spans").await == 40.0).then_some(())
    })
    .await;
    ingest.stop().await;
    let spans = kept_spans(&jetstream(&nats.url()).await, 40).await;
    let traces: BTreeMap<String, Vec<String>> = by_trace(&spans);
    assert_eq!(traces.len(), 20);
}

#[tokio::test]
async fn a_kept_trace_travels_as_one_message_per_subject() {
    let nats = NatsServer::start().unwrap();
    let ingest = TestIngest::start(&nats.url(), keep_all("200ms")).await;
    // Four chat calls and two plain steps of one trace, in one request.
    let spans = (0..6)
        .map(|i| {
            let attributes = if i < 4 {
                vec![string_kv("gen_ai.operation.name", "chat")]
            } else {
                vec![]
            };
            span(7, i, false, 5, attributes)
        })
        .collect();
    assert_eq!(
        post_protobuf(&ingest.http, &request(spans)).await.status(),
        200
    );
    let js = jetstream(&nats.url()).await;
    let stored = kept_spans(&js, 6).await;
    let mut per_message: BTreeMap<u64, (String, usize)> = BTreeMap::new();
    for (message, _) in &stored {
        let entry = per_message
            .entry(message.sequence)
            .or_insert((message.subject.clone(), 0));
        entry.1 += 1;
    }
    assert_eq!(
        per_message.into_values().collect::<Vec<_>>(),
        [
            ("umpire.spans.test.app.llm.chat".to_owned(), 4),
            ("umpire.spans.test.app.none._".to_owned(), 2)
        ],
        "one message per subject, the spans in it"
    );
    let summaries = read_stream_on(&js, &spans_stream(), Some("umpire.traces.>"))
        .await
        .unwrap();
    assert_eq!(summaries.len(), 1);
    let summary: TraceSummary = serde_json::from_slice(&summaries[0].payload).unwrap();
    assert_eq!(summary.message_count(), 2, "{summary:?}");
    assert_eq!(ingest.metric("umpire_ingest_spans_kept_total").await, 6.0);
}
