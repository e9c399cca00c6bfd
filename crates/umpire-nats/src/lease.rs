//! The one lease mechanism: ingest's trace partitions and the evaluators' alert leadership
//! are both "at most one holder of a key at a time", held in a KV bucket whose entries
//! expire after the lease TTL.
//!
//! A holder takes a key by creating it (compare-and-set: fails while anyone holds it),
//! renews it every third of the TTL by updating its last revision (fails if anyone else
//! wrote it meanwhile), and stops acting on it by itself once its last successful renewal is
//! older than 4/5 of the TTL — before the key can expire and be taken — so two holders
//! never act at once while clocks run at similar rates. The key's revision is the lease's
//! fencing token.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};

use crate::kv::{BucketSettings, ensure_bucket};

#[derive(Debug, thiserror::Error)]
#[error("leases ({bucket}): {message}")]
pub struct LeaseError {
    pub bucket: String,
    pub message: String,
}

/// A bucket of leases held by one member (a replica).
pub struct LeaseBucket {
    kv: kv::Store,
    bucket: String,
    member: String,
    ttl: Duration,
}

/// A lease this member holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    key: String,
    revision: u64,
    renewed: Instant,
}

impl Lease {
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key's revision at the last create or renewal: a fencing token that grows with
    /// every write, whoever the holder.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Whether the holder may still act at `now`: its last renewal is recent enough that
    /// the key cannot have expired and been taken by someone else.
    pub fn is_valid(&self, now: Instant, ttl: Duration) -> bool {
        now < self.valid_until(ttl)
    }

    /// When the holder must stop acting unless it renews first.
    pub fn valid_until(&self, ttl: Duration) -> Instant {
        self.renewed + self_fence(ttl)
    }
}

/// After this long without a renewal, a holder stops acting on its lease.
pub fn self_fence(ttl: Duration) -> Duration {
    ttl * 4 / 5
}

impl LeaseBucket {
    /// Opens (creating or updating) the bucket; its entries live `settings.max_age`, the TTL.
    pub async fn open(
        js: &jetstream::Context,
        settings: &BucketSettings,
        member: &str,
    ) -> Result<Self, LeaseError> {
        let kv = ensure_bucket(js, settings).await.map_err(|e| LeaseError {
            bucket: settings.bucket.clone(),
            message: e.to_string(),
        })?;
        Ok(Self {
            kv,
            bucket: settings.bucket.clone(),
            member: member.to_owned(),
            ttl: settings.max_age,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn member(&self) -> &str {
        &self.member
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The bucket itself, for what leases carry alongside (e.g. membership heartbeats).
    pub fn store(&self) -> &kv::Store {
        &self.kv
    }

    /// Takes `key`; `Ok(None)` while someone else holds it.
    ///
    /// Safe to cut short, like [`Self::renew`]: a create whose caller gave up waiting may
    /// still be applied, and leaves the key holding this member's name with no lease object
    /// for it. Such a key is adopted by renewing it on the revision read (the compare-and-set
    /// proves nobody wrote it since); before, it stood held by nobody who served it until it
    /// expired. Member names are unique per process (pod name, or host and pid).
    pub async fn try_acquire(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        // Counted from when the request was sent, not answered: conservative for fencing.
        let sent = Instant::now();
        match self.kv.create(key, self.member.clone().into()).await {
            Ok(revision) => Ok(Some(Lease {
                key: key.to_owned(),
                revision,
                renewed: sent,
            })),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => self.adopt(key).await,
            Err(e) => Err(self.error(e.to_string())),
        }
    }

    /// The lease on `key` if its current value is this member's own unseen write.
    async fn adopt(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|e| self.error(e.to_string()))?;
        let revision = match entry {
            Some(entry)
                if entry.operation == kv::Operation::Put
                    && entry.value == self.member.as_bytes() =>
            {
                entry.revision
            }
            _ => return Ok(None),
        };
        let mut lease = Lease {
            key: key.to_owned(),
            revision,
            // Overwritten by the renewal below; the lease is dropped if that fails.
            renewed: Instant::now(),
        };
        match self.renewed(self.update(&mut lease).await)? {
            true => Ok(Some(lease)),
            false => Ok(None),
        }
    }

    /// Renews `lease`; `Ok(false)` when it was lost (taken over, or expired). On `Err` NATS
    /// did not answer: the lease stays valid until its self-fence passes.
    ///
    /// Safe to cut short: a renewal whose caller gave up waiting may still be applied, and
    /// the next one then finds a newer revision than the lease's. If that revision carries
    /// this member's name it is this member's own write — another holder could only have
    /// written after the key was deleted or expired, and an update on the lease's revision
    /// chain cannot follow that — so the lease is still held: the renewal is retried on it.
    /// (Before, such a lease was reported lost, and its partition stood unserved until the
    /// key expired.)
    pub async fn renew(&self, lease: &mut Lease) -> Result<bool, LeaseError> {
        match self.update(lease).await {
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
            result => return self.renewed(result),
        }
        let ours = match self.kv.entry(&lease.key).await {
            Ok(Some(entry))
                if entry.operation == kv::Operation::Put
                    && entry.value == self.member.as_bytes()
                    && entry.revision > lease.revision =>
            {
                entry.revision
            }
            _ => return Ok(false),
        };
        // `renewed` stays at the last renewal seen answered: when the unseen one landed is
        // not known.
        lease.revision = ours;
        self.renewed(self.update(lease).await)
    }

    /// One renewal attempt on the lease's revision; the lease is updated when it succeeds.
    async fn update(&self, lease: &mut Lease) -> Result<(), kv::UpdateError> {
        let sent = Instant::now();
        let revision = self
            .kv
            .update(&lease.key, self.member.clone().into(), lease.revision)
            .await?;
        lease.revision = revision;
        lease.renewed = sent;
        Ok(())
    }

    fn renewed(&self, result: Result<(), kv::UpdateError>) -> Result<bool, LeaseError> {
        match result {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(self.error(e.to_string())),
        }
    }

    /// Gives `lease` up at once (a drained partition, a graceful shutdown), so the next
    /// holder need not wait for the TTL. Best effort: if it fails, the key expires.
    pub async fn release(&self, lease: Lease) {
        let _ = self
            .kv
            .delete_expect_revision(&lease.key, Some(lease.revision))
            .await;
    }

    fn error(&self, message: String) -> LeaseError {
        LeaseError {
            bucket: self.bucket.clone(),
            message,
        }
    }
}
