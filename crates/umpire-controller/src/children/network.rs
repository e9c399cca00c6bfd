//! An optional NetworkPolicy per worker: OTLP in (ingest), metrics scrapes in, NATS and DNS
//! out, and for evaluators the egress their judges and alert routes need (LLM endpoints,
//! PagerDuty, webhooks) — the install's `networkPolicy.workers` values.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

/// Who may talk to and from worker pods (`--worker-network-policy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerNetworkPolicy {
    /// Where NATS runs.
    pub nats_peers: Vec<NetworkPolicyPeer>,
    #[serde(default = "default_nats_port")]
    pub nats_port: i32,
    /// Who may send OTLP to ingest pods; empty: anyone.
    #[serde(default)]
    pub otlp_from: Vec<NetworkPolicyPeer>,
    /// Who may scrape the workers' metrics; empty: anyone.
    #[serde(default)]
    pub metrics_from: Vec<NetworkPolicyPeer>,
    /// Extra egress of evaluator pods: judge endpoints, PagerDuty, webhooks.
    #[serde(default)]
    pub evaluator_egress: Vec<NetworkPolicyEgressRule>,
    /// Extra egress of ingest pods of projects with `spec.export`: the trace backends.
    #[serde(default)]
    pub ingest_egress: Vec<NetworkPolicyEgressRule>,
}

fn default_nats_port() -> i32 {
    4222
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn from(peers: &[NetworkPolicyPeer]) -> Option<Vec<NetworkPolicyPeer>> {
    (!peers.is_empty()).then(|| peers.to_vec())
}

/// The policy of one worker: `otlp_ports` are open to OTLP clients (ingest only),
/// `admin_port` to scrapers; `extra_egress` is what the worker's outbound calls need
/// (evaluators: judges and routes; ingest: export targets).
pub fn worker_policy(
    policy: &WorkerNetworkPolicy,
    metadata: ObjectMeta,
    pod_labels: BTreeMap<String, String>,
    otlp_ports: &[i32],
    admin_port: i32,
    extra_egress: &[NetworkPolicyEgressRule],
) -> NetworkPolicy {
    let mut ingress = vec![NetworkPolicyIngressRule {
        from: from(&policy.metrics_from),
        ports: Some(vec![tcp(admin_port)]),
    }];
    if !otlp_ports.is_empty() {
        ingress.push(NetworkPolicyIngressRule {
            from: from(&policy.otlp_from),
            ports: Some(otlp_ports.iter().copied().map(tcp).collect()),
        });
    }
    let dns = NetworkPolicyEgressRule {
        to: None,
        ports: Some(vec![
            NetworkPolicyPort {
                port: Some(IntOrString::Int(53)),
                protocol: Some("UDP".into()),
                ..Default::default()
            },
            tcp(53),
        ]),
    };
    let nats = NetworkPolicyEgressRule {
        to: from(&policy.nats_peers),
        ports: Some(vec![tcp(policy.nats_port)]),
    };
    let mut egress = vec![dns, nats];
    egress.extend(extra_egress.iter().cloned());
    NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(pod_labels),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    }
}
