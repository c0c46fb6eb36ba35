//! InterPodAffinity (score): the pod's preferred (anti-)affinity towards existing
//! pods, plus existing pods' required affinity (weight 1) and preferred
//! (anti-)affinity towards the pod, summed per topology domain and scaled between
//! the worst and the best feasible node.

use crate::pod_info::PodInfo;
use crate::scores::MAX_NODE_SCORE;
use crate::snapshot::{Map, NodeInfo, Snapshot};

/// kube-scheduler's default `hardPodAffinityWeight`.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

pub(crate) fn scores(snapshot: &Snapshot, pod: &PodInfo, feasible: &[usize]) -> Vec<i64> {
    let namespaces = snapshot.namespaces();
    let mut topology_score: Map<String, Map<String, i64>> = Map::default();
    let mut add = |node: &NodeInfo, key: &str, weight: i64| {
        if let Some(value) = node.labels().get(key) {
            *topology_score
                .entry(key.to_string())
                .or_default()
                .entry(value.clone())
                .or_default() += weight;
        }
    };

    for (terms, sign) in [
        (&pod.preferred_affinity, 1),
        (&pod.preferred_anti_affinity, -1),
    ] {
        for weighted in terms {
            for candidate in snapshot.term_candidates(&weighted.term) {
                if weighted.term.matches(&candidate.info, namespaces) {
                    if let Some(position) = snapshot.node_of(candidate) {
                        add(
                            &snapshot.nodes()[position],
                            &weighted.term.topology_key,
                            sign * weighted.weight,
                        );
                    }
                }
            }
        }
    }

    for existing in snapshot.pods_with_pod_affinity_terms() {
        let Some(position) = snapshot.node_of(existing) else {
            continue;
        };
        let node = &snapshot.nodes()[position];
        for term in &existing.info.required_affinity {
            if term.matches(pod, namespaces) {
                add(node, &term.topology_key, HARD_POD_AFFINITY_WEIGHT);
            }
        }
        for (terms, sign) in [
            (&existing.info.preferred_affinity, 1),
            (&existing.info.preferred_anti_affinity, -1),
        ] {
            for weighted in terms {
                if weighted.term.matches(pod, namespaces) {
                    add(node, &weighted.term.topology_key, sign * weighted.weight);
                }
            }
        }
    }

    if topology_score.is_empty() {
        return vec![0; feasible.len()];
    }
    let raw: Vec<i64> = feasible
        .iter()
        .map(|&position| {
            let labels = snapshot.nodes()[position].labels();
            topology_score
                .iter()
                .filter_map(|(key, values)| labels.get(key).and_then(|value| values.get(value)))
                .sum()
        })
        .collect();
    let min = raw.iter().copied().min().unwrap_or(0);
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|&score| {
            if max > min {
                (MAX_NODE_SCORE as f64 * ((score - min) as f64 / (max - min) as f64)) as i64
            } else {
                0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scores::test_support::{info, setup};
    use crate::testing::{term, NodeBuilder, PodBuilder};

    const ZONE: &str = "topology.kubernetes.io/zone";
    const HOST: &str = "kubernetes.io/hostname";

    fn check(pods: Vec<PodBuilder>, pod: PodBuilder, expected: &[i64]) {
        let nodes = vec![
            NodeBuilder::new("a").zone("z1"),
            NodeBuilder::new("b").zone("z1"),
            NodeBuilder::new("c").zone("z2"),
        ];
        let (snapshot, feasible) = setup(nodes, pods);
        assert_eq!(scores(&snapshot, &info(pod), &feasible), expected);
    }

    fn on(name: &str, node: &str, app: &str) -> PodBuilder {
        PodBuilder::new(name).node(node).label("app", app)
    }

    #[test]
    fn incoming_preferences() {
        let p = || PodBuilder::new("p").label("app", "web");
        check(vec![on("db", "a", "db")], p(), &[0, 0, 0]);
        check(
            vec![on("db", "a", "db")],
            p().preferred_pod_affinity(10, term(&[("app", "db")], ZONE)),
            &[100, 100, 0],
        );
        check(
            vec![on("db", "a", "db")],
            p().preferred_pod_affinity(10, term(&[("app", "db")], HOST)),
            &[100, 0, 0],
        );
        check(
            vec![on("db", "a", "db")],
            p().preferred_pod_anti_affinity(10, term(&[("app", "db")], ZONE)),
            &[0, 0, 100],
        );
        // Affinity 10 to db (on a) and anti-affinity 5 to cache (on b), per host.
        check(
            vec![on("db", "a", "db"), on("cache", "b", "cache")],
            p().preferred_pod_affinity(10, term(&[("app", "db")], HOST))
                .preferred_pod_anti_affinity(5, term(&[("app", "cache")], HOST)),
            &[100, 0, 33],
        );
        // Every matching pod counts.
        check(
            vec![
                on("db1", "a", "db"),
                on("db2", "a", "db"),
                on("db3", "c", "db"),
            ],
            p().preferred_pod_affinity(1, term(&[("app", "db")], HOST)),
            &[100, 0, 50],
        );
    }

    #[test]
    fn existing_pods_terms() {
        let p = || PodBuilder::new("p").label("app", "web");
        // An existing pod that requires affinity to web pulls web towards it (weight 1).
        check(
            vec![on("x", "c", "x").pod_affinity(term(&[("app", "web")], ZONE))],
            p(),
            &[0, 0, 100],
        );
        check(
            vec![on("x", "a", "x").preferred_pod_affinity(7, term(&[("app", "web")], HOST))],
            p(),
            &[100, 0, 0],
        );
        check(
            vec![on("x", "a", "x").preferred_pod_anti_affinity(7, term(&[("app", "web")], ZONE))],
            p(),
            &[0, 0, 100],
        );
        // Existing pods' required anti-affinity is the filter's business.
        check(
            vec![on("x", "a", "x").pod_anti_affinity(term(&[("app", "web")], ZONE))],
            p(),
            &[0, 0, 0],
        );
        // Terms that do not select the pod do nothing.
        check(
            vec![on("x", "a", "x").preferred_pod_affinity(7, term(&[("app", "db")], HOST))],
            p(),
            &[0, 0, 0],
        );
    }
}
