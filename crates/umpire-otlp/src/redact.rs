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

/// Redacts resource, scope, span, event and link attributes, span and event names, and status
/// messages. Names are redacted under the keys `span.name` and `event.name` (unscoped rules
/// apply to them; rules scoped to attribute keys do not).
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
            if let Some(scope) = &mut scope_spans.scope {
                redact_attributes(&mut scope.attributes, redactor, &mut counts, |key| {
                    redactor.drops_attribute(key)
                });
            }
            for span in &mut scope_spans.spans {
                redact_text("span.name", &mut span.name, redactor, &mut counts);
                redact_attributes(&mut span.attributes, redactor, &mut counts, |key| {
                    redactor.drops_attribute(key)
                });
                for event in &mut span.events {
                    let name = event.name.clone();
                    redact_attributes(&mut event.attributes, redactor, &mut counts, |key| {
                        redactor.drops_event_attribute(&name, key)
                    });
                    redact_text("event.name", &mut event.name, redactor, &mut counts);
                }
                for link in &mut span.links {
                    redact_attributes(&mut link.attributes, redactor, &mut counts, |key| {
                        redactor.drops_attribute(key)
                    });
                }
                if let Some(status) = &mut span.status {
                    redact_text("status.message", &mut status.message, redactor, &mut counts);
                }
            }
        }
    }
    counts
}

fn redact_text(key: &str, text: &mut String, redactor: &Redactor, counts: &mut RedactionCounts) {
    if let std::borrow::Cow::Owned(clean) = redactor.redact_value(key, text) {
        *text = clean;
        counts.values_rewritten += 1;
    }
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
        Some(any_value::Value::StringValue(text)) => redact_text(key, text, redactor, counts),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::Event};
    use umpire_core::redaction::{RedactionAction, RedactionRule};

    use crate::attributes::string_kv as text;

    /// Step 9, seen from outside: span names, event names and scope attributes were not
    /// redacted, so an e-mail address in a span name reached NATS.
    #[test]
    fn names_and_scope_attributes_are_redacted_too() {
        let secret = "ada@example.com";
        let mut request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "app".into(),
                        attributes: vec![text("owner", secret)],
                        ..Default::default()
                    }),
                    spans: vec![Span {
                        name: format!("answer {secret}"),
                        events: vec![Event {
                            name: format!("mailed {secret}"),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let redactor = Redactor::new(
            true,
            vec![RedactionRule::Rewrite {
                name: "emails".into(),
                pattern: regex::Regex::new(r"[\w.+-]+@[\w-]+\.[\w.]+").unwrap(),
                scope: None,
                action: RedactionAction::Replace("<email>".into()),
            }],
        );
        let counts = redact_request(&mut request, &redactor);
        assert_eq!(counts.values_rewritten, 3);
        assert!(!format!("{request:?}").contains(secret), "{request:?}");
        let spans = &request.resource_spans[0].scope_spans[0];
        assert_eq!(spans.spans[0].name, "answer <email>");
        assert_eq!(spans.spans[0].events[0].name, "mailed <email>");
    }
}
