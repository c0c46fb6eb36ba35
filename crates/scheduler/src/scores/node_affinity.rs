//! NodeAffinity (score): the sum of the weights of the preferred node affinity
//! terms a node matches, scaled by the best node.

use super::default_normalize;
use crate::node_selector::PreferredNodeAffinity;
use crate::pod_info::PodInfo;
use crate::snapshot::Snapshot;

pub(crate) fn scores(snapshot: &Snapshot, pod: &PodInfo, feasible: &[usize]) -> Vec<i64> {
    let preferred = PreferredNodeAffinity::of(&pod.pod);
    if preferred.is_empty() {
        return vec![0; feasible.len()];
    }
    let mut scores: Vec<i64> = feasible
        .iter()
        .map(|&position| {
            let node = &snapshot.nodes()[position];
            preferred.weight(node.name(), node.labels())
        })
        .collect();
    default_normalize(&mut scores, false);
    scores
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scores::test_support::{info, setup};
    use crate::testing::{node_term, NodeBuilder, PodBuilder};

    fn check(pod: PodBuilder, expected: &[i64]) {
        let nodes = vec![
            NodeBuilder::new("a").label("disk", "ssd").zone("z1"),
            NodeBuilder::new("b").label("disk", "hdd").zone("z1"),
            NodeBuilder::new("c").zone("z2"),
        ];
        let (snapshot, feasible) = setup(nodes, vec![]);
        assert_eq!(scores(&snapshot, &info(pod), &feasible), expected);
    }

    #[test]
    fn preferred_terms() {
        let zone = "topology.kubernetes.io/zone";
        check(PodBuilder::new("p"), &[0, 0, 0]);
        check(
            PodBuilder::new("p").preferred_node_affinity(10, node_term("disk", "In", &["ssd"])),
            &[100, 0, 0],
        );
        check(
            PodBuilder::new("p")
                .preferred_node_affinity(10, node_term("disk", "In", &["ssd"]))
                .preferred_node_affinity(30, node_term(zone, "In", &["z1"])),
            &[100, 75, 0],
        );
        check(
            PodBuilder::new("p").preferred_node_affinity(5, node_term("disk", "DoesNotExist", &[])),
            &[0, 0, 100],
        );
        check(
            PodBuilder::new("p").preferred_node_affinity(5, node_term("gpu", "Exists", &[])),
            &[0, 0, 0],
        );
    }
}
