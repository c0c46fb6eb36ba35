//! One scheduling cycle's state: the PreFilter results computed once for the pod,
//! and running every filter, in kube-scheduler's plugin order, against a node.

use crate::filters::inter_pod_affinity::{self, InterPodAffinityState};
use crate::filters::pod_topology_spread::{self, SpreadState};
use crate::filters::volume_binding::{self, VolumeState};
use crate::filters::{
    node_affinity, node_name, node_ports, node_resources_fit, node_unschedulable, taint_toleration,
    FilterResult, Rejection,
};
use crate::node_selector::RequiredNodeAffinity;
use crate::pod_info::PodInfo;
use crate::snapshot::{NodeInfo, Snapshot};

/// The parts of the cycle state that change when preemption removes pods.
#[derive(Clone, Debug, Default)]
pub(crate) struct DynamicState<'a> {
    pub(crate) inter_pod_affinity: InterPodAffinityState,
    pub(crate) spread: SpreadState<'a>,
}

pub(crate) struct CycleState<'a> {
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) pod: &'a PodInfo,
    pub(crate) required_node_affinity: RequiredNodeAffinity,
    pub(crate) volumes: VolumeState,
    pub(crate) dynamic: DynamicState<'a>,
    /// Node names NodeAffinity's PreFilter pinned the pod to, if it did.
    pub(crate) pinned_nodes: Option<Vec<String>>,
}

/// A PreFilter rejection: the whole cycle fails with this message for every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PreFilterRejection {
    pub(crate) message: String,
}

impl<'a> CycleState<'a> {
    /// Runs the PreFilter extension point in plugin order (NodeAffinity,
    /// VolumeBinding, PodTopologySpread, InterPodAffinity).
    pub(crate) fn new(
        snapshot: &'a Snapshot,
        pod: &'a PodInfo,
    ) -> Result<CycleState<'a>, PreFilterRejection> {
        let into_message = |rejection: Rejection| PreFilterRejection {
            message: rejection.reasons.join(", "),
        };
        let pinned_nodes = node_affinity::pre_filter(&pod.pod).map_err(into_message)?;
        let volumes = volume_binding::pre_filter(snapshot, pod).map_err(into_message)?;
        let required_node_affinity = RequiredNodeAffinity::of(&pod.pod);
        let spread = pod_topology_spread::pre_filter(snapshot, pod, &required_node_affinity);
        let inter_pod_affinity = inter_pod_affinity::pre_filter(snapshot, pod);
        Ok(CycleState {
            snapshot,
            pod,
            required_node_affinity,
            volumes,
            dynamic: DynamicState {
                inter_pod_affinity,
                spread,
            },
            pinned_nodes,
        })
    }

    /// Runs the filters in kube-scheduler's default order; the first rejection wins.
    pub(crate) fn filter(&self, dynamic: &DynamicState, node: &NodeInfo) -> FilterResult {
        node_unschedulable::filter(self.pod, node)?;
        node_name::filter(self.pod, node)?;
        taint_toleration::filter(self.pod, node)?;
        node_affinity::filter(&self.required_node_affinity, node)?;
        node_ports::filter(self.pod, node)?;
        node_resources_fit::filter(self.pod, node)?;
        volume_binding::filter(&self.volumes, node)?;
        pod_topology_spread::filter(&dynamic.spread, self.pod, node)?;
        inter_pod_affinity::filter(
            &dynamic.inter_pod_affinity,
            self.pod,
            self.snapshot.namespaces(),
            node,
        )
    }

    /// Runs the filters with the pods nominated to the node (by earlier preemptions)
    /// that are at least as important as this one counted as if already there, so
    /// their room is not taken. Only their resources, ports and pod count are
    /// accounted; they do not take part in affinity or spreading.
    pub(crate) fn filter_with_nominated_pods(
        &self,
        dynamic: &DynamicState,
        node: &NodeInfo,
    ) -> FilterResult {
        let mut nominated = self
            .snapshot
            .nominated_on(node.name())
            .filter(|p| p.info.priority >= self.pod.priority)
            .filter(|p| p.info.namespace != self.pod.namespace || p.info.name != self.pod.name)
            .peekable();
        if nominated.peek().is_none() {
            return self.filter(dynamic, node);
        }
        let mut with_nominated = node.clone();
        for record in nominated {
            with_nominated.add_pod(usize::MAX, &record.info);
        }
        self.filter(dynamic, &with_nominated)
    }
}
