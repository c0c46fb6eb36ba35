//! `POST pods/NAME/eviction`: a pod deletion that respects
//! PodDisruptionBudgets, as kube-apiserver's eviction subresource does it
//! (`pkg/registry/core/pod/storage/eviction.go`) — it is how `kubectl drain`
//! removes pods. Drover has no disruption controller, so the budget of the
//! pod's PDB is computed here from the live pods (`api::disruption`) and the
//! PDB's status is written with the result; the status write is a
//! compare-and-swap, so two concurrent evictions cannot both spend the last
//! allowed disruption.

use std::collections::BTreeSet;

use api::registry::split_api_version;
use api::{ApiError, Cause, ResourceType};
use serde_json::{json, Value};

use crate::objects::{self, meta_str, DeleteOptions, RequestCtx};
use crate::request::{Query, ResourcePath};
use crate::ApiServer;

const MAX_RETRIES: usize = 8;

const DISRUPTION_BUDGET_VIOLATED: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";

fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

/// Evicts pod `name`; answers the Status of a successful eviction (201).
pub(crate) async fn evict(
    server: &ApiServer,
    pods: &ResourceType,
    ns: Option<&str>,
    name: &str,
    eviction: Value,
    ctx: &RequestCtx,
) -> Result<Value, ApiError> {
    check_eviction(&eviction, ns, name)?;
    // v1beta1 has the v1 shape: both are checked as v1.
    let mut typed = eviction.clone();
    typed["apiVersion"] = json!("policy/v1");
    typed["kind"] = json!("Eviction");
    api::validation::check_types("policy", "v1", "Eviction", &typed)?;
    let mut options = match eviction.get("deleteOptions") {
        Some(v) if v.is_object() => objects::delete_options_from_json(v),
        _ => DeleteOptions::default(),
    };
    objects::check_propagation(&options)?;
    let dry_run = options.dry_run || ctx.dry_run;
    options.dry_run = dry_run;
    let rv_given = options.precondition_resource_version.is_some();
    let Some(ns_name) = ns else {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    };

    let registry = server.registry();
    let pdb_rt = registry
        .get("policy", "v1", "poddisruptionbudgets")
        .expect("PodDisruptionBudgets are built in");
    let mut last_conflict = None;
    for _ in 0..MAX_RETRIES {
        let (pod, pod_rev) = objects::get(server, pods, ns, name).await?;
        // Terminal, pending and terminating pods are no disruption (any more):
        // they are deleted without looking at budgets.
        if can_ignore_pdb(&pod) {
            let mut opts = options.clone();
            if should_enforce_resource_version(&pod) && !rv_given {
                // Not racing a pod that becomes Ready meanwhile.
                opts.precondition_resource_version = Some(pod_rev.to_string());
            }
            match delete_evicted(server, pods, ns, name, &opts, ctx).await {
                Err(e) if is_conflict(&e) && !rv_given => {
                    last_conflict = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(success()),
            }
        }

        let budgets: Vec<Value> = list(server, &pdb_rt, ns_name)
            .await?
            .into_iter()
            .filter(|pdb| api::disruption::selects(pdb, &pod))
            .collect();
        if budgets.len() > 1 {
            // A Status without a reason, as Kubernetes answers it.
            return Err(ApiError::new(
                500,
                "",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        let Some(pdb) = budgets.into_iter().next() else {
            delete_evicted(server, pods, ns, name, &options, ctx).await?;
            return Ok(success());
        };
        let pdb_name = meta_str(&pdb, "name").unwrap_or("").to_string();
        let covered: Vec<Value> = list(server, pods, ns_name)
            .await?
            .into_iter()
            .filter(|p| api::disruption::selects(&pdb, p))
            .collect();
        let covered_refs: Vec<&Value> = covered.iter().collect();
        let scale = controller_scale(server, ns_name, &covered_refs).await;
        let now = server.now();
        let budget = api::disruption::compute(&pdb, &covered_refs, scale, now);

        if !api::disruption::pod_ready(&pod) {
            // An unready pod is no part of what the budget protects: it may go
            // when the policy says always, or while the budget is met.
            let always =
                pdb.pointer("/spec/unhealthyPodEvictionPolicy") == Some(&json!("AlwaysAllow"));
            if always
                || (budget.current_healthy >= budget.desired_healthy && budget.desired_healthy > 0)
            {
                let mut opts = options.clone();
                if !rv_given {
                    opts.precondition_resource_version = Some(pod_rev.to_string());
                }
                return match delete_evicted(server, pods, ns, name, &opts, ctx).await {
                    // The pod changed (maybe became Ready): let the client retry.
                    Err(e) if is_conflict(&e) && !rv_given => Err(ApiError::too_many_requests(
                        DISRUPTION_BUDGET_VIOLATED,
                        10,
                        vec![budget_cause(format!(
                            "The disruption budget {pdb_name} is still being processed by the server."
                        ))],
                    )),
                    Err(e) => Err(e),
                    Ok(()) => Ok(success()),
                };
            }
        }

        let pdb_rev: store::Revision = meta_str(&pdb, "resourceVersion")
            .and_then(|rv| rv.parse().ok())
            .unwrap_or(0);
        if budget.disruptions_allowed <= 0 {
            if !dry_run {
                // What a disruption controller would have written; best effort.
                let status = api::disruption::status(&pdb, &budget, &server.now_rfc3339());
                let _ = write_pdb_status(server, &pdb_rt, ns, &pdb, pdb_rev, status).await;
            }
            return Err(ApiError::too_many_requests(
                DISRUPTION_BUDGET_VIOLATED,
                0,
                vec![budget_cause(format!(
                    "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
                    budget.desired_healthy, budget.current_healthy
                ))],
            ));
        }
        if !dry_run {
            // Spend one disruption and record the pod as on its way out, so
            // that the next eviction does not count it as healthy.
            let mut spent = budget.clone();
            spent.disruptions_allowed -= 1;
            spent
                .disrupted_pods
                .insert(name.to_string(), server.now_rfc3339());
            let status = api::disruption::status(&pdb, &spent, &server.now_rfc3339());
            match write_pdb_status(server, &pdb_rt, ns, &pdb, pdb_rev, status).await {
                Err(e) if is_conflict(&e) => {
                    last_conflict = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
                Ok(()) => {}
            }
        }
        delete_evicted(server, pods, ns, name, &options, ctx).await?;
        return Ok(success());
    }
    Err(last_conflict.unwrap_or_else(|| {
        ApiError::new(
            504,
            "Timeout",
            "couldn't evict the pod due to conflicts; try again",
        )
    }))
}

/// TypeMeta, name and namespace of the Eviction body (policy/v1 or v1beta1).
fn check_eviction(eviction: &Value, ns: Option<&str>, name: &str) -> Result<(), ApiError> {
    match eviction.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {}
        Some(av) => match split_api_version(av) {
            ("policy", "v1" | "v1beta1") => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version (policy/v1)"
                )))
            }
        },
    }
    if let Some(kind) = eviction
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty() && *k != "Eviction")
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind (Eviction)"
        )));
    }
    if meta_str(eviction, "name").unwrap_or("") != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    if let (Some(body_ns), Some(url_ns)) = (
        meta_str(eviction, "namespace").filter(|n| !n.is_empty()),
        ns,
    ) {
        if body_ns != url_ns {
            return Err(ApiError::bad_request(format!(
                "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({url_ns})"
            )));
        }
    }
    Ok(())
}

fn budget_cause(message: String) -> Cause {
    Cause {
        reason: "DisruptionBudget".into(),
        message,
        field: String::new(),
    }
}

fn is_conflict(e: &ApiError) -> bool {
    e.code == 409 && e.reason == "Conflict"
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn can_ignore_pdb(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending")
        || api::disruption::pod_terminating(pod)
}

fn should_enforce_resource_version(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !api::disruption::pod_terminating(pod)
}

async fn list(server: &ApiServer, rt: &ResourceType, ns: &str) -> Result<Vec<Value>, ApiError> {
    let rp = ResourcePath {
        group: rt.group.clone(),
        version: rt.version.clone(),
        namespace: Some(ns.to_string()),
        plural: rt.plural.clone(),
        name: None,
        subresource: None,
    };
    Ok(objects::list_objects(server, rt, &rp, &Query::default())
        .await?
        .items)
}

fn controller_ref(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

/// The summed desired replicas of the controllers of `pods`, each counted
/// once — what percentages and maxUnavailable are taken of. Like the
/// disruption controller's finders, a ReplicaSet of a Deployment counts as
/// the Deployment; any kind with a scale subresource (CRDs too) is read at
/// its replicas path. Pods without a controller, or whose controller is
/// gone or has no scale, add nothing.
async fn controller_scale(server: &ApiServer, ns: &str, pods: &[&Value]) -> i64 {
    let registry = server.registry();
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for pod in pods {
        let Some(mut owner) = controller_ref(pod).cloned() else {
            continue;
        };
        let mut controller = None;
        for _ in 0..2 {
            let api_version = owner["apiVersion"].as_str().unwrap_or("");
            let (group, version) = split_api_version(api_version);
            let kind = owner["kind"].as_str().unwrap_or("");
            let name = owner["name"].as_str().unwrap_or("");
            let Some(rt) = registry.by_kind(group, version, kind) else {
                break;
            };
            let Ok((obj, _)) = objects::get(server, &rt, Some(ns), name).await else {
                break;
            };
            if owner["uid"]
                .as_str()
                .is_some_and(|u| Some(u) != meta_str(&obj, "uid"))
            {
                break;
            }
            // A ReplicaSet managed by a Deployment: the Deployment is the scale.
            let parent = controller_ref(&obj)
                .filter(|p| {
                    rt.group == "apps" && rt.kind == "ReplicaSet" && p["kind"] == "Deployment"
                })
                .cloned();
            controller = Some((rt, obj));
            match parent {
                Some(p) => owner = p,
                None => break,
            }
        }
        let Some((rt, obj)) = controller else {
            continue;
        };
        let key = (
            rt.kind.clone(),
            meta_str(&obj, "uid").unwrap_or("").to_string(),
        );
        if !seen.insert(key) {
            continue;
        }
        let Some(scale) = &rt.scale else { continue };
        let pointer = scale.spec_replicas_path.replace('.', "/");
        // Built-in controllers default spec.replicas to 1.
        total += obj.pointer(&pointer).and_then(Value::as_i64).unwrap_or(1);
    }
    total
}

async fn write_pdb_status(
    server: &ApiServer,
    rt: &ResourceType,
    ns: Option<&str>,
    pdb: &Value,
    rev: store::Revision,
    status: Value,
) -> Result<(), ApiError> {
    if pdb.get("status") == Some(&status) {
        return Ok(());
    }
    let name = meta_str(pdb, "name").unwrap_or("");
    let mut new = pdb.clone();
    new["status"] = status;
    let ctx = RequestCtx::internal("drover-apiserver");
    objects::write_update(
        server,
        rt,
        ns,
        name,
        pdb,
        rev,
        new,
        Some("status"),
        &ctx,
        "Update",
    )
    .await
    .map(|_| ())
}

/// Marks the pod with the `DisruptionTarget` condition (as Kubernetes does
/// since PodDisruptionConditions), then deletes it with `options`; a
/// resourceVersion precondition is carried over the condition's own write.
async fn delete_evicted(
    server: &ApiServer,
    pods: &ResourceType,
    ns: Option<&str>,
    name: &str,
    options: &DeleteOptions,
    ctx: &RequestCtx,
) -> Result<(), ApiError> {
    let mut options = options.clone();
    if !options.dry_run {
        let (pod, rev) = objects::get(server, pods, ns, name).await?;
        if let Some(uid) = options.precondition_uid.as_deref() {
            let actual = meta_str(&pod, "uid").unwrap_or("");
            if uid != actual {
                return Err(ApiError::conflict("", "pods", name, &format!("the UID in the precondition ({uid}) does not match the UID in record ({actual}). The object might have been deleted and then recreated")));
            }
        }
        if let Some(want) = options.precondition_resource_version.as_deref() {
            if want != rev.to_string() {
                return Err(ApiError::conflict("", "pods", name, &format!("the ResourceVersion in the precondition ({want}) does not match the ResourceVersion in record ({rev}). The object might have been modified")));
            }
        }
        if !api::disruption::pod_terminating(&pod) {
            let mut new = pod.clone();
            set_disruption_target(&mut new, &server.now_rfc3339());
            if new != pod {
                let internal = RequestCtx::internal("drover-apiserver");
                let updated = objects::write_update(
                    server,
                    pods,
                    ns,
                    name,
                    &pod,
                    rev,
                    new,
                    Some("status"),
                    &internal,
                    "Update",
                )
                .await?;
                if options.precondition_resource_version.is_some() {
                    options.precondition_resource_version =
                        meta_str(&updated, "resourceVersion").map(String::from);
                }
            }
        }
    }
    objects::delete(server, pods, ns, name, &options, ctx).await?;
    Ok(())
}

fn set_disruption_target(pod: &mut Value, now: &str) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let status = pod["status"].as_object_mut().expect("status is an object");
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("conditions is an array");
    let wanted = json!({
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting",
    });
    if let Some(c) = list.iter_mut().find(|c| c["type"] == "DisruptionTarget") {
        let same = ["status", "reason", "message"]
            .iter()
            .all(|f| c.get(*f) == wanted.get(*f));
        if same {
            return;
        }
        let transition = if c["status"] == "True" {
            c.get("lastTransitionTime").cloned().unwrap_or(json!(now))
        } else {
            json!(now)
        };
        *c = wanted;
        c["lastProbeTime"] = Value::Null;
        c["lastTransitionTime"] = transition;
        return;
    }
    let mut c = wanted;
    c["lastProbeTime"] = Value::Null;
    c["lastTransitionTime"] = json!(now);
    list.push(c);
}
