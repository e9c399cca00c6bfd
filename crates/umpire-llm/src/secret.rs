//! The judge API key: a mounted Secret's value (read by `umpire_runtime::secrets`), never
//! printed.

use std::fmt;

use umpire_runtime::secrets::SecretValue;

#[derive(Clone)]
pub struct ApiKey(SecretValue);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(SecretValue::new(key))
    }

    pub(crate) fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl From<SecretValue> for ApiKey {
    fn from(value: SecretValue) -> Self {
        Self(value)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let key = ApiKey::new("sk-secret-value\n");
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
        assert_eq!(key.expose(), "sk-secret-value");
    }
}
