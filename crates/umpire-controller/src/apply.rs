//! Server-side apply of children with one field manager, and pruning by label.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The one field manager the controller writes with.
pub const FIELD_MANAGER: &str = "umpire-controller";

/// Applies a child (forcing: the controller owns what it declares, so a user's edit of a
/// declared field is reverted — that is drift repair).
pub async fn apply<K>(client: &Client, namespace: &str, object: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
}

/// Deletes the children of one kind that carry `selector` but are no longer desired.
/// Returns the names deleted.
pub async fn prune<K>(
    client: &Client,
    namespace: &str,
    selector: &str,
    keep: &[String],
) -> Result<Vec<String>, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut deleted = Vec::new();
    for existing in api.list(&ListParams::default().labels(selector)).await? {
        let name = existing.name_any();
        if keep.contains(&name) {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(name),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// Prunes the worker NetworkPolicies no longer desired — only while the install manages
/// them: without `--worker-network-policy` the controller has no RBAC for NetworkPolicies
/// (delete leftovers by the managed-by label after turning the option off).
pub async fn network_policies(
    client: &Client,
    namespace: &str,
    selector: &str,
    desired: Option<&k8s_openapi::api::networking::v1::NetworkPolicy>,
) -> Result<Vec<String>, kube::Error> {
    match desired {
        Some(policy) => {
            prune::<k8s_openapi::api::networking::v1::NetworkPolicy>(
                client,
                namespace,
                selector,
                &[policy.name_any()],
            )
            .await
        }
        None => Ok(Vec::new()),
    }
}
