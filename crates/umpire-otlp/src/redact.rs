//! Applying a [`Redactor`] to an OTLP export in place, before it leaves ingest.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use umpire_core::redaction::Redactor;

use crate::ExportTraceServiceRequest;

/// Counts of what redaction changed in one export.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RedactionCounts {
    pub values_rewritten: u64,
    pub attributes_dropped: u64,
}

/// Redacts resource, span, event and link attributes and status messages.
pub fn redact_request(
    request: &mut ExportTraceServiceRequest,
    redactor: &Redactor,
) -> RedactionCounts {
    let mut counts = RedactionCounts::default();
    if redactor.is_noop() {
        return counts;
    }
    for resource_spans in &mut request.resource_spans {
        if let Some(resource) = &mut resource_spans.resource {
            redact_attributes(&mut resource.attributes, redactor, &mut counts, |key| {
                redactor.drops_attribute(key)
            });
        }
        for scope_spans in &mut resource_spans.scope_spans {
            for span in &mut scope_spans.spans {
                redact_attributes(&mut span.attributes, redactor, &mut counts, |key| {
                    redactor.drops_attribute(key)
                });
                for event in &mut span.events {
                    let name = event.name.clone();
                    redact_attributes(&mut event.attributes, redactor, &mut counts, |key| {
                        redactor.drops_event_attribute(&name, key)
                    });
                }
                for link in &mut span.links {
                    redact_attributes(&mut link.attributes, redactor, &mut counts, |key| {
                        redactor.drops_attribute(key)
                    });
                }
                if let Some(status) = &mut span.status
                    && let std::borrow::Cow::Owned(clean) =
                        redactor.redact_value("status.message", &status.message)
                {
                    status.message = clean;
                    counts.values_rewritten += 1;
                }
            }
        }
    }
    counts
}

fn redact_attributes(
    attributes: &mut Vec<KeyValue>,
    redactor: &Redactor,
    counts: &mut RedactionCounts,
    drops: impl Fn(&str) -> bool,
) {
    let before = attributes.len();
    attributes.retain(|kv| !drops(&kv.key));
    counts.attributes_dropped += (before - attributes.len()) as u64;
    for kv in attributes.iter_mut() {
        if let Some(value) = &mut kv.value {
            redact_value(&kv.key, value, redactor, counts);
        }
    }
}

/// Strings are rewritten; arrays and maps are walked with the enclosing attribute's key, so
/// a rule scoped to `http.request.header.*` also covers values nested inside it.
fn redact_value(
    key: &str,
    value: &mut AnyValue,
    redactor: &Redactor,
    counts: &mut RedactionCounts,
) {
    match &mut value.value {
        Some(any_value::Value::StringValue(text)) => {
            if let std::borrow::Cow::Owned(clean) = redactor.redact_value(key, text) {
                *text = clean;
                counts.values_rewritten += 1;
            }
        }
        Some(any_value::Value::ArrayValue(array)) => {
            for item in &mut array.values {
                redact_value(key, item, redactor, counts);
            }
        }
        Some(any_value::Value::KvlistValue(list)) => {
            for kv in &mut list.values {
                if let Some(item) = &mut kv.value {
                    redact_value(key, item, redactor, counts);
                }
            }
        }
        _ => {}
    }
}
