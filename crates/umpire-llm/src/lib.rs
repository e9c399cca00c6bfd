//! OpenAI-compatible chat completions for LLM judges.
//!
//! [`OpenAiClient`] implements the core's `ChatBackend`: it sends `/chat/completions`
//! requests (structured outputs, JSON mode or plain text), retries 429 / 5xx / timeouts /
//! connection failures with full-jitter exponential backoff (honouring `Retry-After`), and
//! never logs the API key. [`LlmRunner`] adds what a deployment needs around it: bounded
//! concurrency, a requests-per-minute limit and a daily token budget — per pod, or shared
//! by a policy's replicas through [`SharedLimits`].

mod client;
mod runner;
mod secret;
pub mod shared;

pub use client::{ClientSettings, OpenAiClient};
pub use runner::{LlmRunner, RunnerLimits, TokenBudget};
pub use secret::ApiKey;
pub use shared::{SharedCounters, SharedLimits};
