//! Key-value buckets, through async-nats' KV API (JetStream 2.10 and later).

use std::error::Error as _;
use std::time::Duration;

use async_nats::jetstream::{self, context::CreateStreamError, kv, stream};

use crate::streams::{StreamSetupError, refused};

#[derive(Debug, Clone)]
pub struct BucketSettings {
    pub bucket: String,
    pub description: String,
    pub history: i64,
    /// Entries not rewritten within this disappear (0: never).
    pub max_age: Duration,
    pub replicas: usize,
}

/// Creates the bucket, or updates its settings (replicas, age, history) to `settings`.
pub async fn ensure_bucket(
    js: &jetstream::Context,
    settings: &BucketSettings,
) -> Result<kv::Store, StreamSetupError> {
    let config = kv::Config {
        bucket: settings.bucket.clone(),
        description: settings.description.clone(),
        history: settings.history.max(1),
        max_age: settings.max_age,
        storage: stream::StorageType::File,
        num_replicas: settings.replicas.max(1),
        ..Default::default()
    };
    js.create_or_update_key_value(config)
        .await
        .map_err(|e| StreamSetupError {
            name: format!("KV_{}", settings.bucket),
            // NATS answered and refused (e.g. more replicas than the cluster has).
            rejected: e
                .source()
                .and_then(|s| s.downcast_ref::<CreateStreamError>())
                .is_some_and(|s| refused(&s.kind())),
            message: match e.source() {
                Some(source) => format!("{e}: {source}"),
                None => e.to_string(),
            },
        })
}
