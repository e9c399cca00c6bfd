//! Alert state in a NATS KV bucket per project ([`alert_state_bucket`]): `<policy>.<rule>.<group hash>` (or `.all`
//! for ungrouped rules) → the group's values and [`AlertStatus`]. Written by the policy's
//! leader after every state change and read by a new leader before it evaluates, so a
//! restart neither forgets a firing alert nor pages it again.

use std::collections::BTreeMap;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use umpire_core::alert::notification::{Notification, group_hash};
use umpire_core::alert::state::AlertStatus;
use umpire_nats::fence::{Fence, is_fenced};
use umpire_nats::kv::ensure_bucket;
use umpire_nats::topology::{ProjectNames, alert_state_bucket};

#[derive(Debug, thiserror::Error)]
#[error("alert state ({bucket}): {message}")]
pub struct StoreError {
    bucket: String,
    message: String,
    /// A newer leader claimed the policy: this replica must stop writing.
    pub fenced: bool,
}

/// One alert's persisted record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredAlert {
    pub rule: String,
    /// `key=value,…`, empty for ungrouped rules.
    pub group: String,
    pub values: BTreeMap<String, String>,
    pub status: AlertStatus,
    /// The trigger sent for the current firing episode: what a resolve needs if the rule
    /// leaves the policy while firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Notification>,
}

pub struct AlertStore {
    js: jetstream::Context,
    kv: kv::Store,
    stream: jetstream::stream::Stream,
    bucket: String,
    policy: String,
    /// Set by [`AlertStore::claim`]: the leader's writes carry it.
    fence: Option<Fence>,
}

impl AlertStore {
    pub async fn open(
        js: &jetstream::Context,
        names: &ProjectNames,
        policy: &str,
        replicas: usize,
    ) -> Result<Self, StoreError> {
        let settings = alert_state_bucket(names, replicas);
        let bucket = settings.bucket.clone();
        let error = |message: String| StoreError {
            bucket: bucket.clone(),
            message,
            fenced: false,
        };
        let kv = ensure_bucket(js, &settings)
            .await
            .map_err(|e| error(e.to_string()))?;
        let stream = js
            .get_stream(format!("KV_{bucket}"))
            .await
            .map_err(|e| error(e.to_string()))?;
        Ok(Self {
            js: js.clone(),
            kv,
            stream,
            bucket: bucket.clone(),
            policy: policy.to_owned(),
            fence: None,
        })
    }

    /// Opens the bucket only if it exists: readers (the controller's status) must never
    /// create it — a bucket created for a project being deleted would outlive it.
    pub async fn open_existing(
        js: &jetstream::Context,
        names: &ProjectNames,
        policy: &str,
    ) -> Result<Option<Self>, StoreError> {
        let bucket = &names.alert_state_bucket();
        let error = |message: String| StoreError {
            bucket: bucket.to_owned(),
            message,
            fenced: false,
        };
        let stream = match js.get_stream(format!("KV_{bucket}")).await {
            Ok(stream) => stream,
            Err(e) if umpire_nats::streams::is_not_found(&e.kind()) => return Ok(None),
            Err(e) => return Err(error(e.to_string())),
        };
        let kv = js
            .get_key_value(bucket)
            .await
            .map_err(|e| error(e.to_string()))?;
        Ok(Some(Self {
            js: js.clone(),
            kv,
            stream,
            bucket: bucket.to_owned(),
            policy: policy.to_owned(),
            fence: None,
        }))
    }

    pub fn key(&self, rule: &str, group: &str) -> String {
        let group = if group.is_empty() {
            "all".to_owned()
        } else {
            group_hash(group)
        };
        format!("{}.{rule}.{group}", self.policy)
    }

    /// Every stored alert of the policy. Records that no longer parse are skipped with a
    /// warning (they are rewritten at the next change).
    pub async fn load(&mut self) -> Result<Vec<StoredAlert>, StoreError> {
        let prefix = format!("$KV.{}.", self.bucket);
        let subjects: Vec<String> = self
            .stream
            .info_with_subjects(format!("{prefix}{}.>", self.policy))
            .await
            .map_err(|e| self.error(e.to_string()))?
            .map_ok(|(subject, _)| subject)
            .try_collect()
            .await
            .map_err(|e| self.error(e.to_string()))?;
        let mut alerts = Vec::new();
        for subject in subjects {
            let Some(key) = subject.strip_prefix(&prefix) else {
                continue;
            };
            let Some(bytes) = self
                .kv
                .get(key)
                .await
                .map_err(|e| self.error(e.to_string()))?
            else {
                continue;
            };
            match serde_json::from_slice::<StoredAlert>(&bytes) {
                Ok(alert) => alerts.push(alert),
                Err(e) => {
                    tracing::warn!(event = "alert_state_unreadable", key, error = %e, "skipping an unreadable alert record")
                }
            }
        }
        Ok(alerts)
    }

    /// Makes this replica the policy's writer: publishes a new epoch marker
    /// (`_epoch.<policy>`), after which only this store's writes are accepted — those of a
    /// previous leader that was paused past its lease are refused ([`Fence`]).
    pub async fn claim(&mut self, holder: &str) -> Result<(), StoreError> {
        let subject = format!("$KV.{}.{}", self.bucket, self.epoch_key());
        let fence = Fence::claim(&self.js, &subject, holder)
            .await
            .map_err(|e| self.error(format!("claiming the policy's alert state: {e}")))?;
        self.fence = Some(fence);
        Ok(())
    }

    fn epoch_key(&self) -> String {
        format!("_epoch.{}", self.policy)
    }

    pub async fn save(&self, alert: &StoredAlert) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(alert).map_err(|e| self.error(e.to_string()))?;
        let key = self.key(&alert.rule, &alert.group);
        match &self.fence {
            Some(_) => {
                self.write(&key, PublishMessage::build().payload(bytes.into()))
                    .await
            }
            None => self
                .kv
                .put(key, bytes.into())
                .await
                .map(|_| ())
                .map_err(|e| self.error(e.to_string())),
        }
    }

    /// A fenced write of `key` (what `kv.put` / `kv.purge` publish, plus the fence).
    async fn write(&self, key: &str, message: PublishMessage) -> Result<(), StoreError> {
        let message = match &self.fence {
            Some(fence) => fence.guard(message),
            None => message,
        };
        let fenced = |e: &async_nats::jetstream::context::PublishError| StoreError {
            bucket: self.bucket.clone(),
            message: e.to_string(),
            fenced: is_fenced(e),
        };
        self.js
            .send_publish(format!("$KV.{}.{key}", self.bucket), message)
            .await
            .map_err(|e| fenced(&e))?
            .await
            .map_err(|e| fenced(&e))?;
        Ok(())
    }

    /// The marker of a policy being deleted: `_retired.<policy>` (a leading `_` cannot start
    /// a policy name, so it never falls under another policy's keys).
    fn retired_key(&self) -> String {
        format!("_retired.{}", self.policy)
    }

    /// Marks the policy as being deleted: its alert leader resolves every firing alert at
    /// its route, forgets them all, and stops evaluating.
    pub async fn retire_policy(&self) -> Result<(), StoreError> {
        self.kv
            .put(self.retired_key(), "deleting".into())
            .await
            .map(|_| ())
            .map_err(|e| self.error(e.to_string()))
    }

    pub async fn is_retired(&self) -> Result<bool, StoreError> {
        self.kv
            .get(self.retired_key())
            .await
            .map(|value| value.is_some())
            .map_err(|e| self.error(e.to_string()))
    }

    /// Removes the policy's marker and any alert left (a policy re-created under the same
    /// name starts clean).
    pub async fn clear_policy(&mut self) -> Result<(), StoreError> {
        for alert in self.load().await? {
            self.delete(&alert.rule, &alert.group).await?;
        }
        self.kv
            .purge(self.retired_key())
            .await
            .map_err(|e| self.error(e.to_string()))
    }

    /// Forgets an alert (its rule left the policy).
    pub async fn delete(&self, rule: &str, group: &str) -> Result<(), StoreError> {
        let key = self.key(rule, group);
        match &self.fence {
            // What `kv.purge` publishes: a purge marker that rolls the key's history up.
            Some(_) => {
                self.write(
                    &key,
                    PublishMessage::build()
                        .header("KV-Operation", "PURGE")
                        .header("Nats-Rollup", "sub"),
                )
                .await
            }
            None => self
                .kv
                .purge(key)
                .await
                .map_err(|e| self.error(e.to_string())),
        }
    }

    fn error(&self, message: String) -> StoreError {
        StoreError {
            bucket: self.bucket.clone(),
            message,
            fenced: false,
        }
    }
}
