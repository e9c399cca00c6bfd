//! Desired children, as pure functions of a resource and its context: no API calls, so the
//! whole output is unit-tested with snapshots.

pub mod network;
pub mod pod;
pub mod policy;
pub mod project;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ResourceRequirements, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::Value;
use sha2::{Digest, Sha256};
use umpire_nats::auth::{AUTH_KEYS, SecretFiles, TLS_KEYS};
use umpire_nats::connect::NatsSettings;

/// Every child carries this, so pruning finds them by label.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "umpire-controller");
/// Label naming the TraceProject or EvalPolicy a child belongs to.
pub const PROJECT_LABEL: &str = "umpire.dev/traceproject";
pub const POLICY_LABEL: &str = "umpire.dev/evalpolicy";
/// Pod-template annotation: a changed rendered config changes it and rolls the pods.
pub const CONFIG_HASH: &str = "umpire.dev/config-hash";

/// What the controller knows beyond the resource itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Context {
    /// The image every worker runs (`umpire` with a role subcommand).
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`; `None` leaves Kubernetes' default.
    pub image_pull_policy: Option<String>,
    /// Registry credentials every worker pod gets.
    pub image_pull_secrets: Vec<String>,
    /// The NATS URL workers connect to.
    pub nats_url: String,
    /// NATS credentials and TLS material handed to every worker (empty: NATS needs none).
    pub nats_files: SecretFiles,
    /// Resources of workers whose resource names none.
    pub ingest_resources: Option<ResourceRequirements>,
    pub evaluator_resources: Option<ResourceRequirements>,
    /// A NetworkPolicy per worker, when the install asks for them.
    pub network_policy: Option<network::WorkerNetworkPolicy>,
    /// The install's egress policy, rendered into every evaluator's config.
    pub egress: umpire_runtime::egress::EgressPolicy,
    /// The install's sentence-embedding model, mounted into evaluators whose policy needs
    /// it (`embedding` judges, drift alerts).
    pub embedding_model: Option<pod::EmbeddingModel>,
}

impl Context {
    /// The settings a worker connects with: the URL, and the mounted copies of the NATS
    /// credentials and TLS material when there are any.
    pub fn worker_nats(&self) -> NatsSettings {
        let has = |keys: &[&str]| keys.iter().any(|k| self.nats_files.get(k).is_some());
        NatsSettings {
            url: self.nats_url.clone(),
            auth_dir: has(&AUTH_KEYS).then(|| pod::NATS_DIR.into()),
            tls_dir: has(&TLS_KEYS).then(|| pod::NATS_DIR.into()),
        }
    }

    /// The worker's Secret holding its copy of the NATS material, if NATS needs any.
    fn nats_secret(
        &self,
        owner: &Owner,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<Secret> {
        (!self.nats_files.is_empty()).then(|| Secret {
            metadata: owner.child_meta(name, labels),
            type_: Some("Opaque".into()),
            data: Some(
                self.nats_files
                    .iter()
                    .map(|(k, v)| (k.to_owned(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        })
    }

    /// 16 hex digits over the NATS material: rotating it rolls the pods.
    fn nats_hash(&self) -> String {
        let mut digest = Sha256::new();
        for (key, value) in self.nats_files.iter() {
            digest.update(key.as_bytes());
            digest.update([0]);
            digest.update(value);
            digest.update([0]);
        }
        digest
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The name of a worker's NATS Secret.
pub fn nats_secret_name(workload: &str) -> String {
    format!("{workload}-nats")
}

/// A worker's NATS Secret, and what its Deployment needs to mount it.
fn worker_nats_secret(
    ctx: &Context,
    owner: &Owner,
    workload: &str,
    labels: &BTreeMap<String, String>,
) -> (Option<Secret>, Option<pod::NatsSecretMount>) {
    let name = nats_secret_name(workload);
    let secret = ctx.nats_secret(owner, &name, labels);
    let mount = secret.as_ref().map(|_| pod::NatsSecretMount {
        keys: ctx.nats_files.iter().map(|(k, _)| k.to_owned()).collect(),
        name,
        hash: ctx.nats_hash(),
    });
    (secret, mount)
}

/// Who owns the children.
#[derive(Debug, Clone, PartialEq)]
pub struct Owner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

impl Owner {
    fn reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// Metadata for a child: name, namespace, labels, owner reference.
    fn child_meta(&self, name: &str, labels: &BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![self.reference()]),
            ..Default::default()
        }
    }
}

/// The labels of one component's children (also its pods' selector, minus managed-by).
pub fn labels(component: &str, instance: &str, owner_label: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "umpire".to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            component.to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), instance.to_owned()),
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (owner_label.to_owned(), instance.to_owned()),
    ])
}

/// 16 hex digits of SHA-256: enough to tell configs apart, short enough to read.
pub fn config_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Secret keys and ConfigMap keys a spec refers to, found wherever they appear:
/// `*SecretRef` / `valueFrom` objects (`{name, key}`) and `schemaRef` (`{configMap, key}`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct References {
    /// Secret name → keys.
    pub secrets: BTreeMap<String, BTreeSet<String>>,
    /// ConfigMap name → keys.
    pub config_maps: BTreeMap<String, BTreeSet<String>>,
}

impl References {
    pub fn find(spec: &Value) -> Self {
        let mut found = Self::default();
        found.walk(spec);
        found
    }

    fn walk(&mut self, value: &Value) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let name = child.get("name").and_then(Value::as_str);
                    let config_map = child.get("configMap").and_then(Value::as_str);
                    let item = child.get("key").and_then(Value::as_str);
                    if (key.ends_with("SecretRef") || key == "valueFrom")
                        && let (Some(name), Some(item)) = (name, item)
                    {
                        self.secrets
                            .entry(name.to_owned())
                            .or_default()
                            .insert(item.to_owned());
                    } else if key == "schemaRef"
                        && let (Some(name), Some(item)) = (config_map, item)
                    {
                        self.config_maps
                            .entry(name.to_owned())
                            .or_default()
                            .insert(item.to_owned());
                    } else {
                        self.walk(child);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.walk(i)),
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_are_found_wherever_they_are() {
        let spec = json!({
            "judges": [{"llm": {"apiKeySecretRef": {"name": "openai", "key": "api-key"}}},
                       {"json": {"schemaRef": {"configMap": "schemas", "key": "answer.json"}}}],
            "routes": [{"pagerDuty": {"routingKeySecretRef": {"name": "pd", "key": "routing-key"}}},
                       {"webhook": {"urlSecretRef": {"name": "hooks", "key": "team"},
                                    "hmacSecretRef": {"name": "hooks", "key": "hmac"}}}],
            "export": [{"otlp": {"headers": [{"name": "x", "valueFrom": {"name": "vendor", "key": "token"}}]}}]
        });
        let refs = References::find(&spec);
        assert_eq!(refs.secrets.len(), 4);
        assert_eq!(refs.secrets["hooks"].len(), 2);
        assert_eq!(
            refs.config_maps["schemas"].iter().next().unwrap(),
            "answer.json"
        );
    }
}
