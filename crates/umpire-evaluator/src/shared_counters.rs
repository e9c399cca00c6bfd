//! The LLM judges' shared limits in NATS KV: one counter per judge and minute (requests)
//! and per judge and UTC day (tokens), keyed `<policy>.<judge>.requests.<minute>` /
//! `<policy>.<judge>.tokens.<day>` in the project's budget bucket, changed only by
//! compare-and-set so concurrent replicas never lose an update or pass a limit.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use umpire_llm::shared::{SharedCounters, SharedFuture};

/// Compare-and-set attempts before a change gives up (the caller retries later).
const ATTEMPTS: u32 = 50;

pub struct KvCounters {
    /// Set once the evaluator created the bucket (before any span is judged).
    store: Arc<OnceLock<kv::Store>>,
    policy: String,
}

impl KvCounters {
    pub fn new(policy: &str) -> Self {
        Self {
            store: Arc::new(OnceLock::new()),
            policy: policy.to_owned(),
        }
    }

    pub fn set_store(&self, store: kv::Store) {
        let _ = self.store.set(store);
    }

    /// Changes counter `key` by what `change` says, given its current value; returns
    /// `(added, total)`.
    async fn change(&self, key: &str, change: impl Fn(u64) -> u64) -> Result<(u64, u64), String> {
        let store = self
            .store
            .get()
            .ok_or("the shared-limit bucket is not set up yet")?;
        let key = format!("{}.{key}", self.policy);
        for attempt in 0..ATTEMPTS {
            let entry = store.entry(&key).await.map_err(|e| e.to_string())?;
            let (current, revision) = match entry {
                Some(entry) if entry.operation == Operation::Put => (
                    std::str::from_utf8(&entry.value)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0),
                    Some(entry.revision),
                ),
                Some(entry) => (0, Some(entry.revision)),
                None => (0, None),
            };
            let added = change(current);
            if added == 0 {
                return Ok((0, current));
            }
            let total = current.saturating_add(added);
            let value = total.to_string().into();
            let conflict = match revision {
                Some(revision) => match store.update(&key, value, revision).await {
                    Ok(_) => return Ok((added, total)),
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => true,
                    Err(e) => return Err(e.to_string()),
                },
                None => match store.create(&key, value).await {
                    Ok(_) => return Ok((added, total)),
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => true,
                    Err(e) => return Err(e.to_string()),
                },
            };
            if conflict {
                // Another replica changed it first: read again, after a short jittered
                // pause so contending replicas spread out.
                let pause = 1 + u64::from(attempt.min(10)) * rand::random_range(1..=3);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
        Err(format!("{key}: too many concurrent changes"))
    }
}

impl SharedCounters for KvCounters {
    fn take<'a>(&'a self, key: &'a str, wanted: u64, limit: u64) -> SharedFuture<'a, u64> {
        Box::pin(async move {
            self.change(key, |current| wanted.min(limit.saturating_sub(current)))
                .await
                .map(|(added, _)| added)
        })
    }

    fn add<'a>(&'a self, key: &'a str, amount: u64) -> SharedFuture<'a, u64> {
        Box::pin(async move { self.change(key, |_| amount).await.map(|(_, total)| total) })
    }
}
