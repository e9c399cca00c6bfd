//! Small value types shared by both resources.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Names of judges, alerts, routes and policies inside a spec: DNS labels, so they can
/// appear in metric labels, NATS subjects and PagerDuty dedup keys unchanged.
pub const NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// An http(s) URL with a host.
pub const URL_PATTERN: &str = r"^https?://[^\s/?#]+([/?#][^\s]*)?$";

/// Go `time.ParseDuration` syntax, which is also what CEL's `duration()` accepts, so CEL rules
/// can compare durations (`duration(self.baseline) > duration(self.window)`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// Kubernetes quantity syntax restricted to plain and binary/decimal-suffixed byte counts.
pub const BYTE_SIZE_PATTERN: &str = r"^[0-9]+(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";

/// A reference to one key of a Secret in the resource's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret (same namespace as the resource).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A reference to one key of a ConfigMap in the resource's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap (same namespace as the resource).
    #[schemars(length(min = 1, max = 253))]
    pub config_map: String,
    /// Key within the ConfigMap's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A non-negative duration written as Go / Kubernetes durations are: `300ms`, `10s`, `1h30m`.
#[derive(Clone, PartialEq, Eq)]
pub struct Duration {
    text: String,
    value: std::time::Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a duration like 300ms, 10s, 5m or 1h30m{detail}")]
pub struct InvalidDuration {
    text: String,
    detail: String,
}

impl Duration {
    pub fn as_std(&self) -> std::time::Duration {
        self.value
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Duration {
    type Err = InvalidDuration;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |detail: String| InvalidDuration {
            text: text.to_owned(),
            detail,
        };
        if text.is_empty() {
            return Err(invalid(String::new()));
        }
        // kube's metav1.Duration parser is the Go-compatible one; we add "not empty" and
        // "not negative".
        let parsed: kube::core::Duration = text
            .parse()
            .map_err(|e: kube::core::duration::ParseError| invalid(format!(": {e}")))?;
        if parsed.is_negative() {
            return Err(invalid(": must not be negative".into()));
        }
        Ok(Self {
            text: text.to_owned(),
            value: parsed.into(),
        })
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": 32,
        })
    }
}

/// A size in bytes written as a Kubernetes quantity: `512Ki`, `4Mi`, `10Gi`, `1G`, `1000`.
#[derive(Clone, PartialEq, Eq)]
pub struct ByteSize {
    text: String,
    bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a byte size like 512Ki, 4Mi, 10Gi or 1G")]
pub struct InvalidByteSize(String);

impl ByteSize {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl FromStr for ByteSize {
    type Err = InvalidByteSize;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const SUFFIXES: [(&str, u64); 12] = [
            ("Ki", 1 << 10),
            ("Mi", 1 << 20),
            ("Gi", 1 << 30),
            ("Ti", 1 << 40),
            ("Pi", 1 << 50),
            ("Ei", 1 << 60),
            ("k", 1_000),
            ("M", 1_000_000),
            ("G", 1_000_000_000),
            ("T", 1_000_000_000_000),
            ("P", 1_000_000_000_000_000),
            ("E", 1_000_000_000_000_000_000),
        ];
        let invalid = || InvalidByteSize(text.to_owned());
        let (digits, multiplier) = SUFFIXES
            .iter()
            .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|d| (d, *factor)))
            .unwrap_or((text, 1));
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let count: u64 = digits.parse().map_err(|_| invalid())?;
        let bytes = count.checked_mul(multiplier).ok_or_else(invalid)?;
        Ok(Self {
            text: text.to_owned(),
            bytes,
        })
    }
}

impl fmt::Debug for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": BYTE_SIZE_PATTERN,
            "maxLength": 24,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_go_syntax() {
        let cases = [
            ("300ms", 300),
            ("10s", 10_000),
            ("1h30m", 5_400_000),
            ("1.5h", 5_400_000),
            ("72h", 259_200_000),
        ];
        for (text, millis) in cases {
            let duration: Duration = text.parse().unwrap();
            assert_eq!(duration.as_std().as_millis(), millis, "{text}");
            assert_eq!(duration.to_string(), text);
        }
        for bad in ["10", "-5s", "1d", "", "ten seconds"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn duration_pattern_agrees_with_parser() {
        let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
        for text in ["300ms", "10s", "1h30m", "1.5h", "2us", "3µs"] {
            assert!(pattern.is_match(text), "{text}");
            assert!(text.parse::<Duration>().is_ok(), "{text}");
        }
        for text in ["10", "-5s", "1d", "", "5 s"] {
            assert!(!pattern.is_match(text), "{text}");
        }
    }

    #[test]
    fn byte_sizes_parse_quantities() {
        let cases = [
            ("1000", 1000),
            ("512Ki", 512 * 1024),
            ("4Mi", 4 << 20),
            ("10Gi", 10 << 30),
            ("1G", 1_000_000_000),
            ("2k", 2000),
        ];
        for (text, bytes) in cases {
            assert_eq!(text.parse::<ByteSize>().unwrap().bytes(), bytes, "{text}");
        }
        for bad in ["", "Mi", "1.5Gi", "-1", "10GB", "99999999999Ei"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn byte_size_pattern_agrees_with_parser() {
        let pattern = regex::Regex::new(BYTE_SIZE_PATTERN).unwrap();
        for text in ["1000", "512Ki", "10Gi", "1G"] {
            assert!(
                pattern.is_match(text) && text.parse::<ByteSize>().is_ok(),
                "{text}"
            );
        }
        for text in ["", "Mi", "1.5Gi", "10GB"] {
            assert!(!pattern.is_match(text), "{text}");
        }
    }
}
