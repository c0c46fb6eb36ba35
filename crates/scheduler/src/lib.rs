//! drover's pod scheduler: kube-scheduler's default plugins as a pure function over a cluster snapshot, so placement is deterministic and testable without a server.
//!
//! `schedule(&Snapshot, &Pod, &ScheduleOptions) -> Decision` binds the pod to a node,
//! or returns kube-scheduler's exact unschedulable message and, when evicting
//! lower-priority pods would make room, a `Preemption`. There is no I/O, clock or
//! randomness inside: the caller owns the snapshot (and keeps it current with
//! `add_pod`, `remove_pod`, `upsert_node`, ...), the start index and the tie-break seed.
//!
//! Filters, in kube-scheduler's order: NodeUnschedulable, NodeName,
//! TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit, VolumeBinding (bound
//! claims), PodTopologySpread, InterPodAffinity. Scores: TaintToleration (3),
//! NodeAffinity (2), NodeResourcesFit LeastAllocated (1), PodTopologySpread (2),
//! InterPodAffinity (2), NodeResourcesBalancedAllocation (1). PostFilter:
//! DefaultPreemption.
//!
//! ```
//! use scheduler::{schedule, Decision, ScheduleOptions, Snapshot};
//! # use k8s_openapi::api::core::v1::{Node, Pod};
//! # let nodes: Vec<Node> = vec![];
//! # let pending: Vec<Pod> = vec![];
//! let mut snapshot = Snapshot::new(nodes, vec![], vec![], vec![]);
//! let mut options = ScheduleOptions::default();
//! for pod in pending {
//!     if let Decision::Bind { node, next_start_index, .. } = schedule(&snapshot, &pod, &options) {
//!         options.start_index = next_start_index;
//!         // Assume the binding so the next pod sees it.
//!         let mut bound = pod.clone();
//!         bound.spec.get_or_insert_with(Default::default).node_name = Some(node);
//!         snapshot.add_pod(bound);
//!     }
//! }
//! ```

#![warn(missing_docs)]

mod cycle;
mod filters;
mod labels;
mod node_selector;
mod pod_info;
mod ports;
mod preemption;
pub mod quantity;
mod resources;
mod schedule;
mod scores;
mod snapshot;
mod spread;
mod taints;
#[cfg(test)]
mod testing;

pub use ports::{HostPort, UsedPorts};
pub use resources::Resources;
pub use schedule::{schedule, schedule_shared, Decision, Preemption, ScheduleOptions};
pub use snapshot::{NodeInfo, Snapshot};
