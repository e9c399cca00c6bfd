//! What a cluster gives a TraceProject or EvalPolicy that one machine cannot, and what local
//! mode does instead. Every adaptation is reported (printed before anything runs); none is
//! silent.

use std::collections::BTreeSet;

use serde::Serialize;
use umpire_api::common::SecretKeyRef;

use crate::resources::{LocalResources, Policy, Project};

/// One change local mode made, or one thing that will behave differently here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Adaptation {
    /// `TraceProject ns/name` or `EvalPolicy ns/name`.
    pub resource: String,
    /// The field concerned, as a path in the spec.
    pub field: String,
    pub message: String,
}

/// What the machine offers.
#[derive(Debug, Clone, Copy)]
pub struct Environment {
    /// JetStream is a single server: streams and buckets cannot have more than 1 replica.
    pub single_node: bool,
    /// `--print-alerts`: no route delivers.
    pub print_alerts: bool,
}

/// The resources as they will run, and how they differ from the files.
#[derive(Debug, Clone)]
pub struct Adapted {
    pub resources: LocalResources,
    pub adaptations: Vec<Adaptation>,
    /// Per policy (`ns/name`): routes printed instead of delivered.
    pub printed_routes: Vec<(String, BTreeSet<String>)>,
}

pub fn adapt(mut resources: LocalResources, environment: Environment) -> Adapted {
    let mut adaptations = Vec::new();
    let secrets = resources.clone();
    for project in &mut resources.projects {
        adapt_project(project, &secrets, environment, &mut adaptations);
    }
    let mut printed_routes = Vec::new();
    for policy in &mut resources.policies {
        let printed = adapt_policy(policy, &secrets, environment, &mut adaptations);
        printed_routes.push((format!("{}/{}", policy.namespace, policy.name), printed));
    }
    Adapted {
        resources,
        adaptations,
        printed_routes,
    }
}

fn adapt_project(
    project: &mut Project,
    secrets: &LocalResources,
    environment: Environment,
    out: &mut Vec<Adaptation>,
) {
    let resource = format!("TraceProject {}/{}", project.namespace, project.name);
    let mut note = |field: &str, message: String| {
        out.push(Adaptation {
            resource: resource.clone(),
            field: field.to_owned(),
            message,
        })
    };
    if let Some(stream) = &mut project.spec.stream
        && let Some(replicas) = stream.replicas.filter(|r| *r > 1)
        && environment.single_node
    {
        stream.replicas = Some(1);
        note(
            "spec.stream.replicas",
            format!("{replicas} → 1: this NATS is a single server, so streams keep one copy"),
        );
    }
    if let Some(ingest) = &mut project.spec.ingest {
        if ingest.autoscaling.take().is_some() || ingest.replicas.is_some_and(|r| r > 1) {
            ingest.replicas = None;
            note(
                "spec.ingest.replicas",
                "one ingest worker runs in this process (no autoscaling)".into(),
            );
        }
        if let Some(auth) = ingest.auth.clone() {
            let secret = &auth.bearer_token_secret_ref;
            if !has_secret(secrets, &project.namespace, secret) {
                ingest.auth = None;
                note(
                    "spec.ingest.auth",
                    format!(
                        "Secret {} (key {}) is not among the manifests: OTLP is accepted without a bearer token",
                        secret.name, secret.key
                    ),
                );
            }
        }
    }
}

/// Returns the routes whose notifications are printed instead of sent.
fn adapt_policy(
    policy: &mut Policy,
    secrets: &LocalResources,
    environment: Environment,
    out: &mut Vec<Adaptation>,
) -> BTreeSet<String> {
    let resource = format!("EvalPolicy {}/{}", policy.namespace, policy.name);
    let mut note = |field: String, message: String| {
        out.push(Adaptation {
            resource: resource.clone(),
            field,
            message,
        })
    };
    if let Some(evaluator) = &mut policy.spec.evaluator
        && evaluator.replicas.is_some_and(|r| r > 1)
    {
        evaluator.replicas = None;
        note(
            "spec.evaluator.replicas".into(),
            "one evaluator runs in this process; LLM limits apply to it whole".into(),
        );
    }
    for (index, judge) in policy.spec.judges.iter_mut().enumerate() {
        if let Some(llm) = &mut judge.llm
            && let Some(secret) = llm.api_key_secret_ref.clone()
            && !has_secret(secrets, &policy.namespace, &secret)
        {
            llm.api_key_secret_ref = None;
            note(
                format!("spec.judges[{index}].llm.apiKeySecretRef"),
                format!(
                    "Secret {} (key {}) is not among the manifests: judge {} calls {} with UMPIRE_JUDGE_API_KEY if set, else without a key",
                    secret.name, secret.key, judge.name, llm.endpoint
                ),
            );
        }
    }
    let mut printed = BTreeSet::new();
    for (index, route) in policy.spec.routes.iter().flatten().enumerate() {
        if environment.print_alerts {
            printed.insert(route.name.clone());
            continue;
        }
        let needed: Vec<&SecretKeyRef> = route
            .pager_duty
            .iter()
            .map(|p| &p.routing_key_secret_ref)
            .chain(
                route
                    .webhook
                    .iter()
                    .flat_map(|w| w.url_secret_ref.iter().chain(w.hmac_secret_ref.iter())),
            )
            .collect();
        if let Some(missing) = needed
            .iter()
            .find(|s| !has_secret(secrets, &policy.namespace, s))
        {
            printed.insert(route.name.clone());
            note(
                format!("spec.routes[{index}]"),
                format!(
                    "Secret {} (key {}) is not among the manifests: route {}'s notifications are printed, not sent",
                    missing.name, missing.key, route.name
                ),
            );
        }
    }
    printed
}

fn has_secret(resources: &LocalResources, namespace: &str, secret: &SecretKeyRef) -> bool {
    resources
        .secret_value(namespace, &secret.name, &secret.key)
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLES: &str =
        include_str!("../../../manifests/examples/support-bot.traceproject.yaml");

    #[test]
    fn what_one_node_cannot_hold_is_adapted_and_said() {
        let resources = LocalResources::from_yaml(EXAMPLES).unwrap();
        let adapted = adapt(
            resources,
            Environment {
                single_node: true,
                print_alerts: false,
            },
        );
        let project = &adapted.resources.projects[0];
        assert_eq!(
            project.spec.stream.as_ref().and_then(|s| s.replicas),
            Some(1)
        );
        let fields: Vec<&str> = adapted
            .adaptations
            .iter()
            .map(|a| a.field.as_str())
            .collect();
        assert_eq!(
            fields,
            [
                "spec.stream.replicas",
                "spec.ingest.replicas",
                "spec.ingest.auth"
            ]
        );
        assert!(adapted.adaptations[0].message.contains("3 → 1"));
    }

    #[test]
    fn a_cluster_keeps_the_replicas() {
        let resources = LocalResources::from_yaml(EXAMPLES).unwrap();
        let adapted = adapt(
            resources,
            Environment {
                single_node: false,
                print_alerts: false,
            },
        );
        let project = &adapted.resources.projects[0];
        assert_eq!(
            project.spec.stream.as_ref().and_then(|s| s.replicas),
            Some(3)
        );
    }
}
