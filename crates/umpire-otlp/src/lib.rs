//! The OTLP adapter: decoding OTLP trace exports (protobuf and JSON, gzip), redacting them in
//! place, splitting them by trace partition and size, and turning OTLP spans into Umpire's
//! domain [`umpire_core::span::Span`].

pub mod attributes;
pub mod batching;
pub mod buffered;
pub mod convert;
pub mod decode;
pub mod export;
pub mod redact;

pub use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
pub use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server;
pub use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
pub use opentelemetry_proto::tonic::trace::v1 as proto;
