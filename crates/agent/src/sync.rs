//! The per-pod decision of the node agent, as the kubelet's `SyncPod`
//! (`computePodActions`) and `generateAPIPodStatus` make it: from the pod,
//! what the container runtime reports about its sandbox and container
//! instances, the probe results and `now`, decide the next runtime steps
//! and the pod status to publish. Pure: no I/O, time is an input, and what
//! must be remembered between syncs (restart back-off, kills already sent)
//! is [`SyncMemory`], plain data the agent keeps per pod.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

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
    /// The last `FailedMount` message reported and when (reported again
    /// when it changes or [`FAILED_MOUNT_REPEAT`] passed).
    pub failed_mount: Option<(String, jiff::Timestamp)>,
}

/// How often a volume that cannot be set up is retried.
pub const VOLUME_RETRY: Duration = Duration::from_secs(2);
/// How often the same `FailedMount` event is written again.
pub const FAILED_MOUNT_REPEAT: Duration = Duration::from_secs(30);

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

impl Step {
    /// A short name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Step::CreateSandbox => "sandbox",
            Step::StartContainer { .. } => "start",
            Step::KillContainer { .. } => "kill",
            Step::RemoveSandbox => "remove",
        }
    }
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
    /// Whether privileged containers may run here (the kubelet's
    /// `--allow-privileged`); a pod asking for one is rejected.
    pub allow_privileged: bool,
}

/// Why this node refuses to run `pod`, as the kubelet's admission says it
/// (`pod with UID … specified privileged container, but is disallowed`).
pub fn admission_rejection(pod: &Pod, node: &NodeFacts) -> Option<String> {
    if node.allow_privileged {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let privileged = |c: &Container| {
        c.security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false)
    };
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    if spec.containers.iter().any(privileged) {
        return Some(format!(
            "pod with UID \"{uid}\" specified privileged container, but is disallowed"
        ));
    }
    if spec.init_containers.iter().flatten().any(privileged) {
        return Some(format!(
            "pod with UID \"{uid}\" specified privileged init container, but is disallowed"
        ));
    }
    None
}

/// The kubelet's reason for a pod its admission refused.
const REJECTED_REASON: &str = "Forbidden";

/// The poll interval while a kill is in progress or the sandbox is being
/// torn down.
const KILL_POLL: Duration = Duration::from_secs(1);
/// `terminationGracePeriodSeconds` when the pod does not say.
const DEFAULT_GRACE_SECONDS: i64 = 30;
/// The kubelet's `minimumGracePeriodInSeconds` for kills it starts itself
/// (liveness / startup probe failures).
const MINIMUM_GRACE_SECONDS: i64 = 2;

const DEADLINE_REASON: &str = "DeadlineExceeded";
const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// Waiting reasons of an image pull that failed; the kubelet backs off
/// pulling again and shows `ImagePullBackOff` meanwhile.
const PULL_FAILURES: [&str; 3] = [
    "ErrImagePull",
    "RegistryUnavailable",
    "SignatureValidationFailed",
];

/// Decides the next steps and the status of one pod bound to this node.
///
/// In order of precedence:
/// 1. the pod is being deleted: kill what runs (once per instance), remove
///    the sandbox once nothing runs, `finished` once nothing is left;
/// 2. the pod is finished (`Succeeded`/`Failed`) or its
///    `activeDeadlineSeconds` passed: kill what still runs, start nothing,
///    remove the sandbox once nothing runs;
/// 3. no sandbox: create it (nothing else this sync);
/// 4. init containers one at a time, then every regular container, with
///    restarts per `restartPolicy` under CrashLoopBackOff, liveness kills.
///
/// Back-off follows the kubelet's `doBackOff`: the first restart after a
/// crash is immediate and arms a 10 s window; a later crash within the
/// window's reach waits `delay` after its `finishedAt`, and the next
/// restart doubles the delay (5 min at most). A container that ran more
/// than [`BACKOFF_RESET_AFTER`] since its restart starts over at 10 s.
pub fn sync_pod(
    pod: &Pod,
    observed: &Observed,
    probes: &ProbeResults,
    memory: &SyncMemory,
    node: &NodeFacts,
    now: jiff::Timestamp,
) -> Decision {
    sync_pod_with_volumes(pod, observed, probes, memory, node, &[], now)
}

/// [`sync_pod`] with the volume manager's answer: `volume_errors` are the
/// `FailedMount` messages of volumes that could not be set up. As the
/// kubelet's `WaitForAttachAndMount`, a pod whose volumes are not all set
/// up gets no sandbox (it stays `ContainerCreating`), a `FailedMount`
/// warning, and a retry after [`VOLUME_RETRY`].
pub fn sync_pod_with_volumes(
    pod: &Pod,
    observed: &Observed,
    probes: &ProbeResults,
    memory: &SyncMemory,
    node: &NodeFacts,
    volume_errors: &[String],
    now: jiff::Timestamp,
) -> Decision {
    let default_spec = PodSpec::default();
    let default_status = PodStatus::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let old = pod.status.as_ref().unwrap_or(&default_status);
    let cx = Cx {
        pod,
        spec,
        old,
        observed,
        probes,
        now,
        policy: Policy::of(spec.restart_policy.as_deref()),
        pod_ref: format!(
            "{}_{}({})",
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.uid.as_deref().unwrap_or_default()
        ),
    };
    let mut out = Out {
        steps: Vec::new(),
        events: Vec::new(),
        memory: memory.clone(),
        wake: Vec::new(),
        waiting: BTreeMap::new(),
    };
    cx.prune_memory(&mut out.memory);

    let deleting = pod.metadata.deletion_timestamp.is_some();
    let old_terminal = is_terminal(old.phase.as_deref());
    if !deleting && !old_terminal {
        if let Some(message) = admission_rejection(pod, node) {
            // The kubelet's rejectPod: a warning event and a Failed status
            // with nothing else; the next sync (terminal) stops whatever
            // runs.
            return Decision {
                status: PodStatus {
                    phase: Some("Failed".into()),
                    reason: Some(REJECTED_REASON.into()),
                    message: Some(format!("Pod was rejected: {message}")),
                    qos_class: old.qos_class.clone(),
                    ..PodStatus::default()
                },
                events: vec![event(true, REJECTED_REASON, &message)],
                memory: out.memory,
                ..Decision::default()
            };
        }
    }
    let start_time = old.start_time.as_ref().map(|t| t.0).unwrap_or(now);
    let deadline = spec
        .active_deadline_seconds
        .map(|s| add(start_time, seconds(s)));
    let deadline_exceeded = !deleting && !old_terminal && deadline.is_some_and(|d| now >= d);

    if deleting {
        let grace = cx.deletion_grace();
        cx.kill_running(&mut out, grace, KillReason::PodDeleted, None);
        out.memory.terminating_since.get_or_insert(now);
    } else if old_terminal || deadline_exceeded {
        let reason = if deadline_exceeded || old.reason.as_deref() == Some(DEADLINE_REASON) {
            KillReason::DeadlineExceeded
        } else {
            KillReason::PodDeleted
        };
        if deadline_exceeded {
            out.events
                .push(event(false, DEADLINE_REASON, DEADLINE_MESSAGE));
        }
        cx.kill_running(&mut out, cx.deletion_grace(), reason, None);
    } else if observed.sandbox.is_none() {
        // A pod that must not restart and whose containers already ran
        // does not get a new sandbox (computePodActions).
        let ran = observed
            .containers
            .iter()
            .any(|i| !matches!(i.state, InstanceState::Failed { .. }));
        if !volume_errors.is_empty() {
            let message = volume_errors.join("; ");
            let repeat = match &out.memory.failed_mount {
                Some((last, at)) => *last != message || add(*at, FAILED_MOUNT_REPEAT) <= now,
                None => true,
            };
            if repeat {
                for e in volume_errors {
                    out.events.push(event(true, "FailedMount", e));
                }
                out.memory.failed_mount = Some((message, now));
            }
            out.wake.push(add(now, VOLUME_RETRY));
        } else if !(cx.policy == Policy::Never && ran) {
            out.memory.failed_mount = None;
            out.steps.push(Step::CreateSandbox);
        }
        if let Some(d) = deadline {
            out.wake.push(d);
        }
    } else {
        cx.run(&mut out);
        if let Some(d) = deadline {
            out.wake.push(d);
        }
    }

    let any_running = observed
        .containers
        .iter()
        .any(|i| matches!(i.state, InstanceState::Running { .. }));
    let restarts_allowed = !(deleting || old_terminal || deadline_exceeded);
    let mut status = cx.status(
        &out,
        node,
        start_time,
        restarts_allowed,
        deleting && !any_running,
    );
    if deadline_exceeded {
        status.phase = Some("Failed".into());
        status.reason = Some(DEADLINE_REASON.into());
        status.message = Some(DEADLINE_MESSAGE.into());
        cx.set_conditions(&mut status, observed.sandbox.is_some());
    }

    let mut finished = false;
    if !any_running {
        let terminal = is_terminal(status.phase.as_deref());
        if observed.sandbox.is_some() && (deleting || terminal) {
            out.steps.push(Step::RemoveSandbox);
            if deleting {
                out.wake.push(add(now, KILL_POLL));
            }
        } else if observed.sandbox.is_none() && deleting {
            finished = true;
        }
    } else if !out.memory.killing.is_empty() || deleting {
        out.wake.push(add(now, KILL_POLL));
    }

    let requeue_after = out
        .wake
        .iter()
        .min()
        .map(|t| Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO));
    Decision {
        steps: out.steps,
        status,
        memory: out.memory,
        events: out.events,
        requeue_after,
        finished,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    Always,
    OnFailure,
    Never,
}

impl Policy {
    fn of(policy: Option<&str>) -> Policy {
        match policy {
            Some("Never") => Policy::Never,
            Some("OnFailure") => Policy::OnFailure,
            _ => Policy::Always,
        }
    }
}

/// The inputs of one sync.
struct Cx<'a> {
    pod: &'a Pod,
    spec: &'a PodSpec,
    old: &'a PodStatus,
    observed: &'a Observed,
    probes: &'a ProbeResults,
    now: jiff::Timestamp,
    policy: Policy,
    /// `format.Pod`: `NAME_NAMESPACE(UID)`.
    pod_ref: String,
}

/// What one sync produces besides the status.
struct Out {
    steps: Vec<Step>,
    events: Vec<PodEvent>,
    memory: SyncMemory,
    /// Times to sync again at.
    wake: Vec<jiff::Timestamp>,
    /// Waiting state (reason, message) shown instead of the observed one,
    /// by (init, container name).
    waiting: BTreeMap<(bool, String), (String, String)>,
}

/// The instances of one container, newest first; a `Failed` instance sorts
/// after a real one of the same attempt.
struct History<'a> {
    all: Vec<&'a ContainerInstance>,
}

impl<'a> History<'a> {
    fn newest(&self) -> Option<&'a ContainerInstance> {
        self.all.first().copied()
    }

    /// Instances that really ran (running or exited), newest first.
    fn ran(&self) -> Vec<&'a ContainerInstance> {
        self.all
            .iter()
            .copied()
            .filter(|i| !matches!(i.state, InstanceState::Failed { .. }))
            .collect()
    }
}

impl Cx<'_> {
    fn containers(&self, init: bool) -> &[Container] {
        if init {
            self.spec.init_containers.as_deref().unwrap_or_default()
        } else {
            &self.spec.containers
        }
    }

    fn history(&self, name: &str, init: bool) -> History<'_> {
        let mut all: Vec<&ContainerInstance> = self
            .observed
            .containers
            .iter()
            .filter(|i| i.name == name && i.init == init)
            .collect();
        all.sort_by_key(|i| {
            (
                std::cmp::Reverse(i.attempt),
                matches!(i.state, InstanceState::Failed { .. }),
            )
        });
        History { all }
    }

    /// Drops memory about containers no longer in the spec and kills that
    /// are over (the instance no longer runs).
    fn prune_memory(&self, memory: &mut SyncMemory) {
        let names: BTreeSet<&str> = self
            .containers(true)
            .iter()
            .chain(self.containers(false))
            .map(|c| c.name.as_str())
            .collect();
        memory
            .backoff
            .retain(|name, _| names.contains(name.as_str()));
        memory.killing.retain(|(name, attempt)| {
            self.observed.containers.iter().any(|i| {
                &i.name == name
                    && i.attempt == *attempt
                    && matches!(i.state, InstanceState::Running { .. })
            })
        });
    }

    /// The grace period of a pod-level kill: `deletionGracePeriodSeconds`,
    /// else `terminationGracePeriodSeconds`, else 30 s.
    fn deletion_grace(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or(self.spec.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE_SECONDS);
        Duration::from_secs(secs.max(0) as u64)
    }

    /// Kills every running instance a kill was not yet sent for ("Stopping
    /// container NAME" unless `message` says otherwise).
    fn kill_running(
        &self,
        out: &mut Out,
        grace: Duration,
        reason: KillReason,
        message: Option<&str>,
    ) {
        for init in [true, false] {
            for c in self.containers(init) {
                for inst in self.history(&c.name, init).all {
                    if matches!(inst.state, InstanceState::Running { .. }) {
                        self.kill(out, inst, grace, reason.clone(), message);
                    }
                }
            }
        }
        // Instances of containers no longer in the spec.
        for inst in &self.observed.containers {
            let known = self
                .containers(inst.init)
                .iter()
                .any(|c| c.name == inst.name);
            if !known && matches!(inst.state, InstanceState::Running { .. }) {
                self.kill(out, inst, grace, KillReason::NotInSpec, None);
            }
        }
    }

    fn kill(
        &self,
        out: &mut Out,
        inst: &ContainerInstance,
        grace: Duration,
        reason: KillReason,
        message: Option<&str>,
    ) {
        if !out.memory.killing.insert((inst.name.clone(), inst.attempt)) {
            return;
        }
        let message = message
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Stopping container {}", inst.name));
        out.events.push(event(false, "Killing", &message));
        out.steps.push(Step::KillContainer {
            name: inst.name.clone(),
            attempt: inst.attempt,
            grace,
            reason,
        });
    }

    /// The normal sync: init containers in order, then regular containers.
    fn run(&self, out: &mut Out) {
        let mut initialized = true;
        for c in self.containers(true) {
            let history = self.history(&c.name, true);
            match history.newest().map(|i| &i.state) {
                None => {
                    self.start(out, c, true, 0);
                }
                Some(InstanceState::Running { .. }) => {}
                Some(InstanceState::Exited { exit_code: 0, .. }) => continue,
                Some(InstanceState::Exited { .. }) => {
                    // restartPolicy Never: the pod fails (getPhase).
                    if self.policy != Policy::Never {
                        self.restart_exited(out, c, true, history.newest().unwrap());
                    }
                }
                Some(InstanceState::Failed { .. }) => {
                    self.retry_failed(out, c, true, history.newest().unwrap());
                }
            }
            initialized = false;
            break;
        }
        if !initialized {
            return;
        }
        for c in self.containers(false) {
            let history = self.history(&c.name, false);
            let Some(newest) = history.newest() else {
                self.start(out, c, false, 0);
                continue;
            };
            match &newest.state {
                InstanceState::Running { .. } => self.check_liveness(out, c, newest),
                InstanceState::Exited { exit_code, .. } => {
                    let restart = match self.policy {
                        Policy::Always => true,
                        Policy::OnFailure => *exit_code != 0,
                        Policy::Never => false,
                    };
                    if restart {
                        self.restart_exited(out, c, false, newest);
                    }
                }
                InstanceState::Failed { .. } => self.retry_failed(out, c, false, newest),
            }
        }
    }

    fn start(&self, out: &mut Out, c: &Container, init: bool, attempt: u32) {
        out.steps.push(Step::StartContainer {
            name: c.name.clone(),
            init,
            attempt,
        });
    }

    /// The restart of an exited container, under CrashLoopBackOff
    /// (`doBackOff`).
    fn restart_exited(&self, out: &mut Out, c: &Container, init: bool, inst: &ContainerInstance) {
        let InstanceState::Exited { finished_at, .. } = inst.state else {
            return;
        };
        let entry = out.memory.backoff.get(&c.name).copied();
        let live = entry.filter(|e| !expired(finished_at, e));
        if let Some(e) = live {
            let until = add(finished_at, e.delay);
            if self.now < until {
                out.memory.backoff.insert(
                    c.name.clone(),
                    Backoff {
                        delay: e.delay,
                        not_before: until,
                    },
                );
                self.crash_loop(out, c, init, e.delay);
                out.events.push(event(
                    true,
                    "BackOff",
                    &format!(
                        "Back-off restarting failed container {} in pod {}",
                        c.name, self.pod_ref
                    ),
                ));
                out.wake.push(until);
                return;
            }
            if last_update(&e) == finished_at {
                // Held back by this very crash until now: still shown as
                // CrashLoopBackOff until the new instance is seen.
                self.crash_loop(out, c, init, e.delay);
            }
        }
        let delay = match live {
            Some(e) => (e.delay * 2).min(BACKOFF_MAX),
            None => BACKOFF_INITIAL,
        };
        out.memory.backoff.insert(
            c.name.clone(),
            Backoff {
                delay,
                not_before: add(self.now, delay),
            },
        );
        self.start(out, c, init, inst.attempt + 1);
    }

    fn crash_loop(&self, out: &mut Out, c: &Container, init: bool, delay: Duration) {
        out.waiting.insert(
            (init, c.name.clone()),
            (
                "CrashLoopBackOff".into(),
                format!(
                    "back-off {} restarting failed container={} pod={}",
                    go_duration(delay),
                    c.name,
                    self.pod_ref
                ),
            ),
        );
    }

    /// The retry of an instance that could not be started. It did not run,
    /// so it is retried whatever the restart policy (the kubelet has no
    /// container status for it), with the same attempt number. Image pull
    /// failures back off exponentially (`ImagePullBackOff`); other failures
    /// (configuration errors) are retried every 10 s like the kubelet's pod
    /// worker does.
    fn retry_failed(&self, out: &mut Out, c: &Container, init: bool, inst: &ContainerInstance) {
        let InstanceState::Failed {
            reason,
            message,
            at,
        } = &inst.state
        else {
            return;
        };
        let pull = PULL_FAILURES.contains(&reason.as_str());
        let image = c.image.as_deref().unwrap_or_default();
        let key = (init, c.name.clone());
        let mut entry = out.memory.backoff.get(&c.name).copied();
        let seen = entry.is_some_and(|e| last_update(&e) >= *at);
        if !seen {
            // First sync that sees this failure: account for it.
            let delay = match entry {
                Some(e) if pull && !expired(*at, &e) => (e.delay * 2).min(BACKOFF_MAX),
                _ => BACKOFF_INITIAL,
            };
            let e = Backoff {
                delay,
                not_before: add(*at, delay),
            };
            out.memory.backoff.insert(c.name.clone(), e);
            entry = Some(e);
            let text = if reason.starts_with("ErrImage") || PULL_FAILURES.contains(&reason.as_str())
            {
                format!("Error: {reason}")
            } else {
                format!("Error: {message}")
            };
            out.events.push(event(true, "Failed", &text));
            out.waiting.insert(key, (reason.clone(), message.clone()));
        } else if pull {
            out.waiting.insert(
                key,
                (
                    "ImagePullBackOff".into(),
                    format!("Back-off pulling image {image:?}"),
                ),
            );
        } else {
            out.waiting.insert(key, (reason.clone(), message.clone()));
        }
        let not_before = entry.map(|e| e.not_before).unwrap_or(self.now);
        if self.now < not_before {
            if seen && pull {
                out.events.push(event(
                    false,
                    "BackOff",
                    &format!("Back-off pulling image {image:?}"),
                ));
            }
            out.wake.push(not_before);
            return;
        }
        self.start(out, c, init, inst.attempt);
    }

    /// Kills a running container whose liveness (or startup) probe failed,
    /// once per instance.
    fn check_liveness(&self, out: &mut Out, c: &Container, inst: &ContainerInstance) {
        let Some(probe_message) = self.probes.liveness_failed.get(&c.name) else {
            return;
        };
        let startup = probe_message.starts_with("Startup probe");
        let (kind, probe) = if startup {
            ("startup", c.startup_probe.as_ref())
        } else {
            ("liveness", c.liveness_probe.as_ref())
        };
        let mut message = format!("Container {} failed {kind} probe", c.name);
        if self.policy != Policy::Never {
            message.push_str(", will be restarted");
        }
        let secs = probe
            .and_then(|p| p.termination_grace_period_seconds)
            .or(self.spec.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE_SECONDS)
            .max(MINIMUM_GRACE_SECONDS);
        self.kill(
            out,
            inst,
            Duration::from_secs(secs as u64),
            KillReason::Unhealthy(probe_message.clone()),
            Some(&message),
        );
    }

    /// `generateAPIPodStatus`.
    fn status(
        &self,
        out: &Out,
        node: &NodeFacts,
        start_time: jiff::Timestamp,
        restarts_allowed: bool,
        pod_is_terminal: bool,
    ) -> PodStatus {
        let has_inits = !self.containers(true).is_empty();
        let statuses = |init: bool| -> Vec<ContainerStatus> {
            self.containers(init)
                .iter()
                .map(|c| {
                    let waiting = if restarts_allowed {
                        out.waiting.get(&(init, c.name.clone()))
                    } else {
                        None
                    };
                    self.container_status(c, init, has_inits, waiting)
                })
                .collect()
        };
        let inits = statuses(true);
        let mut regular = statuses(false);
        let mut phase = get_phase(self.policy, &inits, &regular, pod_is_terminal);
        let old_phase = self.old.phase.as_deref();
        if !is_terminal(Some(phase)) {
            if is_terminal(old_phase) {
                phase = old_phase.unwrap_or(phase);
            } else if pod_is_terminal {
                // TerminatePod: a pod that stopped for good is terminal.
                phase = "Failed";
            }
        }
        let (reason, message) = if old_phase == Some(phase) {
            (self.old.reason.clone(), self.old.message.clone())
        } else {
            (None, None)
        };
        // The kubelet sorts regular container statuses by name and keeps
        // init container statuses in spec order.
        regular.sort_by(|a, b| a.name.cmp(&b.name));

        let host_network = self.spec.host_network.unwrap_or(false);
        let pod_ip = if host_network {
            Some(node.host_ip.clone())
        } else {
            match &self.observed.sandbox {
                Some(sandbox) => sandbox.ip.clone(),
                None => self.old.pod_ip.clone(),
            }
        };
        let mut status = PodStatus {
            phase: Some(phase.into()),
            reason,
            message,
            host_ip: Some(node.host_ip.clone()),
            host_ips: Some(vec![HostIP {
                ip: node.host_ip.clone(),
            }]),
            pod_ips: pod_ip.as_ref().map(|ip| vec![PodIP { ip: ip.clone() }]),
            pod_ip,
            start_time: Some(Time(start_time)),
            qos_class: Some(
                self.old
                    .qos_class
                    .clone()
                    .unwrap_or_else(|| qos_class(self.spec).into()),
            ),
            init_container_statuses: has_inits.then_some(inits),
            container_statuses: Some(regular),
            nominated_node_name: self.old.nominated_node_name.clone(),
            resource_claim_statuses: self.old.resource_claim_statuses.clone(),
            ..PodStatus::default()
        };
        self.set_conditions(&mut status, self.observed.sandbox.is_some());
        status
    }

    /// The kubelet-owned conditions (status/generate.go), after the
    /// conditions others own, with `lastTransitionTime` kept while the
    /// status of a condition does not change.
    fn set_conditions(&self, status: &mut PodStatus, sandbox: bool) {
        const OWNED: [&str; 5] = [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ];
        let old_conditions = self.old.conditions.as_deref().unwrap_or_default();
        let mut conditions: Vec<PodCondition> = old_conditions
            .iter()
            .filter(|c| !OWNED.contains(&c.type_.as_str()))
            .cloned()
            .collect();
        let phase = status.phase.as_deref().unwrap_or("Pending");
        let inits = status
            .init_container_statuses
            .as_deref()
            .unwrap_or_default();
        let regular = status.container_statuses.as_deref().unwrap_or_default();

        conditions.push(condition("PodReadyToStartContainers", sandbox, None, None));
        conditions.push(initialized_condition(
            self.containers(true),
            inits,
            regular,
            phase,
        ));
        let containers_ready = containers_ready_condition(&self.spec.containers, regular, phase);
        let ready = if containers_ready.status != "True" {
            PodCondition {
                type_: "Ready".into(),
                ..containers_ready.clone()
            }
        } else {
            readiness_gates_condition(self.spec, &conditions)
        };
        conditions.push(ready);
        conditions.push(containers_ready);
        conditions.push(condition("PodScheduled", true, None, None));

        for c in conditions
            .iter_mut()
            .filter(|c| OWNED.contains(&c.type_.as_str()))
        {
            let previous = old_conditions
                .iter()
                .find(|o| o.type_ == c.type_ && o.status == c.status)
                .and_then(|o| o.last_transition_time.clone());
            c.last_transition_time = Some(previous.unwrap_or(Time(self.now)));
        }
        status.conditions = Some(conditions);
    }

    /// One container's status (`convertToAPIContainerStatuses` plus the
    /// prober's `started`/`ready`).
    fn container_status(
        &self,
        c: &Container,
        init: bool,
        has_inits: bool,
        waiting: Option<&(String, String)>,
    ) -> ContainerStatus {
        let old_list = if init {
            self.old.init_container_statuses.as_deref()
        } else {
            self.old.container_statuses.as_deref()
        };
        let old = old_list
            .unwrap_or_default()
            .iter()
            .find(|s| s.name == c.name);
        let history = self.history(&c.name, init);
        let ran = history.ran();
        let image = c.image.clone().unwrap_or_default();

        let mut status = match ran.first() {
            None => {
                if history.all.is_empty() {
                    if let Some(old) = old.filter(|o| terminated(o).is_some()) {
                        // The runtime forgot a container that ended: keep
                        // what was published.
                        return old.clone();
                    }
                }
                let reason = if has_inits {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                };
                ContainerStatus {
                    name: c.name.clone(),
                    image,
                    state: Some(waiting_state(reason, None)),
                    restart_count: old.map(|o| o.restart_count).unwrap_or(0),
                    last_state: old.and_then(|o| o.last_state.clone()),
                    ..ContainerStatus::default()
                }
            }
            Some(newest) => ContainerStatus {
                name: c.name.clone(),
                image,
                image_id: newest.image_id.clone(),
                container_id: Some(newest.container_id.clone()),
                restart_count: newest.attempt as i32,
                state: Some(instance_state(newest)),
                last_state: ran.get(1).map(|i| instance_state(i)),
                ..ContainerStatus::default()
            },
        };
        if let Some((reason, message)) = waiting {
            if status
                .state
                .as_ref()
                .is_some_and(|s| s.terminated.is_some())
            {
                status.last_state = status.state.take();
            }
            status.state = Some(waiting_state(reason, Some(message)));
        }

        let running = status.state.as_ref().is_some_and(|s| s.running.is_some());
        let started =
            running && (self.probes.started.contains(&c.name) || c.startup_probe.is_none());
        status.started = Some(started);
        status.ready = if init {
            terminated(&status).is_some_and(|t| t.exit_code == 0)
        } else {
            started
                && self
                    .probes
                    .readiness
                    .get(&c.name)
                    .copied()
                    .unwrap_or(c.readiness_probe.is_none())
        };
        status
    }
}

/// `getPhase` (kubelet_pods.go), for pods without sidecar containers.
fn get_phase(
    policy: Policy,
    inits: &[ContainerStatus],
    regular: &[ContainerStatus],
    pod_is_terminal: bool,
) -> &'static str {
    let mut pending_init = 0;
    let mut failed_init = 0;
    for s in inits {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if state.waiting.is_some() {
            match s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in regular {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .is_some_and(|l| l.terminated.is_some())
        {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    let any_regular_started = regular.iter().any(|s| {
        s.state
            .as_ref()
            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
    });
    if failed_init > 0 && policy == Policy::Never {
        return "Failed";
    }
    if (pending_init > 0 && !any_regular_started) || waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if pod_is_terminal {
            if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if policy == Policy::Always {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if policy == Policy::Never {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

fn initialized_condition(
    specs: &[Container],
    inits: &[ContainerStatus],
    regular: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    if specs.is_empty() {
        return condition("Initialized", true, None, None);
    }
    if phase == "Succeeded" {
        return condition("Initialized", true, Some("PodCompleted"), None);
    }
    let any_regular_started = regular.iter().any(|s| {
        s.state
            .as_ref()
            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
    });
    if any_regular_started {
        return condition("Initialized", true, None, None);
    }
    let incomplete: Vec<&str> = specs
        .iter()
        .filter(|c| {
            inits
                .iter()
                .find(|s| s.name == c.name)
                .and_then(terminated)
                .is_none_or(|t| t.exit_code != 0)
        })
        .map(|c| c.name.as_str())
        .collect();
    if incomplete.is_empty() {
        condition("Initialized", true, None, None)
    } else {
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: {}",
                go_list(&incomplete)
            )),
        )
    }
}

fn containers_ready_condition(
    specs: &[Container],
    regular: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    match phase {
        "Succeeded" => return condition("ContainersReady", false, Some("PodCompleted"), None),
        "Failed" => return condition("ContainersReady", false, Some("PodFailed"), None),
        _ => {}
    }
    let unready: Vec<&str> = specs
        .iter()
        .filter(|c| !regular.iter().any(|s| s.name == c.name && s.ready))
        .map(|c| c.name.as_str())
        .collect();
    if unready.is_empty() {
        condition("ContainersReady", true, None, None)
    } else {
        condition(
            "ContainersReady",
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: {}",
                go_list(&unready)
            )),
        )
    }
}

fn readiness_gates_condition(spec: &PodSpec, conditions: &[PodCondition]) -> PodCondition {
    let mut messages = Vec::new();
    for gate in spec.readiness_gates.as_deref().unwrap_or_default() {
        match conditions.iter().find(|c| c.type_ == gate.condition_type) {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate {:?} does not exist.",
                gate.condition_type
            )),
            Some(c) if c.status != "True" => messages.push(format!(
                "the status of pod readiness gate {:?} is not \"True\", but {}",
                gate.condition_type, c.status
            )),
            Some(_) => {}
        }
    }
    if messages.is_empty() {
        condition("Ready", true, None, None)
    } else {
        condition(
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some(messages.join(", ")),
        )
    }
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.map(str::to_owned),
        message,
        ..PodCondition::default()
    }
}

/// The pod's QoS class (`ComputePodQOS`): Guaranteed when every container
/// limits both cpu and memory and the summed requests equal the summed
/// limits, BestEffort without any cpu/memory request or limit, else
/// Burstable.
fn qos_class(spec: &PodSpec) -> &'static str {
    let mut requests: BTreeMap<&str, i64> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i64> = BTreeMap::new();
    let mut guaranteed = true;
    let amount = |resource: &str, q: &str| -> i64 {
        let parsed = if resource == "cpu" {
            scheduler::quantity::parse_milli_value(q)
        } else {
            scheduler::quantity::parse_value(q)
        };
        parsed.unwrap_or(0)
    };
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        let Some(resources) = c.resources.as_ref() else {
            guaranteed = false;
            continue;
        };
        // Requests default to limits (the API server's defaulting), so an
        // undefaulted spec classifies like a stored one.
        let limits_only = resources.limits.iter().flatten().filter(|(name, _)| {
            !resources
                .requests
                .as_ref()
                .is_some_and(|r| r.contains_key(name.as_str()))
        });
        for (name, q) in resources.requests.iter().flatten().chain(limits_only) {
            let name = name.as_str();
            if name == "cpu" || name == "memory" {
                let v = amount(name, &q.0);
                if v > 0 {
                    *requests.entry(name).or_default() += v;
                }
            }
        }
        let mut found = BTreeSet::new();
        for (name, q) in resources.limits.iter().flatten() {
            let name = name.as_str();
            if name == "cpu" || name == "memory" {
                let v = amount(name, &q.0);
                if v > 0 {
                    found.insert(name);
                    *limits.entry(name).or_default() += v;
                }
            }
        }
        if found.len() != 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.iter().all(|(k, v)| limits.get(k) == Some(v))
        && requests.len() == limits.len()
    {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

fn terminated(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.state.as_ref().and_then(|s| s.terminated.as_ref())
}

fn waiting_state(reason: &str, message: Option<&str>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: message.map(str::to_owned),
        }),
        ..ContainerState::default()
    }
}

/// The API state of an instance that ran.
fn instance_state(inst: &ContainerInstance) -> ContainerState {
    match &inst.state {
        InstanceState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*started_at)),
            }),
            ..ContainerState::default()
        },
        InstanceState::Exited {
            started_at,
            finished_at,
            exit_code,
            oom_killed,
            message,
        } => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: *exit_code,
                reason: Some(
                    if *oom_killed {
                        "OOMKilled"
                    } else if *exit_code == 0 {
                        "Completed"
                    } else {
                        "Error"
                    }
                    .into(),
                ),
                message: message.clone(),
                started_at: started_at.map(Time),
                finished_at: Some(Time(*finished_at)),
                container_id: Some(inst.container_id.clone()),
                signal: None,
            }),
            ..ContainerState::default()
        },
        InstanceState::Failed {
            reason, message, ..
        } => waiting_state(reason, Some(message)),
    }
}

fn event(warning: bool, reason: &str, message: &str) -> PodEvent {
    PodEvent {
        warning,
        reason: reason.into(),
        message: message.into(),
    }
}

/// When the back-off window was last moved (the kubelet's `lastUpdate`).
fn last_update(e: &Backoff) -> jiff::Timestamp {
    sub(e.not_before, e.delay)
}

/// The kubelet forgets a back-off whose last update is more than
/// `2 × MaxContainerBackOff` (= [`BACKOFF_RESET_AFTER`]) before the event.
fn expired(event: jiff::Timestamp, e: &Backoff) -> bool {
    let reset =
        jiff::SignedDuration::try_from(BACKOFF_RESET_AFTER).unwrap_or(jiff::SignedDuration::MAX);
    event.duration_since(last_update(e)) > reset
}

fn seconds(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

fn add(t: jiff::Timestamp, d: Duration) -> jiff::Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(jiff::Timestamp::MAX)
}

fn sub(t: jiff::Timestamp, d: Duration) -> jiff::Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(jiff::Timestamp::MIN)
}

/// A duration as Go's `time.Duration.String` prints it: `10s`, `1m20s`,
/// `5m0s`, `1h0m0s`, `500ms`.
fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d < Duration::from_secs(1) {
        let nanos = d.as_nanos();
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}µs", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    let frac = d.subsec_nanos();
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let digits = format!("{frac:09}");
        format!("{s}.{}s", digits.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

/// A string slice as Go's `%s` prints it: `[a b]`.
fn go_list(items: &[&str]) -> String {
    format!("[{}]", items.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const T0: i64 = 1_700_000_000;

    fn t(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(T0 + s).unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// A pod `web` in `default` (uid `u1`) from a spec snippet; `extra`
    /// merges into the object (metadata fields, status).
    fn pod_with(spec: Value, extra: Value) -> Pod {
        let mut object = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": spec,
        });
        merge(&mut object, extra);
        serde_json::from_value(object).expect("pod")
    }

    fn pod(spec: Value) -> Pod {
        pod_with(spec, json!({}))
    }

    fn merge(into: &mut Value, from: Value) {
        match (into, from) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    /// One container `app` (image `nginx:1`), restartPolicy as given.
    fn app(policy: &str) -> Value {
        json!({"restartPolicy": policy, "containers": [{"name": "app", "image": "nginx:1"}]})
    }

    fn time(at: jiff::Timestamp) -> String {
        at.to_string()
    }

    fn inst(name: &str, attempt: u32, state: InstanceState) -> ContainerInstance {
        ContainerInstance {
            name: name.into(),
            init: false,
            attempt,
            container_id: format!("drover://u1/{name}/{attempt}"),
            image_id: String::new(),
            state,
        }
    }

    fn running(name: &str, attempt: u32, started: i64) -> ContainerInstance {
        inst(
            name,
            attempt,
            InstanceState::Running {
                started_at: t(started),
            },
        )
    }

    fn exited(
        name: &str,
        attempt: u32,
        started: i64,
        finished: i64,
        code: i32,
    ) -> ContainerInstance {
        inst(
            name,
            attempt,
            InstanceState::Exited {
                started_at: Some(t(started)),
                finished_at: t(finished),
                exit_code: code,
                oom_killed: false,
                message: None,
            },
        )
    }

    fn failed(name: &str, attempt: u32, reason: &str, message: &str, at: i64) -> ContainerInstance {
        inst(
            name,
            attempt,
            InstanceState::Failed {
                reason: reason.into(),
                message: message.into(),
                at: t(at),
            },
        )
    }

    fn init(mut i: ContainerInstance) -> ContainerInstance {
        i.init = true;
        i
    }

    fn with_sandbox(containers: Vec<ContainerInstance>) -> Observed {
        Observed {
            sandbox: Some(Sandbox {
                ip: Some("10.0.0.7".into()),
                created_at: t(0),
            }),
            containers,
        }
    }

    fn node() -> NodeFacts {
        NodeFacts {
            host_ip: "192.168.1.10".into(),
            allow_privileged: true,
        }
    }

    fn start(name: &str, attempt: u32) -> Step {
        Step::StartContainer {
            name: name.into(),
            init: false,
            attempt,
        }
    }

    fn start_init(name: &str, attempt: u32) -> Step {
        Step::StartContainer {
            name: name.into(),
            init: true,
            attempt,
        }
    }

    fn kill(name: &str, attempt: u32, grace: u64, reason: KillReason) -> Step {
        Step::KillContainer {
            name: name.into(),
            attempt,
            grace: secs(grace),
            reason,
        }
    }

    fn backoff(delay: u64, not_before: i64) -> Backoff {
        Backoff {
            delay: secs(delay),
            not_before: t(not_before),
        }
    }

    fn memory(entries: &[(&str, Backoff)]) -> SyncMemory {
        SyncMemory {
            backoff: entries.iter().map(|(n, b)| (n.to_string(), *b)).collect(),
            ..SyncMemory::default()
        }
    }

    fn state_summary(state: &ContainerState) -> String {
        if let Some(w) = &state.waiting {
            match &w.message {
                Some(m) => format!("waiting({}: {m})", w.reason.as_deref().unwrap_or_default()),
                None => format!("waiting({})", w.reason.as_deref().unwrap_or_default()),
            }
        } else if let Some(t) = &state.terminated {
            format!(
                "terminated({} {})",
                t.reason.as_deref().unwrap_or_default(),
                t.exit_code
            )
        } else if state.running.is_some() {
            "running".into()
        } else {
            "?".into()
        }
    }

    /// `STATE restarts=N ready=B [started] [last=STATE]`.
    fn summary(s: &ContainerStatus) -> String {
        let mut out = format!(
            "{} restarts={} ready={}",
            state_summary(s.state.as_ref().unwrap()),
            s.restart_count,
            s.ready
        );
        if s.started == Some(true) {
            out.push_str(" started");
        }
        if let Some(last) = &s.last_state {
            out.push_str(&format!(" last={}", state_summary(last)));
        }
        out
    }

    fn condition_summary(status: &PodStatus, type_: &str) -> String {
        let c = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no condition {type_}"));
        let mut out = c.status.clone();
        if let Some(r) = &c.reason {
            out.push_str(&format!(" {r}"));
        }
        if let Some(m) = &c.message {
            out.push_str(&format!(": {m}"));
        }
        out
    }

    fn event_summary(e: &PodEvent) -> String {
        format!(
            "{} {}: {}",
            if e.warning { "Warning" } else { "Normal" },
            e.reason,
            e.message
        )
    }

    /// What a case expects; unchecked aspects are left out.
    enum Expect {
        Steps(Vec<Step>),
        Phase(&'static str),
        /// Pod `reason: message`.
        Reason(&'static str),
        Container(&'static str, &'static str),
        Init(&'static str, &'static str),
        Condition(&'static str, &'static str),
        Events(Vec<&'static str>),
        Requeue(Option<Duration>),
        Finished(bool),
        Qos(&'static str),
        PodIp(&'static str),
        BackoffIs(&'static str, Option<Backoff>),
        Killing(Vec<(&'static str, u32)>),
    }
    use Expect::*;

    struct Case {
        name: &'static str,
        pod: Pod,
        observed: Observed,
        probes: ProbeResults,
        memory: SyncMemory,
        now: jiff::Timestamp,
        expect: Vec<Expect>,
    }

    fn case(
        name: &'static str,
        pod: Pod,
        observed: Observed,
        now: i64,
        expect: Vec<Expect>,
    ) -> Case {
        Case {
            name,
            pod,
            observed,
            probes: ProbeResults::default(),
            memory: SyncMemory::default(),
            now: t(now),
            expect,
        }
    }

    impl Case {
        fn probes(mut self, probes: ProbeResults) -> Case {
            self.probes = probes;
            self
        }
        fn memory(mut self, memory: SyncMemory) -> Case {
            self.memory = memory;
            self
        }
    }

    fn check(c: &Case) -> Decision {
        let d = sync_pod(&c.pod, &c.observed, &c.probes, &c.memory, &node(), c.now);
        let status = &d.status;
        let find = |list: &Option<Vec<ContainerStatus>>, name: &str| {
            list.iter()
                .flatten()
                .find(|s| s.name == name)
                .map(summary)
                .unwrap_or_else(|| panic!("{}: no status for {name}", c.name))
        };
        for e in &c.expect {
            match e {
                Steps(steps) => assert_eq!(&d.steps, steps, "{}: steps", c.name),
                Phase(p) => assert_eq!(status.phase.as_deref(), Some(*p), "{}: phase", c.name),
                Reason(r) => {
                    let got = format!(
                        "{}: {}",
                        status.reason.as_deref().unwrap_or_default(),
                        status.message.as_deref().unwrap_or_default()
                    );
                    assert_eq!(got, *r, "{}: reason", c.name)
                }
                Container(name, want) => {
                    assert_eq!(
                        find(&status.container_statuses, name),
                        *want,
                        "{}: {name}",
                        c.name
                    )
                }
                Init(name, want) => assert_eq!(
                    find(&status.init_container_statuses, name),
                    *want,
                    "{}: init {name}",
                    c.name
                ),
                Condition(type_, want) => {
                    assert_eq!(
                        condition_summary(status, type_),
                        *want,
                        "{}: {type_}",
                        c.name
                    )
                }
                Events(want) => {
                    let got: Vec<String> = d.events.iter().map(event_summary).collect();
                    assert_eq!(got, *want, "{}: events", c.name)
                }
                Requeue(r) => assert_eq!(d.requeue_after, *r, "{}: requeue", c.name),
                Finished(f) => assert_eq!(d.finished, *f, "{}: finished", c.name),
                Qos(q) => assert_eq!(status.qos_class.as_deref(), Some(*q), "{}: qos", c.name),
                PodIp(ip) => {
                    assert_eq!(status.pod_ip.as_deref(), Some(*ip), "{}: podIP", c.name);
                    assert_eq!(
                        status.pod_ips.as_ref().map(|v| v[0].ip.as_str()),
                        Some(*ip),
                        "{}: podIPs",
                        c.name
                    );
                }
                BackoffIs(name, want) => assert_eq!(
                    d.memory.backoff.get(*name),
                    want.as_ref(),
                    "{}: backoff of {name}",
                    c.name
                ),
                Killing(want) => {
                    let want: BTreeSet<(String, u32)> =
                        want.iter().map(|(n, a)| (n.to_string(), *a)).collect();
                    assert_eq!(d.memory.killing, want, "{}: killing", c.name)
                }
            }
        }
        d
    }

    fn run_all(cases: Vec<Case>) {
        for c in &cases {
            check(c);
        }
    }

    #[test]
    fn privileged_pods_are_rejected_where_the_node_forbids_them() {
        let forbidding = NodeFacts {
            allow_privileged: false,
            ..node()
        };
        let privileged = json!({"securityContext": {"privileged": true}});
        let regular = pod(json!({"containers": [
            {"name": "app", "image": "nginx:1", "securityContext": {"privileged": false}}
        ]}));
        let in_app = pod(
            json!({"containers": [merge_into(json!({"name": "app", "image": "nginx:1"}), privileged.clone())]}),
        );
        let in_init = pod(json!({
            "initContainers": [merge_into(json!({"name": "setup", "image": "busybox"}), privileged)],
            "containers": [{"name": "app", "image": "nginx:1"}],
        }));
        let now = t(0);
        let sync = |p: &Pod, n: &NodeFacts| {
            sync_pod(
                p,
                &Observed::default(),
                &ProbeResults::default(),
                &SyncMemory::default(),
                n,
                now,
            )
        };
        // Allowed (the default), or nothing privileged: the usual first step.
        assert_eq!(sync(&in_app, &node()).steps, vec![Step::CreateSandbox]);
        assert_eq!(sync(&regular, &forbidding).steps, vec![Step::CreateSandbox]);
        for (p, what) in [(&in_app, "container"), (&in_init, "init container")] {
            let d = sync(p, &forbidding);
            let message =
                format!("pod with UID \"u1\" specified privileged {what}, but is disallowed");
            assert_eq!(d.steps, vec![], "{what}");
            assert_eq!(d.status.phase.as_deref(), Some("Failed"));
            assert_eq!(d.status.reason.as_deref(), Some("Forbidden"));
            assert_eq!(
                d.status.message,
                Some(format!("Pod was rejected: {message}"))
            );
            assert_eq!(d.events, vec![event(true, "Forbidden", &message)]);
        }
        // Once Failed, the usual terminal handling: nothing starts.
        let mut failed = in_app.clone();
        failed.status = Some(sync(&in_app, &forbidding).status);
        let d = sync(&failed, &forbidding);
        assert_eq!(d.steps, vec![]);
        assert_eq!(d.events, vec![]);
        assert_eq!(d.status.phase.as_deref(), Some("Failed"));
        assert_eq!(d.status.reason.as_deref(), Some("Forbidden"));
    }

    fn merge_into(mut into: Value, from: Value) -> Value {
        merge(&mut into, from);
        into
    }

    #[test]
    fn sandbox_and_first_start() {
        run_all(vec![
            case(
                "no sandbox: only CreateSandbox, Pending",
                pod(app("Always")),
                Observed::default(),
                0,
                vec![
                    Steps(vec![Step::CreateSandbox]),
                    Phase("Pending"),
                    Container("app", "waiting(ContainerCreating) restarts=0 ready=false"),
                    Condition("PodReadyToStartContainers", "False"),
                    Condition("Initialized", "True"),
                    Condition(
                        "ContainersReady",
                        "False ContainersNotReady: containers with unready status: [app]",
                    ),
                    Condition(
                        "Ready",
                        "False ContainersNotReady: containers with unready status: [app]",
                    ),
                    Condition("PodScheduled", "True"),
                    Events(vec![]),
                    Requeue(None),
                ],
            ),
            case(
                "sandbox: every container starts",
                pod(
                    json!({"containers": [{"name": "b", "image": "x"}, {"name": "a", "image": "y"}]}),
                ),
                with_sandbox(vec![]),
                0,
                vec![
                    Steps(vec![start("b", 0), start("a", 0)]),
                    Phase("Pending"),
                    Condition("PodReadyToStartContainers", "True"),
                    PodIp("10.0.0.7"),
                ],
            ),
            case(
                "running without probes: Running and Ready",
                pod(app("Always")),
                with_sandbox(vec![running("app", 0, 1)]),
                5,
                vec![
                    Steps(vec![]),
                    Phase("Running"),
                    Container("app", "running restarts=0 ready=true started"),
                    Condition("Ready", "True"),
                    Condition("ContainersReady", "True"),
                    Condition("Initialized", "True"),
                    PodIp("10.0.0.7"),
                    Requeue(None),
                ],
            ),
            case(
                "hostNetwork: the pod IP is the node's",
                pod(json!({"hostNetwork": true, "containers": [{"name": "app", "image": "x"}]})),
                Observed {
                    sandbox: Some(Sandbox {
                        ip: None,
                        created_at: t(0),
                    }),
                    containers: vec![running("app", 0, 1)],
                },
                5,
                vec![PodIp("192.168.1.10"), Phase("Running")],
            ),
            case(
                "restartPolicy Never, no sandbox but containers ran: no new sandbox",
                pod(app("Never")),
                Observed {
                    sandbox: None,
                    containers: vec![exited("app", 0, 1, 2, 0)],
                },
                5,
                vec![Steps(vec![])],
            ),
        ]);
    }

    #[test]
    fn readiness_and_startup() {
        let spec = json!({"containers": [
            {"name": "b", "image": "x", "readinessProbe": {"exec": {"command": ["true"]}}},
            {"name": "a", "image": "x", "readinessProbe": {"exec": {"command": ["true"]}}},
            {"name": "c", "image": "x", "startupProbe": {"exec": {"command": ["true"]}}},
        ]});
        let observed = with_sandbox(vec![
            running("a", 0, 1),
            running("b", 0, 1),
            running("c", 0, 1),
        ]);
        let mut probes = ProbeResults::default();
        probes.readiness.insert("a".into(), false);
        let d = check(
            &case(
                "readiness false / no result yet / startup pending",
                pod(spec.clone()),
                observed.clone(),
                5,
                vec![
                    Phase("Running"),
                    Container("a", "running restarts=0 ready=false started"),
                    Container("b", "running restarts=0 ready=false started"),
                    Container("c", "running restarts=0 ready=false"),
                    Condition(
                        "ContainersReady",
                        "False ContainersNotReady: containers with unready status: [b a c]",
                    ),
                    Condition(
                        "Ready",
                        "False ContainersNotReady: containers with unready status: [b a c]",
                    ),
                ],
            )
            .probes(probes),
        );
        // containerStatuses are sorted by name, like the kubelet's.
        let names: Vec<&str> = d
            .status
            .container_statuses
            .iter()
            .flatten()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);

        let mut probes = ProbeResults::default();
        probes.readiness.insert("a".into(), true);
        probes.readiness.insert("b".into(), true);
        probes.started.insert("c".into());
        check(
            &case(
                "all probes pass: Ready",
                pod(spec),
                observed,
                5,
                vec![
                    Container("c", "running restarts=0 ready=true started"),
                    Condition("Ready", "True"),
                ],
            )
            .probes(probes),
        );
    }

    #[test]
    fn readiness_gates_and_transition_times() {
        let spec = json!({"readinessGates": [{"conditionType": "example.com/lb"}],
            "containers": [{"name": "app", "image": "x"}]});
        run_all(vec![
            case(
                "readiness gate condition missing",
                pod(spec.clone()),
                with_sandbox(vec![running("app", 0, 1)]),
                5,
                vec![
                    Condition("ContainersReady", "True"),
                    Condition(
                        "Ready",
                        "False ReadinessGatesNotReady: corresponding condition of pod readiness gate \"example.com/lb\" does not exist.",
                    ),
                ],
            ),
            case(
                "readiness gate True",
                pod_with(
                    spec,
                    json!({"status": {"conditions": [{"type": "example.com/lb", "status": "True"}]}}),
                ),
                with_sandbox(vec![running("app", 0, 1)]),
                5,
                vec![Condition("Ready", "True")],
            ),
        ]);

        let old = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": time(t(3))},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": time(t(0))},
            {"type": "ContainersReady", "status": "False", "lastTransitionTime": time(t(1))},
        ]}});
        let d = sync_pod(
            &pod_with(app("Always"), old),
            &with_sandbox(vec![running("app", 0, 1)]),
            &ProbeResults::default(),
            &SyncMemory::default(),
            &node(),
            t(9),
        );
        let when = |type_: &str| {
            d.status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == type_)
                .unwrap()
                .last_transition_time
                .clone()
                .unwrap()
                .0
        };
        assert_eq!(when("Ready"), t(3), "unchanged status keeps its time");
        assert_eq!(when("PodScheduled"), t(0));
        assert_eq!(when("ContainersReady"), t(9), "a changed status gets now");
        assert_eq!(when("Initialized"), t(9), "a new condition gets now");
        let types: Vec<&str> = d
            .status
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        assert_eq!(
            d.status.start_time,
            Some(Time(t(9))),
            "startTime defaults to now"
        );
        assert_eq!(d.status.host_ip.as_deref(), Some("192.168.1.10"));
        assert_eq!(
            d.status.host_ips,
            Some(vec![HostIP {
                ip: "192.168.1.10".into()
            }])
        );
    }

    #[test]
    fn restart_policies() {
        run_all(vec![
            case(
                "OnFailure, exit 0: Succeeded, sandbox removed",
                pod(app("OnFailure")),
                with_sandbox(vec![exited("app", 0, 1, 4, 0)]),
                5,
                vec![
                    Steps(vec![Step::RemoveSandbox]),
                    Phase("Succeeded"),
                    Container("app", "terminated(Completed 0) restarts=0 ready=false"),
                    Condition("Ready", "False PodCompleted"),
                    Condition("ContainersReady", "False PodCompleted"),
                ],
            ),
            case(
                "Never, exit 1: Failed, no restart",
                pod(app("Never")),
                with_sandbox(vec![exited("app", 0, 1, 4, 1)]),
                5,
                vec![
                    Steps(vec![Step::RemoveSandbox]),
                    Phase("Failed"),
                    Container("app", "terminated(Error 1) restarts=0 ready=false"),
                    Condition("Ready", "False PodFailed"),
                ],
            ),
            case(
                "Never, one exited 1, one still running: Running",
                pod(
                    json!({"restartPolicy": "Never", "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}),
                ),
                with_sandbox(vec![exited("a", 0, 1, 4, 1), running("b", 0, 1)]),
                5,
                vec![Steps(vec![]), Phase("Running")],
            ),
            case(
                "OnFailure, exit 1: restarted at once (first restart)",
                pod(app("OnFailure")),
                with_sandbox(vec![exited("app", 0, 1, 4, 1)]),
                5,
                vec![
                    Steps(vec![start("app", 1)]),
                    Phase("Running"),
                    Container("app", "terminated(Error 1) restarts=0 ready=false"),
                    BackoffIs("app", Some(backoff(10, 15))),
                    Events(vec![]),
                ],
            ),
            case(
                "Always, exit 0: restarted",
                pod(app("Always")),
                with_sandbox(vec![exited("app", 0, 1, 4, 0)]),
                5,
                vec![Steps(vec![start("app", 1)]), Phase("Running")],
            ),
            case(
                "OOMKilled",
                pod(app("Never")),
                with_sandbox(vec![{
                    let mut i = exited("app", 0, 1, 4, 137);
                    if let InstanceState::Exited { oom_killed, .. } = &mut i.state {
                        *oom_killed = true;
                    }
                    i
                }]),
                5,
                vec![
                    Container("app", "terminated(OOMKilled 137) restarts=0 ready=false"),
                    Phase("Failed"),
                ],
            ),
        ]);
    }

    #[test]
    fn crash_loop_back_off() {
        let crashed_twice =
            || with_sandbox(vec![exited("app", 1, 20, 30, 1), exited("app", 0, 1, 4, 1)]);
        run_all(vec![
            case(
                "second crash within the window: CrashLoopBackOff",
                pod(app("Always")),
                crashed_twice(),
                31,
                vec![
                    Steps(vec![]),
                    Phase("Running"),
                    Container(
                        "app",
                        "waiting(CrashLoopBackOff: back-off 10s restarting failed container=app pod=web_default(u1)) restarts=1 ready=false last=terminated(Error 1)",
                    ),
                    Events(vec!["Warning BackOff: Back-off restarting failed container app in pod web_default(u1)"]),
                    Requeue(Some(secs(9))),
                    BackoffIs("app", Some(backoff(10, 40))),
                ],
            )
            .memory(memory(&[("app", backoff(10, 15))])),
            case(
                "window over: restart with a doubled delay, still shown as CrashLoopBackOff",
                pod(app("Always")),
                crashed_twice(),
                40,
                vec![
                    Steps(vec![start("app", 2)]),
                    Container(
                        "app",
                        "waiting(CrashLoopBackOff: back-off 10s restarting failed container=app pod=web_default(u1)) restarts=1 ready=false last=terminated(Error 1)",
                    ),
                    BackoffIs("app", Some(backoff(20, 60))),
                    Events(vec![]),
                ],
            )
            .memory(memory(&[("app", backoff(10, 40))])),
            case(
                "the delay stops doubling at 5 minutes",
                pod(app("Always")),
                crashed_twice(),
                400,
                vec![Steps(vec![start("app", 2)]), BackoffIs("app", Some(backoff(300, 700)))],
            )
            .memory(memory(&[("app", backoff(300, 330))])),
            case(
                "ran for more than 10 minutes: restart at once, delay back to 10 s",
                pod(app("Always")),
                with_sandbox(vec![exited("app", 1, 20, 700, 1), exited("app", 0, 1, 4, 1)]),
                701,
                vec![Steps(vec![start("app", 2)]), BackoffIs("app", Some(backoff(10, 711)))],
            )
            .memory(memory(&[("app", backoff(160, 180))])),
            case(
                "blocked init container",
                pod(json!({"initContainers": [{"name": "setup", "image": "x"}],
                    "containers": [{"name": "app", "image": "x"}]})),
                with_sandbox(vec![init(exited("setup", 1, 20, 30, 2)), init(exited("setup", 0, 1, 4, 2))]),
                35,
                vec![
                    Steps(vec![]),
                    Phase("Pending"),
                    Init(
                        "setup",
                        "waiting(CrashLoopBackOff: back-off 40s restarting failed container=setup pod=web_default(u1)) restarts=1 ready=false last=terminated(Error 2)",
                    ),
                    Container("app", "waiting(PodInitializing) restarts=0 ready=false"),
                    Requeue(Some(secs(35))),
                ],
            )
            .memory(memory(&[("setup", backoff(40, 60))])),
        ]);
    }

    #[test]
    fn init_containers() {
        let spec = json!({"restartPolicy": "Always",
            "initContainers": [{"name": "one", "image": "x"}, {"name": "two", "image": "x"}],
            "containers": [{"name": "app", "image": "x"}]});
        let never = json!({"restartPolicy": "Never",
            "initContainers": [{"name": "one", "image": "x"}, {"name": "two", "image": "x"}],
            "containers": [{"name": "app", "image": "x"}]});
        run_all(vec![
            case(
                "first init container starts alone",
                pod(spec.clone()),
                with_sandbox(vec![]),
                1,
                vec![
                    Steps(vec![start_init("one", 0)]),
                    Phase("Pending"),
                    Init("one", "waiting(PodInitializing) restarts=0 ready=false"),
                    Container("app", "waiting(PodInitializing) restarts=0 ready=false"),
                    Condition("Initialized", "False ContainersNotInitialized: containers with incomplete status: [one two]"),
                ],
            ),
            case(
                "one running: wait",
                pod(spec.clone()),
                with_sandbox(vec![init(running("one", 0, 1))]),
                2,
                vec![Steps(vec![]), Phase("Pending"), Init("one", "running restarts=0 ready=false started")],
            ),
            case(
                "one done: two starts",
                pod(spec.clone()),
                with_sandbox(vec![init(exited("one", 0, 1, 2, 0))]),
                3,
                vec![
                    Steps(vec![start_init("two", 0)]),
                    Init("one", "terminated(Completed 0) restarts=0 ready=true"),
                    Condition("Initialized", "False ContainersNotInitialized: containers with incomplete status: [two]"),
                ],
            ),
            case(
                "all done: regular containers start",
                pod(spec.clone()),
                with_sandbox(vec![init(exited("one", 0, 1, 2, 0)), init(exited("two", 0, 3, 4, 0))]),
                5,
                vec![
                    Steps(vec![start("app", 0)]),
                    Phase("Pending"),
                    Condition("Initialized", "True"),
                    Container("app", "waiting(PodInitializing) restarts=0 ready=false"),
                ],
            ),
            case(
                "init failed, Always: restarted",
                pod(spec.clone()),
                with_sandbox(vec![init(exited("one", 0, 1, 2, 1))]),
                3,
                vec![Steps(vec![start_init("one", 1)]), Phase("Pending")],
            ),
            case(
                "init failed, Never: pod Failed, nothing more starts",
                pod(never),
                with_sandbox(vec![init(exited("one", 0, 1, 2, 1))]),
                3,
                vec![
                    Steps(vec![Step::RemoveSandbox]),
                    Phase("Failed"),
                    Init("one", "terminated(Error 1) restarts=0 ready=false"),
                    Init("two", "waiting(PodInitializing) restarts=0 ready=false"),
                    Container("app", "waiting(PodInitializing) restarts=0 ready=false"),
                    Condition("Initialized", "False ContainersNotInitialized: containers with incomplete status: [one two]"),
                    Condition("Ready", "False PodFailed"),
                ],
            ),
        ]);
    }

    #[test]
    fn start_failures() {
        let pull = failed("app", 0, "ErrImagePull", "pull access denied for nginx", 10);
        run_all(vec![
            case(
                "ErrImagePull first seen: shown, event, back-off armed",
                pod(app("Never")),
                with_sandbox(vec![pull.clone()]),
                10,
                vec![
                    Steps(vec![]),
                    Phase("Pending"),
                    Container("app", "waiting(ErrImagePull: pull access denied for nginx) restarts=0 ready=false"),
                    Events(vec!["Warning Failed: Error: ErrImagePull"]),
                    BackoffIs("app", Some(backoff(10, 20))),
                    Requeue(Some(secs(10))),
                ],
            ),
            case(
                "ErrImagePull while backing off: ImagePullBackOff",
                pod(app("Never")),
                with_sandbox(vec![pull.clone()]),
                12,
                vec![
                    Steps(vec![]),
                    Container("app", "waiting(ImagePullBackOff: Back-off pulling image \"nginx:1\") restarts=0 ready=false"),
                    Events(vec!["Normal BackOff: Back-off pulling image \"nginx:1\""]),
                    Requeue(Some(secs(8))),
                ],
            )
            .memory(memory(&[("app", backoff(10, 20))])),
            case(
                "ErrImagePull back-off over: retried with the same attempt, even for Never",
                pod(app("Never")),
                with_sandbox(vec![pull.clone()]),
                20,
                vec![Steps(vec![start("app", 0)]), Events(vec![])],
            )
            .memory(memory(&[("app", backoff(10, 20))])),
            case(
                "ErrImagePull again: the delay doubles",
                pod(app("Always")),
                with_sandbox(vec![failed("app", 0, "ErrImagePull", "denied", 21)]),
                21,
                vec![BackoffIs("app", Some(backoff(20, 41))), Requeue(Some(secs(20)))],
            )
            .memory(memory(&[("app", backoff(10, 20))])),
            case(
                "failed restart keeps the restart count and last state of what ran",
                pod(app("Always")),
                with_sandbox(vec![failed("app", 1, "ErrImagePull", "denied", 10), exited("app", 0, 1, 5, 1)]),
                12,
                vec![
                    Container(
                        "app",
                        "waiting(ImagePullBackOff: Back-off pulling image \"nginx:1\") restarts=0 ready=false last=terminated(Error 1)",
                    ),
                    Phase("Running"),
                ],
            )
            .memory(memory(&[("app", backoff(10, 20))])),
            case(
                "config error: reason and message as reported, Error event",
                pod(app("Always")),
                with_sandbox(vec![failed("app", 0, "CreateContainerConfigError", "configmap \"cfg\" not found", 10)]),
                10,
                vec![
                    Container(
                        "app",
                        "waiting(CreateContainerConfigError: configmap \"cfg\" not found) restarts=0 ready=false",
                    ),
                    Events(vec!["Warning Failed: Error: configmap \"cfg\" not found"]),
                    Requeue(Some(secs(10))),
                ],
            ),
            case(
                "config error again later: still retried every 10 s",
                pod(app("Always")),
                with_sandbox(vec![failed("app", 0, "CreateContainerConfigError", "configmap \"cfg\" not found", 25)]),
                25,
                vec![BackoffIs("app", Some(backoff(10, 35)))],
            )
            .memory(memory(&[("app", backoff(10, 20))])),
        ]);
    }

    #[test]
    fn liveness() {
        let mut probes = ProbeResults::default();
        probes.liveness_failed.insert(
            "app".into(),
            "Liveness probe failed: HTTP probe failed with statuscode: 500".into(),
        );
        let unhealthy = KillReason::Unhealthy(
            "Liveness probe failed: HTTP probe failed with statuscode: 500".into(),
        );
        let mut startup = ProbeResults::default();
        startup
            .liveness_failed
            .insert("app".into(), "Startup probe failed: timeout".into());
        let mut already = SyncMemory::default();
        already.killing.insert(("app".into(), 0));
        run_all(vec![
            case(
                "liveness failure: killed with the pod's grace period",
                pod(json!({"terminationGracePeriodSeconds": 45, "containers": [{"name": "app", "image": "x"}]})),
                with_sandbox(vec![running("app", 0, 1)]),
                5,
                vec![
                    Steps(vec![kill("app", 0, 45, unhealthy.clone())]),
                    Events(vec!["Normal Killing: Container app failed liveness probe, will be restarted"]),
                    Killing(vec![("app", 0)]),
                    Requeue(Some(secs(1))),
                    Phase("Running"),
                ],
            )
            .probes(probes.clone()),
            case(
                "kill already sent: not again",
                pod(app("Always")),
                with_sandbox(vec![running("app", 0, 1)]),
                6,
                vec![Steps(vec![]), Events(vec![]), Killing(vec![("app", 0)]), Requeue(Some(secs(1)))],
            )
            .probes(probes.clone())
            .memory(already),
            case(
                "probe's own grace period, Never: not restarted",
                pod(json!({"restartPolicy": "Never", "containers": [{"name": "app", "image": "x",
                    "livenessProbe": {"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 1}}]})),
                with_sandbox(vec![running("app", 0, 1)]),
                5,
                vec![
                    Steps(vec![kill("app", 0, 2, unhealthy)]),
                    Events(vec!["Normal Killing: Container app failed liveness probe"]),
                ],
            )
            .probes(probes.clone()),
            case(
                "startup probe failure",
                pod(app("Always")),
                with_sandbox(vec![running("app", 0, 1)]),
                5,
                vec![
                    Steps(vec![kill("app", 0, 30, KillReason::Unhealthy("Startup probe failed: timeout".into()))]),
                    Events(vec!["Normal Killing: Container app failed startup probe, will be restarted"]),
                ],
            )
            .probes(startup),
            case(
                "killed instance exited 137: restarted, kill forgotten",
                pod(app("OnFailure")),
                with_sandbox(vec![exited("app", 0, 1, 7, 137)]),
                8,
                vec![Steps(vec![start("app", 1)]), Killing(vec![])],
            )
            .memory({
                let mut m = SyncMemory::default();
                m.killing.insert(("app".into(), 0));
                m
            }),
        ]);
    }

    #[test]
    fn deletion() {
        let deleting = |grace: Option<i64>| {
            let mut extra = json!({"metadata": {"deletionTimestamp": time(t(100))},
                "status": {"phase": "Running", "startTime": time(t(0))}});
            if let Some(g) = grace {
                extra["metadata"]["deletionGracePeriodSeconds"] = json!(g);
            }
            pod_with(
                json!({"terminationGracePeriodSeconds": 60, "containers": [
                    {"name": "a", "image": "x"}, {"name": "b", "image": "x"}, {"name": "c", "image": "x"}]}),
                extra,
            )
        };
        let mut killing = SyncMemory::default();
        killing.killing.insert(("a".into(), 0));
        killing.killing.insert(("b".into(), 2));
        run_all(vec![
            case(
                "running containers are killed with deletionGracePeriodSeconds, nothing starts",
                deleting(Some(10)),
                with_sandbox(vec![running("a", 0, 1), running("b", 2, 1)]),
                100,
                vec![
                    Steps(vec![
                        kill("a", 0, 10, KillReason::PodDeleted),
                        kill("b", 2, 10, KillReason::PodDeleted),
                    ]),
                    Events(vec![
                        "Normal Killing: Stopping container a",
                        "Normal Killing: Stopping container b",
                    ]),
                    Killing(vec![("a", 0), ("b", 2)]),
                    Requeue(Some(secs(1))),
                    Finished(false),
                    // c never started: still waiting, so Pending (getPhase).
                    Phase("Pending"),
                ],
            ),
            case(
                "grace defaults to terminationGracePeriodSeconds",
                deleting(None),
                with_sandbox(vec![running("a", 0, 1)]),
                100,
                vec![Steps(vec![kill("a", 0, 60, KillReason::PodDeleted)])],
            ),
            case(
                "kills sent, one still running: wait",
                deleting(Some(10)),
                with_sandbox(vec![exited("a", 0, 1, 101, 143), running("b", 2, 1)]),
                101,
                vec![
                    Steps(vec![]),
                    Events(vec![]),
                    Killing(vec![("b", 2)]),
                    Requeue(Some(secs(1))),
                    Finished(false),
                ],
            )
            .memory(killing.clone()),
            case(
                "nothing runs: sandbox removed, terminal phase",
                deleting(Some(10)),
                with_sandbox(vec![exited("a", 0, 1, 101, 143), exited("b", 2, 1, 102, 0)]),
                103,
                vec![
                    Steps(vec![Step::RemoveSandbox]),
                    Finished(false),
                    Requeue(Some(secs(1))),
                    Phase("Failed"),
                    Container("c", "waiting(ContainerCreating) restarts=0 ready=false"),
                ],
            )
            .memory(killing.clone()),
            case(
                "no sandbox, nothing runs: finished",
                deleting(Some(10)),
                Observed {
                    sandbox: None,
                    containers: vec![exited("a", 0, 1, 101, 143)],
                },
                104,
                vec![
                    Steps(vec![]),
                    Finished(true),
                    Requeue(None),
                    Killing(vec![]),
                ],
            )
            .memory(killing),
        ]);
        let d = check(&case(
            "terminating_since is set",
            deleting(Some(10)),
            with_sandbox(vec![running("a", 0, 1)]),
            100,
            vec![],
        ));
        assert_eq!(d.memory.terminating_since, Some(t(100)));
    }

    #[test]
    fn finished_pods_and_deadline() {
        let deadline_spec = json!({"activeDeadlineSeconds": 60, "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "app", "image": "x"}]});
        run_all(vec![
            case(
                "Succeeded pod: nothing restarts, sandbox removed, status kept",
                pod_with(
                    app("Always"),
                    json!({"status": {"phase": "Succeeded", "reason": "Whatever", "podIP": "10.0.0.7"}}),
                ),
                with_sandbox(vec![exited("app", 0, 1, 4, 1)]),
                5,
                vec![
                    Steps(vec![Step::RemoveSandbox]),
                    Phase("Succeeded"),
                    Reason("Whatever: "),
                    Container("app", "terminated(Error 1) restarts=0 ready=false"),
                    Condition("Ready", "False PodCompleted"),
                ],
            ),
            case(
                "Failed pod without sandbox: nothing to do, pod IP kept",
                pod_with(app("Always"), json!({"status": {"phase": "Failed", "podIP": "10.0.0.7"}})),
                Observed {
                    sandbox: None,
                    containers: vec![exited("app", 0, 1, 4, 1)],
                },
                5,
                vec![Steps(vec![]), Phase("Failed"), PodIp("10.0.0.7"), Condition("PodReadyToStartContainers", "False")],
            ),
            case(
                "deadline not reached: requeued for it",
                pod_with(deadline_spec.clone(), json!({"status": {"phase": "Running", "startTime": time(t(0))}})),
                with_sandbox(vec![running("app", 0, 1)]),
                20,
                vec![Steps(vec![]), Phase("Running"), Requeue(Some(secs(40)))],
            ),
            case(
                "deadline passed: killed, Failed DeadlineExceeded",
                pod_with(deadline_spec.clone(), json!({"status": {"phase": "Running", "startTime": time(t(0))}})),
                with_sandbox(vec![running("app", 0, 1)]),
                60,
                vec![
                    Steps(vec![kill("app", 0, 5, KillReason::DeadlineExceeded)]),
                    Phase("Failed"),
                    Reason("DeadlineExceeded: Pod was active on the node longer than the specified deadline"),
                    Events(vec![
                        "Normal DeadlineExceeded: Pod was active on the node longer than the specified deadline",
                        "Normal Killing: Stopping container app",
                    ]),
                    Condition("Ready", "False PodFailed"),
                    Requeue(Some(secs(1))),
                ],
            ),
            case(
                "after the deadline: the kill goes on, no restart, then the sandbox goes",
                pod_with(
                    deadline_spec,
                    json!({"status": {"phase": "Failed", "reason": "DeadlineExceeded",
                        "message": "Pod was active on the node longer than the specified deadline",
                        "startTime": time(t(0))}}),
                ),
                with_sandbox(vec![exited("app", 0, 1, 62, 137)]),
                63,
                vec![
                    Steps(vec![Step::RemoveSandbox]),
                    Phase("Failed"),
                    Reason("DeadlineExceeded: Pod was active on the node longer than the specified deadline"),
                    Events(vec![]),
                ],
            ),
        ]);
    }

    #[test]
    fn qos_classes() {
        let with = |resources: Value| json!({"containers": [{"name": "app", "image": "x", "resources": resources}]});
        run_all(vec![
            case(
                "no resources: BestEffort",
                pod(with(json!({}))),
                Observed::default(),
                0,
                vec![Qos("BestEffort")],
            ),
            case(
                "requests only: Burstable",
                pod(with(json!({"requests": {"cpu": "100m"}}))),
                Observed::default(),
                0,
                vec![Qos("Burstable")],
            ),
            case(
                "limits equal requests: Guaranteed",
                pod(with(json!({"requests": {"cpu": "0.5", "memory": "128Mi"},
                    "limits": {"cpu": "500m", "memory": "134217728"}}))),
                Observed::default(),
                0,
                vec![Qos("Guaranteed")],
            ),
            case(
                "limits only: Guaranteed (requests default to limits)",
                pod(with(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
                Observed::default(),
                0,
                vec![Qos("Guaranteed")],
            ),
            case(
                "limits above requests: Burstable",
                pod(with(
                    json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}}),
                )),
                Observed::default(),
                0,
                vec![Qos("Burstable")],
            ),
            case(
                "only cpu limited: Burstable",
                pod(with(json!({"limits": {"cpu": "1"}}))),
                Observed::default(),
                0,
                vec![Qos("Burstable")],
            ),
            case(
                "existing qosClass is kept",
                pod_with(
                    with(json!({})),
                    json!({"status": {"qosClass": "Burstable"}}),
                ),
                Observed::default(),
                0,
                vec![Qos("Burstable")],
            ),
        ]);
    }

    #[test]
    fn go_durations() {
        let cases = [
            (10, "10s"),
            (20, "20s"),
            (40, "40s"),
            (80, "1m20s"),
            (160, "2m40s"),
            (300, "5m0s"),
            (3600, "1h0m0s"),
        ];
        for (s, want) in cases {
            assert_eq!(go_duration(secs(s)), want);
        }
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }

    /// A tiny runtime: carries out the steps instantly and publishes the
    /// status, so a pod can be followed over many syncs.
    struct Sim {
        pod: Pod,
        observed: Observed,
        probes: ProbeResults,
        memory: SyncMemory,
        now: i64,
    }

    impl Sim {
        fn new(pod: Pod) -> Sim {
            Sim {
                pod,
                observed: Observed::default(),
                probes: ProbeResults::default(),
                memory: SyncMemory::default(),
                now: 0,
            }
        }

        fn sync(&mut self) -> Decision {
            let d = sync_pod(
                &self.pod,
                &self.observed,
                &self.probes,
                &self.memory,
                &node(),
                t(self.now),
            );
            for step in &d.steps {
                match step {
                    Step::CreateSandbox => {
                        self.observed.sandbox = Some(Sandbox {
                            ip: Some("10.0.0.7".into()),
                            created_at: t(self.now),
                        })
                    }
                    Step::RemoveSandbox => self.observed.sandbox = None,
                    Step::StartContainer {
                        name,
                        init,
                        attempt,
                    } => {
                        self.observed
                            .containers
                            .retain(|i| !(i.name == *name && i.attempt == *attempt));
                        let mut i = running(name, *attempt, self.now);
                        i.init = *init;
                        self.observed.containers.push(i);
                    }
                    Step::KillContainer { name, attempt, .. } => self.exit(name, *attempt, 137),
                }
            }
            self.memory = d.memory.clone();
            self.pod.status = Some(d.status.clone());
            d
        }

        fn exit(&mut self, name: &str, attempt: u32, code: i32) {
            let now = t(self.now);
            for i in &mut self.observed.containers {
                if i.name == name && i.attempt == attempt {
                    if let InstanceState::Running { started_at } = i.state {
                        i.state = InstanceState::Exited {
                            started_at: Some(started_at),
                            finished_at: now,
                            exit_code: code,
                            oom_killed: false,
                            message: None,
                        };
                    }
                }
            }
        }

        fn newest(&self, name: &str) -> u32 {
            self.observed
                .containers
                .iter()
                .filter(|i| i.name == name)
                .map(|i| i.attempt)
                .max()
                .unwrap()
        }

        fn status_of(&self, name: &str) -> String {
            let status = self.pod.status.as_ref().unwrap();
            status
                .container_statuses
                .iter()
                .chain(status.init_container_statuses.iter())
                .flatten()
                .find(|s| s.name == name)
                .map(summary)
                .unwrap()
        }
    }

    #[test]
    fn back_off_doubles_to_five_minutes_and_resets() {
        let mut sim = Sim::new(pod(app("Always")));
        sim.sync(); // sandbox
        sim.sync(); // start attempt 0
        assert_eq!(sim.newest("app"), 0);
        // Each instance crashes 1 s after it started; record when restarts
        // happen and the delay the CrashLoopBackOff message names.
        let mut gaps = Vec::new();
        let mut messages = Vec::new();
        for _ in 0..8 {
            sim.now += 1;
            let attempt = sim.newest("app");
            sim.exit("app", attempt, 1);
            let crashed = sim.now;
            loop {
                let d = sim.sync();
                if sim.newest("app") > attempt {
                    gaps.push(sim.now - crashed);
                    break;
                }
                let status = sim.status_of("app");
                messages.push(status.clone());
                sim.now += d
                    .requeue_after
                    .expect("requeued while backing off")
                    .as_secs() as i64;
            }
        }
        assert_eq!(gaps, [0, 10, 20, 40, 80, 160, 300, 300]);
        let delays: Vec<&str> = messages
            .iter()
            .map(|m| {
                m.split("back-off ")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            delays,
            ["10s", "20s", "40s", "1m20s", "2m40s", "5m0s", "5m0s"]
        );
        assert!(messages[0].starts_with(
            "waiting(CrashLoopBackOff: back-off 10s restarting failed container=app pod=web_default(u1)) restarts=1"
        ));
        assert!(messages[0].ends_with("last=terminated(Error 1)"));
        assert_eq!(sim.newest("app"), 8);
        sim.sync();
        assert_eq!(
            sim.status_of("app"),
            "running restarts=8 ready=true started last=terminated(Error 1)"
        );

        // Runs for 10 minutes and a second, then crashes: at once, 10 s again.
        sim.now += 601;
        sim.exit("app", 8, 1);
        sim.sync();
        assert_eq!(sim.newest("app"), 9, "restarted at once");
        assert_eq!(sim.memory.backoff["app"].delay, BACKOFF_INITIAL);
        sim.now += 1;
        sim.exit("app", 9, 1);
        let d = sim.sync();
        assert_eq!(d.requeue_after, Some(secs(10)));
        assert!(sim.status_of("app").contains("back-off 10s"));
    }

    #[test]
    fn init_containers_run_in_order() {
        let mut sim = Sim::new(pod(json!({
            "restartPolicy": "OnFailure",
            "initContainers": [{"name": "one", "image": "x"}, {"name": "two", "image": "x"}],
            "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}],
        })));
        assert_eq!(sim.sync().steps, [Step::CreateSandbox]);
        assert_eq!(sim.sync().steps, [start_init("one", 0)]);
        assert_eq!(sim.sync().steps, []);
        sim.now += 1;
        sim.exit("one", 0, 1);
        assert_eq!(
            sim.sync().steps,
            [start_init("one", 1)],
            "failed init restarted first"
        );
        sim.now += 1;
        sim.exit("one", 1, 0);
        assert_eq!(sim.sync().steps, [start_init("two", 0)]);
        assert_eq!(
            sim.status_of("one"),
            "terminated(Completed 0) restarts=1 ready=true last=terminated(Error 1)"
        );
        sim.now += 1;
        sim.exit("two", 0, 0);
        assert_eq!(sim.sync().steps, [start("a", 0), start("b", 0)]);
        let d = sim.sync();
        assert_eq!(d.status.phase.as_deref(), Some("Running"));
        assert_eq!(condition_summary(&d.status, "Initialized"), "True");
        assert_eq!(condition_summary(&d.status, "Ready"), "True");
        sim.now += 1;
        sim.exit("a", 0, 0);
        sim.exit("b", 0, 0);
        let d = sim.sync();
        assert_eq!(d.steps, [Step::RemoveSandbox]);
        assert_eq!(d.status.phase.as_deref(), Some("Succeeded"));
        assert_eq!(
            condition_summary(&d.status, "Initialized"),
            "True PodCompleted"
        );
        let d = sim.sync();
        assert_eq!(d.steps, []);
        assert_eq!(d.status.phase.as_deref(), Some("Succeeded"));
        assert_eq!(
            condition_summary(&d.status, "PodReadyToStartContainers"),
            "False"
        );
    }

    #[test]
    fn liveness_kill_then_restart() {
        let mut sim = Sim::new(pod(app("Always")));
        sim.sync();
        sim.sync();
        sim.now += 30;
        sim.probes
            .liveness_failed
            .insert("app".into(), "Liveness probe failed: boom".into());
        let d = sim.sync();
        assert_eq!(
            d.steps,
            [kill(
                "app",
                0,
                30,
                KillReason::Unhealthy("Liveness probe failed: boom".into())
            )]
        );
        // The sim kills at once; the prober starts afresh for the new instance.
        sim.probes = ProbeResults::default();
        let d = sim.sync();
        assert_eq!(d.steps, [start("app", 1)]);
        assert_eq!(
            sim.status_of("app"),
            "terminated(Error 137) restarts=0 ready=false"
        );
        sim.sync();
        assert_eq!(
            sim.status_of("app"),
            "running restarts=1 ready=true started last=terminated(Error 137)"
        );
    }

    #[test]
    fn deletion_finishes_only_when_everything_is_gone() {
        let mut sim = Sim::new(pod(
            json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}),
        ));
        sim.sync();
        sim.sync();
        sim.now += 10;
        let mut p = sim.pod.clone();
        p.metadata.deletion_timestamp = Some(Time(t(sim.now)));
        p.metadata.deletion_grace_period_seconds = Some(30);
        sim.pod = p;
        // A runtime that does not act on kills right away.
        let d = sync_pod(
            &sim.pod,
            &sim.observed,
            &sim.probes,
            &sim.memory,
            &node(),
            t(sim.now),
        );
        assert_eq!(
            d.steps,
            [
                kill("a", 0, 30, KillReason::PodDeleted),
                kill("b", 0, 30, KillReason::PodDeleted)
            ]
        );
        assert!(!d.finished);
        sim.memory = d.memory;
        sim.now += 1;
        let d = sync_pod(
            &sim.pod,
            &sim.observed,
            &sim.probes,
            &sim.memory,
            &node(),
            t(sim.now),
        );
        assert_eq!(d.steps, [], "kills are sent once");
        assert!(!d.finished);
        sim.exit("a", 0, 0);
        sim.exit("b", 0, 0);
        let d = sim.sync();
        assert_eq!(d.steps, [Step::RemoveSandbox]);
        assert!(!d.finished);
        assert_eq!(d.status.phase.as_deref(), Some("Succeeded"), "all exited 0");
        let d = sim.sync();
        assert_eq!(d.steps, []);
        assert!(d.finished);
    }

    #[test]
    fn volumes_that_cannot_be_set_up_hold_the_sandbox_with_failed_mount() {
        let p = pod(json!({"containers": [{"name": "app", "image": "x"}]}));
        let errors =
            ["MountVolume.SetUp failed for volume \"v\" : configmap \"c\" not found".to_string()];
        let run = |memory: &SyncMemory, errors: &[String], now: i64| {
            sync_pod_with_volumes(
                &p,
                &Observed::default(),
                &ProbeResults::default(),
                memory,
                &node(),
                errors,
                t(now),
            )
        };
        let d = run(&SyncMemory::default(), &errors, 0);
        assert_eq!(d.steps, [], "no sandbox while a volume is missing");
        assert_eq!(d.events, [event(true, "FailedMount", &errors[0])]);
        assert_eq!(d.requeue_after, Some(VOLUME_RETRY));
        assert_eq!(d.status.phase.as_deref(), Some("Pending"));
        assert_eq!(
            d.status.container_statuses.as_ref().unwrap()[0]
                .state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("ContainerCreating")
        );
        let again = run(&d.memory, &errors, 10);
        assert_eq!(
            again.events,
            [],
            "the same failure is not reported every retry"
        );
        let later = run(&d.memory, &errors, 30);
        assert_eq!(later.events.len(), 1, "but again after 30 s");
        let healed = run(&d.memory, &[], 12);
        assert_eq!(healed.steps, [Step::CreateSandbox]);
        assert_eq!(healed.memory.failed_mount, None);
    }
}
