//! Umpire's custom resources (`TraceProject`, `EvalPolicy` in `umpire.dev/v1alpha1`), their
//! generated CRDs, and the validation `umpire check`, `umpire eval` and the controller share.

pub mod common;
pub mod compile;
pub mod crd;
pub mod eval_policy;
pub mod manifest;
pub mod pod;
pub mod reference;
pub mod trace_project;
pub mod validate;
