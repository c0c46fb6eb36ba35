//! The API server's own background work: the garbage collector (ownerReferences,
//! background/foreground cascading deletion, orphaning), the namespace
//! finalizer (deleting a namespace empties it), the CRD loader (a new CRD is
//! served at once, and marked Established), and the compactor.
//!
//! An in-memory index of every object's metadata is fed by one store watch
//! on `/registry/`; `plan` is a pure function from that index to actions, and
//! the loop applies them through the same code paths as API requests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use api::registry::{split_api_version, ResourceType};
use api::Registry;
use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};
use store::{Event, RangeRequest, StoreError};

use crate::objects::{self, DeleteOptions, RequestCtx};
use crate::ApiServer;

mod index;
pub use index::Index;

/// What the collector knows of one object.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectMeta {
    pub key: String,
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub owners: Vec<OwnerRef>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
    /// Namespaces only: spec.finalizers still holds "kubernetes".
    pub namespace_finalizer: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

impl ObjectMeta {
    pub fn from_object(key: &str, obj: &Value) -> Option<ObjectMeta> {
        let meta = obj.get("metadata")?;
        let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        let owners = meta
            .get("ownerReferences")
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .map(|r| OwnerRef {
                        api_version: s(r.get("apiVersion")),
                        kind: s(r.get("kind")),
                        name: s(r.get("name")),
                        uid: s(r.get("uid")),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(ObjectMeta {
            key: key.to_string(),
            api_version: s(obj.get("apiVersion")),
            kind: s(obj.get("kind")),
            namespace: meta
                .get("namespace")
                .and_then(Value::as_str)
                .map(String::from),
            name: s(meta.get("name")),
            uid: s(meta.get("uid")),
            owners,
            finalizers: api::string_list(meta.get("finalizers")),
            deleting: meta.get("deletionTimestamp").is_some_and(|v| !v.is_null()),
            namespace_finalizer: obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|f| f == "kubernetes")),
        })
    }

    /// The collector's view of a stored object, decoding only the fields it
    /// keeps (the rest of the JSON is skipped, not built into a `Value`: the
    /// collector sees every write of every kind).
    pub fn from_stored(key: &str, bytes: &[u8]) -> Option<ObjectMeta> {
        match serde_json::from_slice::<stored::Object>(bytes) {
            Ok(o) => {
                let meta = o.metadata?;
                Some(ObjectMeta {
                    key: key.to_string(),
                    api_version: o.api_version.unwrap_or_default(),
                    kind: o.kind.unwrap_or_default(),
                    namespace: meta.namespace,
                    name: meta.name.unwrap_or_default(),
                    uid: meta.uid.unwrap_or_default(),
                    owners: meta
                        .owner_references
                        .unwrap_or_default()
                        .into_iter()
                        .map(|r| OwnerRef {
                            api_version: r.api_version.unwrap_or_default(),
                            kind: r.kind.unwrap_or_default(),
                            name: r.name.unwrap_or_default(),
                            uid: r.uid.unwrap_or_default(),
                        })
                        .collect(),
                    finalizers: api::string_list(meta.finalizers.as_ref()),
                    deleting: meta.deletion_timestamp.is_some(),
                    namespace_finalizer: o
                        .spec
                        .and_then(|s| s.finalizers)
                        .as_ref()
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.iter().any(|f| f == "kubernetes")),
                })
            }
            // An unusual shape (a field of another type): the general path.
            Err(_) => {
                let obj: Value = serde_json::from_slice(bytes).ok()?;
                ObjectMeta::from_object(key, &obj)
            }
        }
    }

    fn is_namespace(&self) -> bool {
        self.api_version == "v1" && self.kind == "Namespace"
    }
}

/// The fields of a stored object the collector reads, for `from_stored`.
mod stored {
    use serde::Deserialize;
    use serde_json::Value;

    #[derive(Deserialize)]
    pub(super) struct Object {
        #[serde(rename = "apiVersion")]
        pub api_version: Option<String>,
        pub kind: Option<String>,
        pub metadata: Option<Metadata>,
        pub spec: Option<Spec>,
    }

    #[derive(Deserialize)]
    pub(super) struct Metadata {
        pub name: Option<String>,
        pub namespace: Option<String>,
        pub uid: Option<String>,
        #[serde(rename = "ownerReferences")]
        pub owner_references: Option<Vec<OwnerReference>>,
        pub finalizers: Option<Value>,
        #[serde(rename = "deletionTimestamp")]
        pub deletion_timestamp: Option<serde::de::IgnoredAny>,
    }

    #[derive(Deserialize)]
    pub(super) struct OwnerReference {
        #[serde(rename = "apiVersion")]
        pub api_version: Option<String>,
        pub kind: Option<String>,
        pub name: Option<String>,
        pub uid: Option<String>,
    }

    #[derive(Deserialize)]
    pub(super) struct Spec {
        pub finalizers: Option<Value>,
    }
}

/// One thing the collector must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Delete an object (in the background) whose owners are all gone, or
    /// that lives in a terminating namespace, or whose owner is being
    /// deleted in the foreground.
    Delete { key: String, reason: &'static str },
    /// Remove the given owner from the dependent's ownerReferences (orphaning).
    RemoveOwner { key: String, owner_uid: String },
    /// Remove a finalizer the server owns ("foregroundDeletion", "orphan").
    RemoveFinalizer {
        key: String,
        finalizer: &'static str,
    },
    /// All content of a terminating namespace is gone: drop its "kubernetes" finalizer.
    FinalizeNamespace { name: String },
    /// The owner of a dependent may be gone: check with a live read, delete if so.
    VerifyOwners { key: String },
    /// Every active namespace has a ServiceAccount named "default".
    CreateDefaultServiceAccount { namespace: String },
    /// Every active namespace has the `kube-root-ca.crt` ConfigMap (when
    /// the server has a CA).
    PublishRootCa { namespace: String },
}

/// Decides what to do from the index alone: the incremental planner
/// ([`Index`]) with every key marked. Pure; table-tested below.
pub fn plan(index: &BTreeMap<String, ObjectMeta>) -> Vec<Action> {
    Index::from_objects(index.values().cloned()).take_plan(false)
}

/// What the root CA publisher must do: create `kube-root-ca.crt` in every
/// active namespace without one. Pure; table-tested below.
pub fn root_ca_plan(index: &BTreeMap<String, ObjectMeta>) -> Vec<Action> {
    Index::from_objects(index.values().cloned())
        .take_plan(true)
        .into_iter()
        .filter(|a| matches!(a, Action::PublishRootCa { .. }))
        .collect()
}

/// The resource type that stores objects under `key` (the preferred version).
fn resource_for_key(registry: &Registry, key: &str) -> Option<Arc<ResourceType>> {
    registry
        .all()
        .iter()
        .filter(|rt| key.starts_with(&rt.storage_prefix) && rt.api_version() == rt.storage_version)
        .max_by_key(|rt| rt.storage_prefix.len())
        .cloned()
}

fn name_and_namespace(rt: &ResourceType, key: &str) -> (Option<String>, String) {
    let rest = &key[rt.storage_prefix.len()..];
    match rest.split_once('/') {
        Some((ns, name)) if rt.namespaced() => (Some(ns.to_string()), name.to_string()),
        _ => (None, rest.to_string()),
    }
}

pub(crate) fn spawn_background(server: Arc<ApiServer>) {
    tokio::spawn(collector_loop(server.clone()));
    tokio::spawn(compactor_loop(server));
}

async fn collector_loop(server: Arc<ApiServer>) {
    // The index and the revision it reflects survive a lost watch: the
    // collector resumes from there and lists everything again only when
    // that revision has been compacted.
    let mut state: Option<(Index, i64)> = None;
    loop {
        let Err(e) = run_collector(&server, &mut state).await else {
            continue;
        };
        if matches!(e, StoreError::Compacted { .. }) {
            // What it missed is gone from the history: list everything again.
            state = None;
        }
        match (&state, &e) {
            // Fell behind: the history it missed is still in the store as
            // long as it resumes at once.
            (Some(_), StoreError::WatchLagged) => {
                tracing::debug!("garbage collector resuming its watch: {e}");
                tokio::task::yield_now().await;
            }
            (Some(_), _) => {
                tracing::debug!("garbage collector resuming its watch: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (None, _) => {
                tracing::warn!("garbage collector relisting: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Lists every object's metadata under `/registry/`: the index, and the
/// revision it was read at.
async fn list_all(server: &ApiServer) -> Result<(Index, i64), StoreError> {
    let mut objects = Vec::new();
    let mut start_after = None;
    let mut revision = None;
    loop {
        let resp = server
            .store
            .range(RangeRequest {
                prefix: "/registry/".into(),
                start_after: start_after.clone(),
                limit: Some(1000),
                revision,
            })
            .await?;
        revision = Some(resp.revision);
        objects.extend(
            resp.kvs
                .iter()
                .filter_map(|kv| ObjectMeta::from_stored(&kv.key, &kv.value)),
        );
        if !resp.more {
            break;
        }
        start_after = resp.kvs.last().map(|kv| kv.key.clone());
    }
    Ok((Index::from_objects(objects), revision.unwrap_or(0)))
}

async fn run_collector(
    server: &Arc<ApiServer>,
    state: &mut Option<(Index, i64)>,
) -> Result<(), StoreError> {
    let (index, revision) = match state.take() {
        Some(mut resumed) => {
            // Actions that failed before the watch was lost are planned again.
            resumed.0.mark_all();
            state.insert(resumed)
        }
        None => state.insert(list_all(server).await?),
    };
    let mut watch = server.store.watch("/registry/", *revision + 1).await?;
    let mut failed_at: HashMap<Action, tokio::time::Instant> = HashMap::new();
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    // Plan what the changes of each batch call for; every few seconds, and
    // once a failed action may be retried, plan the whole index again.
    loop {
        for action in index.take_plan(server.ca_certificate().is_some()) {
            // Do not hammer an action that keeps failing.
            if failed_at
                .get(&action)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
            {
                continue;
            }
            if let Err(e) = execute(server, index.objects(), &action).await {
                tracing::debug!("gc action {action:?} failed: {e}");
                let now = tokio::time::Instant::now();
                failed_at.insert(action, now);
                retry_at.get_or_insert(now + Duration::from_secs(2));
            }
        }
        // `biased`: a fixed polling order keeps the simulation deterministic.
        tokio::select! {
            biased;
            batch = watch.next() => {
                // This batch and whatever else is already waiting, then one
                // plan. (Planning is incremental, so there is no need to let
                // a burst settle first; a pause per batch here once capped
                // the collector at a few dozen batches a second, and it fell
                // behind the store.)
                let mut batch = batch;
                let mut crds = false;
                for taken in 1.. {
                    let Some(next) = batch else {
                        return Err(StoreError::Unavailable("store watch ended".into()));
                    };
                    for ev in next? {
                        crds |= ev.key().starts_with("/registry/apiextensions.k8s.io/customresourcedefinitions/");
                        *revision = (*revision).max(ev.revision());
                        match ev {
                            Event::Put { kv, .. } => match ObjectMeta::from_stored(&kv.key, &kv.value) {
                                Some(m) => index.put(m),
                                None => index.delete(&kv.key),
                            },
                            Event::Delete { prev, .. } => index.delete(&prev.key),
                        }
                    }
                    if taken == 1024 {
                        break;
                    }
                    // Unconstrained: tokio's cooperative budget would end
                    // the drain after ≈ 128 batches a poll, fewer than the
                    // other tasks of a single-threaded runtime (the
                    // simulation's) write between two polls, and the watch
                    // fell 4,096 batches behind and was closed.
                    match tokio::task::unconstrained(watch.next()).now_or_never() {
                        Some(next) => batch = next,
                        None => break,
                    }
                }
                if crds {
                    reload_crds(server).await;
                }
            }
            _ = tick.tick() => index.mark_all(),
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)), if retry_at.is_some() => {
                retry_at = None;
                index.mark_all();
            }
        }
    }
}

impl std::hash::Hash for Action {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        format!("{self:?}").hash(state)
    }
}
impl Eq for Action {}

async fn execute(
    server: &ApiServer,
    index: &BTreeMap<String, ObjectMeta>,
    action: &Action,
) -> Result<(), api::ApiError> {
    let registry = server.registry();
    let ctx = RequestCtx::internal("drover-garbage-collector");
    let locate = |key: &str| -> Result<(Arc<ResourceType>, Option<String>, String), api::ApiError> {
        let rt = resource_for_key(&registry, key)
            .ok_or_else(|| api::ApiError::internal(format!("no resource stores {key}")))?;
        let (ns, name) = name_and_namespace(&rt, key);
        Ok((rt, ns, name))
    };
    match action {
        Action::Delete { key, reason } => {
            let (rt, ns, name) = locate(key)?;
            tracing::debug!("gc: deleting {key}: {reason}");
            let options = DeleteOptions {
                propagation: Some("Background".into()),
                ..Default::default()
            };
            match objects::delete(server, &rt, ns.as_deref(), &name, &options, &ctx).await {
                Ok(_) => Ok(()),
                Err(e) if e.code == 404 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Action::VerifyOwners { key } => {
            let (rt, ns, name) = locate(key)?;
            let Some(meta) = index.get(key) else {
                return Ok(());
            };
            for owner in &meta.owners {
                let (group, version) = split_api_version(&owner.api_version);
                let Some(owner_rt) = registry.by_kind(group, version, &owner.kind) else {
                    continue;
                };
                let owner_ns = if owner_rt.namespaced() {
                    ns.as_deref()
                } else {
                    None
                };
                match objects::get(server, &owner_rt, owner_ns, &owner.name).await {
                    Ok((o, _)) if objects::meta_str(&o, "uid") == Some(owner.uid.as_str()) => {
                        return Ok(())
                    }
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            tracing::debug!("gc: deleting {key}: all owners are gone");
            let options = DeleteOptions {
                propagation: Some("Background".into()),
                ..Default::default()
            };
            match objects::delete(server, &rt, ns.as_deref(), &name, &options, &ctx).await {
                Ok(_) => Ok(()),
                Err(e) if e.code == 404 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Action::RemoveOwner { key, owner_uid } => {
            let (rt, ns, name) = locate(key)?;
            objects::update_with(
                server,
                &rt,
                ns.as_deref(),
                &name,
                None,
                &ctx,
                "Update",
                |old| {
                    let mut new = old.clone();
                    if let Some(refs) = new
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        refs.retain(|r| {
                            r.get("uid").and_then(Value::as_str) != Some(owner_uid.as_str())
                        });
                        if refs.is_empty() {
                            new["metadata"]
                                .as_object_mut()
                                .unwrap()
                                .remove("ownerReferences");
                        }
                    }
                    Ok(new)
                },
            )
            .await
            .map(|_| ())
        }
        Action::RemoveFinalizer { key, finalizer } => {
            let (rt, ns, name) = locate(key)?;
            objects::update_with(
                server,
                &rt,
                ns.as_deref(),
                &name,
                None,
                &ctx,
                "Update",
                |old| {
                    let mut new = old.clone();
                    if let Some(f) = new
                        .pointer_mut("/metadata/finalizers")
                        .and_then(Value::as_array_mut)
                    {
                        f.retain(|x| x != finalizer);
                    }
                    Ok(new)
                },
            )
            .await
            .map(|_| ())
        }
        Action::CreateDefaultServiceAccount { namespace } => {
            let rt = registry.get("", "v1", "serviceaccounts").expect("built in");
            let sa = json!({"metadata": {"name": "default"}});
            match objects::create(
                server,
                &rt,
                Some(namespace),
                sa,
                &RequestCtx::internal("drover-serviceaccount-controller"),
            )
            .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Action::PublishRootCa { namespace } => {
            let rt = registry.get("", "v1", "configmaps").expect("built in");
            let Some(ca) = server.ca_certificate() else {
                return Ok(());
            };
            let config_map = json!({
                "metadata": {
                    "name": api::admission::ROOT_CA_CONFIG_MAP,
                    "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."},
                },
                "data": {"ca.crt": ca},
            });
            let ctx = RequestCtx::internal("drover-root-ca-cert-publisher");
            match objects::create(server, &rt, Some(namespace), config_map, &ctx).await {
                Ok(_) => Ok(()),
                Err(e) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Action::FinalizeNamespace { name } => {
            let rt = registry.get("", "v1", "namespaces").expect("built in");
            objects::update_with(
                server,
                &rt,
                None,
                name,
                Some("finalize"),
                &ctx,
                "Update",
                |old| {
                    let mut new = old.clone();
                    if let Some(f) = new
                        .pointer_mut("/spec/finalizers")
                        .and_then(Value::as_array_mut)
                    {
                        f.retain(|x| x != "kubernetes");
                    }
                    Ok(new)
                },
            )
            .await
            .map(|_| ())
        }
    }
}

// ---------------------------------------------------------------- CRDs

/// Reads every CRD and serves its versions. Called at start and whenever a
/// CRD changes (by this server, or by another one sharing the etcd).
pub(crate) async fn load_crds(server: &ApiServer) {
    reload_crds(server).await
}

async fn reload_crds(server: &ApiServer) {
    let registry = server.registry();
    let Some(crd_rt) = registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    else {
        return;
    };
    let Ok(resp) = server
        .store
        .range(RangeRequest {
            prefix: crd_rt.list_prefix(None),
            ..Default::default()
        })
        .await
    else {
        return;
    };
    let mut custom = Vec::new();
    let mut to_establish = Vec::new();
    for kv in &resp.kvs {
        let Ok(crd) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        if crd.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        custom.extend(api::crd::resource_types(&crd));
        let established = crd
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
            });
        if !established {
            if let Some(name) = crd.pointer("/metadata/name").and_then(Value::as_str) {
                to_establish.push(name.to_string());
            }
        }
    }
    server.set_registry(Registry::with_custom(custom));
    let ctx = RequestCtx::internal("drover-apiextensions-controller");
    for name in to_establish {
        let now = server.now_rfc3339();
        let _ = objects::update_with(server, &crd_rt, None, &name, Some("status"), &ctx, "Update", |old| {
            let mut new = old.clone();
            let names = old.pointer("/spec/names").cloned().unwrap_or(json!({}));
            new["status"] = json!({
                "acceptedNames": names,
                "storedVersions": old.pointer("/spec/versions").and_then(Value::as_array).map(|vs| vs.iter().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
            });
            Ok(new)
        })
        .await;
    }
}

/// Reloads the CRDs right after a CRD write, so the new resource is served
/// before the write returns (the collector's watch reloads again later, which
/// also covers writes by other servers sharing one etcd). Boxed: establishing
/// a CRD writes its status, which comes back here once more.
pub(crate) fn crds_changed(server: &ApiServer) -> futures::future::BoxFuture<'_, ()> {
    Box::pin(reload_crds(server))
}

// ---------------------------------------------------------------- compactor

/// Every five minutes, compact history older than what was current five
/// minutes before (what kube-apiserver does for etcd). The embedded store
/// also compacts on its own; compacting it again is harmless.
async fn compactor_loop(server: Arc<ApiServer>) {
    let mut previous: Option<i64> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tick.tick().await;
        if let Some(rev) = previous {
            if let Err(e) = server.store.compact(rev).await {
                tracing::debug!("compaction to {rev}: {e}");
            }
        }
        previous = server
            .store
            .revisions()
            .await
            .ok()
            .map(|(current, _)| current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(
        key: &str,
        kind: &str,
        ns: Option<&str>,
        uid: &str,
        owners: &[&str],
        finalizers: &[&str],
        deleting: bool,
    ) -> ObjectMeta {
        ObjectMeta {
            key: key.into(),
            api_version: if kind == "Namespace" {
                "v1".into()
            } else {
                "apps/v1".into()
            },
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: key.rsplit('/').next().unwrap().into(),
            uid: uid.into(),
            owners: owners
                .iter()
                .map(|u| OwnerRef {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "rs".into(),
                    uid: u.to_string(),
                })
                .collect(),
            finalizers: finalizers.iter().map(|s| s.to_string()).collect(),
            deleting,
            namespace_finalizer: kind == "Namespace",
        }
    }

    fn index(objs: Vec<ObjectMeta>) -> BTreeMap<String, ObjectMeta> {
        objs.into_iter().map(|o| (o.key.clone(), o)).collect()
    }

    #[test]
    fn stored_objects_decode_as_from_a_value() {
        for obj in [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d", "uid": "u1",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "r1", "controller": true}],
                "finalizers": ["a", 3, "b"], "deletionTimestamp": "2026-01-01T00:00:00Z", "labels": {"x": "y"}},
                "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Running"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "uid": "n", "deletionTimestamp": null},
                "spec": {"finalizers": ["kubernetes"]}}),
            json!({"apiVersion": "example.com/v1", "kind": "Odd", "metadata": {"name": "o", "uid": "o1"},
                "spec": {"finalizers": {"not": "a list"}}}),
            json!({"apiVersion": "example.com/v1", "kind": "Odd", "metadata": {"name": 5}}),
            json!({"kind": "NoMetadata"}),
        ] {
            let bytes = serde_json::to_vec(&obj).unwrap();
            assert_eq!(
                ObjectMeta::from_stored("/k", &bytes),
                ObjectMeta::from_object("/k", &obj),
                "{obj}"
            );
        }
    }

    #[test]
    fn orphaned_dependent_is_verified_then_deleted() {
        let idx = index(vec![obj(
            "/p/d/pod1",
            "Pod",
            Some("d"),
            "p1",
            &["rs1"],
            &[],
            false,
        )]);
        assert_eq!(
            plan(&idx),
            vec![Action::VerifyOwners {
                key: "/p/d/pod1".into()
            }]
        );
    }

    #[test]
    fn living_owner_keeps_dependent() {
        let idx = index(vec![
            obj("/rs/d/rs", "ReplicaSet", Some("d"), "rs1", &[], &[], false),
            obj("/p/d/pod1", "Pod", Some("d"), "p1", &["rs1"], &[], false),
        ]);
        assert_eq!(plan(&idx), vec![]);
    }

    #[test]
    fn foreground_deletes_dependents_then_drops_finalizer() {
        let idx = index(vec![
            obj(
                "/rs/d/rs",
                "ReplicaSet",
                Some("d"),
                "rs1",
                &[],
                &["foregroundDeletion"],
                true,
            ),
            obj("/p/d/pod1", "Pod", Some("d"), "p1", &["rs1"], &[], false),
        ]);
        assert_eq!(
            plan(&idx),
            vec![Action::Delete {
                key: "/p/d/pod1".into(),
                reason: "owner is being deleted in the foreground"
            }]
        );
        let idx = index(vec![obj(
            "/rs/d/rs",
            "ReplicaSet",
            Some("d"),
            "rs1",
            &[],
            &["foregroundDeletion"],
            true,
        )]);
        assert_eq!(
            plan(&idx),
            vec![Action::RemoveFinalizer {
                key: "/rs/d/rs".into(),
                finalizer: "foregroundDeletion"
            }]
        );
    }

    #[test]
    fn orphan_removes_owner_refs_then_finalizer() {
        let idx = index(vec![
            obj(
                "/rs/d/rs",
                "ReplicaSet",
                Some("d"),
                "rs1",
                &[],
                &["orphan"],
                true,
            ),
            obj("/p/d/pod1", "Pod", Some("d"), "p1", &["rs1"], &[], false),
        ]);
        assert_eq!(
            plan(&idx),
            vec![Action::RemoveOwner {
                key: "/p/d/pod1".into(),
                owner_uid: "rs1".into()
            }]
        );
    }

    #[test]
    fn active_namespaces_without_the_root_ca_get_it() {
        let idx = index(vec![
            obj("/ns/a", "Namespace", None, "n1", &[], &[], false),
            obj("/ns/b", "Namespace", None, "n2", &[], &[], false),
            obj("/ns/c", "Namespace", None, "n3", &[], &[], true),
            obj(
                "/registry/core/configmaps/b/kube-root-ca.crt",
                "ConfigMap",
                Some("b"),
                "c1",
                &[],
                &[],
                false,
            ),
        ]);
        assert_eq!(
            root_ca_plan(&idx),
            vec![Action::PublishRootCa {
                namespace: "a".into()
            }],
            "b has it, c is terminating"
        );
    }

    #[test]
    fn active_namespace_gets_a_default_service_account() {
        let idx = index(vec![obj("/ns/x", "Namespace", None, "n1", &[], &[], false)]);
        assert_eq!(
            plan(&idx),
            vec![Action::CreateDefaultServiceAccount {
                namespace: "x".into()
            }]
        );
        let idx = index(vec![
            obj("/ns/x", "Namespace", None, "n1", &[], &[], false),
            obj(
                "/registry/core/serviceaccounts/x/default",
                "ServiceAccount",
                Some("x"),
                "s1",
                &[],
                &[],
                false,
            ),
        ]);
        assert_eq!(plan(&idx), vec![]);
    }

    #[test]
    fn terminating_namespace_is_emptied_then_finalized() {
        let idx = index(vec![
            obj("/ns/x", "Namespace", None, "n1", &[], &[], true),
            obj("/cm/x/a", "ConfigMap", Some("x"), "c1", &[], &[], false),
        ]);
        assert_eq!(
            plan(&idx),
            vec![Action::Delete {
                key: "/cm/x/a".into(),
                reason: "namespace is terminating"
            }]
        );
        let idx = index(vec![obj("/ns/x", "Namespace", None, "n1", &[], &[], true)]);
        assert_eq!(
            plan(&idx),
            vec![Action::FinalizeNamespace { name: "x".into() }]
        );
    }
}
