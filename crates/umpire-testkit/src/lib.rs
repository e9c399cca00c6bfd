//! Umpire's test kit: real servers on loopback for tests of the real code paths.
//!
//! - [`nats::NatsServer`]: a private `nats-server -js`.

pub mod nats;
