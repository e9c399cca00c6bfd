//! Untrusted bytes through ingest's whole path: decode (protobuf or OTLP/JSON, chosen by the
//! first byte), redact (content capture off, so every content rule runs), split by
//! partition, fit to NATS' message size, normalise each span and write its wire form. Any
//! panic, overflow or runaway allocation is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use umpire_core::redaction::Redactor;
use umpire_otlp::batching::{fit_to_size, split_by_partition};
use umpire_otlp::convert::domain_spans;
use umpire_otlp::decode::{Encoding, decode_request};
use umpire_otlp::redact::redact_request;

const MESSAGE_BYTES: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let encoding = if selector % 2 == 0 {
        Encoding::Protobuf
    } else {
        Encoding::Json
    };
    let Ok(mut request) = decode_request(body, encoding) else {
        return;
    };
    redact_request(&mut request, &Redactor::new(false, Vec::new()));
    let partitioned = split_by_partition(request, 16);
    for part in partitioned.parts.into_values() {
        let (messages, _) = fit_to_size(part, MESSAGE_BYTES);
        for message in messages {
            assert!(prost::Message::encoded_len(&message) <= MESSAGE_BYTES);
            let (spans, _) = domain_spans(&message);
            for mut normalised in spans {
                let _ = normalised.to_wire(MESSAGE_BYTES);
            }
        }
    }
});
