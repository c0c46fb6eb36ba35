//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take only pods that
//! tolerate the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use super::{FilterResult, Rejection};
use crate::pod_info::PodInfo;
use crate::snapshot::NodeInfo;
use crate::taints::tolerated_by_any;

pub(crate) const REASON: &str = "node(s) were unschedulable";

pub(crate) fn filter(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    if !node.unschedulable() {
        return Ok(());
    }
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".to_string(),
        effect: "NoSchedule".to_string(),
        value: None,
        time_added: None,
    };
    if tolerated_by_any(pod.tolerations(), &taint) {
        Ok(())
    } else {
        Err(Rejection::unresolvable(REASON))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::outcome;
    use crate::snapshot::Snapshot;
    use crate::testing::{NodeBuilder, PodBuilder};

    fn check(pod: PodBuilder, node: NodeBuilder, expected: Option<&str>) {
        let snapshot = Snapshot::new(vec![node.build()], vec![], vec![], vec![]);
        let node = snapshot.node_infos().next().expect("one node");
        let pod = PodInfo::new(pod.build());
        assert_eq!(outcome(filter(&pod, node)).as_deref(), expected);
    }

    #[test]
    fn cordoned_nodes() {
        check(PodBuilder::new("p"), NodeBuilder::new("n"), None);
        check(
            PodBuilder::new("p"),
            NodeBuilder::new("n").unschedulable(),
            Some(REASON),
        );
        let key = "node.kubernetes.io/unschedulable";
        check(
            PodBuilder::new("p").toleration(key, "Exists", "", "NoSchedule"),
            NodeBuilder::new("n").unschedulable(),
            None,
        );
        check(
            PodBuilder::new("p").toleration(key, "Exists", "", ""),
            NodeBuilder::new("n").unschedulable(),
            None,
        );
        check(
            PodBuilder::new("p").toleration("", "Exists", "", ""),
            NodeBuilder::new("n").unschedulable(),
            None,
        );
        check(
            PodBuilder::new("p").toleration(key, "Exists", "", "NoExecute"),
            NodeBuilder::new("n").unschedulable(),
            Some(REASON),
        );
        check(
            PodBuilder::new("p").toleration("other", "Exists", "", ""),
            NodeBuilder::new("n").unschedulable(),
            Some(REASON),
        );
    }
}
