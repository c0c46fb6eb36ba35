//! TaintToleration (filter): a node's `NoSchedule` and `NoExecute` taints must all
//! be tolerated. The first untolerated one is named in the reason.

use super::{FilterResult, Rejection};
use crate::pod_info::PodInfo;
use crate::snapshot::NodeInfo;
use crate::taints::first_untolerated_scheduling_taint;

pub(crate) fn filter(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    match first_untolerated_scheduling_taint(node.taints(), pod.tolerations()) {
        None => Ok(()),
        Some(taint) => Err(Rejection::unresolvable(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.as_deref().unwrap_or_default()
        ))),
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
        assert_eq!(
            outcome(filter(&PodInfo::new(pod.build()), node)).as_deref(),
            expected
        );
    }

    #[test]
    fn taints_and_tolerations() {
        let cp = "node-role.kubernetes.io/control-plane";
        let p = || PodBuilder::new("p");
        let n = || NodeBuilder::new("n");
        check(p(), n(), None);
        check(
            p(),
            n().taint(cp, "", "NoSchedule"),
            Some("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"),
        );
        check(
            p(),
            n().taint("dedicated", "gpu", "NoExecute"),
            Some("node(s) had untolerated taint {dedicated: gpu}"),
        );
        check(p(), n().taint("soft", "x", "PreferNoSchedule"), None);
        check(
            p().toleration(cp, "Exists", "", "NoSchedule"),
            n().taint(cp, "", "NoSchedule"),
            None,
        );
        check(
            p().toleration(cp, "", "", "NoSchedule"),
            n().taint(cp, "", "NoSchedule"),
            None,
        );
        check(
            p().toleration("dedicated", "Equal", "gpu", ""),
            n().taint("dedicated", "gpu", "NoSchedule"),
            None,
        );
        check(
            p().toleration("dedicated", "Equal", "cpu", ""),
            n().taint("dedicated", "gpu", "NoSchedule"),
            Some("node(s) had untolerated taint {dedicated: gpu}"),
        );
        check(
            p().toleration("dedicated", "Equal", "gpu", "NoSchedule"),
            n().taint("dedicated", "gpu", "NoExecute"),
            Some("node(s) had untolerated taint {dedicated: gpu}"),
        );
        check(
            p().toleration("", "Exists", "", ""),
            n().taint("a", "1", "NoSchedule")
                .taint("b", "", "NoExecute"),
            None,
        );
        // The first untolerated taint in node order is reported.
        check(
            p().toleration("a", "Exists", "", ""),
            n().taint("a", "1", "NoSchedule")
                .taint("b", "2", "NoSchedule")
                .taint("c", "3", "NoExecute"),
            Some("node(s) had untolerated taint {b: 2}"),
        );
        check(
            p(),
            n().taint("node.kubernetes.io/not-ready", "", "NoSchedule"),
            Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
        );
        check(
            p().toleration("node.kubernetes.io/unreachable", "Exists", "", "NoExecute"),
            n().taint("node.kubernetes.io/unreachable", "", "NoSchedule"),
            Some("node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
        );
    }
}
