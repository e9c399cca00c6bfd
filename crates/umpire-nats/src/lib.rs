//! The one way Umpire talks to NATS.

pub mod auth;
pub mod connect;
pub mod kv;
pub mod names;
pub mod streams;

pub use async_nats;
