//! How delivery to each export target stands, in a NATS KV bucket per project
//! ([`export_status_bucket`]): each ingest replica writes one report per target and signal
//! (`<target>.<signal>.<member>`) when its state changes and every
//! [`EXPORT_REPORT_REFRESH`]; the controller reads them into a condition per target on the
//! TraceProject. A stopped replica's reports expire after [`EXPORT_REPORT_TTL`].
//!
//! [`EXPORT_REPORT_REFRESH`]: umpire_nats::topology::EXPORT_REPORT_REFRESH
//! [`EXPORT_REPORT_TTL`]: umpire_nats::topology::EXPORT_REPORT_TTL

use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use umpire_nats::kv::ensure_bucket;
use umpire_nats::streams::StreamSetupError;
use umpire_nats::topology::{ProjectNames, export_status_bucket};

/// Longest error text a report carries (it reaches the TraceProject's status).
pub const MAX_ERROR_CHARS: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryState {
    /// Set up; nothing sent yet.
    Started,
    /// The last request was accepted.
    Delivering,
    /// The last request failed; it is being retried (nothing is dropped).
    Failing,
    /// The target refused items as invalid; they were dropped.
    Rejecting,
    /// The target cannot be used as configured (a missing Secret, an address the egress
    /// policy refuses, an invalid endpoint): nothing is sent to it.
    Invalid,
}

/// One replica's state for one target and signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportReport {
    pub target: String,
    /// `spans`, `evaluations`, or `setup` for a target that could not be set up.
    pub signal: String,
    pub member: String,
    pub state: DeliveryState,
    /// When this state began (milliseconds since the Unix epoch): stable while the state
    /// lasts, so a status built from it does not change on every refresh.
    pub since_ms: u64,
    /// What went wrong, bounded to [`MAX_ERROR_CHARS`] (never request headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ExportReport {
    fn key(&self) -> String {
        format!("{}.{}.{}", self.target, self.signal, self.member)
    }
}

/// `text` cut to [`MAX_ERROR_CHARS`] characters.
pub fn bounded_error(text: &str) -> String {
    let mut chars = text.chars();
    let mut bounded: String = chars.by_ref().take(MAX_ERROR_CHARS).collect();
    if chars.next().is_some() {
        bounded.push('…');
    }
    bounded
}

pub struct ExportStatusStore {
    kv: kv::Store,
}

impl ExportStatusStore {
    /// Creates the bucket if needed (ingest).
    pub async fn open(
        js: &jetstream::Context,
        names: &ProjectNames,
        replicas: usize,
    ) -> Result<Self, StreamSetupError> {
        let kv = ensure_bucket(js, &export_status_bucket(names, replicas)).await?;
        Ok(Self { kv })
    }

    /// The bucket if some ingest replica created it (the controller never creates it).
    pub async fn open_existing(
        js: &jetstream::Context,
        names: &ProjectNames,
    ) -> Result<Option<Self>, String> {
        let bucket = names.export_status_bucket();
        match js.get_stream(format!("KV_{bucket}")).await {
            Ok(_) => {}
            Err(e) if umpire_nats::streams::is_not_found(&e.kind()) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        }
        let kv = js.get_key_value(bucket).await.map_err(|e| e.to_string())?;
        Ok(Some(Self { kv }))
    }

    pub async fn report(&self, report: &ExportReport) -> Result<(), String> {
        let value = serde_json::to_vec(report).map_err(|e| e.to_string())?;
        self.kv
            .put(report.key(), value.into())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Every live report; undecodable ones (another version's) are skipped.
    pub async fn load(&self) -> Result<Vec<ExportReport>, String> {
        let keys: Vec<String> = match self.kv.keys().await {
            Ok(keys) => keys.try_collect().await.map_err(|e| e.to_string())?,
            Err(e) => return Err(e.to_string()),
        };
        let mut reports = Vec::new();
        for key in keys {
            if let Some(value) = self.kv.get(&key).await.map_err(|e| e.to_string())?
                && let Ok(report) = serde_json::from_slice::<ExportReport>(&value)
            {
                reports.push(report);
            }
        }
        Ok(reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_bounded() {
        assert_eq!(bounded_error("503"), "503");
        let long = "x".repeat(1000);
        assert_eq!(bounded_error(&long).chars().count(), MAX_ERROR_CHARS + 1);
    }
}
