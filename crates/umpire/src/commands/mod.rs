pub mod check;
pub mod crdgen;
