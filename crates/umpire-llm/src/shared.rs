//! Limits a policy's evaluator replicas share: the daily token budget and the requests per
//! minute of each LLM judge, kept in counters every replica sees (the evaluator keeps them
//! in NATS KV). Split evenly in each pod's memory instead, they reset on every restart or
//! rollout and waste the share of an idle replica.
//!
//! Requests: a replica takes grants of a few requests at a time from the minute's counter
//! (never past the limit) and spends them locally, so the store sees one write per grant,
//! not per request. Tokens: each call's usage is added to the day's counter after the call;
//! the check before a call uses the last total read plus what this replica has not written
//! yet, so replicas overshoot the budget by at most the calls in flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub type SharedFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Counters shared by a policy's replicas. Keys are dot-separated tokens.
pub trait SharedCounters: Send + Sync {
    /// Adds up to `wanted` to counter `key`, never taking it past `limit`; returns how much
    /// was added (0: the limit is reached).
    fn take<'a>(&'a self, key: &'a str, wanted: u64, limit: u64) -> SharedFuture<'a, u64>;
    /// Adds `amount` (0 to read) to counter `key`; returns the new total.
    fn add<'a>(&'a self, key: &'a str, amount: u64) -> SharedFuture<'a, u64>;
}

/// Longest a replica trusts the day's total it read last, when it has nothing to add.
const TOTAL_FRESH_FOR: Duration = Duration::from_secs(1);
/// Longest a replica waits before asking again after a failed or empty grant.
const GRANT_RETRY: Duration = Duration::from_secs(1);

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// One LLM judge's view of the shared counters.
pub struct SharedLimits {
    counters: Arc<dyn SharedCounters>,
    judge: String,
    requests_per_minute: Option<u64>,
    /// Requests taken per grant: a replica holds at most this many unused.
    grant: u64,
    granted: tokio::sync::Mutex<(u64, u64)>, // (minute, requests left)
    daily_tokens: Option<u64>,
    tokens: Mutex<Tokens>,
    /// One write of the day's tokens at a time per replica.
    flushing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Tokens {
    day: u64,
    /// The day's total across replicas, as last read.
    total: u64,
    read_at: Duration,
    /// Spent by this replica and not written yet.
    unwritten: u64,
}

impl SharedLimits {
    /// `replicas` only sizes the grants (a quarter of an even share each).
    pub fn new(
        counters: Arc<dyn SharedCounters>,
        judge: &str,
        requests_per_minute: Option<u32>,
        daily_tokens: Option<u64>,
        replicas: u32,
    ) -> Self {
        let requests_per_minute = requests_per_minute.map(u64::from);
        let grant = requests_per_minute
            .map(|rpm| (rpm / (4 * u64::from(replicas.max(1)))).clamp(1, 100))
            .unwrap_or(1);
        Self {
            counters,
            judge: judge.to_owned(),
            requests_per_minute,
            grant,
            granted: tokio::sync::Mutex::new((0, 0)),
            daily_tokens,
            tokens: Mutex::new(Tokens::default()),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the day's tokens are spent, by every replica together.
    pub async fn budget_exhausted(&self) -> bool {
        let Some(limit) = self.daily_tokens else {
            return false;
        };
        let (stale, unwritten) = {
            let tokens = self.lock_tokens();
            (
                tokens.day != day(now()) || tokens.read_at + TOTAL_FRESH_FOR < now(),
                tokens.unwritten,
            )
        };
        if stale || unwritten > 0 {
            self.write_tokens().await;
        }
        let tokens = self.lock_tokens();
        tokens.total.saturating_add(tokens.unwritten) >= limit
    }

    /// Counts tokens a call spent and writes them to the day's counter.
    pub async fn spend(&self, tokens: u64) {
        if self.daily_tokens.is_none() || tokens == 0 {
            return;
        }
        {
            let mut state = self.lock_tokens();
            let today = day(now());
            if state.day != today {
                *state = Tokens {
                    day: today,
                    ..Tokens::default()
                };
            }
            state.unwritten = state.unwritten.saturating_add(tokens);
        }
        self.write_tokens().await;
    }

    /// The day's total across replicas, as this replica knows it.
    pub fn tokens_spent(&self) -> u64 {
        let tokens = self.lock_tokens();
        tokens.total.saturating_add(tokens.unwritten)
    }

    /// Waits until the minute's shared limit allows one more request.
    pub async fn acquire_request(&self) {
        let Some(limit) = self.requests_per_minute else {
            return;
        };
        let mut granted = self.granted.lock().await;
        loop {
            let minute = now().as_secs() / 60;
            if granted.0 == minute && granted.1 > 0 {
                granted.1 -= 1;
                return;
            }
            let key = format!("{}.requests.{minute}", self.judge);
            match self.counters.take(&key, self.grant, limit).await {
                Ok(0) => {
                    // The minute's requests are all taken: wait for the next minute.
                    let next = Duration::from_secs((minute + 1) * 60);
                    tokio::time::sleep(next.saturating_sub(now()).min(Duration::from_secs(60)))
                        .await;
                }
                Ok(taken) => *granted = (minute, taken),
                Err(e) => {
                    tracing::warn!(event = "shared_limit_unavailable", judge = %self.judge, error = %e, "cannot take requests from the shared limit; retrying");
                    tokio::time::sleep(GRANT_RETRY).await;
                }
            }
        }
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds what this replica spent to the day's counter and reads the total back. On
    /// failure the tokens stay unwritten, counted locally, and go with the next write.
    async fn write_tokens(&self) {
        let _one = self.flushing.lock().await;
        let (today, amount) = {
            let mut state = self.lock_tokens();
            let today = day(now());
            if state.day != today {
                *state = Tokens {
                    day: today,
                    ..Tokens::default()
                };
            }
            let amount = state.unwritten;
            state.unwritten = 0;
            (today, amount)
        };
        let key = format!("{}.tokens.{today}", self.judge);
        let result = self.counters.add(&key, amount).await;
        let mut state = self.lock_tokens();
        match result {
            Ok(total) if state.day == today => {
                state.total = total;
                state.read_at = now();
            }
            Ok(_) => {}
            Err(e) => {
                if state.day == today {
                    state.unwritten = state.unwritten.saturating_add(amount);
                }
                tracing::warn!(event = "shared_budget_unavailable", judge = %self.judge, error = %e, "cannot update the shared token budget; counting locally");
            }
        }
    }
}

fn day(now: Duration) -> u64 {
    now.as_secs() / 86_400
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Counters in memory, as one store shared by several runners.
    #[derive(Default)]
    struct Memory(Mutex<HashMap<String, u64>>);

    impl SharedCounters for Memory {
        fn take<'a>(&'a self, key: &'a str, wanted: u64, limit: u64) -> SharedFuture<'a, u64> {
            Box::pin(async move {
                let mut map = self.0.lock().map_err(|e| e.to_string())?;
                let value = map.entry(key.to_owned()).or_default();
                let taken = wanted.min(limit.saturating_sub(*value));
                *value += taken;
                Ok(taken)
            })
        }

        fn add<'a>(&'a self, key: &'a str, amount: u64) -> SharedFuture<'a, u64> {
            Box::pin(async move {
                let mut map = self.0.lock().map_err(|e| e.to_string())?;
                let value = map.entry(key.to_owned()).or_default();
                *value += amount;
                Ok(*value)
            })
        }
    }

    #[tokio::test]
    async fn replicas_share_one_budget_and_a_new_one_inherits_it() {
        let store: Arc<dyn SharedCounters> = Arc::new(Memory::default());
        let a = SharedLimits::new(store.clone(), "j", None, Some(1_000), 2);
        let b = SharedLimits::new(store.clone(), "j", None, Some(1_000), 2);
        a.spend(700).await;
        assert!(!b.budget_exhausted().await);
        b.spend(300).await;
        assert!(b.budget_exhausted().await);
        // `a` trusts the total it read for a second, then sees `b`'s spending.
        tokio::time::sleep(TOTAL_FRESH_FOR + Duration::from_millis(100)).await;
        assert!(a.budget_exhausted().await);
        // A restarted replica starts from the stored total.
        let c = SharedLimits::new(store, "j", None, Some(1_000), 2);
        assert!(c.budget_exhausted().await);
        assert_eq!(c.tokens_spent(), 1_000);
    }

    #[tokio::test]
    async fn grants_never_exceed_the_minute() {
        let store: Arc<dyn SharedCounters> = Arc::new(Memory::default());
        let a = SharedLimits::new(store.clone(), "j", Some(40), None, 2);
        let b = SharedLimits::new(store.clone(), "j", Some(40), None, 2);
        assert_eq!(a.grant, 5);
        let minute = now().as_secs() / 60;
        // Both replicas asking for 30 each get the minute's 40 together (if the minute turns
        // during the test, the new minute's counter starts again: checked only if not).
        let mut served = 0;
        for _ in 0..30 {
            tokio::time::timeout(Duration::from_millis(100), a.acquire_request())
                .await
                .map(|()| served += 1)
                .ok();
            tokio::time::timeout(Duration::from_millis(100), b.acquire_request())
                .await
                .map(|()| served += 1)
                .ok();
        }
        if now().as_secs() / 60 == minute {
            assert_eq!(served, 40);
            let key = format!("j.requests.{minute}");
            assert_eq!(store.take(&key, 1, 40).await, Ok(0));
        }
    }
}
