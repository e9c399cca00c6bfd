//! The Argo CD health checks in `manifests/gitops/argocd-health.yaml`, run by a real Lua 5.1
//! interpreter (Argo CD's gopher-lua is a Lua 5.1) on status objects `umpire controller`
//! wrote to the test kit's API server: Ready, invalid specs, missing and not-ready projects,
//! pods not ready, a generation not yet observed. On a real cluster (`KUBECONFIG` set) the
//! steps that need the emulator's switchable pod readiness are skipped.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::cluster::Cluster;
use support::controller::wait_reason;
use support::tools::repo;
use support::{UmpireProcess, create_namespace, free_port, install_crds};
use umpire_api::eval_policy::EvalPolicy;
use umpire_api::trace_project::TraceProject;
use umpire_testkit::nats::NatsServer;

/// The health script Argo CD would run for `kind`, from the shipped ConfigMap patch.
fn health_script(kind: &str) -> String {
    let text = std::fs::read_to_string(repo().join("manifests/gitops/argocd-health.yaml")).unwrap();
    let patch: Value = serde_yaml::from_str(&text).unwrap();
    patch["data"][format!("resource.customizations.health.umpire.dev_{kind}")]
        .as_str()
        .unwrap_or_else(|| panic!("no health check for {kind}"))
        .to_owned()
}

/// A JSON value as a Lua table constructor (what Argo CD hands the script as `obj`).
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for byte in s.bytes() {
                match byte {
                    b'"' | b'\\' => {
                        out.push('\\');
                        out.push(byte as char);
                    }
                    0x20..=0x7e => out.push(byte as char),
                    // Decimal escapes keep every other byte (newlines, UTF-8) intact.
                    _ => out.push_str(&format!("\\{byte}")),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("[{}] = {}", lua(&Value::String(k.clone())), lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// (status, message) as the health check reports them for `object`.
fn health(object: &Value) -> (String, String) {
    let kind = object["kind"].as_str().unwrap();
    let program = format!(
        "local function check(obj)\n{}\nend\nlocal hs = check({})\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        health_script(kind),
        lua(object)
    );
    let mut child = Command::new("lua5.1")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.1 is installed (.ci/setup installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(program.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "lua: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap();
    (status.to_owned(), message.to_owned())
}

/// The object once its `Ready` reason is `wanted`, as Argo CD would read it.
async fn with_reason<K>(api: &Api<K>, name: &str, wanted: &str) -> Value
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    serde_json::to_value(wait_reason(api, name, wanted).await).unwrap()
}

fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "umpire.dev/v1alpha1", "kind": kind,
           "metadata": {"name": name}, "spec": spec})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn argo_cd_health_checks_read_the_status_the_controller_writes() {
    let nats = NatsServer::start().unwrap();
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    install_crds(&client).await;
    let namespace = cluster.namespace("apps");
    create_namespace(&client, &namespace).await;
    let admin = format!("127.0.0.1:{}", free_port());
    let _controller = UmpireProcess::spawn_with_env(
        &[
            "controller",
            "--nats-url",
            &nats.url(),
            "--no-leader-election",
            "--admin-listen",
            &admin,
        ],
        repo(),
        &[("KUBECONFIG", cluster.kubeconfig().to_str().unwrap())],
    );
    let projects: Api<TraceProject> = Api::namespaced(client.clone(), &namespace);
    let policies: Api<EvalPolicy> = Api::namespaced(client.clone(), &namespace);
    let create_project = |name: &'static str, spec: Value| {
        let projects = projects.clone();
        async move {
            let tp: TraceProject =
                serde_json::from_value(object("TraceProject", name, spec)).unwrap();
            projects.create(&PostParams::default(), &tp).await.unwrap();
        }
    };
    let create_policy = |name: &'static str, project: &'static str| {
        let policies = policies.clone();
        async move {
            let ep: EvalPolicy = serde_json::from_value(object(
                "EvalPolicy",
                name,
                json!({"projectRef": {"name": project},
                       "judges": [{"name": "fast", "latency": {"maxMs": 1000}}]}),
            ))
            .unwrap();
            policies.create(&PostParams::default(), &ep).await.unwrap();
        }
    };

    // No status yet: Progressing.
    let fresh = object("TraceProject", "fresh", json!({}));
    assert_eq!(health(&fresh).0, "Progressing");

    // Pods not ready: the project and a policy waiting for it are Progressing.
    if let Cluster::Emulator(server) = &cluster {
        server.set_deployments_ready(false);
    }
    create_project("bot", json!({"ingest": {"replicas": 2}})).await;
    create_policy("quality", "bot").await;
    let starting = with_reason(&projects, "bot", "IngestUnavailable").await;
    let (status, message) = health(&starting);
    assert_eq!(status, "Progressing", "{message}");
    assert!(message.contains("/2 ingest pods ready"), "{message}");
    let waiting = with_reason(&policies, "quality", "ProjectNotReady").await;
    assert_eq!(health(&waiting).0, "Progressing");

    // Pods ready: both Healthy (on a real cluster only when its pods reach this NATS).
    let ready = match &cluster {
        Cluster::Emulator(server) => {
            server.set_deployments_ready(true);
            let ready = with_reason(&projects, "bot", "Available").await;
            assert_eq!(
                health(&ready),
                ("Healthy".into(), "accepting OTLP spans".into())
            );
            let judging = with_reason(&policies, "quality", "Available").await;
            assert_eq!(health(&judging).0, "Healthy");
            ready
        }
        Cluster::Real(_) => {
            eprintln!("real cluster: the Healthy step needs worker pods that reach NATS; skipped");
            starting.clone()
        }
    };

    // A generation the controller has not observed yet: Progressing, whatever Ready says.
    let mut ahead = ready.clone();
    ahead["metadata"]["generation"] = json!(ready["metadata"]["generation"].as_i64().unwrap() + 1);
    let (status, message) = health(&ahead);
    assert_eq!(status, "Progressing");
    assert!(message.contains("observe generation"), "{message}");

    // Needs a person: Degraded.
    create_policy("orphan", "no-such-project").await;
    let orphan = with_reason(&policies, "orphan", "ProjectNotFound").await;
    assert_eq!(health(&orphan).0, "Degraded");
    create_project(
        "broken",
        json!({"sampling": {"policies": [{"name": "bad", "stringAttribute":
              {"key": "http.route", "values": ["(unclosed"], "regex": true}}]}}),
    )
    .await;
    let broken = with_reason(&projects, "broken", "InvalidSpec").await;
    // NATS refuses the stream (3 replicas on a single node): Degraded with NATS's words.
    create_project("refused", json!({"stream": {"replicas": 3}})).await;
    let refused = with_reason(&projects, "refused", "StreamRejected").await;
    let (status, message) = health(&refused);
    assert_eq!(status, "Degraded");
    assert!(message.contains("replicas"), "{message}");
    let (status, message) = health(&broken);
    assert_eq!(status, "Degraded");
    assert!(message.starts_with("InvalidSpec: "), "{message}");
}

#[test]
fn lua_strings_survive_quotes_newlines_and_unicode() {
    let value =
        json!({"message": "a \"quoted\" line\nnext — ünïcode \\ done", "n": [1, 2.5, true, null]});
    let program = format!(
        "local v = {}\nio.write(v.message, \"|\", #v.n, \"|\", v.n[2])",
        lua(&value)
    );
    let out = Command::new("lua5.1")
        .args(["-e", &program])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "a \"quoted\" line\nnext — ünïcode \\ done|3|2.5"
    );
}
