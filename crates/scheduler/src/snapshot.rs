//! The cluster as the scheduler sees it: nodes with the resources, ports and pods
//! accounted to them, plus the indexes that keep one scheduling decision from
//! touching every pod (by namespace and label, by owner, pods with affinity terms).
//!
//! A `Snapshot` is built once from lists and then kept current with `add_pod`,
//! `remove_pod`, `upsert_node`, ... — in particular the caller "assumes" each
//! binding with `add_pod` so the next pod is scheduled against the updated state.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, Taint,
};

use crate::labels::{Selector, NO_LABELS};
use crate::pod_info::{AffinityTerm, NamespaceLabels, PodInfo};
use crate::ports::UsedPorts;
use crate::resources::Resources;

/// A hasher without a random seed, so iteration order (and so every result) is
/// the same on every run; foldhash rather than std's SipHash, whose
/// resistance to chosen keys these maps of node positions and pod uids do
/// not need (it was 2 % of a simulation).
type FixedState = foldhash::fast::FixedState;
pub(crate) type Map<K, V> = HashMap<K, V, FixedState>;
pub(crate) type Set<T> = HashSet<T, FixedState>;

/// The label kube-scheduler uses to spread across zones.
pub(crate) const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const REGION_LABEL: &str = "topology.kubernetes.io/region";
const BETA_ZONE_LABEL: &str = "failure-domain.beta.kubernetes.io/zone";
const BETA_REGION_LABEL: &str = "failure-domain.beta.kubernetes.io/region";

/// A node and what is accounted to it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// Shared with the informer cache the node came from.
    node: Arc<Node>,
    name: String,
    allocatable: Resources,
    allowed_pod_number: i64,
    requested: Resources,
    non_zero_milli_cpu: i64,
    non_zero_memory: i64,
    pods: Vec<usize>,
    used_ports: UsedPorts,
    zone_key: String,
    /// The values of the two labels spreading reads for every feasible node
    /// of every pod, kept aside from the label map's string search.
    hostname: Option<String>,
    zone: Option<String>,
}

impl NodeInfo {
    fn new(node: impl Into<Arc<Node>>) -> Option<NodeInfo> {
        let node: Arc<Node> = node.into();
        let name = node.metadata.name.clone().filter(|n| !n.is_empty())?;
        let mut info = NodeInfo {
            node: Arc::default(),
            name,
            allocatable: Resources::default(),
            allowed_pod_number: 0,
            requested: Resources::default(),
            non_zero_milli_cpu: 0,
            non_zero_memory: 0,
            pods: Vec::new(),
            used_ports: UsedPorts::default(),
            zone_key: String::new(),
            hostname: None,
            zone: None,
        };
        info.set_node(node);
        Some(info)
    }

    fn set_node(&mut self, node: Arc<Node>) {
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        self.allocatable = allocatable
            .map(Resources::from_resource_list)
            .unwrap_or_default();
        self.allowed_pod_number = allocatable
            .and_then(|a| a.get("pods"))
            .and_then(|q| crate::quantity::parse_value(&q.0).ok())
            .unwrap_or(0);
        self.node = node;
        self.zone_key = zone_key(self.labels());
        self.hostname = self.labels().get(crate::spread::HOSTNAME_LABEL).cloned();
        self.zone = self.labels().get(ZONE_LABEL).cloned();
    }

    /// The node object.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `metadata.labels` (empty when absent).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    /// The value of one label, as `labels().get(key)`.
    pub fn label(&self, key: &str) -> Option<&str> {
        match key {
            crate::spread::HOSTNAME_LABEL => self.hostname.as_deref(),
            ZONE_LABEL => self.zone.as_deref(),
            _ => self.labels().get(key).map(String::as_str),
        }
    }

    /// `spec.taints`.
    pub fn taints(&self) -> &[Taint] {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
    }

    /// `spec.unschedulable`.
    pub fn unschedulable(&self) -> bool {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
    }

    /// `status.allocatable` without `pods`.
    pub fn allocatable(&self) -> &Resources {
        &self.allocatable
    }

    /// `status.allocatable.pods`: how many pods the node takes.
    pub fn allowed_pod_number(&self) -> i64 {
        self.allowed_pod_number
    }

    /// The sum of the effective requests of the pods on the node.
    pub fn requested(&self) -> &Resources {
        &self.requested
    }

    /// Requested cpu (millicores) and memory (bytes) with kube-scheduler's defaults
    /// (100m, 200Mi) for containers that request none; used for scoring.
    pub fn non_zero_requested(&self) -> (i64, i64) {
        (self.non_zero_milli_cpu, self.non_zero_memory)
    }

    /// How many pods are accounted to the node.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The host ports in use.
    pub fn used_ports(&self) -> &UsedPorts {
        &self.used_ports
    }

    pub(crate) fn pod_slots(&self) -> &[usize] {
        &self.pods
    }

    pub(crate) fn add_pod(&mut self, slot: usize, pod: &PodInfo) {
        self.pods.push(slot);
        self.requested.add(&pod.requests);
        self.non_zero_milli_cpu = self
            .non_zero_milli_cpu
            .saturating_add(pod.non_zero_milli_cpu);
        self.non_zero_memory = self.non_zero_memory.saturating_add(pod.non_zero_memory);
        for port in &pod.host_ports {
            self.used_ports.add(port);
        }
    }

    pub(crate) fn remove_pod(&mut self, slot: usize, pod: &PodInfo) {
        let Some(position) = self.pods.iter().position(|s| *s == slot) else {
            return;
        };
        self.pods.swap_remove(position);
        self.requested.subtract(&pod.requests);
        self.non_zero_milli_cpu = self
            .non_zero_milli_cpu
            .saturating_sub(pod.non_zero_milli_cpu);
        self.non_zero_memory = self.non_zero_memory.saturating_sub(pod.non_zero_memory);
        for port in &pod.host_ports {
            self.used_ports.remove(port);
        }
    }
}

/// kube-scheduler's zone key (`GetZoneKey`): region and zone, empty without either.
fn zone_key(labels: &BTreeMap<String, String>) -> String {
    let get = |label: &str, beta: &str| {
        labels
            .get(label)
            .or_else(|| labels.get(beta))
            .cloned()
            .unwrap_or_default()
    };
    let zone = get(ZONE_LABEL, BETA_ZONE_LABEL);
    let region = get(REGION_LABEL, BETA_REGION_LABEL);
    if zone.is_empty() && region.is_empty() {
        String::new()
    } else {
        format!("{region}:\u{0}:{zone}")
    }
}

/// A pod the snapshot knows about.
#[derive(Clone, Debug)]
pub(crate) struct PodSlot {
    pub(crate) info: PodInfo,
    /// `spec.nodeName`: the node the pod is bound (or assumed) to.
    pub(crate) node_name: Option<String>,
    /// `status.nominatedNodeName` of a pending pod that preempted others.
    pub(crate) nominated_node_name: Option<String>,
    /// Where `node_name` is in the snapshot's node list, while the snapshot has it.
    node_position: Option<usize>,
}

/// Nodes, the pods bound to them, volumes and namespaces: the input of `schedule`.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    nodes: Vec<NodeInfo>,
    node_index: Map<String, usize>,
    /// Node positions in scheduling order: zones interleaved like kube-scheduler's node tree.
    order: Vec<usize>,
    pods: Vec<Option<PodSlot>>,
    free_pod_slots: Vec<usize>,
    pod_index: Map<(String, String), usize>,
    /// Pods bound to a node the snapshot does not have (yet).
    ghost_pods: Map<String, Vec<usize>>,
    /// Pending pods by `status.nominatedNodeName`.
    nominated: Map<String, Vec<usize>>,
    /// Bound pods by `namespace\0key\0value` of each of their labels.
    label_index: Map<String, Set<usize>>,
    /// Bound pods by namespace.
    namespace_index: Map<String, Set<usize>>,
    /// Bound pods by the uid of their controlling ReplicaSet, StatefulSet or ReplicationController.
    owner_index: Map<String, Set<usize>>,
    with_required_anti_affinity: BTreeSet<usize>,
    with_pod_affinity_terms: BTreeSet<usize>,
    pvcs: Map<(String, String), PersistentVolumeClaim>,
    pvs: Map<String, PersistentVolume>,
    namespaces: NamespaceLabels,
}

fn label_key(namespace: &str, key: &str, value: &str) -> String {
    format!("{namespace}\u{0}{key}\u{0}{value}")
}

fn non_empty(value: Option<&String>) -> Option<String> {
    value.filter(|v| !v.is_empty()).cloned()
}

impl Snapshot {
    /// Builds a snapshot. Pods with `spec.nodeName` count against that node unless
    /// they are `Succeeded` or `Failed`; pending pods are kept only when they carry a
    /// `status.nominatedNodeName`. Objects without a name are ignored.
    pub fn new(
        nodes: Vec<Node>,
        pods: Vec<Pod>,
        pvcs: Vec<PersistentVolumeClaim>,
        pvs: Vec<PersistentVolume>,
    ) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for node in nodes {
            if let Some(info) = NodeInfo::new(node) {
                if let Some(&position) = snapshot.node_index.get(&info.name) {
                    snapshot.nodes[position] = info;
                } else {
                    snapshot
                        .node_index
                        .insert(info.name.clone(), snapshot.nodes.len());
                    snapshot.nodes.push(info);
                }
            }
        }
        snapshot.recompute_order();
        for pod in pods {
            snapshot.add_pod(pod);
        }
        for pvc in pvcs {
            snapshot.upsert_persistent_volume_claim(pvc);
        }
        for pv in pvs {
            snapshot.upsert_persistent_volume(pv);
        }
        snapshot
    }

    /// Adds or replaces a node, keeping the pods already accounted to it.
    pub fn upsert_node(&mut self, node: impl Into<Arc<Node>>) {
        let node: Arc<Node> = node.into();
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        if let Some(&position) = self.node_index.get(&name) {
            let old_zone = self.nodes[position].zone_key.clone();
            self.nodes[position].set_node(node);
            if self.nodes[position].zone_key != old_zone {
                self.recompute_order();
            }
            return;
        }
        let Some(mut info) = NodeInfo::new(node) else {
            return;
        };
        let position = self.nodes.len();
        for slot in self.ghost_pods.remove(&name).unwrap_or_default() {
            if let Some(Some(record)) = self.pods.get_mut(slot) {
                info.add_pod(slot, &record.info);
                record.node_position = Some(position);
            }
        }
        self.node_index.insert(name, position);
        self.nodes.push(info);
        self.recompute_order();
    }

    /// Removes a node. Its pods stay known and count again if the node comes back,
    /// like kube-scheduler's cache. Returns whether the node was there.
    pub fn remove_node(&mut self, name: &str) -> bool {
        let Some(position) = self.node_index.remove(name) else {
            return false;
        };
        let removed = self.nodes.swap_remove(position);
        for &slot in &removed.pods {
            if let Some(Some(record)) = self.pods.get_mut(slot) {
                record.node_position = None;
            }
        }
        if let Some(moved) = self.nodes.get(position) {
            self.node_index.insert(moved.name.clone(), position);
            for &slot in &moved.pods {
                if let Some(Some(record)) = self.pods.get_mut(slot) {
                    record.node_position = Some(position);
                }
            }
        }
        if !removed.pods.is_empty() {
            self.ghost_pods.insert(removed.name, removed.pods);
        }
        self.recompute_order();
        true
    }

    /// Adds a pod or replaces the pod with the same namespace and name. Use it to
    /// assume a binding: set `spec.nodeName` and add the pod before scheduling the
    /// next one. `Succeeded` and `Failed` pods are removed instead.
    /// Adds a bound (or nominated) pod; an `Arc<Pod>` is kept as it is,
    /// shared with whoever else holds it.
    pub fn add_pod(&mut self, pod: impl Into<Arc<Pod>>) {
        self.insert_pod(pod.into(), None);
    }

    /// Adds a pending pod as bound to `node`, as the scheduler assumes it
    /// between its decision and the binding's watch event, sharing the pod
    /// instead of copying it to set `spec.nodeName`.
    pub fn assume_pod(&mut self, pod: Arc<Pod>, node: &str) {
        self.insert_pod(pod, Some(node));
    }

    fn insert_pod(&mut self, pod: Arc<Pod>, assumed_node: Option<&str>) {
        let Some(name) = non_empty(pod.metadata.name.as_ref()) else {
            return;
        };
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        self.remove_pod(&namespace, &name);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return;
        }
        let node_name = match assumed_node {
            Some(node) => Some(node.to_string()).filter(|n| !n.is_empty()),
            None => non_empty(pod.spec.as_ref().and_then(|s| s.node_name.as_ref())),
        };
        let nominated_node_name = match node_name {
            Some(_) => None,
            None => non_empty(
                pod.status
                    .as_ref()
                    .and_then(|s| s.nominated_node_name.as_ref()),
            ),
        };
        if node_name.is_none() && nominated_node_name.is_none() {
            return;
        }
        let mut record = PodSlot {
            info: PodInfo::new(pod),
            node_name,
            nominated_node_name,
            node_position: None,
        };
        let slot = match self.free_pod_slots.pop() {
            Some(slot) => slot,
            None => {
                self.pods.push(None);
                self.pods.len() - 1
            }
        };
        self.pod_index.insert((namespace, name), slot);
        self.attach(slot, &mut record);
        self.pods[slot] = Some(record);
    }

    /// Removes a pod. Returns whether it was there.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> bool {
        let Some(slot) = self
            .pod_index
            .remove(&(namespace.to_string(), name.to_string()))
        else {
            return false;
        };
        let Some(record) = self.pods.get_mut(slot).and_then(Option::take) else {
            return false;
        };
        self.detach(slot, &record);
        self.free_pod_slots.push(slot);
        true
    }

    fn attach(&mut self, slot: usize, record: &mut PodSlot) {
        let info = &record.info;
        if let Some(node) = &record.nominated_node_name {
            self.nominated.entry(node.clone()).or_default().push(slot);
            return;
        }
        let Some(node) = &record.node_name else {
            return;
        };
        for (key, value) in info.labels() {
            self.label_index
                .entry(label_key(&info.namespace, key, value))
                .or_default()
                .insert(slot);
        }
        self.namespace_index
            .entry(info.namespace.clone())
            .or_default()
            .insert(slot);
        if let Some(uid) = &info.spread_owner_uid {
            self.owner_index
                .entry(uid.clone())
                .or_default()
                .insert(slot);
        }
        if !info.required_anti_affinity.is_empty() {
            self.with_required_anti_affinity.insert(slot);
        }
        if info.has_pod_affinity_terms() {
            self.with_pod_affinity_terms.insert(slot);
        }
        record.node_position = self.node_index.get(node).copied();
        match record.node_position {
            Some(position) => self.nodes[position].add_pod(slot, info),
            None => self.ghost_pods.entry(node.clone()).or_default().push(slot),
        }
    }

    fn detach(&mut self, slot: usize, record: &PodSlot) {
        let info = &record.info;
        if let Some(node) = &record.nominated_node_name {
            remove_from_list(&mut self.nominated, node, slot);
            return;
        }
        let Some(node) = &record.node_name else {
            return;
        };
        for (key, value) in info.labels() {
            remove_from_set(
                &mut self.label_index,
                &label_key(&info.namespace, key, value),
                slot,
            );
        }
        remove_from_set(&mut self.namespace_index, &info.namespace, slot);
        if let Some(uid) = &info.spread_owner_uid {
            remove_from_set(&mut self.owner_index, uid, slot);
        }
        self.with_required_anti_affinity.remove(&slot);
        self.with_pod_affinity_terms.remove(&slot);
        match record.node_position {
            Some(position) => self.nodes[position].remove_pod(slot, info),
            None => remove_from_list(&mut self.ghost_pods, node, slot),
        }
    }

    /// Adds or replaces a PersistentVolumeClaim.
    pub fn upsert_persistent_volume_claim(&mut self, pvc: PersistentVolumeClaim) {
        if let Some(name) = non_empty(pvc.metadata.name.as_ref()) {
            let namespace = pvc.metadata.namespace.clone().unwrap_or_default();
            self.pvcs.insert((namespace, name), pvc);
        }
    }

    /// Removes a PersistentVolumeClaim. Returns whether it was there.
    pub fn remove_persistent_volume_claim(&mut self, namespace: &str, name: &str) -> bool {
        self.pvcs
            .remove(&(namespace.to_string(), name.to_string()))
            .is_some()
    }

    /// Adds or replaces a PersistentVolume.
    pub fn upsert_persistent_volume(&mut self, pv: PersistentVolume) {
        if let Some(name) = non_empty(pv.metadata.name.as_ref()) {
            self.pvs.insert(name, pv);
        }
    }

    /// Removes a PersistentVolume. Returns whether it was there.
    pub fn remove_persistent_volume(&mut self, name: &str) -> bool {
        self.pvs.remove(name).is_some()
    }

    /// Adds or replaces a namespace; only its labels matter, for pod affinity
    /// `namespaceSelector`s. Namespaces never added have no labels.
    pub fn upsert_namespace(&mut self, namespace: Namespace) {
        if let Some(name) = non_empty(namespace.metadata.name.as_ref()) {
            self.namespaces
                .insert(name, namespace.metadata.labels.unwrap_or_default());
        }
    }

    /// Forgets a namespace's labels. Returns whether it was there.
    pub fn remove_namespace(&mut self, name: &str) -> bool {
        self.namespaces.remove(name)
    }

    /// How many nodes the snapshot has.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// A node by name.
    pub fn node_info(&self, name: &str) -> Option<&NodeInfo> {
        self.node_index
            .get(name)
            .map(|&position| &self.nodes[position])
    }

    /// The nodes in the order the scheduler visits them (zones interleaved).
    pub fn node_infos(&self) -> impl Iterator<Item = &NodeInfo> {
        self.order.iter().map(|&position| &self.nodes[position])
    }

    /// A bound or nominated pod by namespace and name.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        let slot = self
            .pod_index
            .get(&(namespace.to_string(), name.to_string()))?;
        self.slot(*slot).map(|record| &*record.info.pod)
    }

    /// The pods accounted to a node.
    pub fn pods_on_node<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Pod> + 'a {
        self.node_info(name)
            .map(|info| info.pods.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|&slot| self.slot(slot))
            .map(|record| &*record.info.pod)
    }

    fn recompute_order(&mut self) {
        let mut zones: Vec<Vec<usize>> = Vec::new();
        let mut zone_positions: Map<&str, usize> = Map::default();
        for (position, node) in self.nodes.iter().enumerate() {
            let zone = *zone_positions
                .entry(node.zone_key.as_str())
                .or_insert_with(|| {
                    zones.push(Vec::new());
                    zones.len() - 1
                });
            zones[zone].push(position);
        }
        let mut order = Vec::with_capacity(self.nodes.len());
        let mut level = 0;
        while order.len() < self.nodes.len() {
            for zone in &zones {
                if let Some(&position) = zone.get(level) {
                    order.push(position);
                }
            }
            level += 1;
        }
        self.order = order;
    }

    // Crate-internal queries used by filters, scores and preemption.

    pub(crate) fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub(crate) fn order(&self) -> &[usize] {
        &self.order
    }

    pub(crate) fn node_position(&self, name: &str) -> Option<usize> {
        self.node_index.get(name).copied()
    }

    pub(crate) fn slot(&self, slot: usize) -> Option<&PodSlot> {
        self.pods.get(slot).and_then(Option::as_ref)
    }

    /// The node a bound pod is on, if the snapshot has that node.
    pub(crate) fn node_of(&self, record: &PodSlot) -> Option<usize> {
        record.node_position
    }

    pub(crate) fn namespaces(&self) -> &NamespaceLabels {
        &self.namespaces
    }

    pub(crate) fn pvc(&self, namespace: &str, name: &str) -> Option<&PersistentVolumeClaim> {
        self.pvcs.get(&(namespace.to_string(), name.to_string()))
    }

    pub(crate) fn pv(&self, name: &str) -> Option<&PersistentVolume> {
        self.pvs.get(name)
    }

    pub(crate) fn pods_with_required_anti_affinity(&self) -> impl Iterator<Item = &PodSlot> {
        self.with_required_anti_affinity
            .iter()
            .filter_map(|&slot| self.slot(slot))
    }

    pub(crate) fn pods_with_pod_affinity_terms(&self) -> impl Iterator<Item = &PodSlot> {
        self.with_pod_affinity_terms
            .iter()
            .filter_map(|&slot| self.slot(slot))
    }

    /// Pending pods nominated to the node.
    pub(crate) fn nominated_on(&self, node: &str) -> impl Iterator<Item = &PodSlot> {
        self.nominated
            .get(node)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|&slot| self.slot(slot))
    }

    /// Bound pods in `namespace` that may match `selector`: from the label index
    /// when the selector requires some `key=value`, else every pod of the namespace.
    /// Callers still check the selector on each.
    pub(crate) fn candidates<'a>(
        &'a self,
        namespace: &str,
        selector: &Selector,
    ) -> impl Iterator<Item = &'a PodSlot> + 'a {
        let slots = match (selector, selector.index_hint()) {
            (Selector::Nothing, _) => None,
            (_, Some((key, value))) => self.label_index.get(&label_key(namespace, key, value)),
            (_, None) => self.namespace_index.get(namespace),
        };
        slots
            .into_iter()
            .flatten()
            .filter_map(|&slot| self.slot(slot))
    }

    /// Bound pods controlled by the owner with this uid.
    pub(crate) fn owned_by<'a>(&'a self, uid: &str) -> impl Iterator<Item = &'a PodSlot> + 'a {
        self.owner_index
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|&slot| self.slot(slot))
    }

    /// Bound pods an affinity term may select, across the namespaces it covers.
    pub(crate) fn term_candidates<'a>(
        &'a self,
        term: &'a AffinityTerm,
    ) -> impl Iterator<Item = &'a PodSlot> + 'a {
        let namespaces: Vec<&str> = if term.namespace_selector == Selector::Nothing {
            term.namespaces.iter().map(String::as_str).collect()
        } else {
            let mut all: Vec<&str> = self
                .namespace_index
                .keys()
                .map(String::as_str)
                .filter(|ns| term.covers_namespace(ns, &self.namespaces))
                .collect();
            all.sort_unstable();
            all
        };
        namespaces
            .into_iter()
            .flat_map(move |namespace| self.candidates(namespace, &term.selector))
    }
}

fn remove_from_set(index: &mut Map<String, Set<usize>>, key: &str, slot: usize) {
    if let Some(set) = index.get_mut(key) {
        set.remove(&slot);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

fn remove_from_list(index: &mut Map<String, Vec<usize>>, key: &str, slot: usize) {
    if let Some(list) = index.get_mut(key) {
        list.retain(|s| *s != slot);
        if list.is_empty() {
            index.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder};

    fn requested(snapshot: &Snapshot, node: &str) -> (i64, i64, usize) {
        let info = snapshot.node_info(node).expect("node exists");
        (
            info.requested().milli_cpu,
            info.requested().memory,
            info.pod_count(),
        )
    }

    const MI: i64 = 1024 * 1024;

    #[test]
    fn a_label_read_aside_is_the_label_in_the_map() {
        let mut snapshot = Snapshot::new(
            vec![NodeBuilder::new("n1")
                .label(ZONE_LABEL, "z1")
                .label("rack", "r1")
                .build()],
            vec![],
            vec![],
            vec![],
        );
        let same = |snapshot: &Snapshot| {
            let info = snapshot.node_info("n1").expect("node exists");
            for key in [crate::spread::HOSTNAME_LABEL, ZONE_LABEL, "rack", "absent"] {
                assert_eq!(
                    info.label(key),
                    info.labels().get(key).map(String::as_str),
                    "{key}"
                );
            }
            (
                info.label(crate::spread::HOSTNAME_LABEL)
                    .map(str::to_string),
                info.label(ZONE_LABEL).map(str::to_string),
            )
        };
        assert_eq!(same(&snapshot), (Some("n1".into()), Some("z1".into())));
        // A relabelled node: the values read aside follow.
        let mut node = NodeBuilder::new("n1").label("rack", "r2").build();
        node.metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(crate::spread::HOSTNAME_LABEL);
        snapshot.upsert_node(node);
        assert_eq!(same(&snapshot), (None, None));
    }

    #[test]
    fn accounts_bound_pods() {
        let snapshot = Snapshot::new(
            vec![
                NodeBuilder::new("n1").build(),
                NodeBuilder::new("n2").build(),
            ],
            vec![
                PodBuilder::new("a")
                    .node("n1")
                    .requests("100m", "1Mi")
                    .build(),
                PodBuilder::new("b")
                    .node("n1")
                    .requests("200m", "2Mi")
                    .overhead("50m", "")
                    .build(),
                PodBuilder::new("done")
                    .node("n1")
                    .requests("1", "1Gi")
                    .phase("Succeeded")
                    .build(),
                PodBuilder::new("failed")
                    .node("n2")
                    .requests("1", "1Gi")
                    .phase("Failed")
                    .build(),
                PodBuilder::new("pending").requests("1", "1Gi").build(),
                PodBuilder::new("c").node("n2").requests("", "").build(),
            ],
            vec![],
            vec![],
        );
        assert_eq!(requested(&snapshot, "n1"), (350, 3 * MI, 2));
        assert_eq!(requested(&snapshot, "n2"), (0, 0, 1));
        assert_eq!(
            snapshot.node_info("n2").map(|n| n.non_zero_requested()),
            Some((100, 200 * MI))
        );
        assert!(snapshot.pod("default", "pending").is_none());
        assert!(snapshot.pod("default", "a").is_some());
        assert_eq!(
            snapshot.node_info("n1").map(|n| n.allowed_pod_number()),
            Some(110)
        );
    }

    #[test]
    fn add_and_remove_pods() {
        let mut snapshot =
            Snapshot::new(vec![NodeBuilder::new("n1").build()], vec![], vec![], vec![]);
        snapshot.add_pod(
            PodBuilder::new("a")
                .node("n1")
                .requests("1", "1Mi")
                .host_port(80, "", "")
                .build(),
        );
        assert_eq!(requested(&snapshot, "n1"), (1000, MI, 1));
        assert!(!snapshot
            .node_info("n1")
            .map(|n| n.used_ports().is_empty())
            .unwrap_or(true));
        // Re-adding replaces instead of double counting.
        snapshot.add_pod(PodBuilder::new("a").node("n1").requests("2", "1Mi").build());
        assert_eq!(requested(&snapshot, "n1"), (2000, MI, 1));
        assert!(snapshot
            .node_info("n1")
            .map(|n| n.used_ports().is_empty())
            .unwrap_or(false));
        // A pod turning Succeeded leaves the node.
        snapshot.add_pod(
            PodBuilder::new("a")
                .node("n1")
                .requests("2", "1Mi")
                .phase("Succeeded")
                .build(),
        );
        assert_eq!(requested(&snapshot, "n1"), (0, 0, 0));
        snapshot.add_pod(PodBuilder::new("b").node("n1").requests("1", "").build());
        assert!(snapshot.remove_pod("default", "b"));
        assert!(!snapshot.remove_pod("default", "b"));
        assert_eq!(requested(&snapshot, "n1"), (0, 0, 0));
        assert_eq!(
            snapshot
                .candidates("default", &Selector::Requirements(Vec::new()))
                .count(),
            0
        );
    }

    #[test]
    fn an_assumed_pod_counts_on_its_node_until_the_binding_replaces_it() {
        let mut snapshot = Snapshot::new(
            vec![
                NodeBuilder::new("n1").build(),
                NodeBuilder::new("n2").build(),
            ],
            vec![],
            vec![],
            vec![],
        );
        let pending: Arc<Pod> = Arc::new(PodBuilder::new("a").requests("1", "1Mi").build());
        snapshot.assume_pod(pending.clone(), "n2");
        assert_eq!(requested(&snapshot, "n2"), (1000, MI, 1));
        assert_eq!(requested(&snapshot, "n1"), (0, 0, 0));
        // The pod is shared, not copied to set its node.
        assert!(std::ptr::eq(
            snapshot
                .pod("default", "a")
                .expect("assumed pod is in the snapshot"),
            &*pending
        ));
        // The binding's watch event replaces the assumption without double counting.
        snapshot.add_pod(PodBuilder::new("a").node("n2").requests("1", "1Mi").build());
        assert_eq!(requested(&snapshot, "n2"), (1000, MI, 1));
        // Assuming onto no node keeps the pod out, as for any pending pod.
        snapshot.assume_pod(Arc::new(PodBuilder::new("b").requests("1", "").build()), "");
        assert!(snapshot.pod("default", "b").is_none());
        assert!(snapshot.remove_pod("default", "a"));
        assert_eq!(requested(&snapshot, "n2"), (0, 0, 0));
    }

    #[test]
    fn nodes_come_and_go_with_their_pods() {
        let mut snapshot = Snapshot::new(
            vec![],
            vec![PodBuilder::new("early")
                .node("n1")
                .requests("1", "")
                .build()],
            vec![],
            vec![],
        );
        assert_eq!(snapshot.node_count(), 0);
        snapshot.upsert_node(NodeBuilder::new("n1").build());
        assert_eq!(requested(&snapshot, "n1"), (1000, 0, 1));
        snapshot.upsert_node(NodeBuilder::new("n1").cpu("8").build());
        assert_eq!(
            snapshot.node_info("n1").map(|n| n.allocatable().milli_cpu),
            Some(8000)
        );
        assert_eq!(requested(&snapshot, "n1"), (1000, 0, 1));
        snapshot.upsert_node(NodeBuilder::new("n2").build());
        snapshot.add_pod(PodBuilder::new("on-n2").node("n2").build());
        assert!(snapshot.remove_node("n1"));
        // n2 moved into n1's place; its pods follow.
        let on_n2 = snapshot
            .pod_index
            .get(&("default".to_string(), "on-n2".to_string()))
            .copied();
        let position = on_n2
            .and_then(|slot| snapshot.slot(slot))
            .and_then(|r| snapshot.node_of(r));
        assert_eq!(position, snapshot.node_position("n2"));
        assert!(!snapshot.remove_node("n1"));
        assert_eq!(snapshot.node_count(), 1);
        assert_eq!(snapshot.node_info("n2").map(NodeInfo::name), Some("n2"));
        snapshot.upsert_node(NodeBuilder::new("n1").build());
        assert_eq!(requested(&snapshot, "n1"), (1000, 0, 1));
        assert!(snapshot.remove_pod("default", "early"));
        assert_eq!(requested(&snapshot, "n1"), (0, 0, 0));
    }

    #[test]
    fn zones_are_interleaved() {
        let snapshot = Snapshot::new(
            vec![
                NodeBuilder::new("a1").zone("a").build(),
                NodeBuilder::new("a2").zone("a").build(),
                NodeBuilder::new("a3").zone("a").build(),
                NodeBuilder::new("b1").zone("b").build(),
                NodeBuilder::new("c1").zone("c").build(),
                NodeBuilder::new("c2").zone("c").build(),
            ],
            vec![],
            vec![],
            vec![],
        );
        let order: Vec<&str> = snapshot.node_infos().map(NodeInfo::name).collect();
        assert_eq!(order, vec!["a1", "b1", "c1", "a2", "c2", "a3"]);
    }

    #[test]
    fn label_index_finds_candidates() {
        let snapshot = Snapshot::new(
            vec![NodeBuilder::new("n1").build()],
            vec![
                PodBuilder::new("web-1")
                    .node("n1")
                    .label("app", "web")
                    .build(),
                PodBuilder::new("web-2")
                    .node("n1")
                    .label("app", "web")
                    .namespace("other")
                    .build(),
                PodBuilder::new("db").node("n1").label("app", "db").build(),
            ],
            vec![],
            vec![],
        );
        let web = Selector::from_labels(&BTreeMap::from([("app".to_string(), "web".to_string())]));
        let names: Vec<&str> = snapshot
            .candidates("default", &web)
            .map(|p| p.info.name.as_str())
            .collect();
        assert_eq!(names, vec!["web-1"]);
        let mut all: Vec<&str> = snapshot
            .candidates("default", &Selector::Requirements(Vec::new()))
            .map(|p| p.info.name.as_str())
            .collect();
        all.sort_unstable();
        assert_eq!(all, vec!["db", "web-1"]);
        assert_eq!(
            snapshot.candidates("default", &Selector::Nothing).count(),
            0
        );
    }
}
