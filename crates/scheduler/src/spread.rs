//! Topology spread constraints as PodTopologySpread's filter and score use them:
//! compiled selectors, node inclusion policies, kube-scheduler's default system
//! constraints, and per-node counts of matching pods taken from the snapshot's indexes.

use std::collections::BTreeMap;

use crate::labels::Selector;
use crate::node_selector::RequiredNodeAffinity;
use crate::pod_info::PodInfo;
use crate::snapshot::{Map, NodeInfo, PodSlot, Snapshot, ZONE_LABEL};
use crate::taints::first_untolerated_scheduling_taint;

pub(crate) const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Which pods a constraint counts.
#[derive(Clone, Debug)]
pub(crate) enum PodSelector {
    /// The constraint's label selector (with `matchLabelKeys` merged in).
    Labels(Selector),
    /// Pods controlled by the same ReplicaSet, StatefulSet or ReplicationController.
    /// kube-scheduler's default constraints use the owner's label selector (and
    /// matching Services'); the snapshot has no workload objects, and controllers
    /// only own pods their selector matches, so the owner stands in for it.
    Owner(String),
}

impl PodSelector {
    pub(crate) fn matches(&self, pod: &PodInfo) -> bool {
        match self {
            PodSelector::Labels(selector) => selector.matches(pod.labels()),
            PodSelector::Owner(uid) => pod.spread_owner_uid.as_deref() == Some(uid.as_str()),
        }
    }
}

/// A compiled `TopologySpreadConstraint`.
#[derive(Clone, Debug)]
pub(crate) struct SpreadConstraint {
    pub(crate) max_skew: i64,
    pub(crate) topology_key: String,
    pub(crate) selector: PodSelector,
    pub(crate) min_domains: i64,
    pub(crate) honor_node_affinity: bool,
    pub(crate) honor_node_taints: bool,
}

impl SpreadConstraint {
    /// Whether the node's domain takes part (node inclusion policies: node
    /// affinity honored and taints ignored unless the constraint says otherwise).
    pub(crate) fn includes_node(
        &self,
        pod: &PodInfo,
        required: &RequiredNodeAffinity,
        node: &NodeInfo,
    ) -> bool {
        if self.honor_node_affinity && !required.matches(node.name(), node.labels()) {
            return false;
        }
        if self.honor_node_taints
            && first_untolerated_scheduling_taint(node.taints(), pod.tolerations()).is_some()
        {
            return false;
        }
        true
    }
}

/// The pod's own constraints with the given `whenUnsatisfiable`.
pub(crate) fn constraints(pod: &PodInfo, when_unsatisfiable: &str) -> Vec<SpreadConstraint> {
    let spec_constraints = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or_default();
    spec_constraints
        .iter()
        .filter(|c| c.when_unsatisfiable == when_unsatisfiable)
        .map(|c| {
            let mut selector = Selector::from_api(c.label_selector.as_ref());
            let match_labels: BTreeMap<String, String> = c
                .match_label_keys
                .iter()
                .flatten()
                .filter_map(|key| {
                    pod.labels()
                        .get(key)
                        .map(|value| (key.clone(), value.clone()))
                })
                .collect();
            selector = selector.merged_with_labels(&match_labels);
            SpreadConstraint {
                max_skew: i64::from(c.max_skew),
                topology_key: c.topology_key.clone(),
                selector: PodSelector::Labels(selector),
                min_domains: i64::from(c.min_domains.unwrap_or(1)),
                honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

/// Whether the pod declares any topology spread constraint at all.
pub(crate) fn has_constraints(pod: &PodInfo) -> bool {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .is_some_and(|c| !c.is_empty())
}

/// kube-scheduler's system default constraints (`ScheduleAnyway`, maxSkew 3 per
/// hostname and 5 per zone) for a pod without constraints of its own, when it
/// has a spreading owner.
pub(crate) fn default_constraints(pod: &PodInfo) -> Vec<SpreadConstraint> {
    let Some(uid) = &pod.spread_owner_uid else {
        return Vec::new();
    };
    [(HOSTNAME_LABEL, 3), (ZONE_LABEL, 5)]
        .into_iter()
        .map(|(key, max_skew)| SpreadConstraint {
            max_skew,
            topology_key: key.to_string(),
            selector: PodSelector::Owner(uid.clone()),
            min_domains: 1,
            honor_node_affinity: true,
            honor_node_taints: false,
        })
        .collect()
}

pub(crate) fn node_has_all_keys(node: &NodeInfo, constraints: &[SpreadConstraint]) -> bool {
    constraints
        .iter()
        .all(|c| node.label(&c.topology_key).is_some())
}

/// Whether an existing pod counts for a constraint of `pod`: same namespace, not
/// terminating, selected (`countPodsMatchSelector`).
fn counts_for(existing: &PodInfo, namespace: &str, selector: &PodSelector) -> bool {
    !existing.terminating && existing.namespace == namespace && selector.matches(existing)
}

/// How many pods on each node a constraint counts. Sparse: most nodes have none.
#[derive(Clone, Debug, Default)]
pub(crate) struct PodCounts {
    by_node: Map<usize, i64>,
    /// The snapshot positions with a non-zero count, in position order.
    pub(crate) nodes_with_pods: Vec<usize>,
}

impl PodCounts {
    /// The count on the node at this snapshot position.
    pub(crate) fn on(&self, position: usize) -> i64 {
        self.by_node.get(&position).copied().unwrap_or(0)
    }
}

/// Counts the pods a constraint counts on every node, from the snapshot's indexes.
pub(crate) fn matching_pods_per_node(
    snapshot: &Snapshot,
    namespace: &str,
    selector: &PodSelector,
) -> PodCounts {
    let mut by_node: Map<usize, i64> = Map::default();
    let mut count = |record: &PodSlot| {
        if counts_for(&record.info, namespace, selector) {
            if let Some(position) = snapshot.node_of(record) {
                *by_node.entry(position).or_default() += 1;
            }
        }
    };
    match selector {
        PodSelector::Labels(labels) => snapshot.candidates(namespace, labels).for_each(&mut count),
        PodSelector::Owner(uid) => snapshot.owned_by(uid).for_each(&mut count),
    }
    let mut nodes_with_pods: Vec<usize> = by_node.keys().copied().collect();
    nodes_with_pods.sort_unstable();
    PodCounts {
        by_node,
        nodes_with_pods,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{label_selector, NodeBuilder, PodBuilder};
    use k8s_openapi::api::core::v1::TopologySpreadConstraint;

    #[test]
    fn compiles_constraints() {
        let pod = PodInfo::new(
            PodBuilder::new("p")
                .label("app", "web")
                .label("hash", "abc")
                .spread(1, "zone", "DoNotSchedule", &[("app", "web")])
                .spread_constraint(TopologySpreadConstraint {
                    max_skew: 2,
                    topology_key: HOSTNAME_LABEL.to_string(),
                    when_unsatisfiable: "ScheduleAnyway".to_string(),
                    label_selector: Some(label_selector(&[("app", "web")])),
                    match_label_keys: Some(vec!["hash".to_string(), "missing".to_string()]),
                    min_domains: Some(3),
                    node_affinity_policy: Some("Ignore".to_string()),
                    node_taints_policy: Some("Honor".to_string()),
                })
                .build(),
        );
        let hard = constraints(&pod, "DoNotSchedule");
        assert_eq!(hard.len(), 1);
        assert_eq!((hard[0].max_skew, hard[0].min_domains), (1, 1));
        assert!(hard[0].honor_node_affinity && !hard[0].honor_node_taints);
        let soft = constraints(&pod, "ScheduleAnyway");
        assert_eq!(soft.len(), 1);
        assert_eq!(soft[0].min_domains, 3);
        assert!(!soft[0].honor_node_affinity && soft[0].honor_node_taints);
        let other_hash = PodInfo::new(
            PodBuilder::new("q")
                .label("app", "web")
                .label("hash", "def")
                .build(),
        );
        assert!(soft[0].selector.matches(&pod));
        assert!(!soft[0].selector.matches(&other_hash));
        assert!(hard[0].selector.matches(&other_hash));
        assert!(has_constraints(&pod));
        assert!(default_constraints(&pod).is_empty());
    }

    #[test]
    fn default_constraints_follow_the_owner() {
        let pod = PodInfo::new(
            PodBuilder::new("p")
                .owner("ReplicaSet", "rs", "rs-uid")
                .build(),
        );
        let defaults = default_constraints(&pod);
        let summary: Vec<(&str, i64)> = defaults
            .iter()
            .map(|c| (c.topology_key.as_str(), c.max_skew))
            .collect();
        assert_eq!(summary, vec![(HOSTNAME_LABEL, 3), (ZONE_LABEL, 5)]);
        let sibling = PodInfo::new(
            PodBuilder::new("s")
                .owner("ReplicaSet", "rs", "rs-uid")
                .build(),
        );
        let stranger = PodInfo::new(
            PodBuilder::new("t")
                .owner("ReplicaSet", "rs2", "other")
                .build(),
        );
        assert!(defaults[0].selector.matches(&sibling));
        assert!(!defaults[0].selector.matches(&stranger));
    }

    #[test]
    fn counts_matching_pods_per_node() {
        let snapshot = Snapshot::new(
            vec![
                NodeBuilder::new("n1").build(),
                NodeBuilder::new("n2").build(),
            ],
            vec![
                PodBuilder::new("a").node("n1").label("app", "web").build(),
                PodBuilder::new("b").node("n1").label("app", "web").build(),
                PodBuilder::new("c")
                    .node("n2")
                    .label("app", "web")
                    .terminating()
                    .build(),
                PodBuilder::new("d")
                    .node("n2")
                    .label("app", "web")
                    .namespace("other")
                    .build(),
                PodBuilder::new("e").node("n2").label("app", "web").build(),
                PodBuilder::new("f")
                    .node("gone")
                    .label("app", "web")
                    .build(),
            ],
            vec![],
            vec![],
        );
        let selector = PodSelector::Labels(Selector::from_labels(&BTreeMap::from([(
            "app".to_string(),
            "web".to_string(),
        )])));
        let counts = matching_pods_per_node(&snapshot, "default", &selector);
        let by_name = |name: &str| snapshot.node_position(name).map(|p| counts.on(p));
        assert_eq!((by_name("n1"), by_name("n2")), (Some(2), Some(1)));
    }
}
