//! NodeAffinity (filter): `spec.nodeSelector` and the required node affinity must
//! match the node. Its PreFilter narrows the candidate nodes when every term pins
//! `metadata.name` (as DaemonSet pods do).

use k8s_openapi::api::core::v1::Pod;

use super::{FilterResult, Rejection};
use crate::node_selector::{NodeSelector, RequiredNodeAffinity};
use crate::snapshot::NodeInfo;

pub(crate) const REASON: &str = "node(s) didn't match Pod's node affinity/selector";
pub(crate) const CONFLICT: &str = "pod affinity terms conflict";

pub(crate) fn filter(required: &RequiredNodeAffinity, node: &NodeInfo) -> FilterResult {
    if required.matches(node.name(), node.labels()) {
        Ok(())
    } else {
        Err(Rejection::unresolvable(REASON))
    }
}

/// The node names the pod is pinned to, if every required term pins them; a
/// rejection when the terms pin no node at all.
pub(crate) fn pre_filter(pod: &Pod) -> Result<Option<Vec<String>>, Rejection> {
    let terms = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or_default();
    match NodeSelector::restricted_node_names(terms) {
        Some(names) if names.is_empty() => Err(Rejection::unresolvable(CONFLICT)),
        restricted => Ok(restricted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::outcome;
    use crate::snapshot::Snapshot;
    use crate::testing::{node_name_term, node_term, NodeBuilder, PodBuilder};

    fn check(pod: PodBuilder, node: NodeBuilder, expected: Option<&str>) {
        let snapshot = Snapshot::new(vec![node.build()], vec![], vec![], vec![]);
        let node = snapshot.node_infos().next().expect("one node");
        let required = RequiredNodeAffinity::of(&pod.build());
        assert_eq!(outcome(filter(&required, node)).as_deref(), expected);
    }

    #[test]
    fn selector_and_required_affinity() {
        let p = || PodBuilder::new("p");
        let n = || NodeBuilder::new("n1").label("disk", "ssd").zone("a");
        check(p(), n(), None);
        check(p().node_selector("disk", "ssd"), n(), None);
        check(p().node_selector("disk", "hdd"), n(), Some(REASON));
        check(
            p().node_selector("disk", "ssd").node_selector("gpu", "yes"),
            n(),
            Some(REASON),
        );
        let zone = "topology.kubernetes.io/zone";
        check(
            p().required_node_affinity(vec![node_term(zone, "In", &["a", "b"])]),
            n(),
            None,
        );
        check(
            p().required_node_affinity(vec![node_term(zone, "NotIn", &["a"])]),
            n(),
            Some(REASON),
        );
        check(
            p().required_node_affinity(vec![node_term("gpu", "DoesNotExist", &[])]),
            n(),
            None,
        );
        check(
            p().required_node_affinity(vec![node_term("gpu", "Exists", &[])]),
            n(),
            Some(REASON),
        );
        // Terms are ORed.
        check(
            p().required_node_affinity(vec![
                node_term("gpu", "Exists", &[]),
                node_term("disk", "In", &["ssd"]),
            ]),
            n(),
            None,
        );
        // nodeSelector and affinity must both hold.
        check(
            p().node_selector("disk", "hdd")
                .required_node_affinity(vec![node_term(zone, "In", &["a"])]),
            n(),
            Some(REASON),
        );
        check(
            p().required_node_affinity(vec![node_name_term("In", &["n1"])]),
            n(),
            None,
        );
        check(
            p().required_node_affinity(vec![node_name_term("In", &["n2"])]),
            n(),
            Some(REASON),
        );
        check(p().required_node_affinity(vec![]), n(), Some(REASON));
        check(
            p().required_node_affinity(vec![node_term("cores", "Gt", &["2"])]),
            n().label("cores", "4"),
            None,
        );
        check(
            p().required_node_affinity(vec![node_term("cores", "Lt", &["2"])]),
            n().label("cores", "4"),
            Some(REASON),
        );
    }

    #[test]
    fn pinned_node_names() {
        let check_pre = |pod: PodBuilder, expected: Result<Option<Vec<&str>>, &str>| {
            let got = pre_filter(&pod.build()).map_err(|r| r.reasons.join(", "));
            let expected = expected
                .map(|names| names.map(|n| n.iter().map(|s| s.to_string()).collect::<Vec<_>>()))
                .map_err(str::to_string);
            assert_eq!(got, expected);
        };
        check_pre(PodBuilder::new("p"), Ok(None));
        check_pre(
            PodBuilder::new("p").required_node_affinity(vec![node_name_term("In", &["n1"])]),
            Ok(Some(vec!["n1"])),
        );
        check_pre(
            PodBuilder::new("p").required_node_affinity(vec![node_term("disk", "In", &["ssd"])]),
            Ok(None),
        );
        let conflicting = k8s_openapi::api::core::v1::NodeSelectorTerm {
            match_fields: Some(
                [node_name_term("In", &["a"]), node_name_term("In", &["b"])]
                    .into_iter()
                    .flat_map(|t| t.match_fields.unwrap_or_default())
                    .collect(),
            ),
            match_expressions: None,
        };
        check_pre(
            PodBuilder::new("p").required_node_affinity(vec![conflicting]),
            Err(CONFLICT),
        );
    }
}
