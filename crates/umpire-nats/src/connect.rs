//! Connecting to NATS: reconnect forever, report connection state to readiness and logs.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use serde::{Deserialize, Serialize};
use umpire_runtime::readiness::Readiness;

use crate::auth::{AuthError, NatsAuth, with_tls};

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NatsSettings {
    /// Server URL(s), comma-separated: `nats://nats.nats:4222`.
    pub url: String,
    /// A folder holding the credentials as a mounted Secret does: `creds` (a `.creds` file:
    /// JWT + NKey seed), `nkey` (a seed), `token`, or `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_dir: Option<PathBuf>,
    /// A folder with TLS material: `ca.crt` (the CA to trust), optionally `tls.crt` and
    /// `tls.key` (a client certificate). Given, TLS is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_dir: Option<PathBuf>,
}

impl NatsSettings {
    /// A server without credentials or TLS.
    pub fn plain(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// The server URLs: `url` is a comma-separated list, as every NATS client takes it.
    pub fn servers(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Connect options carrying the credentials and TLS settings.
    pub fn options(&self) -> Result<ConnectOptions, ConnectError> {
        let mut options = match &self.auth_dir {
            Some(dir) => NatsAuth::read(dir)?.options(dir)?,
            None => ConnectOptions::new(),
        };
        if let Some(dir) = &self.tls_dir {
            options = with_tls(options, dir)?;
        }
        Ok(options)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("NATS credentials: {0}")]
    Credentials(#[from] AuthError),
    #[error("connecting to NATS at {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
}

/// Connects (retrying in the background until the server is reachable, so a worker can start
/// before NATS and report not-ready meanwhile) and keeps the readiness check named `check` in
/// step with the connection.
pub async fn connect(
    settings: &NatsSettings,
    client_name: &str,
    readiness: &Readiness,
    check: &'static str,
) -> Result<Client, ConnectError> {
    readiness.register(check, "not connected to NATS yet");
    let mut options = settings.options()?;
    let events = readiness.clone();
    options = options
        .name(client_name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| {
            // 0, 100 ms, 200 ms … capped at 2 s: fast recovery from a NATS restart.
            Duration::from_millis((attempts as u64 * 100).min(2_000))
        })
        .event_callback(move |event| {
            let readiness = events.clone();
            async move {
                match &event {
                    Event::Connected => {
                        readiness.set_ok(check);
                        tracing::info!(event = "nats_connected", "connected to NATS");
                    }
                    Event::Disconnected => {
                        readiness.set_failing(check, "disconnected from NATS");
                        tracing::warn!(
                            event = "nats_disconnected",
                            "lost the NATS connection; reconnecting"
                        );
                    }
                    // The client was closed — the process is shutting down: not an outage.
                    Event::Closed => {
                        readiness.set_failing(check, "NATS connection closed");
                        tracing::info!(event = "nats_closed", "NATS connection closed");
                    }
                    other => {
                        tracing::warn!(event = "nats_event", detail = %other, "NATS client event")
                    }
                }
            }
        });
    let client = options
        .connect(settings.servers().as_slice())
        .await
        .map_err(|source| ConnectError::Connect {
            url: settings.url.clone(),
            source,
        })?;
    if client.connection_state() == async_nats::connection::State::Connected {
        readiness.set_ok(check);
    }
    Ok(client)
}

/// Room left in every message for headers (message ids, fencing, reasons).
pub const PAYLOAD_HEADROOM: usize = 16 * 1024;

/// Bytes one message's payload may take on this connection: the server's `max_payload`
/// less [`PAYLOAD_HEADROOM`], and at least 64 KiB.
pub fn payload_budget(client: &Client) -> usize {
    client
        .server_info()
        .max_payload
        .saturating_sub(PAYLOAD_HEADROOM)
        .max(64 * 1024)
}

/// Whether the client is connected right now.
pub fn is_connected(client: &Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}
