//! Publishing received spans to the intake stream, one subject per trace partition. A
//! request is acknowledged to the client only after JetStream acknowledged every message.

use std::time::Instant;

use async_nats::jetstream;
use futures::future::join_all;
use prost::Message;
use umpire_nats::topology::ProjectNames;
use umpire_otlp::batching::{Partitioned, fit_to_size};

/// Header naming the intake payload's compression.
pub const CODEC_HEADER: &str = "Umpire-Codec";
/// Intake payloads are LZ4-compressed: every span crosses NATS twice on its way to a
/// decision, and GenAI spans (JSON messages, prompts) shrink 3–5×, which cuts nats-server's
/// work and the publish-acknowledgement latency clients wait for, for a few percent of
/// ingest CPU.
pub const CODEC_LZ4: &str = "lz4";
/// Largest decompressed intake payload accepted (guards a corrupt size prefix).
pub const MAX_DECOMPRESSED: usize = 64 << 20;

/// Compresses an encoded intake export.
pub fn compress(encoded: &[u8]) -> Vec<u8> {
    lz4_flex::compress_prepend_size(encoded)
}

/// The encoded export of an intake message, decompressed according to its header.
pub fn decompress<'p>(
    payload: &'p [u8],
    codec: Option<&str>,
) -> Result<std::borrow::Cow<'p, [u8]>, String> {
    match codec {
        None => Ok(std::borrow::Cow::Borrowed(payload)),
        Some(CODEC_LZ4) => {
            let size = payload
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .unwrap_or(0);
            if size > MAX_DECOMPRESSED {
                return Err(format!(
                    "declared size {size} exceeds {MAX_DECOMPRESSED} bytes"
                ));
            }
            lz4_flex::decompress_size_prepended(payload)
                .map(std::borrow::Cow::Owned)
                .map_err(|e| e.to_string())
        }
        Some(other) => Err(format!("unknown intake codec {other:?}")),
    }
}

/// Why spans could not be handed to JetStream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    /// NATS is unreachable or did not answer: retryable.
    #[error("the span store is unavailable: {0}")]
    Unavailable(String),
    /// The intake stream is full: sampling is behind. Retryable after a pause.
    #[error("ingest is overloaded: {0}")]
    Overloaded(String),
}

pub struct IntakePublisher {
    js: jetstream::Context,
    names: ProjectNames,
}

impl IntakePublisher {
    pub fn new(js: jetstream::Context, names: ProjectNames) -> Self {
        Self { js, names }
    }

    /// Publishes every part, chunked to fit the payload limit. Returns the number of spans
    /// truncated to fit.
    pub async fn publish(&self, partitioned: Partitioned) -> Result<usize, IntakeError> {
        let client = self.js.client();
        if !umpire_nats::connect::is_connected(&client) {
            return Err(IntakeError::Unavailable("not connected to NATS".into()));
        }
        let budget = umpire_nats::connect::payload_budget(&client);
        let mut acks = Vec::new();
        let mut truncated = 0;
        for (partition, part) in partitioned.parts {
            let (chunks, cut) = fit_to_size(part, budget);
            truncated += cut;
            for chunk in chunks {
                let subject = self.names.intake_subject(partition);
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(CODEC_HEADER, CODEC_LZ4);
                let payload = compress(&chunk.encode_to_vec());
                let ack = self
                    .js
                    .publish_with_headers(subject, headers, payload.into())
                    .await
                    .map_err(|e| {
                        match e.kind() {
                            // Too many publishes awaiting acknowledgement: JetStream is behind.
                            async_nats::jetstream::context::PublishErrorKind::MaxAckPending => {
                                IntakeError::Overloaded(e.to_string())
                            }
                            _ => IntakeError::Unavailable(e.to_string()),
                        }
                    })?;
                acks.push(ack);
            }
        }
        let started = Instant::now();
        for result in join_all(acks.into_iter().map(|ack| ack.into_future())).await {
            result.map_err(|e| classify(&e.to_string()))?;
        }
        tracing::trace!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "intake acknowledged"
        );
        Ok(truncated)
    }
}

/// JetStream's "stream full" answers mean back-pressure; anything else is unavailability.
fn classify(message: &str) -> IntakeError {
    let lower = message.to_ascii_lowercase();
    if lower.contains("maximum bytes")
        || lower.contains("maximum messages")
        || lower.contains("insufficient resources")
    {
        IntakeError::Overloaded(message.to_owned())
    } else {
        IntakeError::Unavailable(message.to_owned())
    }
}
