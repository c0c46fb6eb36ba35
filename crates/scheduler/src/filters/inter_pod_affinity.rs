//! InterPodAffinity (filter): the pod's required pod affinity must find matching pods
//! in the node's topology domain, its required anti-affinity must find none, and no
//! existing pod's required anti-affinity may select the pod within its domain.

use super::{FilterResult, Rejection};
use crate::pod_info::{NamespaceLabels, PodInfo};
use crate::snapshot::{Map, NodeInfo, Snapshot};

pub(crate) const AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub(crate) const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub(crate) const EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Counts per topology `key` and `value`; entries that drop to zero are removed.
#[derive(Clone, Debug, Default)]
pub(crate) struct TopologyCounts {
    counts: Map<String, Map<String, i64>>,
}

impl TopologyCounts {
    pub(crate) fn get(&self, key: &str, value: &str) -> i64 {
        self.counts
            .get(key)
            .and_then(|values| values.get(value))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn add(&mut self, key: &str, value: &str, delta: i64) {
        let values = self.counts.entry(key.to_string()).or_default();
        let count = values.entry(value.to_string()).or_default();
        *count += delta;
        if *count == 0 {
            values.remove(value);
            if values.is_empty() {
                self.counts.remove(key);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// What the filter needs, computed once per pod.
#[derive(Clone, Debug, Default)]
pub(crate) struct InterPodAffinityState {
    /// Existing pods whose required anti-affinity selects the incoming pod.
    existing_anti_affinity: TopologyCounts,
    /// Existing pods matching all of the incoming pod's required affinity terms.
    affinity: TopologyCounts,
    /// Existing pods matching one of the incoming pod's required anti-affinity terms.
    anti_affinity: TopologyCounts,
}

pub(crate) fn pre_filter(snapshot: &Snapshot, pod: &PodInfo) -> InterPodAffinityState {
    let namespaces = snapshot.namespaces();
    let mut state = InterPodAffinityState::default();
    for existing in snapshot.pods_with_required_anti_affinity() {
        if let Some(position) = snapshot.node_of(existing) {
            let node = &snapshot.nodes()[position];
            for term in &existing.info.required_anti_affinity {
                if term.matches(pod, namespaces) {
                    if let Some(value) = node.labels().get(&term.topology_key) {
                        state
                            .existing_anti_affinity
                            .add(&term.topology_key, value, 1);
                    }
                }
            }
        }
    }
    if let Some(first) = pod.required_affinity.first() {
        for candidate in snapshot.term_candidates(first) {
            if !pod
                .required_affinity
                .iter()
                .all(|t| t.matches(&candidate.info, namespaces))
            {
                continue;
            }
            if let Some(position) = snapshot.node_of(candidate) {
                let node = &snapshot.nodes()[position];
                for term in &pod.required_affinity {
                    if let Some(value) = node.labels().get(&term.topology_key) {
                        state.affinity.add(&term.topology_key, value, 1);
                    }
                }
            }
        }
    }
    for term in &pod.required_anti_affinity {
        for candidate in snapshot.term_candidates(term) {
            if !term.matches(&candidate.info, namespaces) {
                continue;
            }
            if let Some(position) = snapshot.node_of(candidate) {
                if let Some(value) = snapshot.nodes()[position].labels().get(&term.topology_key) {
                    state.anti_affinity.add(&term.topology_key, value, 1);
                }
            }
        }
    }
    state
}

pub(crate) fn filter(
    state: &InterPodAffinityState,
    pod: &PodInfo,
    namespaces: &NamespaceLabels,
    node: &NodeInfo,
) -> FilterResult {
    if !satisfies_pod_affinity(state, pod, namespaces, node) {
        return Err(Rejection::unresolvable(AFFINITY));
    }
    if !state.anti_affinity.is_empty() {
        let violated = pod.required_anti_affinity.iter().any(|term| {
            node.labels()
                .get(&term.topology_key)
                .is_some_and(|value| state.anti_affinity.get(&term.topology_key, value) > 0)
        });
        if violated {
            return Err(Rejection::unschedulable(ANTI_AFFINITY));
        }
    }
    if !state.existing_anti_affinity.is_empty() {
        let violated = node
            .labels()
            .iter()
            .any(|(key, value)| state.existing_anti_affinity.get(key, value) > 0);
        if violated {
            return Err(Rejection::unschedulable(EXISTING_ANTI_AFFINITY));
        }
    }
    Ok(())
}

fn satisfies_pod_affinity(
    state: &InterPodAffinityState,
    pod: &PodInfo,
    namespaces: &NamespaceLabels,
    node: &NodeInfo,
) -> bool {
    let mut pods_exist = true;
    for term in &pod.required_affinity {
        match node.labels().get(&term.topology_key) {
            None => return false,
            Some(value) => pods_exist &= state.affinity.get(&term.topology_key, value) > 0,
        }
    }
    if pods_exist {
        return true;
    }
    // The first pod of a group with affinity to itself would wait forever, so it may
    // go anywhere (with the topology labels) when nothing else matches the terms.
    state.affinity.is_empty()
        && pod
            .required_affinity
            .iter()
            .all(|t| t.matches(pod, namespaces))
}

impl InterPodAffinityState {
    /// Accounts for `existing` being added to (`delta` 1) or removed from (-1) `node`
    /// while preemption tries victims.
    pub(crate) fn update_with_pod(
        &mut self,
        existing: &PodInfo,
        pod: &PodInfo,
        node: &NodeInfo,
        namespaces: &NamespaceLabels,
        delta: i64,
    ) {
        let labels = node.labels();
        for term in &existing.required_anti_affinity {
            if term.matches(pod, namespaces) {
                if let Some(value) = labels.get(&term.topology_key) {
                    self.existing_anti_affinity
                        .add(&term.topology_key, value, delta);
                }
            }
        }
        if !pod.required_affinity.is_empty()
            && pod
                .required_affinity
                .iter()
                .all(|t| t.matches(existing, namespaces))
        {
            for term in &pod.required_affinity {
                if let Some(value) = labels.get(&term.topology_key) {
                    self.affinity.add(&term.topology_key, value, delta);
                }
            }
        }
        for term in &pod.required_anti_affinity {
            if term.matches(existing, namespaces) {
                if let Some(value) = labels.get(&term.topology_key) {
                    self.anti_affinity.add(&term.topology_key, value, delta);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::outcome;
    use crate::testing::{term, NodeBuilder, PodBuilder};

    const ZONE: &str = "topology.kubernetes.io/zone";
    const HOST: &str = "kubernetes.io/hostname";

    fn nodes() -> Vec<NodeBuilder> {
        vec![
            NodeBuilder::new("a1").zone("a"),
            NodeBuilder::new("a2").zone("a"),
            NodeBuilder::new("b1").zone("b"),
            NodeBuilder::new("nozone"),
        ]
    }

    fn check(existing: Vec<PodBuilder>, pod: PodBuilder, node: &str, expected: Option<&str>) {
        let pods = existing.into_iter().map(PodBuilder::build).collect();
        let snapshot = Snapshot::new(
            nodes().into_iter().map(NodeBuilder::build).collect(),
            pods,
            vec![],
            vec![],
        );
        let pod = PodInfo::new(pod.build());
        let state = pre_filter(&snapshot, &pod);
        let node = snapshot.node_info(node).expect("node exists");
        assert_eq!(
            outcome(filter(&state, &pod, snapshot.namespaces(), node)).as_deref(),
            expected,
            "on {}",
            node.name()
        );
    }

    fn on(name: &str, node: &str, app: &str) -> PodBuilder {
        PodBuilder::new(name).node(node).label("app", app)
    }

    fn new_pod() -> PodBuilder {
        PodBuilder::new("new").label("app", "web")
    }

    #[test]
    fn required_affinity() {
        let with_db = || new_pod().pod_affinity(term(&[("app", "db")], ZONE));
        check(vec![on("db", "a1", "db")], with_db(), "a2", None);
        check(vec![on("db", "a1", "db")], with_db(), "a1", None);
        check(vec![on("db", "a1", "db")], with_db(), "b1", Some(AFFINITY));
        check(
            vec![on("db", "a1", "db")],
            with_db(),
            "nozone",
            Some(AFFINITY),
        );
        check(
            vec![on("db", "a1", "db").namespace("other")],
            with_db(),
            "a1",
            Some(AFFINITY),
        );
        // Nothing matches anywhere and the pod does not match its own term.
        check(vec![], with_db(), "a1", Some(AFFINITY));
        // The first pod of a self-affine group may go anywhere with the topology key.
        let self_affine = || new_pod().pod_affinity(term(&[("app", "web")], ZONE));
        check(vec![], self_affine(), "b1", None);
        check(vec![], self_affine(), "nozone", Some(AFFINITY));
        check(
            vec![on("web-1", "a1", "web")],
            self_affine(),
            "b1",
            Some(AFFINITY),
        );
        // All terms must be matched by the same pods.
        let two_terms = new_pod()
            .pod_affinity(term(&[("app", "db")], ZONE))
            .pod_affinity(term(&[("tier", "data")], HOST));
        check(
            vec![on("db", "a1", "db").label("tier", "data")],
            two_terms.clone(),
            "a1",
            None,
        );
        check(
            vec![on("db", "a1", "db").label("tier", "data")],
            two_terms.clone(),
            "a2",
            Some(AFFINITY),
        );
        check(
            vec![
                on("db", "a1", "db"),
                on("t", "a1", "x").label("tier", "data"),
            ],
            two_terms,
            "a1",
            Some(AFFINITY),
        );
    }

    #[test]
    fn required_anti_affinity() {
        let not_with_web = || new_pod().pod_anti_affinity(term(&[("app", "web")], HOST));
        check(
            vec![on("web-1", "a1", "web")],
            not_with_web(),
            "a1",
            Some(ANTI_AFFINITY),
        );
        check(vec![on("web-1", "a1", "web")], not_with_web(), "a2", None);
        check(vec![on("db", "a1", "db")], not_with_web(), "a1", None);
        let zone_apart = new_pod().pod_anti_affinity(term(&[("app", "web")], ZONE));
        check(
            vec![on("web-1", "a1", "web")],
            zone_apart.clone(),
            "a2",
            Some(ANTI_AFFINITY),
        );
        check(
            vec![on("web-1", "a1", "web")],
            zone_apart.clone(),
            "b1",
            None,
        );
        // A node without the topology key is never in the same domain.
        check(vec![on("web-1", "a1", "web")], zone_apart, "nozone", None);
    }

    #[test]
    fn existing_pods_anti_affinity() {
        let guard = |node: &str| {
            PodBuilder::new("guard")
                .node(node)
                .label("app", "guard")
                .pod_anti_affinity(term(&[("app", "web")], ZONE))
        };
        check(
            vec![guard("a1")],
            new_pod(),
            "a2",
            Some(EXISTING_ANTI_AFFINITY),
        );
        check(vec![guard("a1")], new_pod(), "b1", None);
        check(vec![guard("a1")], new_pod(), "nozone", None);
        check(
            vec![guard("a1")],
            PodBuilder::new("new").label("app", "db"),
            "a1",
            None,
        );
        check(vec![guard("a1")], new_pod().namespace("other"), "a1", None);
    }

    #[test]
    fn namespace_selectors() {
        let mut snapshot = Snapshot::new(
            nodes().into_iter().map(NodeBuilder::build).collect(),
            vec![
                on("db", "a1", "db").namespace("prod").build(),
                on("db", "b1", "db").namespace("dev").build(),
            ],
            vec![],
            vec![],
        );
        snapshot.upsert_namespace(k8s_openapi::api::core::v1::Namespace {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("prod".to_string()),
                labels: Some([("env".to_string(), "prod".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        });
        let check = |selector: &[(&str, &str)], node: &str, expected: Option<&str>| {
            let affinity = k8s_openapi::api::core::v1::PodAffinityTerm {
                namespace_selector: Some(crate::testing::label_selector(selector)),
                ..term(&[("app", "db")], ZONE)
            };
            let pod = PodInfo::new(new_pod().pod_affinity(affinity).build());
            let state = pre_filter(&snapshot, &pod);
            let node = snapshot.node_info(node).expect("node exists");
            let got = outcome(filter(&state, &pod, snapshot.namespaces(), node));
            assert_eq!(
                got.as_deref(),
                expected,
                "namespaces {selector:?} on {}",
                node.name()
            );
        };
        check(&[("env", "prod")], "a2", None);
        check(&[("env", "prod")], "b1", Some(AFFINITY));
        // An empty namespace selector selects every namespace.
        check(&[], "b1", None);
        check(&[("env", "staging")], "a2", Some(AFFINITY));
    }

    #[test]
    fn preemption_updates() {
        let snapshot = Snapshot::new(
            nodes().into_iter().map(NodeBuilder::build).collect(),
            vec![on("web-1", "a1", "web").build()],
            vec![],
            vec![],
        );
        let pod = PodInfo::new(
            new_pod()
                .pod_anti_affinity(term(&[("app", "web")], HOST))
                .build(),
        );
        let mut state = pre_filter(&snapshot, &pod);
        let node = snapshot.node_info("a1").expect("node");
        let victim = snapshot
            .slot(node.pod_slots()[0])
            .expect("victim")
            .info
            .clone();
        assert!(filter(&state, &pod, snapshot.namespaces(), node).is_err());
        state.update_with_pod(&victim, &pod, node, snapshot.namespaces(), -1);
        assert!(filter(&state, &pod, snapshot.namespaces(), node).is_ok());
        state.update_with_pod(&victim, &pod, node, snapshot.namespaces(), 1);
        assert!(filter(&state, &pod, snapshot.namespaces(), node).is_err());
    }
}
