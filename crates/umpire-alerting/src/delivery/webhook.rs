//! Generic webhook bodies and their HMAC signatures.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use umpire_core::alert::notification::{Action, Notification};

use super::rfc3339;

/// The documented body (README, "Webhook body"): version `umpire.dev/alert/v1`.
pub fn body(n: &Notification) -> Value {
    json!({
        "version": "umpire.dev/alert/v1",
        "id": n.id(),
        "status": match n.action { Action::Trigger => "firing", Action::Resolve => "resolved" },
        "reminder": n.repeat,
        "dedupKey": n.dedup_key,
        "namespace": n.namespace,
        "project": n.project,
        "policy": n.policy,
        "rule": n.rule,
        "group": n.group_values,
        "severity": n.severity.as_str(),
        "metric": n.metric,
        "value": n.value,
        "threshold": n.threshold,
        "baseline": n.baseline,
        "samples": n.samples,
        "window": n.window,
        "summary": n.summary,
        "condition": n.description,
        "firingSince": rfc3339(n.since_unix_nano),
        "at": rfc3339(n.at_unix_nano),
        "dueAt": rfc3339(n.due_unix_nano),
        "exampleTraceIds": n.example_trace_ids.iter().take(5).collect::<Vec<_>>(),
    })
}

/// `sha256=<hex HMAC-SHA256 of the body>`, for the `X-Umpire-Signature` header.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
