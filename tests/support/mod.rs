//! Shared by the end-to-end tests of the `umpire` binary.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

pub mod cluster;
pub mod controller;
pub mod metrics;
pub mod scores;
pub mod tools;
pub mod traffic;

/// A running `umpire` subcommand whose JSON log lines are collected.
pub struct UmpireProcess {
    child: Child,
    /// The arguments and environment it was started with, to tell processes apart.
    label: String,
    lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl UmpireProcess {
    pub fn spawn(args: &[&str], workdir: &Path) -> Self {
        Self::spawn_with_env(args, workdir, &[])
    }

    pub fn spawn_with_env(args: &[&str], workdir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_umpire"))
            .args(args)
            .envs(env.iter().copied())
            .current_dir(workdir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        // UMPIRE_E2E_SHOW_LOGS=1 echoes every child's log lines (debugging a failing test).
        let echo = std::env::var_os("UMPIRE_E2E_SHOW_LOGS").is_some();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("{line}");
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Self {
            child,
            label: format!("{} umpire {}", env.join(" "), args.join(" ")),
            lines,
            log: Vec::new(),
        }
    }

    /// The first log line whose `event` field equals `event`.
    pub fn wait_for_event(&mut self, event: &str, timeout: Duration) -> Value {
        if let Some(found) = self
            .log
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["event"] == event)
        {
            return found;
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no {event:?} event within {timeout:?}; log:\n{}",
                    self.log.join("\n")
                )
            });
            self.log.push(line.clone());
            if let Ok(value) = serde_json::from_str::<Value>(&line)
                && value["event"] == event
            {
                return value;
            }
        }
    }

    /// Log lines with this `event` so far, without waiting.
    pub fn events(&mut self, event: &str) -> Vec<Value> {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        self.log
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == event)
            .collect()
    }

    /// Waits for the process to exit by itself; its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.log.push(line);
        }
        status.code()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL): a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
            self.log.push(line);
        }
    }

    /// Sends SIGTERM (as Kubernetes does) and returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.log.push(line);
        }
        status.code()
    }
}

/// How many of a process's last log lines a failing test prints.
const LOG_TAIL_ON_FAILURE: usize = 80;

impl Drop for UmpireProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test's processes say what they were doing: a timeout alone (say,
        // "waiting for a new leader") does not tell a slow election from a stuck replica.
        if std::thread::panicking() {
            while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.log.push(line);
            }
            let tail = &self.log[self.log.len().saturating_sub(LOG_TAIL_ON_FAILURE)..];
            eprintln!(
                "--- last {} log lines of `{}` ---\n{}",
                tail.len(),
                self.label.trim(),
                tail.join("\n")
            );
        }
    }
}

/// Applies the generated CRDs (server-side) and waits until they are established.
pub async fn install_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in [
        "traceprojects.umpire.dev.yaml",
        "evalpolicies.umpire.dev.yaml",
    ] {
        let text = std::fs::read_to_string(
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds")).join(file),
        )
        .unwrap();
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text).unwrap();
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        kube::runtime::wait::await_condition(
            crds.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        )
        .await
        .unwrap();
    }
}

pub async fn create_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating namespace {name}: {e}"),
    }
}

/// Creates (or replaces) a Secret whose owner consents to Umpire mounting it: labelled
/// `umpire.dev/allow-reference: "true"`.
pub async fn create_consenting_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    data: &[(&str, &str)],
) {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some([("umpire.dev/allow-reference".into(), "true".into())].into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
}

/// The Secrets the shared test resources name (`support::controller::{project, policy}`).
pub async fn create_referenced_secrets(client: &kube::Client, namespace: &str) {
    create_consenting_secret(client, namespace, "judge-key", &[("api-key", "sk-test")]).await;
    create_consenting_secret(client, namespace, "pd", &[("routing-key", "R0UT1NG")]).await;
    create_consenting_secret(client, namespace, "otlp", &[("token", "t0ken")]).await;
}

/// The value of the first sample of `name` whose labels contain `labels`, scraped from the
/// admin server on `port`: -1 when it does not answer, 0 when the sample is absent.
pub async fn metric(port: u16, name: &str, labels: &str) -> f64 {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let Ok(response) = reqwest::get(&url).await else {
        return -1.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
