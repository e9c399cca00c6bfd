//! What `umpire local` runs: the TraceProjects and EvalPolicies found in manifest files,
//! validated exactly as `umpire check` and the API server validate them, with the
//! ConfigMaps and Secrets beside them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::Value;
use umpire_api::eval_policy::EvalPolicySpec;
use umpire_api::manifest::{self, Document, ManifestConfigMaps, namespace_of};
use umpire_api::trace_project::TraceProjectSpec;
use umpire_api::validate::{DocumentKind, UmpireResource, Validator, classify};

#[derive(Debug, Clone)]
pub struct Project {
    pub namespace: String,
    pub name: String,
    pub spec: TraceProjectSpec,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    pub spec: EvalPolicySpec,
}

/// `(namespace, name)` → key → bytes.
pub type ObjectData = BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>;

#[derive(Debug, Clone, Default)]
pub struct LocalResources {
    pub projects: Vec<Project>,
    pub policies: Vec<Policy>,
    pub config_maps: ObjectData,
    pub secrets: ObjectData,
    /// Documents of other kinds (Namespaces, Kustomizations…), which local mode ignores.
    pub ignored: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("the manifests are not valid:\n{0}")]
    Invalid(String),
    #[error("no TraceProject found in {0}: give the files or folders that hold one")]
    NoProject(String),
}

impl LocalResources {
    /// Reads every manifest under `paths`; all problems are reported together.
    pub fn load(paths: &[PathBuf]) -> Result<Self, LoadError> {
        let mut documents = Vec::new();
        let mut problems = Vec::new();
        for path in paths {
            for file in manifest::manifest_files(path)? {
                for document in manifest::read_documents(&file)? {
                    match document {
                        Ok(document) => documents.push(document),
                        Err(e) => problems.push(format!("  {e}")),
                    }
                }
            }
        }
        let shown = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let resources = Self::from_documents(&documents, problems)?;
        if resources.projects.is_empty() {
            return Err(LoadError::NoProject(shown));
        }
        Ok(resources)
    }

    /// Parses YAML text (the demo's built-in manifests).
    pub fn from_yaml(text: &str) -> Result<Self, LoadError> {
        let mut documents = Vec::new();
        for document in serde_yaml::Deserializer::from_str(text) {
            let object = serde::Deserialize::deserialize(document)
                .map_err(|e: serde_yaml::Error| LoadError::Invalid(format!("  {e}")))?;
            documents.push(Document {
                file: Path::new("<built-in>").to_owned(),
                line: 1,
                object,
            });
        }
        Self::from_documents(&documents, Vec::new())
    }

    fn from_documents(
        documents: &[Document],
        mut problems: Vec<String>,
    ) -> Result<Self, LoadError> {
        let validator = Validator::new().map_err(|e| LoadError::Invalid(e.to_string()))?;
        let references = ManifestConfigMaps::collect(documents);
        let mut resources = Self::default();
        for document in documents {
            let at = format!("{}:{}", document.file.display(), document.line);
            let object = &document.object;
            match classify(object) {
                DocumentKind::Umpire(kind) => {
                    let outcome = validator.validate(kind, object, &references);
                    for error in &outcome.findings.errors {
                        problems.push(format!(
                            "  {at}: {} {}: {error}",
                            kind.name(),
                            name_of(object)
                        ));
                    }
                    match outcome.resource {
                        Some(UmpireResource::TraceProject(tp)) => {
                            resources.projects.push(Project {
                                namespace: namespace_of(object),
                                name: name_of(object),
                                spec: tp.spec,
                            })
                        }
                        Some(UmpireResource::EvalPolicy(ep)) => resources.policies.push(Policy {
                            namespace: namespace_of(object),
                            name: name_of(object),
                            spec: ep.spec,
                        }),
                        None => {}
                    }
                }
                DocumentKind::UnknownUmpire(message) => problems.push(format!("  {at}: {message}")),
                DocumentKind::Foreign { api_version, kind } => {
                    match (api_version.as_str(), kind.as_str()) {
                        ("v1", "ConfigMap") => match config_map_data(object) {
                            Ok(data) => {
                                resources.config_maps.insert(key_of(object), data);
                            }
                            Err(e) => problems.push(format!("  {at}: ConfigMap: {e}")),
                        },
                        ("v1", "Secret") => match secret_data(object) {
                            Ok(data) => {
                                resources.secrets.insert(key_of(object), data);
                            }
                            Err(e) => problems.push(format!("  {at}: Secret: {e}")),
                        },
                        _ => resources
                            .ignored
                            .push(format!("{kind} {}", name_of(object))),
                    }
                }
            }
        }
        for policy in &resources.policies {
            let project = &policy.spec.project_ref.name;
            if !resources
                .projects
                .iter()
                .any(|p| p.namespace == policy.namespace && &p.name == project)
            {
                problems.push(format!(
                    "  EvalPolicy {}/{}: its TraceProject {project} is not among the manifests",
                    policy.namespace, policy.name
                ));
            }
        }
        if !problems.is_empty() {
            return Err(LoadError::Invalid(problems.join("\n")));
        }
        Ok(resources)
    }

    pub fn secret_value(&self, namespace: &str, name: &str, key: &str) -> Option<&[u8]> {
        self.secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .and_then(|data| data.get(key))
            .map(Vec::as_slice)
    }

    /// Lays ConfigMaps and Secrets out as Kubernetes mounts them for a pod of `namespace`:
    /// `<dir>/<namespace>/configmaps/<name>/<key>` and `…/secrets/<name>/<key>` (mode 0600).
    pub fn materialise(&self, dir: &Path) -> std::io::Result<()> {
        for (kind, objects) in [
            ("configmaps", &self.config_maps),
            ("secrets", &self.secrets),
        ] {
            for ((namespace, name), data) in objects {
                let folder = dir.join(namespace).join(kind).join(name);
                std::fs::create_dir_all(&folder)?;
                for (key, value) in data {
                    let path = folder.join(key);
                    std::fs::write(&path, value)?;
                    if kind == "secrets" {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Where [`LocalResources::materialise`] puts a namespace's ConfigMaps and Secrets.
pub fn mount_dirs(dir: &Path, namespace: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(namespace).join("configmaps"),
        dir.join(namespace).join("secrets"),
    )
}

fn name_of(object: &Value) -> String {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
        .to_owned()
}

fn key_of(object: &Value) -> (String, String) {
    (namespace_of(object), name_of(object))
}

fn config_map_data(object: &Value) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let map: ConfigMap = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    let mut data: BTreeMap<String, Vec<u8>> = map
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    data.extend(
        map.binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    Ok(data)
}

/// `data` is base64 (decoded by k8s-openapi); `stringData` wins, as the API server merges it.
fn secret_data(object: &Value) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let secret: Secret = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    data.extend(
        secret
            .string_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes())),
    );
    Ok(data)
}
