//! One condition per export target on the TraceProject (`export.umpire.dev/<target>`),
//! built from the delivery reports the ingest replicas keep in NATS KV
//! ([`umpire_contract::export_status`]). Reports carry the time their state began, so a
//! condition changes only when some replica's delivery state does.

use async_nats::jetstream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use umpire_contract::export_status::{DeliveryState, ExportReport, ExportStatusStore};
use umpire_nats::topology::ProjectNames;

use crate::status::Observed;
use crate::streams::bounded;

/// Condition types of export targets start with this.
pub const CONDITION_PREFIX: &str = "export.umpire.dev/";

pub fn condition_type(target: &str) -> String {
    format!("{CONDITION_PREFIX}{target}")
}

/// The conditions for `targets`. When the reports cannot be read (NATS unreachable), the
/// previous conditions stand rather than flapping to Unknown.
pub async fn conditions(
    js: &jetstream::Context,
    names: &ProjectNames,
    targets: &[String],
    previous: &[Condition],
) -> Vec<Observed> {
    if targets.is_empty() {
        return Vec::new();
    }
    let reports = match bounded(
        "opening the export status",
        ExportStatusStore::open_existing(js, names),
    )
    .await
    {
        Ok(None) => Ok(Vec::new()),
        Ok(Some(store)) => bounded("reading the export status", store.load()).await,
        Err(e) => Err(e),
    };
    match reports {
        Ok(reports) => from_reports(targets, &reports),
        Err(e) => {
            tracing::warn!(event = "export_status_unreadable", project = %names.project(), error = %e, "keeping the export conditions");
            targets
                .iter()
                .map(|target| {
                    let type_ = condition_type(target);
                    match previous.iter().find(|c| c.type_ == type_) {
                        Some(c) => Observed {
                            type_,
                            ok: match c.status.as_str() {
                                "True" => Some(true),
                                "False" => Some(false),
                                _ => None,
                            },
                            reason: c.reason.clone(),
                            message: c.message.clone(),
                        },
                        None => Observed::unknown(
                            &type_,
                            "StatusUnreadable",
                            "the export status in NATS could not be read",
                        ),
                    }
                })
                .collect()
        }
    }
}

fn since(report: &ExportReport) -> String {
    i64::try_from(report.since_ms)
        .ok()
        .and_then(|ms| k8s_openapi::jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// What went wrong on the replicas in `state`, one line per signal (the earliest report
/// of each), e.g. `spans: HTTP 503 … (since 2026-12-01T19:00:00Z, 2 replicas)`.
fn problems(reports: &[&ExportReport], state: DeliveryState) -> Option<String> {
    let mut matching: Vec<&&ExportReport> = reports.iter().filter(|r| r.state == state).collect();
    if matching.is_empty() {
        return None;
    }
    matching.sort_by(|a, b| (&a.signal, a.since_ms).cmp(&(&b.signal, b.since_ms)));
    let mut lines = Vec::new();
    let mut signal: Option<&str> = None;
    for report in &matching {
        if signal == Some(report.signal.as_str()) {
            continue;
        }
        signal = Some(&report.signal);
        let replicas = matching
            .iter()
            .filter(|r| r.signal == report.signal)
            .count();
        lines.push(format!(
            "{}: {} (since {}, {} replica{})",
            report.signal,
            report.error.as_deref().unwrap_or("no detail"),
            since(report),
            replicas,
            if replicas == 1 { "" } else { "s" }
        ));
    }
    Some(lines.join("; "))
}

/// One condition per target, worst state first: invalid, failing, rejecting; then
/// delivering or set up; Unknown when no replica reported on the target.
pub fn from_reports(targets: &[String], reports: &[ExportReport]) -> Vec<Observed> {
    targets
        .iter()
        .map(|target| {
            let type_ = condition_type(target);
            let mine: Vec<&ExportReport> = reports.iter().filter(|r| &r.target == target).collect();
            if let Some(message) = problems(&mine, DeliveryState::Invalid) {
                return Observed::new(&type_, false, "TargetInvalid", message);
            }
            if let Some(message) = problems(&mine, DeliveryState::Failing) {
                return Observed::new(
                    &type_,
                    false,
                    "DeliveryFailing",
                    format!("retrying, nothing dropped: {message}"),
                );
            }
            if let Some(message) = problems(&mine, DeliveryState::Rejecting) {
                return Observed::new(&type_, false, "ItemsRejected", message);
            }
            let mut delivering: Vec<&str> = mine
                .iter()
                .filter(|r| r.state == DeliveryState::Delivering)
                .map(|r| r.signal.as_str())
                .collect();
            delivering.sort_unstable();
            delivering.dedup();
            if !delivering.is_empty() {
                return Observed::new(
                    &type_,
                    true,
                    "Delivering",
                    format!("the target accepts {}", delivering.join(" and ")),
                );
            }
            if !mine.is_empty() {
                return Observed::new(&type_, true, "Idle", "set up; nothing sent yet");
            }
            Observed::unknown(
                &type_,
                "NotReported",
                "no ingest replica has reported on this target yet",
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(signal: &str, member: &str, state: DeliveryState, since_ms: u64) -> ExportReport {
        ExportReport {
            target: "phoenix".into(),
            signal: signal.into(),
            member: member.into(),
            state,
            since_ms,
            error: (state != DeliveryState::Delivering).then(|| "HTTP 503".to_owned()),
        }
    }

    fn one(reports: &[ExportReport]) -> Observed {
        from_reports(&["phoenix".into()], reports).remove(0)
    }

    #[test]
    fn the_worst_replica_decides_and_the_message_is_stable() {
        let unreported = one(&[]);
        assert_eq!(
            (unreported.ok, unreported.reason.as_str()),
            (None, "NotReported")
        );
        assert_eq!(unreported.type_, "export.umpire.dev/phoenix");

        let delivering = one(&[
            report("spans", "a", DeliveryState::Delivering, 1),
            report("evaluations", "b", DeliveryState::Delivering, 2),
            report("spans", "b", DeliveryState::Started, 3),
        ]);
        assert_eq!(delivering.ok, Some(true));
        assert_eq!(
            delivering.message,
            "the target accepts evaluations and spans"
        );

        let failing = one(&[
            report("spans", "a", DeliveryState::Delivering, 1),
            report("spans", "b", DeliveryState::Failing, 1_764_615_600_000),
            report("spans", "c", DeliveryState::Failing, 1_764_615_660_000),
        ]);
        assert_eq!(
            (failing.ok, failing.reason.as_str()),
            (Some(false), "DeliveryFailing")
        );
        assert_eq!(
            failing.message,
            "retrying, nothing dropped: spans: HTTP 503 (since 2025-12-01T19:00:00Z, 2 replicas)"
        );

        let invalid = one(&[
            report("spans", "a", DeliveryState::Failing, 1),
            report("setup", "a", DeliveryState::Invalid, 1),
        ]);
        assert_eq!(invalid.reason, "TargetInvalid");

        let idle = one(&[report("spans", "a", DeliveryState::Started, 1)]);
        assert_eq!((idle.ok, idle.reason.as_str()), (Some(true), "Idle"));
    }
}
