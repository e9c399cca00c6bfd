//! Readiness as a set of named checks; `/readyz` is 200 only when all pass.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<&'static str, Option<String>>>>,
}

impl Readiness {
    /// Registers a check, initially failing with `reason`.
    pub fn register(&self, name: &'static str, reason: &str) {
        self.set_failing(name, reason);
    }

    pub fn set_ok(&self, name: &'static str) {
        if let Ok(mut checks) = self.checks.lock() {
            checks.insert(name, None);
        }
    }

    pub fn set_failing(&self, name: &'static str, reason: &str) {
        if let Ok(mut checks) = self.checks.lock() {
            checks.insert(name, Some(reason.to_owned()));
        }
    }

    /// `Ok` when ready, else the failing checks as `name: reason` lines.
    pub fn status(&self) -> Result<(), String> {
        let checks = self
            .checks
            .lock()
            .map_err(|_| "readiness state poisoned".to_owned())?;
        let failing: Vec<String> = checks
            .iter()
            .filter_map(|(name, reason)| reason.as_ref().map(|r| format!("{name}: {r}")))
            .collect();
        if failing.is_empty() {
            Ok(())
        } else {
            Err(failing.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_passes() {
        let readiness = Readiness::default();
        assert_eq!(readiness.status(), Ok(()));
        readiness.register("nats", "not connected");
        readiness.register("streams", "not created");
        assert_eq!(
            readiness.status(),
            Err("nats: not connected\nstreams: not created".into())
        );
        readiness.set_ok("nats");
        readiness.set_ok("streams");
        assert_eq!(readiness.status(), Ok(()));
    }
}
