//! The codec of the records on Umpire's busiest streams: kept spans (written by ingest, read
//! by evaluators and exporters) and evaluations (written by evaluators, read by alerting and
//! exporters). Every such record passes through here, and nothing else does.
//!
//! They are written as MessagePack, structs as maps that name their fields, so records evolve
//! as JSON ones do (a new optional field is skipped by older readers, a missing one takes its
//! default) and the types and their `serde` attributes are unchanged. Why not JSON: these
//! records are mostly long texts — prompts, replies, documents, and the `gen_ai.*.messages`
//! attributes, which are JSON inside a string — and JSON escapes them on writing, scans them
//! for quotes and backslashes on reading, even to skip them, and prints every number as
//! decimal text. MessagePack prefixes each text with its length: written with one copy,
//! skipped by a jump. Counted with callgrind on realistic agent spans (README, "Where the
//! time goes"), an evaluator's span fell from 79.8k to 57.0k instructions.
//!
//! Readers also take the JSON that versions before it wrote (a record's first byte tells:
//! `{` and `[` start no MessagePack map or array), so spans and evaluations stored before an
//! upgrade are still read. Config, Kubernetes objects, OTLP/JSON from clients and small
//! control records stay JSON (`serde_json`).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A record that could not be written or read: what is wrong, on one line (it is logged and
/// put in dead-letter headers). Only the first line of the codec's message is kept; a type
/// mismatch still names the value serde found, as every serde error does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

impl Error {
    fn of(error: impl std::fmt::Display) -> Self {
        let text = error.to_string();
        Self(
            text.lines()
                .next()
                .unwrap_or_default()
                .trim_end()
                .to_owned(),
        )
    }
}

/// Appends `value`'s record to `out`.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    value
        .serialize(&mut rmp_serde::Serializer::new(out).with_struct_map())
        .map_err(Error::of)
}

/// `value` as a record.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    write(&mut out, value)?;
    Ok(out)
}

/// How many bytes `value` takes written (0 if it cannot be).
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    to_vec(value).map_or(0, |bytes| bytes.len())
}

/// Whether `record` is JSON (written before the streams were MessagePack).
fn is_json(record: &[u8]) -> bool {
    matches!(first_byte(record), Some(b'{' | b'['))
}

/// Whether `record` is a list of records: a MessagePack array, or a JSON one.
pub fn is_list(record: &[u8]) -> bool {
    matches!(first_byte(record), Some(b'[' | 0x90..=0x9f | 0xdc | 0xdd))
}

/// The first byte of a record, past the whitespace JSON allows before it.
fn first_byte(record: &[u8]) -> Option<u8> {
    record.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// Reads a record (or a list of them), MessagePack or JSON, checking its texts are UTF-8.
/// A MessagePack record's bytes past its end are not looked at (only Umpire writes these
/// streams, one record or one list per message).
pub fn from_slice<T: DeserializeOwned>(record: &[u8]) -> Result<T, Error> {
    if is_json(record) {
        serde_json::from_slice(record).map_err(Error::of)
    } else {
        rmp_serde::from_slice(record).map_err(Error::of)
    }
}

/// Appends the MessagePack header of a list of `len` records to `out`: a list message is
/// the header followed by its records as they were written.
pub fn write_list_header(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    // Writing to a Vec cannot fail.
    let _ = rmp::encode::write_array_len(out, len);
}

/// The bytes [`write_list_header`] writes at most.
pub const LIST_HEADER_MAX: usize = 5;

#[cfg(test)]
mod tests;
