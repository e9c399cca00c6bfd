//! The one retry policy every Umpire component uses: exponential backoff with full jitter
//! (AWS's "full jitter": a random wait in [0, min(max, initial × 2^attempt)], so replicas
//! that failed together do not retry together), and the one loop that sets up what a worker
//! needs from NATS before it can serve.
//!
//! Attempts are numbered from 0; the delay depends only on the attempt number, so callers
//! that learn the attempt from elsewhere (JetStream's delivery count) need no state.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::readiness::Readiness;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// The shortest wait, whatever the jitter draws (so a retry is never immediate).
    pub floor: Duration,
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            floor: Duration::ZERO,
        }
    }

    /// Set-up of streams, consumers, buckets and leases: 200 ms growing to 5 s.
    pub const SET_UP: Self = Self {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(5),
        floor: Duration::from_millis(50),
    };

    /// Publishing to JetStream while a stream has no leader or the connection is down:
    /// 100 ms growing to 5 s.
    pub const PUBLISH: Self = Self {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(5),
        floor: Duration::from_millis(20),
    };

    pub const fn with_floor(self, floor: Duration) -> Self {
        Self { floor, ..self }
    }

    /// The most this policy waits before `attempt` (the jitter's upper bound).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.initial
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max)
    }

    /// How long to wait before retry number `attempt` (0 = the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(rand::random_range(0..=ceiling)).max(self.floor.min(self.max))
    }

    /// Waits before retry `attempt`; false when `shutdown` came first.
    pub async fn wait(&self, attempt: u32, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(self.delay(attempt)) => true,
        }
    }
}

/// Runs `set_up` until it succeeds (marking readiness check `check` ok) or `shutdown` is
/// cancelled (then `None`). Each failure marks the check failing with the reason, is logged
/// at the first attempt and every tenth after, and is retried with [`Backoff::SET_UP`].
pub async fn set_up_until_ready<T, E, F, Fut>(
    check: &'static str,
    readiness: &Readiness,
    shutdown: &CancellationToken,
    mut set_up: F,
) -> Option<T>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0u32;
    loop {
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return None,
            outcome = set_up() => outcome,
        };
        match outcome {
            Ok(value) => {
                readiness.set_ok(check);
                return Some(value);
            }
            Err(e) => {
                let reason = e.to_string();
                readiness.set_failing(check, &reason);
                if attempt.is_multiple_of(10) {
                    tracing::warn!(event = "set_up_failed", check, attempt, error = %reason, "retrying");
                }
                if !Backoff::SET_UP.wait(attempt, shutdown).await {
                    return None;
                }
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_respect_the_floor() {
        let policy = Backoff::new(Duration::from_millis(100), Duration::from_secs(2))
            .with_floor(Duration::from_millis(10));
        assert_eq!(policy.ceiling(0), Duration::from_millis(100));
        assert_eq!(policy.ceiling(3), Duration::from_millis(800));
        assert_eq!(policy.ceiling(40), Duration::from_secs(2));
        for attempt in 0..30 {
            let delay = policy.delay(attempt);
            assert!(delay >= Duration::from_millis(10), "{delay:?}");
            assert!(delay <= policy.ceiling(attempt), "{delay:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn set_up_retries_until_it_succeeds_and_reports_readiness() {
        let readiness = Readiness::default();
        readiness.register("streams", "not set up");
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let readiness_seen = readiness.clone();
        let value = set_up_until_ready("streams", &readiness, &CancellationToken::new(), || {
            let counter = counter.clone();
            let readiness = readiness_seen.clone();
            async move {
                match counter.fetch_add(1, Ordering::SeqCst) {
                    0 => Err("no stream yet".to_owned()),
                    1 => {
                        let status = readiness.status().expect_err("failing after a failure");
                        assert!(status.contains("no stream yet"), "{status}");
                        Err("still none".to_owned())
                    }
                    _ => Ok(7),
                }
            }
        })
        .await;
        assert_eq!(value, Some(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(readiness.status().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn set_up_gives_up_at_shutdown() {
        let readiness = Readiness::default();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let value: Option<()> = set_up_until_ready("streams", &readiness, &shutdown, || {
            stop.cancel();
            async { Err::<(), _>("unreachable") }
        })
        .await;
        assert_eq!(value, None);
    }
}
