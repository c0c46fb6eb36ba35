//! Fake nodes, like kwok: a "kubelet" for every simulated node that starts
//! bound pods after a short virtual delay (Running, Ready, a pod IP), finishes
//! terminating pods at once, and — when asked — crashes running containers
//! so that they are briefly not ready and their restart count grows. It is a
//! controller over pods, run by the same runtime as the real controllers.
//! [`FakeNodeAgent`] renews each node's Lease in `kube-node-lease` like a
//! kubelet; a node marked [`Dead`] stops renewing and its kubelet stops
//! acting, so the node lifecycle controller finds it unreachable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use controllers::runtime::{AnyObject, Caches, Controller, ObjectKey};
use controllers::{Action, Plan, Resource};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::clock::SeededRandom;

/// The nodes whose kubelet has died (shared by the fake kubelet, the fake
/// node agent and the scenario that kills them).
#[derive(Clone, Default)]
pub struct Dead(Arc<Mutex<BTreeSet<String>>>);

impl Dead {
    pub fn kill(&self, node: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_string());
    }

    pub fn contains(&self, node: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(node)
    }
}

pub struct FakeKubelet {
    random: Arc<SeededRandom>,
    dead: Dead,
    /// Per pod: when it was first seen bound (starts after a delay).
    seen: Mutex<BTreeMap<ObjectKey, jiff::Timestamp>>,
    /// Chance that a reconcile of a running pod crashes its container.
    pub crash_rate: f64,
    /// Virtual delay between binding and Running.
    pub startup: Duration,
}

impl FakeKubelet {
    pub fn new(random: Arc<SeededRandom>, crash_rate: f64, dead: Dead) -> FakeKubelet {
        FakeKubelet {
            random,
            dead,
            seen: Mutex::new(BTreeMap::new()),
            crash_rate,
            startup: Duration::from_secs(1),
        }
    }
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The pod IP a node hands out: 10.(node index).(pod index), from the names.
fn pod_ip(node: &str, pod: &str) -> String {
    let n: u32 = node
        .rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let h = pod
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("10.{}.{}.{}", 64 + (n >> 8) % 64, n & 255, 2 + h % 250)
}

fn status_patch(pod: &Pod, now: jiff::Timestamp, ready: bool, restarts: i32) -> Value {
    let t = rfc3339(now);
    let node = node_of(pod).unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let flag = if ready { "True" } else { "False" };
    let containers: Vec<Value> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "image": c.image,
                "imageID": "",
                "ready": ready,
                "started": ready,
                "restartCount": restarts,
                "state": if ready { json!({"running": {"startedAt": t}}) }
                         else { json!({"waiting": {"reason": "CrashLoopBackOff"}}) },
            })
        })
        .collect();
    json!({"status": {
        "phase": "Running",
        "hostIP": "192.0.2.1",
        "podIP": pod_ip(node, name),
        "startTime": pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|s| rfc3339(s.0)).unwrap_or(t.clone()),
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
            {"type": "Initialized", "status": "True", "lastTransitionTime": t},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": t},
            {"type": "Ready", "status": flag, "lastTransitionTime": t},
        ],
        "containerStatuses": containers,
    }})
}

impl Controller for FakeKubelet {
    fn name(&self) -> &'static str {
        "fake-kubelet"
    }
    fn reads(&self) -> &'static [Resource] {
        &[Resource::Pods]
    }
    fn keys_for(&self, _caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::Pods(p) if node_of(p).is_some() => vec![ObjectKey::of(&p.metadata)],
            _ => Vec::new(),
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
        let mut plan = Plan::default();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let Some(pod) = caches.pods.get(key) else {
            seen.remove(key);
            return plan;
        };
        match node_of(&pod) {
            None => return plan,
            Some(node) if self.dead.contains(node) => return plan,
            Some(_) => {}
        }
        let patch = |plan: &mut Plan, body: Value| {
            plan.push(Action::Patch {
                resource: Resource::Pods,
                namespace: pod.metadata.namespace.clone(),
                name: key.name.clone(),
                subresource: Some("status"),
                patch: body,
            })
        };
        if pod.metadata.deletion_timestamp.is_some() {
            plan.push(Action::DeleteNow {
                resource: Resource::Pods,
                namespace: pod.metadata.namespace.clone(),
                name: key.name.clone(),
                uid: pod.metadata.uid.clone(),
            });
            return plan;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        let restarts = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .map(|c| c.restart_count)
            .unwrap_or(0);
        let ready = controllers::pods::is_pod_ready(&pod);
        match phase {
            "Pending" => {
                let first = *seen.entry(key.clone()).or_insert(now);
                let start_at =
                    first + jiff::SignedDuration::try_from(self.startup).unwrap_or_default();
                if now >= start_at {
                    patch(&mut plan, status_patch(&pod, now, true, 0));
                } else {
                    plan.requeue((start_at.duration_since(now)).unsigned_abs());
                }
            }
            "Running" if ready => {
                if self.random.chance(self.crash_rate) {
                    patch(&mut plan, status_patch(&pod, now, false, restarts + 1));
                }
                // Every running pod is looked at again now and then, so crashes
                // happen over the whole run, not only at start.
                if self.crash_rate > 0.0 {
                    plan.requeue(Duration::from_secs(5 + self.random.below(20)));
                }
            }
            "Running" => {
                // Back from a crash after the restart back-off (10 s, as a kubelet's first).
                let down_since = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                    .and_then(|c| c.last_transition_time.as_ref())
                    .map(|t| t.0)
                    .unwrap_or(now);
                let back_at = down_since + jiff::SignedDuration::from_secs(10);
                if now >= back_at {
                    patch(&mut plan, status_patch(&pod, now, true, restarts));
                } else {
                    plan.requeue(back_at.duration_since(now).unsigned_abs());
                }
            }
            _ => {}
        }
        plan
    }
}

/// How often a kubelet renews its node Lease (a quarter of the Lease's
/// 40 s duration, as the kubelet does).
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
const LEASE_DURATION_SECONDS: i32 = 40;

/// The node-heartbeat half of a kubelet: keeps `kube-node-lease/<node>`
/// renewed for every node that is not dead.
pub struct FakeNodeAgent {
    dead: Dead,
}

impl FakeNodeAgent {
    pub fn new(dead: Dead) -> FakeNodeAgent {
        FakeNodeAgent { dead }
    }
}

fn rfc3339_micro(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

impl Controller for FakeNodeAgent {
    fn name(&self) -> &'static str {
        "fake-node-agent"
    }
    fn reads(&self) -> &'static [Resource] {
        &[Resource::Nodes, Resource::Leases]
    }
    fn keys_for(&self, _caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::Nodes(n) => {
                vec![ObjectKey::new("", n.metadata.name.as_deref().unwrap_or(""))]
            }
            _ => Vec::new(),
        }
    }
    fn keys_for_change(
        &self,
        caches: &Caches,
        old: Option<&AnyObject>,
        new: Option<&AnyObject>,
    ) -> Vec<ObjectKey> {
        // Only a new node starts a renewal loop; the loop goes on by requeue.
        match (old, new) {
            (None, Some(node)) => self.keys_for(caches, node),
            _ => Vec::new(),
        }
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        caches
            .nodes
            .list()
            .iter()
            .map(|n| ObjectKey::new("", n.metadata.name.as_deref().unwrap_or("")))
            .collect()
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, now: jiff::Timestamp) -> Plan {
        let mut plan = Plan::default();
        let Some(node) = caches.nodes.get(key) else {
            return plan;
        };
        if self.dead.contains(&key.name) {
            return plan;
        }
        let lease_key = ObjectKey::new(controllers::wiring::NODE_LEASE_NAMESPACE, &key.name);
        let lease = caches.leases.get(&lease_key);
        let renewed = lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0);
        let interval = jiff::SignedDuration::try_from(LEASE_RENEW_INTERVAL).unwrap_or_default();
        if let Some(at) = renewed.map(|r| r + interval).filter(|at| *at > now) {
            plan.requeue(at.duration_since(now).unsigned_abs());
            return plan;
        }
        let spec = json!({
            "holderIdentity": key.name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": rfc3339_micro(now),
        });
        match lease {
            Some(lease) => {
                let mut object = serde_json::to_value(lease.as_ref()).unwrap_or_default();
                object["spec"] = spec;
                plan.push(Action::Update {
                    resource: Resource::Leases,
                    namespace: Some(lease_key.namespace.clone()),
                    name: key.name.clone(),
                    object,
                });
            }
            None => plan.push(Action::Create {
                resource: Resource::Leases,
                namespace: Some(lease_key.namespace.clone()),
                object: json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": key.name,
                        "namespace": lease_key.namespace,
                        "ownerReferences": [{
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": key.name,
                            "uid": node.metadata.uid,
                        }],
                    },
                    "spec": spec,
                }),
            }),
        }
        plan.requeue(LEASE_RENEW_INTERVAL);
        plan
    }
}

/// A Node object for fake node `index` of `count` (3 zones).
pub fn node(index: usize, cpu: &str, memory: &str, pods: &str) -> Value {
    let name = format!("node-{index:05}");
    let resources =
        json!({"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"});
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": format!("zone-{}", index % 3),
                "type": "fake",
            },
        },
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "fake kubelet is ready"}],
            "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}, {"type": "Hostname", "address": name}],
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "fake",
                "containerRuntimeVersion": "fake://0", "kubeletVersion": "v1.33.0+drover",
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
        },
    })
}
