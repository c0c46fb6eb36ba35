//! NodeResourcesFit (filter): the pod's effective requests must fit in what the
//! node has left, and the node must take one more pod. A request larger than the
//! node's whole allocatable cannot be fixed by preemption.

use super::{Code, FilterResult, Rejection};
use crate::pod_info::PodInfo;
use crate::snapshot::NodeInfo;

pub(crate) fn filter(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    let mut reasons = Vec::new();
    let mut unresolvable = false;
    let pod_count = i64::try_from(node.pod_count()).unwrap_or(i64::MAX);
    if pod_count.saturating_add(1) > node.allowed_pod_number() {
        reasons.push("Too many pods".to_string());
    }
    let wanted = &pod.requests;
    if !wanted.is_zero() {
        let allocatable = node.allocatable();
        let requested = node.requested();
        let mut check = |name: &str, want: i64, have: i64, used: i64| {
            if want > 0 && want > have.saturating_sub(used) {
                reasons.push(format!("Insufficient {name}"));
                unresolvable |= want > have;
            }
        };
        check(
            "cpu",
            wanted.milli_cpu,
            allocatable.milli_cpu,
            requested.milli_cpu,
        );
        check(
            "memory",
            wanted.memory,
            allocatable.memory,
            requested.memory,
        );
        check(
            "ephemeral-storage",
            wanted.ephemeral_storage,
            allocatable.ephemeral_storage,
            requested.ephemeral_storage,
        );
        for (name, want) in &wanted.scalar {
            let have = allocatable.scalar.get(name).copied().unwrap_or(0);
            let used = requested.scalar.get(name).copied().unwrap_or(0);
            check(name, *want, have, used);
        }
    }
    if reasons.is_empty() {
        return Ok(());
    }
    Err(Rejection {
        code: if unresolvable {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Unschedulable
        },
        reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::outcome;
    use crate::snapshot::Snapshot;
    use crate::testing::{NodeBuilder, PodBuilder};

    /// `existing` run on a node with 4 cpus, 32Gi memory, 110 pods unless `node` says otherwise.
    fn check(
        node: NodeBuilder,
        existing: Vec<PodBuilder>,
        pod: PodBuilder,
        expected: Option<&str>,
    ) {
        let pods = existing
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.named(&format!("old-{i}")).node("n").build())
            .collect();
        let snapshot = Snapshot::new(vec![node.build()], pods, vec![], vec![]);
        let node = snapshot.node_infos().next().expect("one node");
        assert_eq!(
            outcome(filter(&PodInfo::new(pod.build()), node)).as_deref(),
            expected
        );
    }

    fn code(node: NodeBuilder, existing: Vec<PodBuilder>, pod: PodBuilder) -> Option<Code> {
        let pods = existing
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.named(&format!("old-{i}")).node("n").build())
            .collect();
        let snapshot = Snapshot::new(vec![node.build()], pods, vec![], vec![]);
        let node = snapshot.node_infos().next().expect("one node");
        filter(&PodInfo::new(pod.build()), node)
            .err()
            .map(|r| r.code)
    }

    fn pod(cpu: &str, memory: &str) -> PodBuilder {
        PodBuilder::new("p").requests(cpu, memory)
    }

    #[test]
    fn requests_against_allocatable() {
        let n = || NodeBuilder::new("n");
        check(n(), vec![], pod("4", "32Gi"), None);
        check(n(), vec![], pod("4001m", ""), Some("Insufficient cpu"));
        check(n(), vec![], pod("", "33Gi"), Some("Insufficient memory"));
        check(n(), vec![pod("3", "")], pod("1", ""), None);
        check(
            n(),
            vec![pod("3", "")],
            pod("1001m", ""),
            Some("Insufficient cpu"),
        );
        check(
            n(),
            vec![pod("3", "30Gi")],
            pod("2", "3Gi"),
            Some("Insufficient cpu, Insufficient memory"),
        );
        check(
            n(),
            vec![],
            pod("", "").request("ephemeral-storage", "101Gi"),
            Some("Insufficient ephemeral-storage"),
        );
        // Init containers and overhead count.
        check(
            n(),
            vec![],
            pod("1", "").init_container("5", ""),
            Some("Insufficient cpu"),
        );
        check(
            n(),
            vec![pod("3", "")],
            pod("900m", "").overhead("200m", ""),
            Some("Insufficient cpu"),
        );
        check(
            n(),
            vec![pod("3", "")],
            pod("900m", "").overhead("100m", ""),
            None,
        );
        // Existing pods' init containers count through their effective request too.
        check(
            n(),
            vec![pod("100m", "").init_container("3500m", "")],
            pod("1", ""),
            Some("Insufficient cpu"),
        );
        // Pods requesting nothing only need a pod slot, even on a full node.
        check(n(), vec![pod("4", "32Gi")], pod("", ""), None);
        check(n(), vec![pod("4", "32Gi")], pod("0", "0"), None);
    }

    #[test]
    fn pod_count_and_extended_resources() {
        let n = || NodeBuilder::new("n");
        check(
            n().pods("2"),
            vec![pod("", ""), pod("", "")],
            pod("", ""),
            Some("Too many pods"),
        );
        check(
            n().pods("3"),
            vec![pod("", ""), pod("", "")],
            pod("", ""),
            None,
        );
        check(
            n().pods("1"),
            vec![pod("4", "")],
            pod("1", ""),
            Some("Too many pods, Insufficient cpu"),
        );
        let foo = "example.com/foo";
        check(
            n(),
            vec![],
            pod("", "").request(foo, "1"),
            Some("Insufficient example.com/foo"),
        );
        check(
            n().allocatable(foo, "2"),
            vec![],
            pod("", "").request(foo, "2"),
            None,
        );
        check(
            n().allocatable(foo, "2"),
            vec![pod("", "").request(foo, "1")],
            pod("", "").request(foo, "2"),
            Some("Insufficient example.com/foo"),
        );
        check(
            n().allocatable(foo, "2"),
            vec![],
            pod("", "").request(foo, "0"),
            None,
        );
        check(
            n().allocatable("hugepages-2Mi", "4Mi"),
            vec![],
            pod("", "").request("hugepages-2Mi", "6Mi"),
            Some("Insufficient hugepages-2Mi"),
        );
        check(
            n().allocatable("nvidia.com/gpu", "1"),
            vec![],
            pod("5", "")
                .request("nvidia.com/gpu", "2")
                .request(foo, "1"),
            Some("Insufficient cpu, Insufficient example.com/foo, Insufficient nvidia.com/gpu"),
        );
    }

    #[test]
    fn preemption_can_only_fix_what_fits_an_empty_node() {
        let n = || NodeBuilder::new("n");
        assert_eq!(
            code(n(), vec![pod("3", "")], pod("2", "")),
            Some(Code::Unschedulable)
        );
        assert_eq!(
            code(n(), vec![], pod("5", "")),
            Some(Code::UnschedulableAndUnresolvable)
        );
        assert_eq!(
            code(n().pods("1"), vec![pod("", "")], pod("", "")),
            Some(Code::Unschedulable)
        );
        assert_eq!(
            code(n(), vec![], pod("", "").request("example.com/foo", "1")),
            Some(Code::UnschedulableAndUnresolvable)
        );
    }
}
