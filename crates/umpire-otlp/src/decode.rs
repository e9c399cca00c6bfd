//! Decoding OTLP/HTTP and OTLP/gRPC trace export bodies.

use std::io::Read;

use prost::Message;
use serde_json::Value;

use crate::{ExportTraceServiceRequest, ExportTraceServiceResponse};

/// How an OTLP body is encoded (`Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`
    Protobuf,
    /// `application/json`: lowerCamelCase fields, hex ids.
    Json,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }

    /// From a `Content-Type` header value (parameters such as `; charset=utf-8` ignored).
    pub fn from_content_type(value: &str) -> Option<Self> {
        match value
            .split(';')
            .next()
            .map(str::trim)?
            .to_ascii_lowercase()
            .as_str()
        {
            "application/x-protobuf" | "application/protobuf" => Some(Self::Protobuf),
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the body is not a valid OTLP protobuf ExportTraceServiceRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("the body is not a valid OTLP/JSON ExportTraceServiceRequest: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the body is not valid gzip: {0}")]
    Gzip(std::io::Error),
    #[error("the decompressed body exceeds the {limit}-byte request limit")]
    TooLarge { limit: usize },
}

/// Inflates a gzip body, refusing to produce more than `limit` bytes (a small compressed
/// body must not become a memory bomb).
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let mut reader = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
    reader.read_to_end(&mut out).map_err(DecodeError::Gzip)?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out)
}

pub fn decode_request(
    body: &[u8],
    encoding: Encoding,
) -> Result<ExportTraceServiceRequest, DecodeError> {
    match encoding {
        Encoding::Protobuf => Ok(ExportTraceServiceRequest::decode(body)?),
        // Straight into the request: a `serde_json::Value` first costs many times the body.
        // Only bodies that name enums (`"SPAN_KIND_CLIENT"`) take the `Value` route.
        Encoding::Json => match serde_json::from_slice(body) {
            Ok(request) => Ok(request),
            Err(direct) if names_enums(body) => {
                let mut value: Value = serde_json::from_slice(body)?;
                enum_names_to_numbers(&mut value);
                serde_json::from_value(value).map_err(|_| direct.into())
            }
            Err(direct) => Err(direct.into()),
        },
    }
}

pub fn encode_response(response: &ExportTraceServiceResponse, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        Encoding::Json => {
            // An all-default response is `{}`; partial success is written out by hand so the
            // field names are OTLP/JSON's regardless of the proto crate's serde settings.
            match &response.partial_success {
                Some(partial) => serde_json::json!({
                    "partialSuccess": {
                        "rejectedSpans": partial.rejected_spans.to_string(),
                        "errorMessage": partial.error_message,
                    }
                })
                .to_string()
                .into_bytes(),
                None => b"{}".to_vec(),
            }
        }
    }
}

fn names_enums(body: &[u8]) -> bool {
    let names = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    names(b"\"SPAN_KIND_") || names(b"\"STATUS_CODE_")
}

/// OTLP/JSON specifies enums as integers, but exporters (and the shared fixtures) also
/// write their names — `"kind": "SPAN_KIND_CLIENT"`, `"code": "STATUS_CODE_ERROR"` — and
/// the OpenTelemetry Collector accepts both, so we do too.
fn enum_names_to_numbers(request: &mut Value) {
    let spans = request
        .get_mut("resourceSpans")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(|rs| rs.get_mut("scopeSpans").and_then(Value::as_array_mut))
        .flatten()
        .filter_map(|ss| ss.get_mut("spans").and_then(Value::as_array_mut))
        .flatten();
    for span in spans {
        if let Some(kind) = span.get_mut("kind") {
            replace_name(
                kind,
                &[
                    "SPAN_KIND_UNSPECIFIED",
                    "SPAN_KIND_INTERNAL",
                    "SPAN_KIND_SERVER",
                    "SPAN_KIND_CLIENT",
                    "SPAN_KIND_PRODUCER",
                    "SPAN_KIND_CONSUMER",
                ],
            );
        }
        if let Some(code) = span.get_mut("status").and_then(|s| s.get_mut("code")) {
            replace_name(
                code,
                &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"],
            );
        }
    }
}

fn replace_name(value: &mut Value, names: &[&str]) {
    if let Some(index) = value
        .as_str()
        .and_then(|name| names.iter().position(|n| *n == name))
    {
        *value = Value::from(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            Encoding::from_content_type("application/x-protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::from_content_type("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
    }

    #[test]
    fn gunzip_enforces_the_limit() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&[b'a'; 10_000]).unwrap();
        let compressed = encoder.finish().unwrap();
        assert_eq!(gunzip(&compressed, 10_000).unwrap().len(), 10_000);
        assert!(matches!(
            gunzip(&compressed, 9_999),
            Err(DecodeError::TooLarge { limit: 9_999 })
        ));
        assert!(matches!(
            gunzip(b"not gzip", 100),
            Err(DecodeError::Gzip(_))
        ));
    }

    #[test]
    fn json_accepts_enum_names_and_numbers() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"0748feb976cd256641cc0ff1847e6c60","spanId":"9d8fc259f94501bd","name":"a","kind":"SPAN_KIND_CLIENT","status":{"code":"STATUS_CODE_ERROR"},"startTimeUnixNano":"1","endTimeUnixNano":"2"},
            {"traceId":"0748feb976cd256641cc0ff1847e6c60","spanId":"9d8fc259f94501be","name":"b","kind":2,"status":{"code":1}}
        ]}]}]}"#;
        let request = decode_request(body, Encoding::Json).unwrap();
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(
            (spans[0].kind, spans[0].status.as_ref().unwrap().code),
            (3, 2)
        );
        assert_eq!(
            (spans[1].kind, spans[1].status.as_ref().unwrap().code),
            (2, 1)
        );
        assert_eq!(spans[0].trace_id.len(), 16);
        assert_eq!(spans[0].end_time_unix_nano, 2);
    }

    #[test]
    fn json_partial_success_response() {
        let response = ExportTraceServiceResponse {
            partial_success: Some(crate::ExportTracePartialSuccess {
                rejected_spans: 2,
                error_message: "bad ids".into(),
            }),
        };
        let json: Value =
            serde_json::from_slice(&encode_response(&response, Encoding::Json)).unwrap();
        assert_eq!(json["partialSuccess"]["rejectedSpans"], "2");
    }
}
