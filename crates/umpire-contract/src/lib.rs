//! The contract between the controller and the workers, kept out of both so neither depends
//! on the other: the configs the controller renders into ConfigMaps and the workers read
//! (ingest, evaluator), how mounted Secrets and ConfigMaps are laid out, the alert-state
//! records evaluators write and the controller reports, and the NATS topology of a project
//! and a policy as derived from their specs (names and settings come from
//! [`umpire_nats::topology`]).

pub mod alert_state;
pub mod document;
mod duration;
pub mod evaluator;
pub mod export_status;
pub mod ingest;
pub mod references;
pub mod traces;
#[cfg(feature = "validation")]
pub mod validation;
