//! The REST verbs over any registered resource: get, list, create, update,
//! patch, delete, deletecollection (watch lives in `watch`), with the
//! metadata semantics of Kubernetes — uid, generation, resourceVersion,
//! finalizers and deletionTimestamp, optimistic concurrency — and the status
//! and scale subresources. Every write is a single compare-and-swap in the
//! store, so a failed request never leaves a half-applied write.

use std::sync::Arc;

use api::registry::{split_api_version, ResourceType};
use api::{ApiError, Cause};
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use store::{KeyValue, RangeRequest, Revision, StoreError};

use crate::request::{Query, ResourcePath};
use crate::{body, json_response, ApiServer, ResponseBody};

/// How many times a patch or an internal update is retried when another
/// writer got in between the read and the compare-and-swap.
const MAX_CONFLICT_RETRIES: usize = 8;

pub(crate) fn store_error(e: StoreError, rt: &ResourceType, name: &str) -> ApiError {
    match e {
        StoreError::AlreadyExists { .. } => ApiError::already_exists(&rt.group, &rt.plural, name),
        StoreError::NotFound { .. } => ApiError::not_found(&rt.group, &rt.plural, name),
        StoreError::Conflict { .. } => ApiError::modified(&rt.group, &rt.plural, name),
        StoreError::Compacted { .. } => ApiError::gone("too old resource version"),
        StoreError::FutureRevision { requested, current } => ApiError::new(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
        ),
        other => ApiError::unavailable(other.to_string()),
    }
}

/// A stored object as served: its resourceVersion is the key's mod revision.
pub(crate) fn decode_stored(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    }
    Ok(v)
}

/// The object just written as `kv`, as [`decode_stored`] would read it back
/// (the value minus any resourceVersion, then the key's mod revision as the
/// last metadata field), without parsing the bytes again.
fn as_stored(mut obj: Value, kv: &KeyValue) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.shift_remove("resourceVersion");
        meta.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    }
    obj
}

/// The stored form of an object: its JSON without
/// `metadata.resourceVersion` (the store's revision is the version),
/// serialized without copying the object, in a buffer of exactly its length
/// (the store keeps every value and its history: the slack of a doubling
/// `Vec` was a third of the store's memory).
fn encode_for_store(obj: &Value) -> Bytes {
    let mut bytes =
        serde_json::to_vec(&WithoutResourceVersion(obj)).expect("serializing a Value cannot fail");
    bytes.shrink_to_fit();
    Bytes::from(bytes)
}

/// An object serialized as is, but for `metadata.resourceVersion`.
struct WithoutResourceVersion<'a>(&'a Value);

/// A map serialized without one of its keys.
struct Without<'a>(&'a Map<String, Value>, &'static str);

impl serde::Serialize for Without<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in self.0 {
            if k != self.1 {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

impl serde::Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(object) = self.0 else {
            return self.0.serialize(serializer);
        };
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in object {
            match v {
                Value::Object(meta) if k == "metadata" => {
                    map.serialize_entry(k, &Without(meta, "resourceVersion"))?
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let m = obj.as_object_mut().expect("objects are JSON objects");
    let meta = m.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().unwrap()
}

fn finalizers(obj: &Value) -> Vec<String> {
    api::string_list(obj.pointer("/metadata/finalizers"))
}

fn parse_resource_version(s: &str) -> Result<Revision, ApiError> {
    s.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: \"{s}\"")))
}

/// Strips the served version's apiVersion and converts to the storage version.
fn to_storage(rt: &ResourceType, obj: Value) -> Result<Value, ApiError> {
    Ok(api::conversion::convert(
        obj,
        &rt.api_version(),
        &rt.storage_version,
    ))
}

pub(crate) fn from_storage(rt: &ResourceType, obj: Value) -> Result<Value, ApiError> {
    Ok(api::conversion::convert(
        obj,
        &rt.storage_version,
        &rt.api_version(),
    ))
}

pub(crate) async fn handle<B>(
    server: &Arc<ApiServer>,
    req: Request<B>,
    rp: ResourcePath,
    query: Query,
) -> Result<Response<ResponseBody>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let registry = server.registry();
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let rt = registry
        .get(&rp.group, &rp.version, &rp.plural)
        .ok_or_else(not_found)?;
    if rp.namespace.is_some() && !rt.namespaced() {
        return Err(not_found());
    }
    if rt.custom.as_ref().is_some_and(|c| !c.served) {
        return Err(not_found());
    }
    if rt.create_only {
        return review(server, &rt, req).await;
    }
    if rt.group == api::registry::METRICS_GROUP {
        if req.method() != Method::GET {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "metrics support only get and list",
            ));
        }
        return crate::nodes::serve_metrics(server, &rt, &rp, &query).await;
    }
    if rt.group.is_empty()
        && rt.plural == "pods"
        && matches!(*req.method(), Method::GET | Method::POST)
    {
        let kind = match rp.subresource.as_deref() {
            Some("exec") => Some(crate::streams::Kind::Exec),
            Some("attach") => Some(crate::streams::Kind::Attach),
            Some("portforward") => Some(crate::streams::Kind::PortForward),
            _ => None,
        };
        if let (Some(name), Some(kind)) = (rp.name.as_deref(), kind) {
            let (pod, _) = get(server, &rt, rp.namespace.as_deref(), name).await?;
            let (parts, _) = req.into_parts();
            return crate::streams::serve(server, pod, kind, parts, &query).await;
        }
    }
    let (parts, incoming) = req.into_parts();
    let ctx = RequestCtx::new(&parts.headers, &query, &rp);
    let method = parts.method.clone();
    match (&method, rp.name.as_deref(), rp.subresource.as_deref()) {
        (&Method::GET, None, None) => {
            if query.flag("watch") {
                crate::watch::serve(server, &rt, &rp, &query, &parts.headers).await
            } else {
                list(server, &rt, &rp, &query, &parts.headers).await
            }
        }
        (&Method::GET, Some(name), None) | (&Method::GET, Some(name), Some("status")) => {
            if rp.subresource.as_deref() == Some("status") && !rt.has_status {
                return Err(not_found());
            }
            let (obj, _) = get(server, &rt, rp.namespace.as_deref(), name).await?;
            respond(&parts.headers, &query, &rt, StatusCode::OK, obj)
        }
        (&Method::GET, Some(name), Some("log")) if rt.group.is_empty() && rt.plural == "pods" => {
            let (pod, _) = get(server, &rt, rp.namespace.as_deref(), name).await?;
            crate::nodes::serve_log(server, &pod, &query).await
        }
        (&Method::GET, Some(name), Some("scale")) if rt.scale.is_some() => {
            let (obj, _) = get(server, &rt, rp.namespace.as_deref(), name).await?;
            Ok(json_response(StatusCode::OK, &scale_of(&rt, &obj)))
        }
        (&Method::POST, None, None) => {
            let bytes = body::read(&parts.headers, incoming).await?;
            let obj = body::decode_object(&parts.headers, &bytes)?;
            let created = create(server, &rt, rp.namespace.as_deref(), obj, &ctx).await?;
            respond(&parts.headers, &query, &rt, StatusCode::CREATED, created)
        }
        (&Method::POST, Some(name), Some("binding"))
            if rt.group.is_empty() && rt.plural == "pods" =>
        {
            let bytes = body::read(&parts.headers, incoming).await?;
            let binding = body::decode_object(&parts.headers, &bytes)?;
            bind_pod(server, &rt, rp.namespace.as_deref(), name, &binding, &ctx).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &api::status::success_status(json!({})),
            ))
        }
        (&Method::POST, Some(name), Some("eviction"))
            if rt.group.is_empty() && rt.plural == "pods" =>
        {
            let bytes = body::read(&parts.headers, incoming).await?;
            let eviction = body::decode_object(&parts.headers, &bytes)?;
            let status =
                crate::eviction::evict(server, &rt, rp.namespace.as_deref(), name, eviction, &ctx)
                    .await?;
            Ok(json_response(StatusCode::CREATED, &status))
        }
        (&Method::POST, Some(name), Some("token"))
            if rt.group.is_empty() && rt.plural == "serviceaccounts" =>
        {
            // Service accounts are namespaced: there is no cluster-wide
            // `serviceaccounts/NAME/token`.
            let Some(ns) = rp.namespace.as_deref() else {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ));
            };
            let bytes = body::read(&parts.headers, incoming).await?;
            let request = body::decode_object(&parts.headers, &bytes)?;
            let answered =
                crate::serviceaccounts::token_request(server, ns, name, &request).await?;
            Ok(json_response(StatusCode::CREATED, &answered))
        }
        (&Method::PUT, Some(name), sub) => {
            let bytes = body::read(&parts.headers, incoming).await?;
            let obj = body::decode_object(&parts.headers, &bytes)?;
            match sub {
                None | Some("status") | Some("finalize") => {
                    if sub == Some("status") && !rt.has_status {
                        return Err(not_found());
                    }
                    if sub == Some("finalize")
                        && !(rt.group.is_empty() && rt.plural == "namespaces")
                    {
                        return Err(not_found());
                    }
                    let (obj, created) =
                        update(server, &rt, rp.namespace.as_deref(), name, sub, obj, &ctx).await?;
                    let code = if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    respond(&parts.headers, &query, &rt, code, obj)
                }
                Some("scale") if rt.scale.is_some() => {
                    let obj =
                        update_scale(server, &rt, rp.namespace.as_deref(), name, obj, &ctx).await?;
                    Ok(json_response(StatusCode::OK, &obj))
                }
                _ => Err(not_found()),
            }
        }
        (&Method::PATCH, Some(name), sub) => {
            let bytes = body::read(&parts.headers, incoming).await?;
            match sub {
                None | Some("status") => {
                    if sub == Some("status") && !rt.has_status {
                        return Err(not_found());
                    }
                    let (obj, created) = patch(
                        server,
                        &rt,
                        rp.namespace.as_deref(),
                        name,
                        sub,
                        &parts.headers,
                        &bytes,
                        &ctx,
                    )
                    .await?;
                    let code = if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    respond(&parts.headers, &query, &rt, code, obj)
                }
                Some("scale") if rt.scale.is_some() => {
                    let obj = patch_scale(
                        server,
                        &rt,
                        rp.namespace.as_deref(),
                        name,
                        &parts.headers,
                        &bytes,
                        &ctx,
                    )
                    .await?;
                    Ok(json_response(StatusCode::OK, &obj))
                }
                _ => Err(not_found()),
            }
        }
        (&Method::DELETE, Some(name), None) => {
            let bytes = body::read(&parts.headers, incoming).await?;
            let options = delete_options(&parts.headers, &bytes, &query)?;
            let out = delete(server, &rt, rp.namespace.as_deref(), name, &options, &ctx).await?;
            match out {
                Deleted::Gone(obj) | Deleted::Pending(obj) => {
                    respond(&parts.headers, &query, &rt, StatusCode::OK, obj)
                }
            }
        }
        (&Method::DELETE, None, None) => {
            let bytes = body::read(&parts.headers, incoming).await?;
            let options = delete_options(&parts.headers, &bytes, &query)?;
            delete_collection(server, &rt, &rp, &query, &options, &ctx).await?;
            Ok(json_response(
                StatusCode::OK,
                &api::status::success_status(json!({"kind": rt.plural, "group": rt.group})),
            ))
        }
        (m, _, _)
            if m == Method::GET
                || m == Method::PUT
                || m == Method::PATCH
                || m == Method::DELETE
                || m == Method::POST =>
        {
            Err(not_found())
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

/// Access, identity and token reviews. There is no authorization (every
/// authenticated user may do everything, kube-apiserver's AlwaysAllow), so
/// access reviews always allow; `whoami` and TokenReview name the user a
/// token stands for.
async fn review<B>(
    server: &ApiServer,
    rt: &ResourceType,
    req: Request<B>,
) -> Result<Response<ResponseBody>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed(format!(
            "{} only support create",
            rt.plural
        )));
    }
    let requester = server.requester(&req).await;
    let (parts, incoming) = req.into_parts();
    let bytes = body::read(&parts.headers, incoming).await?;
    let mut obj = body::decode_object(&parts.headers, &bytes)?;
    check_type_meta(rt, &mut obj)?;
    let status = match rt.kind.as_str() {
        "SelfSubjectAccessReview" => {
            json!({"allowed": true, "reason": "drover has no authorization: every authenticated user may do everything"})
        }
        "SelfSubjectRulesReview" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
        "TokenReview" => token_review(server, &obj).await?,
        _ => json!({"userInfo": requester.unwrap_or(json!({}))}),
    };
    obj["status"] = status;
    Ok(json_response(StatusCode::CREATED, &obj))
}

/// A TokenReview's status: whether `spec.token` is good for one of
/// `spec.audiences` (the API server's when empty), and whose it is.
async fn token_review(server: &ApiServer, review: &Value) -> Result<Value, ApiError> {
    let Some(token) = review
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    else {
        // kube-apiserver's answer, word for word.
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    };
    let asked: Vec<String> = api::string_list(review.pointer("/spec/audiences"));
    let api_audiences: Vec<String> = server
        .token_signer()
        .map(|s| s.audiences().to_vec())
        .unwrap_or_default();
    let (audiences, check) = if asked.is_empty() {
        (api_audiences.clone(), None)
    } else {
        (asked.clone(), Some(asked.as_slice()))
    };
    Ok(match server.identify(token, check).await {
        Ok(user) => {
            // The audiences the token is good for, of those asked: a
            // service account token's own, any other token's the API
            // server's (kube-apiserver's audience-agnostic wrapping).
            let named: Vec<String> = if token.matches('.').count() == 2 {
                token
                    .split('.')
                    .nth(1)
                    .and_then(|c| {
                        use base64::Engine;
                        base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .decode(c)
                            .ok()
                    })
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .map(|c| api::string_list(c.get("aud")))
                    .unwrap_or_default()
            } else {
                api_audiences.clone()
            };
            let good: Vec<&String> = audiences.iter().filter(|a| named.contains(a)).collect();
            json!({"authenticated": true, "user": user, "audiences": good})
        }
        Err(why) => json!({"authenticated": false, "user": {}, "error": why}),
    })
}

/// What a write request says beyond its body.
pub(crate) struct RequestCtx {
    pub dry_run: bool,
    pub field_manager: String,
    pub field_validation: FieldValidation,
    pub force: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl RequestCtx {
    fn new(headers: &HeaderMap, query: &Query, _rp: &ResourcePath) -> RequestCtx {
        let agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        let default_manager: String = agent
            .split('/')
            .next()
            .unwrap_or("unknown")
            .chars()
            .take(128)
            .collect();
        RequestCtx {
            dry_run: query.get("dryRun") == Some("All"),
            field_manager: query
                .get("fieldManager")
                .map(String::from)
                .unwrap_or(default_manager),
            field_validation: match query.get("fieldValidation") {
                Some("Strict") => FieldValidation::Strict,
                Some("Ignore") => FieldValidation::Ignore,
                _ => FieldValidation::Warn,
            },
            force: query.flag("force"),
        }
    }

    pub(crate) fn internal(manager: &str) -> RequestCtx {
        RequestCtx {
            dry_run: false,
            field_manager: manager.into(),
            field_validation: FieldValidation::Ignore,
            force: false,
        }
    }
}

pub(crate) async fn get(
    server: &ApiServer,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
) -> Result<(Value, Revision), ApiError> {
    let key = rt.key(ns, name);
    let (kv, _) = server
        .store
        .get(&key)
        .await
        .map_err(|e| store_error(e, rt, name))?;
    let kv = kv.ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
    let obj = from_storage(rt, decode_stored(&kv)?)?;
    Ok((obj, kv.mod_revision))
}

/// How the client wants objects rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Render {
    Json,
    Table,
    PartialMetadata,
}

pub(crate) fn render_kind(headers: &HeaderMap) -> Result<Render, ApiError> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let mut json_ok = false;
    for part in accept.split(',') {
        let p: String = part.chars().filter(|c| !c.is_whitespace()).collect();
        let mt = p.split(';').next().unwrap_or("");
        if p.contains("as=Table")
            && p.contains("g=meta.k8s.io")
            && (mt == "application/json" || mt == "*/*")
        {
            return Ok(Render::Table);
        }
        if (p.contains("as=PartialObjectMetadata;")
            || p.ends_with("as=PartialObjectMetadata")
            || p.contains("as=PartialObjectMetadataList"))
            && mt == "application/json"
        {
            return Ok(Render::PartialMetadata);
        }
        if matches!(
            mt,
            "application/json" | "*/*" | "application/*" | "application/yaml" | ""
        ) && !p.contains("as=")
        {
            json_ok = true;
        }
    }
    if json_ok {
        Ok(Render::Json)
    } else {
        Err(ApiError::not_acceptable(format!("only the following media types are accepted: application/json, application/yaml (got {accept:?})")))
    }
}

pub(crate) fn include_object(query: &Query) -> tables::IncludeObject {
    match query.get("includeObject") {
        Some("None") => tables::IncludeObject::None,
        Some("Object") => tables::IncludeObject::Object,
        _ => tables::IncludeObject::Metadata,
    }
}

pub(crate) fn custom_columns(rt: &ResourceType) -> Option<Vec<tables::CustomColumn>> {
    rt.custom.as_ref().map(|c| {
        c.printer_columns
            .iter()
            .filter_map(tables::CustomColumn::from_json)
            .collect()
    })
}

pub(crate) fn table_of(rt: &ResourceType, objects: &[Value], query: &Query) -> Value {
    let cols = custom_columns(rt);
    tables::table(
        &rt.group,
        &rt.kind,
        objects,
        Utc::now(),
        include_object(query),
        cols.as_deref(),
    )
}

fn respond(
    headers: &HeaderMap,
    query: &Query,
    rt: &ResourceType,
    code: StatusCode,
    obj: Value,
) -> Result<Response<ResponseBody>, ApiError> {
    match render_kind(headers)? {
        Render::Json => Ok(json_response(code, &obj)),
        Render::Table => {
            let mut t = table_of(rt, std::slice::from_ref(&obj), query);
            t["metadata"]["resourceVersion"] = obj
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(json!(""));
            Ok(json_response(code, &t))
        }
        Render::PartialMetadata => Ok(json_response(
            code,
            &json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))}),
        )),
    }
}

// ---------------------------------------------------------------- list

/// The continue token: where the previous page stopped, and at which revision
/// the whole list is being read (so pages are one consistent snapshot).
fn encode_continue(revision: Revision, start_after: &str) -> String {
    use base64::Engine;
    let v = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start_after});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_string();
    Ok((rv, start))
}

/// Selectors of a list or watch, checked against the kind's supported fields.
pub(crate) struct Filter {
    pub labels: Option<apimachinery::selector::LabelSelector>,
    pub fields: Option<apimachinery::fields::FieldSelector>,
    pub namespace: Option<String>,
}

impl Filter {
    pub fn from_query(
        rt: &ResourceType,
        rp: &ResourcePath,
        query: &Query,
    ) -> Result<Filter, ApiError> {
        let labels = match query.get("labelSelector") {
            Some(s) => Some(
                apimachinery::selector::LabelSelector::parse(s).map_err(|e| {
                    ApiError::bad_request(format!("unable to parse requirement: {e}"))
                })?,
            ),
            None => None,
        };
        let fields = match query.get("fieldSelector") {
            Some(s) => {
                let f = apimachinery::fields::FieldSelector::parse(s)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                for field in f.requirements().iter().map(|r| r.field.as_str()) {
                    if !supported_field(rt, field) {
                        return Err(ApiError::bad_request(format!(
                            "field label not supported: {field}"
                        )));
                    }
                }
                Some(f)
            }
            None => None,
        };
        Ok(Filter {
            labels,
            fields,
            namespace: rp.namespace.clone(),
        })
    }

    /// Whether every object of the watched collection matches (no label or
    /// field selector); the namespace is already chosen by the store prefix.
    pub fn selects_all(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace {
            if meta_str(obj, "namespace") != Some(ns.as_str()) {
                return false;
            }
        }
        if let Some(l) = &self.labels {
            if !l.matches_labels_value(obj.pointer("/metadata/labels")) {
                return false;
            }
        }
        if let Some(f) = &self.fields {
            if !f.matches(|field| field_value(obj, field)) {
                return false;
            }
        }
        true
    }
}

/// The field selectors kube-apiserver supports per kind (plus metadata.name
/// and metadata.namespace everywhere).
fn supported_field(rt: &ResourceType, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => matches!(
            field,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "spec.hostNetwork"
                | "status.phase"
                | "status.podIP"
                | "status.nominatedNodeName"
        ),
        ("", "Event") | ("events.k8s.io", "Event") => {
            field.starts_with("involvedObject.")
                || matches!(field, "reason" | "reportingComponent" | "source" | "type")
                || field.starts_with("regarding.")
        }
        ("", "Node") => field == "spec.unschedulable",
        ("", "Secret") => field == "type",
        ("", "Namespace") => field == "status.phase",
        ("", "ReplicationController") | ("apps", "ReplicaSet") => field == "status.replicas",
        ("batch", "Job") => field == "status.successful",
        ("", "Service") => field == "spec.clusterIP" || field == "spec.type",
        _ => false,
    }
}

fn field_value(obj: &Value, field: &str) -> Option<String> {
    let pointer = format!("/{}", field.replace('.', "/"));
    match obj.pointer(&pointer) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => None,
        // Unset fields compare as their zero value, as in Kubernetes.
        None => Some(match field {
            "spec.unschedulable" | "spec.hostNetwork" => "false".into(),
            "status.replicas" | "status.successful" => "0".into(),
            _ => String::new(),
        }),
    }
}

pub(crate) struct ListResult {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

pub(crate) async fn list_objects(
    server: &ApiServer,
    rt: &ResourceType,
    rp: &ResourcePath,
    query: &Query,
) -> Result<ListResult, ApiError> {
    let filter = Filter::from_query(rt, rp, query)?;
    let limit = match query.get("limit") {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: {l:?}")))?,
        )
        .filter(|l| *l > 0),
        None => None,
    };
    let (mut revision, mut start_after) = (None, None);
    if let Some(token) = query.get("continue") {
        let (rv, start) = decode_continue(token)?;
        revision = Some(rv);
        start_after = Some(start);
    } else if let Some(rv) = query.get("resourceVersion") {
        let rv = parse_resource_version(rv)?;
        // resourceVersion=0 means "any": serve the latest. An exact match is a
        // read at that revision; NotOlderThan is satisfied by the latest.
        if rv > 0 && query.get("resourceVersionMatch") == Some("Exact") {
            revision = Some(rv);
        }
    }
    let prefix = rt.list_prefix(rp.namespace.as_deref());
    let mut items = Vec::new();
    let page = limit.map(|l| l.max(64)).unwrap_or(0);
    loop {
        let resp = server
            .store
            .range(RangeRequest { prefix: prefix.clone(), start_after: start_after.clone(), limit: (page > 0).then_some(page), revision })
            .await
            .map_err(|e| match e {
                StoreError::Compacted { .. } if query.get("continue").is_some() => ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ),
                e => store_error(e, rt, ""),
            })?;
        revision = Some(resp.revision);
        let n = resp.kvs.len();
        for (i, kv) in resp.kvs.iter().enumerate() {
            let obj = from_storage(rt, decode_stored(kv)?)?;
            if filter.matches(&obj) {
                items.push(obj);
                if let Some(l) = limit {
                    if items.len() == l {
                        let more = resp.more || i + 1 < n;
                        let token = more.then(|| encode_continue(resp.revision, &kv.key));
                        let remaining = more.then(|| resp.remaining + (n - i - 1));
                        return Ok(ListResult {
                            items,
                            revision: resp.revision,
                            continue_token: token,
                            remaining,
                        });
                    }
                }
            }
        }
        if !resp.more || n == 0 {
            return Ok(ListResult {
                items,
                revision: resp.revision,
                continue_token: None,
                remaining: None,
            });
        }
        start_after = resp.kvs.last().map(|kv| kv.key.clone());
    }
}

async fn list(
    server: &ApiServer,
    rt: &ResourceType,
    rp: &ResourcePath,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response<ResponseBody>, ApiError> {
    let render = render_kind(headers)?;
    let result = list_objects(server, rt, rp, query).await?;
    let mut metadata = json!({"resourceVersion": result.revision.to_string()});
    if let Some(t) = &result.continue_token {
        metadata["continue"] = json!(t);
    }
    if let Some(r) = result.remaining {
        metadata["remainingItemCount"] = json!(r);
    }
    let body = match render {
        Render::Table => {
            let mut t = table_of(rt, &result.items, query);
            t["metadata"] = metadata;
            t
        }
        Render::PartialMetadata => {
            let items: Vec<Value> = result
                .items
                .iter()
                .map(|o| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))}))
                .collect();
            json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items})
        }
        Render::Json => {
            json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": metadata, "items": result.items})
        }
    };
    Ok(json_response(StatusCode::OK, &body))
}

// ---------------------------------------------------------------- create

fn check_type_meta(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    let m = obj.as_object_mut().unwrap();
    let want_api_version = rt.api_version();
    match m.get("apiVersion").and_then(Value::as_str) {
        Some(av) if av != want_api_version => {
            let (g, _) = split_api_version(av);
            if g != rt.group
                || m.get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k != rt.kind)
            {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_api_version})"
                )));
            }
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_api_version})"
            )));
        }
        Some(_) => {}
        None => {
            m.insert("apiVersion".into(), json!(want_api_version));
        }
    }
    match m.get("kind").and_then(Value::as_str) {
        Some(k) if k != rt.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                rt.kind
            )))
        }
        Some(_) => {}
        None => {
            m.insert("kind".into(), json!(rt.kind));
        }
    }
    Ok(())
}

fn check_namespace(rt: &ResourceType, obj: &mut Value, ns: Option<&str>) -> Result<(), ApiError> {
    let meta = meta_mut(obj);
    if rt.namespaced() {
        let url_ns = ns.ok_or_else(|| {
            ApiError::bad_request("a namespace is required for a namespaced resource")
        })?;
        match meta.get("namespace").and_then(Value::as_str) {
            Some(body_ns) if !body_ns.is_empty() && body_ns != url_ns => {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({url_ns})"
                )))
            }
            _ => {
                meta.insert("namespace".into(), json!(url_ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    Ok(())
}

fn generate_name_suffix(server: &ApiServer) -> String {
    // The alphabet Kubernetes uses: no vowels (no words), no look-alikes.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bits = server.random_u64();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char;
            bits /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

pub(crate) fn new_uid(server: &ApiServer) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&server.random_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&server.random_u64().to_le_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

async fn ensure_namespace_open(
    server: &ApiServer,
    rt: &ResourceType,
    ns: &str,
    name: &str,
) -> Result<(), ApiError> {
    let registry = server.registry();
    let ns_rt = registry
        .get("", "v1", "namespaces")
        .expect("namespaces are built in");
    match get(server, &ns_rt, None, ns).await {
        Ok((nsobj, _)) => {
            if nsobj.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(ApiError::forbidden(format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    qualified(rt)
                )));
            }
            Ok(())
        }
        Err(e) if e.code == 404 => Err(ApiError::not_found("", "namespaces", ns)),
        Err(e) => Err(e),
    }
}

fn qualified(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.plural.clone()
    } else {
        format!("{}.{}", rt.plural, rt.group)
    }
}

/// Type checks, unknown-field policy, defaulting and validation: everything an
/// object must pass before it may be stored.
fn admit(
    server: &ApiServer,
    rt: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
    subresource: Option<&str>,
    ctx: &RequestCtx,
) -> Result<(), ApiError> {
    mutate(server, rt, obj, subresource, ctx)?;
    validate(rt, obj, old)
}

/// The first half of [`admit`]: type checks, strict field validation,
/// defaulting and the synchronous mutating admission.
fn mutate(
    server: &ApiServer,
    rt: &ResourceType,
    obj: &mut Value,
    subresource: Option<&str>,
    ctx: &RequestCtx,
) -> Result<(), ApiError> {
    api::validation::check_types(&rt.group, &rt.version, &rt.kind, obj)?;
    if ctx.field_validation == FieldValidation::Strict {
        let unknown = match &rt.custom {
            Some(c) => c
                .schema
                .as_ref()
                .map(|s| api::crd::unknown_fields(obj, s))
                .unwrap_or_default(),
            None => openapi::unknown_fields(obj, &rt.group, &rt.version, &rt.kind),
        };
        if !unknown.is_empty() {
            let list = unknown
                .iter()
                .map(|f| format!("unknown field \"{}\"", f.trim_start_matches('.')))
                .collect::<Vec<_>>();
            return Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                list.join(", ")
            )));
        }
    }
    api::defaults::apply_defaults(&rt.group, &rt.kind, obj);
    // Mutating admission, after defaulting and before validation as in
    // kube-apiserver. DefaultTolerationSeconds handles pods proper (create
    // and update), never their subresources.
    if rt.group.is_empty() && rt.kind == "Pod" && subresource.is_none() {
        let a = &server.admission;
        api::admission::default_toleration_seconds(
            obj,
            a.default_not_ready_toleration_seconds,
            a.default_unreachable_toleration_seconds,
        );
    }
    if let Some(c) = &rt.custom {
        if let Some(schema) = &c.schema {
            api::crd::apply_schema_defaults(obj, schema);
        }
    }
    Ok(())
}

/// The second half of [`admit`]: validation, after all mutation.
fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let causes = match &rt.custom {
        Some(c) => api::crd::validate_custom(obj, c.schema.as_ref(), rt.namespaced()),
        None => api::validation::validate(&rt.group, &rt.kind, obj, old, rt.namespaced()),
    };
    if !causes.is_empty() {
        let name = meta_str(obj, "name").unwrap_or("").to_string();
        return Err(ApiError::invalid(&rt.group, &rt.kind, &name, causes));
    }
    Ok(())
}

pub(crate) async fn create(
    server: &ApiServer,
    rt: &ResourceType,
    ns: Option<&str>,
    obj: Value,
    ctx: &RequestCtx,
) -> Result<Value, ApiError> {
    create_inner(server, rt, ns, obj, ctx, true).await
}

async fn create_inner(
    server: &ApiServer,
    rt: &ResourceType,
    ns: Option<&str>,
    mut obj: Value,
    ctx: &RequestCtx,
    record_manager: bool,
) -> Result<Value, ApiError> {
    check_type_meta(rt, &mut obj)?;
    check_namespace(rt, &mut obj, ns)?;
    {
        let meta = meta_mut(&mut obj);
        if meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let name = format!("{prefix}{}", generate_name_suffix(server));
                    meta.insert("name".into(), json!(name));
                }
                _ => {
                    return Err(ApiError::invalid(
                        &rt.group,
                        &rt.kind,
                        "",
                        vec![Cause::required(
                            "metadata.name",
                            "name or generateName is required",
                        )],
                    ))
                }
            }
        }
        meta.insert("uid".into(), json!(new_uid(server)));
        meta.insert("creationTimestamp".into(), json!(server.now_rfc3339()));
        meta.remove("resourceVersion");
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("selfLink");
        if obj.get("spec").is_some() || rt.custom.is_some() {
            meta_mut(&mut obj).insert("generation".into(), json!(1));
        } else {
            meta_mut(&mut obj).remove("generation");
        }
    }
    let name = meta_str(&obj, "name").unwrap().to_string();
    if let Some(ns) = ns.filter(|_| rt.namespaced()) {
        ensure_namespace_open(server, rt, ns, &name).await?;
    }
    // What a client sends as status on create is dropped for kinds whose status
    // is the system's to write (it comes from controllers and agents).
    if rt.has_status
        && !(rt.group.is_empty()
            && matches!(
                rt.kind.as_str(),
                "Node" | "Namespace" | "PersistentVolume" | "PersistentVolumeClaim" | "Pod"
            ))
        && rt.custom.is_none()
    {
        obj.as_object_mut().unwrap().remove("status");
    }
    if rt.group.is_empty() && rt.kind == "PersistentVolumeClaim" {
        // DefaultStorageClass admission (create only, as in Kubernetes).
        let classes = list_all(server, "storage.k8s.io", "storageclasses").await?;
        api::admission::default_storage_class(&mut obj, &classes);
        api::admission::pvc_protection(&mut obj);
    }
    mutate(server, rt, &mut obj, None, ctx)?;
    // The ServiceAccount plugin mutates after defaulting and before
    // validation, as kube-apiserver orders its admission.
    if rt.group.is_empty() && rt.kind == "Pod" && rt.custom.is_none() {
        if let Some(ns) = ns {
            crate::serviceaccounts::admit_pod(server, ns, &mut obj).await?;
        }
    }
    validate(rt, &obj, None)?;
    if record_manager {
        track_managed_fields(server, rt, None, &mut obj, &ctx.field_manager, "Update");
    }
    // ClusterIP and node ports are taken before the write (and given back
    // if it fails), as kube-apiserver's BeginCreate does.
    let allocated = if is_service(rt) {
        Some(
            crate::services::allocate(server, None, &mut obj, ctx.dry_run)
                .await?
                .0,
        )
    } else {
        None
    };
    if ctx.dry_run {
        return Ok(obj);
    }
    let stored = to_storage(rt, obj)?;
    let created = server
        .store
        .create(&rt.key(ns, &name), encode_for_store(&stored))
        .await;
    let kv = match created {
        Ok(kv) => kv,
        Err(e) => {
            if let Some(a) = allocated {
                crate::services::revert(server, &stored, a).await;
            }
            return Err(store_error(e, rt, &name));
        }
    };
    after_write(server, rt).await;
    from_storage(rt, as_stored(stored, &kv))
}

fn is_service(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.kind == "Service" && rt.custom.is_none()
}

/// Records in metadata.managedFields that `manager` owns what it changed.
fn track_managed_fields(
    server: &ApiServer,
    rt: &ResourceType,
    old: Option<&Value>,
    obj: &mut Value,
    manager: &str,
    operation: &str,
) {
    let ty = apimachinery::patch_meta::root_type(&rt.group, &rt.kind);
    apimachinery::apply::track_update(old, obj, manager, operation, &server.now_rfc3339(), ty);
}

/// Side effects of a successful write that the API server itself owns: a
/// changed CRD is served (or no longer served) before the write returns.
async fn after_write(server: &ApiServer, rt: &ResourceType) {
    if rt.group == "apiextensions.k8s.io" && rt.kind == "CustomResourceDefinition" {
        crate::gc::crds_changed(server).await;
    }
}

// ---------------------------------------------------------------- update

/// Applies the rules of an update to `new` given the stored `old`: immutable
/// metadata kept, status or spec kept depending on the subresource,
/// generation bumped on spec changes.
fn prepare_update(
    rt: &ResourceType,
    old: &Value,
    new: &mut Value,
    subresource: Option<&str>,
) -> Result<(), ApiError> {
    let name = meta_str(old, "name").unwrap_or("").to_string();
    if let Some(n) = meta_str(new, "name") {
        if n != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
    }
    if let (Some(old_uid), Some(new_uid)) = (meta_str(old, "uid"), meta_str(new, "uid")) {
        if !new_uid.is_empty() && old_uid != new_uid {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                &name,
                &format!("Precondition failed: UID in precondition: {new_uid}, UID in object meta: {old_uid}"),
            ));
        }
    }
    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
    {
        let meta = meta_mut(new);
        meta.insert("name".into(), json!(name));
        for field in [
            "uid",
            "creationTimestamp",
            "namespace",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(field) {
                Some(v) => {
                    meta.insert(field.into(), v.clone());
                }
                None => {
                    meta.remove(field);
                }
            }
        }
    }
    match subresource {
        Some("status") => {
            // Only status changes; everything else stays as stored.
            let status = new.get("status").cloned();
            let mut merged = old.clone();
            match status {
                Some(s) => {
                    merged.as_object_mut().unwrap().insert("status".into(), s);
                }
                None => {
                    merged.as_object_mut().unwrap().remove("status");
                }
            }
            if let Some(rv) = new.pointer("/metadata/resourceVersion").cloned() {
                meta_mut(&mut merged).insert("resourceVersion".into(), rv);
            } else {
                meta_mut(&mut merged).remove("resourceVersion");
            }
            if let Some(mf) = new.pointer("/metadata/managedFields").cloned() {
                meta_mut(&mut merged).insert("managedFields".into(), mf);
            }
            *new = merged;
        }
        // `pods/binding` builds the whole new object itself (spec.nodeName and
        // the PodScheduled condition).
        Some("binding") => {}
        Some("finalize") => {
            // Only spec.finalizers of a namespace changes.
            let finalizers = new.pointer("/spec/finalizers").cloned();
            let mut merged = old.clone();
            merged["spec"]["finalizers"] = finalizers.unwrap_or(json!([]));
            *new = merged;
        }
        _ => {
            if rt.has_status && !(rt.group.is_empty() && rt.kind == "Namespace") {
                match old.get("status") {
                    Some(s) => {
                        new.as_object_mut()
                            .unwrap()
                            .insert("status".into(), s.clone());
                    }
                    None => {
                        new.as_object_mut().unwrap().remove("status");
                    }
                }
            } else if rt.group.is_empty() && rt.kind == "Namespace" {
                if let Some(s) = old.get("status") {
                    new.as_object_mut()
                        .unwrap()
                        .insert("status".into(), s.clone());
                }
                if let Some(f) = old.pointer("/spec/finalizers") {
                    new["spec"]["finalizers"] = f.clone();
                }
            }
        }
    }
    if spec_changed(old, new) {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        meta_mut(new).insert("generation".into(), json!(g));
    }
    Ok(())
}

/// True when anything outside metadata and status differs. Compared in
/// place: both are whole objects, and this runs on every update.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return old != new;
    };
    let counted = |k: &String| !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind");
    old.keys().filter(|k| counted(k)).count() != new.keys().filter(|k| counted(k)).count()
        || old
            .iter()
            .filter(|(k, _)| counted(k))
            .any(|(k, v)| new.get(k) != Some(v))
}

/// PUT: a full replacement, optimistic on resourceVersion when one is given.
/// Returns the stored object and whether it was created (PUT never creates
/// here, as for most built-in kinds).
pub(crate) async fn update(
    server: &ApiServer,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    mut obj: Value,
    ctx: &RequestCtx,
) -> Result<(Value, bool), ApiError> {
    check_type_meta(rt, &mut obj)?;
    check_namespace(rt, &mut obj, ns)?;
    let (old, old_rev) = get(server, rt, ns, name).await?;
    let expected = match meta_str(&obj, "resourceVersion") {
        Some(rv) if !rv.is_empty() => {
            let rv = parse_resource_version(rv)?;
            if rv != old_rev {
                return Err(ApiError::modified(&rt.group, &rt.plural, name));
            }
            rv
        }
        _ => old_rev,
    };
    let stored = write_update(
        server,
        rt,
        ns,
        name,
        &old,
        expected,
        obj,
        subresource,
        ctx,
        "Update",
    )
    .await?;
    Ok((stored, false))
}

/// The shared tail of every update: admission, managed fields, then either
/// the compare-and-swap, or — when the last finalizer of an object being
/// deleted is gone — the deletion.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write_update(
    server: &ApiServer,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    old: &Value,
    expected: Revision,
    mut obj: Value,
    subresource: Option<&str>,
    ctx: &RequestCtx,
    operation: &str,
) -> Result<Value, ApiError> {
    prepare_update(rt, old, &mut obj, subresource)?;
    let service_spec = is_service(rt) && subresource.is_none();
    if service_spec {
        crate::services::prepare_update(old, &mut obj);
    }
    admit(server, rt, &mut obj, Some(old), subresource, ctx)?;
    if operation != "Apply" {
        track_managed_fields(
            server,
            rt,
            Some(old),
            &mut obj,
            &ctx.field_manager,
            operation,
        );
    }
    let key = rt.key(ns, name);
    if delete_during_update(rt, old, &obj) {
        if ctx.dry_run {
            return Ok(obj);
        }
        let (_, kv) = server
            .store
            .delete(&key, Some(expected))
            .await
            .map_err(|e| store_error(e, rt, name))?;
        let mut gone = decode_stored(&kv)?;
        meta_mut(&mut gone).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        after_delete(server, rt, &gone).await;
        return from_storage(rt, gone);
    }
    // An update that changes nothing is not written (kube-apiserver's
    // GuaranteedUpdate compares the encoded bytes): no new resourceVersion,
    // no watch event, so controllers that re-send an unchanged status do
    // not wake every watcher of the kind.
    if unchanged(old, &obj) {
        return Ok(old.clone());
    }
    let allocation = if service_spec {
        Some(crate::services::allocate(server, Some(old), &mut obj, ctx.dry_run).await?)
    } else {
        None
    };
    if ctx.dry_run {
        return Ok(obj);
    }
    let stored = to_storage(rt, obj)?;
    let updated = server
        .store
        .update(&key, encode_for_store(&stored), expected)
        .await;
    let kv = match updated {
        Ok(kv) => kv,
        Err(e) => {
            if let Some((allocated, _)) = allocation {
                crate::services::revert(server, &stored, allocated).await;
            }
            return Err(store_error(e, rt, name));
        }
    };
    if let Some((_, release)) = allocation {
        crate::services::release(server, release).await;
    }
    after_write(server, rt).await;
    from_storage(rt, as_stored(stored, &kv))
}

/// Whether `new` is `old` again, resourceVersion aside. Both are in the
/// request's version, so equal here means equal as stored; compared in
/// place, without copying either.
fn unchanged(old: &Value, new: &Value) -> bool {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return old == new;
    };
    let without_version_eq = |a: &Map<String, Value>, b: &Map<String, Value>| {
        let fields = |m: &Map<String, Value>| m.keys().filter(|k| *k != "resourceVersion").count();
        fields(a) == fields(b)
            && a.iter()
                .filter(|(k, _)| *k != "resourceVersion")
                .all(|(k, v)| b.get(k) == Some(v))
    };
    old.len() == new.len()
        && old.iter().all(|(k, v)| match (k.as_str(), new.get(k)) {
            ("metadata", Some(Value::Object(n))) => {
                v.as_object().is_some_and(|o| without_version_eq(o, n))
            }
            (_, other) => other == Some(v),
        })
}

/// Side effects of an object leaving the store: a Service's ClusterIP and
/// node ports are free again.
async fn after_delete(server: &ApiServer, rt: &ResourceType, gone: &Value) {
    if is_service(rt) {
        crate::services::release_all(server, gone).await;
    }
}

/// Namespaces wait for their own spec finalizers too.
/// Whether an update finishes a deletion (kube-apiserver's
/// `ShouldDeleteDuringUpdate`): the object is being deleted, its last
/// finalizer was just removed, and no graceful deletion is pending — a pod
/// waiting for its node agent keeps being updated (status) until the agent
/// deletes it with grace 0. A namespace also waits for its spec finalizers.
fn delete_during_update(rt: &ResourceType, old: &Value, new: &Value) -> bool {
    if new.pointer("/metadata/deletionTimestamp").is_none() || !finalizers(new).is_empty() {
        return false;
    }
    if rt.group.is_empty() && rt.kind == "Namespace" {
        return new
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
    }
    let graceful_pending = new
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|g| g > 0);
    !finalizers(old).is_empty() && !graceful_pending
}

/// Read-modify-write with retries on conflicts: the way patches and the
/// server's own controllers change objects. `mutate` gets the current object
/// and returns the new one (or an error to stop).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn update_with<F>(
    server: &ApiServer,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    ctx: &RequestCtx,
    operation: &str,
    mut mutate: F,
) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let mut last_err = None;
    for _ in 0..MAX_CONFLICT_RETRIES {
        let (old, rev) = get(server, rt, ns, name).await?;
        let new = mutate(&old)?;
        // A patch that names a resourceVersion is a precondition, never retried.
        if let Some(rv) = meta_str(&new, "resourceVersion").filter(|rv| !rv.is_empty()) {
            if parse_resource_version(rv)? != rev {
                return Err(ApiError::modified(&rt.group, &rt.plural, name));
            }
        }
        match write_update(
            server,
            rt,
            ns,
            name,
            &old,
            rev,
            new,
            subresource,
            ctx,
            operation,
        )
        .await
        {
            Err(e) if e.code == 409 && e.reason == "Conflict" => last_err = Some(e),
            other => return other,
        }
    }
    Err(last_err.unwrap())
}

// ---------------------------------------------------------------- binding

/// `POST pods/NAME/binding`: assigns an unassigned pod to a node, as the
/// scheduler does. One compare-and-swap sets `spec.nodeName` and the
/// PodScheduled condition; a pod already assigned (or being deleted) is a
/// 409, so two schedulers can never both bind it.
async fn bind_pod(
    server: &ApiServer,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    binding: &Value,
    ctx: &RequestCtx,
) -> Result<(), ApiError> {
    let kind = binding
        .pointer("/target/kind")
        .and_then(Value::as_str)
        .unwrap_or("Node");
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut causes = Vec::new();
    if !kind.is_empty() && kind != "Node" {
        causes.push(Cause::not_supported("target.kind", kind, &["Node"]));
    }
    if node.is_empty() {
        causes.push(Cause::required("target.name", ""));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("", "Binding", name, causes));
    }
    let uid = binding
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let now = server.now_rfc3339();
    update_with(server, rt, ns, name, Some("binding"), ctx, "Update", |old| {
        let why = |message: String| ApiError::conflict(&rt.group, &rt.plural, name, &message);
        if !uid.is_empty() && meta_str(old, "uid") != Some(uid.as_str()) {
            return Err(why(format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(old, "uid").unwrap_or("")
            )));
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(why(format!("pod {name} is being deleted, cannot be assigned to a host")));
        }
        if let Some(current) = old.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            return Err(why(format!("pod {name} is already assigned to node \"{current}\"")));
        }
        let mut new = old.clone();
        new["spec"]["nodeName"] = json!(node);
        if !new.get("status").is_some_and(Value::is_object) {
            new["status"] = json!({});
        }
        let status = new["status"].as_object_mut().expect("status is an object");
        let conditions = status.entry("conditions").or_insert_with(|| json!([]));
        if !conditions.is_array() {
            *conditions = json!([]);
        }
        let list = conditions.as_array_mut().expect("conditions is an array");
        list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
        list.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
        Ok(new)
    })
    .await
    .map(|_| ())
}

// ---------------------------------------------------------------- patch

#[allow(clippy::too_many_arguments)]
async fn patch(
    server: &ApiServer,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    headers: &HeaderMap,
    bytes: &[u8],
    ctx: &RequestCtx,
) -> Result<(Value, bool), ApiError> {
    let media_type = body::media_type(headers);
    match media_type.as_str() {
        "application/json-patch+json" => {
            let ops = body::decode_json(bytes)?;
            let obj = update_with(server, rt, ns, name, subresource, ctx, "Update", |old| {
                apimachinery::patch::apply_json_patch(old, &ops)
                    .map_err(|e| patch_error(rt, name, e))
            })
            .await?;
            Ok((obj, false))
        }
        "application/merge-patch+json" => {
            let p = body::decode_json(bytes)?;
            let obj = update_with(server, rt, ns, name, subresource, ctx, "Update", |old| {
                apimachinery::patch::apply_merge_patch(old, &p)
                    .map_err(|e| patch_error(rt, name, e))
            })
            .await?;
            Ok((obj, false))
        }
        "application/strategic-merge-patch+json" => {
            if rt.custom.is_some() {
                return Err(ApiError::unsupported_media_type(&format!(
                    "{media_type}: strategic merge patch is not supported for custom resources; use a JSON merge patch"
                )));
            }
            let p = body::decode_json(bytes)?;
            let ty = apimachinery::patch_meta::root_type(&rt.group, &rt.kind);
            let obj = update_with(server, rt, ns, name, subresource, ctx, "Update", |old| {
                apimachinery::strategic::strategic_merge_patch(old, &p, ty)
                    .map_err(|e| patch_error(rt, name, e))
            })
            .await?;
            Ok((obj, false))
        }
        "application/apply-patch+yaml" | "application/apply-patch+json" => {
            let applied = body::decode_yaml(bytes)?;
            if !applied.is_object() {
                return Err(ApiError::bad_request(
                    "the applied configuration must be an object",
                ));
            }
            apply(server, rt, ns, name, subresource, applied, ctx).await
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn patch_error(rt: &ResourceType, name: &str, e: apimachinery::patch::PatchError) -> ApiError {
    let _ = (rt, name);
    ApiError::new(
        422,
        "Invalid",
        format!("the patch could not be applied: {e}"),
    )
}

/// Server-side apply: create when absent, else merge under field ownership.
async fn apply(
    server: &ApiServer,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    mut applied: Value,
    ctx: &RequestCtx,
) -> Result<(Value, bool), ApiError> {
    if ctx.field_manager.is_empty() || ctx.field_manager == "unknown" && !applied.is_object() {
        return Err(ApiError::bad_request(
            "PATCH with apply requires a fieldManager",
        ));
    }
    check_type_meta(rt, &mut applied)?;
    if let Some(n) = meta_str(&applied, "name") {
        if n != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
    }
    let ty = apimachinery::patch_meta::root_type(&rt.group, &rt.kind);
    let now = server.now_rfc3339();
    for _ in 0..MAX_CONFLICT_RETRIES {
        match get(server, rt, ns, name).await {
            Err(e) if e.code == 404 && subresource.is_none() => {
                let mut obj = apimachinery::apply::apply(
                    None,
                    &applied,
                    &ctx.field_manager,
                    ctx.force,
                    ty,
                    &now,
                )
                .map_err(|e| apply_error(rt, name, e))?;
                meta_mut(&mut obj).insert("name".into(), json!(name));
                match create_applied(server, rt, ns, obj, ctx).await {
                    Err(e) if e.code == 409 && e.reason == "AlreadyExists" => continue,
                    other => return other.map(|o| (o, true)),
                }
            }
            Err(e) => return Err(e),
            Ok((old, rev)) => {
                let new = apimachinery::apply::apply(
                    Some(&old),
                    &applied,
                    &ctx.field_manager,
                    ctx.force,
                    ty,
                    &now,
                )
                .map_err(|e| apply_error(rt, name, e))?;
                match write_update(
                    server,
                    rt,
                    ns,
                    name,
                    &old,
                    rev,
                    new,
                    subresource,
                    ctx,
                    "Apply",
                )
                .await
                {
                    Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
                    other => return other.map(|o| (o, false)),
                }
            }
        }
    }
    Err(ApiError::conflict(
        &rt.group,
        &rt.plural,
        name,
        "too many concurrent writers; try again",
    ))
}

async fn create_applied(
    server: &ApiServer,
    rt: &ResourceType,
    ns: Option<&str>,
    obj: Value,
    ctx: &RequestCtx,
) -> Result<Value, ApiError> {
    // The Apply entry computed by `apply` already owns every applied field;
    // create must not add an Update entry of its own.
    create_inner(server, rt, ns, obj, ctx, false).await
}

fn apply_error(rt: &ResourceType, name: &str, e: apimachinery::apply::ApplyError) -> ApiError {
    match &e {
        apimachinery::apply::ApplyError::Conflicts(conflicts) => {
            let mut err = ApiError::new(409, "Conflict", e.to_string());
            err.details = Some(Box::new(api::status::Details {
                name: name.into(),
                group: rt.group.clone(),
                kind: rt.plural.clone(),
                causes: conflicts
                    .iter()
                    .map(|c| Cause {
                        reason: "FieldManagerConflict".into(),
                        message: format!("conflict with \"{}\"", c.manager),
                        field: c.field.clone(),
                    })
                    .collect(),
                retry_after_seconds: None,
            }));
            err
        }
        #[allow(unreachable_patterns)]
        _ => ApiError::bad_request(e.to_string()),
    }
}

// ---------------------------------------------------------------- scale

fn path_get<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    obj.pointer(&dotted.replace('.', "/"))
}

fn scale_of(rt: &ResourceType, obj: &Value) -> Value {
    let spec = rt.scale.as_ref().expect("scale subresource");
    let replicas = path_get(obj, &spec.spec_replicas_path)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status_replicas = path_get(obj, &spec.status_replicas_path)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut selector = spec
        .label_selector_path
        .as_deref()
        .and_then(|p| path_get(obj, p))
        .and_then(Value::as_str)
        .map(String::from);
    if selector.is_none() {
        // Built-in kinds: the selector string from spec.selector.
        selector = obj.pointer("/spec/selector").map(|s| {
            match s.get("matchLabels").or(Some(s)).and_then(Value::as_object) {
                Some(m) if s.get("matchExpressions").is_none() => m
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(","),
                _ => apimachinery::selector::LabelSelector::from_json(Some(s), "spec.selector")
                    .map(|l| l.to_string())
                    .unwrap_or_default(),
            }
        });
    }
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut scale_meta = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(f) {
            scale_meta[f] = v.clone();
        }
    }
    let mut status = json!({"replicas": status_replicas});
    if let Some(s) = selector {
        status["selector"] = json!(s);
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_meta, "spec": {"replicas": replicas}, "status": status})
}

fn set_replicas(rt: &ResourceType, obj: &Value, scale: &Value) -> Result<Value, ApiError> {
    let spec = rt.scale.as_ref().expect("scale subresource");
    let replicas = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
    let Some(n) = replicas.as_i64() else {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            meta_str(obj, "name").unwrap_or(""),
            vec![Cause::invalid_raw(
                "spec.replicas",
                &replicas,
                "must be an integer",
            )],
        ));
    };
    if n < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            meta_str(obj, "name").unwrap_or(""),
            vec![Cause::invalid_raw(
                "spec.replicas",
                n,
                "must be greater than or equal to 0",
            )],
        ));
    }
    let mut new = obj.clone();
    let pointer = spec.spec_replicas_path.replace('.', "/");
    set_pointer(&mut new, &pointer, json!(n));
    if let Some(rv) = scale
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        meta_mut(&mut new).insert("resourceVersion".into(), json!(rv));
    } else {
        meta_mut(&mut new).remove("resourceVersion");
    }
    Ok(new)
}

fn set_pointer(v: &mut Value, pointer: &str, new: Value) {
    let mut cur = v;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            if let Some(m) = cur.as_object_mut() {
                m.insert(p.to_string(), new);
            }
            return;
        }
        if !cur.get(*p).is_some_and(Value::is_object) {
            cur[*p] = json!({});
        }
        cur = cur.get_mut(*p).unwrap();
    }
}

async fn update_scale(
    server: &ApiServer,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    scale: Value,
    ctx: &RequestCtx,
) -> Result<Value, ApiError> {
    let obj = update_with(server, rt, ns, name, None, ctx, "Update", |old| {
        set_replicas(rt, old, &scale)
    })
    .await?;
    Ok(scale_of(rt, &obj))
}

async fn patch_scale(
    server: &ApiServer,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    headers: &HeaderMap,
    bytes: &[u8],
    ctx: &RequestCtx,
) -> Result<Value, ApiError> {
    let media_type = body::media_type(headers);
    let p = body::decode_json(bytes)?;
    let obj = update_with(server, rt, ns, name, None, ctx, "Update", |old| {
        let current = scale_of(rt, old);
        let patched = match media_type.as_str() {
            "application/json-patch+json" => apimachinery::patch::apply_json_patch(&current, &p),
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                apimachinery::patch::apply_merge_patch(&current, &p)
            }
            other => return Err(ApiError::unsupported_media_type(other)),
        }
        .map_err(|e| patch_error(rt, name, e))?;
        let mut patched = patched;
        // The scale's resourceVersion is the object's: a patch without one is unconditional.
        if p.pointer("/metadata/resourceVersion").is_none() {
            meta_mut(&mut patched).remove("resourceVersion");
        }
        set_replicas(rt, old, &patched)
    })
    .await?;
    Ok(scale_of(rt, &obj))
}

// ---------------------------------------------------------------- delete

#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteOptions {
    pub propagation: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

fn delete_options(
    headers: &HeaderMap,
    bytes: &[u8],
    query: &Query,
) -> Result<DeleteOptions, ApiError> {
    let mut o = DeleteOptions::default();
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let v = body::decode_object(headers, bytes)?;
        o = delete_options_from_json(&v);
    }
    if let Some(p) = query.get("propagationPolicy") {
        o.propagation = Some(p.to_string());
    }
    if query.get("orphanDependents") == Some("true") && o.propagation.is_none() {
        o.propagation = Some("Orphan".into());
    }
    if let Some(g) = query.get("gracePeriodSeconds") {
        o.grace_period_seconds =
            Some(g.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid gracePeriodSeconds: {g:?}"))
            })?);
    }
    if query.get("dryRun") == Some("All") {
        o.dry_run = true;
    }
    check_propagation(&o)?;
    Ok(o)
}

/// The fields of a `DeleteOptions` body (also the `deleteOptions` of an Eviction).
pub(crate) fn delete_options_from_json(v: &Value) -> DeleteOptions {
    let text = |pointer: &str| v.pointer(pointer).and_then(Value::as_str).map(String::from);
    let mut propagation = text("/propagationPolicy");
    if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) && propagation.is_none() {
        propagation = Some("Orphan".into());
    }
    DeleteOptions {
        propagation,
        grace_period_seconds: v.get("gracePeriodSeconds").and_then(Value::as_i64),
        precondition_uid: text("/preconditions/uid"),
        precondition_resource_version: text("/preconditions/resourceVersion"),
        dry_run: v
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All")),
    }
}

pub(crate) fn check_propagation(o: &DeleteOptions) -> Result<(), ApiError> {
    if let Some(p) = &o.propagation {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![Cause::not_supported(
                    "propagationPolicy",
                    p,
                    &["Foreground", "Background", "Orphan"],
                )],
            ));
        }
    }
    Ok(())
}

pub(crate) enum Deleted {
    /// Removed from the store.
    Gone(Value),
    /// Marked with a deletionTimestamp; finalizers (or the node agent) finish it.
    Pending(Value),
}

pub(crate) async fn delete(
    server: &ApiServer,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    options: &DeleteOptions,
    ctx: &RequestCtx,
) -> Result<Deleted, ApiError> {
    for _ in 0..MAX_CONFLICT_RETRIES {
        let (obj, rev) = get(server, rt, ns, name).await?;
        if let Some(uid) = &options.precondition_uid {
            if meta_str(&obj, "uid") != Some(uid.as_str()) {
                return Err(ApiError::conflict(
                    &rt.group,
                    &rt.plural,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&obj, "uid").unwrap_or("")
                    ),
                ));
            }
        }
        if let Some(want) = &options.precondition_resource_version {
            if *want != rev.to_string() {
                return Err(ApiError::conflict(
                    &rt.group,
                    &rt.plural,
                    name,
                    &format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rev}"),
                ));
            }
        }
        let mut fins = finalizers(&obj);
        let policy = options
            .propagation
            .clone()
            .unwrap_or_else(|| default_propagation(rt).to_string());
        let is_namespace = rt.group.is_empty() && rt.kind == "Namespace";
        let graceful_pod = rt.group.is_empty()
            && rt.kind == "Pod"
            && obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
            && !matches!(
                obj.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded") | Some("Failed")
            )
            && options.grace_period_seconds.unwrap_or(1) > 0;
        match policy.as_str() {
            "Orphan" if !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
            "Foreground" if !fins.iter().any(|f| f == "foregroundDeletion") => {
                fins.push("foregroundDeletion".into())
            }
            _ => {}
        }
        if fins.is_empty() && !is_namespace && !graceful_pod {
            if options.dry_run || ctx.dry_run {
                return Ok(Deleted::Gone(obj));
            }
            match server.store.delete(&rt.key(ns, name), Some(rev)).await {
                Ok((del_rev, _)) => {
                    let mut gone = obj;
                    meta_mut(&mut gone)
                        .insert("resourceVersion".into(), json!(del_rev.to_string()));
                    after_write(server, rt).await;
                    after_delete(server, rt, &gone).await;
                    return Ok(Deleted::Gone(gone));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(e, rt, name)),
            }
        }
        // Graceful: mark, and let finalizers, the namespace finalizer or the agent finish.
        let mut new = obj.clone();
        if new.pointer("/metadata/deletionTimestamp").is_none() {
            let meta = meta_mut(&mut new);
            let grace = if graceful_pod {
                options
                    .grace_period_seconds
                    .or_else(|| {
                        obj.pointer("/spec/terminationGracePeriodSeconds")
                            .and_then(Value::as_i64)
                    })
                    .unwrap_or(30)
            } else {
                0
            };
            let at = server.now() + chrono::Duration::seconds(grace);
            meta.insert(
                "deletionTimestamp".into(),
                json!(at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            );
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
        } else if !graceful_pod
            && new
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_some_and(|g| g > 0)
        {
            // A shorter grace period (the agent's final grace-0 delete) while
            // finalizers still hold the object: the last finalizer's removal
            // then deletes it.
            meta_mut(&mut new).insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        if !fins.is_empty() {
            meta_mut(&mut new).insert("finalizers".into(), json!(fins));
        }
        if is_namespace {
            new["status"]["phase"] = json!("Terminating");
        }
        if new == obj {
            return Ok(Deleted::Pending(obj));
        }
        if options.dry_run || ctx.dry_run {
            return Ok(Deleted::Pending(new));
        }
        let stored = to_storage(rt, new)?;
        match server
            .store
            .update(&rt.key(ns, name), encode_for_store(&stored), rev)
            .await
        {
            Ok(kv) => return Ok(Deleted::Pending(from_storage(rt, decode_stored(&kv)?)?)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(e, rt, name)),
        }
    }
    Err(ApiError::conflict(
        &rt.group,
        &rt.plural,
        name,
        "too many concurrent writers; try again",
    ))
}

/// Kubernetes orphans by default only for the legacy kinds that did so before
/// garbage collection existed (extensions-era ReplicationControllers are the
/// exception we keep none of); every drover kind cascades in the background.
fn default_propagation(_rt: &ResourceType) -> &'static str {
    "Background"
}

async fn delete_collection(
    server: &ApiServer,
    rt: &ResourceType,
    rp: &ResourcePath,
    query: &Query,
    options: &DeleteOptions,
    ctx: &RequestCtx,
) -> Result<(), ApiError> {
    let mut q = query.clone();
    q.0.remove("limit");
    q.0.remove("continue");
    let list = list_objects(server, rt, rp, &q).await?;
    for obj in list.items {
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        let ns = meta_str(&obj, "namespace").map(String::from);
        match delete(server, rt, ns.as_deref(), &name, options, ctx).await {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- bootstrap

/// Objects every cluster starts with; created if absent, never overwritten.
pub(crate) async fn bootstrap(server: &ApiServer) -> Result<(), ApiError> {
    use futures::future::join_all;
    let registry = server.registry();
    let rt = |g: &str, p: &str| registry.get(g, "v1", p).expect("built in");
    let (ns_rt, sa_rt) = (rt("", "namespaces"), rt("", "serviceaccounts"));
    let (rc_rt, pc_rt) = (
        rt("node.k8s.io", "runtimeclasses"),
        rt("scheduling.k8s.io", "priorityclasses"),
    );
    let sc_rt = rt("storage.k8s.io", "storageclasses");
    let ctx = RequestCtx::internal("drover-apiserver");
    let namespaces = ["default", "kube-system", "kube-public", "kube-node-lease"];
    // Cluster-scoped objects first, all at once (the store commits them in
    // one group), then what lives in the namespaces.
    let mut first: Vec<(&ResourceType, Value)> = namespaces
        .iter()
        .map(|ns| (&*ns_rt, json!({"metadata": {"name": ns}})))
        .collect();
    for (name, handler) in [("oci", "runc"), ("process", "process")] {
        first.push((
            &*rc_rt,
            json!({"metadata": {"name": name}, "handler": handler}),
        ));
    }
    // The local-path provisioner's class (crates/controllers/src/localpath.rs).
    first.push((
        &*sc_rt,
        json!({"metadata": {"name": "local-path",
                            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
               "provisioner": api::admission::LOCAL_PATH_PROVISIONER,
               "reclaimPolicy": "Delete",
               "volumeBindingMode": "WaitForFirstConsumer"}),
    ));
    for (name, value, description) in [
        ("system-cluster-critical", 2_000_000_000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
        ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
    ] {
        first.push((&*pc_rt, json!({"metadata": {"name": name}, "value": value, "description": description})));
    }
    for r in join_all(
        first
            .into_iter()
            .map(|(rt, obj)| create(server, rt, None, obj, &ctx)),
    )
    .await
    {
        ignore_exists(r)?;
    }
    let accounts = namespaces.iter().map(|ns| {
        create(
            server,
            &sa_rt,
            Some(ns),
            json!({"metadata": {"name": "default"}}),
            &ctx,
        )
    });
    for r in join_all(accounts).await {
        ignore_exists(r)?;
    }
    crate::services::bootstrap(server).await?;
    crate::gc::load_crds(server).await;
    Ok(())
}

/// Every object of a built-in cluster-scoped resource, straight from the
/// store (for admission decisions).
async fn list_all(server: &ApiServer, group: &str, plural: &str) -> Result<Vec<Value>, ApiError> {
    let registry = server.registry();
    let rt = registry.get(group, "v1", plural).expect("built in");
    let resp = server
        .store
        .range(RangeRequest {
            prefix: rt.list_prefix(None),
            start_after: None,
            limit: None,
            revision: None,
        })
        .await
        .map_err(|e| store_error(e, &rt, ""))?;
    resp.kvs
        .iter()
        .map(|kv| from_storage(&rt, decode_stored(kv)?))
        .collect()
}

fn ignore_exists(r: Result<Value, ApiError>) -> Result<(), ApiError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::{as_stored, decode_stored, encode_for_store, spec_changed, unchanged};
    use serde_json::json;
    use store::KeyValue;

    /// The stored form is the object's JSON less `metadata.resourceVersion`,
    /// key order kept, in a buffer of exactly its size.
    #[test]
    fn stored_form_drops_only_the_resource_version() {
        let obj = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "resourceVersion": "12", "labels": {"resourceVersion": "kept"}},
            "data": {"resourceVersion": "kept too"}
        });
        let mut expected = obj.clone();
        expected["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
        let stored = encode_for_store(&obj);
        assert_eq!(
            &stored[..],
            serde_json::to_vec(&expected).unwrap().as_slice()
        );
        assert_eq!(
            encode_for_store(&json!({"metadata": "odd"}))[..],
            *br#"{"metadata":"odd"}"#
        );
        assert_eq!(encode_for_store(&json!([1]))[..], *b"[1]");
    }

    #[test]
    fn only_fields_outside_metadata_and_status_change_the_spec() {
        let old = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"n": 1}, "status": {"s": 1}});
        let mut new = old.clone();
        new["metadata"]["labels"] = json!({"x": "y"});
        new["status"]["s"] = json!(2);
        new["apiVersion"] = json!("v2");
        assert!(!spec_changed(&old, &new));
        new["spec"]["n"] = json!(2);
        assert!(spec_changed(&old, &new));
        // A new or a removed top-level field is a change; key order is not.
        let data = json!({"metadata": {}, "data": {"a": "1"}, "binaryData": {}});
        let reordered = json!({"binaryData": {}, "metadata": {}, "data": {"a": "1"}});
        assert!(!spec_changed(&data, &reordered));
        assert!(spec_changed(
            &data,
            &json!({"metadata": {}, "data": {"a": "1"}})
        ));
        assert!(spec_changed(
            &json!({"metadata": {}, "data": {"a": "1"}}),
            &data
        ));
    }

    #[test]
    fn the_written_object_is_what_reading_it_back_gives() {
        let obj = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "resourceVersion": "12", "uid": "u"},
            "data": {"n": "1", "f": 1.5, "i": -3, "big": 18446744073709551615u64}
        });
        let kv = KeyValue {
            key: "/registry/configmaps/default/a".into(),
            value: encode_for_store(&obj),
            create_revision: 40,
            mod_revision: 42,
            version: 2,
        };
        let read = decode_stored(&kv).unwrap();
        let written = as_stored(obj, &kv);
        assert_eq!(written, read);
        // Key order too: what a client receives is byte for byte the same.
        assert_eq!(written.to_string(), read.to_string());
    }

    #[test]
    fn an_update_differing_only_in_resource_version_is_unchanged() {
        let old = json!({"metadata": {"name": "a", "resourceVersion": "7", "labels": {"x": "1"}}, "spec": {"n": 1}});
        let same = json!({"spec": {"n": 1}, "metadata": {"labels": {"x": "1"}, "name": "a", "resourceVersion": "9"}});
        let without_version =
            json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"n": 1}});
        assert!(unchanged(&old, &same));
        assert!(unchanged(&old, &without_version));
        assert!(unchanged(&without_version, &old));
    }

    #[test]
    fn any_other_difference_is_a_change() {
        let old = json!({"metadata": {"name": "a", "resourceVersion": "7"}, "spec": {"n": 1}});
        for new in [
            json!({"metadata": {"name": "a", "resourceVersion": "7"}, "spec": {"n": 2}}),
            json!({"metadata": {"name": "a", "resourceVersion": "7", "labels": {}}, "spec": {"n": 1}}),
            json!({"metadata": {"name": "a", "resourceVersion": "7"}, "spec": {"n": 1}, "status": {}}),
            json!({"metadata": {"name": "b", "resourceVersion": "7"}, "spec": {"n": 1}}),
            json!({"metadata": "a", "spec": {"n": 1}}),
            json!({"spec": {"n": 1}}),
        ] {
            assert!(!unchanged(&old, &new), "{new} was taken for {old}");
            assert!(!unchanged(&new, &old), "{old} was taken for {new}");
        }
    }
}
