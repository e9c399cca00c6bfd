//! Optional durations in config files use the same syntax as in resources (`10s`, `1m30s`);
//! they are written back in milliseconds.

use serde::{Deserialize, Deserializer, Serializer};
use umpire_api::common::Duration;

pub fn serialize<S: Serializer>(
    value: &Option<std::time::Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => serializer.serialize_str(&format!("{}ms", d.as_millis())),
        None => serializer.serialize_none(),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    Ok(Option::<Duration>::deserialize(deserializer)?.map(|d| d.as_std()))
}
