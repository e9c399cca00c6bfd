//! What every long-running Umpire role shares.

pub mod admin;
pub mod binaries;
pub mod egress;
pub mod https;
pub mod memory;
pub mod readiness;
pub mod retry;
pub mod secrets;
pub mod shutdown;
pub mod telemetry;

pub use prometheus_client;
