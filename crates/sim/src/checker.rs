//! Invariant checkers, run after every change the store commits (each
//! revision is one step of the simulation): no pod is ever bound to a
//! second node; no node is over-committed; a settled RollingUpdate
//! Deployment never has fewer than `replicas − maxUnavailable` available
//! pods. The checker is a pure state machine over store events, so it is
//! tested without a simulation.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

/// One violated invariant, with the revision where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub revision: i64,
    pub message: String,
}

#[derive(Clone, Debug, Default)]
struct PodInfo {
    namespace: String,
    name: String,
    node: Option<String>,
    cpu_milli: i64,
    memory: i64,
    /// Counts against its node (bound and not Succeeded/Failed).
    counted: bool,
    available: bool,
    /// In key order, exactly as long as it is (a map's first node takes
    /// ≈500 bytes, for every pod of the run).
    labels: Box<[(String, String)]>,
}

#[derive(Clone, Debug, Default)]
struct NodeInfo {
    cpu_milli: i64,
    memory: i64,
    pods: i64,
    used_cpu_milli: i64,
    used_memory: i64,
    used_pods: i64,
}

#[derive(Clone, Debug)]
struct DeploymentInfo {
    namespace: String,
    replicas: i64,
    max_unavailable: i64,
    selector: BTreeMap<String, String>,
    /// All replicas were available since the last scale: from then on the
    /// availability floor holds.
    settled: bool,
    available: i64,
}

#[derive(Default)]
pub struct Checker {
    pods: BTreeMap<String, PodInfo>,
    nodes: BTreeMap<String, NodeInfo>,
    deployments: BTreeMap<String, DeploymentInfo>,
    /// Deployments by one pair of their selector (see [`index_pair`]), so a
    /// pod's change looks only at the Deployments that can select it.
    by_selector: HashMap<(String, String, String), BTreeSet<String>>,
    /// Whether to check the rollout floor (off when faults make pods
    /// unavailable on their own: crashes, lost nodes).
    pub check_availability: bool,
    pub violations: Vec<Violation>,
    pub steps: u64,
}

/// Parses a Kubernetes quantity into milli-units (`milli`) or plain units.
pub fn parse_quantity(q: &str, milli: bool) -> i64 {
    let q = q.trim();
    let (number, factor): (&str, f64) = if let Some(n) = q.strip_suffix("Ki") {
        (n, 1024.0)
    } else if let Some(n) = q.strip_suffix("Mi") {
        (n, 1024.0 * 1024.0)
    } else if let Some(n) = q.strip_suffix("Gi") {
        (n, 1024.0 * 1024.0 * 1024.0)
    } else if let Some(n) = q.strip_suffix("Ti") {
        (n, 1024f64.powi(4))
    } else if let Some(n) = q.strip_suffix('m') {
        (n, 0.001)
    } else if let Some(n) = q.strip_suffix('k') {
        (n, 1e3)
    } else if let Some(n) = q.strip_suffix('M') {
        (n, 1e6)
    } else if let Some(n) = q.strip_suffix('G') {
        (n, 1e9)
    } else {
        (q, 1.0)
    };
    let value = number.parse::<f64>().unwrap_or(0.0) * factor;
    if milli {
        (value * 1000.0).round() as i64
    } else {
        value.round() as i64
    }
}

fn labels_of(v: &Value, pointer: &str) -> BTreeMap<String, String> {
    v.pointer(pointer)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn pod_info(v: &Value) -> PodInfo {
    let mut cpu = 0;
    let mut memory = 0;
    for c in v
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        cpu += parse_quantity(str_at(c, "/resources/requests/cpu"), true);
        memory += parse_quantity(str_at(c, "/resources/requests/memory"), false);
    }
    let phase = str_at(v, "/status/phase");
    let node = Some(str_at(v, "/spec/nodeName").to_string()).filter(|n| !n.is_empty());
    let ready = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True");
    let terminating = v.pointer("/metadata/deletionTimestamp").is_some();
    PodInfo {
        namespace: str_at(v, "/metadata/namespace").to_string(),
        name: str_at(v, "/metadata/name").to_string(),
        counted: node.is_some() && phase != "Succeeded" && phase != "Failed",
        node,
        cpu_milli: cpu,
        memory,
        available: ready && !terminating,
        labels: labels_of(v, "/metadata/labels").into_iter().collect(),
    }
}

fn resolve(value: Option<&Value>, replicas: i64, round_up: bool, default_percent: i64) -> i64 {
    match value {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) if s.ends_with('%') => {
            let p: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            scaled(p, replicas, round_up)
        }
        _ => scaled(default_percent, replicas, round_up),
    }
}

fn scaled(percent: i64, replicas: i64, round_up: bool) -> i64 {
    if round_up {
        (percent * replicas + 99) / 100
    } else {
        percent * replicas / 100
    }
}

fn matches(selector: &BTreeMap<String, String>, labels: &[(String, String)]) -> bool {
    !selector.is_empty()
        && selector.iter().all(|(k, v)| {
            labels
                .binary_search_by(|(l, _)| l.as_str().cmp(k))
                .is_ok_and(|i| labels[i].1 == *v)
        })
}

/// The pair a Deployment is indexed under: its selector's first label (an
/// empty selector matches nothing here, see [`matches`]).
fn index_pair(
    namespace: &str,
    selector: &BTreeMap<String, String>,
) -> Option<(String, String, String)> {
    let (k, v) = selector.iter().next()?;
    Some((namespace.to_string(), k.clone(), v.clone()))
}

fn unindex(
    index: &mut HashMap<(String, String, String), BTreeSet<String>>,
    pair: Option<(String, String, String)>,
    key: &str,
) {
    if let Some(pair) = pair {
        if let Some(keys) = index.get_mut(&pair) {
            keys.remove(key);
            if keys.is_empty() {
                index.remove(&pair);
            }
        }
    }
}

impl Checker {
    fn forget_deployment(&mut self, key: &str) {
        if let Some(old) = self.deployments.remove(key) {
            unindex(
                &mut self.by_selector,
                index_pair(&old.namespace, &old.selector),
                key,
            );
        }
    }

    pub fn new(check_availability: bool) -> Checker {
        Checker {
            check_availability,
            ..Default::default()
        }
    }

    /// Whether changes of the object stored under `key` matter to the
    /// checker (pods, nodes, Deployments); others only count as steps.
    pub fn checks_key(key: &str) -> bool {
        [
            "/registry/core/pods/",
            "/registry/core/nodes/",
            "/registry/apps/deployments/",
        ]
        .iter()
        .any(|prefix| key.starts_with(prefix))
    }

    fn violate(&mut self, revision: i64, message: String) {
        self.violations.push(Violation { revision, message });
    }

    /// One committed change: `new` is the decoded new value (None for a
    /// deletion); `old`, the value before, is needed only for a deletion (the
    /// checker keeps what it needs of every object it has seen).
    pub fn observe(&mut self, revision: i64, old: Option<&Value>, new: Option<&Value>) {
        self.steps += 1;
        let kind = str_at(new.or(old).unwrap_or(&Value::Null), "/kind").to_string();
        match kind.as_str() {
            "Pod" => self.pod(revision, old, new),
            "Node" => self.node(old, new),
            "Deployment" => self.deployment(new.or(old).unwrap_or(&Value::Null), new.is_none()),
            _ => {}
        }
    }

    fn node(&mut self, _old: Option<&Value>, new: Option<&Value>) {
        let Some(v) = new else {
            return;
        };
        let name = str_at(v, "/metadata/name").to_string();
        let entry = self.nodes.entry(name).or_default();
        entry.cpu_milli = parse_quantity(str_at(v, "/status/allocatable/cpu"), true);
        entry.memory = parse_quantity(str_at(v, "/status/allocatable/memory"), false);
        entry.pods = parse_quantity(str_at(v, "/status/allocatable/pods"), false);
    }

    fn deployment(&mut self, v: &Value, deleted: bool) {
        let key = format!(
            "{}/{}",
            str_at(v, "/metadata/namespace"),
            str_at(v, "/metadata/name")
        );
        if deleted || v.pointer("/metadata/deletionTimestamp").is_some() {
            self.forget_deployment(&key);
            return;
        }
        let replicas = v
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let rolling = str_at(v, "/spec/strategy/type") != "Recreate";
        let paused = v
            .pointer("/spec/paused")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let surge = resolve(
            v.pointer("/spec/strategy/rollingUpdate/maxSurge"),
            replicas,
            true,
            25,
        );
        let mut max_unavailable = resolve(
            v.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
            replicas,
            false,
            25,
        );
        if surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        if !rolling || paused {
            self.forget_deployment(&key);
            return;
        }
        let selector = labels_of(v, "/spec/selector/matchLabels");
        let namespace = str_at(v, "/metadata/namespace").to_string();
        let previous = self.deployments.get(&key);
        // The pod path keeps the count of a known Deployment current; only a
        // new one, or a new selector, is counted from the pods.
        let available = match previous {
            Some(d) if d.namespace == namespace && d.selector == selector => d.available,
            _ => self
                .pods
                .values()
                .filter(|p| {
                    p.namespace == namespace && p.available && matches(&selector, &p.labels)
                })
                .count() as i64,
        };
        let settled =
            previous.is_some_and(|d| d.settled && d.replicas == replicas) || available >= replicas;
        if let Some(old) = self.deployments.get(&key) {
            let old = index_pair(&old.namespace, &old.selector);
            unindex(&mut self.by_selector, old, &key);
        }
        if let Some(pair) = index_pair(&namespace, &selector) {
            self.by_selector
                .entry(pair)
                .or_default()
                .insert(key.clone());
        }
        self.deployments.insert(
            key,
            DeploymentInfo {
                namespace,
                replicas,
                max_unavailable,
                selector,
                settled,
                available,
            },
        );
    }

    fn pod(&mut self, revision: i64, old: Option<&Value>, new: Option<&Value>) {
        let uid = str_at(new.or(old).unwrap_or(&Value::Null), "/metadata/uid").to_string();
        let before = self.pods.remove(&uid);
        let after = new.map(pod_info);
        if let (Some(b), Some(a)) = (&before, &after) {
            if let (Some(from), Some(to)) = (&b.node, &a.node) {
                if from != to {
                    self.violate(
                        revision,
                        format!(
                            "pod {}/{} bound twice: to {from}, then to {to}",
                            a.namespace, a.name
                        ),
                    );
                }
            }
        }
        // Node accounting.
        for (info, sign) in [(&before, -1), (&after, 1)] {
            let Some(p) = info else { continue };
            if !p.counted {
                continue;
            }
            if let Some(node) = p.node.as_ref().and_then(|n| self.nodes.get_mut(n)) {
                node.used_cpu_milli += sign * p.cpu_milli;
                node.used_memory += sign * p.memory;
                node.used_pods += sign;
            }
        }
        if let Some(p) = &after {
            if let Some(name) = &p.node {
                if let Some(node) = self.nodes.get(name) {
                    let over = (node.cpu_milli > 0 && node.used_cpu_milli > node.cpu_milli)
                        || (node.memory > 0 && node.used_memory > node.memory)
                        || (node.pods > 0 && node.used_pods > node.pods);
                    let newly_bound = before.as_ref().is_none_or(|b| b.node.is_none());
                    if over && newly_bound {
                        let message = format!(
                            "node {name} over-committed by pod {}/{}: cpu {}m/{}m, memory {}/{}, pods {}/{}",
                            p.namespace, p.name, node.used_cpu_milli, node.cpu_milli, node.used_memory,
                            node.memory, node.used_pods, node.pods
                        );
                        self.violate(revision, message);
                    }
                }
            }
        }
        // Rollout availability floor.
        let was = before.as_ref().filter(|p| p.available);
        let is = after.as_ref().filter(|p| p.available);
        let mut floor_violations = Vec::new();
        // Only Deployments whose selector's indexed pair is among the pod's
        // labels can match it; in key order, like a scan of all of them.
        let mut candidates = std::collections::BTreeSet::new();
        for p in [was, is].into_iter().flatten() {
            for (k, v) in p.labels.iter() {
                let pair = (p.namespace.clone(), k.clone(), v.clone());
                if let Some(keys) = self.by_selector.get(&pair) {
                    candidates.extend(keys.iter().cloned());
                }
            }
        }
        for key in candidates {
            let Some(d) = self.deployments.get_mut(&key) else {
                continue;
            };
            let delta =
                i64::from(is.is_some_and(|p| {
                    p.namespace == d.namespace && matches(&d.selector, &p.labels)
                })) - i64::from(was.is_some_and(|p| {
                    p.namespace == d.namespace && matches(&d.selector, &p.labels)
                }));
            if delta == 0 {
                continue;
            }
            d.available += delta;
            if d.available >= d.replicas {
                d.settled = true;
            }
            let floor = d.replicas - d.max_unavailable;
            if self.check_availability && d.settled && delta < 0 && d.available < floor {
                floor_violations.push(format!(
                    "deployment {key}: {} available pods, fewer than replicas {} − maxUnavailable {}",
                    d.available, d.replicas, d.max_unavailable
                ));
            }
        }
        for message in floor_violations {
            self.violate(revision, message);
        }
        if let Some(p) = after {
            self.pods.insert(uid, p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str) -> Value {
        json!({"kind": "Node", "metadata": {"name": name}, "status": {"allocatable": {"cpu": cpu, "memory": "1Gi", "pods": "10"}}})
    }

    fn pod(uid: &str, node: Option<&str>, cpu: &str, ready: bool) -> Value {
        json!({"kind": "Pod", "metadata": {"uid": uid, "name": uid, "namespace": "default", "labels": {"app": "web"}},
               "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    fn deployment(replicas: i64) -> Value {
        json!({"kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}}})
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m", true), 100);
        assert_eq!(parse_quantity("2", true), 2000);
        assert_eq!(parse_quantity("1.5", true), 1500);
        assert_eq!(parse_quantity("64Mi", false), 64 << 20);
        assert_eq!(parse_quantity("1G", false), 1_000_000_000);
        assert_eq!(parse_quantity("", false), 0);
    }

    #[test]
    fn rebinding_is_a_violation() {
        let mut c = Checker::new(true);
        c.observe(1, None, Some(&pod("a", Some("n1"), "0", true)));
        c.observe(
            2,
            Some(&pod("a", Some("n1"), "0", true)),
            Some(&pod("a", Some("n1"), "0", true)),
        );
        assert!(c.violations.is_empty());
        c.observe(
            3,
            Some(&pod("a", Some("n1"), "0", true)),
            Some(&pod("a", Some("n2"), "0", true)),
        );
        assert_eq!(c.violations.len(), 1, "{:?}", c.violations);
        assert!(c.violations[0].message.contains("bound twice"));
    }

    #[test]
    fn over_commit_is_a_violation() {
        let mut c = Checker::new(true);
        c.observe(1, None, Some(&node("n1", "1")));
        c.observe(2, None, Some(&pod("a", Some("n1"), "600m", true)));
        assert!(c.violations.is_empty());
        c.observe(3, None, Some(&pod("b", Some("n1"), "600m", true)));
        assert_eq!(c.violations.len(), 1);
        assert!(
            c.violations[0].message.contains("over-committed"),
            "{:?}",
            c.violations
        );
        // Deleting a pod frees its share.
        c.observe(4, Some(&pod("b", Some("n1"), "600m", true)), None);
        c.observe(5, None, Some(&pod("c", Some("n1"), "300m", true)));
        assert_eq!(c.violations.len(), 1);
    }

    #[test]
    fn availability_floor_after_settling() {
        let mut c = Checker::new(true);
        c.observe(1, None, Some(&deployment(3)));
        // Not settled yet: starting up is not a violation.
        for (i, uid) in ["a", "b", "c"].iter().enumerate() {
            c.observe(2 + i as i64, None, Some(&pod(uid, Some("n1"), "0", true)));
        }
        // One down: 2 >= 3 - 1 is fine.
        c.observe(
            10,
            Some(&pod("a", Some("n1"), "0", true)),
            Some(&pod("a", Some("n1"), "0", false)),
        );
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        // Two down: below the floor.
        c.observe(11, Some(&pod("b", Some("n1"), "0", true)), None);
        assert_eq!(c.violations.len(), 1, "{:?}", c.violations);
        // Not checked when faults are expected.
        let mut lenient = Checker::new(false);
        lenient.observe(1, None, Some(&deployment(1)));
        lenient.observe(2, None, Some(&pod("a", Some("n1"), "0", true)));
        lenient.observe(3, Some(&pod("a", Some("n1"), "0", true)), None);
        assert!(lenient.violations.is_empty());
    }
}
