//! Publishing a kept trace's spans to the span stream.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use futures::future::join_all;
use umpire_nats::names::ProjectNames;
use umpire_otlp::buffered::BufferedSpan;

use super::buffer::MessageKey;
use crate::intake::PAYLOAD_HEADROOM;

pub struct PublishJob {
    pub partition: u32,
    /// Intake messages to release once published.
    pub messages: Vec<MessageKey>,
    pub spans: Vec<BufferedSpan>,
    pub attempt: u32,
}

pub struct PublishOutcome {
    pub job: PublishJob,
    pub result: Result<(), String>,
    pub elapsed: Duration,
}

/// Exponential backoff for retries: 100 ms doubling to 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

pub async fn publish_job(
    js: jetstream::Context,
    names: ProjectNames,
    job: PublishJob,
) -> PublishOutcome {
    if job.attempt > 0 {
        tokio::time::sleep(backoff(job.attempt)).await;
    }
    let started = Instant::now();
    let result = publish_spans(&js, &names, &job.spans).await;
    PublishOutcome {
        job,
        result,
        elapsed: started.elapsed(),
    }
}

/// Subject tokens must not contain `.`, `*`, `>` or whitespace.
fn subject_token(text: &str) -> String {
    let token: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if token.is_empty() { "_".into() } else { token }
}

/// Spans sent before awaiting their acknowledgements: bounds the publishes a job holds
/// unacknowledged (32 jobs × 256 stays inside the publish context's budget).
const ACK_CHUNK: usize = 256;

async fn publish_spans(
    js: &jetstream::Context,
    names: &ProjectNames,
    spans: &[BufferedSpan],
) -> Result<(), String> {
    let client = js.client();
    if !umpire_nats::connect::is_connected(&client) {
        return Err("not connected to NATS".into());
    }
    let budget = client
        .server_info()
        .max_payload
        .saturating_sub(PAYLOAD_HEADROOM)
        .max(64 * 1024);
    for chunk in spans.chunks(ACK_CHUNK) {
        let mut acks = Vec::with_capacity(chunk.len());
        for buffered in chunk {
            let Ok(mut span) = buffered.to_domain() else {
                continue;
            };
            let kind = span
                .ai
                .kind
                .map(|k| k.name().to_ascii_lowercase())
                .unwrap_or_else(|| "none".into());
            let operation = span
                .ai
                .operation
                .as_deref()
                .map(subject_token)
                .unwrap_or_else(|| "_".into());
            let subject = names.spans_subject(&kind, &operation);
            let id = span.dedup_id();
            let payload = span.to_wire(budget).map_err(|e| e.to_string())?;
            let ack = js
                .send_publish(
                    subject,
                    PublishMessage::build()
                        .payload(payload.into())
                        .message_id(id),
                )
                .await
                .map_err(|e| e.to_string())?;
            acks.push(ack);
        }
        for result in join_all(acks.into_iter().map(|a| a.into_future())).await {
            result.map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tokens_are_safe() {
        assert_eq!(subject_token("chat"), "chat");
        assert_eq!(subject_token("text.completion *"), "text_completion__");
        assert_eq!(subject_token(""), "_");
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(20), Duration::from_secs(5));
    }
}
