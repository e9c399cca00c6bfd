//! NATS credentials and TLS material, read from folders laid out as Kubernetes mounts a
//! Secret (`<dir>/<key>`). The controller reads its own folders and hands the same keys to
//! every worker in a Secret of the worker's namespace; workers read them back the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use async_nats::ConnectOptions;

/// Keys of a credentials Secret; exactly one way to authenticate: a `.creds` file (JWT +
/// NKey seed, decentralised auth), an NKey seed, a token, or a username with a password.
pub const AUTH_KEYS: [&str; 5] = ["creds", "nkey", "token", "username", "password"];
/// Keys of a TLS Secret (cert-manager's layout): the CA to trust and, for mutual TLS, a
/// client certificate and key.
pub const TLS_KEYS: [&str; 3] = ["ca.crt", "tls.crt", "tls.key"];

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{dir}: no NATS credentials found; expected one of `creds`, `nkey`, `token`, or `username` with `password`"
    )]
    Empty { dir: PathBuf },
    #[error("{dir}: {message}")]
    Ambiguous { dir: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The files of a mounted Secret (only the known keys that exist). `Debug` never shows the
/// contents.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretFiles {
    files: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for SecretFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretFiles")
            .field("keys", &self.files.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretFiles {
    /// Reads the `keys` present in `dir`; a missing key is not an error, an unreadable one is.
    pub fn read(dir: &Path, keys: &[&str]) -> Result<Self, AuthError> {
        let mut files = BTreeMap::new();
        for key in keys {
            let path = dir.join(key);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    files.insert((*key).to_owned(), bytes);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(AuthError::Read { path, source }),
            }
        }
        Ok(Self { files })
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.files.get(key).map(Vec::as_slice)
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Merges `other` in (keys of the two Secrets never overlap).
    pub fn extend(&mut self, other: SecretFiles) {
        self.files.extend(other.files);
    }
}

/// How a client authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum NatsAuth {
    Credentials(String),
    NKey(String),
    Token(String),
    UserPassword { user: String, password: String },
}

impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NatsAuth::Credentials(_) => "NatsAuth::Credentials(..)",
            NatsAuth::NKey(_) => "NatsAuth::NKey(..)",
            NatsAuth::Token(_) => "NatsAuth::Token(..)",
            NatsAuth::UserPassword { .. } => "NatsAuth::UserPassword(..)",
        })
    }
}

impl NatsAuth {
    /// Reads the credentials in `dir` (a mounted Secret with the [`AUTH_KEYS`]).
    pub fn read(dir: &Path) -> Result<Self, AuthError> {
        let files = SecretFiles::read(dir, &AUTH_KEYS)?;
        let text = |key: &str| -> Result<Option<String>, AuthError> {
            files
                .get(key)
                .map(|bytes| {
                    String::from_utf8(bytes.to_vec()).map_err(|_| AuthError::Invalid {
                        path: dir.join(key),
                        message: "not UTF-8 text".into(),
                    })
                })
                .transpose()
        };
        // Secrets made with `echo` end in a newline that is not part of the value.
        let trimmed = |key: &str| -> Result<Option<String>, AuthError> {
            Ok(text(key)?.map(|t| t.trim_end_matches(['\n', '\r']).to_owned()))
        };
        let present: Vec<&str> = ["creds", "nkey", "token", "username"]
            .into_iter()
            .filter(|k| files.get(k).is_some())
            .collect();
        if present.len() > 1 {
            return Err(AuthError::Ambiguous {
                dir: dir.to_owned(),
                message: format!(
                    "holds {}: give exactly one way to authenticate",
                    present.join(" and ")
                ),
            });
        }
        if let Some(creds) = text("creds")? {
            return Ok(NatsAuth::Credentials(creds));
        }
        if let Some(seed) = trimmed("nkey")? {
            return Ok(NatsAuth::NKey(seed));
        }
        if let Some(token) = trimmed("token")? {
            return Ok(NatsAuth::Token(token));
        }
        match (trimmed("username")?, trimmed("password")?) {
            (Some(user), Some(password)) => Ok(NatsAuth::UserPassword { user, password }),
            (Some(_), None) => Err(AuthError::Ambiguous {
                dir: dir.to_owned(),
                message: "has `username` but no `password`".into(),
            }),
            _ => Err(AuthError::Empty {
                dir: dir.to_owned(),
            }),
        }
    }

    /// Connect options that authenticate this way.
    pub fn options(&self, dir: &Path) -> Result<ConnectOptions, AuthError> {
        Ok(match self {
            NatsAuth::Credentials(creds) => {
                ConnectOptions::with_credentials(creds).map_err(|e| AuthError::Invalid {
                    path: dir.join("creds"),
                    message: format!("not a NATS credentials file: {e}"),
                })?
            }
            NatsAuth::NKey(seed) => ConnectOptions::with_nkey(seed.clone()),
            NatsAuth::Token(token) => ConnectOptions::with_token(token.clone()),
            NatsAuth::UserPassword { user, password } => {
                ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
        })
    }
}

/// Adds the TLS material in `dir` ([`TLS_KEYS`]) to `options` and requires TLS.
pub fn with_tls(options: ConnectOptions, dir: &Path) -> Result<ConnectOptions, AuthError> {
    let files = SecretFiles::read(dir, &TLS_KEYS)?;
    let mut options = options.require_tls(true);
    if files.get("ca.crt").is_some() {
        options = options.add_root_certificates(dir.join("ca.crt"));
    }
    match (files.get("tls.crt"), files.get("tls.key")) {
        (Some(_), Some(_)) => {
            options = options.add_client_certificate(dir.join("tls.crt"), dir.join("tls.key"))
        }
        (None, None) => {}
        _ => {
            return Err(AuthError::Ambiguous {
                dir: dir.to_owned(),
                message: "a client certificate needs both `tls.crt` and `tls.key`".into(),
            });
        }
    }
    Ok(options)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (key, value) in files {
            std::fs::write(dir.path().join(key), value).unwrap();
        }
        dir
    }

    #[test]
    fn reads_each_way_to_authenticate() {
        let dir = dir_with(&[("username", "umpire\n"), ("password", "s3cret\n")]);
        assert_eq!(
            NatsAuth::read(dir.path()).unwrap(),
            NatsAuth::UserPassword {
                user: "umpire".into(),
                password: "s3cret".into()
            }
        );
        let dir = dir_with(&[("token", "t0ken\n")]);
        assert_eq!(
            NatsAuth::read(dir.path()).unwrap(),
            NatsAuth::Token("t0ken".into())
        );
    }

    #[test]
    fn refuses_missing_or_ambiguous_credentials() {
        let dir = dir_with(&[]);
        assert!(matches!(
            NatsAuth::read(dir.path()),
            Err(AuthError::Empty { .. })
        ));
        let dir = dir_with(&[("token", "a"), ("username", "b"), ("password", "c")]);
        let error = NatsAuth::read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("token and username"), "{error}");
        let dir = dir_with(&[("username", "b")]);
        assert!(
            NatsAuth::read(dir.path())
                .unwrap_err()
                .to_string()
                .contains("no `password`")
        );
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let auth = NatsAuth::UserPassword {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
        let dir = dir_with(&[("token", "hunter2")]);
        let files = SecretFiles::read(dir.path(), &AUTH_KEYS).unwrap();
        assert!(!format!("{files:?}").contains("hunter2"));
        assert!(format!("{files:?}").contains("token"));
    }
}
