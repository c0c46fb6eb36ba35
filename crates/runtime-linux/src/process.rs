//! The process runtime: a container is its `command` + `args` run as a
//! host process (no image) by a [`crate::shim`], in its own namespaces and
//! cgroup. State lives in files under the runtime's directory, so a
//! restarted agent finds every pod and container where it left them:
//!
//! ```text
//! <root>/pods/<uid>/sandbox.json                      the sandbox
//! <root>/pods/<uid>/resolv.conf                       the pod's /etc/resolv.conf (if the agent gave one)
//! <root>/pods/<uid>/containers/<name>/<attempt>/      shim config + state
//! <root>/logs/<namespace>_<pod>_<uid>/<name>/<attempt>.log
//! ```
//!
//! cgroups: `<parent>/pod<uid>/<name>` in every hierarchy.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use agent::runtime::{
    ContainerLaunch, ContainerRuntime, ExecRequest, ProcessStreams, RuntimeError, SandboxConfig,
    Usage,
};
use agent::sync::{ContainerInstance, InstanceState, Observed, Sandbox};
use k8s_openapi::api::core::v1::Pod;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cgroups::{Cgroups, Limits};
use crate::network::PodNetwork;
use crate::shim::{read_state, ShimConfig};

/// How to start the shim: this program with these leading arguments
/// (`drover internal-shim`), then the config path.
#[derive(Clone, Debug)]
pub struct ShimCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// How the shims rotate container logs.
    pub log_rotation: crate::shim::LogRotation,
    /// Forks shims instead of exec'ing `program` (see [`crate::zygote`]);
    /// `None`: every shim is exec'd.
    pub zygote: Option<std::sync::Arc<crate::zygote::Zygote>>,
}

pub struct ProcessRuntime {
    root: PathBuf,
    cgroups: Cgroups,
    cgroup_parent: PathBuf,
    shim: ShimCommand,
    /// The node's IP (the pod IP of `hostNetwork` pods).
    host_ip: String,
    /// Pod networking; `None` runs every pod on the host network.
    network: Option<PodNetwork>,
    /// What each pod cgroup is limited to (`--pod-max-pids`).
    pod_limits: crate::cgroups::PodCgroupLimits,
    /// Held while a pod's mount points are recorded and made, and while a
    /// departing pod's are handed over or removed, so that a pod starting
    /// next to one going away never sees its mount point removed between
    /// recording it as used and mounting on it.
    mount_points: std::sync::Mutex<()>,
}

#[derive(Serialize, Deserialize)]
struct SandboxFile {
    namespace: String,
    name: String,
    ip: Option<String>,
    created_at: String,
    /// The pod's own network namespace, if it has one.
    #[serde(default)]
    netns: Option<PathBuf>,
}

impl ProcessRuntime {
    /// Limits the processes of every pod to `limit` (the kubelet's
    /// `--pod-max-pids`; 0 or less: no limit).
    pub fn set_pod_pids_limit(&self, limit: i64) {
        self.pod_limits.set_pids(limit);
    }

    pub fn new(
        root: PathBuf,
        cgroups: Cgroups,
        cgroup_parent: PathBuf,
        shim: ShimCommand,
        host_ip: String,
        network: Option<PodNetwork>,
    ) -> Arc<ProcessRuntime> {
        Arc::new(ProcessRuntime {
            root,
            cgroups,
            cgroup_parent,
            shim,
            host_ip,
            network,
            mount_points: std::sync::Mutex::new(()),
            pod_limits: Default::default(),
        })
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join("pods").join(uid)
    }

    fn container_dir(&self, uid: &str, name: &str, attempt: u32) -> PathBuf {
        self.pod_dir(uid)
            .join("containers")
            .join(name)
            .join(attempt.to_string())
    }

    fn pod_cgroup(&self, uid: &str) -> PathBuf {
        self.cgroup_parent.join(format!("pod{uid}"))
    }

    fn sandbox_file(&self, uid: &str) -> Option<SandboxFile> {
        let bytes = std::fs::read(self.pod_dir(uid).join("sandbox.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The sandbox file, or what it said before the sandbox was removed.
    fn sandbox_or_last(&self, uid: &str) -> Option<SandboxFile> {
        self.sandbox_file(uid).or_else(|| {
            std::fs::read(self.pod_dir(uid).join("sandbox.last.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
        })
    }

    /// `<root>/logs/<namespace>_<pod>_<uid>`, as the kubelet names it.
    fn pod_logs_dir(&self, uid: &str, sandbox: &SandboxFile) -> PathBuf {
        self.root
            .join("logs")
            .join(format!("{}_{}_{uid}", sandbox.namespace, sandbox.name))
    }

    fn logs_dir(&self, uid: &str) -> Option<PathBuf> {
        Some(self.pod_logs_dir(uid, &self.sandbox_file(uid)?))
    }

    fn attempts(&self, uid: &str, name: &str) -> Vec<u32> {
        let dir = self.pod_dir(uid).join("containers").join(name);
        let mut attempts: Vec<u32> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        attempts.sort_unstable();
        attempts
    }

    fn instance(&self, uid: &str, name: &str, attempt: u32) -> Option<ContainerInstance> {
        let dir = self.container_dir(uid, name, attempt);
        let init = dir.join("init").exists();
        let container_id = format!("drover://{uid}/{name}/{attempt}");
        let state = instance_state(&dir.join("state.json"), &dir.join("config.json"))?;
        Some(ContainerInstance {
            name: name.to_string(),
            init,
            attempt,
            container_id,
            image_id: String::new(),
            state,
        })
    }

    fn running_pid(&self, uid: &str, name: &str, attempt: u32) -> Option<Pid> {
        let state = read_state(&self.container_dir(uid, name, attempt).join("state.json"))?;
        (state.exit_code.is_none() && state.failed.is_none() && state.pid > 0)
            .then(|| Pid::from_raw(state.pid))
    }

    /// `argv` run inside a running container instance: `nsenter` into its
    /// PID, mount, UTS, IPC and network namespaces (joined from outside, as
    /// `kubectl exec` does) with the container's environment and working
    /// directory.
    fn nsenter(
        &self,
        uid: &str,
        name: &str,
        attempt: u32,
        argv: &[String],
    ) -> Result<tokio::process::Command, RuntimeError> {
        let dir = self.container_dir(uid, name, attempt);
        let Some(pid) = self.running_pid(uid, name, attempt) else {
            return Err(RuntimeError::Invalid(format!(
                "container {name} is not running"
            )));
        };
        let config: ShimConfig = std::fs::read(dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| RuntimeError::Invalid(format!("container {name} has no config")))?;
        if argv.is_empty() {
            return Err(RuntimeError::Invalid("no command given".into()));
        }
        // Into the container's cgroups before nsenter runs, so the command
        // (nsenter's child) counts against the container's limits, as on
        // the kubelet. Not in a `pre_exec` hook: that makes std fork the
        // whole agent (copying its page tables, then copy-on-write faults
        // in every thread) instead of `posix_spawn`ing; with an exec probe
        // per pod per second that fork was the agent's largest cost. The
        // host's `sh` joins the cgroups and execs nsenter instead.
        let mut command = tokio::process::Command::new(host_program(&HOST_SH, "sh"));
        command
            .arg("-c")
            .arg(JOIN_CGROUPS_AND_EXEC)
            .arg("drover-exec")
            .args(config.cgroups.procs_files(&config.cgroup))
            .arg("--")
            .arg(host_program(&HOST_NSENTER, "nsenter"))
            .arg("-t")
            .arg(pid.as_raw().to_string())
            .args(["-p", "-m", "-u", "-i", "-n", "--"])
            .args(argv)
            .env_clear()
            .envs(config.env.iter().map(|(k, v)| (k, v)))
            .current_dir(config.working_dir.as_deref().unwrap_or("/"));
        Ok(command)
    }

    /// Records a container that could not be started, as the shim would.
    fn record_failure(&self, dir: &Path, reason: &str, message: &str) {
        let state = crate::shim::ShimState {
            failed: Some((reason.to_string(), message.to_string())),
            finished_at: Some(jiff::Timestamp::now().to_string()),
            ..Default::default()
        };
        let _ = std::fs::write(
            dir.join("state.json"),
            serde_json::to_vec(&state).unwrap_or_default(),
        );
    }
}

/// `sh -c` script: write `0` (the writing process) into each `cgroup.procs`
/// file before `--`, then exec what follows. A file that cannot be written
/// (the container's cgroup is gone) is skipped, as the kubelet's exec would
/// still run.
const JOIN_CGROUPS_AND_EXEC: &str = r#"for f do [ "$f" = -- ] && break; { echo 0 > "$f"; } 2>/dev/null; shift; done; shift; exec "$@""#;

/// A program of the host by absolute path, found once on the agent's own
/// `PATH` (the command's environment is the container's, whose `PATH` may
/// not have it); the bare name if it is nowhere.
fn host_program(cell: &'static OnceLock<PathBuf>, name: &str) -> &'static Path {
    cell.get_or_init(|| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| PathBuf::from(name))
    })
}

static HOST_SH: OnceLock<PathBuf> = OnceLock::new();
static HOST_NSENTER: OnceLock<PathBuf> = OnceLock::new();

/// How a shim-run container instance stands, from its state file (and,
/// before the shim writes one, the time `written` was written: a shim that
/// never says anything for 30 s died before starting the container).
pub(crate) fn instance_state(state_file: &Path, written: &Path) -> Option<InstanceState> {
    let state = match read_state(state_file) {
        None => {
            // The shim has not written anything yet: starting, or it died
            // before it could.
            let started = std::fs::metadata(written)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| jiff::Timestamp::try_from(t).ok())?;
            if jiff::Timestamp::now().duration_since(started) > jiff::SignedDuration::from_secs(30)
            {
                InstanceState::Failed {
                    reason: "RunContainerError".into(),
                    message: "the container shim exited before starting the container".into(),
                    at: started,
                }
            } else {
                return None;
            }
        }
        Some(s) => {
            let parse =
                |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if let Some((reason, message)) = s.failed {
                InstanceState::Failed {
                    reason,
                    message,
                    at: parse(&s.finished_at).unwrap_or_else(jiff::Timestamp::now),
                }
            } else if let Some(exit_code) = s.exit_code {
                InstanceState::Exited {
                    started_at: parse(&s.started_at),
                    finished_at: parse(&s.finished_at).unwrap_or_else(jiff::Timestamp::now),
                    exit_code,
                    oom_killed: s.oom_killed,
                    message: None,
                }
            } else if kill(Pid::from_raw(s.shim_pid), None).is_ok() {
                InstanceState::Running {
                    started_at: parse(&s.started_at).unwrap_or_else(jiff::Timestamp::now),
                }
            } else {
                // The shim was killed (not by us): the container went with
                // its PID namespace.
                InstanceState::Exited {
                    started_at: parse(&s.started_at),
                    finished_at: jiff::Timestamp::now(),
                    exit_code: 137,
                    oom_killed: false,
                    message: Some("the container's shim was killed".into()),
                }
            }
        }
    };
    Some(state)
}

impl ProcessRuntime {
    /// Containers of this runtime see the host's file system, so a mount
    /// point missing on the host is made there (directories for
    /// directories, an empty file for a file), and every path made is
    /// recorded in `<pod dir>/mountpoints` to be removed with the pod.
    /// Every destination the pod mounts on is recorded in `<pod
    /// dir>/mounts-used`, so that a mount point another pod made and this
    /// one uses too (every pod's service account volume, say) outlives the
    /// pod that made it ([`Self::remove_mount_points`]).
    fn make_mount_points(&self, uid: &str, mounts: &[agent::runtime::Mount]) -> Result<(), String> {
        let record = self.pod_dir(uid).join("mountpoints");
        let mut made = Vec::new();
        for m in mounts {
            if !m.destination.is_absolute() {
                return Err(format!(
                    "mount path {} must be absolute",
                    m.destination.display()
                ));
            }
        }
        let _guard = self
            .mount_points
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Recorded once per destination (every container start of the pod
        // comes through here).
        let used_file = self.pod_dir(uid).join("mounts-used");
        let already = read_paths(&used_file);
        let mut used: Vec<PathBuf> = Vec::new();
        for m in mounts {
            if !already.contains(&m.destination) && !used.contains(&m.destination) {
                used.push(m.destination.clone());
            }
        }
        append_paths(&used_file, &used)?;
        for m in mounts {
            if std::fs::symlink_metadata(&m.destination).is_ok() {
                continue;
            }
            let mut missing = Vec::new();
            let mut at = m.destination.as_path();
            while std::fs::symlink_metadata(at).is_err() {
                missing.push(at.to_path_buf());
                match at.parent() {
                    Some(p) => at = p,
                    None => break,
                }
            }
            for (i, path) in missing.iter().rev().enumerate() {
                let last = i + 1 == missing.len();
                let made_it = if last && m.is_file {
                    std::fs::OpenOptions::new()
                        .create_new(true)
                        .write(true)
                        .open(path)
                        .map(drop)
                } else {
                    std::fs::create_dir(path)
                };
                match made_it {
                    Ok(()) => made.push(path.clone()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(format!("creating mount point {}: {e}", path.display())),
                }
            }
        }
        append_paths(&record, &made)
    }

    /// Removes the mount points [`Self::make_mount_points`] made, newest
    /// first, and only while they are still what was made (an empty
    /// directory, an empty file). One that another pod of this runtime
    /// still mounts on (or below) is handed to that pod instead: removing
    /// it now would unmount it from under that pod (a mount point removed
    /// in one mount namespace is detached in all others).
    fn remove_mount_points(&self, uid: &str) {
        let _guard = self
            .mount_points
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let record = self.pod_dir(uid).join("mountpoints");
        let made = read_paths(&record);
        let others: Vec<(PathBuf, Vec<PathBuf>)> = std::fs::read_dir(self.root.join("pods"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy() != uid)
            .map(|e| {
                let used = read_paths(&e.path().join("mounts-used"));
                (e.path(), used)
            })
            .collect();
        let (remove, handed) = share_mount_points(&made, &others);
        for (dir, paths) in handed {
            if let Err(e) = append_paths(&dir.join("mountpoints"), &paths) {
                tracing::warn!("process runtime: handing mount points over: {e}");
            }
        }
        for path in remove {
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {
                    let _ = std::fs::remove_dir(&path);
                }
                Ok(m) if m.is_file() && m.len() == 0 => {
                    let _ = std::fs::remove_file(&path);
                }
                _ => {}
            }
        }
    }
}

fn read_paths(file: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect()
}

fn append_paths(file: &Path, paths: &[PathBuf]) -> Result<(), String> {
    use std::io::Write;
    if paths.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    for p in paths {
        text.push_str(&p.to_string_lossy());
        text.push('\n');
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("recording mount points in {}: {e}", file.display()))
}

/// Splits the mount points a departing pod made (`made`, oldest first)
/// into those to remove now (newest first) and those to hand over, by pod
/// dir, to another pod that mounts on or below them (`others`: each pod
/// dir with the destinations it uses); handed-over paths keep their
/// oldest-first order, so their new owner removes them newest first too.
pub(crate) fn share_mount_points(
    made: &[PathBuf],
    others: &[(PathBuf, Vec<PathBuf>)],
) -> (Vec<PathBuf>, Vec<(PathBuf, Vec<PathBuf>)>) {
    let mut remove = Vec::new();
    let mut handed: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    for path in made {
        let user = others
            .iter()
            .find(|(_, used)| used.iter().any(|d| d.starts_with(path)));
        match user {
            Some((dir, _)) => match handed.iter_mut().find(|(d, _)| d == dir) {
                Some((_, paths)) => paths.push(path.clone()),
                None => handed.push((dir.clone(), vec![path.clone()])),
            },
            None => remove.push(path.clone()),
        }
    }
    remove.reverse();
    (remove, handed)
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let what = what.into();
    move |e| RuntimeError::io(what, e)
}

#[async_trait::async_trait]
impl ContainerRuntime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn pods(&self) -> Vec<String> {
        std::fs::read_dir(self.root.join("pods"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect()
    }

    async fn observe(&self, uid: &str) -> Observed {
        let sandbox = self.sandbox_file(uid).and_then(|s| {
            Some(Sandbox {
                ip: s.ip,
                created_at: s.created_at.parse().ok()?,
            })
        });
        let mut containers = Vec::new();
        let dir = self.pod_dir(uid).join("containers");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        for name in names {
            let attempts = self.attempts(uid, &name);
            for attempt in attempts.iter().rev().take(2).rev() {
                if let Some(instance) = self.instance(uid, &name, *attempt) {
                    containers.push(instance);
                }
            }
        }
        Observed {
            sandbox,
            containers,
        }
    }

    async fn create_sandbox(
        &self,
        pod: &Pod,
        config: &SandboxConfig,
    ) -> Result<Sandbox, RuntimeError> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let began = std::time::Instant::now();
        let dir = self.pod_dir(uid);
        std::fs::create_dir_all(dir.join("containers"))
            .map_err(io(format!("creating pod directory {}", dir.display())))?;
        let resolv_conf = dir.join("resolv.conf");
        match &config.resolv_conf {
            Some(text) => std::fs::write(&resolv_conf, text).map_err(io(format!(
                "writing the pod's resolv.conf {}",
                resolv_conf.display()
            )))?,
            None => {
                let _ = std::fs::remove_file(&resolv_conf);
            }
        }
        let created_at = jiff::Timestamp::now();
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let (ip, netns) = match (&self.network, host_network) {
            (Some(network), false) => {
                let ip = network.setup(uid).await.map_err(RuntimeError::Invalid)?;
                (ip, Some(PodNetwork::netns_path(uid)))
            }
            _ => (self.host_ip.clone(), None),
        };
        let networked = began.elapsed();
        let file = SandboxFile {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            ip: Some(ip),
            created_at: created_at.to_string(),
            netns,
        };
        self.cgroups
            .create(&self.pod_cgroup(uid), &self.pod_limits.limits())
            .map_err(io("creating the pod cgroup"))?;
        let cgrouped = began.elapsed();
        let logs = self.pod_logs_dir(uid, &file);
        std::fs::create_dir_all(&logs)
            .map_err(io(format!("creating log directory {}", logs.display())))?;
        std::fs::write(
            dir.join("sandbox.json"),
            serde_json::to_vec(&file).unwrap_or_default(),
        )
        .map_err(io("writing sandbox.json"))?;
        tracing::debug!(
            target: "agent::timing",
            "sandbox of {uid}: network@{:.1} cgroup@{:.1} done@{:.1}",
            networked.as_secs_f64() * 1e3,
            cgrouped.as_secs_f64() * 1e3,
            began.elapsed().as_secs_f64() * 1e3
        );
        Ok(Sandbox {
            ip: file.ip,
            created_at,
        })
    }

    async fn start_container(
        &self,
        pod: &Pod,
        launch: &ContainerLaunch,
    ) -> Result<(), RuntimeError> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let began = std::time::Instant::now();
        let dir = self.container_dir(uid, &launch.name, launch.attempt);
        std::fs::create_dir_all(&dir).map_err(io(format!(
            "creating container directory {}",
            dir.display()
        )))?;
        if launch.init {
            let _ = std::fs::write(dir.join("init"), "");
        }
        // A retry of an instance that could not start reuses its attempt
        // number: the old record goes.
        let _ = std::fs::remove_file(dir.join("state.json"));
        if let Some((reason, message)) = &launch.config_error {
            self.record_failure(&dir, reason, message);
            return Err(RuntimeError::Invalid(message.clone()));
        }
        let logs = self
            .logs_dir(uid)
            .ok_or_else(|| RuntimeError::Invalid("the pod has no sandbox".into()))?
            .join(&launch.name);
        std::fs::create_dir_all(&logs).map_err(io("creating the container log directory"))?;
        let cgroup = self.pod_cgroup(uid).join(&launch.name);
        let limits = Limits {
            memory_bytes: launch.memory_limit,
            cpu_limit_milli: launch.cpu_limit_milli,
            cpu_request_milli: launch.cpu_request_milli,
            pids: None,
        };
        if let Err(e) = self.cgroups.create(&cgroup, &limits) {
            let message = format!("applying resource limits: {e}");
            self.record_failure(&dir, "CreateContainerError", &message);
            return Err(RuntimeError::Invalid(message));
        }
        let cgrouped = began.elapsed();
        if launch.argv.is_empty() {
            let message = "the process runtime runs `command` and `args` as a host process: the container has neither".to_string();
            self.record_failure(&dir, "CreateContainerConfigError", &message);
            return Err(RuntimeError::Invalid(message));
        }
        // A host process has no image environment: the OCI default PATH
        // and the pod's hostname, under the container's own variables.
        let mut env = vec![
            ("PATH".to_string(), crate::shim::DEFAULT_PATH.to_string()),
            (
                "HOSTNAME".to_string(),
                pod.metadata.name.clone().unwrap_or_default(),
            ),
        ];
        crate::merge_env(&mut env, &launch.env);
        let mut mounts = launch.mounts.clone();
        // The pod's resolv.conf, bound in the container's own mount
        // namespace only (the host's file stays as it is), unless a volume
        // is mounted there.
        let resolv_conf = self.pod_dir(uid).join("resolv.conf");
        let resolv_destination = Path::new("/etc/resolv.conf");
        if resolv_conf.is_file() && !mounts.iter().any(|m| m.destination == resolv_destination) {
            mounts.insert(
                0,
                agent::runtime::Mount {
                    source: resolv_conf,
                    destination: resolv_destination.to_path_buf(),
                    read_only: false,
                    is_file: true,
                },
            );
        }
        if let Err(message) = self.make_mount_points(uid, &mounts) {
            self.record_failure(&dir, "CreateContainerError", &message);
            return Err(RuntimeError::Invalid(message));
        }
        let (stdin, tty) = crate::shim::stream_configs(pod, &launch.name, launch.attempt);
        let config = ShimConfig {
            argv: launch.argv.clone(),
            env,
            working_dir: launch.working_dir.clone(),
            hostname: pod.metadata.name.clone().unwrap_or_default(),
            log_path: logs.join(format!("{}.log", launch.attempt)),
            state_path: dir.join("state.json"),
            cgroups: self.cgroups.clone(),
            cgroup,
            netns: self.sandbox_file(uid).and_then(|s| s.netns),
            stdin,
            tty,
            runc: None,
            mounts,
            log_rotation: self.shim.log_rotation,
        };
        let config_path = dir.join("config.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec(&config).unwrap_or_default(),
        )
        .map_err(io("writing the shim config"))?;
        let configured = began.elapsed();
        let started = crate::shim::start_and_await(
            &self.shim,
            &config_path,
            &dir.join("state.json"),
            Duration::from_secs(5),
        )
        .await;
        tracing::debug!(
            target: "agent::timing",
            "start of {uid}/{}: cgroup@{:.1} configured@{:.1} shim@{:.1}",
            launch.name,
            cgrouped.as_secs_f64() * 1e3,
            configured.as_secs_f64() * 1e3,
            began.elapsed().as_secs_f64() * 1e3
        );
        started
            .map_err(io(format!(
                "starting the container shim {}",
                self.shim.program.display()
            )))?
            .map_err(RuntimeError::Invalid)
    }

    async fn kill_container(
        &self,
        uid: &str,
        name: &str,
        attempt: u32,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let Some(pid) = self.running_pid(uid, name, attempt) else {
            return Ok(());
        };
        let _ = kill(pid, Signal::SIGTERM);
        let state_path = self.container_dir(uid, name, attempt).join("state.json");
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + grace;
            while tokio::time::Instant::now() < deadline {
                if read_state(&state_path).is_some_and(|s| s.exit_code.is_some()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if read_state(&state_path).is_some_and(|s| s.exit_code.is_none()) {
                // PID 1 of the container's PID namespace: its death takes
                // every other process of the container with it.
                let _ = kill(pid, Signal::SIGKILL);
            }
        });
        Ok(())
    }

    async fn remove_sandbox(&self, uid: &str) -> Result<(), RuntimeError> {
        let cgroup = self.pod_cgroup(uid);
        for _ in 0..50 {
            let pids = self.cgroups.pids(&cgroup);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.cgroups
            .remove(&cgroup)
            .map_err(io("removing the pod cgroup"))?;
        if let (Some(network), Some(sandbox)) = (&self.network, self.sandbox_file(uid)) {
            if sandbox.netns.is_some() {
                network.teardown(uid).await.map_err(RuntimeError::Invalid)?;
            }
        }
        // Logs and container states stay until the pod is forgotten.
        let sandbox = self.pod_dir(uid).join("sandbox.json");
        if let Some(mut file) = self.sandbox_file(uid) {
            file.ip = None;
            let _ = std::fs::write(
                self.pod_dir(uid).join("sandbox.last.json"),
                serde_json::to_vec(&file).unwrap_or_default(),
            );
        }
        match std::fs::remove_file(&sandbox) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RuntimeError::io("removing sandbox.json", e)),
        }
    }

    async fn forget(&self, uid: &str) -> Result<(), RuntimeError> {
        self.remove_sandbox(uid).await?;
        self.remove_mount_points(uid);
        if let Some(file) = self.sandbox_or_last(uid) {
            let _ = std::fs::remove_dir_all(self.pod_logs_dir(uid, &file));
        }
        match std::fs::remove_dir_all(self.pod_dir(uid)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RuntimeError::io("removing the pod's state", e)),
        }
    }

    async fn exec_sync(
        &self,
        uid: &str,
        name: &str,
        attempt: u32,
        argv: &[String],
        timeout: Duration,
    ) -> Result<(i32, String), RuntimeError> {
        let mut command = self.nsenter(uid, name, attempt, argv)?;
        command.stdin(Stdio::null()).kill_on_drop(true);
        let output = tokio::time::timeout(timeout, command.output())
            .await
            .map_err(|_| {
                RuntimeError::Invalid(format!("command timed out after {}s", timeout.as_secs()))
            })?
            .map_err(io("running nsenter for an exec"))?;
        let mut text = String::from_utf8_lossy(&output.stdout).to_string();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        let code = output.status.code().unwrap_or(128 + 9);
        Ok((code, text))
    }

    async fn exec(
        &self,
        uid: &str,
        name: &str,
        attempt: u32,
        request: &ExecRequest,
    ) -> Result<ProcessStreams, RuntimeError> {
        let command = self.nsenter(uid, name, attempt, &request.command)?;
        crate::streams::spawn(command, request).map_err(io("running nsenter for an exec"))
    }

    async fn attach_stdin(
        &self,
        uid: &str,
        name: &str,
        attempt: u32,
    ) -> Result<tokio::sync::mpsc::Sender<bytes::Bytes>, RuntimeError> {
        crate::shim::attach_stdin(uid, name, attempt)
    }

    async fn attach_resize(
        &self,
        uid: &str,
        name: &str,
        attempt: u32,
    ) -> Result<tokio::sync::mpsc::Sender<agent::runtime::TerminalSize>, RuntimeError> {
        crate::shim::attach_resize(uid, name, attempt)
    }

    async fn port_forward(
        &self,
        uid: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream, RuntimeError> {
        let Some(sandbox) = self.sandbox_file(uid) else {
            return Err(RuntimeError::Invalid(format!(
                "pod sandbox of {uid} not found"
            )));
        };
        crate::streams::connect_to_pod(sandbox.netns, port).await
    }

    fn log_path(&self, uid: &str, name: &str, attempt: u32) -> Option<PathBuf> {
        let file = self.sandbox_or_last(uid)?;
        let path = self
            .pod_logs_dir(uid, &file)
            .join(name)
            .join(format!("{attempt}.log"));
        path.exists().then_some(path)
    }

    async fn usage(&self, uid: &str, container: Option<&str>) -> Option<Usage> {
        let mut cgroup = self.pod_cgroup(uid);
        if let Some(name) = container {
            cgroup = cgroup.join(name);
        }
        let (cpu, memory) = self.cgroups.usage(&cgroup)?;
        Some(Usage {
            cpu_usage_ns: cpu,
            memory_working_set_bytes: memory,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn mount_points_another_pod_uses_are_handed_over_not_removed() {
        let made = paths(&[
            "/run/secrets",
            "/run/secrets/k8s",
            "/run/secrets/k8s/sa",
            "/data",
        ]);
        let others = vec![
            (
                PathBuf::from("/pods/b"),
                paths(&["/run/secrets/k8s/sa", "/etc/x"]),
            ),
            (PathBuf::from("/pods/c"), paths(&["/tmp/y"])),
        ];
        let (remove, handed) = share_mount_points(&made, &others);
        assert_eq!(remove, paths(&["/data"]));
        assert_eq!(
            handed,
            vec![(
                PathBuf::from("/pods/b"),
                paths(&["/run/secrets", "/run/secrets/k8s", "/run/secrets/k8s/sa"])
            )],
            "oldest first, so that b removes them newest first"
        );
        // Nobody else: everything goes, newest first.
        let (remove, handed) = share_mount_points(&made, &[]);
        assert_eq!(
            remove,
            paths(&[
                "/data",
                "/run/secrets/k8s/sa",
                "/run/secrets/k8s",
                "/run/secrets"
            ])
        );
        assert!(handed.is_empty());
    }

    #[test]
    fn a_path_prefix_that_is_not_a_parent_is_not_a_use() {
        let made = paths(&["/run/sec"]);
        let others = vec![(PathBuf::from("/pods/b"), paths(&["/run/secrets"]))];
        let (remove, handed) = share_mount_points(&made, &others);
        assert_eq!(remove, paths(&["/run/sec"]));
        assert!(handed.is_empty());
    }
}
