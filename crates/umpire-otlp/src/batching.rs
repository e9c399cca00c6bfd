//! Splitting an export by trace partition and into messages that fit the NATS payload
//! limit, truncating single spans too large for any message.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
use prost::Message;
use umpire_core::hashing::trace_partition;

use crate::ExportTraceServiceRequest;
use crate::convert::span_ids;

/// Attribute ingest adds to a span whose values it shortened: the keys it shortened.
pub const TRUNCATED_ATTRIBUTE: &str = "umpire.truncated";

/// The marker appended to a shortened value.
pub fn truncation_marker(removed: usize) -> String {
    format!("…[truncated by umpire: {removed} bytes]")
}

/// An export split by the partition owning each span's trace.
#[derive(Debug, Default)]
pub struct Partitioned {
    pub parts: BTreeMap<u32, ExportTraceServiceRequest>,
    pub spans: usize,
    /// Spans refused for invalid ids, and the first reason.
    pub rejected: usize,
    pub first_rejection: Option<String>,
}

/// Moves every valid span of `request` into the part for its trace's partition, keeping
/// each span with its resource and scope.
pub fn split_by_partition(request: ExportTraceServiceRequest, partitions: u32) -> Partitioned {
    let mut out = Partitioned::default();
    for resource_spans in request.resource_spans {
        let ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        } = resource_spans;
        // Per part: the index of this resource's ResourceSpans within that part.
        let mut resource_slot: BTreeMap<u32, usize> = BTreeMap::new();
        for scope_spans in scope_spans {
            let ScopeSpans {
                scope,
                spans,
                schema_url: scope_schema,
            } = scope_spans;
            let mut scope_slot: BTreeMap<u32, usize> = BTreeMap::new();
            for span in spans {
                let trace_id = match span_ids(&span) {
                    Ok((trace_id, _)) => trace_id,
                    Err(reason) => {
                        out.rejected += 1;
                        out.first_rejection
                            .get_or_insert_with(|| format!("span {:?}: {reason}", span.name));
                        continue;
                    }
                };
                out.spans += 1;
                let partition = trace_partition(&trace_id, partitions);
                let part = out.parts.entry(partition).or_default();
                let r = *resource_slot.entry(partition).or_insert_with(|| {
                    part.resource_spans.push(ResourceSpans {
                        resource: resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: schema_url.clone(),
                    });
                    part.resource_spans.len() - 1
                });
                let scopes = &mut part.resource_spans[r].scope_spans;
                let s = *scope_slot.entry(partition).or_insert_with(|| {
                    scopes.push(ScopeSpans {
                        scope: scope.clone(),
                        spans: Vec::new(),
                        schema_url: scope_schema.clone(),
                    });
                    scopes.len() - 1
                });
                scopes[s].spans.push(span);
            }
        }
    }
    out
}

/// Splits `request` into exports whose encoded size is at most `max_bytes`; a span that
/// alone exceeds the budget is truncated. Returns the exports and how many spans were
/// truncated.
pub fn fit_to_size(
    request: ExportTraceServiceRequest,
    max_bytes: usize,
) -> (Vec<ExportTraceServiceRequest>, usize) {
    if request.encoded_len() <= max_bytes {
        return (vec![request], 0);
    }
    let mut chunks = Vec::new();
    let mut current = ExportTraceServiceRequest::default();
    let mut current_bytes = 0usize;
    let mut truncated = 0;
    for resource_spans in request.resource_spans {
        let ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        } = resource_spans;
        let resource_bytes =
            resource.as_ref().map_or(0, Message::encoded_len) + schema_url.len() + 16;
        for scope_spans in scope_spans {
            let ScopeSpans {
                scope,
                spans,
                schema_url: scope_schema,
            } = scope_spans;
            let scope_bytes =
                scope.as_ref().map_or(0, Message::encoded_len) + scope_schema.len() + 16;
            for mut span in spans {
                let overhead = resource_bytes + scope_bytes + 16;
                let mut span_bytes = span.encoded_len() + 8;
                if overhead + span_bytes > max_bytes {
                    truncate_span(&mut span, max_bytes.saturating_sub(overhead + 8));
                    truncated += 1;
                    span_bytes = span.encoded_len() + 8;
                }
                if current_bytes + overhead + span_bytes > max_bytes
                    && !current.resource_spans.is_empty()
                {
                    chunks.push(std::mem::take(&mut current));
                    current_bytes = 0;
                }
                // Reuse the last ResourceSpans / ScopeSpans when they are this span's.
                let same_resource = current
                    .resource_spans
                    .last()
                    .is_some_and(|r| r.resource == resource && r.schema_url == schema_url);
                if !same_resource {
                    current.resource_spans.push(ResourceSpans {
                        resource: resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: schema_url.clone(),
                    });
                    current_bytes += resource_bytes;
                }
                let Some(last_resource) = current.resource_spans.last_mut() else {
                    continue;
                };
                let same_scope = last_resource
                    .scope_spans
                    .last()
                    .is_some_and(|s| s.scope == scope && s.schema_url == scope_schema);
                if !same_scope {
                    last_resource.scope_spans.push(ScopeSpans {
                        scope: scope.clone(),
                        spans: Vec::new(),
                        schema_url: scope_schema.clone(),
                    });
                    current_bytes += scope_bytes;
                }
                if let Some(last_scope) = last_resource.scope_spans.last_mut() {
                    last_scope.spans.push(span);
                    current_bytes += span_bytes;
                }
            }
        }
    }
    if !current.resource_spans.is_empty() {
        chunks.push(current);
    }
    (chunks, truncated)
}

/// Shortens the span's largest string values (span and event attributes) until its encoded
/// size is within `budget`, marking each and listing the keys in `umpire.truncated`. A span
/// of very many small values then loses whole collections — events, links, and attributes
/// largest first — listed the same way, so every span fits: none can block its partition.
pub fn truncate_span(span: &mut OtlpSpan, budget: usize) {
    let mut truncated_keys: Vec<String> = Vec::new();
    // Room for the marker attribute itself.
    let budget = budget.saturating_sub(256);
    let mut no_status = String::new();
    let status_message = match span.status.as_mut() {
        Some(status) => &mut status.message,
        None => &mut no_status,
    };
    for (field, text) in [("name", &mut span.name), ("status.message", status_message)] {
        if text.len() > LONGEST_NAME {
            let mut cut = LONGEST_NAME;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let removed = text.len() - cut;
            text.truncate(cut);
            text.push_str(&truncation_marker(removed));
            truncated_keys.push(field.to_owned());
        }
    }
    while span.encoded_len() > budget {
        let excess = span.encoded_len() - budget;
        let Some((key, text)) = largest_string(span) else {
            break;
        };
        if text.len() < 64 {
            break;
        }
        let marker_room = 48;
        let keep = text
            .len()
            .saturating_sub(excess + marker_room)
            .min(text.len() - marker_room.min(text.len()));
        let mut cut = keep;
        while cut > 0 && !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let removed = text.len() - cut;
        text.truncate(cut);
        text.push_str(&truncation_marker(removed));
        if !truncated_keys.contains(&key) {
            truncated_keys.push(key);
        }
    }
    shed_collections(span, budget, &mut truncated_keys);
    if !truncated_keys.is_empty() {
        span.attributes.retain(|kv| kv.key != TRUNCATED_ATTRIBUTE);
        span.attributes.push(KeyValue {
            key: TRUNCATED_ATTRIBUTE.into(),
            key_strindex: 0,
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: truncated_keys
                        .into_iter()
                        .map(|k| AnyValue {
                            value: Some(any_value::Value::StringValue(k)),
                        })
                        .collect(),
                })),
            }),
        });
    }
}

/// Span names and status messages longer than this are cut (they are labels, not content).
const LONGEST_NAME: usize = 1024;

/// Drops events, then links, then attributes (largest first) while the span exceeds
/// `budget`, naming what went in `truncated_keys`.
fn shed_collections(span: &mut OtlpSpan, budget: usize, truncated_keys: &mut Vec<String>) {
    if span.encoded_len() > budget && !span.events.is_empty() {
        truncated_keys.push(format!("events ({} dropped)", span.events.len()));
        span.dropped_events_count = span
            .dropped_events_count
            .saturating_add(u32::try_from(span.events.len()).unwrap_or(u32::MAX));
        span.events.clear();
    }
    if span.encoded_len() > budget && !span.links.is_empty() {
        truncated_keys.push(format!("links ({} dropped)", span.links.len()));
        span.dropped_links_count = span
            .dropped_links_count
            .saturating_add(u32::try_from(span.links.len()).unwrap_or(u32::MAX));
        span.links.clear();
    }
    let excess = span.encoded_len().saturating_sub(budget);
    if excess == 0 {
        return;
    }
    let mut by_size: Vec<(usize, usize)> = span
        .attributes
        .iter()
        .enumerate()
        .map(|(i, kv)| (kv.encoded_len() + 2, i))
        .collect();
    by_size.sort_unstable_by(|a, b| b.cmp(a));
    let mut freed = 0;
    let mut drop = vec![false; span.attributes.len()];
    for (size, i) in by_size {
        if freed >= excess {
            break;
        }
        drop[i] = true;
        freed += size;
    }
    let dropped = drop.iter().filter(|d| **d).count();
    let mut index = 0;
    span.attributes.retain(|_| {
        index += 1;
        !drop[index - 1]
    });
    span.dropped_attributes_count = span
        .dropped_attributes_count
        .saturating_add(u32::try_from(dropped).unwrap_or(u32::MAX));
    truncated_keys.push(format!("attributes ({dropped} dropped)"));
}

/// The longest string attribute value of the span or its events, with its key.
fn largest_string(span: &mut OtlpSpan) -> Option<(String, &mut String)> {
    let span_attributes = span
        .attributes
        .iter_mut()
        .map(|kv| (format!("attributes.{}", kv.key), kv));
    let event_attributes = span.events.iter_mut().flat_map(|e| {
        let name = e.name.clone();
        e.attributes
            .iter_mut()
            .map(move |kv| (format!("events.{name}.{}", kv.key), kv))
    });
    span_attributes
        .chain(event_attributes)
        .filter_map(|(key, kv)| match kv.value.as_mut()?.value.as_mut()? {
            any_value::Value::StringValue(text) => Some((key, text)),
            _ => None,
        })
        .max_by_key(|(_, text)| text.len())
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;
    use crate::attributes::string_kv;

    fn span(trace: u8, id: u8, content: usize) -> OtlpSpan {
        OtlpSpan {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            name: format!("span-{id}"),
            attributes: vec![string_kv("input.value", &"x".repeat(content))],
            ..Default::default()
        }
    }

    fn request(spans: Vec<OtlpSpan>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string_kv("service.name", "bot")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn all_spans(request: &ExportTraceServiceRequest) -> Vec<&OtlpSpan> {
        request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect()
    }

    #[test]
    fn splits_by_trace_keeping_resource_and_rejecting_bad_ids() {
        let mut spans: Vec<OtlpSpan> = (1..=40).map(|t| span(t, t, 10)).collect();
        spans.push(OtlpSpan {
            trace_id: vec![0; 16],
            span_id: vec![1; 8],
            ..Default::default()
        });
        let partitioned = split_by_partition(request(spans), 4);
        assert_eq!((partitioned.spans, partitioned.rejected), (40, 1));
        assert!(partitioned.first_rejection.unwrap().contains("trace_id"));
        let mut seen = 0;
        for (partition, part) in &partitioned.parts {
            assert_eq!(part.resource_spans.len(), 1);
            assert!(part.resource_spans[0].resource.is_some());
            for span in all_spans(part) {
                let (trace_id, _) = span_ids(span).unwrap();
                assert_eq!(trace_partition(&trace_id, 4), *partition);
                seen += 1;
            }
        }
        assert_eq!(seen, 40);
        assert!(partitioned.parts.len() > 1);
    }

    #[test]
    fn fits_exports_into_the_budget() {
        let original = request((1..=50).map(|t| span(t, t, 1000)).collect());
        let (chunks, truncated) = fit_to_size(original, 10_000);
        assert_eq!(truncated, 0);
        assert!(chunks.len() >= 5);
        assert!(
            chunks.iter().all(|c| c.encoded_len() <= 10_000),
            "{:?}",
            chunks.iter().map(|c| c.encoded_len()).collect::<Vec<_>>()
        );
        assert_eq!(chunks.iter().map(|c| all_spans(c).len()).sum::<usize>(), 50);
    }

    #[test]
    fn truncates_a_span_larger_than_any_message() {
        let (chunks, truncated) =
            fit_to_size(request(vec![span(1, 1, 100_000), span(2, 2, 10)]), 10_000);
        assert_eq!(truncated, 1);
        assert!(chunks.iter().all(|c| c.encoded_len() <= 10_000));
        let big = all_spans(&chunks[0])[0];
        let text = match big.attributes[0]
            .value
            .as_ref()
            .unwrap()
            .value
            .as_ref()
            .unwrap()
        {
            any_value::Value::StringValue(text) => text.clone(),
            _ => unreachable!(),
        };
        assert!(text.ends_with("bytes]") && text.contains("truncated by umpire"));
        assert_eq!(big.attributes.last().unwrap().key, TRUNCATED_ATTRIBUTE);
    }
}
