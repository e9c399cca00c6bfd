//! One alert writer per policy: a lease held as a single key in a NATS KV bucket whose
//! entries expire after the lease TTL.
//!
//! A replica becomes leader by creating the key `<policy>` (compare-and-set: fails while
//! another replica holds it), renews it every third of the TTL with an update on its last
//! revision (fails if anyone else wrote it), and gives up leadership by itself when its last
//! successful renewal is older than 4/5 of the TTL — before the key can expire and another
//! replica can take it — so two leaders never act at once while clocks run at similar rates.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use umpire_nats::kv::{BucketSettings, ensure_bucket};

#[derive(Debug, thiserror::Error)]
#[error("alert leader lease ({bucket}): {message}")]
pub struct LeaseError {
    bucket: String,
    message: String,
}

pub struct PolicyLease {
    kv: kv::Store,
    bucket: String,
    key: String,
    member: String,
    ttl: Duration,
    /// Revision and time of the last successful create/renewal while leader.
    held: Option<(u64, Instant)>,
}

impl PolicyLease {
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        policy: &str,
        member: &str,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Self, LeaseError> {
        let settings = BucketSettings {
            bucket: bucket.to_owned(),
            description: "Umpire alert leaders: one evaluator replica per EvalPolicy".into(),
            history: 1,
            max_age: ttl,
            replicas,
        };
        let kv = ensure_bucket(js, &settings).await.map_err(|e| LeaseError {
            bucket: bucket.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self {
            kv,
            bucket: bucket.to_owned(),
            key: policy.to_owned(),
            member: member.to_owned(),
            ttl,
            held: None,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether this replica may act as leader at `now` (holds the lease and renewed it
    /// recently enough that nobody else can hold it).
    pub fn is_leader(&self, now: Instant) -> bool {
        self.held
            .is_some_and(|(_, renewed)| now.duration_since(renewed) < self.ttl * 4 / 5)
    }

    /// Tries to become leader; `Ok(false)` while another replica holds the lease.
    pub async fn try_acquire(&mut self) -> Result<bool, LeaseError> {
        let started = Instant::now();
        match self.kv.create(&self.key, self.member.clone().into()).await {
            Ok(revision) => {
                self.held = Some((revision, started));
                Ok(true)
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.error(e.to_string())),
        }
    }

    /// Renews the lease; `Ok(false)` when it was lost (taken over, or expired).
    pub async fn renew(&mut self) -> Result<bool, LeaseError> {
        let Some((revision, _)) = self.held else {
            return Ok(false);
        };
        // The renewal counts from when it was sent, not answered: conservative for fencing.
        let started = Instant::now();
        match self
            .kv
            .update(&self.key, self.member.clone().into(), revision)
            .await
        {
            Ok(revision) => {
                self.held = Some((revision, started));
                Ok(true)
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                self.held = None;
                Ok(false)
            }
            Err(e) => Err(self.error(e.to_string())),
        }
    }

    /// Gives leadership up at once (graceful shutdown), so another replica need not wait
    /// for the TTL.
    pub async fn release(&mut self) {
        if let Some((revision, _)) = self.held.take() {
            let _ = self
                .kv
                .delete_expect_revision(&self.key, Some(revision))
                .await;
        }
    }

    fn error(&self, message: String) -> LeaseError {
        LeaseError {
            bucket: self.bucket.clone(),
            message,
        }
    }
}
