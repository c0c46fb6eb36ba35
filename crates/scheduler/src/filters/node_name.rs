//! NodeName: a pod that already names its node (`spec.nodeName`) fits only there.

use super::{FilterResult, Rejection};
use crate::pod_info::PodInfo;
use crate::snapshot::NodeInfo;

pub(crate) const REASON: &str = "node(s) didn't match the requested node name";

pub(crate) fn filter(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(wanted) if !wanted.is_empty() && wanted != node.name() => {
            Err(Rejection::unresolvable(REASON))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::outcome;
    use crate::snapshot::Snapshot;
    use crate::testing::{NodeBuilder, PodBuilder};

    fn check(pod: PodBuilder, node: &str, expected: Option<&str>) {
        let snapshot = Snapshot::new(vec![NodeBuilder::new(node).build()], vec![], vec![], vec![]);
        let node = snapshot.node_infos().next().expect("one node");
        assert_eq!(
            outcome(filter(&PodInfo::new(pod.build()), node)).as_deref(),
            expected
        );
    }

    #[test]
    fn requested_node_name() {
        check(PodBuilder::new("p"), "n1", None);
        check(PodBuilder::new("p").node("n1"), "n1", None);
        check(PodBuilder::new("p").node("n2"), "n1", Some(REASON));
        check(PodBuilder::new("p").node(""), "n1", None);
    }
}
