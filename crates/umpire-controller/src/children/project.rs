//! A TraceProject's children: the ingest worker and what it needs.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerPort, Secret, Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use umpire_api::trace_project::TraceProjectSpec;
use umpire_contract::ingest::IngestConfig;

use super::network;
use super::pod::{self, SECRET_DIR, WorkerPod};
use super::{Context, Owner, PROJECT_LABEL, References, config_hash, labels, worker_nats_secret};

pub const GRPC_PORT: i32 = 4317;
pub const HTTP_PORT: i32 = 4318;
pub const ADMIN_PORT: i32 = 9464;

/// Everything a TraceProject turns into (the JetStream stream is applied separately).
#[derive(Debug, Clone)]
pub struct ProjectChildren {
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    pub service: Service,
    pub disruption_budget: PodDisruptionBudget,
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    /// The ingest pods' copy of the NATS credentials, when NATS needs any.
    pub nats_secret: Option<Secret>,
    pub network_policy: Option<NetworkPolicy>,
}

/// `<project>-ingest`: the name of every ingest child.
pub fn ingest_name(project: &str) -> String {
    format!("{project}-ingest")
}

/// The in-cluster OTLP endpoints (gRPC `host:port`, HTTP URL).
pub fn endpoints(project: &str, namespace: &str) -> (String, String) {
    let host = format!("{}.{namespace}.svc", ingest_name(project));
    (
        format!("{host}:{GRPC_PORT}"),
        format!("http://{host}:{HTTP_PORT}"),
    )
}

/// The ingest config the pods read, as YAML.
pub fn ingest_config(owner: &Owner, spec: &TraceProjectSpec, ctx: &Context) -> String {
    let mut config = IngestConfig::for_project(
        &owner.namespace,
        &owner.name,
        spec.clone(),
        ctx.worker_nats(),
    );
    config.auth_token_file = spec.ingest.as_ref().and_then(|i| i.auth.as_ref()).map(|a| {
        format!(
            "{SECRET_DIR}/{}/{}",
            a.bearer_token_secret_ref.name, a.bearer_token_secret_ref.key
        )
        .into()
    });
    config.secret_dir = Some(SECRET_DIR.into());
    config.egress = Some(ctx.egress.clone());
    serde_yaml::to_string(&config)
        .unwrap_or_else(|e| unreachable!("an ingest config always serialises: {e}"))
}

pub fn desired(owner: &Owner, spec: &TraceProjectSpec, ctx: &Context) -> ProjectChildren {
    let name = ingest_name(&owner.name);
    let labels = labels("ingest", &owner.name, PROJECT_LABEL);
    let meta = |labels: &BTreeMap<String, String>| owner.child_meta(&name, labels);
    let config = ingest_config(owner, spec, ctx);
    let hash = config_hash(&config);
    let ingest = spec.ingest.clone().unwrap_or_default();
    let autoscaling = ingest.autoscaling.clone();
    let references = References::find(&serde_json::to_value(spec).unwrap_or_default());
    let (nats_secret, nats_mount) = worker_nats_secret(ctx, owner, &name, &labels);

    let service_account = ServiceAccount {
        metadata: meta(&labels),
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    let config_map = ConfigMap {
        metadata: meta(&labels),
        data: Some(BTreeMap::from([("config.yaml".to_owned(), config)])),
        ..Default::default()
    };
    let port = |name: &str, number: i32| ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let deployment = pod::deployment(WorkerPod {
        name: &name,
        role: "ingest",
        image: &ctx.image,
        config_map: &name,
        config_hash: &hash,
        service_account: &name,
        labels: &labels,
        pod_labels: BTreeMap::new(),
        ports: vec![port("otlp-grpc", GRPC_PORT), port("otlp-http", HTTP_PORT)],
        admin_port: ADMIN_PORT,
        references: &references,
        resources: ingest.resources.clone().or(ctx.ingest_resources.clone()),
        replicas: match &autoscaling {
            Some(_) => None,
            None => Some(ingest.replicas.unwrap_or(1)),
        },
        metadata: meta(&labels),
        options: ingest.pod.as_ref(),
        // Replicas on one node share its fate; the PodDisruptionBudget protects little then.
        spread_by_default: true,
        image_pull_policy: ctx.image_pull_policy.as_deref(),
        image_pull_secrets: &ctx.image_pull_secrets,
        nats_secret: nats_mount,
        embedding_model: None,
    });
    let service_port = |name: &str, number: i32, app_protocol: Option<&str>| ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        app_protocol: app_protocol.map(str::to_owned),
        ..Default::default()
    };
    let service = Service {
        metadata: meta(&labels),
        spec: Some(ServiceSpec {
            selector: Some(pod::selector_labels(&labels)),
            ports: Some(vec![
                service_port("otlp-grpc", GRPC_PORT, Some("grpc")),
                service_port("otlp-http", HTTP_PORT, Some("http")),
                service_port("metrics", ADMIN_PORT, Some("http")),
            ]),
            ..Default::default()
        }),
        status: None,
    };
    let disruption_budget = PodDisruptionBudget {
        metadata: meta(&labels),
        spec: Some(PodDisruptionBudgetSpec {
            // One pod at a time: the others keep accepting spans while it drains.
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(pod::selector_labels(&labels)),
                match_expressions: None,
            }),
            ..Default::default()
        }),
        status: None,
    };
    let autoscaler = autoscaling.map(|a| HorizontalPodAutoscaler {
        metadata: meta(&labels),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: name.clone(),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(
                            a.target_cpu_utilization_percentage.unwrap_or(70),
                        ),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    });
    ProjectChildren {
        service_account,
        config_map,
        deployment,
        service,
        disruption_budget,
        autoscaler,
        nats_secret,
        network_policy: ctx.network_policy.as_ref().map(|policy| {
            network::worker_policy(
                policy,
                meta(&labels),
                pod::selector_labels(&labels),
                &[GRPC_PORT, HTTP_PORT],
                ADMIN_PORT,
                if spec.export.as_ref().is_some_and(|e| !e.is_empty()) {
                    &policy.ingest_egress
                } else {
                    &[]
                },
            )
        }),
    }
}
