//! The ingest worker's configuration: what the controller renders into a ConfigMap, or built
//! straight from a TraceProject manifest (for `umpire local` and quick trials).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use umpire_api::compile::{ProjectPlan, compile_trace_project};
use umpire_api::trace_project::TraceProjectSpec;
use umpire_nats::connect::NatsSettings;

use crate::document::{self, Document};

/// What a `--config` file must be.
const EXPECTED: &str = "an ingest config or TraceProject";
use umpire_nats::topology::SpanStreamLimits;
use umpire_runtime::secrets::{SecretError, read_secret_file};

/// Partitions traces are hashed into; each is owned by one ingest replica at a time. It
/// bounds useful replicas per project and must be the same on every replica.
pub const DEFAULT_PARTITIONS: u32 = 16;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestConfig {
    pub namespace: String,
    pub project: String,
    /// The TraceProject's spec, as in the resource.
    pub spec: TraceProjectSpec,
    pub nats: NatsSettings,
    #[serde(default)]
    pub listen: ListenAddresses,
    /// File holding the bearer token clients must present (a mounted Secret key). Required
    /// when `spec.ingest.auth` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_file: Option<PathBuf>,
    /// Mounted Secrets, `<dir>/<secret>/<key>`: the export targets' header values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_dir: Option<PathBuf>,
    /// Where export targets may be: the controller always sets the install's policy.
    /// Absent (hand-written configs, `umpire local`): anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<umpire_runtime::egress::EgressPolicy>,
    /// This replica's name in the membership (default: `$POD_NAME`, else host + pid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Most bytes the intake stream holds awaiting sampling decisions; past it ingest answers
    /// 429 / RESOURCE_EXHAUSTED so clients back off.
    #[serde(default = "default_intake_max_bytes")]
    pub intake_max_bytes: u64,
    /// Advanced: how long an intake message may stay unacknowledged before JetStream
    /// redelivers it. Default: decisionWait + 60s. Must exceed decisionWait.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration"
    )]
    pub intake_ack_wait: Option<std::time::Duration>,
    /// Advanced: how long a partition lease lives without renewal (renewed every third of
    /// it). Default 15s.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration"
    )]
    pub lease_ttl: Option<std::time::Duration>,
}

fn default_partitions() -> u32 {
    DEFAULT_PARTITIONS
}

fn default_intake_max_bytes() -> u64 {
    1 << 30
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenAddresses {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

impl Default for ListenAddresses {
    fn default() -> Self {
        Self {
            grpc: SocketAddr::from(([0, 0, 0, 0], 4317)),
            http: SocketAddr::from(([0, 0, 0, 0], 4318)),
            admin: SocketAddr::from(([0, 0, 0, 0], 9464)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] document::ReadError),
    #[error("the TraceProject spec is invalid:\n{0}")]
    Invalid(String),
    #[error(
        "spec.ingest.auth requires a bearer token: set authTokenFile (or UMPIRE_INGEST_TOKEN_FILE)"
    )]
    MissingToken,
    #[error("the bearer token: {0}")]
    Token(#[from] SecretError),
    #[error("partitions must be between 1 and 1024, not {0}")]
    Partitions(u32),
}

/// Runtime settings a TraceProject manifest does not carry.
#[derive(Debug, Clone)]
pub struct RuntimeDefaults {
    pub nats: NatsSettings,
    pub listen: ListenAddresses,
    pub auth_token_file: Option<PathBuf>,
}

impl IngestConfig {
    /// A config with every advanced setting at its default (what the controller renders).
    pub fn for_project(
        namespace: &str,
        project: &str,
        spec: TraceProjectSpec,
        nats: NatsSettings,
    ) -> Self {
        Self {
            namespace: namespace.to_owned(),
            project: project.to_owned(),
            spec,
            nats,
            listen: ListenAddresses::default(),
            auth_token_file: None,
            secret_dir: None,
            egress: None,
            member_id: None,
            partitions: DEFAULT_PARTITIONS,
            intake_max_bytes: default_intake_max_bytes(),
            intake_ack_wait: None,
            lease_ttl: None,
        }
    }

    /// Reads an ingest config, or a TraceProject manifest completed with `defaults`.
    pub fn load(path: &Path, defaults: &RuntimeDefaults) -> Result<Self, ConfigError> {
        match document::read::<TraceProjectSpec>(path, "TraceProject", EXPECTED)? {
            Document::Manifest {
                namespace,
                name,
                spec,
            } => Ok(Self {
                listen: defaults.listen.clone(),
                auth_token_file: defaults.auth_token_file.clone(),
                ..Self::for_project(&namespace, &name, spec, defaults.nats.clone())
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

    /// Compiles the spec (which also checks what the CRD cannot: regexes, policies). The
    /// schema and CEL rules are the controller's and `umpire check`'s business — see
    /// `crate::validation` — so workers carry no schema or CEL engine.
    pub fn plan(&self) -> Result<ProjectPlan, ConfigError> {
        if !(1..=1024).contains(&self.partitions) {
            return Err(ConfigError::Partitions(self.partitions));
        }
        compile_trace_project(&self.spec).map_err(|errors| {
            ConfigError::Invalid(
                errors
                    .iter()
                    .map(|e| format!("  {e}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })
    }

    /// The bearer token, when the spec requires one. Never logged.
    pub fn bearer_token(&self) -> Result<Option<String>, ConfigError> {
        let required = self
            .spec
            .ingest
            .as_ref()
            .and_then(|i| i.auth.as_ref())
            .is_some();
        match (&self.auth_token_file, required) {
            (Some(path), _) => Ok(Some(read_secret_file(path)?.expose().to_owned())),
            (None, true) => Err(ConfigError::MissingToken),
            (None, false) => Ok(None),
        }
    }

    pub fn member_id(&self) -> String {
        self.member_id
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .unwrap_or_else(|| {
                let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "ingest".into());
                format!(
                    "{host}-{}-{:04x}",
                    std::process::id(),
                    rand::random::<u16>()
                )
            })
    }
}

/// The span stream's limits, from the compiled TraceProject: what the controller creates
/// and ingest keeps up to date ([`umpire_nats::topology::span_stream`]).
pub fn span_stream_limits(plan: &ProjectPlan) -> SpanStreamLimits {
    SpanStreamLimits {
        max_age: plan.stream.max_age,
        max_bytes: plan.stream.max_bytes,
        max_messages: plan.stream.max_messages,
        replicas: plan.stream.replicas,
        duplicate_window: plan.stream.duplicate_window,
    }
}
