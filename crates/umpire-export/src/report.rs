//! Each pump's delivery state, written to the project's export status bucket when it
//! changes and every [`EXPORT_REPORT_REFRESH`], for the controller's condition per target.
//! Reporting is best effort: a failed write is retried at the next change or refresh and
//! never holds back delivery for long.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use umpire_contract::export_status::{
    DeliveryState, ExportReport, ExportStatusStore, bounded_error,
};
use umpire_nats::topology::EXPORT_REPORT_REFRESH;

/// The longest a report write may hold up its pump.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Reporter {
    store: Option<Arc<ExportStatusStore>>,
    report: ExportReport,
    /// When the report was last written; `None` until the first write lands.
    written: Option<Instant>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Reporter {
    pub fn new(
        store: Option<Arc<ExportStatusStore>>,
        target: &str,
        signal: &str,
        member: &str,
    ) -> Self {
        Self {
            store,
            report: ExportReport {
                target: target.to_owned(),
                signal: signal.to_owned(),
                member: member.to_owned(),
                state: DeliveryState::Started,
                since_ms: now_ms(),
                error: None,
            },
            written: None,
        }
    }

    /// Records `state`. A new state starts a new `since` and keeps its first error, so the
    /// report (and the status built from it) changes only when the state does.
    pub async fn set(&mut self, state: DeliveryState, error: Option<&str>) {
        if state != self.report.state {
            self.report.state = state;
            self.report.since_ms = now_ms();
            self.report.error = error.map(bounded_error);
            self.written = None;
        } else if self.written.is_none() && self.report.error.is_none() {
            self.report.error = error.map(bounded_error);
        }
        self.refresh().await;
    }

    /// Writes the report if it was never written or is due for a refresh.
    pub async fn refresh(&mut self) {
        if self
            .written
            .is_some_and(|at| at.elapsed() < EXPORT_REPORT_REFRESH)
        {
            return;
        }
        let Some(store) = &self.store else { return };
        match tokio::time::timeout(WRITE_TIMEOUT, store.report(&self.report)).await {
            Ok(Ok(())) => self.written = Some(Instant::now()),
            Ok(Err(e)) => {
                tracing::debug!(event = "export_report_failed", target = %self.report.target, error = %e, "writing the export status failed; retried later");
            }
            Err(_) => {
                tracing::debug!(event = "export_report_failed", target = %self.report.target, "writing the export status timed out; retried later");
            }
        }
    }
}
