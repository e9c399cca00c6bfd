//! Alert rules on span evaluations: windowed aggregates per group, static thresholds and
//! baseline regressions with significance tests, `for` / `clearFor` hysteresis, no-data
//! handling, and the notifications an alert's transitions produce.
//!
//! Pure logic: the alerting adapter feeds [`engine::AlertEngine`] evaluations and the clock,
//! persists its [`state::AlertStatus`]es, and delivers its [`notification::Notification`]s.

pub mod drift;
mod drift_rule;
pub mod engine;
pub mod notification;
pub mod rule;
pub mod state;
pub mod stats;
pub mod window;

pub use drift_rule::DriftCache;
