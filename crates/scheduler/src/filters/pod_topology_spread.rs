//! PodTopologySpread (filter, `whenUnsatisfiable: DoNotSchedule`): placing the pod
//! on the node must keep `matching pods in the node's domain + 1 - global minimum`
//! within `maxSkew`, with the minimum taken as 0 while fewer than `minDomains`
//! domains exist.

use super::{FilterResult, Rejection};
use crate::node_selector::RequiredNodeAffinity;
use crate::pod_info::PodInfo;
use crate::snapshot::{Map, NodeInfo, Snapshot};
use crate::spread::{self, node_has_all_keys, PodCounts, SpreadConstraint};

pub(crate) const REASON: &str = "node(s) didn't match pod topology spread constraints";
pub(crate) const MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// Matching pods per domain for each hard constraint, computed once per pod.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpreadState<'a> {
    constraints: Vec<SpreadConstraint>,
    /// Per constraint: topology value → matching pods. Every eligible domain has an
    /// entry. Values borrow the snapshot's node labels.
    match_counts: Vec<Map<&'a str, i64>>,
    /// Per constraint: the two smallest domains, kept current under preemption's
    /// removals and re-additions the way kube-scheduler does.
    critical_paths: Vec<CriticalPaths<'a>>,
}

#[derive(Clone, Debug)]
struct CriticalPaths<'a>([(&'a str, i64); 2]);

impl<'a> CriticalPaths<'a> {
    fn new() -> CriticalPaths<'a> {
        CriticalPaths([("", i64::from(i32::MAX)); 2])
    }

    fn min(&self) -> i64 {
        self.0[0].1
    }

    fn update(&mut self, value: &'a str, count: i64) {
        let paths = &mut self.0;
        let existing = if paths[0].0 == value {
            Some(0)
        } else if paths[1].0 == value {
            Some(1)
        } else {
            None
        };
        match existing {
            Some(i) => {
                paths[i].1 = count;
                if paths[0].1 > paths[1].1 {
                    paths.swap(0, 1);
                }
            }
            None if count < paths[0].1 => {
                paths[1] = paths[0];
                paths[0] = (value, count);
            }
            None if count < paths[1].1 => paths[1] = (value, count),
            None => {}
        }
    }
}

pub(crate) fn pre_filter<'a>(
    snapshot: &'a Snapshot,
    pod: &PodInfo,
    required: &RequiredNodeAffinity,
) -> SpreadState<'a> {
    let constraints = spread::constraints(pod, "DoNotSchedule");
    if constraints.is_empty() {
        return SpreadState::default();
    }
    let per_node: Vec<PodCounts> = constraints
        .iter()
        .map(|c| spread::matching_pods_per_node(snapshot, &pod.namespace, &c.selector))
        .collect();
    let mut match_counts: Vec<Map<&str, i64>> = vec![Map::default(); constraints.len()];
    for (position, node) in snapshot.nodes().iter().enumerate() {
        if !node_has_all_keys(node, &constraints) {
            continue;
        }
        for (i, constraint) in constraints.iter().enumerate() {
            if !constraint.includes_node(pod, required, node) {
                continue;
            }
            if let Some(value) = node.labels().get(&constraint.topology_key) {
                *match_counts[i].entry(value.as_str()).or_default() += per_node[i].on(position);
            }
        }
    }
    let critical_paths = match_counts
        .iter()
        .map(|counts| {
            let mut paths = CriticalPaths::new();
            for (value, count) in counts {
                paths.update(value, *count);
            }
            paths
        })
        .collect();
    SpreadState {
        constraints,
        match_counts,
        critical_paths,
    }
}

pub(crate) fn filter(state: &SpreadState, pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    for (i, constraint) in state.constraints.iter().enumerate() {
        let Some(value) = node.labels().get(&constraint.topology_key) else {
            return Err(Rejection::unresolvable(MISSING_LABEL));
        };
        let domains = i64::try_from(state.match_counts[i].len()).unwrap_or(i64::MAX);
        let min_match = if domains < constraint.min_domains {
            0
        } else {
            state.critical_paths[i].min()
        };
        let self_match = i64::from(constraint.selector.matches(pod));
        let match_num = state.match_counts[i]
            .get(value.as_str())
            .copied()
            .unwrap_or(0);
        if match_num + self_match - min_match > constraint.max_skew {
            return Err(Rejection::unschedulable(REASON));
        }
    }
    Ok(())
}

impl<'a> SpreadState<'a> {
    /// Accounts for `existing` being added to (`delta` 1) or removed from (-1) `node`
    /// while preemption tries victims.
    pub(crate) fn update_with_pod(
        &mut self,
        existing: &PodInfo,
        pod: &PodInfo,
        node: &'a NodeInfo,
        required: &RequiredNodeAffinity,
        delta: i64,
    ) {
        if self.constraints.is_empty()
            || existing.namespace != pod.namespace
            || !node_has_all_keys(node, &self.constraints)
        {
            return;
        }
        for (i, constraint) in self.constraints.iter().enumerate() {
            if !constraint.selector.matches(existing)
                || !constraint.includes_node(pod, required, node)
            {
                continue;
            }
            if let Some(value) = node.labels().get(&constraint.topology_key) {
                let count = self.match_counts[i].entry(value.as_str()).or_default();
                *count += delta;
                let count = *count;
                self.critical_paths[i].update(value, count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::outcome;
    use crate::testing::{label_selector, node_term, NodeBuilder, PodBuilder};
    use k8s_openapi::api::core::v1::TopologySpreadConstraint;

    const ZONE: &str = "topology.kubernetes.io/zone";
    const HOST: &str = "kubernetes.io/hostname";

    /// Zone a: a1, a2; zone b: b1; zone c: c1 (no zone label on `bare`).
    fn nodes() -> Vec<NodeBuilder> {
        vec![
            NodeBuilder::new("a1").zone("a"),
            NodeBuilder::new("a2").zone("a"),
            NodeBuilder::new("b1").zone("b"),
            NodeBuilder::new("c1").zone("c").label("gpu", "yes"),
        ]
    }

    /// `placed` are (node, app label) pairs of existing pods.
    fn check(
        nodes: Vec<NodeBuilder>,
        placed: &[(&str, &str)],
        pod: PodBuilder,
        node: &str,
        expected: Option<&str>,
    ) {
        let pods = placed
            .iter()
            .enumerate()
            .map(|(i, (node, app))| {
                PodBuilder::new(&format!("old-{i}"))
                    .node(node)
                    .label("app", app)
                    .build()
            })
            .collect();
        let snapshot = Snapshot::new(
            nodes.into_iter().map(NodeBuilder::build).collect(),
            pods,
            vec![],
            vec![],
        );
        let pod = PodInfo::new(pod.build());
        let required = RequiredNodeAffinity::of(&pod.pod);
        let state = pre_filter(&snapshot, &pod, &required);
        let node = snapshot.node_info(node).expect("node exists");
        assert_eq!(
            outcome(filter(&state, &pod, node)).as_deref(),
            expected,
            "on {}",
            node.name()
        );
    }

    fn web(max_skew: i32, key: &str) -> PodBuilder {
        PodBuilder::new("new").label("app", "web").spread(
            max_skew,
            key,
            "DoNotSchedule",
            &[("app", "web")],
        )
    }

    #[test]
    fn max_skew_by_zone() {
        // a: 2 web, b: 1, c: 0.
        let placed = [("a1", "web"), ("a2", "web"), ("b1", "web"), ("c1", "db")];
        check(nodes(), &placed, web(1, ZONE), "c1", None);
        check(nodes(), &placed, web(1, ZONE), "b1", Some(REASON));
        check(nodes(), &placed, web(1, ZONE), "a1", Some(REASON));
        check(nodes(), &placed, web(2, ZONE), "b1", None);
        check(nodes(), &placed, web(2, ZONE), "a2", Some(REASON));
        check(nodes(), &placed, web(3, ZONE), "a2", None);
        check(nodes(), &[], web(1, ZONE), "a1", None);
        // Only pods in the pod's namespace and selected by the constraint count.
        check(
            nodes(),
            &[("a1", "db"), ("a2", "db")],
            web(1, ZONE),
            "a1",
            None,
        );
        // A pod its own selector does not select adds no skew.
        let other = PodBuilder::new("new").label("app", "other").spread(
            1,
            ZONE,
            "DoNotSchedule",
            &[("app", "web")],
        );
        check(nodes(), &[("a1", "web"), ("b1", "web")], other, "a1", None);
        // ScheduleAnyway constraints never filter.
        let soft = PodBuilder::new("new").label("app", "web").spread(
            1,
            ZONE,
            "ScheduleAnyway",
            &[("app", "web")],
        );
        check(nodes(), &placed, soft, "a1", None);
    }

    #[test]
    fn missing_labels_and_hostname() {
        let mut with_bare = nodes();
        with_bare.push(NodeBuilder::new("bare"));
        check(
            with_bare.clone(),
            &[],
            web(1, ZONE),
            "bare",
            Some(MISSING_LABEL),
        );
        // Nodes without the key are not domains: zone c's emptiness still counts.
        check(
            with_bare,
            &[("a1", "web"), ("b1", "web"), ("bare", "web")],
            web(1, ZONE),
            "a2",
            Some(REASON),
        );
        check(nodes(), &[("a1", "web")], web(1, HOST), "a1", Some(REASON));
        check(nodes(), &[("a1", "web")], web(1, HOST), "a2", None);
    }

    #[test]
    fn min_domains_and_node_affinity() {
        let constraint =
            |min_domains: Option<i32>, affinity_policy: Option<&str>| TopologySpreadConstraint {
                max_skew: 1,
                topology_key: ZONE.to_string(),
                when_unsatisfiable: "DoNotSchedule".to_string(),
                label_selector: Some(label_selector(&[("app", "web")])),
                min_domains,
                node_affinity_policy: affinity_policy.map(str::to_string),
                ..Default::default()
            };
        let placed = [("a1", "web"), ("b1", "web"), ("c1", "web")];
        let pod = |c| {
            PodBuilder::new("new")
                .label("app", "web")
                .spread_constraint(c)
        };
        check(nodes(), &placed, pod(constraint(None, None)), "a1", None);
        // Three domains exist, fewer than minDomains 4: the global minimum is 0.
        check(
            nodes(),
            &placed,
            pod(constraint(Some(4), None)),
            "a1",
            Some(REASON),
        );
        check(nodes(), &placed, pod(constraint(Some(3), None)), "a1", None);
        // Node affinity (honored by default) removes zone c from the domains, so its
        // pod-less state no longer pins the minimum.
        let c_empty = [("a1", "web"), ("b1", "web")];
        let not_c = |policy| {
            pod(constraint(None, policy)).required_node_affinity(vec![node_term(
                "gpu",
                "DoesNotExist",
                &[],
            )])
        };
        check(nodes(), &c_empty, not_c(None), "a1", None);
        check(nodes(), &c_empty, not_c(Some("Ignore")), "a1", Some(REASON));
    }

    #[test]
    fn critical_paths_track_the_minimum() {
        let mut paths = CriticalPaths::new();
        for (value, count) in [("a", 3), ("b", 1), ("c", 2)] {
            paths.update(value, count);
        }
        assert_eq!(paths.min(), 1);
        paths.update("b", 0);
        assert_eq!(paths.min(), 0);
        paths.update("b", 1);
        assert_eq!(paths.min(), 1);
        paths.update("b", 5);
        assert_eq!(paths.min(), 2);
    }
}
