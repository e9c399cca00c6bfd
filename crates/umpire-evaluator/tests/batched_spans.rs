#![allow(clippy::unwrap_used)]
//! Span-stream messages that carry several spans (a JSON array of wire spans) are read by
//! the evaluator's span path and by trace read-back, beside single-span messages: each span
//! of a batch is judged and scored on its own, and the message is acknowledged once, after
//! every evaluation is stored.

use std::time::Duration;

use async_nats::jetstream;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use umpire_contract::evaluator::EvaluatorConfig;
use umpire_contract::ingest::{IngestConfig, ListenAddresses};
use umpire_core::batch::{batch_message, batch_message_id};
use umpire_core::ids::{SpanId, TraceId};
use umpire_core::judge::Outcome;
use umpire_core::score::SpanEvaluation;
use umpire_core::span::{AiSpanKind, AiView, Attributes, OtelSpanKind, Scope, Span, Status};
use umpire_core::trace_summary::TraceSummary;
use umpire_nats::connect::NatsSettings;
use umpire_nats::topology::ProjectNames;
use umpire_testkit::nats::{NatsServer, read_evaluations};
use umpire_testkit::wait::eventually;

const SCORES: &str = "UMPIRE_SCORES_team_bot";

/// An LLM span of trace `trace` lasting `millis`.
fn llm_span(trace: u8, id: u8, millis: u64) -> Span {
    Span {
        trace_id: TraceId([trace; 16]),
        span_id: SpanId([id; 8]),
        parent_span_id: None,
        name: "chat gpt-4o".into(),
        kind: OtelSpanKind::Client,
        start_time_unix_nano: 1_800_000_000_000_000_000,
        end_time_unix_nano: 1_800_000_000_000_000_000 + millis * 1_000_000,
        status: Status::default(),
        attributes: Attributes::new(),
        events: Vec::new(),
        resource: Attributes::new(),
        scope: Scope::default(),
        ai: AiView {
            kind: Some(AiSpanKind::Llm),
            operation: Some("chat".into()),
            ..AiView::default()
        },
        truncated: Vec::new(),
    }
}

fn wire(span: &Span) -> Vec<u8> {
    span.clone().to_wire(1 << 20).unwrap()
}

/// Ingest (which creates the project's streams) and the evaluator of policy `quality`.
async fn start(nats: &NatsServer, policy: serde_json::Value) -> CancellationToken {
    let settings = NatsSettings {
        url: nats.url(),
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    let project = serde_json::from_value(json!({"sampling": {"decisionWait": "200ms"}})).unwrap();
    let ingest = umpire_ingest::start(
        IngestConfig {
            listen: ListenAddresses {
                grpc: "127.0.0.1:0".parse().unwrap(),
                http: "127.0.0.1:0".parse().unwrap(),
                admin: "127.0.0.1:0".parse().unwrap(),
            },
            ..IngestConfig::for_project("team", "bot", project, settings.clone())
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let evaluator = umpire_evaluator::start(
        EvaluatorConfig {
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            ack_wait: Some(Duration::from_secs(5)),
            ..EvaluatorConfig::for_policy(
                "team",
                "quality",
                serde_json::from_value(policy).unwrap(),
                settings,
                None,
                None,
            )
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    for readiness in [&ingest.readiness, &evaluator.readiness] {
        eventually("workers ready", Duration::from_secs(30), || async {
            readiness.status().ok()
        })
        .await;
    }
    shutdown
}

async fn evaluations(js: &jetstream::Context, count: usize) -> Vec<SpanEvaluation> {
    eventually(
        &format!("{count} evaluations"),
        Duration::from_secs(60),
        || async move {
            let stored = read_evaluations(js, SCORES).await.ok()?;
            (stored.len() >= count).then_some(stored)
        },
    )
    .await
    .into_iter()
    .map(|(_, evaluation)| evaluation)
    .collect()
}

fn passed(evaluation: &SpanEvaluation) -> Option<bool> {
    match &evaluation.score("fast")?.outcome {
        Outcome::Scored(verdict) => Some(verdict.passed),
        _ => None,
    }
}

/// An evaluator of a policy judging LLM spans' latency (at most 1 s), and a JetStream
/// context on its server.
async fn start_latency_policy(nats: &NatsServer) -> (CancellationToken, jetstream::Context) {
    let shutdown = start(
        nats,
        json!({"projectRef": {"name": "bot"}, "select": {"kinds": ["LLM"]},
               "judges": [{"name": "fast", "latency": {"maxMs": 1000}}]}),
    )
    .await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    (shutdown, js)
}

/// Publishes `batch` as one span message, then `single` as its own, as ingest does.
async fn publish_batch_then_single(js: &jetstream::Context, batch: &[Span], single: &Span) {
    let names = ProjectNames::new("team", "bot");
    let encoded: Vec<Vec<u8>> = batch.iter().map(wire).collect();
    for payload in [
        batch_message(encoded.iter().map(Vec::as_slice)),
        wire(single),
    ] {
        js.publish(names.spans_subject("llm", "chat"), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

/// The scores messages holding `count` evaluations: each message's id and the span ids of
/// the evaluations it carries, in order.
async fn scores_messages(js: &jetstream::Context, count: usize) -> Vec<(String, Vec<SpanId>)> {
    let stored = eventually(
        &format!("{count} evaluations"),
        Duration::from_secs(60),
        || async move {
            let stored = read_evaluations(js, SCORES).await.ok()?;
            (stored.len() >= count).then_some(stored)
        },
    )
    .await;
    let mut messages: Vec<(u64, String, Vec<SpanId>)> = Vec::new();
    for (message, evaluation) in stored {
        match messages.last_mut() {
            Some((sequence, _, spans)) if *sequence == message.sequence => {
                spans.push(evaluation.span_id)
            }
            _ => messages.push((
                message.sequence,
                message.message_id.unwrap_or_default(),
                vec![evaluation.span_id],
            )),
        }
    }
    messages
        .into_iter()
        .map(|(_, id, spans)| (id, spans))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_span_of_a_batch_is_judged_and_the_message_acknowledged_once() {
    let nats = NatsServer::start().unwrap();
    let (shutdown, js) = start_latency_policy(&nats).await;
    let names = ProjectNames::new("team", "bot");
    let batch = [
        llm_span(1, 1, 10),
        llm_span(1, 2, 5_000),
        llm_span(1, 3, 20),
    ];
    publish_batch_then_single(&js, &batch, &llm_span(2, 4, 3_000)).await;

    let stored = evaluations(&js, 4).await;
    let mut verdicts: Vec<(SpanId, Option<bool>)> =
        stored.iter().map(|e| (e.span_id, passed(e))).collect();
    verdicts.sort_by_key(|(id, _)| id.0);
    assert_eq!(
        verdicts,
        [
            (SpanId([1; 8]), Some(true)),
            (SpanId([2; 8]), Some(false)),
            (SpanId([3; 8]), Some(true)),
            (SpanId([4; 8]), Some(false)),
        ],
        "each span scored on its own duration"
    );
    let (stream_name, consumer_name) = (names.spans_stream(), names.policy_consumer("quality"));
    let redelivered = eventually(
        "both messages acknowledged",
        Duration::from_secs(30),
        || {
            let (js, stream_name, consumer_name) =
                (js.clone(), stream_name.clone(), consumer_name.clone());
            async move {
                let mut consumer: jetstream::consumer::PullConsumer = js
                    .get_stream(stream_name)
                    .await
                    .ok()?
                    .get_consumer(&consumer_name)
                    .await
                    .ok()?;
                let info = consumer.info().await.ok()?;
                (info.num_ack_pending == 0 && info.num_pending == 0).then_some(info.num_redelivered)
            }
        },
    )
    .await;
    assert_eq!(
        redelivered, 0,
        "the batch was acknowledged, not redelivered"
    );
    assert_eq!(
        read_evaluations(&js, SCORES).await.unwrap().len(),
        4,
        "nothing judged twice"
    );
    shutdown.cancel();
}

/// A batch's evaluations are stored together, as its spans came: one scores message named
/// after the trace and its spans, so a redelivered batch deduplicates; a lone span's
/// evaluation keeps its own form and id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batchs_evaluations_are_stored_as_one_scores_message() {
    let nats = NatsServer::start().unwrap();
    let (shutdown, js) = start_latency_policy(&nats).await;
    let batch: Vec<Span> = (1..=5).map(|id| llm_span(3, id, 10)).collect();
    publish_batch_then_single(&js, &batch, &llm_span(4, 9, 10)).await;

    let mut messages = scores_messages(&js, 6).await;
    // Stored in whichever order their judging finished.
    messages.sort_by_key(|(_, spans)| spans.first().map(|id| id.0));
    let batch_ids: Vec<SpanId> = (1..=5).map(|id| SpanId([id; 8])).collect();
    assert_eq!(
        messages,
        [
            (
                format!(
                    "quality/{}",
                    batch_message_id(&TraceId([3; 16]), &batch_ids)
                ),
                batch_ids.clone(),
            ),
            (
                SpanEvaluation::id_for("quality", &TraceId([4; 16]), &SpanId([9; 8])),
                vec![SpanId([9; 8])],
            ),
        ],
        "one scores message for the batch, one for the lone span"
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_read_back_takes_spans_from_batches_and_single_messages() {
    let nats = NatsServer::start().unwrap();
    // A trace-level judge: the evaluator reads each trace back by its summary.
    let shutdown = start(
        &nats,
        json!({"projectRef": {"name": "bot"},
               "judges": [{"name": "loop", "agentLoop": {"maxLlmCalls": 2}}]}),
    )
    .await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let names = ProjectNames::new("team", "bot");
    let mut root = llm_span(7, 1, 100);
    root.ai.kind = Some(AiSpanKind::Agent);
    root.ai.operation = Some("invoke_agent".into());
    let calls: Vec<Span> = (2..=4)
        .map(|id| {
            let mut call = llm_span(7, id, 10);
            call.parent_span_id = Some(SpanId([1; 8]));
            call
        })
        .collect();
    let encoded: Vec<Vec<u8>> = calls.iter().map(wire).collect();
    let mut sequences = Vec::new();
    for (subject, payload) in [
        (names.spans_subject("agent", "invoke_agent"), wire(&root)),
        (
            names.spans_subject("llm", "chat"),
            batch_message(encoded.iter().map(Vec::as_slice)),
        ),
    ] {
        let ack = js
            .publish(subject, payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
        sequences.push(ack.sequence);
    }
    let summary = TraceSummary::new(TraceId([7; 16]), None, sequences);
    js.publish(
        names.traces_subject(),
        serde_json::to_vec(&summary).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    // Every span of the trace is judged in the whole trace's context.
    let stored = evaluations(&js, 4).await;
    let mut spans: Vec<SpanId> = stored.iter().map(|e| e.span_id).collect();
    spans.sort_by_key(|id| id.0);
    assert_eq!(spans, (1..=4).map(|id| SpanId([id; 8])).collect::<Vec<_>>());
    // The agent loop judge scores the trace at its root (the other spans are not applicable).
    let root = stored.iter().find(|e| e.span_id == SpanId([1; 8])).unwrap();
    let score = root.score("loop").unwrap();
    let Outcome::Scored(verdict) = &score.outcome else {
        panic!("the trace was not judged at its root: {:?}", score.outcome);
    };
    assert!(
        !verdict.passed,
        "3 LLM calls against a limit of 2: {verdict:?}"
    );
    let explanation = verdict.explanation.as_deref().unwrap_or_default();
    assert!(
        explanation.contains("3 LLM calls") && explanation.contains("in 4 spans"),
        "the batch's three calls and the single root were read back: {explanation}"
    );
    shutdown.cancel();
}

/// The evaluator skips decoding the attributes the GenAI view was built from (prompts,
/// replies) — except those its policy names: a judge reading `attributes.input.value` sees
/// it, while nothing else of the kind is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attribute_the_policy_names_is_judged_though_its_kind_is_skipped() {
    let nats = NatsServer::start().unwrap();
    let shutdown = start(
        &nats,
        json!({"projectRef": {"name": "bot"}, "select": {"kinds": ["LLM"]},
               "judges": [{"name": "asks-refund", "regex": {"pattern": "refund", "field": "attributes.input.value"}},
                          {"name": "fast", "latency": {"maxMs": 1000}}]}),
    )
    .await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let mut span = llm_span(5, 1, 10);
    for (key, value) in [
        ("input.value", "I want a refund"),
        (
            "gen_ai.input.messages",
            "[{\"role\":\"user\",\"parts\":[]}]",
        ),
    ] {
        span.attributes.insert(key.into(), value.into());
    }
    publish_batch_then_single(&js, &[llm_span(5, 2, 10), llm_span(5, 3, 10)], &span).await;

    let evaluations = evaluations(&js, 3).await;
    let judged = evaluations
        .iter()
        .find(|e| e.span_id == SpanId([1; 8]))
        .and_then(|e| e.score("asks-refund"))
        .map(|score| score.outcome.clone());
    assert!(
        matches!(&judged, Some(Outcome::Scored(verdict)) if verdict.passed),
        "the regex judge read attributes.input.value: {judged:?}"
    );
    shutdown.cancel();
}
