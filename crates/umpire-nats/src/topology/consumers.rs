//! Durable consumers: one per intake partition, one per policy on the span stream, one per
//! policy on the outbox.

use std::time::Duration;

use async_nats::jetstream::consumer;

use super::ProjectNames;

/// The intake partition's consumer: the sampler that owns the partition reads it.
pub fn intake_consumer(
    names: &ProjectNames,
    partition: u32,
    ack_wait: Duration,
) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(names.intake_consumer(partition)),
        filter_subject: names.intake_subject(partition),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait,
        max_deliver: -1,
        max_ack_pending: 20_000,
        ..Default::default()
    }
}

/// What a policy's consumer on the span stream reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConsumer {
    pub policy: String,
    /// Span subject tails (`<kind>.<operation>`, wildcards allowed) the server filters on;
    /// `None`: every span of the project (the evaluator filters).
    pub span_filters: Option<Vec<String>>,
    /// The policy judges whole traces: it reads the project's trace summaries (and reads
    /// each trace's spans back from the stream), not the spans; `span_filters` is unused.
    pub whole_traces: bool,
    pub ack_wait: Duration,
    pub max_ack_pending: usize,
}

/// The durable consumer an EvalPolicy's evaluators share. JetStream 2.10+ consumers take
/// several filter subjects, and an update keeps the consumer's position, so a policy whose
/// selection changes follows it without replaying or skipping spans.
pub fn policy_consumer(names: &ProjectNames, wanted: &PolicyConsumer) -> consumer::pull::Config {
    let subjects: Vec<String> = match &wanted.span_filters {
        _ if wanted.whole_traces => vec![names.traces_subject()],
        Some(filters) if !filters.is_empty() => filters
            .iter()
            .map(|tail| {
                format!(
                    "umpire.spans.{}.{}.{tail}",
                    names.namespace(),
                    names.project()
                )
            })
            .collect(),
        _ => vec![names.spans_wildcard()],
    };
    let (filter, filters) = match subjects.as_slice() {
        [one] => (one.clone(), Vec::new()),
        _ => (String::new(), subjects),
    };
    consumer::pull::Config {
        durable_name: Some(names.policy_consumer(&wanted.policy)),
        description: Some(format!("Umpire EvalPolicy {}", wanted.policy)),
        filter_subject: filter,
        filter_subjects: filters,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: wanted.ack_wait,
        max_deliver: -1,
        max_ack_pending: i64::try_from(wanted.max_ack_pending).unwrap_or(i64::MAX),
        // A policy judges live traffic from the moment its consumer exists (the controller
        // creates it with the policy, before evaluator pods start).
        deliver_policy: consumer::DeliverPolicy::New,
        ..Default::default()
    }
}

/// How long a delivery may go without progress before another replica takes it over.
pub const NOTIFIER_ACK_WAIT: Duration = Duration::from_secs(30);

/// The durable consumer delivering one route's notifications: one in flight across every
/// replica, so a route's deliveries stay in order (a trigger before its resolve), and a dead
/// route holds back only itself.
pub fn notifier_consumer(
    names: &ProjectNames,
    policy: &str,
    route: &str,
) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(names.notifier_consumer(policy, route)),
        description: Some(format!(
            "Umpire notifications of EvalPolicy {policy}, route {route}"
        )),
        filter_subject: names.notifications_subject(policy, route),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: NOTIFIER_ACK_WAIT,
        max_ack_pending: 1,
        max_deliver: -1,
        deliver_policy: consumer::DeliverPolicy::All,
        ..Default::default()
    }
}

/// How long an export batch may stay unacknowledged: its sender reports progress every
/// third of it while a backend is down, so an outage does not redeliver it.
pub const EXPORT_ACK_WAIT: Duration = Duration::from_secs(60);

/// The durable consumer forwarding a signal to an export target, shared by the ingest
/// replicas (each pulls batches from it). It starts with what is stored from its creation
/// on: a target added to a project with days of history does not replay them.
pub fn export_consumer(
    names: &ProjectNames,
    target: &str,
    signal: &str,
    filter_subject: String,
) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(names.export_consumer(target, signal)),
        description: Some(format!("Umpire export of {signal} to target {target}")),
        filter_subject,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: EXPORT_ACK_WAIT,
        max_ack_pending: 20_000,
        max_deliver: -1,
        deliver_policy: consumer::DeliverPolicy::New,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_consumers_filter_on_the_server_when_they_can() {
        let names = ProjectNames::new("ml", "bot");
        let mut wanted = PolicyConsumer {
            policy: "quality".into(),
            span_filters: Some(vec!["llm.>".into(), "agent.>".into()]),
            ack_wait: Duration::from_secs(60),
            max_ack_pending: 256,
            whole_traces: false,
        };
        let config = policy_consumer(&names, &wanted);
        assert_eq!(
            config.filter_subjects,
            ["umpire.spans.ml.bot.llm.>", "umpire.spans.ml.bot.agent.>"]
        );
        assert!(config.filter_subject.is_empty());

        wanted.span_filters = Some(vec!["llm.>".into()]);
        let config = policy_consumer(&names, &wanted);
        assert_eq!(config.filter_subject, "umpire.spans.ml.bot.llm.>");
        assert!(config.filter_subjects.is_empty());

        wanted.span_filters = None;
        let config = policy_consumer(&names, &wanted);
        assert_eq!(config.filter_subject, "umpire.spans.ml.bot.>");

        wanted.whole_traces = true;
        let config = policy_consumer(&names, &wanted);
        assert_eq!(config.filter_subject, "umpire.traces.ml.bot");
    }
}
