//! Every Kubernetes permission the controller uses, and why. The Helm chart's ClusterRole
//! (or per-namespace Roles) must grant exactly these — a test renders the chart and
//! compares — and the end-to-end tests run the controller against an API server that
//! enforces the rendered RBAC, so a call missing here fails there.

/// One RBAC rule: an API group, resources, verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub api_group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// When the rule is needed at all.
    pub needed: Needed,
    pub why: &'static str,
}

/// Rules that only some installs need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    Always,
    /// Only when the controller hands NATS credentials or TLS material to workers (it
    /// writes one Secret per worker).
    WithNatsCredentials,
    /// Only when the controller gives every worker a NetworkPolicy.
    WithWorkerNetworkPolicies,
}

const CHILD_VERBS: &[&str] = &["list", "watch", "create", "patch", "delete"];

/// Permissions in the namespaces the controller watches (a ClusterRole, or a Role per
/// watched namespace).
pub const WATCHED_NAMESPACES: &[Permission] = &[
    Permission {
        api_group: "umpire.dev",
        resources: &["traceprojects", "evalpolicies"],
        verbs: &["get", "list", "watch", "patch"],
        needed: Needed::Always,
        why: "watch the resources; read a policy's project; add and remove the cleanup finalizer",
    },
    Permission {
        api_group: "umpire.dev",
        resources: &["traceprojects/status", "evalpolicies/status"],
        verbs: &["patch"],
        needed: Needed::Always,
        why: "status is written with server-side apply on the subresource",
    },
    Permission {
        api_group: "",
        resources: &["configmaps", "services", "serviceaccounts"],
        verbs: CHILD_VERBS,
        needed: Needed::Always,
        why: "children: applied (server-side apply creates or patches), watched (metadata only), listed by label and deleted when pruned",
    },
    Permission {
        api_group: "apps",
        resources: &["deployments"],
        verbs: CHILD_VERBS,
        needed: Needed::Always,
        why: "the ingest and evaluator Deployments",
    },
    Permission {
        api_group: "policy",
        resources: &["poddisruptionbudgets"],
        verbs: CHILD_VERBS,
        needed: Needed::Always,
        why: "ingest PodDisruptionBudgets",
    },
    Permission {
        api_group: "autoscaling",
        resources: &["horizontalpodautoscalers"],
        verbs: CHILD_VERBS,
        needed: Needed::Always,
        why: "ingest HorizontalPodAutoscalers",
    },
    Permission {
        api_group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
        needed: Needed::Always,
        why: "Kubernetes Events about the resources (kube-runtime's recorder creates and patches series)",
    },
    Permission {
        api_group: "",
        resources: &["secrets"],
        verbs: &["get"],
        needed: Needed::Always,
        why: "consent: a Secret a spec names is mounted only if labelled umpire.dev/allow-reference=true; read as metadata only (PartialObjectMetadata), never listed or watched",
    },
    Permission {
        api_group: "",
        resources: &["secrets"],
        verbs: &["create", "patch"],
        needed: Needed::WithNatsCredentials,
        why: "each worker's copy of the NATS credentials (`<workload>-nats`, owned by the resource, so garbage collection removes it); never get, list or watch",
    },
    Permission {
        api_group: "networking.k8s.io",
        resources: &["networkpolicies"],
        verbs: &["list", "create", "patch", "delete"],
        needed: Needed::WithWorkerNetworkPolicies,
        why: "each worker's NetworkPolicy (applied, listed by label and pruned)",
    },
];

/// Permissions in the controller's own namespace.
pub const OWN_NAMESPACE: &[Permission] = &[Permission {
    api_group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["get", "create", "patch"],
    needed: Needed::Always,
    why: "leader election: one Lease",
}];

/// What an install turns on that needs more permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    pub nats_credentials: bool,
    pub worker_network_policies: bool,
}

/// `(group, resource, verb)` triples of `permissions` that apply to an install with `options`.
pub fn triples(permissions: &[Permission], options: Options) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for permission in permissions {
        let needed = match permission.needed {
            Needed::Always => true,
            Needed::WithNatsCredentials => options.nats_credentials,
            Needed::WithWorkerNetworkPolicies => options.worker_network_policies,
        };
        if !needed {
            continue;
        }
        for resource in permission.resources {
            for verb in permission.verbs {
                out.push((
                    permission.api_group.to_owned(),
                    (*resource).to_owned(),
                    (*verb).to_owned(),
                ));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
