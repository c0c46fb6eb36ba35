//! PodTopologySpread (score): fewer matching pods in a node's domains is better,
//! for the pod's `ScheduleAnyway` constraints or, when it has no constraints at
//! all and is owned by a ReplicaSet, StatefulSet or ReplicationController,
//! kube-scheduler's system defaults (maxSkew 3 per hostname, 5 per zone).

use crate::node_selector::RequiredNodeAffinity;
use crate::pod_info::PodInfo;
use crate::scores::MAX_NODE_SCORE;
use crate::snapshot::{Map, Snapshot};
use crate::spread::{self, node_has_all_keys, PodCounts, HOSTNAME_LABEL};

pub(crate) fn scores(
    snapshot: &Snapshot,
    pod: &PodInfo,
    required: &RequiredNodeAffinity,
    feasible: &[usize],
) -> Vec<i64> {
    // System defaults tolerate nodes without a zone label; explicit constraints do not.
    let (constraints, require_all_keys) = if spread::has_constraints(pod) {
        (spread::constraints(pod, "ScheduleAnyway"), true)
    } else {
        (spread::default_constraints(pod), false)
    };
    if constraints.is_empty() || feasible.is_empty() {
        return vec![0; feasible.len()];
    }
    let nodes = snapshot.nodes();

    // Each feasible node's value for every constraint's key, looked up once:
    // `values[j * constraints.len() + i]` for feasible node `j` and constraint `i`.
    // A node lacking a key explicit constraints need is ignored.
    let width = constraints.len();
    let mut values: Vec<Option<&str>> = Vec::with_capacity(feasible.len() * width);
    let mut ignored: Vec<bool> = Vec::with_capacity(feasible.len());
    for &position in feasible {
        let node = &nodes[position];
        let start = values.len();
        values.extend(constraints.iter().map(|c| node.label(&c.topology_key)));
        ignored.push(require_all_keys && values[start..].iter().any(Option::is_none));
    }
    let ignored_count = ignored.iter().filter(|i| **i).count();

    // The domains of the feasible nodes; hostname domains are counted per node instead.
    // Without the key a node belongs to the "" domain, like in kube-scheduler.
    let mut domain_counts: Vec<Map<&str, i64>> = vec![Map::default(); width];
    for (j, _) in ignored.iter().enumerate().filter(|(_, ignored)| !**ignored) {
        for (i, constraint) in constraints.iter().enumerate() {
            if constraint.topology_key != HOSTNAME_LABEL {
                domain_counts[i]
                    .entry(values[j * width + i].unwrap_or_default())
                    .or_default();
            }
        }
    }
    let weights: Vec<f64> = constraints
        .iter()
        .zip(&domain_counts)
        .map(|(constraint, domains)| {
            let size = if constraint.topology_key == HOSTNAME_LABEL {
                feasible.len() - ignored_count
            } else {
                domains.len()
            };
            (size as f64 + 2.0).ln()
        })
        .collect();

    // Matching pods in those domains, over every node that has any (hostname
    // domains are read per node below).
    let per_node: Vec<PodCounts> = constraints
        .iter()
        .map(|c| spread::matching_pods_per_node(snapshot, &pod.namespace, &c.selector))
        .collect();
    for (i, constraint) in constraints.iter().enumerate() {
        if constraint.topology_key == HOSTNAME_LABEL {
            continue;
        }
        for &position in &per_node[i].nodes_with_pods {
            let node = &nodes[position];
            if require_all_keys && !node_has_all_keys(node, &constraints) {
                continue;
            }
            if !constraint.includes_node(pod, required, node) {
                continue;
            }
            let value = node.label(&constraint.topology_key).unwrap_or_default();
            if let Some(count) = domain_counts[i].get_mut(value) {
                *count += per_node[i].on(position);
            }
        }
    }

    let raw: Vec<i64> = feasible
        .iter()
        .enumerate()
        .map(|(j, &position)| {
            if ignored[j] {
                return 0;
            }
            let mut score = 0.0;
            for (i, constraint) in constraints.iter().enumerate() {
                let Some(value) = values[j * width + i] else {
                    continue;
                };
                let count = if constraint.topology_key == HOSTNAME_LABEL {
                    per_node[i].on(position)
                } else {
                    domain_counts[i].get(value).copied().unwrap_or(0)
                };
                score += count as f64 * weights[i] + (constraint.max_skew - 1) as f64;
            }
            score.round() as i64
        })
        .collect();

    let scored = || {
        raw.iter()
            .zip(&ignored)
            .filter(|(_, ignored)| !**ignored)
            .map(|(s, _)| *s)
    };
    let min = scored().min().unwrap_or(0);
    let max = scored().max().unwrap_or(0).max(0);
    raw.iter()
        .zip(&ignored)
        .map(|(&score, ignored)| {
            if *ignored {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - score) / max
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scores::test_support::{info, setup};
    use crate::testing::{NodeBuilder, PodBuilder};

    const ZONE: &str = "topology.kubernetes.io/zone";

    fn check(nodes: Vec<NodeBuilder>, pods: Vec<PodBuilder>, pod: PodBuilder, expected: &[i64]) {
        let (snapshot, feasible) = setup(nodes, pods);
        let pod = info(pod);
        let required = RequiredNodeAffinity::of(&pod.pod);
        assert_eq!(scores(&snapshot, &pod, &required, &feasible), expected);
    }

    fn web(name: &str, node: &str) -> PodBuilder {
        PodBuilder::new(name).node(node).label("app", "web")
    }

    fn rs(name: &str, node: &str, uid: &str) -> PodBuilder {
        PodBuilder::new(name)
            .node(node)
            .owner("ReplicaSet", "web", uid)
    }

    #[test]
    fn schedule_anyway_constraints() {
        let nodes = || {
            vec![
                NodeBuilder::new("a").zone("z1"),
                NodeBuilder::new("b").zone("z1"),
                NodeBuilder::new("c").zone("z2"),
            ]
        };
        let by_zone = || {
            PodBuilder::new("p").label("app", "web").spread(
                1,
                ZONE,
                "ScheduleAnyway",
                &[("app", "web")],
            )
        };
        // No pods: everything is equally good.
        check(nodes(), vec![], by_zone(), &[100, 100, 100]);
        // z1 has 2 matching pods, z2 none. weight ln(2+2); z1 raw round(2*1.386)=3, z2 0.
        check(
            nodes(),
            vec![web("w1", "a"), web("w2", "b")],
            by_zone(),
            &[0, 0, 100],
        );
        // z1: 1, z2: 1 -> even.
        check(
            nodes(),
            vec![web("w1", "a"), web("w2", "c")],
            by_zone(),
            &[100, 100, 100],
        );
        // DoNotSchedule constraints do not score, and pods with constraints get no defaults.
        let hard = PodBuilder::new("p")
            .label("app", "web")
            .owner("ReplicaSet", "web", "rs-1")
            .spread(1, ZONE, "DoNotSchedule", &[("app", "web")]);
        check(nodes(), vec![web("w1", "a")], hard, &[0, 0, 0]);
        // Nodes without the key are ignored (score 0) when constraints are explicit.
        let with_bare = vec![NodeBuilder::new("a").zone("z1"), NodeBuilder::new("bare")];
        check(with_bare, vec![web("w1", "a")], by_zone(), &[100, 0]);
        // Hostname: per node counts; a has 2, b 1, c 0. weight ln(5): a 3, b 2, c 0 (+maxSkew-1=0).
        let by_host = PodBuilder::new("p").label("app", "web").spread(
            1,
            "kubernetes.io/hostname",
            "ScheduleAnyway",
            &[("app", "web")],
        );
        check(
            nodes(),
            vec![web("w1", "a"), web("w2", "a"), web("w3", "b")],
            by_host,
            &[0, 33, 100],
        );
    }

    #[test]
    fn system_default_spreading() {
        let nodes = || {
            vec![
                NodeBuilder::new("a").zone("z1"),
                NodeBuilder::new("b").zone("z1"),
                NodeBuilder::new("c").zone("z2"),
            ]
        };
        let pod = || PodBuilder::new("p").owner("ReplicaSet", "web", "rs-1");
        // Not owned by a spreading controller: no score.
        check(
            nodes(),
            vec![rs("s1", "a", "rs-1")],
            PodBuilder::new("p"),
            &[0, 0, 0],
        );
        check(nodes(), vec![], pod(), &[100, 100, 100]);
        // One sibling on a: hostname favours b and c, zone favours c.
        // a: 1*ln(5)+2 + 1*ln(4)+4 = 9.0 -> 9, b: 0+2 + 1.386+4 = 7, c: 2 + 4 = 6.
        check(nodes(), vec![rs("s1", "a", "rs-1")], pod(), &[66, 88, 100]);
        // Pods of other owners do not count.
        check(
            nodes(),
            vec![rs("s1", "a", "rs-2")],
            pod(),
            &[100, 100, 100],
        );
        // Nodes without a zone are still scored by hostname.
        let mixed = vec![NodeBuilder::new("a").zone("z1"), NodeBuilder::new("bare")];
        check(mixed, vec![rs("s1", "a", "rs-1")], pod(), &[22, 100]);
    }
}
