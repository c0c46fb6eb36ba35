//! The per-pod decision of the node agent, as the kubelet's `SyncPod`
//! (`computePodActions`) and `generateAPIPodStatus` make it: from the pod,
//! what the container runtime reports about its sandbox and container
//! instances, the probe results and `now`, decide the next runtime steps
//! and the pod status to publish. Pure: no I/O, time is an input, and what
//! must be remembered between syncs (restart back-off, kills already sent)
//! is [`SyncMemory`], plain data the agent keeps per pod.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};

/// The pod's sandbox: its network namespace and cgroup, made before any
/// container starts and removed after the last one stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    /// The pod IP (`None` for a sandbox without its own network, e.g.
    /// `hostNetwork: true`: then the node's IP is the pod IP).
    pub ip: Option<String>,
    pub created_at: jiff::Timestamp,
}

/// One run of one container (`attempt` 0 is the first run; the restart
/// count is the attempt of the newest instance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInstance {
    pub name: String,
    /// True for an init container.
    pub init: bool,
    pub attempt: u32,
    /// `drover://<pod uid>/<name>/<attempt>` for the process runtime,
    /// `runc://<id>` for OCI containers.
    pub container_id: String,
    /// The image digest (`imageID`), empty for the process runtime.
    pub image_id: String,
    pub state: InstanceState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceState {
    Running {
        started_at: jiff::Timestamp,
    },
    Exited {
        started_at: Option<jiff::Timestamp>,
        finished_at: jiff::Timestamp,
        exit_code: i32,
        /// Set when the kernel's OOM killer ended it (reason `OOMKilled`).
        oom_killed: bool,
        /// The last bytes of its termination message / log, if any.
        message: Option<String>,
    },
    /// Could not be started at all: `reason` is the kubelet's waiting
    /// reason (`ErrImagePull`, `CreateContainerConfigError`,
    /// `CreateContainerError`, `RunContainerError`, …), `message` says why
    /// (the registry's answer, "configmap \"x\" not found", "exec: \"foo\":
    /// executable file not found in $PATH").
    Failed {
        reason: String,
        message: String,
        at: jiff::Timestamp,
    },
}

/// What the runtime reports for one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub sandbox: Option<Sandbox>,
    /// Every instance the runtime still knows: at least the newest of each
    /// container, and the one before it (for `lastState` and `--previous`).
    pub containers: Vec<ContainerInstance>,
}

/// Probe results for the newest instance of each container (the prober
/// starts afresh for every new instance).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeResults {
    /// Readiness by container name; a container without a readiness probe
    /// is absent (ready once started).
    pub readiness: BTreeMap<String, bool>,
    /// Containers whose startup probe has succeeded (or that have none).
    pub started: BTreeSet<String>,
    /// Containers whose liveness (or startup) probe has failed
    /// `failureThreshold` times: to be killed and restarted per policy.
    pub liveness_failed: BTreeMap<String, String>,
}

/// What the agent remembers about one pod between syncs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncMemory {
    /// Restart back-off per container name.
    pub backoff: BTreeMap<String, Backoff>,
    /// Containers (by name and attempt) a kill was already requested for.
    pub killing: BTreeSet<(String, u32)>,
    /// When the pod's termination was first acted on.
    pub terminating_since: Option<jiff::Timestamp>,
}

/// CrashLoopBackOff: 10 s doubling to 5 min; reset once a container ran
/// for 10 min.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub delay: Duration,
    /// No restart before this.
    pub not_before: jiff::Timestamp,
}

pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// Why a container is killed (for events and the terminated reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillReason {
    /// Failed its liveness or startup probe (message from the prober).
    Unhealthy(String),
    /// The pod is being deleted.
    PodDeleted,
    /// `activeDeadlineSeconds` passed.
    DeadlineExceeded,
    /// No longer in the spec (should not happen: containers are immutable).
    NotInSpec,
}

/// One step for the runtime, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Make the network namespace, pod cgroup and volumes.
    CreateSandbox,
    /// Start instance `attempt` of container `name` (an init container if
    /// `init`).
    StartContainer {
        name: String,
        init: bool,
        attempt: u32,
    },
    /// Stop a running instance: preStop hook, SIGTERM, SIGKILL after
    /// `grace`.
    KillContainer {
        name: String,
        attempt: u32,
        grace: Duration,
        reason: KillReason,
    },
    /// Tear down the sandbox (after every container has exited).
    RemoveSandbox,
}

/// A Kubernetes event about the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEvent {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// What one sync decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub steps: Vec<Step>,
    /// The status to publish (the agent writes it when it differs from the
    /// pod's current status).
    pub status: PodStatus,
    pub memory: SyncMemory,
    pub events: Vec<PodEvent>,
    /// Sync again after this long even if nothing changes (back-off ends,
    /// grace periods, deadlines).
    pub requeue_after: Option<Duration>,
    /// The pod is being deleted and nothing of it runs any more: the agent
    /// deletes it with grace period 0 (the kubelet's final delete).
    pub finished: bool,
}

/// The node facts a status needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    /// `status.hostIP`, and the pod IP of `hostNetwork` pods.
    pub host_ip: String,
}

/// Decides the next steps and the status of one pod bound to this node.
pub fn sync_pod(
    pod: &Pod,
    observed: &Observed,
    probes: &ProbeResults,
    memory: &SyncMemory,
    node: &NodeFacts,
    now: jiff::Timestamp,
) -> Decision {
    let _ = (pod, observed, probes, memory, node, now);
    todo!("sync_pod: being written")
}
