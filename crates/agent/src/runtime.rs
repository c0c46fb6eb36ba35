//! The seam between the agent and what runs containers: the agent decides
//! (see [`crate::sync`]), a [`ContainerRuntime`] carries out one step at a
//! time and reports what exists. Implementations: the process runtime and
//! the OCI runtime (crates/runtime-linux), and a fake for tests.

use std::path::PathBuf;
use std::time::Duration;

/// The stream types runtimes hand back (defined with the API server's
/// `NodeConnection`, which carries them to the user).
pub use apiserver::nodes::{ExecRequest, ExitStatus, ProcessStreams, TerminalSize};
use k8s_openapi::api::core::v1::Pod;

use crate::sync::{Observed, Sandbox};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Something the pod asked for cannot be done (a clear message for the
    /// user; becomes a waiting reason or an event).
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> RuntimeError {
        RuntimeError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Everything a container needs that the agent resolved from the API
/// (environment with ConfigMap/Secret/downward-API values filled in).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerLaunch {
    pub name: String,
    pub init: bool,
    pub attempt: u32,
    /// `command` + `args` resolved (`$(VAR)` expanded).
    pub argv: Vec<String>,
    /// `command` alone, `$(VAR)` expanded: an image runtime needs it apart
    /// from `args` (a `command` replaces the image's ENTRYPOINT and drops
    /// its CMD; `args` alone replace CMD).
    pub command: Vec<String>,
    /// `args` alone, `$(VAR)` expanded.
    pub args: Vec<String>,
    /// The container's own environment (`env`, `envFrom`), resolved. The
    /// runtime adds what it owns: `PATH` when nothing sets it, `HOSTNAME`,
    /// and (an image runtime) the image's environment underneath.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// CPU limit in millicores.
    pub cpu_limit_milli: Option<i64>,
    /// CPU request in millicores (shares / weight).
    pub cpu_request_milli: Option<i64>,
    /// Registry credentials from the pod's `imagePullSecrets` (for
    /// runtimes that pull images).
    pub pull_credentials: Vec<images::RegistryCredential>,
    /// The container cannot be configured (`(reason, message)`, e.g. a
    /// missing ConfigMap): the runtime records a `Failed` instance instead
    /// of starting it.
    pub config_error: Option<(String, String)>,
    /// The container's volume mounts, in `volumeMounts` order, resolved by
    /// the agent's volume manager (a `subPath` is already a bind mount of
    /// the resolved file, so `source` is safe to mount as is).
    pub mounts: Vec<Mount>,
    /// Where the runtime reports what it does on the way (the kubelet's
    /// image events: Pulling, Pulled, Failed); the agent writes them as the
    /// pod's events while the start goes on.
    pub events: EventSink,
}

/// An event of the pod that a runtime reports during a start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// The sending end of a start's events (none: reports go nowhere). Two
/// launches compare equal whatever their sinks.
#[derive(Clone, Debug, Default)]
pub struct EventSink(Option<tokio::sync::mpsc::UnboundedSender<RuntimeEvent>>);

impl EventSink {
    pub fn channel() -> (
        EventSink,
        tokio::sync::mpsc::UnboundedReceiver<RuntimeEvent>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (EventSink(Some(tx)), rx)
    }

    pub fn emit(&self, warning: bool, reason: &str, message: String) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(RuntimeEvent {
                warning,
                reason: reason.to_string(),
                message,
            });
        }
    }
}

impl PartialEq for EventSink {
    fn eq(&self, _: &EventSink) -> bool {
        true
    }
}

impl Eq for EventSink {}

/// One bind mount of a container (what an OCI spec `mounts` entry with
/// `type: bind` says).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    /// The host path to bind.
    pub source: PathBuf,
    /// Where the container sees it.
    pub destination: PathBuf,
    pub read_only: bool,
    /// A file bound onto a file (else a directory onto a directory).
    pub is_file: bool,
}

/// What the agent decided for a pod's sandbox beyond the Pod itself (the
/// kubelet's `PodSandboxConfig`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxConfig {
    /// The content of the pod's `/etc/resolv.conf` (`dns::resolv_conf`):
    /// the runtime keeps it with the sandbox and binds it onto every
    /// container's `/etc/resolv.conf`. `None` leaves the host's file.
    pub resolv_conf: Option<String>,
}

#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// A short name (`process`, `oci`).
    fn name(&self) -> &'static str;
    /// The uids of every pod this runtime holds state for (after an agent
    /// restart, what to re-adopt or clean up).
    async fn pods(&self) -> Vec<String>;
    /// What exists of pod `uid`.
    async fn observe(&self, uid: &str) -> Observed;
    async fn create_sandbox(
        &self,
        pod: &Pod,
        config: &SandboxConfig,
    ) -> Result<Sandbox, RuntimeError>;
    /// Starts one container instance. A container that cannot be started
    /// is recorded by the runtime as a `Failed` instance (so `observe`
    /// reports it); the error is returned as well.
    async fn start_container(
        &self,
        pod: &Pod,
        launch: &ContainerLaunch,
    ) -> Result<(), RuntimeError>;
    /// SIGTERM, then SIGKILL after `grace`; returns at once (the exit shows
    /// in `observe`).
    async fn kill_container(
        &self,
        uid: &str,
        name: &str,
        attempt: u32,
        grace: Duration,
    ) -> Result<(), RuntimeError>;
    /// Removes the sandbox (network, cgroups, any process left); container
    /// states and logs stay, for `kubectl logs` of a finished pod.
    async fn remove_sandbox(&self, uid: &str) -> Result<(), RuntimeError>;
    /// Removes everything left of a pod that no longer exists in the API.
    async fn forget(&self, uid: &str) -> Result<(), RuntimeError>;
    /// Runs `argv` inside a running container instance (its namespaces and
    /// environment) and returns its exit code and output (exec probes).
    async fn exec_sync(
        &self,
        uid: &str,
        name: &str,
        attempt: u32,
        argv: &[String],
        timeout: Duration,
    ) -> Result<(i32, String), RuntimeError>;
    /// Runs `request.command` inside a running container instance with the
    /// streams `request` asks for (a pty when `tty`), for `kubectl exec`.
    async fn exec(
        &self,
        uid: &str,
        name: &str,
        attempt: u32,
        request: &ExecRequest,
    ) -> Result<ProcessStreams, RuntimeError> {
        let _ = (uid, name, attempt, request);
        Err(RuntimeError::Invalid(format!(
            "exec is not supported by the {} runtime",
            self.name()
        )))
    }
    /// A writer into the stdin of a running container's main process
    /// (containers with `stdin: true`), for `kubectl attach`. Dropping it
    /// ends this attach; with `stdinOnce` that closes the container's stdin.
    async fn attach_stdin(
        &self,
        uid: &str,
        name: &str,
        attempt: u32,
    ) -> Result<tokio::sync::mpsc::Sender<bytes::Bytes>, RuntimeError> {
        let _ = (uid, name, attempt);
        Err(RuntimeError::Invalid(format!(
            "attaching to stdin is not supported by the {} runtime",
            self.name()
        )))
    }
    /// Terminal sizes for a running tty container instance (`tty: true`),
    /// for `kubectl attach -t`.
    async fn attach_resize(
        &self,
        uid: &str,
        name: &str,
        attempt: u32,
    ) -> Result<tokio::sync::mpsc::Sender<TerminalSize>, RuntimeError> {
        let _ = (uid, name, attempt);
        Err(RuntimeError::Invalid(format!(
            "attaching to a terminal is not supported by the {} runtime",
            self.name()
        )))
    }
    /// A TCP connection to `port` on the loopback interface of pod `uid`'s
    /// network namespace (`kubectl port-forward`).
    async fn port_forward(
        &self,
        uid: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream, RuntimeError> {
        let _ = (uid, port);
        Err(RuntimeError::Invalid(format!(
            "port forwarding is not supported by the {} runtime",
            self.name()
        )))
    }
    /// The log file of one container instance, if it exists.
    fn log_path(&self, uid: &str, name: &str, attempt: u32) -> Option<PathBuf>;
    /// CPU (nanoseconds used) and memory (working set bytes) of a pod, or
    /// of one of its containers.
    async fn usage(&self, uid: &str, container: Option<&str>) -> Option<Usage>;
}

/// Resource usage of a pod, read from its cgroups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_usage_ns: u64,
    pub memory_working_set_bytes: u64,
}
