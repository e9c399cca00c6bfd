//! How worker pods fit into a cluster: scheduling, metadata and extra environment — the
//! options the OpenTelemetry Operator offers on its collector resource, validated like every
//! other field.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, Toleration, TopologySpreadConstraint,
};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Label and annotation prefixes Umpire sets itself (selectors, config hash): a user value
/// there would detach pods from their Deployment or stop rollouts.
pub const RESERVED_PREFIXES: [&str; 2] = ["app.kubernetes.io/", "umpire.dev/"];

/// Environment variables the worker container sets itself.
pub const RESERVED_ENV: [&str; 3] = ["POD_NAME", "UMPIRE_LOG", "RUST_LOG"];

/// Options of the worker pods (ingest or evaluator).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodOptions {
    /// Node labels the pods must run on (`nodeSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 32))]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub tolerations: Option<Vec<Toleration>>,
    /// Node and pod (anti-)affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How replicas spread across nodes and zones. Default for ingest: at most one replica
    /// more on any node than on another (`kubernetes.io/hostname`, `ScheduleAnyway`), so the
    /// PodDisruptionBudget protects something; setting this list replaces that default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// Extra pod annotations (e.g. for a service mesh or a log shipper). Keys under
    /// `app.kubernetes.io/` and `umpire.dev/` are Umpire's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 32))]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('app.kubernetes.io/') && !k.startsWith('umpire.dev/'))").message("annotation keys under app.kubernetes.io/ and umpire.dev/ are set by Umpire"))]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Extra pod labels. Keys under `app.kubernetes.io/` and `umpire.dev/` are Umpire's (they
    /// select the pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 32))]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('app.kubernetes.io/') && !k.startsWith('umpire.dev/'))").message("label keys under app.kubernetes.io/ and umpire.dev/ are set by Umpire"))]
    pub labels: Option<BTreeMap<String, String>>,
    /// Secrets with registry credentials for pulling the worker image (added to the
    /// controller's defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Extra environment variables of the worker container (e.g. `HTTPS_PROXY`). Values
    /// from Secrets are not accepted here: Secrets reach workers only through the fields
    /// that name them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(e, !(e.name in ['POD_NAME', 'UMPIRE_LOG', 'RUST_LOG']))").message("POD_NAME, UMPIRE_LOG and RUST_LOG are set by Umpire"))]
    #[x_kube(validation = Rule::new("self.all(e, !has(e.valueFrom) || !has(e.valueFrom.secretKeyRef))").message("env values from Secrets are not accepted; reference Secrets through the fields that name them"))]
    pub env: Option<Vec<EnvVar>>,
}
