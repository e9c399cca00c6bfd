//! Snapshots of the desired children for the example resources: any change to what the
//! controller would create shows up as a reviewed diff (`cargo insta review`, or
//! `INSTA_UPDATE=always cargo test -p umpire-controller` then read `git diff`).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use serde_json::Value;
use umpire_api::eval_policy::EvalPolicySpec;
use umpire_api::trace_project::TraceProjectSpec;
use umpire_controller::children::{Context, Owner, policy, project};

fn example(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../manifests/examples")
        .join(file);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn context() -> Context {
    Context {
        image: "ghcr.io/umpire-dev/umpire:0.1.0".into(),
        nats_url: "nats://nats.umpire-system:4222".into(),
    }
}

fn owner(kind: &str, name: &str) -> Owner {
    Owner {
        api_version: "umpire.dev/v1alpha1".into(),
        kind: kind.into(),
        name: name.into(),
        namespace: "ml-apps".into(),
        uid: "00000000-0000-4000-8000-000000000001".into(),
    }
}

#[test]
fn trace_project_children() {
    let manifest = example("support-bot.traceproject.yaml");
    let spec: TraceProjectSpec = serde_json::from_value(manifest["spec"].clone()).unwrap();
    let children = project::desired(&owner("TraceProject", "support-bot"), &spec, &context());
    insta::assert_yaml_snapshot!("ingest_service_account", children.service_account);
    insta::assert_yaml_snapshot!("ingest_config_map", children.config_map);
    insta::assert_yaml_snapshot!("ingest_deployment", children.deployment);
    insta::assert_yaml_snapshot!("ingest_service", children.service);
    insta::assert_yaml_snapshot!("ingest_disruption_budget", children.disruption_budget);
    insta::assert_yaml_snapshot!("ingest_autoscaler", children.autoscaler);
}

#[test]
fn eval_policy_children() {
    let manifest = example("answer-quality.evalpolicy.yaml");
    let spec: EvalPolicySpec = serde_json::from_value(manifest["spec"].clone()).unwrap();
    let children = policy::desired(&owner("EvalPolicy", "answer-quality"), &spec, &context());
    insta::assert_yaml_snapshot!("evaluator_config_map", children.config_map);
    insta::assert_yaml_snapshot!("evaluator_deployment", children.deployment);
}

#[test]
fn a_config_change_changes_the_pod_template_hash() {
    let manifest = example("support-bot.traceproject.yaml");
    let mut spec: TraceProjectSpec = serde_json::from_value(manifest["spec"].clone()).unwrap();
    let hash = |spec: &TraceProjectSpec| {
        let d =
            project::desired(&owner("TraceProject", "support-bot"), spec, &context()).deployment;
        d.spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()["umpire.dev/config-hash"]
            .clone()
    };
    let before = hash(&spec);
    assert_eq!(before, hash(&spec), "rendering is deterministic");
    spec.sampling.as_mut().unwrap().decision_wait = Some("20s".parse().unwrap());
    assert_ne!(before, hash(&spec));
}
