//! Umpire's test kit: real servers on loopback for tests of the real code paths.
//!
//! - [`nats::NatsServer`]: a private `nats-server -js`; [`nats::read_stream`] reads a stream back.
//! - [`judge::JudgeServer`]: an OpenAI-compatible judge API with scriptable answers.
//! - [`pager::PagerDutyReceiver`]: a PagerDuty Events v2 (and webhook) receiver that
//!   validates, records, and fails on demand.
//! - [`kubeapi::KubeApiServer`]: a Kubernetes API server emulator (REST, watch, SSA, GC).
//! - [`pod::PodProcess`]: one replica of a Deployment's pod, run as a kubelet would.
//! - [`tls::TestCertificates`]: a test CA and a server certificate for loopback.
//! - [`wait::eventually`]: await a condition with a deadline.

pub mod judge;
pub mod kubeapi;
pub mod nats;
pub mod netns;
pub mod otlp;
pub mod pager;
pub mod pod;
pub mod pod_runner;
pub mod tls;
pub mod topics;
pub mod wait;
