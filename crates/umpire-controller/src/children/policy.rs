//! An EvalPolicy's children: the evaluator worker and what it needs.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use umpire_api::eval_policy::EvalPolicySpec;
use umpire_api::trace_project::TraceProjectSpec;
use umpire_contract::evaluator::EvaluatorConfig;

use super::network;
use super::pod::{self, CONFIG_MAP_DIR, SECRET_DIR, WorkerPod};
use super::{Context, Owner, POLICY_LABEL, References, config_hash, labels, worker_nats_secret};

pub const ADMIN_PORT: i32 = 9465;

#[derive(Debug, Clone)]
pub struct PolicyChildren {
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    /// The evaluator pods' copy of the NATS credentials, when NATS needs any.
    pub nats_secret: Option<Secret>,
    pub network_policy: Option<NetworkPolicy>,
}

/// `<policy>-evaluator`: the name of every evaluator child.
pub fn evaluator_name(policy: &str) -> String {
    format!("{policy}-evaluator")
}

/// The evaluator config the pods read, as YAML.
/// `project` is the policy's TraceProject: its stream replicas are the policy state's.
pub fn evaluator_config(
    owner: &Owner,
    spec: &EvalPolicySpec,
    project: &TraceProjectSpec,
    ctx: &Context,
) -> EvaluatorConfig {
    EvaluatorConfig {
        state_replicas: project.stream_replicas(),
        egress: Some(ctx.egress.clone()),
        embedding_model: ctx
            .embedding_model
            .as_ref()
            .filter(|_| spec.needs_embeddings())
            .map(|model| model.dir().into()),
        ..EvaluatorConfig::for_policy(
            &owner.namespace,
            &owner.name,
            spec.clone(),
            ctx.worker_nats(),
            Some(SECRET_DIR.into()),
            Some(CONFIG_MAP_DIR.into()),
        )
    }
}

pub fn desired(
    owner: &Owner,
    spec: &EvalPolicySpec,
    project: &TraceProjectSpec,
    ctx: &Context,
) -> PolicyChildren {
    let name = evaluator_name(&owner.name);
    let labels = labels("evaluator", &owner.name, POLICY_LABEL);
    let config = serde_yaml::to_string(&evaluator_config(owner, spec, project, ctx))
        .unwrap_or_else(|e| unreachable!("an evaluator config always serialises: {e}"));
    let hash = config_hash(&config);
    let references = References::find(&serde_json::to_value(spec).unwrap_or_default());
    let evaluator = spec.evaluator.clone().unwrap_or_default();
    let (nats_secret, nats_mount) = worker_nats_secret(ctx, owner, &name, &labels);
    PolicyChildren {
        service_account: ServiceAccount {
            metadata: owner.child_meta(&name, &labels),
            automount_service_account_token: Some(false),
            ..Default::default()
        },
        config_map: ConfigMap {
            metadata: owner.child_meta(&name, &labels),
            data: Some(BTreeMap::from([("config.yaml".to_owned(), config)])),
            ..Default::default()
        },
        deployment: pod::deployment(WorkerPod {
            name: &name,
            role: "evaluator",
            image: &ctx.image,
            config_map: &name,
            config_hash: &hash,
            service_account: &name,
            labels: &labels,
            pod_labels: BTreeMap::from([(
                super::PROJECT_LABEL.to_owned(),
                spec.project_ref.name.clone(),
            )]),
            ports: Vec::new(),
            admin_port: ADMIN_PORT,
            references: &references,
            embedding_model: ctx
                .embedding_model
                .as_ref()
                .filter(|_| spec.needs_embeddings()),
            resources: evaluator
                .resources
                .clone()
                .or(ctx.evaluator_resources.clone()),
            replicas: Some(evaluator.replicas.unwrap_or(1)),
            metadata: owner.child_meta(&name, &labels),
            options: evaluator.pod.as_ref(),
            spread_by_default: true,
            image_pull_policy: ctx.image_pull_policy.as_deref(),
            image_pull_secrets: &ctx.image_pull_secrets,
            nats_secret: nats_mount,
        }),
        nats_secret,
        network_policy: ctx.network_policy.as_ref().map(|policy| {
            network::worker_policy(
                policy,
                owner.child_meta(&name, &labels),
                pod::selector_labels(&labels),
                &[],
                ADMIN_PORT,
                &policy.evaluator_egress,
            )
        }),
    }
}
