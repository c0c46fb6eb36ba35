//! Scores: how good each feasible node is for the pod, one module per
//! kube-scheduler score plugin, each normalized to 0..=100 and summed with the
//! default weights. ImageLocality (weight 1) is not implemented: it would need
//! image sizes and the spread of images across nodes, which drover's nodes do not
//! report yet.

pub(crate) mod inter_pod_affinity;
pub(crate) mod node_affinity;
pub(crate) mod pod_topology_spread;
pub(crate) mod resource_allocation;
pub(crate) mod taint_toleration;

use crate::cycle::CycleState;

pub(crate) const MAX_NODE_SCORE: i64 = 100;

/// Default plugin weights (kube-scheduler's `getDefaultPlugins`).
const TAINT_TOLERATION_WEIGHT: i64 = 3;
const NODE_AFFINITY_WEIGHT: i64 = 2;
const NODE_RESOURCES_FIT_WEIGHT: i64 = 1;
const POD_TOPOLOGY_SPREAD_WEIGHT: i64 = 2;
const INTER_POD_AFFINITY_WEIGHT: i64 = 2;
const BALANCED_ALLOCATION_WEIGHT: i64 = 1;

/// The weighted total score of each feasible node (snapshot positions), in order.
pub(crate) fn total_scores(cycle: &CycleState, feasible: &[usize]) -> Vec<i64> {
    let snapshot = cycle.snapshot;
    let pod = cycle.pod;
    let plugins = [
        (
            TAINT_TOLERATION_WEIGHT,
            taint_toleration::scores(snapshot, pod, feasible),
        ),
        (
            NODE_AFFINITY_WEIGHT,
            node_affinity::scores(snapshot, pod, feasible),
        ),
        (
            NODE_RESOURCES_FIT_WEIGHT,
            resource_allocation::least_allocated(snapshot, pod, feasible),
        ),
        (
            POD_TOPOLOGY_SPREAD_WEIGHT,
            pod_topology_spread::scores(snapshot, pod, &cycle.required_node_affinity, feasible),
        ),
        (
            INTER_POD_AFFINITY_WEIGHT,
            inter_pod_affinity::scores(snapshot, pod, feasible),
        ),
        (
            BALANCED_ALLOCATION_WEIGHT,
            resource_allocation::balanced_allocation(snapshot, pod, feasible),
        ),
    ];
    let mut totals = vec![0i64; feasible.len()];
    for (weight, scores) in plugins {
        for (total, score) in totals.iter_mut().zip(scores) {
            *total += weight * score;
        }
    }
    totals
}

/// kube-scheduler's `DefaultNormalizeScore`: scales to 0..=100 by the maximum,
/// optionally reversed (fewer is better).
pub(crate) fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max <= 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for score in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * *score / max;
        *score = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::pod_info::PodInfo;
    use crate::snapshot::Snapshot;
    use crate::testing::{NodeBuilder, PodBuilder};

    /// Builds a snapshot from nodes and bound pods and returns it with every node
    /// position, in node order, as the feasible list.
    pub(crate) fn setup(nodes: Vec<NodeBuilder>, pods: Vec<PodBuilder>) -> (Snapshot, Vec<usize>) {
        let names: Vec<String> = nodes
            .iter()
            .map(|n| n.clone().build().metadata.name.unwrap_or_default())
            .collect();
        let snapshot = Snapshot::new(
            nodes.into_iter().map(NodeBuilder::build).collect(),
            pods.into_iter().map(PodBuilder::build).collect(),
            vec![],
            vec![],
        );
        let feasible = names
            .iter()
            .filter_map(|n| snapshot.node_position(n))
            .collect();
        (snapshot, feasible)
    }

    pub(crate) fn info(pod: PodBuilder) -> PodInfo {
        PodInfo::new(pod.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &[i64], reverse: bool, expected: &[i64]) {
        let mut scores = raw.to_vec();
        default_normalize(&mut scores, reverse);
        assert_eq!(scores, expected, "normalize {raw:?} reverse={reverse}");
    }

    #[test]
    fn normalization() {
        check(&[0, 0], false, &[0, 0]);
        check(&[0, 0], true, &[100, 100]);
        check(&[1, 2, 4], false, &[25, 50, 100]);
        check(&[1, 2, 4], true, &[75, 50, 0]);
        check(&[3, 0], true, &[0, 100]);
    }
}
