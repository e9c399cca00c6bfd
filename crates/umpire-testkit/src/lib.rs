//! Umpire's test kit: real servers on loopback for tests of the real code paths.
//!
//! - [`nats::NatsServer`]: a private `nats-server -js`; [`nats::read_stream`] reads a stream back.
//! - [`judge::JudgeServer`]: an OpenAI-compatible judge API with scriptable answers.
//! - [`wait::eventually`]: await a condition with a deadline.

pub mod judge;
pub mod nats;
pub mod wait;
