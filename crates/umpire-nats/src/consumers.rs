//! Idempotent durable-consumer setup: create when missing, update when its filter changed.

use async_nats::jetstream::{consumer, stream};

#[derive(Debug, thiserror::Error)]
#[error("setting up consumer {name}: {message}")]
pub struct ConsumerSetupError {
    pub name: String,
    pub message: String,
}

/// Makes the durable consumer `config.durable_name` exist on `stream` with `config`'s filter
/// subjects. A consumer whose filter differs is updated in place — JetStream 2.10+ allows
/// it, and the consumer keeps its position, so a policy whose selection changes neither
/// replays nor skips spans.
pub async fn ensure_consumer(
    stream: &stream::Stream,
    config: consumer::pull::Config,
) -> Result<consumer::PullConsumer, ConsumerSetupError> {
    let name = config.durable_name.clone().unwrap_or_default();
    let error = |message: String| ConsumerSetupError {
        name: name.clone(),
        message,
    };
    match stream.get_consumer::<consumer::pull::Config>(&name).await {
        Ok(mut existing) => {
            let current = existing
                .info()
                .await
                .map_err(|e| error(e.to_string()))?
                .config
                .clone();
            if current.filter_subject == config.filter_subject
                && current.filter_subjects == config.filter_subjects
            {
                return Ok(existing);
            }
            tracing::info!(
                event = "consumer_filter_updated",
                consumer = %name,
                from = ?(&current.filter_subject, &current.filter_subjects),
                to = ?(&config.filter_subject, &config.filter_subjects),
                "updating the consumer's filter"
            );
            stream
                .update_consumer(config)
                .await
                .map_err(|e| error(format!("updating the filter: {e}")))
        }
        Err(_) => stream
            .create_consumer(config)
            .await
            .map_err(|e| error(e.to_string())),
    }
}
