//! Limits around an LLM judge: concurrency, requests per minute, daily token budget.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;
use umpire_core::judge::llm::{ChatBackend, LlmJudge};
use umpire_core::judge::{JudgeInput, Outcome, SkipReason};

use crate::shared::SharedLimits;

/// Tokens per UTC day; resets at midnight UTC.
#[derive(Debug)]
pub struct TokenBudget {
    limit: u64,
    state: Mutex<(u64, u64)>, // (day number, tokens spent)
}

impl TokenBudget {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            state: Mutex::new((today(), 0)),
        }
    }

    fn current(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let day = today();
        if state.0 != day {
            *state = (day, 0);
        }
        state.1
    }

    pub fn exhausted(&self) -> bool {
        self.current() >= self.limit
    }

    pub fn spend(&self, tokens: u64) {
        let _ = self.current();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 = state.1.saturating_add(tokens);
    }

    pub fn spent(&self) -> u64 {
        self.current()
    }
}

fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

/// This replica's share of a policy's limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunnerLimits {
    pub max_concurrency: usize,
    pub requests_per_minute: Option<u32>,
    pub daily_tokens: Option<u64>,
}

impl RunnerLimits {
    /// Splits policy-wide limits evenly over `replicas` evaluator pods.
    pub fn share(
        max_concurrency: usize,
        requests_per_minute: Option<u32>,
        daily_tokens: Option<u64>,
        replicas: u32,
    ) -> Self {
        let replicas = replicas.max(1);
        Self {
            max_concurrency: max_concurrency.max(1),
            requests_per_minute: requests_per_minute.map(|r| r.div_ceil(replicas).max(1)),
            daily_tokens: daily_tokens.map(|t| t.div_ceil(u64::from(replicas)).max(1)),
        }
    }
}

/// Runs one LLM judge against one backend within its limits.
pub struct LlmRunner<B> {
    judge: std::sync::Arc<LlmJudge>,
    backend: B,
    concurrency: Semaphore,
    limiter: Option<DefaultDirectRateLimiter>,
    budget: Option<TokenBudget>,
    /// The policy-wide limits every replica shares (they replace the per-pod budget).
    shared: Option<SharedLimits>,
}

impl<B: ChatBackend> LlmRunner<B> {
    pub fn new(judge: std::sync::Arc<LlmJudge>, backend: B, limits: RunnerLimits) -> Self {
        let limiter = limits
            .requests_per_minute
            .and_then(NonZeroU32::new)
            .map(|rpm| RateLimiter::direct(Quota::per_minute(rpm)));
        Self {
            judge,
            backend,
            concurrency: Semaphore::new(limits.max_concurrency.max(1)),
            limiter,
            budget: limits.daily_tokens.map(TokenBudget::new),
            shared: None,
        }
    }

    /// Uses limits shared by the policy's replicas for the daily token budget and the
    /// requests per minute. `limits` given to [`LlmRunner::new`] should then be the whole
    /// policy's (not a replica's share): its rate then only smooths this replica's bursts.
    pub fn with_shared_limits(mut self, shared: SharedLimits) -> Self {
        self.budget = None;
        self.shared = Some(shared);
        self
    }

    pub fn budget(&self) -> Option<&TokenBudget> {
        self.budget.as_ref()
    }

    /// Waits for a concurrency slot and the rate limit, then judges; skipped (and counted by
    /// the caller) when the day's token budget is spent. A judge that rates retrieved
    /// documents makes one request per document, each within the same limits.
    pub async fn run(&self, input: &JudgeInput<'_>) -> Outcome {
        let Some(rating) = &self.judge.retrieval else {
            return self
                .limited(self.judge.evaluate(input, &self.backend))
                .await;
        };
        let documents = rating.documents(input);
        let ratings = join_all(documents.iter().map(|document| {
            let text = document.content.as_deref().unwrap_or_default();
            self.limited(self.judge.evaluate_document(input, text, &self.backend))
        }))
        .await;
        rating.aggregate(input, &documents, ratings)
    }

    /// One request to the model: a concurrency slot, the token budget, the request rate,
    /// then `call`, whose usage is spent from the budget.
    async fn limited(&self, call: impl Future<Output = Outcome>) -> Outcome {
        let Ok(_slot) = self.concurrency.acquire().await else {
            return Outcome::skipped(SkipReason::NotApplicable);
        };
        // Checked once a slot is held, so at most `max_concurrency` requests overshoot.
        if self.budget.as_ref().is_some_and(TokenBudget::exhausted) {
            return Outcome::skipped(SkipReason::BudgetExhausted);
        }
        if let Some(shared) = &self.shared {
            if shared.budget_exhausted().await {
                return Outcome::skipped(SkipReason::BudgetExhausted);
            }
            shared.acquire_request().await;
        }
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        let outcome = call.await;
        let usage = match &outcome {
            Outcome::Scored(verdict) => verdict.usage,
            Outcome::Failed(failure) => failure.usage,
            Outcome::Skipped { .. } => None,
        };
        if let Some(usage) = usage {
            let tokens = usage.input_tokens + usage.output_tokens;
            if let Some(budget) = &self.budget {
                budget.spend(tokens);
            }
            if let Some(shared) = &self.shared {
                shared.spend(tokens).await;
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_and_shares() {
        let budget = TokenBudget::new(100);
        assert!(!budget.exhausted());
        budget.spend(60);
        budget.spend(40);
        assert!(budget.exhausted());
        assert_eq!(budget.spent(), 100);
        let share = RunnerLimits::share(8, Some(600), Some(5_000_000), 3);
        assert_eq!(
            (share.requests_per_minute, share.daily_tokens),
            (Some(200), Some(1_666_667))
        );
    }
}
