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
//!   `unreachable`, `NoExecute`, 300 s), exactly as the plugin would have
//!   added them, since drover's API server may not run that plugin.
//!   TODO(apiserver): add them at pod creation, then this is a no-op.
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
    let deadline = probe
        .checked_add(grace)
        .unwrap_or(jiff::Timestamp::MAX);
    if now >= deadline {
        let updated = conditions_unknown(&conditions, created, now);
        let new_ready = find_condition(&updated, "Ready");
        if new_ready != ready {
            let mut object = node.clone();
            object.status.get_or_insert_with(Default::default).conditions = Some(updated.clone());
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
fn desired_taints(node: &Node, conditions: &[NodeCondition], now: jiff::Timestamp) -> Option<Vec<Taint>> {
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
