//! The scheduler as the runtime runs it. The decision is the pure
//! `scheduler::schedule` over a snapshot this controller keeps up to date
//! from every pod and node change; binding is a `pods/binding` POST, which
//! the API server applies as a compare-and-swap that fails if the pod was
//! bound meanwhile. A pod is "assumed" on its node in the snapshot from the
//! decision until its binding is observed (or expires), so the next pod is
//! placed against up-to-date usage without waiting for the watch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use scheduler::{Decision, ScheduleOptions, Snapshot};
use serde_json::json;

use crate::plan::{Action, EventType, Plan, Resource};
use crate::runtime::{AnyObject, Caches, Controller, ObjectKey};

/// The `spec.schedulerName` this scheduler serves.
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// An assumed binding not observed within this long is dropped and the pod
/// scheduled again (kube-scheduler's assumed-pod expiry).
const ASSUME_TTL: Duration = Duration::from_secs(30);
/// Unschedulable pods are retried on any cluster change, and at least this often.
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    snapshot: Snapshot,
    /// Pods placed by a decision whose binding is not observed yet.
    assumed: BTreeMap<ObjectKey, jiff::Timestamp>,
}

pub struct SchedulerController {
    state: Mutex<State>,
    unschedulable: Mutex<BTreeSet<ObjectKey>>,
    next_start: AtomicUsize,
    decisions: AtomicU64,
    percentage_of_nodes_to_score: Option<u32>,
}

impl Default for SchedulerController {
    fn default() -> Self {
        SchedulerController::new()
    }
}

impl SchedulerController {
    pub fn new() -> SchedulerController {
        SchedulerController {
            state: Mutex::new(State::default()),
            unschedulable: Mutex::new(BTreeSet::new()),
            next_start: AtomicUsize::new(0),
            decisions: AtomicU64::new(0),
            percentage_of_nodes_to_score: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unschedulable(&self) -> std::sync::MutexGuard<'_, BTreeSet<ObjectKey>> {
        self.unschedulable.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(crate::pods::pod_phase(pod), "Succeeded" | "Failed")
}

/// Pending, ours, and not being deleted.
fn wants_scheduling(pod: &Pod) -> bool {
    let scheduler = pod
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or(SCHEDULER_NAME);
    node_name(pod).is_none()
        && scheduler == SCHEDULER_NAME
        && pod.metadata.deletion_timestamp.is_none()
        && !is_terminal(pod)
}

fn pod_reference(pod: &Pod) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": pod.metadata.namespace,
        "name": pod.metadata.name,
        "uid": pod.metadata.uid,
    })
}

impl Controller for SchedulerController {
    fn name(&self) -> &'static str {
        "scheduler"
    }

    fn reads(&self) -> &'static [Resource] {
        &[
            Resource::Pods,
            Resource::Nodes,
            Resource::PersistentVolumeClaims,
            Resource::PersistentVolumes,
            Resource::StorageClasses,
        ]
    }

    fn observe(&self, old: Option<&AnyObject>, new: Option<&AnyObject>) {
        let mut state = self.lock();
        match (old, new) {
            (_, Some(AnyObject::Nodes(node))) => state.snapshot.upsert_node(node.clone()),
            (Some(AnyObject::Nodes(node)), None) => {
                state
                    .snapshot
                    .remove_node(node.metadata.name.as_deref().unwrap_or(""));
            }
            (_, Some(AnyObject::Pods(pod))) => {
                let key = ObjectKey::of(&pod.metadata);
                if node_name(pod).is_some() {
                    // Bound (by us or anyone): the observed pod replaces any assumption.
                    state.snapshot.remove_pod(&key.namespace, &key.name);
                    state.assumed.remove(&key);
                    if !is_terminal(pod) {
                        state.snapshot.add_pod(pod.clone());
                    }
                }
            }
            (Some(AnyObject::Pods(pod)), None) => {
                let key = ObjectKey::of(&pod.metadata);
                state.snapshot.remove_pod(&key.namespace, &key.name);
                state.assumed.remove(&key);
            }
            (_, Some(AnyObject::PersistentVolumeClaims(pvc))) => {
                state
                    .snapshot
                    .upsert_persistent_volume_claim(pvc.as_ref().clone());
            }
            (Some(AnyObject::PersistentVolumeClaims(pvc)), None) => {
                let key = ObjectKey::of(&pvc.metadata);
                state
                    .snapshot
                    .remove_persistent_volume_claim(&key.namespace, &key.name);
            }
            (_, Some(AnyObject::PersistentVolumes(pv))) => {
                state.snapshot.upsert_persistent_volume(pv.as_ref().clone());
            }
            (Some(AnyObject::PersistentVolumes(pv)), None) => {
                state
                    .snapshot
                    .remove_persistent_volume(pv.metadata.name.as_deref().unwrap_or(""));
            }
            _ => {}
        }
    }

    fn keys_for(&self, _caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::Pods(pod) if wants_scheduling(pod) => vec![ObjectKey::of(&pod.metadata)],
            // Capacity changed (a node came, changed or went; a pod is going
            // away or finished): retry what did not fit.
            AnyObject::Pods(pod)
                if pod.metadata.deletion_timestamp.is_some() || is_terminal(pod) =>
            {
                let waiting = self.unschedulable();
                waiting.iter().cloned().collect()
            }
            AnyObject::Nodes(_)
            | AnyObject::PersistentVolumeClaims(_)
            | AnyObject::PersistentVolumes(_) => {
                let waiting = self.unschedulable();
                waiting.iter().cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        caches
            .pods
            .list()
            .iter()
            .filter(|p| wants_scheduling(p))
            .map(|p| ObjectKey::of(&p.metadata))
            .collect()
    }

    fn reconcile(&self, caches: &Caches, key: &ObjectKey, now: jiff::Timestamp) -> Plan {
        let mut plan = Plan::default();
        let Some(pod) = caches.pods.get(key).filter(|p| wants_scheduling(p)) else {
            self.unschedulable().remove(key);
            return plan;
        };
        let mut state = self.lock();
        if let Some(at) = state.assumed.get(key).copied() {
            let expires = at + jiff::SignedDuration::try_from(ASSUME_TTL).unwrap_or_default();
            if now < expires {
                // Its binding is in flight; the bound pod will show up.
                plan.requeue(expires.duration_since(now).unsigned_abs());
                return plan;
            }
            state.snapshot.remove_pod(&key.namespace, &key.name);
            state.assumed.remove(key);
        }
        let options = ScheduleOptions {
            percentage_of_nodes_to_score: self.percentage_of_nodes_to_score,
            start_index: self.next_start.load(Ordering::Relaxed),
            tie_break: self.decisions.fetch_add(1, Ordering::Relaxed),
        };
        match scheduler::schedule_shared(&state.snapshot, &pod, &options) {
            Decision::Bind {
                node,
                next_start_index,
                ..
            } => {
                self.next_start.store(next_start_index, Ordering::Relaxed);
                state.snapshot.assume_pod(pod.clone(), &node);
                state.assumed.insert(key.clone(), now);
                drop(state);
                self.unschedulable().remove(key);
                for claim in claims_to_select_node(caches, &pod) {
                    // The VolumeBinding plugin's PreBind: the provisioner of
                    // a WaitForFirstConsumer class makes the volume on this
                    // node.
                    plan.push(Action::Patch {
                        resource: Resource::PersistentVolumeClaims,
                        namespace: Some(key.namespace.clone()),
                        name: claim,
                        subresource: None,
                        patch: json!({"metadata": {"annotations": {
                            crate::localpath::SELECTED_NODE: node}}}),
                    });
                }
                plan.push(Action::CreateSubresource {
                    resource: Resource::Pods,
                    namespace: Some(key.namespace.clone()),
                    name: key.name.clone(),
                    subresource: "binding",
                    object: json!({
                        "apiVersion": "v1",
                        "kind": "Binding",
                        "metadata": {"name": key.name, "namespace": key.namespace, "uid": pod.metadata.uid},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                    }),
                });
                plan.push(Action::Event {
                    involved: pod_reference(&pod),
                    event_type: EventType::Normal,
                    reason: "Scheduled".into(),
                    message: format!(
                        "Successfully assigned {}/{} to {node}",
                        key.namespace, key.name
                    ),
                });
            }
            Decision::Unschedulable {
                message,
                preemption,
            } => {
                drop(state);
                self.unschedulable().insert(key.clone());
                let current = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
                let unchanged = current.is_some_and(|c| {
                    c.status == "False" && c.message.as_deref() == Some(message.as_str())
                });
                let mut status = json!({});
                if !unchanged {
                    status["conditions"] = json!([{
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                        "lastProbeTime": null,
                        "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    }]);
                }
                if let Some(p) = &preemption {
                    let nominated = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.nominated_node_name.as_deref());
                    if nominated != Some(p.node.as_str()) {
                        status["nominatedNodeName"] = json!(p.node);
                    }
                    for (namespace, name) in &p.victims {
                        let uid = caches
                            .pods
                            .get(&ObjectKey::new(namespace, name))
                            .and_then(|v| v.metadata.uid.clone());
                        plan.push(Action::Event {
                            involved: json!({"apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": name, "uid": uid}),
                            event_type: EventType::Normal,
                            reason: "Preempted".into(),
                            message: format!("Preempted by pod {}", pod.metadata.uid.as_deref().unwrap_or("")),
                        });
                        plan.push(Action::Delete {
                            resource: Resource::Pods,
                            namespace: Some(namespace.clone()),
                            name: name.clone(),
                            uid,
                            propagation: None,
                        });
                    }
                }
                if status.as_object().is_some_and(|s| !s.is_empty()) {
                    plan.push(Action::Patch {
                        resource: Resource::Pods,
                        namespace: Some(key.namespace.clone()),
                        name: key.name.clone(),
                        subresource: Some("status"),
                        patch: json!({"status": status}),
                    });
                }
                if !unchanged {
                    plan.push(Action::Event {
                        involved: pod_reference(&pod),
                        event_type: EventType::Warning,
                        reason: "FailedScheduling".into(),
                        message,
                    });
                }
                plan.requeue(UNSCHEDULABLE_RETRY);
            }
        }
        plan
    }
}

/// The pod's unbound claims of a `WaitForFirstConsumer` class that no node
/// was selected for yet.
fn claims_to_select_node(caches: &Caches, pod: &Pod) -> Vec<String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .filter(|c| {
            let Some(claim) = caches
                .persistent_volume_claims
                .get(&ObjectKey::new(&namespace, &c.claim_name))
            else {
                return false;
            };
            let spec = claim.spec.clone().unwrap_or_default();
            let unbound = spec.volume_name.as_deref().is_none_or(str::is_empty);
            let selected = claim
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(crate::localpath::SELECTED_NODE));
            let waits = spec
                .storage_class_name
                .and_then(|n| caches.storage_classes.get(&ObjectKey::new("", &n)))
                .is_some_and(|class| {
                    class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
                });
            unbound && !selected && waits
        })
        .map(|c| c.claim_name.clone())
        .collect()
}
