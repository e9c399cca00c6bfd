pub mod check;
pub mod crdgen;
pub mod eval;
pub mod evaluator;
pub mod ingest;
