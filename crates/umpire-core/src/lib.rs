//! Umpire's domain core.
//!
//! Everything here is plain Rust over plain data: the workers (`ingest`, `evaluator`), the
//! offline tools (`umpire check`, `umpire eval`) and the tests all use it alike. Kubernetes,
//! NATS and HTTP live in adapter crates that depend on this one, never the reverse.

pub mod alert;
pub mod batch;
pub mod embedding;
pub mod field;
pub mod hashing;
pub mod ids;
pub mod json_schema;
pub mod judge;
pub mod normalise;
pub mod redaction;
pub mod sampling;
pub mod score;
pub mod select;
pub mod span;
pub mod stream_codec;
pub mod template;
pub mod trace_summary;
