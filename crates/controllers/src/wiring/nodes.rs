//! Node lifecycle and taint-based eviction as the runtime runs them.
//!
//! - [`NodeLifecycleController`], keyed by node: reconciled when the node
//!   or its Lease in `kube-node-lease` changes, and at the moment its grace
//!   period would run out (the plan's requeue). It keeps each node's
//!   [`NodeHealth`] between reconciles, as Kubernetes keeps
//!   `nodeHealthData`.
//! - [`TaintEvictionController`], keyed by pod: reconciled when a bound pod
//!   changes and, for every pod on a node, when that node's `NoExecute`
//!   taints or Ready condition change; deletes pods that do not tolerate
//!   their node's taints (for long enough) and marks pods on a node whose
//!   kubelet is gone not Ready.

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::nodelifecycle::{self, NodeHealth, NodeLifecycleConfig};
use crate::runtime::{AnyObject, Caches, Controller, ObjectKey};
use crate::{Plan, Resource};

/// Where kubelets renew their Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

pub struct NodeLifecycleController {
    config: NodeLifecycleConfig,
    health: Mutex<BTreeMap<String, NodeHealth>>,
}

impl NodeLifecycleController {
    pub fn new(config: NodeLifecycleConfig) -> NodeLifecycleController {
        NodeLifecycleController {
            config,
            health: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Controller for NodeLifecycleController {
    fn name(&self) -> &'static str {
        "node-lifecycle"
    }
    fn reads(&self) -> &'static [Resource] {
        &[Resource::Nodes, Resource::Leases]
    }
    fn keys_for(&self, _caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::Nodes(n) => {
                vec![ObjectKey::new("", n.metadata.name.as_deref().unwrap_or(""))]
            }
            AnyObject::Leases(l)
                if l.metadata.namespace.as_deref() == Some(NODE_LEASE_NAMESPACE) =>
            {
                vec![ObjectKey::new("", l.metadata.name.as_deref().unwrap_or(""))]
            }
            _ => Vec::new(),
        }
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        super::keys_of(&caches.nodes)
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, now: jiff::Timestamp) -> Plan {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let Some(node) = caches.nodes.get(key) else {
            health.remove(&key.name);
            return Plan::default();
        };
        let lease = caches
            .leases
            .get(&ObjectKey::new(NODE_LEASE_NAMESPACE, &key.name));
        let observed = health.get(&key.name).copied().unwrap_or_default();
        let (plan, next) =
            nodelifecycle::reconcile_node(&node, lease.as_deref(), &observed, now, &self.config);
        health.insert(key.name.clone(), next);
        plan
    }
}

pub struct TaintEvictionController;

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

/// What of a node decides its pods' fate here: its `NoExecute` taints and
/// whether its Ready condition is Unknown.
fn eviction_inputs(node: &Node) -> (Vec<(String, Option<String>)>, bool) {
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|t| {
            t.iter()
                .filter(|t| t.effect == "NoExecute")
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    let unknown = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "Unknown");
    (taints, unknown)
}

fn pods_on(caches: &Caches, node: &str) -> Vec<ObjectKey> {
    caches
        .pods
        .list()
        .iter()
        .filter(|p| node_of(p) == Some(node))
        .map(|p| ObjectKey::of(&p.metadata))
        .collect()
}

impl Controller for TaintEvictionController {
    fn name(&self) -> &'static str {
        "taint-eviction"
    }
    fn reads(&self) -> &'static [Resource] {
        &[Resource::Pods, Resource::Nodes]
    }
    fn keys_for(&self, caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::Pods(p) if node_of(p).is_some() => vec![ObjectKey::of(&p.metadata)],
            AnyObject::Nodes(n) => pods_on(caches, n.metadata.name.as_deref().unwrap_or("")),
            _ => Vec::new(),
        }
    }
    fn keys_for_change(
        &self,
        caches: &Caches,
        old: Option<&AnyObject>,
        new: Option<&AnyObject>,
    ) -> Vec<ObjectKey> {
        match (old, new) {
            // Heartbeats change nodes all the time; only taints and the
            // Ready condition being Unknown matter here.
            (Some(AnyObject::Nodes(a)), Some(AnyObject::Nodes(b))) => {
                if eviction_inputs(a) == eviction_inputs(b) {
                    Vec::new()
                } else {
                    self.keys_for(caches, new.expect("matched Some"))
                }
            }
            // A new node has no pods yet; a deleted one is pod GC's.
            (None, Some(AnyObject::Nodes(_))) | (Some(AnyObject::Nodes(_)), None) => Vec::new(),
            _ => {
                let mut keys = Vec::new();
                for object in [old, new].into_iter().flatten() {
                    keys.extend(self.keys_for(caches, object));
                }
                keys.dedup();
                keys
            }
        }
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        caches
            .pods
            .list()
            .iter()
            .filter(|p| node_of(p).is_some())
            .map(|p| ObjectKey::of(&p.metadata))
            .collect()
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, now: jiff::Timestamp) -> Plan {
        let Some(pod) = caches.pods.get(key) else {
            return Plan::default();
        };
        let Some(node_name) = node_of(&pod) else {
            return Plan::default();
        };
        let node = caches.nodes.get(&ObjectKey::new("", node_name));
        let mut plan = nodelifecycle::reconcile_pod_readiness(&pod, node.as_deref(), now);
        let eviction = nodelifecycle::reconcile_taint_eviction(&pod, node.as_deref(), now);
        plan.actions.extend(eviction.actions);
        if let Some(after) = eviction.requeue_after {
            plan.requeue(after);
        }
        plan
    }
}
