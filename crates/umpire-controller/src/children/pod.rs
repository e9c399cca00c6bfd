//! The pod shape every worker shares: non-root, read-only root filesystem, no capabilities,
//! the rendered config and referenced Secrets/ConfigMaps mounted as files (never copied into
//! ConfigMaps), health probes on the admin port.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, LocalObjectReference, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretVolumeSource, SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use umpire_api::pod::PodOptions;

use super::{CONFIG_HASH, MANAGED_BY, References};

/// Where the rendered config is mounted.
pub const CONFIG_DIR: &str = "/etc/umpire";
pub const CONFIG_FILE: &str = "/etc/umpire/config.yaml";
/// Secrets are mounted as `<dir>/<secret>/<key>` — the layout the workers read.
pub const SECRET_DIR: &str = "/var/run/umpire/secrets";
pub const CONFIG_MAP_DIR: &str = "/var/run/umpire/configmaps";
/// Where the NATS credentials and TLS material the controller hands on are mounted.
pub const NATS_DIR: &str = "/var/run/umpire/nats";
/// Pod-template annotation: rotated NATS credentials roll the pods.
pub const NATS_HASH: &str = "umpire.dev/nats-secret-hash";
/// The image's non-root user (distroless `nonroot`).
pub const RUN_AS_USER: i64 = 65_532;

/// Everything that differs between the ingest and evaluator pods.
pub struct WorkerPod<'a> {
    pub name: &'a str,
    pub role: &'a str,
    pub image: &'a str,
    pub config_map: &'a str,
    pub config_hash: &'a str,
    pub service_account: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// Labels on the pods only, not the selector (which cannot change): they tell metrics
    /// scrapers which project a pod serves (the chart's PodMonitor copies them).
    pub pod_labels: BTreeMap<String, String>,
    pub ports: Vec<ContainerPort>,
    pub admin_port: i32,
    pub references: &'a References,
    pub resources: Option<ResourceRequirements>,
    /// `None` leaves replicas to a HorizontalPodAutoscaler.
    pub replicas: Option<i32>,
    pub metadata: ObjectMeta,
    /// The resource's pod options (scheduling, metadata, env).
    pub options: Option<&'a PodOptions>,
    /// Spread replicas across nodes when the options name no constraints.
    pub spread_by_default: bool,
    /// The install's image pull policy and pull Secrets.
    pub image_pull_policy: Option<&'a str>,
    pub image_pull_secrets: &'a [String],
    /// The Secret with NATS credentials/TLS for this worker, its keys and content hash.
    pub nats_secret: Option<NatsSecretMount>,
    /// Evaluators whose policy compares embeddings: the install's model, read-only.
    pub embedding_model: Option<&'a EmbeddingModel>,
}

/// Where evaluators find the install's sentence-embedding model.
pub const EMBEDDING_MODEL_DIR: &str = "/var/lib/umpire/embedding-model";

/// The install's embedding model: a volume (any Kubernetes volume source — an image
/// volume, a PersistentVolumeClaim, …) and the model's directory inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingModel {
    /// Named `embedding-model`.
    pub volume: Volume,
    /// The directory in the volume holding `config.json`, `tokenizer.json` and
    /// `model.safetensors` ("" for the volume's root).
    pub path: String,
}

impl EmbeddingModel {
    /// The model's directory as the evaluator sees it.
    pub fn dir(&self) -> String {
        let path = self.path.trim_matches('/');
        if path.is_empty() {
            EMBEDDING_MODEL_DIR.to_owned()
        } else {
            format!("{EMBEDDING_MODEL_DIR}/{path}")
        }
    }
}

/// A worker's copy of the NATS credentials, mounted at [`NATS_DIR`].
pub struct NatsSecretMount {
    pub name: String,
    pub keys: Vec<String>,
    /// Over the contents: rotated credentials roll the pods.
    pub hash: String,
}

fn volume_name(prefix: &str, name: &str) -> String {
    // Volume names are DNS labels (≤ 63): hash long ones.
    let full = format!("{prefix}-{name}");
    if full.len() <= 63 {
        full
    } else {
        format!("{prefix}-{}", super::config_hash(name))
    }
}

/// A Secret volume with only `keys` (read-only for the owner), mounted at `path`.
fn secret_mount<'k>(
    volume: &str,
    secret: &str,
    keys: impl IntoIterator<Item = &'k String>,
    path: &str,
) -> (Volume, VolumeMount) {
    let volume = Volume {
        name: volume.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: Some(
                keys.into_iter()
                    .map(|k| KeyToPath {
                        key: k.clone(),
                        path: k.clone(),
                        mode: None,
                    })
                    .collect(),
            ),
            default_mode: Some(0o400),
            optional: Some(false),
        }),
        ..Default::default()
    };
    let mount = VolumeMount {
        name: volume.name.clone(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..Default::default()
    };
    (volume, mount)
}

fn probe(path: &str, port: i32, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

/// Pod labels: the component's labels without managed-by (the selector must stay stable).
pub fn selector_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| k.as_str() != MANAGED_BY.0)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub fn deployment(pod: WorkerPod<'_>) -> Deployment {
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: pod.config_map.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                    "64Mi".into(),
                )),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        },
    ];
    for (secret, keys) in &pod.references.secrets {
        let name = volume_name("secret", secret);
        let (volume, mount) = secret_mount(&name, secret, keys, &format!("{SECRET_DIR}/{secret}"));
        volumes.push(volume);
        mounts.push(mount);
    }
    if let Some(model) = pod.embedding_model {
        volumes.push(Volume {
            name: "embedding-model".into(),
            ..model.volume.clone()
        });
        mounts.push(VolumeMount {
            name: "embedding-model".into(),
            mount_path: EMBEDDING_MODEL_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if let Some(nats) = &pod.nats_secret {
        let (volume, mount) = secret_mount("nats", &nats.name, &nats.keys, NATS_DIR);
        volumes.push(volume);
        mounts.push(mount);
    }
    for (config_map, keys) in &pod.references.config_maps {
        let name = volume_name("cm", config_map);
        volumes.push(Volume {
            name: name.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.clone(),
                items: Some(
                    keys.iter()
                        .map(|k| KeyToPath {
                            key: k.clone(),
                            path: k.clone(),
                            mode: None,
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: format!("{CONFIG_MAP_DIR}/{config_map}"),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let mut ports = pod.ports.clone();
    ports.push(ContainerPort {
        name: Some("metrics".into()),
        container_port: pod.admin_port,
        protocol: Some("TCP".into()),
        ..Default::default()
    });
    let container = Container {
        name: pod.role.to_owned(),
        image: Some(pod.image.to_owned()),
        args: Some(vec![
            pod.role.to_owned(),
            "--config".into(),
            CONFIG_FILE.into(),
        ]),
        env: Some(env(pod.options)),
        image_pull_policy: pod.image_pull_policy.map(str::to_owned),
        ports: Some(ports),
        liveness_probe: Some(probe("/healthz", pod.admin_port, 10)),
        readiness_probe: Some(probe("/readyz", pod.admin_port, 5)),
        resources: pod.resources.clone(),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let selector = selector_labels(pod.labels);
    let options = pod.options.cloned().unwrap_or_default();
    let mut pod_labels = options.labels.clone().unwrap_or_default();
    // Ours last: the selector labels always hold.
    pod_labels.extend(pod.pod_labels.clone());
    pod_labels.extend(selector.clone());
    let mut annotations = options.annotations.clone().unwrap_or_default();
    annotations.insert(CONFIG_HASH.to_owned(), pod.config_hash.to_owned());
    if let Some(nats) = &pod.nats_secret {
        annotations.insert(NATS_HASH.to_owned(), nats.hash.clone());
    }
    let topology_spread_constraints = options.topology_spread_constraints.clone().or_else(|| {
        pod.spread_by_default
            .then(|| spread_across_nodes(&selector))
    });
    let mut pull_secrets: Vec<LocalObjectReference> = pod
        .image_pull_secrets
        .iter()
        .map(|name| LocalObjectReference { name: name.clone() })
        .collect();
    for secret in options.image_pull_secrets.iter().flatten() {
        if !pull_secrets.contains(secret) {
            pull_secrets.push(secret.clone());
        }
    }
    Deployment {
        metadata: pod.metadata,
        spec: Some(DeploymentSpec {
            replicas: pod.replicas,
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(pod.service_account.to_owned()),
                    automount_service_account_token: Some(false),
                    // Drain on SIGTERM: ingest flushes decisions, evaluators finish judging.
                    termination_grace_period_seconds: Some(60),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        fs_group: Some(RUN_AS_USER),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    node_selector: options.node_selector.clone(),
                    tolerations: options.tolerations.clone(),
                    affinity: options.affinity.clone(),
                    topology_spread_constraints,
                    priority_class_name: options.priority_class_name.clone(),
                    image_pull_secrets: (!pull_secrets.is_empty()).then_some(pull_secrets),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The container's environment: what the worker needs, then the user's extras (validation
/// keeps them off the names set here).
fn env(options: Option<&PodOptions>) -> Vec<EnvVar> {
    let mut env = vec![
        EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        EnvVar {
            name: "UMPIRE_LOG".into(),
            value: Some("info".into()),
            ..Default::default()
        },
    ];
    env.extend(options.and_then(|o| o.env.clone()).unwrap_or_default());
    env
}

/// At most one replica more on any node than on another — but schedule anyway on a
/// single-node cluster rather than leave pods pending.
fn spread_across_nodes(selector: &BTreeMap<String, String>) -> Vec<TopologySpreadConstraint> {
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: "kubernetes.io/hostname".into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(LabelSelector {
            match_labels: Some(selector.clone()),
            match_expressions: None,
        }),
        ..Default::default()
    }]
}
