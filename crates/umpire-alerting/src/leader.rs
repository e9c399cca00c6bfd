//! One alert writer per policy: the policy's key in the project's alert-lease bucket, held
//! through the one lease mechanism ([`umpire_nats::lease`]) ingest's partitions use too.

use std::time::{Duration, Instant};

use async_nats::jetstream;
pub use umpire_nats::lease::LeaseError;
use umpire_nats::lease::{Lease, LeaseBucket};
use umpire_nats::topology::{ProjectNames, alert_lease_bucket};

pub struct PolicyLease {
    bucket: LeaseBucket,
    policy: String,
    held: Option<Lease>,
}

impl PolicyLease {
    pub async fn open(
        js: &jetstream::Context,
        names: &ProjectNames,
        policy: &str,
        member: &str,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Self, LeaseError> {
        let bucket =
            LeaseBucket::open(js, &alert_lease_bucket(names, ttl, replicas), member).await?;
        Ok(Self {
            bucket,
            policy: policy.to_owned(),
            held: None,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.bucket.ttl()
    }

    pub fn member(&self) -> &str {
        self.bucket.member()
    }

    /// Whether this replica may act as leader at `now` (holds the lease and renewed it
    /// recently enough that nobody else can hold it).
    pub fn is_leader(&self, now: Instant) -> bool {
        self.held
            .as_ref()
            .is_some_and(|lease| lease.is_valid(now, self.bucket.ttl()))
    }

    /// Tries to become leader; `Ok(false)` while another replica holds the lease.
    pub async fn try_acquire(&mut self) -> Result<bool, LeaseError> {
        self.held = self.bucket.try_acquire(&self.policy).await?;
        Ok(self.held.is_some())
    }

    /// Renews the lease; `Ok(false)` when it was lost (taken over, or expired).
    pub async fn renew(&mut self) -> Result<bool, LeaseError> {
        let Some(lease) = self.held.as_mut() else {
            return Ok(false);
        };
        let renewed = self.bucket.renew(lease).await?;
        if !renewed {
            self.held = None;
        }
        Ok(renewed)
    }

    /// Gives leadership up at once (graceful shutdown), so another replica need not wait
    /// for the TTL.
    pub async fn release(&mut self) {
        if let Some(lease) = self.held.take() {
            self.bucket.release(lease).await;
        }
    }
}
