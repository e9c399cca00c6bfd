//! Each emulator behaviour the controller relies on, through the real `kube::Client`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Discovery;
use serde_json::json;
use umpire_testkit::kubeapi::{EmulatorOptions, KubeApiServer};
use umpire_testkit::wait::eventually;

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels.iter().cloned().collect::<BTreeMap<_, _>>()},
        "data": {"k": "v"},
    }))
    .unwrap()
}

async fn install_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in [
        "traceprojects.umpire.dev.yaml",
        "evalpolicies.umpire.dev.yaml",
    ] {
        let path = format!("{}/../../crds/{file}", env!("CARGO_MANIFEST_DIR"));
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        kube::runtime::wait::await_condition(
            crds.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        )
        .await
        .unwrap();
    }
}

fn trace_projects(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("umpire.dev", "v1alpha1", "TraceProject");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

fn project(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "umpire.dev/v1alpha1", "kind": "TraceProject",
        "metadata": {"name": name}, "spec": {"ingest": {"replicas": 1}},
    }))
    .unwrap()
}

fn rv(object: &impl kube::Resource) -> u64 {
    object
        .meta()
        .resource_version
        .as_ref()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn discovery_serves_builtins_and_crds_registered_at_runtime() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.client();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    install_crds(&client).await;
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let umpire = discovery
        .get("umpire.dev")
        .expect("umpire.dev is discovered");
    let kinds: Vec<String> = umpire
        .recommended_resources()
        .into_iter()
        .map(|(r, _)| r.kind)
        .collect();
    assert!(kinds.contains(&"TraceProject".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"EvalPolicy".to_owned()), "{kinds:?}");
    assert!(discovery.get("apps").is_some() && discovery.get("coordination.k8s.io").is_some());
}

#[tokio::test]
async fn writes_follow_optimistic_concurrency_generation_and_status_rules() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.client();
    install_crds(&client).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = maps
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let duplicate = maps
        .create(&PostParams::default(), &config_map("a", &[]))
        .await;
    assert!(
        matches!(duplicate, Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists")
    );
    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh.data = Some([("k".to_owned(), "w".to_owned())].into());
    maps.replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    stale.data = Some([("k".to_owned(), "x".to_owned())].into());
    let conflict = maps.replace("a", &PostParams::default(), &stale).await;
    assert!(
        matches!(conflict, Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "Conflict")
    );
    assert!(matches!(maps.get("missing").await, Err(kube::Error::Api(e)) if e.code == 404));

    let projects = trace_projects(&client, "default");
    let p = projects
        .create(&PostParams::default(), &project("p"))
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(1));
    // Status through the subresource: generation unchanged.
    let status = json!({"status": {"observedGeneration": 1, "stream": "S"}});
    let p = projects
        .patch_status("p", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(p.data["status"]["stream"], "S");
    assert_eq!(p.metadata.generation, Some(1));
    // The main endpoint ignores status; a metadata change does not bump generation.
    let p = projects
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}, "status": {"stream": "T"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.data["status"]["stream"], "S");
    assert_eq!(p.metadata.generation, Some(1));
    let p = projects
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ingest": {"replicas": 2}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(2));
    // A write that changes nothing does not bump the resourceVersion.
    let again = projects
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ingest": {"replicas": 2}}})),
        )
        .await
        .unwrap();
    assert_eq!(rv(&again), rv(&p));
}

#[tokio::test]
async fn lists_filter_by_selectors_and_paginate() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.client();
    for (ns, name, tier) in [
        ("a", "one", "ingest"),
        ("a", "two", "eval"),
        ("b", "three", "ingest"),
        ("b", "four", "ingest"),
        ("b", "five", "eval"),
    ] {
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        maps.create(
            &PostParams::default(),
            &config_map(name, &[("tier", tier), ("app", "umpire")]),
        )
        .await
        .unwrap();
    }
    let all: Api<ConfigMap> = Api::all(client.clone());
    let ingest = all
        .list(&ListParams::default().labels("tier=ingest"))
        .await
        .unwrap();
    assert_eq!(ingest.items.len(), 3);
    let set = all
        .list(&ListParams::default().labels("tier in (eval),app"))
        .await
        .unwrap();
    assert_eq!(set.items.len(), 2);
    let by_name = all
        .list(&ListParams::default().fields("metadata.name=four"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let in_a: Api<ConfigMap> = Api::namespaced(client.clone(), "a");
    assert_eq!(
        in_a.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );

    let mut names = Vec::new();
    let mut params = ListParams::default().limit(2);
    loop {
        let page = all.list(&params).await.unwrap();
        assert!(page.items.len() <= 2);
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(names, ["one", "two", "five", "four", "three"]);
    assert!(page_rv(&all).await > 0);
}

async fn page_rv(api: &Api<ConfigMap>) -> u64 {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn watches_resume_from_a_version_send_bookmarks_and_expire() {
    let server = KubeApiServer::start_with(EmulatorOptions {
        history_limit: 5,
        bookmark_interval: Duration::from_millis(100),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let client = server.client();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = maps
        .create(
            &PostParams::default(),
            &config_map("w1", &[("watch", "yes")]),
        )
        .await
        .unwrap();
    maps.create(
        &PostParams::default(),
        &config_map("w2", &[("watch", "no")]),
    )
    .await
    .unwrap();
    maps.delete("w1", &DeleteParams::default()).await.unwrap();

    // From the first object's version: the rest of the history, filtered by labels.
    let from = rv(&first).to_string();
    let params = WatchParams::default().labels("watch=yes").timeout(1);
    let events: Vec<WatchEvent<ConfigMap>> = maps
        .watch(&params, &from)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Bookmark(_) => "BOOKMARK",
            WatchEvent::Error(_) => "ERROR",
        })
        .filter(|k| *k != "BOOKMARK")
        .collect();
    assert_eq!(
        kinds,
        ["DELETED"],
        "timeoutSeconds ended the stream after the replay"
    );

    // Bookmarks arrive when allowed.
    let mut stream = maps
        .watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default()
            }
            .timeout(5),
            &from,
        )
        .await
        .unwrap()
        .boxed();
    let mut saw_bookmark = false;
    while let Some(event) = stream.next().await {
        if let WatchEvent::Bookmark(b) = event.unwrap() {
            assert!(b.metadata.resource_version.parse::<u64>().unwrap() >= rv(&first));
            saw_bookmark = true;
            break;
        }
    }
    assert!(saw_bookmark);

    // Push the first version out of the 5-change history: 410 Gone.
    for i in 0..6 {
        maps.create(&PostParams::default(), &config_map(&format!("x{i}"), &[]))
            .await
            .unwrap();
    }
    let mut expired = maps
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();
    match expired.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn kube_runtime_watcher_follows_changes() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.client();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let (reader, writer) = kube::runtime::reflector::store();
    let stream = kube::runtime::reflector(
        writer,
        kube::runtime::watcher(maps.clone(), kube::runtime::watcher::Config::default()),
    );
    tokio::spawn(stream.for_each(|_| async {}));
    maps.create(&PostParams::default(), &config_map("r1", &[]))
        .await
        .unwrap();
    maps.create(&PostParams::default(), &config_map("r2", &[]))
        .await
        .unwrap();
    maps.delete("r1", &DeleteParams::default()).await.unwrap();
    eventually(
        "the reflector holds only r2",
        Duration::from_secs(10),
        || {
            let names: Vec<String> = reader
                .state()
                .iter()
                .map(|c| c.metadata.name.clone().unwrap())
                .collect();
            async move { (names == ["r2"]).then_some(()) }
        },
    )
    .await;
}

#[tokio::test]
async fn patches_merge_json_with_test_and_server_side_apply_with_conflicts() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.client();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"a": "1", "b": "2"}});
    let cm = maps
        .patch(
            "s",
            &PatchParams::apply("controller"),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    let managers = cm.metadata.managed_fields.clone().unwrap();
    assert_eq!(managers[0].manager.as_deref(), Some("controller"));
    assert_eq!(managers[0].operation.as_deref(), Some("Apply"));

    // Another manager changing a controller-owned field conflicts; forced, it takes it.
    let user = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"a": "9"}});
    let conflict = maps
        .patch("s", &PatchParams::apply("user"), &Patch::Apply(&user))
        .await;
    assert!(
        matches!(conflict, Err(kube::Error::Api(e)) if e.code == 409 && e.message.contains("controller"))
    );
    let cm = maps
        .patch(
            "s",
            &PatchParams::apply("user").force(),
            &Patch::Apply(&user),
        )
        .await
        .unwrap();
    assert_eq!(cm.data.as_ref().unwrap()["a"], "9");

    // A field the controller stops applying disappears.
    let fewer = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"a": "9"}});
    let cm = maps
        .patch(
            "s",
            &PatchParams::apply("controller"),
            &Patch::Apply(&fewer),
        )
        .await
        .unwrap();
    assert!(!cm.data.as_ref().unwrap().contains_key("b"));

    // JSON patch with a passing and a failing `test`.
    let ok = json_patch::Patch(
        serde_json::from_value(json!([
            {"op": "test", "path": "/data/a", "value": "9"},
            {"op": "add", "path": "/data/c", "value": "3"}
        ]))
        .unwrap(),
    );
    let cm = maps
        .patch("s", &PatchParams::default(), &Patch::<()>::Json(ok))
        .await
        .unwrap();
    assert_eq!(cm.data.as_ref().unwrap()["c"], "3");
    let failing = json_patch::Patch(
        serde_json::from_value(json!([
            {"op": "test", "path": "/data/a", "value": "nope"},
            {"op": "remove", "path": "/data/c"}
        ]))
        .unwrap(),
    );
    let refused = maps
        .patch("s", &PatchParams::default(), &Patch::<()>::Json(failing))
        .await;
    assert!(matches!(refused, Err(kube::Error::Api(e)) if e.code == 422));
    let merged = maps
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"c": null, "d": "4"}})),
        )
        .await
        .unwrap();
    let data = merged.data.unwrap();
    assert!(!data.contains_key("c") && data["d"] == "4");
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owners_collect_dependents() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.client();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut held = config_map("held", &[]);
    held.metadata.finalizers = Some(vec!["umpire.dev/cleanup".into()]);
    maps.create(&PostParams::default(), &held).await.unwrap();
    maps.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = maps.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    maps.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(maps.get_opt("held").await.unwrap().is_none());

    let owner = maps
        .create(&PostParams::default(), &config_map("owner", &[]))
        .await
        .unwrap();
    let reference = json!([{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
        "uid": owner.metadata.uid.clone().unwrap(), "controller": true
    }]);
    for child in ["child-1", "child-2"] {
        let mut c = config_map(child, &[]);
        c.metadata.owner_references = Some(serde_json::from_value(reference.clone()).unwrap());
        maps.create(&PostParams::default(), &c).await.unwrap();
    }
    maps.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    assert!(maps.get_opt("child-1").await.unwrap().is_none());
    assert!(maps.get_opt("child-2").await.unwrap().is_none());

    let owner = maps
        .create(&PostParams::default(), &config_map("owner2", &[]))
        .await
        .unwrap();
    let mut orphan = config_map("orphan", &[]);
    orphan.metadata.owner_references = Some(
        serde_json::from_value(json!([{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner2",
            "uid": owner.metadata.uid.clone().unwrap()
        }]))
        .unwrap(),
    );
    maps.create(&PostParams::default(), &orphan).await.unwrap();
    maps.delete("owner2", &DeleteParams::orphan())
        .await
        .unwrap();
    let kept = maps.get("orphan").await.unwrap();
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn deployments_report_ready_replicas_on_demand() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.client();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    }))
    .unwrap();
    server.set_deployments_ready(false);
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let status = deployments.get("d").await.unwrap().status.unwrap();
    assert_eq!((status.replicas, status.ready_replicas), (Some(3), Some(0)));
    server.set_deployments_ready(true);
    let d = deployments.get("d").await.unwrap();
    let status = d.status.unwrap();
    assert_eq!(status.ready_replicas, Some(3));
    assert_eq!(status.observed_generation, d.metadata.generation);
}

#[tokio::test]
async fn metadata_only_requests_get_partial_objects() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.client();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    maps.create(&PostParams::default(), &config_map("m", &[("a", "b")]))
        .await
        .unwrap();
    let metadata: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::namespaced(client.clone(), "default");
    let list = metadata.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("m"));
    // The raw answer carries no data, only metadata.
    let request = http::Request::get("/api/v1/namespaces/default/configmaps")
        .header(
            "accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )
        .body(Vec::new())
        .unwrap();
    let raw: serde_json::Value = client.request(request).await.unwrap();
    assert_eq!(raw["kind"], "PartialObjectMetadataList");
    assert!(raw["items"][0].get("data").is_none());
    assert_eq!(raw["items"][0]["metadata"]["labels"]["a"], "b");
}

/// Protobuf bodies of types the emulator does not decode get 415 Unsupported Media Type, as
/// a real server answers for what it cannot decode (the types kubectl sends as protobuf are
/// decoded: `tests/kubectl.rs`).
#[tokio::test]
async fn protobuf_writes_of_other_types_get_415() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.client();
    let request = http::Request::post("/apis/apps/v1/namespaces/default/deployments")
        .header("content-type", "application/vnd.kubernetes.protobuf")
        .header(
            "accept",
            "application/vnd.kubernetes.protobuf, application/json",
        )
        .body(b"k8s\0\x0a\x15\x0a\x07apps/v1\x12\x0aDeployment".to_vec())
        .unwrap();
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    // The same object as JSON is accepted.
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    maps.create(&PostParams::default(), &config_map("fallback", &[]))
        .await
        .unwrap();
}
