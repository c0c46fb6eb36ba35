//! What the scenario waits on — pods bound and ready, Deployments complete,
//! nodes unreachable, ReplicaSets gone — kept up to date from the store's
//! committed changes, so that waiting costs nothing per virtual second.
//!
//! Before this, every wait listed all pods (and Deployments) through the API
//! once per virtual second: at 2,000 pods that was 45 % of the run's CPU,
//! most of it parsing list bodies. The view is fed by the same commit
//! observer as the checker (every revision, in order), so it is exactly
//! the state the API would list at that revision. The final checks (orphans,
//! failure details) still go through the API.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// One pod, as far as the scenario's waits care.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodState {
    /// The `app` label.
    pub app: String,
    pub node: Option<String>,
    /// Ready=True and not terminating.
    pub ready: bool,
    pub terminating: bool,
}

/// One Deployment's spec and status counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploymentState {
    pub replicas: i64,
    pub generation: i64,
    pub observed_generation: i64,
    pub status_replicas: i64,
    pub updated: i64,
    pub available: i64,
}

impl DeploymentState {
    /// All replicas updated and available, no old ones, status observed for
    /// the current generation.
    pub fn complete(&self) -> bool {
        self.observed_generation >= self.generation
            && self.updated == self.replicas
            && self.status_replicas == self.replicas
            && self.available == self.replicas
    }
}

/// One node: Ready=Unknown and the NoExecute unreachable taint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    pub unknown: bool,
    pub unreachable_taint: bool,
}

/// The scenario's view of one namespace (pods, Deployments, ReplicaSets)
/// and of all nodes, by object name.
#[derive(Debug)]
pub struct Progress {
    namespace: String,
    pub pods: BTreeMap<String, PodState>,
    pub deployments: BTreeMap<String, DeploymentState>,
    pub replica_sets: BTreeSet<String>,
    pub nodes: BTreeMap<String, NodeState>,
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn has_condition(v: &Value, kind: &str, status: &str) -> bool {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == status)
}

/// The kind of object a store key holds and its name, for the keys the view
/// follows (`/registry/core/pods/<ns>/<name>`, `/registry/core/nodes/<name>`…).
#[derive(Debug, PartialEq, Eq)]
enum Key<'a> {
    Pod(&'a str),
    Deployment(&'a str),
    ReplicaSet(&'a str),
    Node(&'a str),
}

impl Progress {
    pub fn new(namespace: &str) -> Progress {
        Progress {
            namespace: namespace.to_string(),
            pods: BTreeMap::new(),
            deployments: BTreeMap::new(),
            replica_sets: BTreeSet::new(),
            nodes: BTreeMap::new(),
        }
    }

    fn parse<'a>(&self, key: &'a str) -> Option<Key<'a>> {
        let in_namespace = |rest: &'a str| {
            rest.strip_prefix(self.namespace.as_str())
                .and_then(|r| r.strip_prefix('/'))
        };
        if let Some(rest) = key.strip_prefix("/registry/core/pods/") {
            return in_namespace(rest).map(Key::Pod);
        }
        if let Some(rest) = key.strip_prefix("/registry/apps/deployments/") {
            return in_namespace(rest).map(Key::Deployment);
        }
        if let Some(rest) = key.strip_prefix("/registry/apps/replicasets/") {
            return in_namespace(rest).map(Key::ReplicaSet);
        }
        key.strip_prefix("/registry/core/nodes/").map(Key::Node)
    }

    /// Whether changes under `key` need the decoded object (pods, nodes,
    /// Deployments); ReplicaSets are followed by name only.
    pub fn needs_value(&self, key: &str) -> bool {
        matches!(
            self.parse(key),
            Some(Key::Pod(_) | Key::Deployment(_) | Key::Node(_))
        )
    }

    /// One committed change: the object's new value, or `None` if deleted.
    pub fn observe(&mut self, key: &str, new: Option<&Value>) {
        let Some(parsed) = self.parse(key) else {
            return;
        };
        match (parsed, new) {
            (Key::Pod(name), None) => {
                self.pods.remove(name);
            }
            (Key::Pod(name), Some(v)) => {
                let terminating = v.pointer("/metadata/deletionTimestamp").is_some();
                let state = PodState {
                    app: v
                        .pointer("/metadata/labels/app")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    node: v
                        .pointer("/spec/nodeName")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                        .map(str::to_string),
                    ready: !terminating && has_condition(v, "Ready", "True"),
                    terminating,
                };
                self.pods.insert(name.to_string(), state);
            }
            (Key::Deployment(name), None) => {
                self.deployments.remove(name);
            }
            (Key::Deployment(name), Some(v)) => {
                let replicas = v
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                let state = DeploymentState {
                    replicas,
                    generation: int(v, "/metadata/generation"),
                    observed_generation: int(v, "/status/observedGeneration"),
                    status_replicas: int(v, "/status/replicas"),
                    updated: int(v, "/status/updatedReplicas"),
                    available: int(v, "/status/availableReplicas"),
                };
                self.deployments.insert(name.to_string(), state);
            }
            (Key::ReplicaSet(name), None) => {
                self.replica_sets.remove(name);
            }
            (Key::ReplicaSet(name), Some(_)) => {
                self.replica_sets.insert(name.to_string());
            }
            (Key::Node(name), None) => {
                self.nodes.remove(name);
            }
            (Key::Node(name), Some(v)) => {
                let unreachable_taint = v
                    .pointer("/spec/taints")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|t| {
                        t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"
                    });
                let state = NodeState {
                    unknown: has_condition(v, "Ready", "Unknown"),
                    unreachable_taint,
                };
                self.nodes.insert(name.to_string(), state);
            }
        }
    }

    /// Pods bound to a node.
    pub fn bound(&self) -> usize {
        self.pods.values().filter(|p| p.node.is_some()).count()
    }

    /// Ready, not terminating pods labelled `app=<name>`.
    pub fn ready_pods(&self, app: &str) -> i64 {
        self.pods
            .values()
            .filter(|p| p.ready && p.app == app)
            .count() as i64
    }

    /// Every named Deployment is complete and exactly `replicas` of its pods
    /// are ready and not terminating.
    pub fn complete<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> bool {
        let mut ready: BTreeMap<&str, i64> = BTreeMap::new();
        for p in self.pods.values().filter(|p| p.ready) {
            *ready.entry(p.app.as_str()).or_default() += 1;
        }
        names.into_iter().all(|name| {
            self.deployments.get(name).is_some_and(|d| {
                d.complete() && ready.get(name.as_str()).copied().unwrap_or(0) == d.replicas
            })
        })
    }

    /// Pods on the given nodes, and how many of them are terminating.
    pub fn on_nodes(&self, nodes: &BTreeSet<String>) -> (usize, usize) {
        let on = self
            .pods
            .values()
            .filter(|p| p.node.as_ref().is_some_and(|n| nodes.contains(n)));
        on.fold((0, 0), |(all, terminating), p| {
            (all + 1, terminating + usize::from(p.terminating))
        })
    }

    /// How many of the given nodes are Unknown and tainted unreachable.
    pub fn unreachable(&self, nodes: &BTreeSet<String>) -> usize {
        nodes
            .iter()
            .filter(|n| {
                self.nodes
                    .get(*n)
                    .is_some_and(|s| s.unknown && s.unreachable_taint)
            })
            .count()
    }

    /// ReplicaSets and pods whose names start with `<deployment>-` for any of
    /// the given Deployments.
    pub fn left_of(&self, deployments: &BTreeSet<String>) -> usize {
        let owned = |name: &String| {
            deployments.iter().any(|d| {
                name.strip_prefix(d.as_str())
                    .is_some_and(|r| r.starts_with('-'))
            })
        };
        self.replica_sets.iter().filter(|n| owned(n)).count()
            + self.pods.keys().filter(|n| owned(n)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(app: &str, node: Option<&str>, ready: bool, terminating: bool) -> Value {
        let mut v = json!({
            "kind": "Pod",
            "metadata": {"name": "x", "namespace": "sim", "labels": {"app": app}},
            "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        });
        if let Some(n) = node {
            v["spec"]["nodeName"] = json!(n);
        }
        if terminating {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        v
    }

    fn deployment(replicas: i64, generation: i64, observed: i64, available: i64) -> Value {
        json!({
            "metadata": {"generation": generation},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "replicas": available,
                       "updatedReplicas": available, "availableReplicas": available},
        })
    }

    #[test]
    fn keys_outside_the_namespace_and_other_kinds_are_ignored() {
        let mut p = Progress::new("sim");
        p.observe(
            "/registry/core/pods/other/a",
            Some(&pod("a", Some("n"), true, false)),
        );
        p.observe("/registry/core/configmaps/sim/a", Some(&json!({})));
        p.observe(
            "/registry/core/pods/simulation/a",
            Some(&pod("a", None, true, false)),
        );
        assert!(p.pods.is_empty());
        assert!(!p.needs_value("/registry/apps/replicasets/sim/a-1"));
        assert!(p.needs_value("/registry/core/pods/sim/a-1"));
        assert!(p.needs_value("/registry/core/nodes/node-00001"));
    }

    #[test]
    fn pods_are_counted_bound_ready_and_deleted() {
        let mut p = Progress::new("sim");
        p.observe(
            "/registry/core/pods/sim/web-1",
            Some(&pod("web", None, false, false)),
        );
        assert_eq!(p.bound(), 0);
        p.observe(
            "/registry/core/pods/sim/web-1",
            Some(&pod("web", Some("n1"), true, false)),
        );
        p.observe(
            "/registry/core/pods/sim/web-2",
            Some(&pod("web", Some("n2"), true, true)),
        );
        assert_eq!(p.bound(), 2);
        assert_eq!(p.ready_pods("web"), 1, "a terminating pod is not ready");
        let lost: BTreeSet<String> = ["n2".to_string()].into();
        assert_eq!(p.on_nodes(&lost), (1, 1));
        p.observe("/registry/core/pods/sim/web-2", None);
        assert_eq!(p.on_nodes(&lost), (0, 0));
    }

    #[test]
    fn a_deployment_is_complete_only_with_its_ready_pods() {
        let mut p = Progress::new("sim");
        let names = vec!["web".to_string()];
        assert!(!p.complete(&names), "an unknown deployment is not complete");
        p.observe(
            "/registry/apps/deployments/sim/web",
            Some(&deployment(2, 2, 1, 2)),
        );
        p.observe(
            "/registry/core/pods/sim/web-1",
            Some(&pod("web", Some("n"), true, false)),
        );
        p.observe(
            "/registry/core/pods/sim/web-2",
            Some(&pod("web", Some("n"), true, false)),
        );
        assert!(!p.complete(&names), "status of an older generation");
        p.observe(
            "/registry/apps/deployments/sim/web",
            Some(&deployment(2, 2, 2, 2)),
        );
        assert!(p.complete(&names));
        p.observe(
            "/registry/core/pods/sim/web-3",
            Some(&pod("web", Some("n"), true, false)),
        );
        assert!(!p.complete(&names), "one ready pod too many");
    }

    #[test]
    fn nodes_and_leftovers() {
        let mut p = Progress::new("sim");
        let node = json!({
            "spec": {"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
        });
        p.observe("/registry/core/nodes/n1", Some(&node));
        p.observe("/registry/core/nodes/n2", Some(&json!({})));
        let both: BTreeSet<String> = ["n1".to_string(), "n2".to_string()].into();
        assert_eq!(p.unreachable(&both), 1);

        p.observe(
            "/registry/apps/replicasets/sim/app-0001-abc",
            Some(&json!({})),
        );
        p.observe(
            "/registry/apps/replicasets/sim/app-00010-abc",
            Some(&json!({})),
        );
        p.observe(
            "/registry/core/pods/sim/app-0001-abc-x",
            Some(&pod("app-0001", None, false, false)),
        );
        let gone: BTreeSet<String> = ["app-0001".to_string()].into();
        assert_eq!(
            p.left_of(&gone),
            2,
            "app-00010's ReplicaSet is not app-0001's"
        );
        p.observe("/registry/apps/replicasets/sim/app-0001-abc", None);
        p.observe("/registry/core/pods/sim/app-0001-abc-x", None);
        assert_eq!(p.left_of(&gone), 0);
    }
}
