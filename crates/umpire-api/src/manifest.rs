//! Reading Kubernetes manifests: YAML files (multi-document) and directories of them.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde_json::Value;

use crate::validate::{RefLookup, References};

/// One YAML document of a manifest file.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: PathBuf,
    /// 1-based line where the document starts.
    pub line: usize,
    pub object: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not valid YAML: {message}")]
    Yaml {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// The `.yaml` / `.yml` / `.json` files under `path` (recursively, sorted), or `path` itself.
pub fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let read_error = |source| ManifestError::Read {
        path: path.to_owned(),
        source,
    };
    if !path.is_dir() {
        std::fs::metadata(path).map_err(read_error)?;
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read_error)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_error)?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            files.extend(manifest_files(&entry)?);
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            files.push(entry);
        }
    }
    Ok(files)
}

/// Every non-empty document in `file`. A document that is not valid YAML is an error for
/// that document only; the others are still returned.
pub fn read_documents(file: &Path) -> Result<Vec<Result<Document, ManifestError>>, ManifestError> {
    let text = std::fs::read_to_string(file).map_err(|source| ManifestError::Read {
        path: file.to_owned(),
        source,
    })?;
    Ok(split_documents(&text)
        .into_iter()
        .filter_map(|(line, body)| {
            let parsed: Result<Value, _> = serde_yaml::from_str(body);
            match parsed {
                Ok(Value::Null) => None,
                Ok(object) => Some(Ok(Document {
                    file: file.to_owned(),
                    line,
                    object,
                })),
                Err(e) => Some(Err(ManifestError::Yaml {
                    path: file.to_owned(),
                    line: line
                        + e.location()
                            .map(|l| l.line().saturating_sub(1))
                            .unwrap_or(0),
                    message: e.to_string(),
                })),
            }
        })
        .collect())
}

/// Splits YAML text at `---` document markers, returning each body with the 1-based line it
/// starts on. A marker is `---` at column 0, alone or followed by whitespace/a comment.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut documents = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        let is_marker =
            trimmed == "---" || trimmed.starts_with("--- ") || trimmed.starts_with("---\t");
        if is_marker {
            documents.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = index + 2;
        }
        offset += line.len();
    }
    documents.push((start_line, &text[start_byte..]));
    documents
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_line_numbers() {
        let text = "a: 1\n---\nb: 2\nc: 3\n--- # next\n\n---\nd: 4\n";
        let docs = split_documents(text);
        let lines: Vec<usize> = docs.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [1, 3, 6, 8]);
        assert_eq!(docs[1].1, "b: 2\nc: 3\n");
    }

    #[test]
    fn reads_documents_and_reports_bad_yaml_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.yaml");
        std::fs::write(
            &file,
            "---\nkind: A\n---\n# only a comment\n---\nkind: [unclosed\n",
        )
        .unwrap();
        let docs = read_documents(&file).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].as_ref().unwrap().line, 2);
        match &docs[1] {
            Err(ManifestError::Yaml { line, .. }) => assert!(*line >= 6, "line {line}"),
            other => panic!("expected a YAML error, got {other:?}"),
        }
    }
}

/// ConfigMaps found among manifest files, so `schemaRef`s resolve without a cluster
/// (`umpire check`, `umpire local`).
#[derive(Default)]
pub struct ManifestConfigMaps {
    data: BTreeMap<(String, String), BTreeMap<String, String>>,
}

impl ManifestConfigMaps {
    pub fn collect(documents: &[Document]) -> Self {
        let mut maps = Self::default();
        for document in documents {
            let object = &document.object;
            let is_config_map = object.get("apiVersion").and_then(Value::as_str) == Some("v1")
                && object.get("kind").and_then(Value::as_str) == Some("ConfigMap");
            let name = object.pointer("/metadata/name").and_then(Value::as_str);
            if let (true, Some(name)) = (is_config_map, name) {
                let data = object
                    .get("data")
                    .and_then(Value::as_object)
                    .map(|data| {
                        data.iter()
                            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                            .collect()
                    })
                    .unwrap_or_default();
                maps.data
                    .insert((namespace_of(object), name.to_owned()), data);
            }
        }
        maps
    }
}

impl References for ManifestConfigMaps {
    fn config_map_value(&self, namespace: &str, name: &str, key: &str) -> RefLookup {
        match self.data.get(&(namespace.to_owned(), name.to_owned())) {
            None => RefLookup::Unavailable,
            Some(data) => data
                .get(key)
                .cloned()
                .map_or(RefLookup::MissingKey, RefLookup::Found),
        }
    }
}

/// `metadata.namespace`, or `default` as kubectl would apply it.
pub fn namespace_of(object: &Value) -> String {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned()
}

impl ManifestConfigMaps {
    pub fn get(&self, namespace: &str, name: &str) -> Option<&BTreeMap<String, String>> {
        self.data.get(&(namespace.to_owned(), name.to_owned()))
    }
}
