//! Controller scale check: `--namespaces` namespaces, one TraceProject each, and
//! `--policies` EvalPolicies spread over them, created at once against the test kit's
//! Kubernetes API emulator (in this process) and a real nats-server; measures the time until
//! every resource reports Ready, and the `umpire controller` process's CPU and peak RSS.
//!
//! `cargo build --release -p umpire -p umpire-bench && ./target/release/controller-bench`

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::future::try_join_all;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use umpire_bench::{cpu_time, free_port, memory_mib};
use umpire_testkit::kubeapi::KubeApiServer;
use umpire_testkit::nats::NatsServer;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "target/release/umpire")]
    umpire: String,
    #[arg(long, default_value_t = 50)]
    namespaces: usize,
    #[arg(long, default_value_t = 1000)]
    policies: usize,
    /// Run the controller with mimalloc's default purge delay instead of
    /// `MIMALLOC_PURGE_DELAY=0` (what the chart's controller Deployment sets).
    #[arg(long)]
    allocator_defaults: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

fn resource(kind: &str, plural: &str) -> kube::core::ApiResource {
    kube::core::ApiResource {
        group: "umpire.dev".into(),
        version: "v1alpha1".into(),
        api_version: "umpire.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn ready(object: &Value) -> bool {
    object["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

async fn count_ready(api: &Api<kube::api::DynamicObject>) -> anyhow::Result<usize> {
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|o| ready(&serde_json::to_value(o).unwrap_or_default()))
        .count())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = KubeApiServer::start().await?;
    let client = server.client();
    let nats = NatsServer::start()?;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for file in [
        "crds/traceprojects.umpire.dev.yaml",
        "crds/evalpolicies.umpire.dev.yaml",
    ] {
        let crd: Value = serde_yaml::from_str(&std::fs::read_to_string(file).context(file)?)?;
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        crds.patch(
            &name,
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&crd),
        )
        .await?;
    }
    let admin = free_port()?;
    let mut command = Command::new(&args.umpire);
    if !args.allocator_defaults {
        // Freed pages go back to the OS at once: the controller's memory is bursty (a
        // thousand objects arriving together), and a pod's RSS is what its limit judges.
        command.env("MIMALLOC_PURGE_DELAY", "0");
    }
    let mut controller = command
        .args([
            "controller",
            "--no-leader-election",
            "--nats-url",
            &nats.url(),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .env("KUBECONFIG", server.kubeconfig())
        .stdout(Stdio::null())
        .spawn()
        .context("starting umpire controller")?;
    let pid = controller.id();
    let cpu_before = cpu_time(pid)?;

    let projects_api = |ns: &str| {
        Api::<kube::api::DynamicObject>::namespaced_with(
            client.clone(),
            ns,
            &resource("TraceProject", "traceprojects"),
        )
    };
    let policies_api = |ns: &str| {
        Api::<kube::api::DynamicObject>::namespaced_with(
            client.clone(),
            ns,
            &resource("EvalPolicy", "evalpolicies"),
        )
    };
    let started = Instant::now();
    let mut creations = Vec::new();
    for n in 0..args.namespaces {
        let ns = format!("team-{n:02}");
        let project: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "umpire.dev/v1alpha1", "kind": "TraceProject",
            "metadata": {"name": "app", "namespace": ns},
            "spec": {"ingest": {"replicas": 2}, "stream": {"maxBytes": "64Mi"}},
        }))?;
        let api = projects_api(&ns);
        creations.push(async move {
            api.create(&PostParams::default(), &project)
                .await
                .map(|_| ())
        });
    }
    try_join_all(creations).await?;
    let mut creations = Vec::new();
    for p in 0..args.policies {
        let ns = format!("team-{:02}", p % args.namespaces);
        let policy: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "umpire.dev/v1alpha1", "kind": "EvalPolicy",
            "metadata": {"name": format!("policy-{p:04}"), "namespace": ns},
            "spec": {"projectRef": {"name": "app"},
                     "judges": [{"name": "fast", "latency": {"maxMs": 2000}},
                                {"name": "json", "json": {}}]},
        }))?;
        let api = policies_api(&ns);
        creations.push(async move {
            api.create(&PostParams::default(), &policy)
                .await
                .map(|_| ())
        });
    }
    try_join_all(creations).await?;
    let created = started.elapsed();

    let all_projects = Api::<kube::api::DynamicObject>::all_with(
        client.clone(),
        &resource("TraceProject", "traceprojects"),
    );
    let all_policies = Api::<kube::api::DynamicObject>::all_with(
        client.clone(),
        &resource("EvalPolicy", "evalpolicies"),
    );
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let (projects_ready, policies_ready) = loop {
        let p = count_ready(&all_projects).await?;
        let e = count_ready(&all_policies).await?;
        if (p == args.namespaces && e == args.policies) || Instant::now() > deadline {
            break (p, e);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let elapsed = started.elapsed();
    let cpu = cpu_time(pid)? - cpu_before;
    let (rss, peak) = memory_mib(pid)?;
    let _ = controller.kill();
    let _ = controller.wait();
    println!(
        "{} TraceProjects in {} namespaces and {} EvalPolicies created in {:.1}s",
        args.namespaces,
        args.namespaces,
        args.policies,
        created.as_secs_f64()
    );
    println!(
        "Ready: {projects_ready}/{} projects, {policies_ready}/{} policies after {:.1}s",
        args.namespaces,
        args.policies,
        elapsed.as_secs_f64()
    );
    println!(
        "controller ({}): {:.1} CPU-s, RSS {rss:.1} MiB, peak RSS {peak:.1} MiB; API writes {}",
        if args.allocator_defaults {
            "mimalloc defaults"
        } else {
            "MIMALLOC_PURGE_DELAY=0"
        },
        cpu.as_secs_f64(),
        server.writes().len()
    );
    anyhow::ensure!(
        projects_ready == args.namespaces && policies_ready == args.policies,
        "not everything became Ready within {}s",
        args.timeout
    );
    Ok(())
}
