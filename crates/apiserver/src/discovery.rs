//! Discovery: `/api`, `/apis`, per-group and per-group-version documents, the
//! aggregated (apidiscovery.k8s.io/v2) form kubectl asks for first, and the
//! OpenAPI v3 documents built by the `openapi` crate.

use std::collections::BTreeMap;

use api::registry::{group_version, ResourceType};
use api::{ApiError, Registry};
use http::{header, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::{full, json_response, ResponseBody};

const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated discovery version the client accepts, if any.
fn wants_aggregated<B>(req: &Request<B>) -> Option<&'static str> {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for part in accept.split(',') {
        let p: String = part.chars().filter(|c| !c.is_whitespace()).collect();
        if p.contains("as=APIGroupDiscoveryList") && p.contains("g=apidiscovery.k8s.io") {
            if p.contains("v=v2beta1") {
                return Some(AGGREGATED_V2BETA1);
            }
            if p.contains("v=v2") {
                return Some(AGGREGATED_V2);
            }
        }
    }
    None
}

fn aggregated_response(content_type: &str, items: Vec<Value>) -> Response<ResponseBody> {
    let api_version = if content_type == AGGREGATED_V2BETA1 {
        "apidiscovery.k8s.io/v2beta1"
    } else {
        "apidiscovery.k8s.io/v2"
    };
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items});
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::VARY, "Accept")
        .body(full(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

pub fn core_versions<B>(registry: &Registry, req: &Request<B>) -> Response<ResponseBody> {
    if let Some(ct) = wants_aggregated(req) {
        return aggregated_response(ct, vec![group_discovery(registry, "", &["v1".to_string()])]);
    }
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}),
    )
}

pub fn groups<B>(registry: &Registry, req: &Request<B>) -> Response<ResponseBody> {
    let gvs = registry.group_versions();
    if let Some(ct) = wants_aggregated(req) {
        let items = gvs
            .iter()
            .filter(|(g, _)| !g.is_empty())
            .map(|(g, vs)| group_discovery(registry, g, vs))
            .collect();
        return aggregated_response(ct, items);
    }
    let groups: Vec<Value> = gvs
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| api_group(g, vs))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

fn api_group(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0].clone()})
}

pub fn group(registry: &Registry, group: &str) -> Result<Response<ResponseBody>, ApiError> {
    let gvs = registry.group_versions();
    let (_, versions) = gvs
        .iter()
        .find(|(g, _)| g == group && !g.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        })?;
    let mut body = api_group(group, versions);
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    Ok(json_response(StatusCode::OK, &body))
}

pub fn resource_list(
    registry: &Registry,
    group: &str,
    version: &str,
) -> Result<Response<ResponseBody>, ApiError> {
    let mut resources = Vec::new();
    for rt in registry.in_group_version(group, version) {
        resources.push(json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced(),
            "kind": rt.kind,
            "verbs": rt.verbs(),
            "shortNames": rt.short_names,
            "categories": rt.categories,
            "storageVersionHash": storage_version_hash(rt),
        }));
        for (sub, kind, verbs, g, v) in subresources(rt) {
            let mut r = json!({"name": format!("{}/{}", rt.plural, sub), "singularName": "", "namespaced": rt.namespaced(), "kind": kind, "verbs": verbs});
            if g != rt.group || v != rt.version {
                r["group"] = json!(g);
                r["version"] = json!(v);
            }
            resources.push(r);
        }
    }
    if resources.is_empty() {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version(group, version), "resources": resources}),
    ))
}

/// (name, kind, verbs, group, version) of each subresource a resource has.
fn subresources(
    rt: &ResourceType,
) -> Vec<(&'static str, String, Vec<&'static str>, String, String)> {
    let mut out = Vec::new();
    if rt.has_status {
        out.push((
            "status",
            rt.kind.clone(),
            vec!["get", "patch", "update"],
            rt.group.clone(),
            rt.version.clone(),
        ));
    }
    if rt.scale.is_some() {
        out.push((
            "scale",
            "Scale".to_string(),
            vec!["get", "patch", "update"],
            "autoscaling".to_string(),
            "v1".to_string(),
        ));
    }
    if rt.group.is_empty() && rt.plural == "pods" {
        out.push((
            "binding",
            "Binding".to_string(),
            vec!["create"],
            String::new(),
            "v1".to_string(),
        ));
    }
    if rt.group.is_empty() && rt.plural == "pods" {
        // kubectl drain evicts through this when discovery lists it with a
        // group and version (`CheckEvictionSupport`).
        out.push((
            "eviction",
            "Eviction".to_string(),
            vec!["create"],
            "policy".to_string(),
            "v1".to_string(),
        ));
    }
    if rt.group.is_empty() && rt.plural == "serviceaccounts" {
        out.push((
            "token",
            "TokenRequest".to_string(),
            vec!["create"],
            "authentication.k8s.io".to_string(),
            "v1".to_string(),
        ));
    }
    if rt.group.is_empty() && rt.plural == "namespaces" {
        out.push((
            "finalize",
            "Namespace".to_string(),
            vec!["update"],
            String::new(),
            "v1".to_string(),
        ));
    }
    out
}

/// A stable hash of the storage location, as kube-apiserver advertises (clients
/// use it only to detect storage migrations).
fn storage_version_hash(rt: &ResourceType) -> String {
    use base64::Engine;
    let mut h: u64 = 0xcbf29ce484222325;
    for b in format!("{}/{}", rt.storage_version, rt.kind).bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    base64::engine::general_purpose::STANDARD.encode(h.to_be_bytes())[..11].to_string()
}

fn group_discovery(registry: &Registry, group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = registry
                .in_group_version(group, v)
                .map(|rt| {
                    let subs: Vec<Value> = subresources(rt)
                        .into_iter()
                        .map(|(name, kind, verbs, g, v)| {
                            json!({"subresource": name, "responseKind": {"group": g, "version": v, "kind": kind}, "verbs": verbs})
                        })
                        .collect();
                    let mut r = json!({
                        "resource": rt.plural,
                        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
                        "scope": if rt.namespaced() { "Namespaced" } else { "Cluster" },
                        "singularResource": rt.singular,
                        "verbs": rt.verbs(),
                    });
                    if !rt.short_names.is_empty() {
                        r["shortNames"] = json!(rt.short_names);
                    }
                    if !rt.categories.is_empty() {
                        r["categories"] = json!(rt.categories);
                    }
                    if !subs.is_empty() {
                        r["subresources"] = json!(subs);
                    }
                    r
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({"metadata": metadata, "versions": versions})
}

fn openapi_resources(
    registry: &Registry,
    group: &str,
    version: &str,
) -> Vec<openapi::ResourceInfo> {
    registry
        .in_group_version(group, version)
        .map(|rt| openapi::ResourceInfo {
            group: rt.group.clone(),
            version: rt.version.clone(),
            kind: rt.kind.clone(),
            plural: rt.plural.clone(),
            namespaced: rt.namespaced(),
            subresources: subresources(rt)
                .into_iter()
                .map(|s| s.0.to_string())
                .collect(),
            verbs: rt.verbs().into_iter().map(String::from).collect(),
        })
        .collect()
}

fn custom_schemas(registry: &Registry, group: &str, version: &str) -> BTreeMap<String, Value> {
    registry
        .in_group_version(group, version)
        .filter_map(|rt| {
            rt.custom
                .as_ref()
                .and_then(|c| c.schema.clone())
                .map(|s| (rt.kind.clone(), s))
        })
        .collect()
}

fn gv_hash(registry: &Registry, group: &str, version: &str) -> String {
    // The hash changes whenever the set of resources (or a CRD schema) changes,
    // so kubectl's disk cache is invalidated then and only then.
    let mut h: u64 = 0xcbf29ce484222325;
    let mut feed = |s: &str| {
        for b in s.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    feed(crate::KUBERNETES_GIT_VERSION);
    for rt in registry.in_group_version(group, version) {
        feed(&rt.plural);
        feed(&rt.kind);
        if let Some(c) = &rt.custom {
            feed(&c.schema.as_ref().map(|s| s.to_string()).unwrap_or_default());
        }
    }
    format!("{h:016X}")
}

pub fn openapi_root(registry: &Registry) -> Response<ResponseBody> {
    let gvs: Vec<(String, String)> = registry
        .group_versions()
        .into_iter()
        .flat_map(|(g, vs)| vs.into_iter().map(move |v| (g.clone(), v)))
        .collect();
    let doc = openapi::root_document(&gvs, |g, v| gv_hash(registry, g, v));
    json_response(StatusCode::OK, &doc)
}

/// Built group-version documents by (group, version), with the hash they were
/// built for: a document is rebuilt only when its resources or CRD schemas change.
#[derive(Default)]
pub struct OpenApiCache(
    std::sync::Mutex<std::collections::HashMap<(String, String), (String, bytes::Bytes)>>,
);

pub fn openapi_group_version(
    registry: &Registry,
    cache: &OpenApiCache,
    group: &str,
    version: &str,
) -> Result<Response<ResponseBody>, ApiError> {
    let hash = gv_hash(registry, group, version);
    let key = (group.to_string(), version.to_string());
    let cached = cache
        .0
        .lock()
        .unwrap()
        .get(&key)
        .filter(|(h, _)| *h == hash)
        .map(|(_, b)| b.clone());
    let bytes = match cached {
        Some(b) => b,
        None => {
            let resources = openapi_resources(registry, group, version);
            if resources.is_empty() {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ));
            }
            let doc = openapi::group_version_document(
                group,
                version,
                &resources,
                &custom_schemas(registry, group, version),
            );
            let b = bytes::Bytes::from(
                serde_json::to_vec(&doc).expect("serializing a Value cannot fail"),
            );
            cache.0.lock().unwrap().insert(key, (hash, b.clone()));
            b
        }
    };
    let mut resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(bytes))
        .unwrap();
    // Immutable per hash: kubectl caches it on disk keyed by the hash.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, "public, immutable".parse().unwrap());
    Ok(resp)
}

/// `/openapi/v2`: drover publishes its schemas as OpenAPI v3 only. This is an
/// empty but valid Swagger 2.0 document, so that clients which still read v2
/// (kubectl's fallback field-validation check for kinds it cannot find in
/// v3) get "no schema for this kind" instead of a download error, and go on
/// to report the kind as unknown the way they do against Kubernetes.
pub fn openapi_v2<B>(req: &Request<B>) -> Response<ResponseBody> {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("protobuf") {
        // gnostic's openapi_v2.Document with only `swagger = "2.0"` (field 1).
        let body: &[u8] = &[0x0a, 0x03, b'2', b'.', b'0'];
        return Response::builder()
            .status(StatusCode::OK)
            .header(
                header::CONTENT_TYPE,
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            )
            .body(full(body.to_vec()))
            .unwrap();
    }
    json_response(
        StatusCode::OK,
        &json!({"swagger": "2.0", "info": {"title": "drover", "version": crate::KUBERNETES_GIT_VERSION}, "paths": {}, "definitions": {}}),
    )
}
