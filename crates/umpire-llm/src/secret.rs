//! The judge API key: a mounted Secret's value (read by `umpire_runtime::secrets`), never
//! printed. A mounted key is read again at every call: Kubernetes updates a mounted Secret
//! in place (an atomic swap of the files), and a key read once at start kept failing with
//! 401 after a rotation until the pod restarted.

use std::fmt;

use umpire_runtime::secrets::{MountedSecrets, SecretError, SecretValue};

#[derive(Clone)]
pub struct ApiKey(Source);

#[derive(Clone)]
enum Source {
    Fixed(SecretValue),
    Mounted {
        secrets: MountedSecrets,
        name: String,
        key: String,
    },
}

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(Source::Fixed(SecretValue::new(key)))
    }

    /// Key `key` of the Secret `name` under `secrets`, read at each use.
    pub fn mounted(secrets: MountedSecrets, name: &str, key: &str) -> Self {
        Self(Source::Mounted {
            secrets,
            name: name.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The key as it is now.
    pub(crate) fn current(&self) -> Result<SecretValue, SecretError> {
        match &self.0 {
            Source::Fixed(value) => Ok(value.clone()),
            Source::Mounted { secrets, name, key } => secrets.read(name, key),
        }
    }
}

impl From<SecretValue> for ApiKey {
    fn from(value: SecretValue) -> Self {
        Self(Source::Fixed(value))
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
        assert_eq!(key.current().unwrap().expose(), "sk-secret-value");
    }

    #[test]
    fn a_mounted_key_is_read_at_each_use() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("judge-key")).unwrap();
        let file = dir.path().join("judge-key/api-key");
        std::fs::write(&file, "sk-one\n").unwrap();
        let key = ApiKey::mounted(
            MountedSecrets::new(Some(dir.path().to_owned())),
            "judge-key",
            "api-key",
        );
        assert_eq!(key.current().unwrap().expose(), "sk-one");
        std::fs::write(&file, "sk-two\n").unwrap();
        assert_eq!(key.current().unwrap().expose(), "sk-two");
        assert!(format!("{key:?}").contains("redacted"));
    }
}
