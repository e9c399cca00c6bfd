//! `kubectl` (1.32 on this machine) against the emulator: server-side apply of the CRDs and
//! the examples, then `get` with the CRDs' printer columns.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use umpire_testkit::kubeapi::KubeApiServer;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn kubectl(server: &KubeApiServer, args: &[&str]) -> (bool, String) {
    server.kubectl(repo(), args).expect("kubectl is installed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_server_side_and_prints_columns() {
    let server = KubeApiServer::start().await.unwrap();
    let (ok, out) = kubectl(&server, &["apply", "--server-side", "-f", "crds/"]);
    assert!(ok, "{out}");
    assert!(out.contains("customresourcedefinition.apiextensions.k8s.io/traceprojects.umpire.dev serverside-applied"), "{out}");
    let (ok, out) = kubectl(
        &server,
        &["apply", "--server-side", "-f", "manifests/examples/"],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("traceproject.umpire.dev/support-bot serverside-applied"),
        "{out}"
    );
    let status = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Available","message":"ok","lastTransitionTime":"2026-11-22T06:00:00Z"}],"endpoints":{"grpc":"support-bot-ingest.ml-apps:4317","http":"http://support-bot-ingest.ml-apps:4318"},"ingestReplicasReady":3}}"#;
    let (ok, out) = kubectl(
        &server,
        &[
            "patch",
            "tp",
            "support-bot",
            "-n",
            "ml-apps",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
    );
    assert!(ok, "{out}");

    let (ok, out) = kubectl(&server, &["get", "tp,ep", "-A", "-o", "wide"]);
    assert!(ok, "{out}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "NAMESPACE",
            "NAME",
            "READY",
            "REASON",
            "OTLP-GRPC",
            "OTLP-HTTP",
            "REPLICAS",
            "AGE"
        ],
        "{out}"
    );
    assert_eq!(
        lines[1][..7],
        [
            "ml-apps",
            "traceproject.umpire.dev/support-bot",
            "True",
            "Available",
            "support-bot-ingest.ml-apps:4317",
            "http://support-bot-ingest.ml-apps:4318",
            "3"
        ],
        "{out}"
    );
    assert!(
        out.contains("PROJECT") && out.contains("JUDGES") && out.contains("FIRING"),
        "{out}"
    );
    assert!(
        out.contains("evalpolicy.umpire.dev/answer-quality"),
        "{out}"
    );

    // Short names and built-ins from discovery; the ConfigMap example was applied too.
    let (ok, out) = kubectl(&server, &["get", "cm", "-n", "ml-apps", "-o", "name"]);
    assert!(ok, "{out}");
    assert!(out.contains("configmap/"), "{out}");
    // Re-applying unchanged manifests is a no-op.
    let before = server.resource_version();
    let (ok, out) = kubectl(
        &server,
        &["apply", "--server-side", "-f", "manifests/examples/"],
    );
    assert!(ok, "{out}");
    assert_eq!(
        server.resource_version(),
        before,
        "a no-op apply changed something"
    );
}

/// Events written through `events.k8s.io/v1` (kube-runtime's recorder) show in
/// `kubectl get events`, which reads the core `v1` view, with kubectl's field selectors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_events_lists_events_written_through_events_k8s_io() {
    let server = KubeApiServer::start().await.unwrap();
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(server.client(), "default");
    let event: k8s_openapi::api::events::v1::Event = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bot.17a1", "namespace": "default"},
        "eventTime": "2026-11-30T21:00:00.000000Z",
        "regarding": {"apiVersion": "umpire.dev/v1alpha1", "kind": "TraceProject", "name": "bot", "namespace": "default"},
        "reason": "IngestUnavailable", "note": "0/2 ingest pods ready", "type": "Warning",
        "action": "Reconcile", "reportingController": "umpire-controller", "reportingInstance": "ctl-a"
    }))
    .unwrap();
    events
        .create(&kube::api::PostParams::default(), &event)
        .await
        .unwrap();
    let (ok, out) = kubectl(&server, &["get", "events", "-n", "default"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("IngestUnavailable") && out.contains("traceproject/bot"),
        "{out}"
    );
    assert!(out.contains("0/2 ingest pods ready"), "{out}");
    let (ok, out) = kubectl(
        &server,
        &[
            "get",
            "events",
            "-n",
            "default",
            "--field-selector",
            "involvedObject.name=other",
        ],
    );
    assert!(ok && !out.contains("IngestUnavailable"), "{out}");
}

/// kubectl sends `create namespace|configmap|secret|serviceaccount` as protobuf (a real
/// server decodes it); it does not retry in JSON when refused, so the emulator must read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_sends_protobuf_and_it_is_understood() {
    let server = KubeApiServer::start().await.unwrap();
    for args in [
        vec!["create", "namespace", "team-a"],
        vec![
            "create",
            "configmap",
            "settings",
            "-n",
            "team-a",
            "--from-literal=mode=fast",
        ],
        vec![
            "create",
            "secret",
            "generic",
            "token",
            "-n",
            "team-a",
            "--from-literal=token=s3cret",
        ],
        vec!["create", "serviceaccount", "robot", "-n", "team-a"],
    ] {
        let (ok, out) = kubectl(&server, &args);
        assert!(ok, "kubectl {args:?}: {out}");
    }
    let (ok, out) = kubectl(
        &server,
        &[
            "get",
            "configmap",
            "settings",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data.mode}",
        ],
    );
    assert!(ok && out.trim() == "fast", "{out}");
    let (ok, out) = kubectl(
        &server,
        &[
            "get",
            "secret",
            "token",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data.token}",
        ],
    );
    assert!(ok && out.trim() == "czNjcmV0", "{out}");
    let (ok, out) = kubectl(
        &server,
        &[
            "get",
            "serviceaccount",
            "robot",
            "-n",
            "team-a",
            "-o",
            "name",
        ],
    );
    assert!(ok && out.contains("serviceaccount/robot"), "{out}");
}
