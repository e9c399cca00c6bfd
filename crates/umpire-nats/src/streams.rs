//! Idempotent stream setup: create when missing, update when the limits changed.

use async_nats::jetstream::{self, stream};

#[derive(Debug, thiserror::Error)]
#[error("setting up JetStream stream {name}: {message}")]
pub struct StreamSetupError {
    pub name: String,
    pub message: String,
}

/// Makes the stream exist with `config`'s settings. Only fields JetStream allows to change
/// are updated; an existing stream is never recreated (that would lose data).
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Info, StreamSetupError> {
    let name = config.name.clone();
    let error = |message: String| StreamSetupError {
        name: name.clone(),
        message,
    };
    match js.get_stream(&name).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .map_err(|e| error(e.to_string()))?
                .clone();
            if differs(&info.config, &config) {
                tracing::info!(event = "stream_updated", stream = %name, "updating stream limits");
                js.update_stream(config)
                    .await
                    .map_err(|e| error(e.to_string()))
            } else {
                Ok(info)
            }
        }
        Err(e) if is_not_found(&e.kind()) => {
            let mut created = js
                .create_stream(config)
                .await
                .map_err(|e| error(e.to_string()))?;
            created
                .info()
                .await
                .map(|i| i.clone())
                .map_err(|e| error(e.to_string()))
        }
        Err(e) => Err(error(e.to_string())),
    }
}

fn differs(current: &stream::Config, wanted: &stream::Config) -> bool {
    current.subjects != wanted.subjects
        || current.max_age != wanted.max_age
        || current.max_bytes != wanted.max_bytes
        || current.max_messages != wanted.max_messages
        || current.num_replicas != wanted.num_replicas
        || current.duplicate_window != wanted.duplicate_window
        || current.max_message_size != wanted.max_message_size
        || current.discard != wanted.discard
}

fn is_not_found(kind: &jetstream::context::GetStreamErrorKind) -> bool {
    matches!(
        kind,
        jetstream::context::GetStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}
