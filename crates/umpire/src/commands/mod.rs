pub mod check;
pub mod controller;
pub mod crdgen;
pub mod eval;
pub mod evaluator;
pub mod ingest;
