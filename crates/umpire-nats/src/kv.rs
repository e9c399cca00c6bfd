//! Key-value buckets. async-nats' `create_key_value` first queries the account, and parsing
//! that answer fails on nats-server 2.9 (Debian's package): the reply lacks fields newer
//! servers send. The bucket's stream follows the documented KV layout (ADR-8), so we create
//! it as a stream and open it with `get_key_value`, which works on 2.9 and later alike.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use crate::streams::{StreamSetupError, ensure_stream};

#[derive(Debug, Clone)]
pub struct BucketSettings {
    pub bucket: String,
    pub description: String,
    pub history: i64,
    /// Entries not rewritten within this disappear (0: never).
    pub max_age: Duration,
    pub replicas: usize,
}

pub async fn ensure_bucket(
    js: &jetstream::Context,
    settings: &BucketSettings,
) -> Result<kv::Store, StreamSetupError> {
    let config = stream::Config {
        name: format!("KV_{}", settings.bucket),
        description: Some(settings.description.clone()),
        subjects: vec![format!("$KV.{}.>", settings.bucket)],
        max_messages_per_subject: settings.history.max(1),
        max_age: settings.max_age,
        storage: stream::StorageType::File,
        num_replicas: settings.replicas.max(1),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    ensure_stream(js, config).await?;
    js.get_key_value(&settings.bucket)
        .await
        .map_err(|e| StreamSetupError {
            name: format!("KV_{}", settings.bucket),
            message: e.to_string(),
            rejected: false,
        })
}
