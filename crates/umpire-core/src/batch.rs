//! Stream messages that carry several records of one trace: a list of records each already
//! encoded ([`stream_codec::write_list_header`] and the records), next to the single-record
//! form. One message per record costs a publish, a stream write, an acknowledgement and, for
//! every reader, a delivery and an ack — more than the record's own work for small records —
//! so the spans ingest keeps and the evaluations the evaluator stores travel batched per
//! trace.
//!
//! Readers take both forms, and JSON arrays and objects as versions before MessagePack wrote
//! them. Readers that understand batches must be deployed before anything writes them, so a
//! rolling upgrade never hands a batch to a reader that would skip or dead-letter it.

use serde::de::DeserializeOwned;

use crate::ids::{SpanId, TraceId};
use crate::stream_codec::{self, LIST_HEADER_MAX};

/// Whether a message is a batch rather than one record.
pub fn is_batch(payload: &[u8]) -> bool {
    stream_codec::is_list(payload)
}

/// The records of a message, one or a batch. A malformed message is an error, never a
/// partial batch.
pub fn read_one_or_many<T: DeserializeOwned>(
    payload: &[u8],
) -> Result<Vec<T>, stream_codec::Error> {
    if is_batch(payload) {
        stream_codec::from_slice(payload)
    } else {
        stream_codec::from_slice(payload).map(|one| vec![one])
    }
}

/// One message of records already encoded; its length is the sum of theirs plus at most
/// [`LIST_HEADER_MAX`] bytes.
pub fn batch_message<'a>(encoded: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let records: Vec<&[u8]> = encoded.into_iter().collect();
    // Sized once: a message of tens of kilobytes grown by doubling is copied several times.
    let size = LIST_HEADER_MAX + records.iter().map(|record| record.len()).sum::<usize>();
    let mut message = Vec::with_capacity(size);
    stream_codec::write_list_header(&mut message, records.len());
    for record in records {
        message.extend_from_slice(record);
    }
    message
}

/// The id a batch of `trace_id`'s records is deduplicated by (`Nats-Msg-Id`, behind the
/// stream's own prefix): the trace, the number of spans and a hash of their ids in order.
/// The same spans batched again — a retried publish, another replica regrouping the trace
/// after a partition moved — carry the same id; any other set carries another, so
/// deduplication never drops a batch holding a record the stored one lacks. (A message of
/// one record keeps that record's own id.)
pub fn batch_message_id(trace_id: &TraceId, span_ids: &[SpanId]) -> String {
    let ids: Vec<u8> = span_ids.iter().flat_map(|id| id.0).collect();
    let hash = xxhash_rust::xxh3::xxh3_64(&ids);
    format!("{trace_id}-{}x{hash:016x}", span_ids.len())
}

/// Splits records, in the order given, into the groups that travel together: consecutive
/// records that `together` says may share a message, at most `max_records` of them, whose
/// batch (`len` bytes each, plus the list's header) fits `budget`. A record larger
/// than the budget stays alone; publishing it is what fails.
pub fn pack<T>(
    records: impl IntoIterator<Item = T>,
    together: impl Fn(&T, &T) -> bool,
    len: impl Fn(&T) -> usize,
    max_records: usize,
    budget: usize,
) -> Vec<Vec<T>> {
    let mut groups = Vec::new();
    let mut group: Vec<T> = Vec::new();
    let mut group_bytes = 0;
    for record in records {
        let joins = group.first().is_some_and(|first| {
            together(first, &record)
                && group.len() < max_records
                && group_bytes + len(&record) + LIST_HEADER_MAX <= budget
        });
        if !joins && !group.is_empty() {
            groups.push(std::mem::take(&mut group));
            group_bytes = 0;
        }
        group_bytes += len(&record);
        group.push(record);
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_and_a_batch_both_read_back() {
        // Records are maps (a record that is a list would read as a batch).
        let record =
            |n: u32| stream_codec::to_vec(&serde_json::json!({"n": n})).unwrap_or_default();
        let read = |message: &[u8]| -> Option<Vec<u32>> {
            let records: Vec<serde_json::Value> = read_one_or_many(message).ok()?;
            records
                .iter()
                .map(|r| r["n"].as_u64().map(|n| n as u32))
                .collect()
        };
        assert_eq!(read(&record(7)), Some(vec![7]));
        let encoded = [record(1), record(22), record(333)];
        let message = batch_message(encoded.iter().map(Vec::as_slice));
        assert_eq!(
            message.len(),
            1 + encoded.iter().map(Vec::len).sum::<usize>()
        );
        assert_eq!(read(&message), Some(vec![1, 22, 333]));
        assert_eq!(read(&batch_message([])), Some(vec![]));
        assert_eq!(
            read(&message[..message.len() - 1]),
            None,
            "never a partial batch"
        );
        assert!(read_one_or_many::<u32>(b"").is_err());
    }

    #[test]
    fn json_records_and_batches_written_before_are_read() {
        // Records are objects: a bare JSON number would read as MessagePack.
        let one: Vec<serde_json::Value> = read_one_or_many(b"{\"n\":7}").unwrap_or_default();
        assert_eq!(one, vec![serde_json::json!({"n": 7})]);
        let many: Vec<[u32; 1]> = read_one_or_many(b" \n [[1],[22],[333]]").unwrap_or_default();
        assert_eq!(
            many,
            vec![[1], [22], [333]],
            "leading whitespace is allowed, as JSON does"
        );
        assert!(
            read_one_or_many::<[u32; 1]>(b"[[1],[2]").is_err(),
            "never a partial batch"
        );
    }

    #[test]
    fn a_batch_id_names_exactly_its_spans() {
        let trace = TraceId([7; 16]);
        let ids = [SpanId([1; 8]), SpanId([2; 8]), SpanId([3; 8])];
        let id = batch_message_id(&trace, &ids);
        assert_eq!(id, batch_message_id(&trace, &ids), "stable");
        assert!(id.starts_with(&format!("{trace}-3x")), "{id}");
        assert_ne!(id, batch_message_id(&trace, &ids[..2]));
        assert_ne!(
            id,
            batch_message_id(&trace, &[ids[0], ids[1], SpanId([4; 8])])
        );
        assert_ne!(id, batch_message_id(&TraceId([8; 16]), &ids));
    }

    #[test]
    fn packing_keeps_groups_apart_and_within_both_limits() {
        // (group, bytes)
        let records = [
            (1, 10),
            (1, 10),
            (1, 10),
            (2, 10),
            (2, 50),
            (2, 10),
            (3, 500),
        ];
        let groups = pack(records, |a, b| a.0 == b.0, |r| r.1, 2, 65);
        assert_eq!(
            groups,
            vec![
                vec![(1, 10), (1, 10)],
                vec![(1, 10)],
                vec![(2, 10), (2, 50)],
                vec![(2, 10)],
                vec![(3, 500)],
            ]
        );
        // Bytes: [a,b] is 10 + 50 + a header of up to 5 = 65; one more byte and they part.
        let groups = pack([(1, 10), (1, 51)], |a, b| a.0 == b.0, |r| r.1, 8, 65);
        assert_eq!(groups.len(), 2);
        assert!(pack(Vec::<(u8, usize)>::new(), |_, _| true, |r| r.1, 8, 64).is_empty());
    }
}
