//! DefaultPreemption: when no node fits, find a node where evicting lower-priority
//! pods makes room, evicting as few and as unimportant pods as possible, and pick
//! the node by kube-scheduler's criteria. PodDisruptionBudgets are not considered
//! (every candidate counts as violating none).

use std::cmp::{Ordering, Reverse};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::cycle::{CycleState, DynamicState};
use crate::filters::{Code, Rejection};
use crate::pod_info::PodInfo;
use crate::schedule::{fit_error_message, Diagnosis, Preemption};
use crate::snapshot::{NodeInfo, Snapshot};

const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// Preemption evaluates at least 10% of the potential nodes, and at least 100.
const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// A node where preemption works, with the pods to evict (snapshot slots), most
/// important first.
struct Candidate {
    position: usize,
    victims: Vec<usize>,
}

/// Finds the node and victims, or explains (without the `preemption: ` prefix)
/// why preemption cannot help.
pub(crate) fn preempt(
    snapshot: &Snapshot,
    pod: &PodInfo,
    cycle: Option<&CycleState>,
    diagnosis: &Diagnosis,
    tie_break: u64,
) -> Result<Preemption, String> {
    eligible(snapshot, pod, diagnosis)?;
    let all_nodes = snapshot.node_count();
    let explain = |rejections: Vec<(usize, Rejection)>| {
        let diagnosis = Diagnosis {
            rejections,
            absent: Some(Rejection::unresolvable(NOT_HELPFUL)),
            pre_filter_message: None,
        };
        fit_error_message(all_nodes, &diagnosis, None)
    };

    // Only nodes that failed for reasons evicting pods could fix, in node order.
    let mut codes = vec![None; snapshot.nodes().len()];
    for (position, rejection) in &diagnosis.rejections {
        codes[*position] = Some(rejection.code);
    }
    let potential: Vec<usize> = snapshot
        .order()
        .iter()
        .copied()
        .filter(|&position| codes[position] == Some(Code::Unschedulable))
        .collect();
    let Some(cycle) = cycle.filter(|_| !potential.is_empty()) else {
        return Err(explain(Vec::new()));
    };

    let wanted = (potential.len() * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES_ABSOLUTE)
        .min(potential.len());
    let offset = usize::try_from(tie_break % potential.len() as u64).unwrap_or(0);
    let mut candidates = Vec::new();
    let mut rejections = Vec::new();
    for i in 0..potential.len() {
        let position = potential[(offset + i) % potential.len()];
        match select_victims(cycle, position) {
            Ok(victims) => candidates.push(Candidate { position, victims }),
            Err(rejection) => rejections.push((position, rejection)),
        }
        if candidates.len() >= wanted {
            break;
        }
    }
    let Some(best) = pick_candidate(snapshot, candidates) else {
        return Err(explain(rejections));
    };
    let victims = best
        .victims
        .iter()
        .filter_map(|&slot| snapshot.slot(slot))
        .map(|record| (record.info.namespace.clone(), record.info.name.clone()))
        .collect();
    Ok(Preemption {
        node: snapshot.nodes()[best.position].name().to_string(),
        victims,
    })
}

/// `PodEligibleToPreemptOthers`.
fn eligible(snapshot: &Snapshot, pod: &PodInfo, diagnosis: &Diagnosis) -> Result<(), String> {
    let spec = pod.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err("not eligible due to preemptionPolicy=Never.".to_string());
    }
    let nominated = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .and_then(|name| snapshot.node_position(name));
    if let Some(position) = nominated {
        // A nominated node that can never fit is no reason to wait.
        if diagnosis.code_of(position) == Some(Code::UnschedulableAndUnresolvable) {
            return Ok(());
        }
        let victims_still_terminating = snapshot.nodes()[position]
            .pod_slots()
            .iter()
            .filter_map(|&slot| snapshot.slot(slot))
            .any(|record| {
                record.info.priority < pod.priority && terminating_by_preemption(&record.info)
            });
        if victims_still_terminating {
            return Err("not eligible due to a terminating pod on the nominated node.".to_string());
        }
    }
    Ok(())
}

fn terminating_by_preemption(pod: &PodInfo) -> bool {
    pod.terminating
        && pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default()
            .iter()
            .find(|c| c.type_ == "DisruptionTarget")
            .is_some_and(|c| {
                c.status == "True" && c.reason.as_deref() == Some("PreemptionByScheduler")
            })
}

/// A start time for ordering; a pod without one counts as starting now, after all others.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum StartKey {
    At(Time),
    Now,
}

fn start_key(time: Option<&Time>) -> StartKey {
    time.cloned().map_or(StartKey::Now, StartKey::At)
}

/// Higher priority first, then the one running longer (`MoreImportantPod`).
fn more_important(a: &PodInfo, b: &PodInfo) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| start_key(a.start_time()).cmp(&start_key(b.start_time())))
}

/// `SelectVictimsOnNode`: remove every lower-priority pod; if the pod then fits,
/// put back as many as possible, most important first.
fn select_victims<'a>(cycle: &CycleState<'a>, position: usize) -> Result<Vec<usize>, Rejection> {
    let snapshot: &'a Snapshot = cycle.snapshot;
    let pod = cycle.pod;
    let namespaces = snapshot.namespaces();
    let original: &'a NodeInfo = &snapshot.nodes()[position];
    let mut potential: Vec<(usize, &PodInfo)> = original
        .pod_slots()
        .iter()
        .filter_map(|&slot| snapshot.slot(slot).map(|record| (slot, &record.info)))
        .filter(|(_, info)| info.priority < pod.priority)
        .collect();
    if potential.is_empty() {
        return Err(Rejection::unresolvable(NO_VICTIMS));
    }
    let mut node = original.clone();
    let mut dynamic = cycle.dynamic.clone();
    let apply = |node: &mut NodeInfo,
                 dynamic: &mut DynamicState<'a>,
                 slot,
                 info: &PodInfo,
                 delta| {
        if delta > 0 {
            node.add_pod(slot, info);
        } else {
            node.remove_pod(slot, info);
        }
        dynamic
            .inter_pod_affinity
            .update_with_pod(info, pod, original, namespaces, delta);
        dynamic
            .spread
            .update_with_pod(info, pod, original, &cycle.required_node_affinity, delta);
    };
    for &(slot, info) in &potential {
        apply(&mut node, &mut dynamic, slot, info, -1);
    }
    cycle.filter_with_nominated_pods(&dynamic, &node)?;

    potential.sort_by(|(_, a), (_, b)| more_important(a, b));
    let mut victims = Vec::new();
    for (slot, info) in potential {
        apply(&mut node, &mut dynamic, slot, info, 1);
        if cycle.filter_with_nominated_pods(&dynamic, &node).is_err() {
            apply(&mut node, &mut dynamic, slot, info, -1);
            victims.push(slot);
        }
    }
    Ok(victims)
}

/// `pickOneNodeForPreemption` without PodDisruptionBudgets: a node needing no
/// eviction, else the lowest highest victim priority, then the smallest sum of
/// victim priorities, the fewest victims, the latest start among the most
/// important victims, and finally the first candidate. Applying the criteria one
/// after the other is the same as taking the smallest key tuple.
fn pick_candidate(snapshot: &Snapshot, candidates: Vec<Candidate>) -> Option<Candidate> {
    let key = |candidate: &Candidate| {
        let victims: Vec<&PodInfo> = candidate
            .victims
            .iter()
            .filter_map(|&slot| snapshot.slot(slot))
            .map(|record| &record.info)
            .collect();
        let highest = victims.iter().map(|p| p.priority).max().unwrap_or(i32::MIN);
        // Shifted so that more victims never look cheaper because of negative priorities.
        let sum: i64 = victims
            .iter()
            .map(|p| i64::from(p.priority) + i64::from(i32::MAX) + 1)
            .sum();
        let earliest_start = victims
            .iter()
            .filter(|p| p.priority == highest)
            .map(|p| start_key(p.start_time()))
            .min()
            .unwrap_or(StartKey::Now);
        (
            !victims.is_empty(),
            highest,
            sum,
            victims.len(),
            Reverse(earliest_start),
        )
    };
    candidates.into_iter().min_by_key(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder};

    fn candidate_pick(pods: Vec<PodBuilder>, candidates: &[(&str, &[&str])]) -> String {
        let nodes = candidates
            .iter()
            .map(|(node, _)| NodeBuilder::new(node).build())
            .collect();
        let snapshot = Snapshot::new(
            nodes,
            pods.into_iter().map(PodBuilder::build).collect(),
            vec![],
            vec![],
        );
        let slot_of = |name: &str| {
            snapshot
                .nodes()
                .iter()
                .flat_map(|n| n.pod_slots())
                .copied()
                .find(|&slot| snapshot.slot(slot).is_some_and(|r| r.info.name == name))
        };
        let candidates = candidates
            .iter()
            .map(|(node, victims)| Candidate {
                position: snapshot.node_position(node).unwrap_or(0),
                victims: victims.iter().filter_map(|v| slot_of(v)).collect(),
            })
            .collect();
        pick_candidate(&snapshot, candidates)
            .map(|c| snapshot.nodes()[c.position].name().to_string())
            .unwrap_or_default()
    }

    fn victim(name: &str, node: &str, priority: i32) -> PodBuilder {
        PodBuilder::new(name).node(node).priority(priority)
    }

    #[test]
    fn picks_the_cheapest_node() {
        // Lowest highest-priority victim wins.
        let pods = vec![
            victim("a1", "a", 10),
            victim("b1", "b", 5),
            victim("b2", "b", 5),
        ];
        assert_eq!(
            candidate_pick(pods, &[("a", &["a1"]), ("b", &["b1", "b2"])]),
            "b"
        );
        // Then the smallest sum of priorities.
        let pods = vec![
            victim("a1", "a", 5),
            victim("a2", "a", 1),
            victim("b1", "b", 5),
            victim("b2", "b", 2),
        ];
        assert_eq!(
            candidate_pick(pods, &[("a", &["a1", "a2"]), ("b", &["b1", "b2"])]),
            "a"
        );
        // Then the fewest victims (negative priorities are shifted, not rewarded).
        let pods = vec![
            victim("a1", "a", -5),
            victim("a2", "a", -5),
            victim("b1", "b", -5),
        ];
        assert_eq!(
            candidate_pick(pods, &[("a", &["a1", "a2"]), ("b", &["b1"])]),
            "b"
        );
        // Then the latest start of the most important victims.
        let pods = vec![
            victim("a1", "a", 1).started(100),
            victim("b1", "b", 1).started(200),
        ];
        assert_eq!(candidate_pick(pods, &[("a", &["a1"]), ("b", &["b1"])]), "b");
        let pods = vec![victim("a1", "a", 1), victim("b1", "b", 1).started(200)];
        assert_eq!(candidate_pick(pods, &[("a", &["a1"]), ("b", &["b1"])]), "a");
        // Then the first candidate.
        let pods = vec![victim("a1", "a", 1), victim("b1", "b", 1)];
        assert_eq!(candidate_pick(pods, &[("a", &["a1"]), ("b", &["b1"])]), "a");
        // A node without victims beats everything.
        let pods = vec![victim("a1", "a", 1)];
        assert_eq!(candidate_pick(pods, &[("a", &["a1"]), ("b", &[])]), "b");
    }

    #[test]
    fn importance_order() {
        let pod = |priority: i32, started: Option<i64>| {
            let builder = PodBuilder::new("p").priority(priority);
            PodInfo::new(match started {
                Some(s) => builder.started(s).build(),
                None => builder.build(),
            })
        };
        assert_eq!(
            more_important(&pod(10, None), &pod(5, Some(1))),
            Ordering::Less
        );
        assert_eq!(
            more_important(&pod(5, Some(1)), &pod(5, Some(2))),
            Ordering::Less
        );
        assert_eq!(
            more_important(&pod(5, None), &pod(5, Some(2))),
            Ordering::Greater
        );
        assert_eq!(
            more_important(&pod(5, None), &pod(5, None)),
            Ordering::Equal
        );
    }
}
