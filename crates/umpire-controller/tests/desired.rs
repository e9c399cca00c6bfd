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
        ..Default::default()
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

/// The policies' TraceProject: the shipped example (3 stream replicas).
fn example_project() -> TraceProjectSpec {
    serde_json::from_value(example("support-bot.traceproject.yaml")["spec"].clone()).unwrap()
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
    let children = policy::desired(
        &owner("EvalPolicy", "answer-quality"),
        &spec,
        &example_project(),
        &context(),
    );
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

fn pod_template(deployment: &k8s_openapi::api::apps::v1::Deployment) -> Value {
    serde_json::to_value(&deployment.spec.as_ref().unwrap().template).unwrap()
}

#[test]
fn pod_options_shape_the_worker_pods() {
    let manifest = example("support-bot.traceproject.yaml");
    let mut spec: TraceProjectSpec = serde_json::from_value(manifest["spec"].clone()).unwrap();
    let options = serde_json::json!({
        "nodeSelector": {"pool": "observability"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "obs", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "support-bot"}}}],
        "priorityClassName": "observability-high",
        "annotations": {"linkerd.io/inject": "enabled"},
        "labels": {"team": "ml"},
        "imagePullSecrets": [{"name": "team-registry"}],
        "env": [{"name": "HTTPS_PROXY", "value": "http://proxy.internal:3128"}]
    });
    spec.ingest.as_mut().unwrap().pod = Some(serde_json::from_value(options).unwrap());
    let ctx = Context {
        image_pull_policy: Some("IfNotPresent".into()),
        image_pull_secrets: vec!["umpire-registry".into()],
        ..context()
    };
    let children = project::desired(&owner("TraceProject", "support-bot"), &spec, &ctx);
    insta::assert_yaml_snapshot!("ingest_deployment_with_pod_options", children.deployment);
    let template = pod_template(&children.deployment);
    // Umpire's selector labels stay; the user's are added.
    let labels = &template["metadata"]["labels"];
    assert_eq!(labels["team"], "ml");
    assert_eq!(labels["app.kubernetes.io/component"], "ingest");
    let selector =
        serde_json::to_value(&children.deployment.spec.as_ref().unwrap().selector).unwrap();
    for (key, value) in selector["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[key], value, "pods keep matching the selector");
    }
    // The given constraints replace the default spread.
    let spread = template["spec"]["topologySpreadConstraints"]
        .as_array()
        .unwrap();
    assert_eq!(spread.len(), 1);
    assert_eq!(spread[0]["topologyKey"], "topology.kubernetes.io/zone");
    let pulls = template["spec"]["imagePullSecrets"].as_array().unwrap();
    assert_eq!(
        pulls.len(),
        2,
        "install-wide and the resource's own: {pulls:?}"
    );
    let env = template["spec"]["containers"][0]["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "HTTPS_PROXY"));
    assert!(env.iter().any(|e| e["name"] == "POD_NAME"));
}

#[test]
fn worker_replicas_spread_across_nodes_by_default() {
    let manifest = example("answer-quality.evalpolicy.yaml");
    let spec: EvalPolicySpec = serde_json::from_value(manifest["spec"].clone()).unwrap();
    let children = policy::desired(
        &owner("EvalPolicy", "answer-quality"),
        &spec,
        &example_project(),
        &context(),
    );
    let template = pod_template(&children.deployment);
    let spread = &template["spec"]["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(spread["whenUnsatisfiable"], "ScheduleAnyway");
    assert_eq!(
        spread["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        "answer-quality"
    );
}

#[test]
fn install_defaults_apply_where_the_resource_sets_nothing() {
    let manifest = example("answer-quality.evalpolicy.yaml");
    let mut spec: EvalPolicySpec = serde_json::from_value(manifest["spec"].clone()).unwrap();
    let defaults: k8s_openapi::api::core::v1::ResourceRequirements =
        serde_json::from_value(serde_json::json!({"requests": {"cpu": "50m", "memory": "64Mi"}}))
            .unwrap();
    let ctx = Context {
        evaluator_resources: Some(defaults.clone()),
        ..context()
    };
    spec.evaluator.as_mut().unwrap().resources = None;
    let children = policy::desired(
        &owner("EvalPolicy", "answer-quality"),
        &spec,
        &example_project(),
        &ctx,
    );
    let resources = &pod_template(&children.deployment)["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], "50m");
    let own: k8s_openapi::api::core::v1::ResourceRequirements =
        serde_json::from_value(serde_json::json!({"requests": {"cpu": "2"}})).unwrap();
    spec.evaluator.as_mut().unwrap().resources = Some(own);
    let children = policy::desired(
        &owner("EvalPolicy", "answer-quality"),
        &spec,
        &example_project(),
        &ctx,
    );
    let resources = &pod_template(&children.deployment)["spec"]["containers"][0]["resources"];
    assert_eq!(
        resources["requests"]["cpu"], "2",
        "the resource's own resources win"
    );
}

fn nats_files(files: &[(&str, &str)]) -> umpire_nats::auth::SecretFiles {
    let dir = tempfile::tempdir().unwrap();
    for (key, value) in files {
        std::fs::write(dir.path().join(key), value).unwrap();
    }
    let mut all =
        umpire_nats::auth::SecretFiles::read(dir.path(), &umpire_nats::auth::AUTH_KEYS).unwrap();
    all.extend(
        umpire_nats::auth::SecretFiles::read(dir.path(), &umpire_nats::auth::TLS_KEYS).unwrap(),
    );
    all
}

#[test]
fn workers_get_their_own_copy_of_the_nats_credentials() {
    let manifest = example("answer-quality.evalpolicy.yaml");
    let spec: EvalPolicySpec = serde_json::from_value(manifest["spec"].clone()).unwrap();
    let owner = owner("EvalPolicy", "answer-quality");
    let plain = policy::desired(&owner, &spec, &example_project(), &context());
    assert!(plain.nats_secret.is_none(), "no credentials, no Secret");

    let ctx = Context {
        nats_files: nats_files(&[
            ("username", "umpire"),
            ("password", "s3cret"),
            ("ca.crt", "PEM"),
        ]),
        ..context()
    };
    let children = policy::desired(&owner, &spec, &example_project(), &ctx);
    let secret = children.nats_secret.clone().unwrap();
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("answer-quality-evaluator-nats")
    );
    assert_eq!(
        secret.metadata.owner_references.as_ref().unwrap()[0].kind,
        "EvalPolicy"
    );
    let keys: Vec<_> = secret.data.as_ref().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["ca.crt", "password", "username"]);
    // The config names the mounted folder, never the secret values.
    let config = &children.config_map.data.as_ref().unwrap()["config.yaml"];
    assert!(config.contains("authDir: /var/run/umpire/nats"), "{config}");
    assert!(config.contains("tlsDir: /var/run/umpire/nats"), "{config}");
    assert!(!config.contains("s3cret"));
    let template = pod_template(&children.deployment);
    let volume = template["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "nats")
        .unwrap()
        .clone();
    assert_eq!(
        volume["secret"]["secretName"],
        "answer-quality-evaluator-nats"
    );
    assert_eq!(volume["secret"]["defaultMode"], 0o400);
    let hash = template["metadata"]["annotations"]["umpire.dev/nats-secret-hash"].clone();

    // A rotated password rolls the pods.
    let rotated = Context {
        nats_files: nats_files(&[
            ("username", "umpire"),
            ("password", "n3w"),
            ("ca.crt", "PEM"),
        ]),
        ..context()
    };
    let children = policy::desired(&owner, &spec, &example_project(), &rotated);
    let template = pod_template(&children.deployment);
    assert_ne!(
        template["metadata"]["annotations"]["umpire.dev/nats-secret-hash"],
        hash
    );
}

#[test]
fn workers_get_a_network_policy_when_the_install_asks() {
    let manifest = example("support-bot.traceproject.yaml");
    let spec: TraceProjectSpec = serde_json::from_value(manifest["spec"].clone()).unwrap();
    assert!(
        project::desired(&owner("TraceProject", "support-bot"), &spec, &context())
            .network_policy
            .is_none()
    );
    let policy: umpire_controller::children::network::WorkerNetworkPolicy =
        serde_json::from_value(serde_json::json!({
            "natsPeers": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "nats"}}}],
            "otlpFrom": [{"namespaceSelector": {"matchLabels": {"team": "support"}}}],
            "evaluatorEgress": [{"ports": [{"port": 443, "protocol": "TCP"}]}],
            "ingestEgress": [{"ports": [{"port": 4318, "protocol": "TCP"}]}]
        }))
        .unwrap();
    let ctx = Context {
        network_policy: Some(policy),
        ..context()
    };
    let ingest = project::desired(&owner("TraceProject", "support-bot"), &spec, &ctx)
        .network_policy
        .unwrap();
    insta::assert_yaml_snapshot!("ingest_network_policy", ingest);
    let ingest = serde_json::to_value(&ingest).unwrap();
    let ports: Vec<_> = ingest["spec"]["ingress"][1]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [4317, 4318]);
    // DNS, NATS and — the example exports to Phoenix — the export targets.
    assert_eq!(ingest["spec"]["egress"].as_array().unwrap().len(), 3);
    assert_eq!(ingest["spec"]["egress"][1]["ports"][0]["port"], 4222);
    assert_eq!(ingest["spec"]["egress"][2]["ports"][0]["port"], 4318);
    let without_export = TraceProjectSpec {
        export: None,
        ..spec.clone()
    };
    let ingest = project::desired(&owner("TraceProject", "support-bot"), &without_export, &ctx)
        .network_policy
        .unwrap();
    assert_eq!(
        serde_json::to_value(&ingest).unwrap()["spec"]["egress"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "DNS and NATS only"
    );

    let manifest = example("answer-quality.evalpolicy.yaml");
    let spec: EvalPolicySpec = serde_json::from_value(manifest["spec"].clone()).unwrap();
    let evaluator = policy::desired(
        &owner("EvalPolicy", "answer-quality"),
        &spec,
        &example_project(),
        &ctx,
    )
    .network_policy
    .unwrap();
    let evaluator = serde_json::to_value(&evaluator).unwrap();
    assert_eq!(
        evaluator["spec"]["ingress"].as_array().unwrap().len(),
        1,
        "metrics only"
    );
    assert_eq!(
        evaluator["spec"]["egress"][2]["ports"][0]["port"], 443,
        "judges and routes"
    );
    assert_eq!(
        evaluator["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        "answer-quality"
    );
}

#[test]
fn only_policies_that_compare_embeddings_mount_the_model() {
    use umpire_controller::children::pod::EmbeddingModel;
    let model = EmbeddingModel {
        volume: serde_json::from_value(serde_json::json!({
            "name": "embedding-model",
            "persistentVolumeClaim": {"claimName": "models", "readOnly": true}
        }))
        .unwrap(),
        path: "all-MiniLM-L6-v2/".into(),
    };
    let ctx = Context {
        embedding_model: Some(model),
        ..context()
    };
    let manifest = example("answer-quality.evalpolicy.yaml");
    let mut spec: EvalPolicySpec = serde_json::from_value(manifest["spec"].clone()).unwrap();
    let owner = owner("EvalPolicy", "answer-quality");
    let mounted = |spec: &EvalPolicySpec| {
        let children = policy::desired(&owner, spec, &example_project(), &ctx);
        let pod = pod_template(&children.deployment);
        let config = children.config_map.data.unwrap()["config.yaml"].clone();
        let volume = pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "embedding-model")
            .cloned();
        let mount = pod["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "embedding-model")
            .cloned();
        (volume, mount, config)
    };
    let (volume, mount, config) = mounted(&spec);
    assert!(
        volume.is_none() && mount.is_none(),
        "no embedding judge, no model"
    );
    assert!(!config.contains("embeddingModel"), "{config}");

    spec.judges.push(
        serde_json::from_value(serde_json::json!({
            "name": "on-topic", "embedding": {"compareTo": "input", "min": 0.4}
        }))
        .unwrap(),
    );
    let (volume, mount, config) = mounted(&spec);
    assert_eq!(
        volume.unwrap()["persistentVolumeClaim"]["claimName"],
        "models"
    );
    let mount = mount.unwrap();
    assert_eq!(mount["mountPath"], "/var/lib/umpire/embedding-model");
    assert_eq!(mount["readOnly"], true);
    assert!(
        config.contains("embeddingModel: /var/lib/umpire/embedding-model/all-MiniLM-L6-v2"),
        "{config}"
    );
}
