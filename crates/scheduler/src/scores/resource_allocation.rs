//! NodeResourcesFit's LeastAllocated score (free cpu and memory after placing the
//! pod, with 100m/200Mi assumed for containers without requests) and
//! NodeResourcesBalancedAllocation (cpu and memory used in similar proportions;
//! skipped for pods that request nothing).

use crate::pod_info::PodInfo;
use crate::scores::MAX_NODE_SCORE;
use crate::snapshot::Snapshot;

pub(crate) fn least_allocated(snapshot: &Snapshot, pod: &PodInfo, feasible: &[usize]) -> Vec<i64> {
    feasible
        .iter()
        .map(|&position| {
            let node = &snapshot.nodes()[position];
            let (cpu_requested, memory_requested) = node.non_zero_requested();
            let resources = [
                (
                    node.allocatable().milli_cpu,
                    cpu_requested.saturating_add(pod.non_zero_milli_cpu),
                ),
                (
                    node.allocatable().memory,
                    memory_requested.saturating_add(pod.non_zero_memory),
                ),
            ];
            let mut total = 0i64;
            let mut weights = 0i64;
            for (allocatable, requested) in resources {
                if allocatable == 0 {
                    continue;
                }
                weights += 1;
                if requested <= allocatable {
                    let free = i128::from(allocatable - requested) * i128::from(MAX_NODE_SCORE);
                    total += i64::try_from(free / i128::from(allocatable)).unwrap_or(0);
                }
            }
            if weights == 0 {
                0
            } else {
                total / weights
            }
        })
        .collect()
}

pub(crate) fn balanced_allocation(
    snapshot: &Snapshot,
    pod: &PodInfo,
    feasible: &[usize],
) -> Vec<i64> {
    if pod.requests.milli_cpu == 0 && pod.requests.memory == 0 {
        return vec![0; feasible.len()];
    }
    feasible
        .iter()
        .map(|&position| {
            let node = &snapshot.nodes()[position];
            let resources = [
                (
                    node.allocatable().milli_cpu,
                    node.requested()
                        .milli_cpu
                        .saturating_add(pod.requests.milli_cpu),
                ),
                (
                    node.allocatable().memory,
                    node.requested().memory.saturating_add(pod.requests.memory),
                ),
            ];
            let fractions: Vec<f64> = resources
                .iter()
                .filter(|(allocatable, _)| *allocatable != 0)
                .map(|(allocatable, requested)| (*requested as f64 / *allocatable as f64).min(1.0))
                .collect();
            let deviation = match fractions.as_slice() {
                [a, b] => ((a - b) / 2.0).abs(),
                _ => 0.0,
            };
            ((1.0 - deviation) * MAX_NODE_SCORE as f64) as i64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scores::test_support::{info, setup};
    use crate::testing::{NodeBuilder, PodBuilder};

    /// Node "n" with the given cpu and memory allocatable and existing pods' requests.
    fn check(
        scorer: fn(&Snapshot, &PodInfo, &[usize]) -> Vec<i64>,
        node: (&str, &str),
        existing: &[(&str, &str)],
        pod: PodBuilder,
        expected: i64,
    ) {
        let pods = existing
            .iter()
            .enumerate()
            .map(|(i, (cpu, memory))| {
                PodBuilder::new(&format!("old-{i}"))
                    .node("n")
                    .requests(cpu, memory)
            })
            .collect();
        let (snapshot, feasible) =
            setup(vec![NodeBuilder::new("n").cpu(node.0).memory(node.1)], pods);
        assert_eq!(scorer(&snapshot, &info(pod), &feasible), vec![expected]);
    }

    fn pod(cpu: &str, memory: &str) -> PodBuilder {
        PodBuilder::new("p").requests(cpu, memory)
    }

    #[test]
    fn least_allocated_scores() {
        let least = least_allocated;
        check(least, ("4", "8Gi"), &[], pod("0", "0"), 100);
        check(least, ("4", "8Gi"), &[], pod("2", "4Gi"), 50);
        check(least, ("4", "8Gi"), &[("1", "2Gi")], pod("1", "2Gi"), 50);
        check(least, ("4", "8Gi"), &[], pod("4", "8Gi"), 0);
        // (3000*100/4000 + 6Gi*100/8Gi) / 2 = (75 + 75) / 2
        check(least, ("4", "8Gi"), &[], pod("1", "2Gi"), 75);
        // cpu 3.9/4 free -> 97, memory (8Gi-200Mi)/8Gi -> 97
        check(least, ("4", "8Gi"), &[], PodBuilder::new("p"), 97);
        // Requests beyond allocatable score zero for that resource.
        check(least, ("4", "8Gi"), &[("4", "0")], pod("1", "0"), 50);
        check(least, ("0", "0"), &[], pod("1", "1Gi"), 0);
    }

    #[test]
    fn balanced_allocation_scores() {
        let balanced = balanced_allocation;
        check(balanced, ("4", "8Gi"), &[], pod("2", "4Gi"), 100);
        // cpu 50%, memory 25% -> deviation 0.125
        check(balanced, ("4", "8Gi"), &[], pod("2", "2Gi"), 87);
        check(balanced, ("4", "8Gi"), &[("1", "")], pod("1", "4Gi"), 100);
        check(balanced, ("4", "8Gi"), &[], pod("4", "0"), 50);
        // Fractions are capped at 1.
        check(balanced, ("4", "8Gi"), &[("8", "")], pod("1", "0"), 50);
        // Best-effort pods are not scored.
        check(
            balanced,
            ("4", "8Gi"),
            &[("3", "")],
            PodBuilder::new("p"),
            0,
        );
    }
}
