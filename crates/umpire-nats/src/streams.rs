//! Idempotent stream setup: create when missing, update when the limits changed.

use async_nats::jetstream::{self, stream};

#[derive(Debug, thiserror::Error)]
#[error("setting up JetStream stream {name}: {message}")]
pub struct StreamSetupError {
    pub name: String,
    pub message: String,
    /// NATS answered and refused the configuration (a JetStream API error, e.g. more
    /// replicas than the cluster has) — retrying will not help until the spec or the
    /// cluster changes. Otherwise NATS did not answer (unreachable, timed out).
    pub rejected: bool,
}

pub(crate) fn refused(kind: &jetstream::context::CreateStreamErrorKind) -> bool {
    use jetstream::context::CreateStreamErrorKind as Kind;
    matches!(
        kind,
        Kind::JetStream(_)
            | Kind::InvalidStreamName
            | Kind::EmptyStreamName
            | Kind::DomainAndExternalSet
    )
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
        rejected: false,
    };
    let rejection = |e: jetstream::context::CreateStreamError| StreamSetupError {
        name: name.clone(),
        rejected: refused(&e.kind()),
        message: e.to_string(),
    };
    match js.get_stream(&name).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .map_err(|e| error(e.to_string()))?
                .clone();
            if differs(&info.config, &config) {
                tracing::info!(event = "stream_updated", stream = %name, "updating stream settings to match the spec");
                js.update_stream(config).await.map_err(rejection)
            } else {
                Ok(info)
            }
        }
        Err(e) if is_not_found(&e.kind()) => {
            let mut created = js.create_stream(config).await.map_err(rejection)?;
            created
                .info()
                .await
                .cloned()
                .map_err(|e| error(e.to_string()))
        }
        Err(e) => Err(error(e.to_string())),
    }
}

/// Compares the settings Umpire controls. Unset limits (0) mean "unlimited" (-1) to the
/// server, and an unset duplicate window takes the server's default, so neither counts as a
/// difference.
fn differs(current: &stream::Config, wanted: &stream::Config) -> bool {
    let limit = |value: i64| if value <= 0 { -1 } else { value };
    let size = |value: i32| if value <= 0 { -1 } else { value };
    current.subjects != wanted.subjects
        || current.max_age != wanted.max_age
        || limit(current.max_bytes) != limit(wanted.max_bytes)
        || limit(current.max_messages) != limit(wanted.max_messages)
        || limit(current.max_messages_per_subject) != limit(wanted.max_messages_per_subject)
        || current.num_replicas.max(1) != wanted.num_replicas.max(1)
        || (!wanted.duplicate_window.is_zero()
            && current.duplicate_window != wanted.duplicate_window)
        || size(current.max_message_size) != size(wanted.max_message_size)
        || current.discard != wanted.discard
        || current.allow_rollup != wanted.allow_rollup
}

/// Whether a stream lookup failed because the stream does not exist.
pub fn is_not_found(kind: &jetstream::context::GetStreamErrorKind) -> bool {
    matches!(
        kind,
        jetstream::context::GetStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}
