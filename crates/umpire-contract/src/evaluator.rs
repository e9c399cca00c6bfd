//! The evaluator's configuration: rendered by the controller, or built from an EvalPolicy
//! manifest for local runs.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::consumer;
use serde::{Deserialize, Serialize};
use umpire_api::compile::{PolicyPlan, compile_eval_policy};
use umpire_api::eval_policy::EvalPolicySpec;
use umpire_nats::connect::NatsSettings;
use umpire_nats::topology::{self, PolicyConsumer, ProjectNames};

use crate::document::{self, Document};

/// What a `--config` file must be.
const EXPECTED: &str = "an evaluator config or EvalPolicy";
use crate::references::MountedReferences;

pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluatorConfig {
    pub namespace: String,
    /// The EvalPolicy's name.
    pub policy: String,
    pub spec: EvalPolicySpec,
    pub nats: NatsSettings,
    #[serde(default = "default_admin")]
    pub admin_listen: SocketAddr,
    /// Mounted Secrets, `<dir>/<secret>/<key>` (judge API keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_dir: Option<PathBuf>,
    /// Mounted ConfigMaps, `<dir>/<configmap>/<key>` (JSON Schemas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_dir: Option<PathBuf>,
    /// The sentence-embedding model's directory (`config.json`, `tokenizer.json`,
    /// `model.safetensors`), for `embedding` judges and drift alerts; the controller sets
    /// it when the install mounts a model. Absent: policies that need one do not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<PathBuf>,
    /// Redelivery timeout of a span message. Default 5m (LLM judges retry for a while).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration"
    )]
    pub ack_wait: Option<Duration>,
    /// JetStream replicas of the project's scores and dead letters and of the policy's alert
    /// state, leases and outbox: the TraceProject's `stream.replicas`, so an R3 project keeps
    /// no state on one node only. Default 1.
    #[serde(default = "one_replica")]
    pub state_replicas: usize,
    /// Where judges and routes may send requests; the controller always sets the install's
    /// policy. Absent (hand-written configs, `umpire local`): anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<umpire_runtime::egress::EgressPolicy>,
    /// How long the alert leader's lease lives without renewal: the longest a crashed
    /// leader delays alerts. Default 15s.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration"
    )]
    pub alert_lease_ttl: Option<Duration>,
    /// How often the alert leader snapshots its windows to the project's object store, so
    /// a successor replays only the scores stored since, not a whole baseline. Default 1m.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration"
    )]
    pub alert_snapshot_interval: Option<Duration>,
}

fn one_replica() -> usize {
    1
}

fn default_admin() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9465))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] document::ReadError),
    #[error("the EvalPolicy spec is invalid:\n{0}")]
    Invalid(String),
}

/// Runtime settings an EvalPolicy manifest does not carry.
#[derive(Debug, Clone)]
pub struct RuntimeDefaults {
    pub nats: NatsSettings,
    pub admin_listen: SocketAddr,
    pub secret_dir: Option<PathBuf>,
    pub config_map_dir: Option<PathBuf>,
}

impl EvaluatorConfig {
    /// A config with every advanced setting at its default (what the controller renders).
    pub fn for_policy(
        namespace: &str,
        policy: &str,
        spec: EvalPolicySpec,
        nats: NatsSettings,
        secret_dir: Option<PathBuf>,
        config_map_dir: Option<PathBuf>,
    ) -> Self {
        Self {
            namespace: namespace.to_owned(),
            policy: policy.to_owned(),
            spec,
            nats,
            admin_listen: default_admin(),
            secret_dir,
            config_map_dir,
            ack_wait: None,
            state_replicas: 1,
            alert_lease_ttl: None,
            alert_snapshot_interval: None,
            egress: None,
            embedding_model: None,
        }
    }

    pub fn load(path: &Path, defaults: &RuntimeDefaults) -> Result<Self, ConfigError> {
        match document::read::<EvalPolicySpec>(path, "EvalPolicy", EXPECTED)? {
            Document::Manifest {
                namespace,
                name,
                spec,
            } => Ok(Self {
                admin_listen: defaults.admin_listen,
                ..Self::for_policy(
                    &namespace,
                    &name,
                    spec,
                    defaults.nats.clone(),
                    defaults.secret_dir.clone(),
                    defaults.config_map_dir.clone(),
                )
            }),
            Document::Config(value) => serde_json::from_value(value).map_err(|e| {
                ConfigError::File(document::ReadError::Parse {
                    path: path.to_owned(),
                    expected: EXPECTED,
                    message: e.to_string(),
                })
            }),
        }
    }

    pub fn references(&self) -> MountedReferences {
        MountedReferences {
            config_maps: self.config_map_dir.clone(),
            secrets: self.secret_dir.clone(),
        }
    }

    /// Compiles the spec ([`plan_policy`]).
    pub fn plan(&self) -> Result<PolicyPlan, ConfigError> {
        plan_policy(&self.namespace, &self.spec, &self.references())
    }

    /// The attributes alert rules group by: every score carries their values.
    pub fn group_keys(&self) -> BTreeSet<String> {
        group_keys(&self.spec)
    }

    /// Names of the policy's project.
    pub fn project_names(&self) -> ProjectNames {
        ProjectNames::new(&self.namespace, &self.spec.project_ref.name)
    }

    /// The policy's durable consumer on its project's span stream, exactly as its
    /// evaluators create it (the controller creates it first, so no span published after
    /// the policy is accepted is missed while pods start).
    pub fn policy_consumer(&self, plan: &PolicyPlan) -> consumer::pull::Config {
        // A policy with a trace-level judge reads trace summaries; otherwise, when the
        // selection maps to span kinds, the server filters spans, else the selector does.
        let needs_trace = plan.needs_trace();
        let max_ack_pending = (plan.concurrency * 4).max(256);
        topology::policy_consumer(
            &self.project_names(),
            &PolicyConsumer {
                policy: self.policy.clone(),
                span_filters: plan.selector.subject_filters(),
                whole_traces: needs_trace,
                ack_wait: self.ack_wait.unwrap_or(DEFAULT_ACK_WAIT),
                max_ack_pending,
            },
        )
    }
}

/// Compiles a policy (which also checks what the CRD cannot: regexes, templates, referenced
/// JSON Schemas). The schema and CEL rules are checked by the controller and `umpire check`
/// (`crate::validation`).
pub fn plan_policy(
    namespace: &str,
    spec: &EvalPolicySpec,
    references: &MountedReferences,
) -> Result<PolicyPlan, ConfigError> {
    compile_eval_policy(namespace, spec, references).map_err(|errors| {
        ConfigError::Invalid(
            errors
                .iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

pub fn group_keys(spec: &EvalPolicySpec) -> BTreeSet<String> {
    spec.alerts
        .iter()
        .flatten()
        .flat_map(|a| a.group_by.iter().flatten().cloned())
        .collect()
}
