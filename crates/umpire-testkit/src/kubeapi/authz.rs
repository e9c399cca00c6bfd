//! Authentication and RBAC authorisation, as far as the tests need them: a request with the
//! bearer token `serviceaccount:<namespace>:<name>` acts as that ServiceAccount and is
//! authorised against the ClusterRoles, Roles and their bindings stored in the emulator
//! (apiGroups, resources incl. `resource/subresource`, verbs, resourceNames, `*`); a request
//! without a token is the cluster admin (the tests' own client, kubectl). Denials answer 403
//! with the real server's message and are recorded.

use serde_json::Value;

use super::select::{FieldSelector, LabelSelector};
use super::store::{ApiError, Store};

const TOKEN_PREFIX: &str = "serviceaccount:";

/// A ServiceAccount a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccount {
    /// The bearer token the emulator maps to this ServiceAccount.
    pub fn token(&self) -> String {
        format!("{TOKEN_PREFIX}{}:{}", self.namespace, self.name)
    }

    pub fn from_token(token: &str) -> Option<Self> {
        let rest = token.strip_prefix(TOKEN_PREFIX)?;
        let (namespace, name) = rest.split_once(':')?;
        Some(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    pub fn user_name(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

/// What a request asks to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    /// `plural` or `plural/subresource`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Attributes {
    /// The message a real API server gives when refusing.
    pub fn forbidden(&self, who: &ServiceAccount) -> ApiError {
        let (plural, sub) = match self.resource.split_once('/') {
            Some((p, s)) => (p, Some(s)),
            None => (self.resource.as_str(), None),
        };
        let qualified = if self.group.is_empty() {
            plural.to_owned()
        } else {
            format!("{plural}.{}", self.group)
        };
        let object = match &self.name {
            Some(name) => format!("{qualified} \"{name}\""),
            None => qualified,
        };
        let scope = match &self.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_owned(),
        };
        let resource = match sub {
            Some(sub) => format!("resource \"{plural}/{sub}\""),
            None => format!("resource \"{plural}\""),
        };
        ApiError::new(
            403,
            "Forbidden",
            format!(
                "{object} is forbidden: User \"{}\" cannot {} {resource} in API group \"{}\" {scope}",
                who.user_name(),
                self.verb,
                self.group
            ),
        )
    }
}

/// The RBAC verb of a request.
pub fn verb(method: &str, named: bool, watch: bool) -> &'static str {
    match (method, named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn rule_allows(rule: &Value, request: &Attributes) -> bool {
    let has = |field: &str, wanted: &str| {
        strings(&rule[field])
            .iter()
            .any(|v| *v == "*" || *v == wanted)
    };
    let names = strings(&rule["resourceNames"]);
    has("apiGroups", &request.group)
        && has("resources", &request.resource)
        && has("verbs", &request.verb)
        && (names.is_empty() || request.name.as_deref().is_some_and(|n| names.contains(&n)))
}

fn objects(store: &Store, plural: &str, namespace: Option<&str>) -> Vec<Value> {
    let Ok(t) = store.resolve("rbac.authorization.k8s.io", "v1", plural) else {
        return Vec::new();
    };
    let all = LabelSelector::parse("").unwrap_or_default();
    let none = FieldSelector::parse("").unwrap_or_default();
    store.list(&t, namespace, &all, &none, None, None).0
}

fn binds(binding: &Value, who: &ServiceAccount) -> bool {
    binding["subjects"].as_array().is_some_and(|subjects| {
        subjects.iter().any(|s| {
            s["kind"] == "ServiceAccount"
                && s["name"] == who.name.as_str()
                && s["namespace"] == who.namespace.as_str()
        })
    })
}

/// The rules of the role a binding refers to (`namespace` for a RoleBinding's Role).
fn role_rules(store: &Store, binding: &Value, namespace: Option<&str>) -> Vec<Value> {
    let name = binding["roleRef"]["name"].as_str().unwrap_or_default();
    let (plural, ns) = match binding["roleRef"]["kind"].as_str() {
        Some("ClusterRole") => ("clusterroles", None),
        _ => ("roles", namespace),
    };
    objects(store, plural, ns)
        .into_iter()
        .find(|r| r["metadata"]["name"] == name)
        .and_then(|r| r["rules"].as_array().cloned())
        .unwrap_or_default()
}

/// Whether the stored RBAC lets `who` do `request`.
pub fn allowed(store: &Store, who: &ServiceAccount, request: &Attributes) -> bool {
    let cluster_wide = objects(store, "clusterrolebindings", None)
        .into_iter()
        .filter(|b| binds(b, who))
        .any(|b| {
            role_rules(store, &b, None)
                .iter()
                .any(|r| rule_allows(r, request))
        });
    if cluster_wide {
        return true;
    }
    let Some(namespace) = request.namespace.as_deref() else {
        return false;
    };
    objects(store, "rolebindings", Some(namespace))
        .into_iter()
        .filter(|b| binds(b, who))
        .any(|b| {
            role_rules(store, &b, Some(namespace))
                .iter()
                .any(|r| rule_allows(r, request))
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_match_groups_resources_verbs_and_names() {
        let request = Attributes {
            verb: "patch".into(),
            group: "apps".into(),
            resource: "deployments".into(),
            namespace: Some("shop".into()),
            name: Some("bot-ingest".into()),
        };
        assert!(rule_allows(
            &json!({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]}),
            &request
        ));
        assert!(rule_allows(
            &json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
            &request
        ));
        assert!(!rule_allows(
            &json!({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}),
            &request
        ));
        assert!(!rule_allows(
            &json!({"apiGroups": ["apps"], "resources": ["deployments/status"], "verbs": ["patch"]}),
            &request
        ));
        assert!(!rule_allows(
            &json!({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"], "resourceNames": ["other"]}),
            &request
        ));
    }

    #[test]
    fn denials_read_like_the_real_server() {
        let who = ServiceAccount::from_token("serviceaccount:umpire-system:umpire").unwrap();
        let request = Attributes {
            verb: "list".into(),
            group: "".into(),
            resource: "secrets".into(),
            namespace: None,
            name: None,
        };
        assert_eq!(
            request.forbidden(&who).message,
            "secrets is forbidden: User \"system:serviceaccount:umpire-system:umpire\" cannot list resource \"secrets\" in API group \"\" at the cluster scope"
        );
    }
}
