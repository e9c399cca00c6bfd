pub mod check;
pub mod crdgen;
pub mod ingest;
