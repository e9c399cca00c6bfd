//! Secrets by consent. A spec can name Secrets whose values the workers send on — a judge's
//! API key as a bearer token, a PagerDuty routing key, export headers — to URLs the spec
//! chooses. Without consent, anyone allowed to create an EvalPolicy could have any Secret of
//! the namespace sent to a server of their choice. So a Secret is mounted only when it
//! carries `umpire.dev/allow-reference: "true"`, set by whoever owns it. The controller reads
//! Secrets' metadata only (`PartialObjectMetadata`; values are never requested).

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde::Serialize;

use crate::children::References;

pub const ALLOW_REFERENCE_LABEL: &str = "umpire.dev/allow-reference";
/// How often a resource waiting for consent looks again (Secrets are not watched: that
/// would need list/watch on every Secret of the cluster).
pub const RECHECK: Duration = Duration::from_secs(10);

/// Why the Secrets `spec` names may not be mounted, or `None` when every one consents.
pub async fn refusal(
    client: &kube::Client,
    namespace: &str,
    spec: &impl Serialize,
) -> Result<Option<String>, kube::Error> {
    let references = References::find(&serde_json::to_value(spec).unwrap_or_default());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut problems = Vec::new();
    for name in references.secrets.keys() {
        match secrets.get_metadata_opt(name).await? {
            None => problems.push(format!("Secret {namespace}/{name} does not exist")),
            Some(secret) if !consents(secret.metadata.labels.as_ref()) => problems.push(format!(
                "Secret {namespace}/{name} is not labelled {ALLOW_REFERENCE_LABEL}=true (its owner consents with `kubectl -n {namespace} label secret {name} {ALLOW_REFERENCE_LABEL}=true`)"
            )),
            Some(_) => {}
        }
    }
    Ok((!problems.is_empty()).then(|| problems.join("; ")))
}

fn consents(labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    labels
        .and_then(|l| l.get(ALLOW_REFERENCE_LABEL))
        .is_some_and(|v| v == "true")
}
