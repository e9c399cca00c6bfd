//! Secrets and ConfigMaps as Kubernetes mounts them: `<dir>/<name>/<key>`. The controller
//! mounts what a policy references; locally, point `--secret-dir` / `--config-map-dir` at
//! folders laid out the same way.

use std::path::{Path, PathBuf};

use umpire_api::validate::{RefLookup, References};
use umpire_runtime::secrets::MountedSecrets;

#[derive(Debug, Clone, Default)]
pub struct MountedReferences {
    pub config_maps: Option<PathBuf>,
    pub secrets: Option<PathBuf>,
}

impl MountedReferences {
    /// The Secrets, read through the one mounted-Secret reader.
    pub fn mounted_secrets(&self) -> MountedSecrets {
        MountedSecrets::new(self.secrets.clone())
    }
}

fn lookup(dir: Option<&Path>, name: &str, key: &str) -> RefLookup {
    let Some(dir) = dir else {
        return RefLookup::Unavailable;
    };
    let object = dir.join(name);
    if !object.is_dir() {
        return RefLookup::MissingObject;
    }
    match std::fs::read_to_string(object.join(key)) {
        Ok(text) => RefLookup::Found(text),
        Err(_) => RefLookup::MissingKey,
    }
}

impl References for MountedReferences {
    fn config_map_value(&self, _namespace: &str, name: &str, key: &str) -> RefLookup {
        lookup(self.config_maps.as_deref(), name, key)
    }
}
