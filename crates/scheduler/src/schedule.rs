//! `schedule`: PreFilter, Filter over as many nodes as needed, Score, and
//! selection, or the unschedulable message and preemption when no node fits —
//! kube-scheduler's scheduling cycle as one pure function.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::cycle::CycleState;
use crate::filters::{Code, Rejection};
use crate::pod_info::PodInfo;
use crate::preemption;
use crate::scores;
use crate::snapshot::Snapshot;

/// Below this many nodes every node is evaluated.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never goes below this.
const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// How `schedule` searches and breaks ties. The caller keeps the state between
/// calls (kube-scheduler keeps it in the scheduler), so `schedule` stays pure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleOptions {
    /// Stop filtering once this percentage of the nodes has been found feasible
    /// (at least 100 nodes). `None` or `Some(0)` uses kube-scheduler's adaptive
    /// default: `50 - nodes/125` percent, at least 5%.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// The position in the snapshot's node order where filtering starts. Feed
    /// back the decision's `next_start_index` so every node gets its turn.
    pub start_index: usize,
    /// Seed that picks among equally scored nodes (and where preemption starts
    /// looking), so results are reproducible.
    pub tie_break: u64,
}

/// Where a pod goes, or why it goes nowhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Bind the pod to `node`.
    Bind {
        /// The chosen node.
        node: String,
        /// How many nodes were filtered.
        evaluated_nodes: usize,
        /// How many of them fit.
        feasible_nodes: usize,
        /// The `start_index` for the next call: `(start_index + evaluated_nodes) % nodes`.
        next_start_index: usize,
    },
    /// No node fits. `message` is kube-scheduler's (for the `PodScheduled`
    /// condition and the `FailedScheduling` event). Every candidate node was
    /// filtered, so the caller keeps its `start_index`.
    Unschedulable {
        /// e.g. `0/3 nodes are available: 3 Insufficient cpu. preemption: ...`
        message: String,
        /// Pods to evict so the pod fits on a node next time, if preemption found any.
        preemption: Option<Preemption>,
    },
}

/// The result of DefaultPreemption: delete `victims` (gracefully) and set the
/// pod's `status.nominatedNodeName` to `node`; the pod is scheduled again once
/// the victims are gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preemption {
    /// The node the pod is nominated to.
    pub node: String,
    /// `(namespace, name)` of the pods to evict, most important first.
    pub victims: Vec<(String, String)>,
}

/// Why each node was rejected, as kube-scheduler's `Diagnosis`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Diagnosis {
    /// Rejections of the nodes that were filtered, by snapshot position.
    pub(crate) rejections: Vec<(usize, Rejection)>,
    /// The rejection of every node not in `rejections`.
    pub(crate) absent: Option<Rejection>,
    /// A PreFilter rejection, which replaces the per-node reasons in the message.
    pub(crate) pre_filter_message: Option<String>,
}

impl Diagnosis {
    /// The code of a node's rejection, explicit or as an absent node.
    pub(crate) fn code_of(&self, position: usize) -> Option<Code> {
        self.rejections
            .iter()
            .find(|(p, _)| *p == position)
            .map(|(_, r)| r.code)
            .or_else(|| self.absent.as_ref().map(|r| r.code))
    }
}

/// kube-scheduler's `FitError.Error()`: `0/N nodes are available: ` then the
/// PreFilter message or `count reason` pairs sorted as strings, then the
/// PostFilter (preemption) message.
pub(crate) fn fit_error_message(
    all_nodes: usize,
    diagnosis: &Diagnosis,
    post_filter: Option<&str>,
) -> String {
    let mut message = format!("0/{all_nodes} nodes are available:");
    if let Some(pre_filter) = &diagnosis.pre_filter_message {
        message.push_str(&format!(" {pre_filter}."));
    } else {
        let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, rejection) in &diagnosis.rejections {
            for reason in &rejection.reasons {
                *histogram.entry(reason).or_default() += 1;
            }
        }
        let absent_nodes = all_nodes.saturating_sub(diagnosis.rejections.len());
        if absent_nodes > 0 {
            for reason in diagnosis.absent.iter().flat_map(|r| &r.reasons) {
                *histogram.entry(reason).or_default() += absent_nodes;
            }
        }
        let mut reasons: Vec<String> = histogram
            .into_iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        reasons.sort();
        if !reasons.is_empty() {
            message.push_str(&format!(" {}.", reasons.join(", ")));
        }
    }
    if let Some(post_filter) = post_filter {
        message.push(' ');
        message.push_str(post_filter);
    }
    message
}

/// How many feasible nodes to find before scoring (`numFeasibleNodesToFind`).
fn feasible_nodes_to_find(percentage: Option<u32>, nodes: usize) -> usize {
    if nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return nodes;
    }
    let percentage = match percentage {
        Some(p) if p > 0 => usize::try_from(p).unwrap_or(usize::MAX),
        _ => 50usize
            .saturating_sub(nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND),
    };
    (nodes.saturating_mul(percentage) / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Schedules one pod against the snapshot: returns the node to bind it to, or the
/// reason no node fits together with the pods whose eviction would make room.
/// The snapshot is not changed; to schedule several pods, add each bound pod to
/// the snapshot (with `spec.nodeName` set) before the next call.
pub fn schedule(snapshot: &Snapshot, pod: &Pod, options: &ScheduleOptions) -> Decision {
    schedule_shared(snapshot, &Arc::new(pod.clone()), options)
}

/// [`schedule`] of a pod held in an `Arc` (an informer cache's), which the
/// scheduling cycle then shares instead of copying.
pub fn schedule_shared(snapshot: &Snapshot, pod: &Arc<Pod>, options: &ScheduleOptions) -> Decision {
    let unschedulable = |message: String| Decision::Unschedulable {
        message,
        preemption: None,
    };
    let gates: Vec<&str> = pod
        .spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    if !gates.is_empty() {
        return unschedulable(format!(
            "waiting for scheduling gates: [{}]",
            gates.join(" ")
        ));
    }
    let all_nodes = snapshot.node_count();
    if all_nodes == 0 {
        return unschedulable("no nodes available to schedule pods".to_string());
    }
    let pod_info = PodInfo::new(pod.clone());
    let cycle = match CycleState::new(snapshot, &pod_info) {
        Ok(cycle) => cycle,
        Err(rejection) => {
            let diagnosis = Diagnosis {
                rejections: Vec::new(),
                absent: Some(Rejection::unresolvable(rejection.message.clone())),
                pre_filter_message: Some(rejection.message),
            };
            return fail(snapshot, &pod_info, None, &diagnosis, options);
        }
    };

    // A node this pod preempted for is likely the only one with room: try it first.
    let nominated = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .and_then(|name| snapshot.node_position(name));
    if let Some(position) = nominated {
        let node = &snapshot.nodes()[position];
        if cycle
            .filter_with_nominated_pods(&cycle.dynamic, node)
            .is_ok()
        {
            return Decision::Bind {
                node: node.name().to_string(),
                evaluated_nodes: 1,
                feasible_nodes: 1,
                next_start_index: options.start_index,
            };
        }
    }

    let mut diagnosis = Diagnosis::default();
    let candidates: Cow<[usize]> = match &cycle.pinned_nodes {
        None => Cow::Borrowed(snapshot.order()),
        Some(names) => {
            diagnosis.absent = Some(Rejection::unresolvable(
                "node(s) didn't satisfy plugin(s) [NodeAffinity]",
            ));
            snapshot
                .order()
                .iter()
                .copied()
                .filter(|&position| names.iter().any(|n| n == snapshot.nodes()[position].name()))
                .collect::<Vec<usize>>()
                .into()
        }
    };
    let to_find = feasible_nodes_to_find(options.percentage_of_nodes_to_score, candidates.len());
    let start = options.start_index % candidates.len().max(1);
    let mut feasible = Vec::new();
    for i in 0..candidates.len() {
        let position = candidates[(start + i) % candidates.len()];
        match cycle.filter_with_nominated_pods(&cycle.dynamic, &snapshot.nodes()[position]) {
            Ok(()) => {
                feasible.push(position);
                if feasible.len() >= to_find {
                    break;
                }
            }
            Err(rejection) => diagnosis.rejections.push((position, rejection)),
        }
    }
    let processed = feasible.len() + diagnosis.rejections.len();
    let next_start_index = (options.start_index % all_nodes + processed) % all_nodes;
    let evaluated_nodes = processed;

    match feasible.as_slice() {
        [] => fail(snapshot, &pod_info, Some(&cycle), &diagnosis, options),
        [only] => Decision::Bind {
            node: snapshot.nodes()[*only].name().to_string(),
            evaluated_nodes,
            feasible_nodes: 1,
            next_start_index,
        },
        _ => {
            let totals = scores::total_scores(&cycle, &feasible);
            let best = totals.iter().copied().max().unwrap_or(0);
            let top: Vec<usize> = feasible
                .iter()
                .zip(&totals)
                .filter(|(_, total)| **total == best)
                .map(|(position, _)| *position)
                .collect();
            let pick = usize::try_from(options.tie_break % top.len() as u64).unwrap_or(0);
            Decision::Bind {
                node: snapshot.nodes()[top[pick]].name().to_string(),
                evaluated_nodes,
                feasible_nodes: feasible.len(),
                next_start_index,
            }
        }
    }
}

/// The unschedulable decision: the fit error, with either a preemption or
/// preemption's own explanation appended.
fn fail(
    snapshot: &Snapshot,
    pod: &PodInfo,
    cycle: Option<&CycleState>,
    diagnosis: &Diagnosis,
    options: &ScheduleOptions,
) -> Decision {
    let all_nodes = snapshot.node_count();
    match preemption::preempt(snapshot, pod, cycle, diagnosis, options.tie_break) {
        Ok(preemption) => Decision::Unschedulable {
            message: fit_error_message(all_nodes, diagnosis, None),
            preemption: Some(preemption),
        },
        Err(explanation) => Decision::Unschedulable {
            message: fit_error_message(
                all_nodes,
                diagnosis,
                Some(&format!("preemption: {explanation}")),
            ),
            preemption: None,
        },
    }
}

#[cfg(test)]
mod tests;
