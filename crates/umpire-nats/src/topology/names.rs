//! Stream, subject, consumer and bucket names. They carry namespace and project so tenants
//! never share a subject, and a credential scoped to `umpire.*.<ns>.<project>.>` covers
//! exactly one project.

/// Names for one TraceProject (namespace and name are DNS labels, valid in every NATS name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectNames {
    namespace: String,
    project: String,
}

impl ProjectNames {
    pub fn new(namespace: &str, project: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            project: project.to_owned(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    /// Kept, normalised spans.
    pub fn spans_stream(&self) -> String {
        format!("UMPIRE_SPANS_{}_{}", self.namespace, self.project)
    }

    /// `umpire.spans.<ns>.<project>.<kind>.<operation>`: evaluators filter by kind (and GenAI
    /// operation) without decoding. `kind` is the lowercased OpenInference kind or `none`;
    /// `operation` a known GenAI operation, `other` for any other value, or `_` when unset.
    pub fn spans_subject(&self, kind: &str, operation: &str) -> String {
        format!(
            "umpire.spans.{}.{}.{kind}.{operation}",
            self.namespace, self.project
        )
    }

    pub fn spans_wildcard(&self) -> String {
        format!("umpire.spans.{}.{}.>", self.namespace, self.project)
    }

    /// `umpire.fences.<ns>.<project>.<partition>`: the prefix of a trace partition's fence
    /// markers in the span stream (one subject per slot below it; see
    /// [`crate::fence::SlottedFence`]). Outside `umpire.spans.…`, so span consumers never
    /// see them.
    pub fn partition_fence_prefix(&self, partition: u32) -> String {
        format!(
            "umpire.fences.{}.{}.{partition}",
            self.namespace, self.project
        )
    }

    pub fn fences_wildcard(&self) -> String {
        format!("umpire.fences.{}.{}.>", self.namespace, self.project)
    }

    /// `umpire.traces.<ns>.<project>`: one summary per kept trace, published to the span
    /// stream after its spans (outside `umpire.spans.…`, so span consumers never see it).
    pub fn traces_subject(&self) -> String {
        format!("umpire.traces.{}.{}", self.namespace, self.project)
    }

    /// Every span as received (redacted), awaiting its trace's sampling decision.
    pub fn intake_stream(&self) -> String {
        format!("UMPIRE_INTAKE_{}_{}", self.namespace, self.project)
    }

    pub fn intake_subject(&self, partition: u32) -> String {
        format!(
            "umpire.intake.{}.{}.{partition}",
            self.namespace, self.project
        )
    }

    pub fn intake_wildcard(&self) -> String {
        format!("umpire.intake.{}.{}.*", self.namespace, self.project)
    }

    /// The durable consumer of one intake partition.
    pub fn intake_consumer(&self, partition: u32) -> String {
        format!("intake-{partition}")
    }

    /// Judge scores and span observations of every policy on the project.
    pub fn scores_stream(&self) -> String {
        format!("UMPIRE_SCORES_{}_{}", self.namespace, self.project)
    }

    /// `umpire.scores.<ns>.<project>.<policy>`: one message per judged span.
    pub fn scores_subject(&self, policy: &str) -> String {
        format!("umpire.scores.{}.{}.{policy}", self.namespace, self.project)
    }

    pub fn scores_wildcard(&self) -> String {
        format!("umpire.scores.{}.{}.>", self.namespace, self.project)
    }

    /// Span messages an evaluator could not decode, after its retries.
    pub fn dead_letter_stream(&self) -> String {
        format!("UMPIRE_DLQ_{}_{}", self.namespace, self.project)
    }

    pub fn dead_letter_subject(&self, policy: &str) -> String {
        format!("umpire.dlq.{}.{}.{policy}", self.namespace, self.project)
    }

    /// Spans ingest could not publish (`_ingest` cannot be a policy name).
    /// Notifications of `policy` its routes gave up on.
    pub fn notification_dead_letter_subject(&self, policy: &str) -> String {
        format!("{}.notifications", self.dead_letter_subject(policy))
    }

    pub fn ingest_dead_letter_subject(&self) -> String {
        format!("umpire.dlq.{}.{}._ingest", self.namespace, self.project)
    }

    pub fn dead_letter_wildcard(&self) -> String {
        format!("umpire.dlq.{}.{}.>", self.namespace, self.project)
    }

    /// The durable consumer an EvalPolicy's evaluators share.
    pub fn policy_consumer(&self, policy: &str) -> String {
        format!("policy-{policy}")
    }

    /// Alert state of every policy on the project: `<policy>.<rule>.<group hash>`.
    pub fn alert_state_bucket(&self) -> String {
        format!("umpire-alerts-{}-{}", self.namespace, self.project)
    }

    /// The LLM judges' shared limits: requests per minute and tokens per day, by policy
    /// and judge.
    pub fn budget_bucket(&self) -> String {
        format!("umpire-budgets-{}-{}", self.namespace, self.project)
    }

    /// Each policy's alert windows (object `<policy>`), saved by its alert leader.
    pub fn alert_snapshot_bucket(&self) -> String {
        format!("umpire-alert-windows-{}-{}", self.namespace, self.project)
    }

    /// Which evaluator replica evaluates each policy's alert rules: key `<policy>`.
    pub fn alert_lease_bucket(&self) -> String {
        format!("umpire-alert-leases-{}-{}", self.namespace, self.project)
    }

    /// Notifications awaiting delivery (the outbox).
    pub fn notifications_stream(&self) -> String {
        format!("UMPIRE_NOTIFICATIONS_{}_{}", self.namespace, self.project)
    }

    /// `umpire.notifications.<ns>.<project>.<policy>.<route>`: one subject per route, so each
    /// route has its own ordered delivery.
    pub fn notifications_subject(&self, policy: &str, route: &str) -> String {
        format!(
            "umpire.notifications.{}.{}.{policy}.{route}",
            self.namespace, self.project
        )
    }

    /// Where builds before per-route delivery queued a policy's notifications (drained by
    /// the legacy consumer, then removed).
    pub fn legacy_notifications_subject(&self, policy: &str) -> String {
        format!(
            "umpire.notifications.{}.{}.{policy}",
            self.namespace, self.project
        )
    }

    pub fn notifications_wildcard(&self) -> String {
        format!("umpire.notifications.{}.{}.>", self.namespace, self.project)
    }

    /// The durable consumer that delivers one route's notifications, one at a time. `_`
    /// separates the names (neither may contain it), so no two pairs share a consumer.
    pub fn notifier_consumer(&self, policy: &str, route: &str) -> String {
        format!("{}{route}", self.notifier_consumer_prefix(policy))
    }

    /// Every notifier consumer of `policy` starts with this.
    pub fn notifier_consumer_prefix(&self, policy: &str) -> String {
        format!("notifier-{policy}_")
    }

    /// The single consumer of builds before per-route delivery.
    pub fn legacy_notifier_consumer(&self, policy: &str) -> String {
        format!("notifier-{policy}")
    }

    /// The durable consumer forwarding one signal (`spans`, `evaluations`) to one export
    /// target. `_` separates them (a target name cannot contain it).
    pub fn export_consumer(&self, target: &str, signal: &str) -> String {
        format!("export-{target}_{signal}")
    }

    /// How each ingest replica's delivery to each export target stands:
    /// `<target>.<signal>.<member>`.
    pub fn export_status_bucket(&self) -> String {
        format!("umpire-export-status-{}-{}", self.namespace, self.project)
    }

    /// Ingest replicas' membership and partition leases.
    pub fn ingest_bucket(&self) -> String {
        format!("umpire-ingest-{}-{}", self.namespace, self.project)
    }

    /// Every JetStream stream the project's workers create (KV buckets are `KV_<bucket>`
    /// streams): what deleting the TraceProject removes.
    pub fn all_streams(&self) -> Vec<String> {
        vec![
            self.spans_stream(),
            self.intake_stream(),
            self.scores_stream(),
            self.dead_letter_stream(),
            self.notifications_stream(),
            format!("KV_{}", self.alert_state_bucket()),
            format!("KV_{}", self.alert_lease_bucket()),
            format!("KV_{}", self.ingest_bucket()),
            format!("KV_{}", self.budget_bucket()),
            format!("KV_{}", self.export_status_bucket()),
            format!("OBJ_{}", self.alert_snapshot_bucket()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_namespace_and_project() {
        let names = ProjectNames::new("ml-apps", "support-bot");
        assert_eq!(names.spans_stream(), "UMPIRE_SPANS_ml-apps_support-bot");
        assert_eq!(
            names.spans_subject("llm", "chat"),
            "umpire.spans.ml-apps.support-bot.llm.chat"
        );
        assert_eq!(
            names.intake_subject(7),
            "umpire.intake.ml-apps.support-bot.7"
        );
        assert_eq!(names.ingest_bucket(), "umpire-ingest-ml-apps-support-bot");
    }
}
