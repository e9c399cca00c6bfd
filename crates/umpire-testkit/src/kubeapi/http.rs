//! The REST surface: discovery, CRUD, patches, the status subresource, list/watch, and
//! `Table` answers for kubectl's printer columns.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::authz;
use super::events;
use super::select::{FieldSelector, LabelSelector};
use super::store::{
    ApiError, Change, DeleteOptions, EventType, PatchKind, Result, Store, WriteOptions,
};
use super::table;
use super::types::{self, ResourceType};

/// State shared by every request.
pub struct Shared {
    pub store: Mutex<Store>,
    pub address: String,
    pub bookmark_interval: Duration,
    /// Requests made as ServiceAccounts, and whether RBAC allowed them.
    pub access_log: Mutex<Vec<Access>>,
}

/// One request a ServiceAccount made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub user: String,
    pub attributes: authz::Attributes,
    pub allowed: bool,
}

/// The ServiceAccount named by the request's bearer token, if any.
fn service_account(headers: &HeaderMap) -> Option<authz::ServiceAccount> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    authz::ServiceAccount::from_token(value.strip_prefix("Bearer ")?)
}

impl Shared {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock is a bug in the emulator; keep serving.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(error: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &error.to_status(),
    )
}

/// Where a request points.
struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_target(segments: &[&str]) -> Option<Target> {
    let (group, version, rest) = match segments {
        ["api", version, rest @ ..] => (String::new(), version.to_string(), rest),
        ["apis", group, version, rest @ ..] => (group.to_string(), version.to_string(), rest),
        _ => return None,
    };
    let owned = |s: &&str| s.to_string();
    let (namespace, plural, name, subresource) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => (
            Some(ns.to_string()),
            plural.to_string(),
            tail.first().map(owned),
            tail.get(1).map(owned),
        ),
        [plural, tail @ ..] => (
            None,
            plural.to_string(),
            tail.first().map(owned),
            tail.get(1).map(owned),
        ),
        [] => return None,
    };
    Some(Target {
        group,
        version,
        namespace,
        plural,
        name,
        subresource,
    })
}

pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["version"]) => {
            return json_response(
                StatusCode::OK,
                &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-umpire-emulator",
                        "platform": "linux/amd64", "goVersion": "go1.24", "compiler": "gc"}),
            );
        }
        (Method::GET, ["healthz"] | ["readyz"] | ["livez"]) => return "ok".into_response(),
        (Method::GET, ["api"]) => {
            return json_response(StatusCode::OK, &types::core_versions(&shared.address));
        }
        (Method::GET, ["apis"]) => {
            let store = shared.store();
            return json_response(StatusCode::OK, &types::group_list(store.types()));
        }
        (Method::GET, ["openapi", "v3"]) => {
            let store = shared.store();
            return json_response(StatusCode::OK, &types::openapi_root(store.types()));
        }
        (Method::GET, ["openapi", "v3", rest @ ..]) => {
            let (group, version) = match rest {
                ["api", version] => ("", *version),
                ["apis", group, version] => (*group, *version),
                _ => ("", ""),
            };
            let store = shared.store();
            return match types::openapi_group_version(store.types(), group, version) {
                Some(doc) => json_response(StatusCode::OK, &doc),
                None => error_response(&ApiError::new(404, "NotFound", "no such OpenAPI document")),
            };
        }
        (Method::GET, ["api", version]) => return discovery(&shared, "", version),
        (Method::GET, ["apis", group, version]) => return discovery(&shared, group, version),
        _ => {}
    }
    let Some(target) = parse_target(&segments) else {
        return error_response(&ApiError::new(
            404,
            "NotFound",
            format!("no route for {path}"),
        ));
    };
    match serve(&shared, &method, &target, &query, &headers, &body) {
        Ok(Served::Json(status, value)) => json_response(status, &value),
        Ok(Served::Watch(stream)) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::TRANSFER_ENCODING, "chunked")
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Err(error) => error_response(&error),
    }
}

fn discovery(shared: &Shared, group: &str, version: &str) -> Response {
    let store = shared.store();
    match types::resource_list(store.types(), group, version) {
        Some(list) => json_response(StatusCode::OK, &list),
        None => error_response(&ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource {group}/{version}"),
        )),
    }
}

type WatchStream = futures::stream::BoxStream<'static, std::result::Result<Bytes, Infallible>>;

enum Served {
    Json(StatusCode, Value),
    Watch(WatchStream),
}

fn parse_body(body: &Bytes) -> Result<Value> {
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("the request body is not JSON or YAML: {e}")))
}

/// The field manager of a write: `fieldManager`, else the user agent's program name.
fn manager(query: &HashMap<String, String>, headers: &HeaderMap) -> String {
    query.get("fieldManager").cloned().unwrap_or_else(|| {
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.split('/').next().unwrap_or(ua).to_owned())
            .unwrap_or_else(|| "unknown".into())
    })
}

fn serve(
    shared: &Arc<Shared>,
    method: &Method,
    target: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Served> {
    let t = shared
        .store()
        .resolve(&target.group, &target.version, &target.plural)?;
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    if let Some(who) = service_account(headers) {
        let attributes = authz::Attributes {
            verb: authz::verb(method.as_str(), target.name.is_some(), watching).to_owned(),
            group: target.group.clone(),
            resource: match &target.subresource {
                Some(sub) => format!("{}/{sub}", target.plural),
                None => target.plural.clone(),
            },
            namespace: target.namespace.clone(),
            name: target.name.clone(),
        };
        let allowed = authz::allowed(&shared.store(), &who, &attributes);
        shared
            .access_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Access {
                user: who.user_name(),
                attributes: attributes.clone(),
                allowed,
            });
        if !allowed {
            return Err(attributes.forbidden(&who));
        }
    }
    // kubectl writes some built-in types as protobuf (and does not retry in JSON when
    // refused): those are decoded; others get the 415 a server answers for what it cannot
    // decode.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let decoded;
    let body = if matches!(*method, Method::POST | Method::PUT | Method::PATCH)
        && content_type.starts_with("application/vnd.kubernetes.protobuf")
    {
        let object = super::protobuf::decode(body)
            .map_err(|message| ApiError::new(415, "UnsupportedMediaType", message))?;
        decoded = Bytes::from(object.to_string());
        &decoded
    } else {
        body
    };
    let namespace = target.namespace.clone().unwrap_or_default();
    if t.namespaced != target.namespace.is_some()
        && (target.name.is_some() || method != Method::GET)
    {
        return Err(ApiError::new(
            404,
            "NotFound",
            format!(
                "{} is {}namespaced",
                t.plural,
                if t.namespaced { "" } else { "not " }
            ),
        ));
    }
    let options = WriteOptions {
        manager: manager(query, headers),
        force: query.get("force").is_some_and(|f| f == "true"),
        subresource: target.subresource.clone(),
    };
    if let Some(sub) = &target.subresource
        && !(sub == "status" && t.status_subresource)
    {
        return Err(ApiError::new(
            404,
            "NotFound",
            format!("no subresource {sub} on {}", t.plural),
        ));
    }
    let wants_table = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"));
    // kube's metadata-only API (`Api<PartialObjectMeta<K>>`) asks for metadata alone.
    let metadata_only = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    let ok = |value| Ok(Served::Json(StatusCode::OK, value));
    match (method, &target.name) {
        (&Method::GET, None) => {
            let labels = LabelSelector::parse(query.get("labelSelector").map_or("", |s| s))
                .map_err(ApiError::bad_request)?;
            let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", |s| s))
                .map_err(ApiError::bad_request)?;
            let ns = target.namespace.as_deref();
            if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
                return watch(shared, &t, ns, labels, fields, query, metadata_only);
            }
            let store = shared.store();
            let limit = query.get("limit").and_then(|l| l.parse().ok());
            let (mut items, next, remaining) = store.list(
                &t,
                ns,
                &labels,
                &fields,
                limit,
                query.get("continue").map(String::as_str),
            );
            if events::is_core_events(&t) {
                items.extend(events::new_events_in_core_view(
                    &store, ns, &labels, &fields,
                ));
            }
            let mut metadata = json!({"resourceVersion": store.current_rv().to_string()});
            if let Some(token) = next {
                metadata["continue"] = json!(token);
                metadata["remainingItemCount"] = json!(remaining);
            }
            if wants_table {
                return ok(table::render(&t, &items, metadata));
            }
            if metadata_only {
                return ok(json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": metadata,
                    "items": items.iter().map(partial).collect::<Vec<_>>(),
                }));
            }
            ok(json!({
                "kind": format!("{}List", t.kind),
                "apiVersion": t.api_version(),
                "metadata": metadata,
                "items": items,
            }))
        }
        (&Method::GET, Some(name)) => {
            let object = {
                let store = shared.store();
                match store.get(&t, &namespace, name) {
                    Err(e) if events::is_core_events(&t) => store
                        .resolve("events.k8s.io", "v1", "events")
                        .and_then(|n| store.get(&n, &namespace, name))
                        .map(|event| events::to_core(&event))
                        .map_err(|_| e)?,
                    other => other?,
                }
            };
            if wants_table {
                return ok(table::render(&t, &[object], json!({})));
            }
            if metadata_only {
                return ok(partial(&object));
            }
            ok(object)
        }
        (&Method::POST, None) => {
            let object = shared
                .store()
                .create(&t, &namespace, parse_body(body)?, &options)?;
            Ok(Served::Json(StatusCode::CREATED, object))
        }
        (&Method::PUT, Some(name)) => {
            ok(shared
                .store()
                .update(&t, &namespace, name, parse_body(body)?, &options)?)
        }
        (&Method::PATCH, Some(name)) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let kind = match content_type.split(';').next().unwrap_or_default().trim() {
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    PatchKind::Merge
                }
                "application/json-patch+json" => PatchKind::Json,
                "application/apply-patch+yaml" | "application/apply-patch+json" => PatchKind::Apply,
                other => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!("the patch content type {other:?} is not supported"),
                    ));
                }
            };
            ok(shared
                .store()
                .patch(&t, &namespace, name, kind, parse_body(body)?, &options)?)
        }
        (&Method::DELETE, Some(name)) => {
            let options = if body.is_empty() {
                Value::Null
            } else {
                parse_body(body)?
            };
            let delete = DeleteOptions {
                propagation: options["propagationPolicy"]
                    .as_str()
                    .or(query.get("propagationPolicy").map(String::as_str))
                    .map(str::to_owned),
                precondition_uid: options["preconditions"]["uid"].as_str().map(str::to_owned),
                precondition_rv: options["preconditions"]["resourceVersion"]
                    .as_str()
                    .map(str::to_owned),
            };
            ok(shared.store().delete(&t, &namespace, name, &delete)?)
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported here"),
        )),
    }
}

/// What one watcher sees of a change, given its selectors (an object leaving the selection
/// is DELETED for it, one entering ADDED).
fn visible(
    change: &Change,
    t: &ResourceType,
    namespace: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Option<EventType> {
    if change.type_key != (t.group.clone(), t.plural.clone())
        || namespace.is_some_and(|ns| ns != change.namespace)
    {
        return None;
    }
    let matches = |o: &Value| labels.matches(o) && fields.matches(o);
    let now = matches(&change.object);
    match change.kind {
        EventType::Added | EventType::Deleted => now.then_some(change.kind),
        EventType::Modified => {
            let before = change.old.as_ref().is_some_and(matches);
            match (before, now) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            }
        }
    }
}

/// An object as `PartialObjectMetadata`.
fn partial(object: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]})
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn gone_line(rv: u64) -> Bytes {
    event_line(
        "ERROR",
        &ApiError::new(410, "Expired", format!("too old resource version: {rv}")).to_status(),
    )
}

fn watch(
    shared: &Arc<Shared>,
    t: &ResourceType,
    namespace: Option<&str>,
    labels: LabelSelector,
    fields: FieldSelector,
    query: &HashMap<String, String>,
    metadata_only: bool,
) -> Result<Served> {
    let shape = move |object: &Value| {
        if metadata_only {
            partial(object)
        } else {
            object.clone()
        }
    };
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let from: Option<u64> = query
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0")
        .map(|rv| {
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))
        })
        .transpose()?;
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let mut initial = Vec::new();
    let (mut changes, start_rv) = {
        let store = shared.store();
        match from {
            Some(rv) if rv < store.compacted_rv() => {
                initial.push(gone_line(rv));
                drop(store);
                let stream = futures::stream::iter(initial.into_iter().map(Ok));
                return Ok(Served::Watch(Box::pin(stream)));
            }
            Some(rv) => {
                for change in store.history_after(rv) {
                    if let Some(kind) = visible(&change, t, namespace, &labels, &fields) {
                        initial.push(event_line(kind.as_str(), &shape(&change.object)));
                    }
                }
            }
            None => {
                let (items, _, _) = store.list(t, namespace, &labels, &fields, None, None);
                for item in items {
                    initial.push(event_line("ADDED", &shape(&item)));
                }
            }
        }
        (store.subscribe(), store.current_rv())
    };
    let t = t.clone();
    let namespace = namespace.map(str::to_owned);
    let bookmark_every = shared.bookmark_interval;
    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let deadline = timeout.map(|d| tokio::time::Instant::now() + d);
        let mut last_rv = start_rv;
        let mut ticker = tokio::time::interval(bookmark_every);
        ticker.tick().await;
        loop {
            let until_deadline = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let (line, last) = tokio::select! {
                received = changes.recv() => match received {
                    Ok(change) => {
                        last_rv = last_rv.max(change.rv);
                        match visible(&change, &t, namespace.as_deref(), &labels, &fields) {
                            Some(kind) => (event_line(kind.as_str(), &shape(&change.object)), false),
                            None => continue,
                        }
                    }
                    // Fell behind the broadcast: the client must relist.
                    Err(broadcast::error::RecvError::Lagged(_)) => (gone_line(last_rv), true),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if bookmarks => (event_line("BOOKMARK", &json!({
                    "kind": t.kind, "apiVersion": t.api_version(),
                    "metadata": {"resourceVersion": last_rv.to_string()},
                })), false),
                _ = until_deadline => return,
                _ = tx.closed() => return,
            };
            if tx.send(line).await.is_err() || last {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok(line), rx))
    });
    Ok(Served::Watch(Box::pin(stream)))
}
