//! Trace and span identifiers, hex-encoded on the wire as in OTLP/JSON.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a {bytes}-byte hex id")]
pub struct InvalidId {
    text: String,
    bytes: usize,
}

macro_rules! hex_id {
    ($name:ident, $len:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// From raw bytes; `None` unless exactly the right length and not all zero (an
            /// all-zero id is invalid in OpenTelemetry).
            pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
                let id: [u8; $len] = bytes.try_into().ok()?;
                (id != [0; $len]).then_some(Self(id))
            }

            pub fn to_hex(&self) -> String {
                self.hex_digits().to_owned()
            }

            /// The lower-case hex digits on the stack: ids are formatted into every
            /// evaluation, dedup and score id, where a `String` each was measurable.
            pub(crate) fn hex_digits(&self) -> HexDigits<{ $len * 2 }> {
                let mut digits = [0u8; $len * 2];
                for (i, byte) in self.0.iter().enumerate() {
                    digits[2 * i] = HEX[usize::from(byte >> 4)];
                    digits[2 * i + 1] = HEX[usize::from(byte & 0xf)];
                }
                HexDigits(digits)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let invalid = || InvalidId {
                    text: text.to_owned(),
                    bytes: $len,
                };
                if text.len() != $len * 2 {
                    return Err(invalid());
                }
                let mut id = [0u8; $len];
                for (i, pair) in text.as_bytes().chunks(2).enumerate() {
                    let high = hex_value(pair[0]).ok_or_else(invalid)?;
                    let low = hex_value(pair[1]).ok_or_else(invalid)?;
                    id[i] = (high << 4) | low;
                }
                Ok(Self(id))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.hex_digits())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.hex_digits())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.hex_digits())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Hex digits of an id, as a `str` without allocating.
pub(crate) struct HexDigits<const N: usize>([u8; N]);

impl<const N: usize> std::ops::Deref for HexDigits<N> {
    type Target = str;

    fn deref(&self) -> &str {
        // Only ASCII hex digits are ever written (`hex_digits`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

hex_id!(TraceId, 16, "A 16-byte trace id.");
hex_id!(SpanId, 8, "An 8-byte span id.");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_hex() {
        let id: TraceId = "0748feb976cd256641cc0ff1847e6c60".parse().unwrap();
        assert_eq!(id.to_string(), "0748feb976cd256641cc0ff1847e6c60");
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"0748feb976cd256641cc0ff1847e6c60\""
        );
        let back: TraceId = serde_json::from_str("\"0748FEB976CD256641CC0FF1847E6C60\"").unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn rejects_bad_ids() {
        assert!("0748".parse::<TraceId>().is_err());
        assert!("zz8fc259f94501bd".parse::<SpanId>().is_err());
        assert_eq!(SpanId::from_bytes(&[0; 8]), None);
        assert_eq!(SpanId::from_bytes(&[1; 7]), None);
        assert!(SpanId::from_bytes(&[1; 8]).is_some());
    }
}
