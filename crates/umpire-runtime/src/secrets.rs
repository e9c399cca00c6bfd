//! The one reader of mounted Secrets. Kubernetes mounts a Secret as a folder with one file
//! per key (`<dir>/<secret>/<key>`); `umpire local` writes the same layout. Values are read
//! at each use, so a rotated Secret is picked up without a restart, and they never reach a
//! log line or error message: [`SecretValue`]'s `Debug` is redacted and errors name only the
//! Secret, the key and the kind of failure.

use std::fmt;
use std::path::{Path, PathBuf};

/// A secret's value, trimmed of surrounding whitespace (editors and `echo` add newlines).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().trim().to_owned())
    }

    /// The value itself: only for putting it where it belongs (a header, a signature key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name}/{key} is not mounted (no secret directory)")]
    NotMounted { name: String, key: String },
    #[error("secret {name}/{key} is not readable ({path}): {kind}")]
    Unreadable {
        name: String,
        key: String,
        path: PathBuf,
        kind: std::io::ErrorKind,
    },
    #[error("secret file {path} is not readable: {kind}")]
    File {
        path: PathBuf,
        kind: std::io::ErrorKind,
    },
    #[error("secret {0} is empty")]
    Empty(String),
}

/// Where Secrets are mounted (`None`: nothing is, and every read fails with a clear error).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountedSecrets {
    dir: Option<PathBuf>,
}

impl MountedSecrets {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The file holding `key` of Secret `name`.
    pub fn path(&self, name: &str, key: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| dir.join(name).join(key))
    }

    pub fn read(&self, name: &str, key: &str) -> Result<SecretValue, SecretError> {
        let Some(path) = self.path(name, key) else {
            return Err(SecretError::NotMounted {
                name: name.to_owned(),
                key: key.to_owned(),
            });
        };
        let value = std::fs::read_to_string(&path).map_err(|e| SecretError::Unreadable {
            name: name.to_owned(),
            key: key.to_owned(),
            path: path.clone(),
            kind: e.kind(),
        })?;
        non_empty(SecretValue::new(value), || format!("{name}/{key}"))
    }
}

/// Reads a secret from a file named directly (e.g. `--auth-token-file`).
pub fn read_secret_file(path: &Path) -> Result<SecretValue, SecretError> {
    let value = std::fs::read_to_string(path).map_err(|e| SecretError::File {
        path: path.to_owned(),
        kind: e.kind(),
    })?;
    non_empty(SecretValue::new(value), || path.display().to_string())
}

fn non_empty(
    value: SecretValue,
    name: impl FnOnce() -> String,
) -> Result<SecretValue, SecretError> {
    if value.expose().is_empty() {
        Err(SecretError::Empty(name()))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mounted_keys_trimmed_and_never_shows_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("pd")).expect("secret dir");
        std::fs::write(dir.path().join("pd/routing-key"), "R0UT1NG\n").expect("key");
        std::fs::write(dir.path().join("pd/blank"), "\n").expect("blank");
        let secrets = MountedSecrets::new(Some(dir.path().to_owned()));

        let value = secrets.read("pd", "routing-key").expect("readable");
        assert_eq!(value.expose(), "R0UT1NG");
        assert!(!format!("{value:?}").contains("R0UT1NG"));

        let missing = secrets.read("pd", "token").expect_err("no such key");
        assert!(missing.to_string().contains("pd/token"), "{missing}");
        assert!(matches!(
            secrets.read("pd", "blank"),
            Err(SecretError::Empty(_))
        ));
        assert!(matches!(
            MountedSecrets::default().read("pd", "routing-key"),
            Err(SecretError::NotMounted { .. })
        ));
        assert_eq!(
            read_secret_file(&dir.path().join("pd/routing-key"))
                .expect("file")
                .expose(),
            "R0UT1NG"
        );
    }
}
