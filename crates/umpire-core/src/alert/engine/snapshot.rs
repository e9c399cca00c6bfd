//! The engine's windows as data, so a new alert leader can start from a snapshot and replay
//! only the scores stored after it instead of a whole baseline (hours to days of scores).
//!
//! Windows are a function of the scores folded in, nothing else: a snapshot taken after
//! the score at stream position `p` plus a replay from `p + 1` rebuilds exactly what a
//! full replay would. Alert statuses are not part of it (the alert state store holds them,
//! fenced per leader). A snapshot is only used by an engine with the very same rules: any
//! change of a rule (window, baseline, grouping, metric…) changes the bucket layout or the
//! samples taken, so such a snapshot is refused and the windows are replayed in full.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AlertEngine, Group};
use crate::alert::window::BucketSeries;

/// Every rule's groups' windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineWindows {
    /// [`AlertEngine::fingerprint`] of the engine the windows were taken from.
    pub fingerprint: String,
    pub rules: Vec<RuleWindows>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleWindows {
    pub rule: String,
    pub overflowed: u64,
    pub groups: Vec<GroupWindows>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupWindows {
    pub key: String,
    pub values: BTreeMap<String, String>,
    pub recent: BucketSeries,
    pub trailing: BucketSeries,
    pub watched_since_ns: Option<u64>,
    /// Absent from snapshots of earlier versions (fingerprints differ, so never read).
    #[serde(default)]
    pub last_sample_ns: Option<u64>,
}

/// The snapshot was taken from different rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the snapshot was taken with other alert rules (fingerprint {found}, these rules {expected})"
)]
pub struct SnapshotMismatch {
    pub found: String,
    pub expected: String,
}

impl AlertEngine {
    /// Identifies the rules exactly: equal fingerprints, equal bucket layouts and samples.
    pub fn fingerprint(&self) -> String {
        let mut digest = Sha256::new();
        for state in &self.rules {
            digest.update(format!("{:?}\n", state.rule).as_bytes());
        }
        digest
            .finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A copy of every group's windows.
    pub fn windows(&self) -> EngineWindows {
        EngineWindows {
            fingerprint: self.fingerprint(),
            rules: self
                .rules
                .iter()
                .map(|state| {
                    let mut groups: Vec<GroupWindows> = state
                        .groups
                        .iter()
                        .map(|(key, group)| GroupWindows {
                            key: key.clone(),
                            values: group.values.clone(),
                            recent: group.recent.clone(),
                            trailing: group.trailing.clone(),
                            watched_since_ns: group.watched_since_ns,
                            last_sample_ns: group.last_sample_ns,
                        })
                        .collect();
                    // In a stable order: equal windows, equal snapshots.
                    groups.sort_by(|a, b| a.key.cmp(&b.key));
                    RuleWindows {
                        rule: state.rule.name.clone(),
                        overflowed: state.overflowed,
                        groups,
                    }
                })
                .collect(),
        }
    }

    /// Replaces the windows with a snapshot's (statuses are kept). Refused, changing
    /// nothing, when the snapshot comes from other rules.
    pub fn restore_windows(&mut self, windows: EngineWindows) -> Result<(), SnapshotMismatch> {
        let expected = self.fingerprint();
        if windows.fingerprint != expected {
            return Err(SnapshotMismatch {
                found: windows.fingerprint,
                expected,
            });
        }
        for saved in windows.rules {
            let Some(state) = self.rules.iter_mut().find(|s| s.rule.name == saved.rule) else {
                continue;
            };
            state.overflowed = saved.overflowed;
            for group in saved.groups {
                let status = state
                    .groups
                    .remove(&group.key)
                    .map(|g| g.status)
                    .unwrap_or_default();
                state.groups.insert(
                    group.key,
                    Group {
                        values: group.values,
                        recent: group.recent,
                        trailing: group.trailing,
                        status,
                        last: None,
                        watched_since_ns: group.watched_since_ns,
                        last_sample_ns: group.last_sample_ns,
                        drift: Default::default(),
                    },
                );
            }
        }
        Ok(())
    }
}
