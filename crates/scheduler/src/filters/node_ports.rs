//! NodePorts: the pod's host ports must be free on the node (`0.0.0.0` clashes with
//! every address, protocols are separate).

use super::{FilterResult, Rejection};
use crate::pod_info::PodInfo;
use crate::snapshot::NodeInfo;

pub(crate) const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub(crate) fn filter(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    if pod
        .host_ports
        .iter()
        .any(|port| node.used_ports().conflicts_with(port))
    {
        Err(Rejection::unschedulable(REASON))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::outcome;
    use crate::snapshot::Snapshot;
    use crate::testing::{NodeBuilder, PodBuilder};

    fn check(existing: Vec<PodBuilder>, pod: PodBuilder, expected: Option<&str>) {
        let pods = existing
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.named(&format!("old-{i}")).node("n").build())
            .collect();
        let snapshot = Snapshot::new(vec![NodeBuilder::new("n").build()], pods, vec![], vec![]);
        let node = snapshot.node_infos().next().expect("one node");
        assert_eq!(
            outcome(filter(&PodInfo::new(pod.build()), node)).as_deref(),
            expected
        );
    }

    #[test]
    fn host_port_conflicts() {
        let on = |port: i32, protocol: &str, ip: &str| {
            PodBuilder::new("old").host_port(port, protocol, ip)
        };
        let want = |port: i32, protocol: &str, ip: &str| {
            PodBuilder::new("new").host_port(port, protocol, ip)
        };
        check(vec![], want(80, "", ""), None);
        check(vec![on(80, "", "")], want(80, "", ""), Some(REASON));
        check(
            vec![on(80, "TCP", "0.0.0.0")],
            want(80, "", ""),
            Some(REASON),
        );
        check(vec![on(80, "", "")], want(80, "UDP", ""), None);
        check(vec![on(80, "", "")], want(8080, "", ""), None);
        check(vec![on(80, "", "10.0.0.1")], want(80, "", "10.0.0.2"), None);
        check(
            vec![on(80, "", "10.0.0.1")],
            want(80, "", "10.0.0.1"),
            Some(REASON),
        );
        check(vec![on(80, "", "10.0.0.1")], want(80, "", ""), Some(REASON));
        check(vec![on(80, "", "")], want(80, "", "10.0.0.1"), Some(REASON));
        check(
            vec![on(53, "UDP", ""), on(53, "TCP", "")],
            want(53, "SCTP", ""),
            None,
        );
        // Ports without hostPort never conflict.
        check(vec![on(80, "", "")], PodBuilder::new("new"), None);
    }
}
