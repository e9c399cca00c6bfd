//! The one way Umpire talks to NATS: connecting, the topology (names and settings of every
//! stream, consumer and bucket), idempotent set-up, and leases.

pub mod auth;
pub mod connect;
pub mod consumers;
pub mod fence;
pub mod headers;
pub mod kv;
pub mod lease;
pub mod streams;
pub mod topology;

pub use async_nats;
