//! The ReplicaSet controller (and the ReplicationController controller, which
//! Kubernetes runs as the same code): keeps `spec.replicas` active pods of the
//! template, adopts matching orphans, releases pods that stopped matching,
//! deletes surplus pods in Kubernetes' order and reports status, as
//! kube-controller-manager's `pkg/controller/replicaset` does.
//!
//! Differences from Kubernetes, all deliberate:
//! - No expectations: the runtime feeds its own writes back into the caches
//!   before reconciling again, so reconciling the state after a plan does not
//!   repeat its creates and deletes.
//! - The `SuccessfulCreate` event ("Created pod: NAME") needs the name the API
//!   server generates, so a reconcile function cannot write it.
//!   TODO(runtime): after a `Create` of a pod whose controller is a
//!   ReplicaSet/ReplicationController returns, record a Normal
//!   `SuccessfulCreate` event "Created pod: <name>" on the owner; on a failed
//!   create, a Warning `FailedCreate` event "Error creating: <error>" (and the
//!   same for deletes: `FailedDelete`). `SuccessfulDelete` events are in the
//!   plan.
//! - The `ReplicaFailure` condition is only ever removed here (once nothing is
//!   left to create or delete), since write errors are seen by the runtime.
//! - Deletes carry a uid precondition, so a pod recreated under the same name
//!   is never deleted by a decision about its predecessor.
//! - Pods "doubled up" on a node are counted among this controller's own pods
//!   only (Kubernetes also counts pods of sibling ReplicaSets of the same
//!   Deployment).
//! - The deletion ranking is a total order: where Kubernetes' comparator
//!   breaks a tie between two ready times (or creation times) in the same
//!   logarithmic bucket by uid and stops, the remaining keys are compared
//!   first and the uid last.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    Pod, PodTemplateSpec, ReplicationController, ReplicationControllerCondition,
    ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde_json::{json, Value};

use crate::plan::{object_reference, Action, EventType, Plan, Resource};
use crate::pods;

/// At most this many pods are created or deleted per reconcile
/// (kube-controller-manager's `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// The annotation that lowers or raises a pod's chance of being deleted first
/// on scale-down.
pub const POD_DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// `ReplicaSet` reconcile. `pods` are the pods of the ReplicaSet's namespace
/// that are controlled by it or match its selector (others are ignored).
pub fn reconcile_replicaset(rs: &ReplicaSet, pods: &[&Pod], now: jiff::Timestamp) -> Plan {
    let spec = rs.spec.clone().unwrap_or_default();
    let owner = Owner {
        api_version: "apps/v1",
        kind: "ReplicaSet",
        meta: &rs.metadata,
        replicas: spec.replicas.unwrap_or(1),
        min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
        selector: spec.selector.clone(),
        template: spec.template.as_ref(),
    };
    let Some(outcome) = manage(&owner, pods, now) else {
        return Plan::default();
    };
    let mut plan = outcome.plan;

    let old = rs.status.clone().unwrap_or_default();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    if outcome.satisfied {
        conditions.retain(|c| c.type_ != REPLICA_FAILURE);
    }
    let generation = rs.metadata.generation.unwrap_or(0);
    let counts = outcome.counts;
    let unchanged = old.replicas == counts.replicas
        && old.fully_labeled_replicas.unwrap_or(0) == counts.fully_labeled
        && old.ready_replicas.unwrap_or(0) == counts.ready
        && old.available_replicas.unwrap_or(0) == counts.available
        && old.observed_generation.unwrap_or(0) == generation
        && old.conditions.clone().unwrap_or_default() == conditions;
    if !unchanged {
        let status = ReplicaSetStatus {
            replicas: counts.replicas,
            fully_labeled_replicas: nonzero(counts.fully_labeled),
            ready_replicas: nonzero(counts.ready),
            available_replicas: nonzero(counts.available),
            observed_generation: rs.metadata.generation,
            conditions: non_empty::<ReplicaSetCondition>(conditions),
            ..old
        };
        let mut object = rs.clone();
        object.status = Some(status);
        plan.push(Action::UpdateStatus {
            resource: Resource::ReplicaSets,
            namespace: rs.metadata.namespace.clone(),
            name: rs.metadata.name.clone().unwrap_or_default(),
            object: pods::to_value(&object),
        });
    }
    plan
}

/// A ReplicationController's map selector as a label selector; an empty
/// one means the template's labels, as the API server defaults it.
pub fn replication_controller_selector(rc: &ReplicationController) -> LabelSelector {
    let spec = rc.spec.as_ref();
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    let match_labels = spec
        .and_then(|s| s.selector.clone())
        .filter(|s| !s.is_empty())
        .or(template_labels);
    LabelSelector {
        match_labels,
        match_expressions: None,
    }
}

/// `ReplicationController` reconcile: the ReplicaSet logic with a map
/// selector (defaulted from the template's labels when empty, as the API
/// server does) and core/v1 status.
pub fn reconcile_replication_controller(
    rc: &ReplicationController,
    pods: &[&Pod],
    now: jiff::Timestamp,
) -> Plan {
    let spec = rc.spec.clone().unwrap_or_default();
    let owner = Owner {
        api_version: "v1",
        kind: "ReplicationController",
        meta: &rc.metadata,
        replicas: spec.replicas.unwrap_or(1),
        min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
        selector: replication_controller_selector(rc),
        template: spec.template.as_ref(),
    };
    let Some(outcome) = manage(&owner, pods, now) else {
        return Plan::default();
    };
    let mut plan = outcome.plan;

    let old = rc.status.clone().unwrap_or_default();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    if outcome.satisfied {
        conditions.retain(|c| c.type_ != REPLICA_FAILURE);
    }
    let generation = rc.metadata.generation.unwrap_or(0);
    let counts = outcome.counts;
    let unchanged = old.replicas == counts.replicas
        && old.fully_labeled_replicas.unwrap_or(0) == counts.fully_labeled
        && old.ready_replicas.unwrap_or(0) == counts.ready
        && old.available_replicas.unwrap_or(0) == counts.available
        && old.observed_generation.unwrap_or(0) == generation
        && old.conditions.clone().unwrap_or_default() == conditions;
    if !unchanged {
        let status = ReplicationControllerStatus {
            replicas: counts.replicas,
            fully_labeled_replicas: nonzero(counts.fully_labeled),
            ready_replicas: nonzero(counts.ready),
            available_replicas: nonzero(counts.available),
            observed_generation: rc.metadata.generation,
            conditions: non_empty::<ReplicationControllerCondition>(conditions),
        };
        let mut object = rc.clone();
        object.status = Some(status);
        plan.push(Action::UpdateStatus {
            resource: Resource::ReplicationControllers,
            namespace: rc.metadata.namespace.clone(),
            name: rc.metadata.name.clone().unwrap_or_default(),
            object: pods::to_value(&object),
        });
    }
    plan
}

const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Kubernetes omits zero counts from status (`omitempty`).
pub(crate) fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// The kind-independent view of a ReplicaSet or ReplicationController.
struct Owner<'a> {
    api_version: &'static str,
    kind: &'static str,
    meta: &'a ObjectMeta,
    replicas: i32,
    min_ready_seconds: i32,
    selector: LabelSelector,
    template: Option<&'a PodTemplateSpec>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    replicas: i32,
    fully_labeled: i32,
    ready: i32,
    available: i32,
}

struct Outcome {
    /// Adoptions, releases, creates, deletes and their events, requeue.
    plan: Plan,
    /// Status counts of the claimed active pods as observed (before the
    /// plan's creates and deletes, as Kubernetes counts them).
    counts: Counts,
    /// Nothing to create or delete.
    satisfied: bool,
}

/// Claim pods, create or delete to reach `replicas`, count status. `None`
/// when the selector is invalid (Kubernetes does nothing then either).
fn manage(owner: &Owner, pods: &[&Pod], now: jiff::Timestamp) -> Option<Outcome> {
    if !selector_is_valid(&owner.selector) {
        return None;
    }
    let mut plan = Plan::default();
    let namespace = owner.meta.namespace.clone();
    let owner_uid = owner.meta.uid.clone().unwrap_or_default();
    let owner_deleting = pods::is_terminating(owner.meta);
    let selector_empty = pods::selector_is_empty(&owner.selector);
    let matches = |pod: &Pod| {
        !selector_empty && pods::selector_matches(&owner.selector, pod.metadata.labels.as_ref())
    };

    // Claim: only active pods take part, as in Kubernetes.
    let mut claimed: Vec<&Pod> = Vec::new();
    for &pod in pods {
        if !pods::is_pod_active(pod) {
            continue;
        }
        match pods::controller_of(&pod.metadata) {
            Some(r) if r.uid != owner_uid => {}
            Some(_) => {
                if selector_empty || matches(pod) {
                    claimed.push(pod);
                } else if !owner_deleting {
                    plan.push(Action::Patch {
                        resource: Resource::Pods,
                        namespace: pod.metadata.namespace.clone(),
                        name: pod.metadata.name.clone().unwrap_or_default(),
                        subresource: None,
                        patch: release_patch(&pod.metadata, &owner_uid),
                    });
                }
            }
            None => {
                if owner_deleting
                    || !matches(pod)
                    || pods::is_terminating(&pod.metadata)
                    || (namespace.is_some() && pod.metadata.namespace != namespace)
                {
                    continue;
                }
                let reference =
                    pods::controller_reference(owner.api_version, owner.kind, owner.meta);
                plan.push(Action::Patch {
                    resource: Resource::Pods,
                    namespace: pod.metadata.namespace.clone(),
                    name: pod.metadata.name.clone().unwrap_or_default(),
                    subresource: None,
                    patch: adopt_patch(&pod.metadata, reference),
                });
                claimed.push(pod);
            }
        }
    }

    // Status counts and the next moment a ready pod becomes available.
    let template_labels = owner
        .template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut counts = Counts {
        replicas: claimed.len() as i32,
        ..Counts::default()
    };
    let mut next_available: Option<jiff::Timestamp> = None;
    for pod in &claimed {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        if template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            counts.fully_labeled += 1;
        }
        if pods::is_pod_ready(pod) {
            counts.ready += 1;
            if pods::is_pod_available(pod, owner.min_ready_seconds, now) {
                counts.available += 1;
            } else if let Some(at) = pods::available_at(pod, owner.min_ready_seconds) {
                next_available = Some(next_available.map_or(at, |n| n.min(at)));
            }
        }
    }
    if let Some(at) = next_available {
        if let Ok(after) = Duration::try_from(at.duration_since(now)) {
            plan.requeue(after);
        }
    }

    let diff = claimed.len() as i64 - i64::from(owner.replicas.max(0));
    let satisfied = diff == 0;
    if !owner_deleting {
        let involved = object_reference(owner.api_version, owner.kind, owner.meta);
        if diff < 0 {
            if let Some(template) = owner.template {
                let count = ((-diff) as usize).min(BURST_REPLICAS);
                let reference =
                    pods::controller_reference(owner.api_version, owner.kind, owner.meta);
                let mut pod = pods::pod_from_template(
                    template,
                    namespace.as_deref().unwrap_or("default"),
                    reference,
                );
                pod.metadata.generate_name = Some(pod_name_prefix(
                    owner.meta.name.as_deref().unwrap_or_default(),
                ));
                let object = pods::to_value(&pod);
                for _ in 0..count {
                    plan.push(Action::Create {
                        resource: Resource::Pods,
                        namespace: namespace.clone(),
                        object: object.clone(),
                    });
                }
            }
        } else if diff > 0 {
            let count = (diff as usize).min(BURST_REPLICAS);
            for pod in pods_to_delete(&claimed, &claimed, count, now) {
                let name = pod.metadata.name.clone().unwrap_or_default();
                plan.push(Action::Delete {
                    resource: Resource::Pods,
                    namespace: pod.metadata.namespace.clone(),
                    name: name.clone(),
                    uid: pod.metadata.uid.clone(),
                    propagation: None,
                });
                plan.push(Action::Event {
                    involved: involved.clone(),
                    event_type: EventType::Normal,
                    reason: "SuccessfulDelete".into(),
                    message: format!("Deleted pod: {name}"),
                });
            }
        }
    }
    Some(Outcome {
        plan,
        counts,
        satisfied,
    })
}

/// `generateName` for a controller's pods: `<name>-`, or the bare name if
/// that would not be a valid prefix (Kubernetes' `getPodsPrefix`).
fn pod_name_prefix(name: &str) -> String {
    let prefix = format!("{name}-");
    if prefix.len() <= 253 {
        prefix
    } else {
        name.to_string()
    }
}

/// Whether the selector can be evaluated: known operators, with values for
/// `In`/`NotIn` and without for `Exists`/`DoesNotExist`.
pub(crate) fn selector_is_valid(selector: &LabelSelector) -> bool {
    selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or(&[]);
        match e.operator.as_str() {
            "In" | "NotIn" => !values.is_empty(),
            "Exists" | "DoesNotExist" => values.is_empty(),
            _ => false,
        }
    })
}

/// A JSON merge patch making `reference` the controller of the object whose
/// metadata is `meta`. Merge patches replace lists, so it carries the whole
/// new `ownerReferences` list, and `uid` + `resourceVersion` as
/// preconditions so that it applies only to the version it was computed from.
pub(crate) fn adopt_patch(meta: &ObjectMeta, reference: OwnerReference) -> Value {
    let mut refs: Vec<OwnerReference> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != reference.uid)
        .cloned()
        .collect();
    refs.push(reference);
    owner_references_patch(meta, pods::to_value(&refs))
}

/// A JSON merge patch removing the owner reference to `owner_uid` (with the
/// same preconditions as [`adopt_patch`]).
pub(crate) fn release_patch(meta: &ObjectMeta, owner_uid: &str) -> Value {
    let refs: Vec<&OwnerReference> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner_uid)
        .collect();
    let refs = if refs.is_empty() {
        Value::Null
    } else {
        pods::to_value(&refs)
    };
    owner_references_patch(meta, refs)
}

fn owner_references_patch(meta: &ObjectMeta, owner_references: Value) -> Value {
    let mut metadata = serde_json::Map::new();
    // Preconditions; a null here would ask to remove the field instead.
    if let Some(uid) = &meta.uid {
        metadata.insert("uid".into(), json!(uid));
    }
    if let Some(rv) = &meta.resource_version {
        metadata.insert("resourceVersion".into(), json!(rv));
    }
    metadata.insert("ownerReferences".into(), owner_references);
    json!({ "metadata": metadata })
}

/// The `count` pods to delete first, ranked like Kubernetes'
/// `ActivePodsWithRanks` (`related` are the pods counted as doubled up on a
/// node).
pub(crate) fn pods_to_delete<'a>(
    candidates: &[&'a Pod],
    related: &[&Pod],
    count: usize,
    now: jiff::Timestamp,
) -> Vec<&'a Pod> {
    let mut on_node: HashMap<&str, i64> = HashMap::new();
    for pod in related {
        if pods::is_pod_active(pod) {
            *on_node.entry(node_name(pod)).or_default() += 1;
        }
    }
    let mut ranked: Vec<(DeletionKey, &Pod)> = candidates
        .iter()
        .map(|&pod| {
            let rank = on_node.get(node_name(pod)).copied().unwrap_or(0);
            (deletion_key(pod, rank, now), pod)
        })
        .collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0));
    ranked.into_iter().take(count).map(|(_, p)| p).collect()
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Smaller is deleted first.
type DeletionKey = (bool, u8, bool, i32, i64, i64, i64, i64, i64, String);

fn deletion_key(pod: &Pod, rank: i64, now: jiff::Timestamp) -> DeletionKey {
    let assigned = !node_name(pod).is_empty();
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    };
    let ready = pods::is_pod_ready(pod);
    let cost = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST_ANNOTATION))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    // Doubled up (more pods on the same node) first.
    let doubled = -rank;
    let ready_since = if ready {
        pod.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    } else {
        None
    };
    let ready_bucket = if ready {
        age_bucket(ready_since, now)
    } else {
        0
    };
    let (regular, sidecar) = max_container_restarts(pod);
    let created = age_bucket(pod.metadata.creation_timestamp.as_ref().map(|t| t.0), now);
    (
        assigned,
        phase,
        ready,
        cost,
        doubled,
        ready_bucket,
        -regular,
        -sidecar,
        created,
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

/// Kubernetes' LogarithmicScaleDown ranking of a time: a missing time first,
/// then the more recent (smaller floor(log2(age in ns))) first.
fn age_bucket(t: Option<jiff::Timestamp>, now: jiff::Timestamp) -> i64 {
    let Some(t) = t else {
        return i64::MIN;
    };
    let age_ns = now.as_nanosecond() - t.as_nanosecond();
    if age_ns <= 0 {
        -1
    } else {
        (age_ns as f64).log2().floor() as i64
    }
}

/// The highest restart count of the regular containers and of the sidecars
/// (init containers with `restartPolicy: Always`).
fn max_container_restarts(pod: &Pod) -> (i64, i64) {
    let Some(status) = pod.status.as_ref() else {
        return (0, 0);
    };
    let regular = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| i64::from(c.restart_count))
        .max()
        .unwrap_or(0);
    let sidecars: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecars.contains(&c.name.as_str()))
        .map(|c| i64::from(c.restart_count))
        .max()
        .unwrap_or(0);
    (regular, sidecar)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{
        Container, ContainerStatus, PodCondition, PodSpec, PodStatus, ReplicationControllerSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, Time};

    use super::*;

    fn ts(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn template() -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(&[("app", "web"), ("tier", "fe")])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: Some("nginx:1".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn replicaset(replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("rs-uid".into()),
                generation: Some(1),
                resource_version: Some("10".into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: None,
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    match_expressions: None,
                },
                template: Some(template()),
            }),
            status: Some(ReplicaSetStatus {
                replicas: 0,
                observed_generation: Some(1),
                ..Default::default()
            }),
        }
    }

    /// A status as this controller writes it, for "already up to date" inputs.
    fn with_status(mut rs: ReplicaSet, replicas: i32, ready: i32, available: i32) -> ReplicaSet {
        rs.status = Some(ReplicaSetStatus {
            replicas,
            fully_labeled_replicas: nonzero(replicas),
            ready_replicas: nonzero(ready),
            available_replicas: nonzero(available),
            observed_generation: Some(1),
            ..Default::default()
        });
        rs
    }

    /// Pod builder: by default owned by the ReplicaSet, labeled like its
    /// template, Running and Ready since ts(-1000) on node n1, created at
    /// ts(-1000).
    struct P(Pod);

    impl P {
        fn new(name: &str) -> P {
            P(Pod {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some("default".into()),
                    uid: Some(format!("uid-{name}")),
                    resource_version: Some("5".into()),
                    labels: Some(labels(&[("app", "web"), ("tier", "fe")])),
                    creation_timestamp: Some(Time(ts(-1000))),
                    owner_references: Some(vec![pods::controller_reference(
                        "apps/v1",
                        "ReplicaSet",
                        &replicaset(1).metadata,
                    )]),
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    node_name: Some("n1".into()),
                    ..Default::default()
                }),
                status: Some(PodStatus {
                    phase: Some("Running".into()),
                    conditions: Some(vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(ts(-1000))),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            })
        }
        fn node(mut self, node: &str) -> P {
            self.0.spec.as_mut().unwrap().node_name = (!node.is_empty()).then(|| node.into());
            self
        }
        fn phase(mut self, phase: &str) -> P {
            self.0.status.as_mut().unwrap().phase = Some(phase.into());
            self
        }
        fn not_ready(mut self) -> P {
            self.0.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                ..Default::default()
            }]);
            self
        }
        fn ready_since(mut self, secs: i64) -> P {
            self.0.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(ts(secs))),
                ..Default::default()
            }]);
            self
        }
        fn created(mut self, secs: Option<i64>) -> P {
            self.0.metadata.creation_timestamp = secs.map(|s| Time(ts(s)));
            self
        }
        fn restarts(mut self, n: i32) -> P {
            self.0.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
                name: "web".into(),
                restart_count: n,
                ..Default::default()
            }]);
            self
        }
        fn cost(mut self, cost: &str) -> P {
            self.0.metadata.annotations = Some(labels(&[(POD_DELETION_COST_ANNOTATION, cost)]));
            self
        }
        fn labels(mut self, pairs: &[(&str, &str)]) -> P {
            self.0.metadata.labels = Some(labels(pairs));
            self
        }
        fn orphan(mut self) -> P {
            self.0.metadata.owner_references = None;
            self
        }
        fn owners(mut self, refs: Vec<OwnerReference>) -> P {
            self.0.metadata.owner_references = Some(refs);
            self
        }
        fn terminating(mut self) -> P {
            self.0.metadata.deletion_timestamp = Some(Time(ts(-1)));
            self
        }
        fn build(self) -> Pod {
            self.0
        }
    }

    fn reconcile(rs: &ReplicaSet, pods: &[Pod], now: jiff::Timestamp) -> Plan {
        let refs: Vec<&Pod> = pods.iter().collect();
        reconcile_replicaset(rs, &refs, now)
    }

    fn creates(plan: &Plan) -> Vec<&Value> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Create { object, .. } => Some(object),
                _ => None,
            })
            .collect()
    }

    fn deleted(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    fn patches(plan: &Plan) -> Vec<(String, Value)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Patch { name, patch, .. } => Some((name.clone(), patch.clone())),
                _ => None,
            })
            .collect()
    }

    fn status(plan: &Plan) -> Option<ReplicaSetStatus> {
        plan.actions.iter().find_map(|a| match a {
            Action::UpdateStatus { object, .. } => Some(
                serde_json::from_value::<ReplicaSet>(object.clone())
                    .unwrap()
                    .status
                    .unwrap(),
            ),
            _ => None,
        })
    }

    fn owner_ref_json() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web",
            "uid": "rs-uid",
            "controller": true,
            "blockOwnerDeletion": true,
        })
    }

    #[test]
    fn creates_missing_pods_from_the_template() {
        let plan = reconcile(&replicaset(3), &[], ts(0));
        let expected = Action::Create {
            resource: Resource::Pods,
            namespace: Some("default".into()),
            object: json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": "web-",
                    "labels": {"app": "web", "tier": "fe"},
                    "namespace": "default",
                    "ownerReferences": [owner_ref_json()],
                },
                "spec": {"containers": [{"image": "nginx:1", "name": "web"}]},
            }),
        };
        assert_eq!(
            plan.actions,
            vec![expected.clone(), expected.clone(), expected]
        );
        assert_eq!(plan.requeue_after, None);
    }

    #[test]
    fn creates_at_most_burst_replicas_per_reconcile() {
        let plan = reconcile(&replicaset(600), &[], ts(0));
        assert_eq!(creates(&plan).len(), BURST_REPLICAS);
        let plan = reconcile(&replicaset(499), &[], ts(0));
        assert_eq!(creates(&plan).len(), 499);
    }

    #[test]
    fn steady_state_plans_nothing() {
        let pods = [P::new("a").build(), P::new("b").build()];
        let rs = with_status(replicaset(2), 2, 2, 2);
        assert!(reconcile(&rs, &pods, ts(0)).is_empty());
    }

    #[test]
    fn status_counts_fully_labeled_ready_and_available() {
        let mut rs = replicaset(4);
        rs.spec.as_mut().unwrap().min_ready_seconds = Some(30);
        let pods = [
            P::new("old-ready").build(),
            P::new("just-ready").ready_since(-10).build(),
            P::new("not-ready").not_ready().build(),
            P::new("partial-labels").labels(&[("app", "web")]).build(),
        ];
        let plan = reconcile(&rs, &pods, ts(0));
        assert_eq!(
            status(&plan),
            Some(ReplicaSetStatus {
                replicas: 4,
                fully_labeled_replicas: Some(3),
                ready_replicas: Some(3),
                available_replicas: Some(2),
                observed_generation: Some(1),
                ..Default::default()
            })
        );
        assert_eq!(plan.actions.len(), 1);
        // "just-ready" becomes available 30s after ts(-10).
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(20)));
        // Sub-second now: the requeue lands exactly on the second.
        let now = ts(0)
            .checked_add(jiff::SignedDuration::from_millis(250))
            .unwrap();
        assert_eq!(
            reconcile(&rs, &pods, now).requeue_after,
            Some(Duration::from_millis(19_750))
        );
    }

    #[test]
    fn status_written_when_generation_changes() {
        let pods = [P::new("a").build()];
        let mut rs = with_status(replicaset(1), 1, 1, 1);
        assert!(reconcile(&rs, &pods, ts(0)).is_empty());
        rs.metadata.generation = Some(2);
        let plan = reconcile(&rs, &pods, ts(0));
        assert_eq!(status(&plan).unwrap().observed_generation, Some(2));
        assert_eq!(plan.actions.len(), 1);
    }

    #[test]
    fn zero_counts_are_omitted_like_kubernetes() {
        let mut rs = replicaset(0);
        rs.metadata.generation = Some(3);
        let plan = reconcile(&rs, &[], ts(0));
        let Action::UpdateStatus { object, .. } = &plan.actions[0] else {
            panic!("{plan:?}")
        };
        assert_eq!(
            object["status"],
            json!({"observedGeneration": 3, "replicas": 0})
        );
        // A status with explicit zeros counts as up to date.
        let mut rs = replicaset(0);
        rs.status = Some(ReplicaSetStatus {
            replicas: 0,
            ready_replicas: Some(0),
            available_replicas: Some(0),
            fully_labeled_replicas: Some(0),
            observed_generation: Some(1),
            ..Default::default()
        });
        assert!(reconcile(&rs, &[], ts(0)).is_empty());
    }

    #[test]
    fn adopts_matching_orphans_with_preconditions() {
        let other = OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "cm".into(),
            uid: "cm-uid".into(),
            controller: None,
            block_owner_deletion: None,
        };
        let pods = [
            P::new("a").build(),
            P::new("orphan").owners(vec![other]).build(),
        ];
        let plan = reconcile(&with_status(replicaset(2), 1, 1, 1), &pods, ts(0));
        assert_eq!(
            patches(&plan),
            vec![(
                "orphan".to_string(),
                json!({"metadata": {
                    "uid": "uid-orphan",
                    "resourceVersion": "5",
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "cm-uid"},
                        owner_ref_json(),
                    ],
                }})
            )]
        );
        // Counted at once: no create, and the status sees two replicas.
        assert!(creates(&plan).is_empty());
        assert_eq!(status(&plan).unwrap().replicas, 2);
    }

    #[test]
    fn leaves_pods_it_must_not_adopt() {
        let other_controller = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "other".into(),
            uid: "other-uid".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let pods = [
            P::new("a").build(),
            P::new("no-match").orphan().labels(&[("app", "db")]).build(),
            P::new("terminating").orphan().terminating().build(),
            P::new("succeeded").orphan().phase("Succeeded").build(),
            {
                let mut p = P::new("elsewhere").orphan().build();
                p.metadata.namespace = Some("other".into());
                p
            },
            P::new("owned-elsewhere")
                .owners(vec![other_controller])
                .build(),
        ];
        let plan = reconcile(&with_status(replicaset(1), 1, 1, 1), &pods, ts(0));
        assert!(plan.is_empty(), "{plan:?}");

        // A ReplicaSet being deleted adopts nothing, creates nothing.
        let mut rs = replicaset(3);
        rs.metadata.deletion_timestamp = Some(Time(ts(-5)));
        let pods = [P::new("orphan").orphan().build()];
        let plan = reconcile(&rs, &pods, ts(0));
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn releases_owned_pods_that_no_longer_match() {
        let pods = [
            P::new("a").build(),
            P::new("relabeled").labels(&[("app", "debug")]).build(),
        ];
        let plan = reconcile(&with_status(replicaset(2), 2, 2, 2), &pods, ts(0));
        assert_eq!(
            patches(&plan),
            vec![(
                "relabeled".to_string(),
                json!({"metadata": {
                    "uid": "uid-relabeled",
                    "resourceVersion": "5",
                    "ownerReferences": null,
                }})
            )]
        );
        // The released pod is replaced, and no longer counted.
        assert_eq!(creates(&plan).len(), 1);
        assert_eq!(status(&plan).unwrap().replicas, 1);

        // Not while the ReplicaSet is being deleted.
        let mut rs = with_status(replicaset(2), 1, 1, 1);
        rs.metadata.deletion_timestamp = Some(Time(ts(-5)));
        assert!(reconcile(&rs, &pods, ts(0)).is_empty());
    }

    #[test]
    fn inactive_pods_are_not_counted_and_are_replaced() {
        let pods = [
            P::new("a").build(),
            P::new("failed").phase("Failed").build(),
            P::new("done").phase("Succeeded").build(),
            P::new("going").terminating().build(),
        ];
        let plan = reconcile(&with_status(replicaset(2), 1, 1, 1), &pods, ts(0));
        assert_eq!(creates(&plan).len(), 1);
        assert!(deleted(&plan).is_empty());
        assert_eq!(plan.actions.len(), 1, "status is unchanged: {plan:?}");
    }

    #[test]
    fn deletes_surplus_with_uid_precondition_and_event() {
        let pods = [
            P::new("a").build(),
            P::new("b").not_ready().build(),
            P::new("c").build(),
        ];
        let plan = reconcile(&with_status(replicaset(2), 3, 2, 2), &pods, ts(0));
        assert_eq!(
            plan.actions,
            vec![
                Action::Delete {
                    resource: Resource::Pods,
                    namespace: Some("default".into()),
                    name: "b".into(),
                    uid: Some("uid-b".into()),
                    propagation: None,
                },
                Action::Event {
                    involved: json!({
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "namespace": "default",
                        "name": "web",
                        "uid": "rs-uid",
                        "resourceVersion": "10",
                    }),
                    event_type: EventType::Normal,
                    reason: "SuccessfulDelete".into(),
                    message: "Deleted pod: b".into(),
                },
            ]
        );
    }

    #[test]
    fn deletes_at_most_burst_replicas_and_all_when_scaled_to_zero() {
        let pods: Vec<Pod> = (0..3).map(|i| P::new(&format!("p{i}")).build()).collect();
        let plan = reconcile(&with_status(replicaset(0), 3, 3, 3), &pods, ts(0));
        let mut names = deleted(&plan);
        names.sort();
        assert_eq!(names, vec!["p0", "p1", "p2"]);
        let pods: Vec<Pod> = (0..501).map(|i| P::new(&format!("p{i}")).build()).collect();
        let plan = reconcile(&with_status(replicaset(0), 501, 501, 501), &pods, ts(0));
        assert_eq!(deleted(&plan).len(), BURST_REPLICAS);
    }

    /// Each case: (why, pod deleted first, pod kept, extra related pods).
    #[test]
    fn deletion_ranking_follows_kubernetes() {
        let cases: Vec<(&str, Pod, Pod)> = vec![
            (
                "unassigned before assigned",
                P::new("x").node("").phase("Pending").build(),
                P::new("y").phase("Pending").build(),
            ),
            (
                "unassigned before assigned, even if running",
                P::new("x").node("").build(),
                P::new("y").phase("Pending").not_ready().build(),
            ),
            (
                "pending before running",
                P::new("x").phase("Pending").build(),
                P::new("y").build(),
            ),
            (
                "pending before unknown",
                P::new("x").phase("Pending").build(),
                P::new("y").phase("Unknown").build(),
            ),
            (
                "unknown before running",
                P::new("x").phase("Unknown").build(),
                P::new("y").build(),
            ),
            (
                "not ready before ready",
                P::new("x").not_ready().build(),
                P::new("y").build(),
            ),
            (
                "lower deletion cost first",
                P::new("x").cost("-5").build(),
                P::new("y").build(),
            ),
            (
                "deletion cost before readiness time",
                P::new("x").ready_since(-2_000_000).cost("1").build(),
                P::new("y").ready_since(-1).cost("100").build(),
            ),
            (
                "ready for a shorter time first",
                P::new("x").ready_since(-10).build(),
                P::new("y").ready_since(-100_000).build(),
            ),
            (
                "more restarts first",
                P::new("x").restarts(4).build(),
                P::new("y").restarts(1).build(),
            ),
            (
                "newer first",
                P::new("x").not_ready().created(Some(-10)).build(),
                P::new("y").not_ready().created(Some(-100_000)).build(),
            ),
            (
                "missing creation time first",
                P::new("x").not_ready().created(None).build(),
                P::new("y").not_ready().created(Some(-100_000)).build(),
            ),
        ];
        for (why, first, kept) in cases {
            let got = pods_to_delete(&[&kept, &first], &[&kept, &first], 1, ts(0));
            assert_eq!(got[0].metadata.name, first.metadata.name, "{why}");
            let got = pods_to_delete(&[&first, &kept], &[&first, &kept], 1, ts(0));
            assert_eq!(got[0].metadata.name, first.metadata.name, "{why}");
        }
    }

    #[test]
    fn doubled_up_pods_are_deleted_first() {
        let crowded = P::new("crowded").node("n1").build();
        let neighbour = P::new("neighbour").node("n1").build();
        let alone = P::new("alone").node("n2").build();
        let got = pods_to_delete(
            &[&alone, &crowded],
            &[&alone, &crowded, &neighbour],
            1,
            ts(0),
        );
        assert_eq!(got[0].metadata.name.as_deref(), Some("crowded"));
    }

    #[test]
    fn deletion_ranking_mixed_set() {
        let pods = [
            P::new("running-old").ready_since(-1_000_000).build(),
            P::new("running-new").ready_since(-5).build(),
            P::new("pending").phase("Pending").not_ready().build(),
            P::new("unscheduled")
                .node("")
                .phase("Pending")
                .not_ready()
                .build(),
            P::new("crashing").not_ready().restarts(7).build(),
            P::new("starting").not_ready().build(),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let order: Vec<&str> = pods_to_delete(&refs, &refs, 6, ts(0))
            .iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(
            order,
            vec![
                "unscheduled",
                "pending",
                "crashing",
                "starting",
                "running-new",
                "running-old"
            ]
        );
    }

    #[test]
    fn invalid_selector_does_nothing() {
        let mut rs = replicaset(3);
        rs.spec.as_mut().unwrap().selector.match_expressions =
            Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "Near".into(),
                values: None,
            }]);
        assert!(reconcile(&rs, &[P::new("a").build()], ts(0)).is_empty());
    }

    #[test]
    fn removes_replica_failure_once_satisfied() {
        let mut rs = with_status(replicaset(1), 1, 1, 1);
        rs.status.as_mut().unwrap().conditions = Some(vec![ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some("quota".into()),
            last_transition_time: Some(Time(ts(-50))),
        }]);
        // Still short of pods: kept.
        let plan = reconcile(
            &{
                let mut r = rs.clone();
                r.spec.as_mut().unwrap().replicas = Some(2);
                r
            },
            &[P::new("a").build()],
            ts(0),
        );
        assert!(status(&plan).is_none());
        // Satisfied: removed.
        let plan = reconcile(&rs, &[P::new("a").build()], ts(0));
        assert_eq!(status(&plan).unwrap().conditions, None);
    }

    #[test]
    fn replication_controller_uses_map_selector_and_core_kind() {
        let rc = ReplicationController {
            metadata: ObjectMeta {
                name: Some("legacy".into()),
                namespace: Some("default".into()),
                uid: Some("rc-uid".into()),
                generation: Some(2),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            spec: Some(ReplicationControllerSpec {
                replicas: Some(2),
                selector: None, // defaulted from the template's labels
                template: Some(template()),
                min_ready_seconds: None,
            }),
            status: None,
        };
        let owned = P::new("mine")
            .owners(vec![pods::controller_reference(
                "v1",
                "ReplicationController",
                &rc.metadata,
            )])
            .build();
        let orphan = P::new("orphan").orphan().build();
        let refs = [&owned, &orphan];
        let plan = reconcile_replication_controller(&rc, &refs, ts(0));
        assert_eq!(plan.actions.len(), 2, "{plan:?}");
        let Action::Patch { name, patch, .. } = &plan.actions[0] else {
            panic!("{plan:?}")
        };
        assert_eq!(name, "orphan");
        assert_eq!(
            patch["metadata"]["ownerReferences"][0]["kind"],
            "ReplicationController"
        );
        assert_eq!(patch["metadata"]["ownerReferences"][0]["apiVersion"], "v1");
        let Action::UpdateStatus {
            resource, object, ..
        } = &plan.actions[1]
        else {
            panic!("{plan:?}")
        };
        assert_eq!(*resource, Resource::ReplicationControllers);
        assert_eq!(
            object["status"],
            json!({
                "availableReplicas": 2,
                "fullyLabeledReplicas": 2,
                "observedGeneration": 2,
                "readyReplicas": 2,
                "replicas": 2,
            })
        );

        // Scale up: pods are created with an RC controller reference.
        let mut rc3 = rc.clone();
        rc3.spec.as_mut().unwrap().replicas = Some(3);
        let plan = reconcile_replication_controller(&rc3, &[&owned], ts(0));
        let created = creates(&plan);
        assert_eq!(created.len(), 2);
        assert_eq!(created[0]["metadata"]["generateName"], "legacy-");
        assert_eq!(
            created[0]["metadata"]["ownerReferences"][0]["uid"],
            "rc-uid"
        );
    }

    /// Applies plans to a fake namespace the way the API server would and
    /// reconciles again until nothing is left to do; the last reconcile must
    /// plan no writes.
    #[test]
    fn converges_and_is_idempotent() {
        let mut rs = replicaset(3);
        let mut pods: Vec<Pod> = vec![P::new("stray").orphan().build()];
        let mut next = 0;
        for round in 0..5 {
            let plan = reconcile(&rs, &pods, ts(round));
            if plan.actions.is_empty() {
                assert_eq!(pods.len(), 3);
                assert_eq!(rs.status.as_ref().unwrap().ready_replicas, Some(3));
                return;
            }
            for action in plan.actions {
                match action {
                    Action::Create { object, .. } => {
                        let mut pod: Pod = serde_json::from_value(object).unwrap();
                        next += 1;
                        let name = format!("{}{next}", pod.metadata.generate_name.clone().unwrap());
                        pod.metadata.uid = Some(format!("uid-{name}"));
                        pod.metadata.name = Some(name);
                        pod.metadata.creation_timestamp = Some(Time(ts(round)));
                        pod.status = P::new("x").ready_since(round).build().status;
                        pods.push(pod);
                    }
                    Action::Patch { name, patch, .. } => {
                        let pod = pods
                            .iter_mut()
                            .find(|p| p.metadata.name.as_deref() == Some(&name))
                            .unwrap();
                        pod.metadata.owner_references =
                            serde_json::from_value(patch["metadata"]["ownerReferences"].clone())
                                .unwrap();
                    }
                    Action::UpdateStatus { object, .. } => {
                        rs = serde_json::from_value(object).unwrap();
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        panic!("did not converge: {rs:?}");
    }
}
