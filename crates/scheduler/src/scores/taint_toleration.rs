//! TaintToleration (score): fewer untolerated `PreferNoSchedule` taints is better.

use k8s_openapi::api::core::v1::Toleration;

use super::default_normalize;
use crate::pod_info::PodInfo;
use crate::snapshot::Snapshot;
use crate::taints::tolerated_by_any;

pub(crate) fn scores(snapshot: &Snapshot, pod: &PodInfo, feasible: &[usize]) -> Vec<i64> {
    let tolerations: Vec<Toleration> = pod
        .tolerations()
        .iter()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .cloned()
        .collect();
    let mut scores: Vec<i64> = feasible
        .iter()
        .map(|&position| {
            let node = &snapshot.nodes()[position];
            let untolerated = node
                .taints()
                .iter()
                .filter(|taint| {
                    taint.effect == "PreferNoSchedule" && !tolerated_by_any(&tolerations, taint)
                })
                .count();
            i64::try_from(untolerated).unwrap_or(i64::MAX)
        })
        .collect();
    default_normalize(&mut scores, true);
    scores
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scores::test_support::{info, setup};
    use crate::testing::{NodeBuilder, PodBuilder};

    fn check(nodes: Vec<NodeBuilder>, pod: PodBuilder, expected: &[i64]) {
        let (snapshot, feasible) = setup(nodes, vec![]);
        assert_eq!(scores(&snapshot, &info(pod), &feasible), expected);
    }

    #[test]
    fn prefer_no_schedule_taints() {
        let n = |name: &str| NodeBuilder::new(name);
        let soft = |node: NodeBuilder, key: &str| node.taint(key, "", "PreferNoSchedule");
        check(vec![n("a"), n("b")], PodBuilder::new("p"), &[100, 100]);
        check(
            vec![n("a"), soft(n("b"), "x")],
            PodBuilder::new("p"),
            &[100, 0],
        );
        check(
            vec![soft(n("a"), "x"), soft(soft(n("b"), "x"), "y"), n("c")],
            PodBuilder::new("p"),
            &[50, 0, 100],
        );
        check(
            vec![n("a"), soft(n("b"), "x")],
            PodBuilder::new("p").toleration("x", "Exists", "", "PreferNoSchedule"),
            &[100, 100],
        );
        check(
            vec![n("a"), soft(n("b"), "x")],
            PodBuilder::new("p").toleration("x", "Exists", "", ""),
            &[100, 100],
        );
        // A toleration for another effect does not count.
        check(
            vec![n("a"), soft(n("b"), "x")],
            PodBuilder::new("p").toleration("x", "Exists", "", "NoSchedule"),
            &[100, 0],
        );
        // Hard taints are the filter's business, not the score's.
        check(
            vec![n("a"), n("b").taint("x", "", "NoSchedule")],
            PodBuilder::new("p"),
            &[100, 100],
        );
    }
}
