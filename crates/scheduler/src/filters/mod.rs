//! Filters: whether a pod may run on a node, one module per kube-scheduler plugin,
//! each rejecting with that plugin's reason strings and status code.

pub(crate) mod inter_pod_affinity;
pub(crate) mod node_affinity;
pub(crate) mod node_name;
pub(crate) mod node_ports;
pub(crate) mod node_resources_fit;
pub(crate) mod node_unschedulable;
pub(crate) mod pod_topology_spread;
pub(crate) mod taint_toleration;
pub(crate) mod volume_binding;

/// How final a rejection is, which decides whether preemption may help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Code {
    /// Removing pods from the node could make the pod fit.
    Unschedulable,
    /// Nothing preemption does changes the outcome on this node.
    UnschedulableAndUnresolvable,
}

/// Why a node cannot take the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) code: Code,
    pub(crate) reasons: Vec<String>,
}

impl Rejection {
    pub(crate) fn unschedulable(reason: impl Into<String>) -> Rejection {
        Rejection {
            code: Code::Unschedulable,
            reasons: vec![reason.into()],
        }
    }

    pub(crate) fn unresolvable(reason: impl Into<String>) -> Rejection {
        Rejection {
            code: Code::UnschedulableAndUnresolvable,
            reasons: vec![reason.into()],
        }
    }
}

pub(crate) type FilterResult = Result<(), Rejection>;

/// Renders a filter result for table tests: `None` when the node fits, else the
/// reasons joined with `, `.
#[cfg(test)]
pub(crate) fn outcome(result: FilterResult) -> Option<String> {
    result.err().map(|rejection| rejection.reasons.join(", "))
}
