//! A condition per export target on the TraceProject (`export.umpire.dev/<target>`), from
//! the delivery reports ingest replicas keep in the project's export status bucket: here the
//! reports are written through the same store ingest uses, so the controller is seen alone.
#![allow(clippy::unwrap_used)]

mod support;

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::controller::*;
use umpire_api::trace_project::TraceProject;
use umpire_contract::export_status::{DeliveryState, ExportReport, ExportStatusStore};
use umpire_nats::topology::ProjectNames;
use umpire_testkit::wait::eventually;

const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn wait_condition(
    api: &Api<TraceProject>,
    type_: &str,
    wanted: impl Fn(&(String, String, String)) -> bool,
) -> (String, String, String) {
    eventually(&format!("condition {type_}"), WAIT, || async {
        let tp = api.get_opt("bot").await.ok().flatten()?;
        let value = serde_json::to_value(&tp).ok()?;
        let found = condition(&value["status"], type_)?;
        wanted(&found).then_some(found)
    })
    .await
}

fn report(target: &str, signal: &str, member: &str, state: DeliveryState) -> ExportReport {
    ExportReport {
        target: target.into(),
        signal: signal.into(),
        member: member.into(),
        state,
        since_ms: 1_764_615_600_000,
        error: (state == DeliveryState::Failing)
            .then(|| "HTTP 503 Service Unavailable: upstream down".to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_export_target_gets_a_condition_from_the_ingest_reports() {
    let Setup {
        cluster,
        client,
        nats,
        ns,
    } = Setup::new("exports").await;
    let mut controller = Controller::start(
        &cluster,
        &nats,
        "ctl-exports",
        "umpire-system",
        &["--alert-status-interval", "1s"],
    );
    let projects: Api<TraceProject> = Api::namespaced(client.clone(), &ns);
    let mut tp = project("bot", &ns, json!({"replicas": 1}));
    tp.spec.export = Some(
        serde_json::from_value(json!([
            {"name": "phoenix", "otlp": {"endpoint": "http://phoenix.observability:6006"}},
            {"name": "collector", "otlp": {"endpoint": "http://otel-collector.observability:4317", "protocol": "grpc"}},
        ]))
        .unwrap(),
    );
    projects.create(&PostParams::default(), &tp).await.unwrap();

    // No ingest replica has reported yet.
    for target in ["phoenix", "collector"] {
        let (status, reason, _) =
            wait_condition(&projects, &format!("export.umpire.dev/{target}"), |_| true).await;
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("Unknown", "NotReported")
        );
    }

    // Two replicas: one cannot reach Phoenix, both deliver to the collector.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let store = ExportStatusStore::open(&js, &ProjectNames::new(&ns, "bot"), 1)
        .await
        .unwrap();
    for r in [
        report("phoenix", "spans", "ingest-a", DeliveryState::Delivering),
        report("phoenix", "spans", "ingest-b", DeliveryState::Failing),
        report("collector", "spans", "ingest-a", DeliveryState::Delivering),
        report(
            "collector",
            "evaluations",
            "ingest-b",
            DeliveryState::Delivering,
        ),
    ] {
        store.report(&r).await.unwrap();
    }
    let (_, _, message) = wait_condition(&projects, "export.umpire.dev/phoenix", |(s, r, _)| {
        s == "False" && r == "DeliveryFailing"
    })
    .await;
    assert_eq!(
        message,
        "retrying, nothing dropped: spans: HTTP 503 Service Unavailable: upstream down (since 2025-12-01T19:00:00Z, 1 replica)"
    );
    let (_, _, message) = wait_condition(&projects, "export.umpire.dev/collector", |(s, r, _)| {
        s == "True" && r == "Delivering"
    })
    .await;
    assert_eq!(message, "the target accepts evaluations and spans");
    // The project stays Ready: export trouble does not stop ingest.
    let ready = wait_condition(&projects, "Ready", |_| true).await;
    assert_ne!(ready.1, "DeliveryFailing");

    // Phoenix recovers.
    store
        .report(&report(
            "phoenix",
            "spans",
            "ingest-b",
            DeliveryState::Delivering,
        ))
        .await
        .unwrap();
    wait_condition(&projects, "export.umpire.dev/phoenix", |(s, r, _)| {
        s == "True" && r == "Delivering"
    })
    .await;

    // A target removed from the spec loses its condition.
    projects
        .patch(
            "bot",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"export": [
                {"name": "phoenix", "otlp": {"endpoint": "http://phoenix.observability:6006"}}
            ]}})),
        )
        .await
        .unwrap();
    eventually("the collector's condition gone", WAIT, || async {
        let tp = projects.get_opt("bot").await.ok().flatten()?;
        let value = serde_json::to_value(&tp).ok()?;
        condition(&value["status"], "export.umpire.dev/collector")
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(controller.process.terminate(), Some(0));
}
