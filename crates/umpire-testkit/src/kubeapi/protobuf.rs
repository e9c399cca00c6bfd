//! Kubernetes' protobuf encoding for the writes kubectl sends that way (`create namespace`,
//! `configmap`, `secret`, `serviceaccount`): the `k8s\0` envelope around a
//! `runtime.Unknown` holding the object. Decoded into the JSON the rest of the emulator
//! stores; other types are refused with 415, as a server does for what it cannot decode.
//! Field numbers are those of `k8s.io/api/core/v1/generated.proto` and
//! `k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto`.

use std::collections::BTreeMap;

use prost::Message;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    generate_name: Option<String>,
    #[prost(string, optional, tag = "3")]
    namespace: Option<String>,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: BTreeMap<String, String>,
    #[prost(string, repeated, tag = "14")]
    finalizers: Vec<String>,
}

/// Namespace and ServiceAccount: only their metadata is written by `kubectl create`.
#[derive(Clone, PartialEq, Message)]
struct MetadataOnly {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
}

#[derive(Clone, PartialEq, Message)]
struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, string", tag = "2")]
    data: BTreeMap<String, String>,
    #[prost(btree_map = "string, bytes", tag = "3")]
    binary_data: BTreeMap<String, Vec<u8>>,
    #[prost(bool, optional, tag = "4")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct Secret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    type_: Option<String>,
    #[prost(btree_map = "string, string", tag = "4")]
    string_data: BTreeMap<String, String>,
    #[prost(bool, optional, tag = "5")]
    immutable: Option<bool>,
}

fn metadata(meta: Option<ObjectMeta>) -> Value {
    let meta = meta.unwrap_or_default();
    let mut out = Map::new();
    let mut put = |key: &str, value: Value| {
        out.insert(key.to_owned(), value);
    };
    if let Some(name) = meta.name {
        put("name", json!(name));
    }
    if let Some(name) = meta.generate_name {
        put("generateName", json!(name));
    }
    if let Some(namespace) = meta.namespace {
        put("namespace", json!(namespace));
    }
    if !meta.labels.is_empty() {
        put("labels", json!(meta.labels));
    }
    if !meta.annotations.is_empty() {
        put("annotations", json!(meta.annotations));
    }
    if !meta.finalizers.is_empty() {
        put("finalizers", json!(meta.finalizers));
    }
    Value::Object(out)
}

fn base64(bytes: &[u8]) -> Value {
    json!(k8s_openapi::ByteString(bytes.to_vec()))
}

/// The object in a protobuf request body, as JSON; `Err` says why it cannot be read.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let payload = body
        .strip_prefix(MAGIC)
        .ok_or("the body lacks the k8s protobuf envelope")?;
    let unknown = Unknown::decode(payload).map_err(|e| format!("undecodable envelope: {e}"))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let (api_version, kind) = (
        type_meta.api_version.unwrap_or_default(),
        type_meta.kind.unwrap_or_default(),
    );
    let raw = unknown.raw.unwrap_or_default();
    let undecodable = |e: prost::DecodeError| format!("undecodable {kind}: {e}");
    let mut object = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace" | "ServiceAccount") => {
            let object = MetadataOnly::decode(raw.as_slice()).map_err(undecodable)?;
            json!({"metadata": metadata(object.metadata)})
        }
        ("v1", "ConfigMap") => {
            let object = ConfigMap::decode(raw.as_slice()).map_err(undecodable)?;
            let mut value = json!({"metadata": metadata(object.metadata), "data": object.data});
            if !object.binary_data.is_empty() {
                let binary: Map<String, Value> = object
                    .binary_data
                    .iter()
                    .map(|(k, v)| (k.clone(), base64(v)))
                    .collect();
                value["binaryData"] = Value::Object(binary);
            }
            if let Some(immutable) = object.immutable {
                value["immutable"] = json!(immutable);
            }
            value
        }
        ("v1", "Secret") => {
            let object = Secret::decode(raw.as_slice()).map_err(undecodable)?;
            let mut data: Map<String, Value> = object
                .data
                .iter()
                .map(|(k, v)| (k.clone(), base64(v)))
                .collect();
            // The API server merges stringData into data.
            for (k, v) in &object.string_data {
                data.insert(k.clone(), base64(v.as_bytes()));
            }
            let mut value = json!({
                "metadata": metadata(object.metadata),
                "data": data,
                "type": object.type_.unwrap_or_else(|| "Opaque".into()),
            });
            if let Some(immutable) = object.immutable {
                value["immutable"] = json!(immutable);
            }
            value
        }
        _ => {
            return Err(format!(
                "protobuf bodies of {api_version} {kind} are not supported; send application/json"
            ));
        }
    };
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}
