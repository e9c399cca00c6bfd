//! A worker's `--config` file: either the config the controller renders, or a manifest of
//! the worker's kind (for local runs and quick trials), read the same way for both workers.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

/// What a config file holds.
pub(crate) enum Document<S> {
    /// A worker config, still to be parsed as one.
    Config(Value),
    Manifest {
        namespace: String,
        name: String,
        spec: S,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not {expected}: {message}")]
    Parse {
        path: PathBuf,
        /// What the file should have been, e.g. "an ingest config or TraceProject".
        expected: &'static str,
        message: String,
    },
}

/// Reads `path` as YAML: a manifest when its `kind` is `kind`, else a config.
pub(crate) fn read<S: DeserializeOwned>(
    path: &Path,
    kind: &str,
    expected: &'static str,
) -> Result<Document<S>, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parse_error = |message: String| ReadError::Parse {
        path: path.to_owned(),
        expected,
        message,
    };
    let value: Value = serde_yaml::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
    if value.get("kind").and_then(Value::as_str) != Some(kind) {
        return Ok(Document::Config(value));
    }
    let (namespace, name, spec) = manifest_parts(&value).map_err(parse_error)?;
    Ok(Document::Manifest {
        namespace,
        name,
        spec,
    })
}

/// Namespace (default `default`), name and spec of a manifest.
pub fn manifest_parts<S: DeserializeOwned>(value: &Value) -> Result<(String, String, S), String> {
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .ok_or("metadata.name is missing")?
        .to_owned();
    let spec = serde_json::from_value(value.get("spec").cloned().unwrap_or(Value::Null))
        .map_err(|e| e.to_string())?;
    Ok((namespace, name, spec))
}
