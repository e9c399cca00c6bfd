//! The Helm chart through the real Helm engine (Helm 4's Go SDK): it lints and renders with
//! default values and with every option on, a typo in values fails, every rendered object
//! validates against the Kubernetes schemas of a current release, the RBAC is exactly what
//! the controller uses, `manifests/install/` is the chart's default rendering, and the
//! Dockerfile passes hadolint.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::tools::{documents, helm, render_chart, repo, venv_tool};
use umpire_controller::rbac::{OWN_NAMESPACE, Options, WATCHED_NAMESPACES, triples};

const EVERY_OPTION: Options = Options {
    nats_credentials: true,
    worker_network_policies: true,
};
const EVERYTHING: &str = "tests/chart/values-everything.yaml";
/// Kubernetes release the rendered objects are validated against (kubernetes-validate's newest).
const KUBERNETES: &str = "1.37.0";

fn everything() -> &'static Path {
    Path::new(EVERYTHING)
}

#[test]
fn the_chart_lints_with_default_values_and_with_every_option_on() {
    for values in [&[][..], &["-f", EVERYTHING][..]] {
        let mut args = vec!["lint", "charts/umpire"];
        args.extend_from_slice(values);
        let out = helm(&args);
        assert!(
            out.status.success(),
            "helm lint {values:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_typo_or_a_wrong_type_in_values_fails_install_and_lint() {
    let dir = repo().join("tests/chart/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", file.display()));
        let path = file.display().to_string();
        let template = helm(&["template", "charts/umpire", "-f", &path]);
        let stderr = String::from_utf8_lossy(&template.stderr);
        assert!(!template.status.success(), "{path} rendered");
        assert!(stderr.contains(expected), "{path}: {stderr}");
        let lint = helm(&["lint", "charts/umpire", "-f", &path]);
        assert!(!lint.status.success(), "{path} passed lint");
    }
}

#[test]
fn every_rendered_object_validates_against_the_kubernetes_schemas() {
    let dir = tempfile::tempdir().unwrap();
    for (name, values) in [("default", vec![]), ("everything", vec![everything()])] {
        let rendered = render_chart(&values);
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, &rendered).unwrap();
        let out = Command::new(venv_tool("kubernetes-validate"))
            .args(["--strict", "--kubernetes-version", KUBERNETES])
            .arg(&path)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}:\n{report}");
        let kinds: BTreeSet<String> = documents(&rendered)
            .iter()
            .map(|d| d["kind"].as_str().unwrap_or_default().to_owned())
            .collect();
        // Only the Prometheus Operator's kinds have no schema in a Kubernetes release.
        for line in report
            .lines()
            .filter(|l| l.contains("Couldn't find schema"))
        {
            assert!(
                line.contains("monitoring.coreos.com/v1"),
                "{name}: unvalidated: {line}"
            );
        }
        let validated = report.matches("passed for resource").count();
        let skipped = report.matches("Couldn't find schema").count();
        assert_eq!(
            validated + skipped,
            documents(&rendered).len(),
            "{name}: every document is looked at ({kinds:?})\n{report}"
        );
    }
}

fn rule_triples(rules: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for rule in rules.as_array().unwrap() {
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default()
        };
        assert!(
            rule.get("resourceNames").is_none(),
            "no rule is name-scoped: {rule}"
        );
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    assert!(group != "*" && resource != "*" && verb != "*", "{rule}");
                    out.push((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn role(docs: &[Value], kind: &str, name: &str, namespace: Option<&str>) -> Value {
    docs.iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"] == name
                && namespace.is_none_or(|ns| d["metadata"]["namespace"] == ns)
        })
        .unwrap_or_else(|| panic!("no {kind} {name} in {namespace:?}"))
        .clone()
}

#[test]
fn the_rendered_rbac_grants_exactly_what_the_controller_uses() {
    // Default values: the whole cluster, no NATS credentials to hand on.
    let docs = documents(&render_chart(&[]));
    let cluster_role = role(&docs, "ClusterRole", "umpire", None);
    assert_eq!(
        rule_triples(&cluster_role["rules"]),
        triples(WATCHED_NAMESPACES, Options::default())
    );
    let leader = role(&docs, "Role", "umpire-leader", Some("umpire-system"));
    assert_eq!(
        rule_triples(&leader["rules"]),
        triples(OWN_NAMESPACE, Options::default())
    );
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "Role" && d["metadata"]["name"] == "umpire"),
        "no per-namespace Roles when the whole cluster is watched"
    );

    // watchNamespaces and NATS credentials: a Role per namespace, with write-only Secrets,
    // and no ClusterRole at all.
    let docs = documents(&render_chart(&[everything()]));
    assert!(!docs.iter().any(|d| d["kind"] == "ClusterRole"));
    for namespace in ["shop", "support"] {
        let role = role(&docs, "Role", "umpire", Some(namespace));
        assert_eq!(
            rule_triples(&role["rules"]),
            triples(WATCHED_NAMESPACES, EVERY_OPTION),
            "{namespace}"
        );
        let binding = docs
            .iter()
            .find(|d| d["kind"] == "RoleBinding" && d["metadata"]["namespace"] == namespace)
            .unwrap();
        assert_eq!(binding["subjects"][0]["name"], "umpire-operator");
        assert_eq!(binding["subjects"][0]["namespace"], "umpire-system");
    }
    let secrets: Vec<_> = triples(WATCHED_NAMESPACES, EVERY_OPTION)
        .into_iter()
        .filter(|(_, resource, _)| resource == "secrets")
        .map(|(_, _, verb)| verb)
        .collect();
    assert_eq!(
        secrets,
        ["create", "get", "patch"],
        "Secrets are read one by one for consent (metadata), written for NATS credentials, never listed or watched"
    );
}

#[test]
fn the_controller_deployment_carries_every_option() {
    let docs = documents(&render_chart(&[everything()]));
    let deployment = role(&docs, "Deployment", "umpire", Some("umpire-system"));
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let image = "registry.example.com/umpire@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_eq!(container["image"], image);
    for expected in [
        "controller".to_owned(),
        format!("--image={image}"),
        "--image-pull-policy=Always".into(),
        "--image-pull-secret=regcred".into(),
        "--watch-namespace=shop,support".into(),
        "--nats-url=tls://nats-0.nats.nats.svc:4222,tls://nats-1.nats.nats.svc:4222".into(),
        "--nats-auth-dir=/var/run/umpire/nats/auth".into(),
        "--nats-tls-dir=/var/run/umpire/nats/tls".into(),
        "--lease-seconds=20".into(),
        "--cleanup-timeout=5m".into(),
        r#"--embedding-model-volume={"image":{"pullPolicy":"IfNotPresent","reference":"registry.example.com/all-minilm-l6-v2:1"}}"#.into(),
        "--embedding-model-path=model".into(),
    ] {
        assert!(args.contains(&expected.as_str()), "{expected} in {args:?}");
    }
    let resources = args
        .iter()
        .find_map(|a| a.strip_prefix("--ingest-resources="))
        .unwrap();
    let resources: Value = serde_json::from_str(resources).unwrap();
    assert_eq!(resources["requests"]["cpu"], "500m");
    let network = args
        .iter()
        .find_map(|a| a.strip_prefix("--worker-network-policy="))
        .unwrap();
    let network: umpire_controller::children::network::WorkerNetworkPolicy =
        serde_json::from_str(network).unwrap();
    assert_eq!(network.nats_port, 4222);
    assert_eq!(network.otlp_from.len(), 1);
    assert_eq!(network.evaluator_egress.len(), 1);
    assert_eq!(
        network.ingest_egress.len(),
        1,
        "the chart's default export egress"
    );
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["secret"]["secretName"].as_str().unwrap())
        .collect();
    assert_eq!(volumes, ["umpire-nats", "umpire-nats-tls"]);
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env.contains(&"HTTPS_PROXY") && env.contains(&"POD_NAMESPACE"));
    for kind in [
        "ServiceMonitor",
        "PodMonitor",
        "NetworkPolicy",
        "PodDisruptionBudget",
    ] {
        assert!(docs.iter().any(|d| d["kind"] == kind), "{kind}");
    }
    let monitor = docs.iter().find(|d| d["kind"] == "PodMonitor").unwrap();
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        serde_json::json!(["shop", "support"])
    );
}

#[test]
fn crds_in_the_chart_are_kept_on_uninstall_and_can_be_left_out() {
    let docs = documents(&render_chart(&[]));
    let crds: Vec<_> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(crds.len(), 2);
    for crd in &crds {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
        // The rendered template is the committed CRD (the `{{` escape renders back).
        let name = crd["metadata"]["name"].as_str().unwrap();
        let committed: Value = serde_yaml::from_str(
            &std::fs::read_to_string(repo().join("crds").join(format!("{name}.yaml"))).unwrap(),
        )
        .unwrap();
        assert_eq!(crd["spec"], committed["spec"], "{name}");
    }
    let dir = tempfile::tempdir().unwrap();
    let off = dir.path().join("no-crds.yaml");
    std::fs::write(&off, "crds: {install: false}\n").unwrap();
    let docs = documents(&render_chart(&[&off]));
    assert!(!docs.iter().any(|d| d["kind"] == "CustomResourceDefinition"));
}

#[test]
fn notes_say_what_to_apply_next() {
    let out = helm(&["notes", "charts/umpire"]);
    let notes = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(notes.contains("umpire check"), "{notes}");
    assert!(
        notes.contains("kubectl apply -n <app-namespace>"),
        "{notes}"
    );
    assert!(notes.contains("the whole cluster"), "{notes}");
    let out = helm(&["notes", "charts/umpire", "-f", EVERYTHING]);
    let notes = String::from_utf8_lossy(&out.stdout);
    assert!(notes.contains("the namespaces shop, support"), "{notes}");
    assert!(notes.contains("Secret umpire-nats"), "{notes}");
}

/// The committed `manifests/install/umpire.yaml` header; the rest is `helm template`.
pub const INSTALL_HEADER: &str = "# Generated from charts/umpire with default values (release `umpire`, namespace\n# `umpire-system`): .venv/bin/python tests/tools/helm.py template charts/umpire > …\n# Do not edit; change the chart and regenerate (tests/chart.rs fails on drift).\n";

#[test]
fn manifests_install_is_the_chart_rendered_with_default_values() {
    let rendered = render_chart(&[]);
    let path = repo().join("manifests/install/umpire.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let expected = format!("{INSTALL_HEADER}{rendered}");
    if committed != expected {
        if std::env::var_os("UMPIRE_UPDATE_INSTALL").is_some() {
            std::fs::write(&path, &expected).unwrap();
        }
        panic!(
            "{} is out of date: run `UMPIRE_UPDATE_INSTALL=1 cargo test -p umpire --test chart`",
            path.display()
        );
    }
    let kustomization: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("manifests/install/kustomization.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        kustomization["resources"],
        serde_json::json!(["namespace.yaml", "umpire.yaml"])
    );
}

#[test]
fn the_kustomization_builds() {
    let out = Command::new("kubectl")
        .args(["kustomize", "manifests/install"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = documents(&String::from_utf8(out.stdout).unwrap());
    let rendered = documents(&render_chart(&[]));
    assert_eq!(
        docs.len(),
        rendered.len() + 1,
        "the chart's objects and the Namespace"
    );
    assert!(
        docs.iter()
            .any(|d| d["kind"] == "Namespace" && d["metadata"]["name"] == "umpire-system")
    );
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let out = Command::new(venv_tool("hadolint"))
        .arg(repo().join("Dockerfile"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
