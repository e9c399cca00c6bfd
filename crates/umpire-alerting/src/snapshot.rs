//! Alert window snapshots: takeover without replaying a whole baseline.
//!
//! A regression rule with a 24h baseline needs a day of scores in its windows. Rebuilding
//! them from the score stream on every change of leader (a rollout, a crash) means reading
//! a day of scores before the first evaluation. Instead the leader saves its windows every
//! `snapshot_interval` (and on a graceful shutdown) as one object per policy in the
//! project's JetStream object store, tagged with the score-stream sequence of the last score
//! folded in. A successor restores them and replays only the scores after that sequence.
//!
//! Windows depend only on the scores folded in, so the restored windows plus the tail are
//! exactly what a full replay builds. The snapshot needs no fencing: a paused ex-leader's
//! late save is an older but still consistent snapshot (its successor replays a longer
//! tail). Alert statuses are not in it: they live in the fenced alert state store. A
//! snapshot written by another Umpire version, for other rules, or older than the rules'
//! lookback is not used: the windows are then replayed in full, as without snapshots.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    object_store::{DeleteErrorKind, GetErrorKind, ObjectStore},
};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;
use umpire_core::alert::engine::{AlertEngine, EngineWindows};
use umpire_nats::streams::ensure_stream;
use umpire_nats::topology::{self, ProjectNames};

use crate::evaluation::{AlertEvaluator, now_nanos};
use crate::metrics::SnapshotLabels;

/// Bucket layouts may change between versions: a snapshot is only read by its own.
const WRITTEN_BY: &str = concat!("umpire ", env!("CARGO_PKG_VERSION"));

/// The longest a shutting-down leader spends saving its last snapshot.
const FINAL_SAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a new leader waits for the snapshot (e.g. while its stream elects a leader)
/// before it replays the whole lookback instead, and the longest a background save may
/// take before the next interval's save may start.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);
const SAVE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize, Deserialize)]
pub struct WindowSnapshot {
    pub written_by: String,
    /// Score-stream sequence of the last score folded into the windows.
    pub through_sequence: u64,
    pub taken_at_unix_nano: u64,
    pub windows: EngineWindows,
}

/// One policy's snapshot in the project's object store.
#[derive(Clone)]
pub struct WindowSnapshots {
    store: ObjectStore,
    policy: String,
}

impl WindowSnapshots {
    pub async fn open(
        js: &jetstream::Context,
        names: &ProjectNames,
        policy: &str,
        replicas: usize,
    ) -> Result<Self, String> {
        ensure_stream(js, topology::alert_snapshot_store(names, replicas))
            .await
            .map_err(|e| e.to_string())?;
        let store = js
            .get_object_store(names.alert_snapshot_bucket())
            .await
            .map_err(|e| format!("alert window snapshots: {e}"))?;
        Ok(Self {
            store,
            policy: policy.to_owned(),
        })
    }

    pub async fn load(&self) -> Result<Option<WindowSnapshot>, String> {
        let mut object = match self.store.get(&self.policy).await {
            Ok(object) => object,
            Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("reading the alert window snapshot: {e}")),
        };
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| format!("reading the alert window snapshot: {e}"))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("decoding the alert window snapshot: {e}"))
    }

    pub async fn save(&self, bytes: &[u8]) -> Result<(), String> {
        let mut reader = bytes;
        self.store
            .put(self.policy.as_str(), &mut reader)
            .await
            .map(|_| ())
            .map_err(|e| format!("saving the alert window snapshot: {e}"))
    }

    /// Forgets the policy's snapshot (its rules are gone).
    pub async fn delete(&self) {
        match self.store.delete(&self.policy).await {
            Ok(()) => {}
            Err(e) if e.kind() == DeleteErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(event = "alert_snapshot_delete_failed", error = %e, "the policy's alert window snapshot stays until overwritten")
            }
        }
    }
}

/// The snapshot being saved in the background, and what the last save covered.
#[derive(Default)]
pub(crate) struct SnapshotSaver {
    upload: Option<JoinHandle<()>>,
    /// Set by a save once stored: a failed save is retried at the next interval.
    saved_through: Arc<AtomicU64>,
}

impl AlertEvaluator {
    /// Restores the windows of the policy's last snapshot; returns the score-stream
    /// sequence to replay after, or `None` when the windows must be replayed in full.
    pub(crate) async fn restore_snapshot(&self, engine: &mut AlertEngine) -> Option<u64> {
        let outcome = |outcome| SnapshotLabels { outcome };
        let loaded = tokio::time::timeout(LOAD_TIMEOUT, self.snapshots.load())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {LOAD_TIMEOUT:?}")));
        let snapshot = match loaded {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => return None,
            Err(e) => {
                self.metrics
                    .snapshots
                    .get_or_create(&outcome("unreadable"))
                    .inc();
                tracing::warn!(event = "alert_snapshot_unreadable", error = %e, "replaying the whole lookback");
                return None;
            }
        };
        let age = Duration::from_nanos(now_nanos().saturating_sub(snapshot.taken_at_unix_nano));
        let refused = if snapshot.written_by != WRITTEN_BY {
            Some(format!("written by {}", snapshot.written_by))
        } else if age > engine.lookback() {
            Some("older than the rules' lookback".to_owned())
        } else {
            engine
                .restore_windows(snapshot.windows)
                .err()
                .map(|e| e.to_string())
        };
        if let Some(reason) = refused {
            self.metrics
                .snapshots
                .get_or_create(&outcome("refused"))
                .inc();
            tracing::info!(
                event = "alert_snapshot_refused",
                reason,
                "replaying the whole lookback"
            );
            return None;
        }
        self.metrics
            .snapshots
            .get_or_create(&outcome("restored"))
            .inc();
        Some(snapshot.through_sequence)
    }

    /// Starts saving the windows as of score `through`, unless nothing changed since the
    /// last save or the previous save is still under way.
    pub(crate) fn save_in_background(
        &self,
        engine: &AlertEngine,
        through: u64,
        saver: &mut SnapshotSaver,
    ) {
        if through == saver.saved_through.load(Ordering::Relaxed)
            || saver.upload.as_ref().is_some_and(|u| !u.is_finished())
        {
            return;
        }
        let Some(bytes) = self.encode(engine, through) else {
            return;
        };
        let snapshots = self.snapshots.clone();
        let metrics = self.metrics.clone();
        let saved_through = saver.saved_through.clone();
        saver.upload = Some(tokio::spawn(async move {
            let started = Instant::now();
            let result = tokio::time::timeout(SAVE_TIMEOUT, snapshots.save(&bytes))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {SAVE_TIMEOUT:?}")));
            if result.is_ok() {
                saved_through.store(through, Ordering::Relaxed);
            }
            report(&metrics, result, through, bytes.len(), started);
        }));
    }

    /// Saves the windows before leadership is given up, so the successor replays nothing.
    pub(crate) async fn save_before_leaving(
        &self,
        engine: &AlertEngine,
        through: u64,
        saver: &mut SnapshotSaver,
    ) {
        if let Some(upload) = saver.upload.take() {
            let _ = tokio::time::timeout(FINAL_SAVE_TIMEOUT, upload).await;
        }
        if through == saver.saved_through.load(Ordering::Relaxed) {
            return;
        }
        let Some(bytes) = self.encode(engine, through) else {
            return;
        };
        let started = Instant::now();
        let result = tokio::time::timeout(FINAL_SAVE_TIMEOUT, self.snapshots.save(&bytes))
            .await
            .unwrap_or_else(|_| Err("no answer".into()));
        report(&self.metrics, result, through, bytes.len(), started);
    }

    fn encode(&self, engine: &AlertEngine, through: u64) -> Option<Vec<u8>> {
        let snapshot = WindowSnapshot {
            written_by: WRITTEN_BY.to_owned(),
            through_sequence: through,
            taken_at_unix_nano: now_nanos(),
            windows: engine.windows(),
        };
        match serde_json::to_vec(&snapshot) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::warn!(event = "alert_snapshot_save_failed", error = %e, "encoding the alert windows");
                None
            }
        }
    }
}

fn report(
    metrics: &crate::metrics::AlertMetrics,
    result: Result<(), String>,
    through: u64,
    bytes: usize,
    started: Instant,
) {
    match result {
        Ok(()) => {
            metrics
                .snapshots
                .get_or_create(&SnapshotLabels { outcome: "saved" })
                .inc();
            metrics.snapshot_bytes.set(bytes as i64);
            tracing::info!(
                event = "alert_snapshot_saved",
                through_sequence = through,
                bytes,
                took_ms = started.elapsed().as_millis() as u64,
                "alert windows saved"
            );
        }
        Err(error) => {
            metrics
                .snapshots
                .get_or_create(&SnapshotLabels {
                    outcome: "save_failed",
                })
                .inc();
            tracing::warn!(
                event = "alert_snapshot_save_failed",
                error,
                "the next snapshot retries"
            );
        }
    }
}
