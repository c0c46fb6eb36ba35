//! Node lifecycle and taint-based eviction, as kube-controller-manager's
//! `pkg/controller/nodelifecycle` and `pkg/controller/tainteviction` do
//! them: a node whose kubelet stops renewing its Lease and posting status
//! for the grace period gets its conditions set to Unknown and the
//! `node.kubernetes.io/unreachable` taints; pods that do not tolerate a
//! node's `NoExecute` taints (for long enough) are deleted.
//!
//! Three pure functions:
//! - [`reconcile_node`]: node health (conditions → Unknown), the condition
//!   taints (`NoSchedule` for TaintNodesByCondition, `NoExecute`
//!   not-ready/unreachable for taint-based eviction), `RegisteredNode` and
//!   `NodeNotReady` events. The per-node memory Kubernetes keeps in
//!   `nodeHealthData` (when *this controller* last saw a sign of life, by its
//!   own clock) is [`NodeHealth`], plain data the runtime keeps between calls.
//! - [`reconcile_taint_eviction`]: one pod against its node's `NoExecute`
//!   taints: delete now, delete when the shortest `tolerationSeconds` has
//!   elapsed since the taint's `timeAdded`, or nothing.
//! - [`reconcile_pod_readiness`]: a pod on a node whose kubelet is gone is
//!   marked not Ready (`MarkPodsNotReady`), so Services stop routing to it
//!   before it is evicted.
//!
//! Differences from Kubernetes, all deliberate:
//! - Conditions and taints are written in two reconciles: a status write
//!   (`UpdateStatus`) and a spec write (`Update`) of the same node in one
//!   plan would make the second fail on the first's new resourceVersion. The
//!   status write changes the node, which makes the runtime reconcile it
//!   again; that pass writes the taints (Kubernetes also taints from the
//!   condition observed at the start of a pass, i.e. one pass later).
//! - The grace period expires *at* `probe + grace` (Kubernetes: the first
//!   5 s monitor pass strictly after it), so the requeue lands exactly on it.
//! - `NoExecute` taints are added at once: no per-zone eviction rate limiter
//!   (0.1 node/s) and no "full disruption" mode that stops tainting when
//!   every node of every zone is not Ready. TODO(zones): a cluster-wide pass
//!   over all nodes' Ready conditions would be needed for that.
//! - A pod is marked not Ready only while its node's Ready condition is
//!   Unknown (kubelet gone). Kubernetes also does it once when a live kubelet
//!   reports Ready=False; a stateless reconcile would fight that kubelet.
//! - Taint eviction is stateless: each `NoExecute` taint's deadline is its
//!   `timeAdded` plus the `tolerationSeconds` of the first toleration that
//!   tolerates it, and the pod goes at the earliest deadline. Kubernetes
//!   keeps an in-memory timer started when it first saw a taint, so a
//!   not-ready ↔ unreachable swap does not restart its clock, where here the
//!   swapped-in taint's new `timeAdded` does. A `NoExecute` taint without
//!   `timeAdded` (never written by drover or kubectl) gives no deadline: the
//!   pod stays, which errs toward not deleting.
//! - Pods without the DefaultTolerationSeconds admission plugin's two
//!   tolerations are treated as if they had them (`not-ready` and
//!   `unreachable`, `NoExecute`, 300 s). drover's API server adds them at
//!   pod creation (with configurable seconds), so this only matters for
//!   pods stored before that admission existed.
//! - No `Cancelling deletion of Pod` events: nothing was scheduled to cancel.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use crate::plan::{Action, EventType, Plan, Resource};
use crate::pods;

/// `NoExecute`/`NoSchedule` taint of a node whose Ready condition is False.
pub const TAINT_NODE_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// `NoExecute`/`NoSchedule` taint of a node whose Ready condition is Unknown.
pub const TAINT_NODE_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NODE_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_NODE_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_NODE_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
pub const TAINT_NODE_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// What the DefaultTolerationSeconds admission plugin gives pods for the
/// not-ready and unreachable `NoExecute` taints.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The conditions the controller sets to Unknown when the kubelet goes
/// silent (NetworkUnavailable is managed by the network plugin, not the
/// kubelet, and is left alone, as in Kubernetes).
const MONITORED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// kube-controller-manager's node lifecycle flags that matter here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeLifecycleConfig {
    /// `--node-monitor-grace-period`: how long a node with a Ready condition
    /// may go without renewing its Lease or posting status. 50 s since
    /// Kubernetes 1.32 (kubernetes#126287; 40 s before).
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period`: the same for a node that never posted a
    /// Ready condition.
    pub node_startup_grace_period: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            node_monitor_grace_period: Duration::from_secs(50),
            node_startup_grace_period: Duration::from_secs(60),
        }
    }
}

/// What the controller remembers about one node between reconciles
/// (Kubernetes' `nodeHealthData`). Times are the controller's own `now`
/// when it saw a change, never the kubelet's clock, so clock skew between
/// nodes does not matter. `Default` is "never observed".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeHealth {
    /// When the controller last saw a sign of life: the Ready condition's
    /// `lastHeartbeatTime` changing or the Lease's `renewTime` advancing
    /// (for a node without a Ready condition, first its creation time).
    /// `None` until the node is first observed.
    pub probe_timestamp: Option<jiff::Timestamp>,
    /// Whether the last observed status had a Ready condition.
    pub ready_condition_seen: bool,
    /// That Ready condition's `lastHeartbeatTime`.
    pub ready_heartbeat_time: Option<jiff::Timestamp>,
    /// Whether a Lease was seen for the node.
    pub lease_seen: bool,
    /// The newest `renewTime` seen on it.
    pub lease_renew_time: Option<jiff::Timestamp>,
}

/// One node: update [`NodeHealth`] from its Ready condition and Lease (the
/// Lease named after the node in `kube-node-lease`, if any); once neither was
/// renewed for the grace period, set Ready, MemoryPressure, DiskPressure and
/// PIDPressure to Unknown; keep the condition taints in line with the
/// conditions. Returns the plan and the health to keep for the next call.
///
/// The runtime must reconcile the node when it or its Lease changes; the
/// plan requeues at the moment the grace period would expire.
pub fn reconcile_node(
    node: &Node,
    lease: Option<&Lease>,
    observed: &NodeHealth,
    now: jiff::Timestamp,
    config: &NodeLifecycleConfig,
) -> (Plan, NodeHealth) {
    let mut plan = Plan::default();
    let name = node.metadata.name.clone().unwrap_or_default();
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let conditions: Vec<NodeCondition> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let ready = find_condition(&conditions, "Ready");
    let first_seen = observed.probe_timestamp.is_none();
    let mut health = *observed;

    if first_seen {
        plan.push(node_event(
            node,
            "RegisteredNode",
            format!("Node {name} event: Registered Node {name} in Controller"),
        ));
    }

    let grace = match ready {
        None => {
            // Never posted: counted from the node's creation, with the
            // longer startup grace period.
            if first_seen {
                health.probe_timestamp = Some(created.unwrap_or(now));
            }
            health.ready_condition_seen = false;
            health.ready_heartbeat_time = None;
            config.node_startup_grace_period
        }
        Some(condition) => {
            let heartbeat = condition.last_heartbeat_time.as_ref().map(|t| t.0);
            if first_seen
                || !observed.ready_condition_seen
                || observed.ready_heartbeat_time != heartbeat
            {
                health.probe_timestamp = Some(now);
            }
            health.ready_condition_seen = true;
            health.ready_heartbeat_time = heartbeat;
            config.node_monitor_grace_period
        }
    };
    if let Some(lease) = lease {
        let renew = lease
            .spec
            .as_ref()
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0);
        // `None < Some(_)`: a first renewTime counts as a renewal.
        if !observed.lease_seen || renew > observed.lease_renew_time {
            health.probe_timestamp = Some(now);
            health.lease_seen = true;
            health.lease_renew_time = renew;
        }
    }

    let probe = health.probe_timestamp.unwrap_or(now);
    let deadline = probe.checked_add(grace).unwrap_or(jiff::Timestamp::MAX);
    if now >= deadline {
        let updated = conditions_unknown(&conditions, created, now);
        let new_ready = find_condition(&updated, "Ready");
        if new_ready != ready {
            let mut object = node.clone();
            object
                .status
                .get_or_insert_with(Default::default)
                .conditions = Some(updated.clone());
            plan.push(Action::UpdateStatus {
                resource: Resource::Nodes,
                namespace: None,
                name: name.clone(),
                object: pods::to_value(&object),
            });
            if ready.is_some_and(|c| c.status == "True") {
                plan.push(node_event(
                    node,
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                ));
            }
            // What the next reconcile reads back is our own write: not a
            // heartbeat.
            health.ready_condition_seen = true;
            health.ready_heartbeat_time = new_ready
                .and_then(|c| c.last_heartbeat_time.as_ref())
                .map(|t| t.0);
            // The taints follow from the new conditions on the next
            // reconcile (the status write changes the node).
            return (plan, health);
        }
    } else if let Ok(after) = Duration::try_from(deadline.duration_since(now)) {
        plan.requeue(after);
    }

    if let Some(taints) = desired_taints(node, &conditions, now) {
        let mut object = node.clone();
        object.spec.get_or_insert_with(Default::default).taints =
            (!taints.is_empty()).then_some(taints);
        plan.push(Action::Update {
            resource: Resource::Nodes,
            namespace: None,
            name,
            object: pods::to_value(&object),
        });
    }
    (plan, health)
}

fn find_condition<'a>(conditions: &'a [NodeCondition], type_: &str) -> Option<&'a NodeCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The monitored conditions set to Unknown, as `tryUpdateNodeHealth` does:
/// a missing one is added ("never updated", heartbeat = creation time), a
/// known one keeps its heartbeat and gets a new transition time.
fn conditions_unknown(
    conditions: &[NodeCondition],
    created: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Vec<NodeCondition> {
    let mut updated = conditions.to_vec();
    for type_ in MONITORED_CONDITIONS {
        match updated.iter_mut().find(|c| c.type_ == type_) {
            None => updated.push(NodeCondition {
                type_: type_.to_string(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: created.map(Time),
                last_transition_time: Some(Time(now)),
            }),
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
            }
            Some(_) => {}
        }
    }
    updated
}

/// The taint a condition in a status calls for (`nodeConditionToTaintKeyStatusMap`).
fn condition_taint_key(type_: &str, status: &str) -> Option<&'static str> {
    match (type_, status) {
        ("Ready", "False") => Some(TAINT_NODE_NOT_READY),
        ("Ready", "Unknown") => Some(TAINT_NODE_UNREACHABLE),
        ("MemoryPressure", "True") => Some(TAINT_NODE_MEMORY_PRESSURE),
        ("DiskPressure", "True") => Some(TAINT_NODE_DISK_PRESSURE),
        ("NetworkUnavailable", "True") => Some(TAINT_NODE_NETWORK_UNAVAILABLE),
        ("PIDPressure", "True") => Some(TAINT_NODE_PID_PRESSURE),
        _ => None,
    }
}

/// Taint keys this controller owns as `NoSchedule` taints.
fn is_managed_no_schedule_key(key: &str) -> bool {
    matches!(
        key,
        TAINT_NODE_NOT_READY
            | TAINT_NODE_UNREACHABLE
            | TAINT_NODE_MEMORY_PRESSURE
            | TAINT_NODE_DISK_PRESSURE
            | TAINT_NODE_NETWORK_UNAVAILABLE
            | TAINT_NODE_PID_PRESSURE
            | TAINT_NODE_UNSCHEDULABLE
    )
}

/// The node's taints with the controller's taints matching its conditions,
/// or `None` when they already do. Other taints, and the controller's taints
/// that stay, are kept as they are (value, `timeAdded`); new ones are
/// appended with `timeAdded = now`, as `SwapNodeControllerTaint` does.
fn desired_taints(
    node: &Node,
    conditions: &[NodeCondition],
    now: jiff::Timestamp,
) -> Option<Vec<Taint>> {
    let existing: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();

    // NoSchedule: one per condition in a tainting state, plus
    // spec.unschedulable (doNoScheduleTaintingPass).
    let mut no_schedule: Vec<&'static str> = conditions
        .iter()
        .filter_map(|c| condition_taint_key(&c.type_, &c.status))
        .collect();
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        no_schedule.push(TAINT_NODE_UNSCHEDULABLE);
    }
    // NoExecute: not-ready and unreachable, mutually exclusive, after the
    // Ready condition (nothing while the node never posted one).
    let no_execute: Option<Vec<&'static str>> =
        find_condition(conditions, "Ready").map(|ready| match ready.status.as_str() {
            "False" => vec![TAINT_NODE_NOT_READY],
            "Unknown" => vec![TAINT_NODE_UNREACHABLE],
            _ => vec![],
        });

    let wanted = |t: &Taint| -> bool {
        match t.effect.as_str() {
            "NoSchedule" if is_managed_no_schedule_key(&t.key) => {
                no_schedule.contains(&t.key.as_str())
            }
            "NoExecute" if t.key == TAINT_NODE_NOT_READY || t.key == TAINT_NODE_UNREACHABLE => {
                no_execute
                    .as_ref()
                    .is_none_or(|keys| keys.contains(&t.key.as_str()))
            }
            _ => true,
        }
    };
    let mut taints: Vec<Taint> = existing.iter().filter(|t| wanted(t)).cloned().collect();
    let mut changed = taints.len() != existing.len();
    let mut add = |key: &str, effect: &str, taints: &mut Vec<Taint>| {
        if !taints.iter().any(|t| t.key == key && t.effect == effect) {
            taints.push(Taint {
                key: key.to_string(),
                effect: effect.to_string(),
                value: None,
                time_added: Some(Time(now)),
            });
            changed = true;
        }
    };
    for key in &no_schedule {
        add(key, "NoSchedule", &mut taints);
    }
    for key in no_execute.iter().flatten() {
        add(key, "NoExecute", &mut taints);
    }
    changed.then_some(taints)
}

/// An event about a node (`RecordNodeEvent`/`RecordNodeStatusChange`).
fn node_event(node: &Node, reason: &str, message: String) -> Action {
    Action::Event {
        involved: json!({
            "apiVersion": "v1",
            "kind": "Node",
            "name": node.metadata.name,
            "uid": node.metadata.uid,
        }),
        event_type: EventType::Normal,
        reason: reason.into(),
        message,
    }
}

/// The taint eviction controller for one pod and the node it is bound to
/// (`None`: the node is gone, which pod GC handles). A pod on a node with a
/// `NoExecute` taint it does not tolerate is deleted now; if every such
/// taint is tolerated but some only for `tolerationSeconds`, it is deleted
/// when the earliest `timeAdded + tolerationSeconds` passes (the plan
/// requeues until then). Before the delete the pod gets the
/// `DisruptionTarget` condition, as Kubernetes does since 1.26.
pub fn reconcile_taint_eviction(pod: &Pod, node: Option<&Node>, now: jiff::Timestamp) -> Plan {
    let mut plan = Plan::default();
    let Some(node) = node else {
        return plan;
    };
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    if node_name.is_none_or(|n| Some(n) != node.metadata.name.as_deref())
        || pods::is_terminating(&pod.metadata)
    {
        return plan;
    }
    let taints: Vec<&Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoExecute")
        .collect();
    if taints.is_empty() {
        return plan;
    }
    let tolerations = effective_tolerations(pod);

    // The deadline of each taint through the first toleration that tolerates
    // it (GetMatchingTolerations); any untolerated taint means now.
    let mut evict_now = false;
    let mut deadline: Option<jiff::Timestamp> = None;
    for taint in taints {
        let Some(toleration) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            evict_now = true;
            break;
        };
        let Some(seconds) = toleration.toleration_seconds else {
            continue; // tolerated forever
        };
        if seconds <= 0 {
            evict_now = true;
            break;
        }
        let Some(added) = taint.time_added.as_ref() else {
            continue; // no clock to count from; see the module docs
        };
        let at = added
            .0
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .unwrap_or(jiff::Timestamp::MAX);
        deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }
    if !evict_now {
        match deadline {
            Some(at) if at <= now => evict_now = true,
            Some(at) => {
                if let Ok(after) = Duration::try_from(at.duration_since(now)) {
                    plan.requeue(after);
                }
            }
            None => {}
        }
    }
    if evict_now {
        evict(pod, now, &mut plan);
    }
    plan
}

/// The pod's tolerations plus, where it has none for them, the two the
/// DefaultTolerationSeconds admission plugin adds. The plugin's test is
/// deliberately loose: any toleration whose key is the taint's (or empty)
/// and whose effect is `NoExecute` (or empty) counts.
fn effective_tolerations(pod: &Pod) -> Vec<Toleration> {
    let mut tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    for key in [TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE] {
        let covered = tolerations.iter().any(|t| {
            let k = t.key.as_deref().unwrap_or_default();
            let e = t.effect.as_deref().unwrap_or_default();
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        });
        if !covered {
            tolerations.push(Toleration {
                key: Some(key.to_string()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(DEFAULT_TOLERATION_SECONDS),
                value: None,
            });
        }
    }
    tolerations
}

/// `Toleration.ToleratesTaint`: an empty effect matches every effect, an
/// empty key (with `Exists`) every key; the operator defaults to `Equal`.
fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// The event, the `DisruptionTarget` condition (if not there yet) and the
/// delete, as the taint eviction controller's `deletePodHandler` does.
fn evict(pod: &Pod, now: jiff::Timestamp, plan: &mut Plan) {
    let namespace = pod.metadata.namespace.clone();
    let name = pod.metadata.name.clone().unwrap_or_default();
    plan.push(Action::Event {
        involved: json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": namespace,
            "name": name,
        }),
        event_type: EventType::Normal,
        reason: "TaintManagerEviction".into(),
        message: format!(
            "Marking for deletion Pod {}/{name}",
            namespace.as_deref().unwrap_or_default()
        ),
    });
    let condition = PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByTaintManager".into()),
        message: Some("Taint manager: deleting due to NoExecute taint".into()),
        ..Default::default()
    };
    if let Some(object) = with_pod_condition(pod, condition, now) {
        plan.push(Action::UpdateStatus {
            resource: Resource::Pods,
            namespace: namespace.clone(),
            name: name.clone(),
            object: pods::to_value(&object),
        });
    }
    plan.push(Action::Delete {
        resource: Resource::Pods,
        namespace,
        name,
        uid: pod.metadata.uid.clone(),
        propagation: None,
    });
}

/// The pod with `condition` set the way `UpdatePodCondition` sets it (the
/// transition time moves only when the status changes), or `None` when that
/// changes nothing.
fn with_pod_condition(pod: &Pod, mut condition: PodCondition, now: jiff::Timestamp) -> Option<Pod> {
    let mut object = pod.clone();
    let status = object.status.get_or_insert_with(Default::default);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    condition.last_transition_time = Some(Time(now));
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        None => conditions.push(condition),
        Some(old) => {
            if old.status == condition.status {
                condition.last_transition_time = old.last_transition_time.clone();
            }
            if condition.last_probe_time.is_none() {
                condition.last_probe_time = old.last_probe_time.clone();
            }
            if *old == condition {
                return None;
            }
            *old = condition;
        }
    }
    Some(object)
}

/// A Ready pod on a node whose Ready condition is Unknown (the kubelet
/// stopped posting status, see [`reconcile_node`]) is marked not Ready, as
/// `MarkPodsNotReady` does, with a Warning `NodeNotReady` event.
pub fn reconcile_pod_readiness(pod: &Pod, node: Option<&Node>, now: jiff::Timestamp) -> Plan {
    let mut plan = Plan::default();
    let Some(node) = node else {
        return plan;
    };
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    if node_name.is_none_or(|n| Some(n) != node.metadata.name.as_deref()) {
        return plan;
    }
    let node_unknown = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| find_condition(c, "Ready"))
        .is_some_and(|c| c.status == "Unknown");
    if !node_unknown || !pods::is_pod_ready(pod) {
        return plan;
    }
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .cloned()
        .unwrap_or_default();
    let condition = PodCondition {
        status: "False".into(),
        ..ready
    };
    if let Some(object) = with_pod_condition(pod, condition, now) {
        plan.push(Action::UpdateStatus {
            resource: Resource::Pods,
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            object: pods::to_value(&object),
        });
        plan.push(Action::Event {
            involved: json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": pod.metadata.namespace,
                "name": pod.metadata.name,
                "uid": pod.metadata.uid,
            }),
            event_type: EventType::Warning,
            reason: "NodeNotReady".into(),
            message: "Node is not ready".into(),
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const BASE: i64 = 1_700_000_000;

    fn ts(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(BASE + s).unwrap()
    }

    /// A time as the API serializes it.
    fn t(s: i64) -> Value {
        serde_json::to_value(Time(ts(s))).unwrap()
    }

    fn cond(type_: &str, status: &str, heartbeat: i64) -> Value {
        json!({
            "type": type_, "status": status, "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": t(heartbeat), "lastTransitionTime": t(-500),
        })
    }

    fn node(conditions: Value, taints: Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "uid": "node-uid", "resourceVersion": "7",
                         "creationTimestamp": t(-1000)},
            "spec": {"taints": taints},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    fn ready_node(status: &str, heartbeat: i64) -> Node {
        node(
            json!([
                cond("MemoryPressure", "False", heartbeat),
                cond("Ready", status, heartbeat),
            ]),
            json!(null),
        )
    }

    fn lease(renew: i64) -> Lease {
        let renew_time = serde_json::to_value(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(ts(renew)),
        )
        .unwrap();
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "n1", "renewTime": renew_time},
        }))
        .unwrap()
    }

    fn reconcile(
        node: &Node,
        lease: Option<&Lease>,
        health: &NodeHealth,
        now: i64,
    ) -> (Plan, NodeHealth) {
        reconcile_node(
            node,
            lease,
            health,
            ts(now),
            &NodeLifecycleConfig::default(),
        )
    }

    fn event(reason: &str, message: &str) -> Action {
        Action::Event {
            involved: json!({"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "node-uid"}),
            event_type: EventType::Normal,
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn written(action: &Action) -> (&'static str, Node) {
        match action {
            Action::UpdateStatus {
                resource: Resource::Nodes,
                namespace: None,
                name,
                object,
            } if name == "n1" => ("status", serde_json::from_value(object.clone()).unwrap()),
            Action::Update {
                resource: Resource::Nodes,
                namespace: None,
                name,
                object,
            } if name == "n1" => ("spec", serde_json::from_value(object.clone()).unwrap()),
            other => panic!("not a node write: {other:?}"),
        }
    }

    fn taints_json(node: &Node) -> Value {
        serde_json::to_value(&node.spec.as_ref().unwrap().taints).unwrap()
    }

    fn healthy_since(probe: i64, heartbeat: i64) -> NodeHealth {
        NodeHealth {
            probe_timestamp: Some(ts(probe)),
            ready_condition_seen: true,
            ready_heartbeat_time: Some(ts(heartbeat)),
            lease_seen: false,
            lease_renew_time: None,
        }
    }

    #[test]
    fn defaults_match_kubernetes_1_33() {
        let c = NodeLifecycleConfig::default();
        assert_eq!(c.node_monitor_grace_period, Duration::from_secs(50));
        assert_eq!(c.node_startup_grace_period, Duration::from_secs(60));
    }

    #[test]
    fn first_observation_registers_the_node_and_requeues_at_grace_expiry() {
        let (plan, health) = reconcile(&ready_node("True", -5), None, &NodeHealth::default(), 0);
        assert_eq!(
            plan.actions,
            vec![event(
                "RegisteredNode",
                "Node n1 event: Registered Node n1 in Controller"
            )]
        );
        // The controller's own clock starts the grace period, not the
        // kubelet's heartbeat time.
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(50)));
        assert_eq!(health, healthy_since(0, -5));
    }

    #[test]
    fn node_goes_unknown_exactly_at_the_grace_period() {
        let n = ready_node("True", -5);
        let health = healthy_since(0, -5);
        let (plan, same) = reconcile(&n, None, &health, 49);
        assert!(plan.actions.is_empty(), "{plan:?}");
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(1)));
        assert_eq!(same, health);

        let (plan, after) = reconcile(&n, None, &health, 50);
        assert_eq!(plan.actions.len(), 2, "{plan:?}");
        let (kind, object) = written(&plan.actions[0]);
        assert_eq!(kind, "status");
        assert_eq!(
            serde_json::to_value(&object.status.as_ref().unwrap().conditions).unwrap(),
            json!([
                {"type": "MemoryPressure", "status": "Unknown", "reason": "NodeStatusUnknown",
                 "message": "Kubelet stopped posting node status.",
                 "lastHeartbeatTime": t(-5), "lastTransitionTime": t(50)},
                {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                 "message": "Kubelet stopped posting node status.",
                 "lastHeartbeatTime": t(-5), "lastTransitionTime": t(50)},
                {"type": "DiskPressure", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                 "message": "Kubelet never posted node status.",
                 "lastHeartbeatTime": t(-1000), "lastTransitionTime": t(50)},
                {"type": "PIDPressure", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                 "message": "Kubelet never posted node status.",
                 "lastHeartbeatTime": t(-1000), "lastTransitionTime": t(50)},
            ])
        );
        assert_eq!(object.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(
            plan.actions[1],
            event("NodeNotReady", "Node n1 status is now: NodeNotReady")
        );
        assert_eq!(plan.requeue_after, None);
        // Our own write keeps the heartbeat: reading it back is no sign of life.
        assert_eq!(after, health);

        // The written node, reconciled again: only the taints, once.
        let (plan, _) = reconcile(&object, None, &after, 51);
        assert_eq!(plan.actions.len(), 1, "{plan:?}");
        let (kind, tainted) = written(&plan.actions[0]);
        assert_eq!(kind, "spec");
        assert_eq!(
            taints_json(&tainted),
            json!([
                {"key": TAINT_NODE_UNREACHABLE, "effect": "NoSchedule", "timeAdded": t(51)},
                {"key": TAINT_NODE_UNREACHABLE, "effect": "NoExecute", "timeAdded": t(51)},
            ])
        );
        assert_eq!(
            tainted.status, object.status,
            "a spec write leaves status alone"
        );
        let (plan, _) = reconcile(&tainted, None, &after, 60);
        assert!(plan.is_empty(), "steady state writes nothing: {plan:?}");
    }

    #[test]
    fn a_heartbeat_or_a_lease_renewal_restarts_the_grace_period() {
        let health = healthy_since(0, -5);
        // New heartbeat in status at 30 s.
        let (plan, h) = reconcile(&ready_node("True", 29), None, &health, 30);
        assert!(plan.actions.is_empty());
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(50)));
        assert_eq!(h.probe_timestamp, Some(ts(30)));

        // Status stale, but the Lease keeps being renewed.
        let n = ready_node("True", -5);
        let (_, h) = reconcile(&n, Some(&lease(10)), &health, 10);
        assert_eq!(h.probe_timestamp, Some(ts(10)));
        assert_eq!((h.lease_seen, h.lease_renew_time), (true, Some(ts(10))));
        let (plan, h) = reconcile(&n, Some(&lease(40)), &h, 45);
        assert_eq!(h.probe_timestamp, Some(ts(45)));
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(50)));
        // The same renewTime again is no renewal: Unknown 50 s after 45.
        let (plan, _) = reconcile(&n, Some(&lease(40)), &h, 94);
        assert!(plan.actions.is_empty());
        let (plan, _) = reconcile(&n, Some(&lease(40)), &h, 95);
        assert!(
            matches!(plan.actions[0], Action::UpdateStatus { .. }),
            "{plan:?}"
        );
    }

    #[test]
    fn recovery_removes_the_taints_and_keeps_others() {
        let mut n = ready_node("True", 100);
        n.spec.as_mut().unwrap().taints = Some(
            serde_json::from_value(json!([
                {"key": "dedicated", "value": "db", "effect": "NoSchedule"},
                {"key": TAINT_NODE_UNREACHABLE, "effect": "NoSchedule", "timeAdded": t(51)},
                {"key": TAINT_NODE_UNREACHABLE, "effect": "NoExecute", "timeAdded": t(51)},
                {"key": "maintenance", "effect": "NoExecute", "timeAdded": t(20)},
            ]))
            .unwrap(),
        );
        // Ready again after being Unknown: the kubelet posted a new heartbeat.
        let (plan, h) = reconcile(&n, None, &healthy_since(0, -5), 100);
        assert_eq!(h.probe_timestamp, Some(ts(100)));
        assert_eq!(plan.actions.len(), 1);
        let (_, object) = written(&plan.actions[0]);
        assert_eq!(
            taints_json(&object),
            json!([
                {"key": "dedicated", "value": "db", "effect": "NoSchedule"},
                {"key": "maintenance", "effect": "NoExecute", "timeAdded": t(20)},
            ])
        );
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(50)));
        // And the empty list is written as no taints at all.
        let mut bare = n.clone();
        bare.spec.as_mut().unwrap().taints = Some(
            serde_json::from_value(json!([
                {"key": TAINT_NODE_UNREACHABLE, "effect": "NoExecute", "timeAdded": t(51)},
            ]))
            .unwrap(),
        );
        let (plan, _) = reconcile(&bare, None, &h, 101);
        let (_, object) = written(&plan.actions[0]);
        assert_eq!(object.spec.unwrap().taints, None);
    }

    /// (case, node conditions, spec.unschedulable, taints before, taints after)
    type TaintCase = (&'static str, Value, Option<bool>, Value, Value);

    #[test]
    fn condition_taints_follow_each_condition() {
        let cases: Vec<TaintCase> = vec![
            (
                "Ready=False swaps unreachable for not-ready, keeping timeAdded of the rest",
                json!([cond("Ready", "False", 0)]),
                None,
                json!([
                    {"key": TAINT_NODE_UNREACHABLE, "effect": "NoSchedule", "timeAdded": t(-30)},
                    {"key": TAINT_NODE_UNREACHABLE, "effect": "NoExecute", "timeAdded": t(-30)},
                ]),
                json!([
                    {"key": TAINT_NODE_NOT_READY, "effect": "NoSchedule", "timeAdded": t(0)},
                    {"key": TAINT_NODE_NOT_READY, "effect": "NoExecute", "timeAdded": t(0)},
                ]),
            ),
            (
                "pressure conditions and spec.unschedulable add NoSchedule taints only",
                json!([
                    cond("Ready", "True", 0), cond("MemoryPressure", "True", 0),
                    cond("DiskPressure", "True", 0), cond("PIDPressure", "True", 0),
                    cond("NetworkUnavailable", "True", 0),
                ]),
                Some(true),
                json!(null),
                json!([
                    {"key": TAINT_NODE_MEMORY_PRESSURE, "effect": "NoSchedule", "timeAdded": t(0)},
                    {"key": TAINT_NODE_DISK_PRESSURE, "effect": "NoSchedule", "timeAdded": t(0)},
                    {"key": TAINT_NODE_PID_PRESSURE, "effect": "NoSchedule", "timeAdded": t(0)},
                    {"key": TAINT_NODE_NETWORK_UNAVAILABLE, "effect": "NoSchedule", "timeAdded": t(0)},
                    {"key": TAINT_NODE_UNSCHEDULABLE, "effect": "NoSchedule", "timeAdded": t(0)},
                ]),
            ),
            (
                "pressure gone, cordon lifted: managed NoSchedule taints go, a user's NoExecute stays",
                json!([cond("Ready", "True", 0), cond("MemoryPressure", "False", 0)]),
                Some(false),
                json!([
                    {"key": TAINT_NODE_MEMORY_PRESSURE, "effect": "NoSchedule", "timeAdded": t(-9)},
                    {"key": TAINT_NODE_UNSCHEDULABLE, "effect": "NoSchedule", "timeAdded": t(-9)},
                    {"key": TAINT_NODE_MEMORY_PRESSURE, "effect": "NoExecute", "timeAdded": t(-9)},
                ]),
                json!([
                    {"key": TAINT_NODE_MEMORY_PRESSURE, "effect": "NoExecute", "timeAdded": t(-9)},
                ]),
            ),
        ];
        for (name, conditions, unschedulable, taints, expected) in cases {
            let mut n = node(conditions, taints);
            n.spec.as_mut().unwrap().unschedulable = unschedulable;
            let (plan, _) = reconcile(&n, None, &healthy_since(0, 0), 0);
            assert_eq!(plan.actions.len(), 1, "{name}: {plan:?}");
            let (kind, object) = written(&plan.actions[0]);
            assert_eq!(kind, "spec", "{name}");
            assert_eq!(taints_json(&object), expected, "{name}");
            // Applying the plan converges.
            let (plan, _) = reconcile(&object, None, &healthy_since(0, 0), 0);
            assert!(plan.actions.is_empty(), "{name}: not idempotent: {plan:?}");
        }
    }

    #[test]
    fn a_node_that_never_posted_status_gets_the_startup_grace_period() {
        let n = node(json!(null), json!(null));
        // Counted from the node's creation (-1000): long expired at first sight.
        let (plan, health) = reconcile(&n, None, &NodeHealth::default(), 0);
        assert_eq!(health.probe_timestamp, Some(ts(-1000)));
        assert_eq!(plan.actions.len(), 2, "{plan:?}");
        assert_eq!(
            plan.actions[0],
            event(
                "RegisteredNode",
                "Node n1 event: Registered Node n1 in Controller"
            )
        );
        let (_, object) = written(&plan.actions[1]);
        let conditions = object.status.as_ref().unwrap().conditions.clone().unwrap();
        assert_eq!(
            serde_json::to_value(&conditions[0]).unwrap(),
            json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                   "message": "Kubelet never posted node status.",
                   "lastHeartbeatTime": t(-1000), "lastTransitionTime": t(0)})
        );
        assert_eq!(
            conditions
                .iter()
                .map(|c| c.type_.as_str())
                .collect::<Vec<_>>(),
            MONITORED_CONDITIONS
        );
        // No NodeNotReady: it was never Ready.
        assert_eq!(health.ready_heartbeat_time, Some(ts(-1000)));

        // A young node without status: 60 s from creation.
        let mut young = n.clone();
        young.metadata.creation_timestamp = Some(Time(ts(0)));
        let (plan, health) = reconcile(&young, None, &NodeHealth::default(), 10);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(50)));
        assert_eq!(plan.actions.len(), 1, "only RegisteredNode: {plan:?}");
        let (plan, _) = reconcile(&young, None, &health, 59);
        assert!(plan.actions.is_empty());
        let (plan, _) = reconcile(&young, None, &health, 60);
        assert!(matches!(plan.actions[0], Action::UpdateStatus { .. }));
        // A lease renewal counts even without status.
        let (plan, h) = reconcile(&young, Some(&lease(59)), &health, 60);
        assert_eq!(h.probe_timestamp, Some(ts(60)));
        assert!(plan.actions.is_empty(), "{plan:?}");
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(60)));
    }

    #[test]
    fn an_unknown_node_stays_written_once() {
        // Already Unknown (from a previous controller): no status write even
        // though the grace period has long expired, only the taints.
        let n = node(
            json!([
                cond("Ready", "Unknown", -500),
                cond("MemoryPressure", "Unknown", -500),
                cond("DiskPressure", "Unknown", -500),
                cond("PIDPressure", "Unknown", -500)
            ]),
            json!([
                {"key": TAINT_NODE_UNREACHABLE, "effect": "NoSchedule", "timeAdded": t(-400)},
                {"key": TAINT_NODE_UNREACHABLE, "effect": "NoExecute", "timeAdded": t(-400)},
            ]),
        );
        let (plan, h) = reconcile(&n, None, &healthy_since(-400, -500), 0);
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(h, healthy_since(-400, -500));
    }

    fn pod(tolerations: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "prod", "uid": "pod-uid", "resourceVersion": "3"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}],
                     "tolerations": tolerations},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": t(-900)}
            ]},
        }))
        .unwrap()
    }

    fn tainted(taints: Value) -> Node {
        node(json!([cond("Ready", "Unknown", -100)]), taints)
    }

    fn unreachable_since(added: i64) -> Node {
        tainted(json!([
            {"key": TAINT_NODE_UNREACHABLE, "effect": "NoSchedule", "timeAdded": t(added)},
            {"key": TAINT_NODE_UNREACHABLE, "effect": "NoExecute", "timeAdded": t(added)},
        ]))
    }

    fn eviction_plan(with_status: bool, now: i64) -> Vec<Action> {
        let mut actions = vec![Action::Event {
            involved: json!({"apiVersion": "v1", "kind": "Pod", "namespace": "prod", "name": "web-1"}),
            event_type: EventType::Normal,
            reason: "TaintManagerEviction".into(),
            message: "Marking for deletion Pod prod/web-1".into(),
        }];
        if with_status {
            let mut object = pods::to_value(&pod(json!(null)));
            object["status"]["conditions"]
                .as_array_mut()
                .unwrap()
                .push(json!({
                    "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                    "message": "Taint manager: deleting due to NoExecute taint",
                    "lastTransitionTime": t(now),
                }));
            actions.push(Action::UpdateStatus {
                resource: Resource::Pods,
                namespace: Some("prod".into()),
                name: "web-1".into(),
                object,
            });
        }
        actions.push(Action::Delete {
            resource: Resource::Pods,
            namespace: Some("prod".into()),
            name: "web-1".into(),
            uid: Some("pod-uid".into()),
            propagation: None,
        });
        actions
    }

    #[test]
    fn an_untolerated_no_execute_taint_evicts_at_once() {
        let n = tainted(json!([{"key": "maintenance", "effect": "NoExecute", "timeAdded": t(0)}]));
        let plan = reconcile_taint_eviction(&pod(json!(null)), Some(&n), ts(1));
        assert_eq!(plan.actions, eviction_plan(true, 1));
        assert_eq!(plan.requeue_after, None);
    }

    #[test]
    fn default_tolerations_give_300_seconds_from_time_added() {
        let n = unreachable_since(0);
        let p = pod(json!(null));
        let plan = reconcile_taint_eviction(&p, Some(&n), ts(100));
        assert!(plan.actions.is_empty());
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(200)));
        let plan = reconcile_taint_eviction(&p, Some(&n), ts(299));
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(1)));
        let plan = reconcile_taint_eviction(&p, Some(&n), ts(300));
        assert_eq!(plan.actions, eviction_plan(true, 300));
        // The admission plugin's tolerations, present on the pod, behave the same.
        let admitted = pod(json!([
            {"key": TAINT_NODE_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": TAINT_NODE_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ]));
        let plan = reconcile_taint_eviction(&admitted, Some(&n), ts(100));
        assert_eq!(
            (plan.actions.len(), plan.requeue_after),
            (0, Some(Duration::from_secs(200)))
        );
    }

    /// (case, tolerations, taints, now, evicted, requeue seconds)
    type TimingCase = (&'static str, Value, Value, i64, bool, Option<u64>);

    #[test]
    fn toleration_timing_table() {
        let unreachable = |secs: Value| {
            json!({"key": TAINT_NODE_UNREACHABLE, "operator": "Exists",
                                               "effect": "NoExecute", "tolerationSeconds": secs})
        };
        let cases: Vec<TimingCase> = vec![
            (
                "own 60 s toleration, 30 s in",
                json!([unreachable(json!(60))]),
                json!([{"key": TAINT_NODE_UNREACHABLE, "effect": "NoExecute", "timeAdded": t(0)}]),
                30,
                false,
                Some(30),
            ),
            (
                "own 60 s toleration, at 60 s",
                json!([unreachable(json!(60))]),
                json!([{"key": TAINT_NODE_UNREACHABLE, "effect": "NoExecute", "timeAdded": t(0)}]),
                60,
                true,
                None,
            ),
            (
                "tolerationSeconds 0 evicts now",
                json!([unreachable(json!(0))]),
                json!([{"key": TAINT_NODE_UNREACHABLE, "effect": "NoExecute", "timeAdded": t(0)}]),
                0,
                true,
                None,
            ),
            (
                "negative tolerationSeconds evicts now",
                json!([unreachable(json!(-5))]),
                json!([{"key": TAINT_NODE_UNREACHABLE, "effect": "NoExecute", "timeAdded": t(0)}]),
                0,
                true,
                None,
            ),
            (
                "tolerated forever",
                json!([{"key": TAINT_NODE_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]),
                json!([{"key": TAINT_NODE_UNREACHABLE, "effect": "NoExecute", "timeAdded": t(0)}]),
                10_000,
                false,
                None,
            ),
            (
                "tolerate-everything toleration also covers the defaults",
                json!([{"operator": "Exists"}]),
                json!([{"key": TAINT_NODE_NOT_READY, "effect": "NoExecute", "timeAdded": t(0)},
                    {"key": "x", "effect": "NoExecute", "timeAdded": t(0)}]),
                10_000,
                false,
                None,
            ),
            (
                "earliest deadline over several taints",
                json!([
                {"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 100},
                {"key": "b", "operator": "Equal", "value": "1", "effect": "NoExecute", "tolerationSeconds": 30}]),
                json!([{"key": "a", "effect": "NoExecute", "timeAdded": t(0)},
                    {"key": "b", "value": "1", "effect": "NoExecute", "timeAdded": t(50)}]),
                60,
                false,
                Some(20),
            ),
            (
                "the first matching toleration decides, not the longest",
                json!([
                {"key": "a", "operator": "Exists", "tolerationSeconds": 10},
                {"key": "a", "operator": "Exists", "effect": "NoExecute"}]),
                json!([{"key": "a", "effect": "NoExecute", "timeAdded": t(0)}]),
                10,
                true,
                None,
            ),
            (
                "value mismatch is not tolerated",
                json!([
                {"key": "b", "operator": "Equal", "value": "2", "effect": "NoExecute"}]),
                json!([{"key": "b", "value": "1", "effect": "NoExecute", "timeAdded": t(0)}]),
                0,
                true,
                None,
            ),
            (
                "no timeAdded: no deadline",
                json!([unreachable(json!(60))]),
                json!([{"key": TAINT_NODE_UNREACHABLE, "effect": "NoExecute"}]),
                10_000,
                false,
                None,
            ),
            (
                "NoSchedule taints never evict",
                json!(null),
                json!([{"key": "x", "effect": "NoSchedule"}, {"key": "y", "effect": "PreferNoSchedule"}]),
                0,
                false,
                None,
            ),
        ];
        for (name, tolerations, taints, now, evicted, requeue) in cases {
            let plan = reconcile_taint_eviction(&pod(tolerations), Some(&tainted(taints)), ts(now));
            let delete = Action::Delete {
                resource: Resource::Pods,
                namespace: Some("prod".into()),
                name: "web-1".into(),
                uid: Some("pod-uid".into()),
                propagation: None,
            };
            assert_eq!(
                plan.actions.last() == Some(&delete),
                evicted,
                "{name}: {plan:?}"
            );
            assert_eq!(plan.actions.len(), if evicted { 3 } else { 0 }, "{name}");
            assert_eq!(
                plan.requeue_after,
                requeue.map(Duration::from_secs),
                "{name}"
            );
        }
    }

    #[test]
    fn eviction_skips_what_is_not_its_business() {
        let n = tainted(json!([{"key": "x", "effect": "NoExecute", "timeAdded": t(0)}]));
        let mut terminating = pod(json!(null));
        terminating.metadata.deletion_timestamp = Some(Time(ts(0)));
        assert!(reconcile_taint_eviction(&terminating, Some(&n), ts(5)).is_empty());
        let mut elsewhere = pod(json!(null));
        elsewhere.spec.as_mut().unwrap().node_name = Some("n2".into());
        assert!(reconcile_taint_eviction(&elsewhere, Some(&n), ts(5)).is_empty());
        assert!(reconcile_taint_eviction(&pod(json!(null)), None, ts(5)).is_empty());
        let untainted = ready_node("True", 0);
        assert!(reconcile_taint_eviction(&pod(json!(null)), Some(&untainted), ts(5)).is_empty());
        // Already marked by an earlier attempt: no second status write.
        let mut marked = pod(json!(null));
        marked
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("DeletionByTaintManager".into()),
                message: Some("Taint manager: deleting due to NoExecute taint".into()),
                last_transition_time: Some(Time(ts(2))),
                ..Default::default()
            });
        let plan = reconcile_taint_eviction(&marked, Some(&n), ts(5));
        assert_eq!(plan.actions, eviction_plan(false, 5));
    }

    #[test]
    fn pods_on_an_unknown_node_are_marked_not_ready() {
        let p = pod(json!(null));
        let plan = reconcile_pod_readiness(&p, Some(&unreachable_since(0)), ts(7));
        assert_eq!(plan.actions.len(), 2, "{plan:?}");
        let Action::UpdateStatus {
            resource: Resource::Pods,
            object,
            ..
        } = &plan.actions[0]
        else {
            panic!("{plan:?}")
        };
        assert_eq!(
            object["status"]["conditions"],
            json!([{"type": "Ready", "status": "False", "lastTransitionTime": t(7)}])
        );
        assert_eq!(object["metadata"]["resourceVersion"], json!("3"));
        assert_eq!(
            plan.actions[1],
            Action::Event {
                involved: json!({"apiVersion": "v1", "kind": "Pod", "namespace": "prod",
                                 "name": "web-1", "uid": "pod-uid"}),
                event_type: EventType::Warning,
                reason: "NodeNotReady".into(),
                message: "Node is not ready".into(),
            }
        );
        // Written once: the pod read back is not Ready any more.
        let marked: Pod = serde_json::from_value(object.clone()).unwrap();
        assert!(reconcile_pod_readiness(&marked, Some(&unreachable_since(0)), ts(8)).is_empty());
        // A live kubelet reporting NotReady is left to manage its pods.
        let not_ready = node(json!([cond("Ready", "False", 0)]), json!(null));
        assert!(reconcile_pod_readiness(&p, Some(&not_ready), ts(7)).is_empty());
        assert!(reconcile_pod_readiness(&p, Some(&ready_node("True", 0)), ts(7)).is_empty());
        assert!(reconcile_pod_readiness(&p, None, ts(7)).is_empty());
    }
}
