//! Spans ingest can never publish (undecodable, or too large even after truncation): stored
//! on the project's dead-letter stream with the reason instead of being retried forever.

use async_nats::jetstream::{self, message::PublishMessage};
use umpire_nats::topology::ProjectNames;
use umpire_otlp::buffered::BufferedSpan;

/// A span ingest cannot publish, as stored on the project's dead-letter stream: enough to
/// find it (ids, name) and the reason; not the span itself, which is what failed.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    id: String,
    trace_id: String,
    span_id: String,
    name: String,
    reason: String,
}

impl DeadLetter {
    pub fn of(span: &umpire_core::span::Span, reason: &str) -> Self {
        Self {
            id: span.dedup_id(),
            trace_id: span.trace_id.to_string(),
            span_id: span.span_id.to_string(),
            name: span.name.chars().take(256).collect(),
            reason: reason.to_owned(),
        }
    }

    pub fn undecodable(buffered: &BufferedSpan, reason: &str) -> Self {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let (trace_id, span_id) = (
            hex(buffered.trace_id_bytes()),
            hex(buffered.span_id_bytes()),
        );
        Self {
            id: format!("{trace_id}-{span_id}"),
            trace_id,
            span_id,
            name: buffered.name().chars().take(256).collect(),
            reason: format!("undecodable: {reason}"),
        }
    }

    /// Stored before the intake message is acknowledged, deduplicated by the span's id.
    pub async fn publish(
        &self,
        js: &jetstream::Context,
        names: &ProjectNames,
    ) -> Result<(), String> {
        tracing::warn!(event = "span_dead_lettered", trace_id = %self.trace_id, span_id = %self.span_id, reason = %self.reason, "a span cannot be published; stored on the dead-letter stream");
        let payload = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        js.send_publish(
            names.ingest_dead_letter_subject(),
            PublishMessage::build()
                .payload(payload.into())
                .message_id(format!("ingest/{}", self.id)),
        )
        .await
        .map_err(|e| format!("dead-lettering: {e}"))?
        .await
        .map_err(|e| format!("dead-lettering: {e}"))?;
        Ok(())
    }
}
