//! The OCI runtime: a container is an image run by runc from an OCI
//! runtime bundle (config.json + an overlayfs rootfs over the image's
//! layers), through the same detached [`crate::shim`] as the process
//! runtime, which runs `runc run` in the foreground. State lives in files
//! under the runtime's directory, so a restarted agent finds every pod:
//!
//! ```text
//! <root>/pods/<uid>/sandbox.json                  the sandbox
//! <root>/pods/<uid>/ns/{ipc,uts}                  the pod's IPC and UTS namespaces (bind mounts)
//! <root>/pods/<uid>/shm                           the pod's /dev/shm (tmpfs), in every container
//! <root>/pods/<uid>/etc/{hosts,hostname,resolv.conf}
//! <root>/pods/<uid>/containers/<name>/<attempt>/  shim.json, state.json, image.json
//!     bundle/config.json  bundle/rootfs (overlay)  bundle/upper  bundle/work
//! <root>/runc/                                    runc's --root (its container states)
//! <root>/logs/<namespace>_<pod>_<uid>/<name>/<attempt>.log
//! ```
//!
//! runc container IDs are `<uid>_<name>_<attempt>`; cgroups
//! `<parent>/pod<uid>/<name>`, as the process runtime has them.

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use agent::runtime::{ContainerLaunch, ContainerRuntime, RuntimeError, SandboxConfig, Usage};
use agent::sync::{ContainerInstance, InstanceState, Observed, Sandbox};
use agent::volumes::is_mount_point;
use images::{ImageConfig, ImageRequest, ImageService, PullPolicy};
use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::runtime as oci;
use serde::{Deserialize, Serialize};

use nix::sys::signal::Signal;

use crate::cgroups::Cgroups;
use crate::network::PodNetwork;
use crate::process::ShimCommand;
use crate::shim::{read_state, RuncRun, ShimConfig};

/// The capabilities a container gets unless it adds or drops some
/// (containerd's default set).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability, in bit order.
const ALL_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Which OCI runtime binary to use: the one given, else `runc` on PATH
/// (crun is not a default: it fails on cgroup v1 hybrid hosts such as
/// this project's CI machine).
pub fn detect_runc(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = configured {
        return Some(path.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("runc"))
        .find(|p| p.is_file())
}

/// A sealed, in-memory copy of an executable (a `memfd` with every write
/// seal), held by the agent for its lifetime.
///
/// runc 1.1 protects the host's binary from a container that would
/// overwrite it through `/proc/self/exe` (CVE-2019-5736) by re-executing
/// itself, for every container, from a read-only copy: `runc init` bind
/// mounts its own binary read-only on the host (a mount, a remount and an
/// unmount in the host's mount table) or copies it into a memfd, and
/// exec's that — a second Go start-up per container. It skips all of this
/// when it already runs from a fully sealed memfd, which no process can
/// write (runc's `is_self_cloned`). So the agent makes that copy once and
/// shims run runc from it (`/proc/<agent>/fd/<n>`, opened by each shim at
/// its start so the copy outlives an agent restart). Only ELF binaries are
/// copied: a script run through `/proc/self/fd` would be handed to its
/// interpreter by a path that is closed on exec.
#[derive(Debug)]
pub struct SealedBinary {
    fd: OwnedFd,
}

impl SealedBinary {
    /// Copies `binary` into a new memfd and seals it against writes,
    /// growing, shrinking and further seals. `Ok(None)`: not an ELF binary.
    pub fn copy_of(binary: &Path) -> std::io::Result<Option<SealedBinary>> {
        use nix::fcntl::{fcntl, FcntlArg, SealFlag};
        use nix::sys::memfd::{memfd_create, MFdFlags};
        use std::io::{Read, Seek};
        let mut source = std::fs::File::open(binary)?;
        let mut magic = [0u8; 4];
        if source.read_exact(&mut magic).is_err() || &magic != b"\x7fELF" {
            return Ok(None);
        }
        source.rewind()?;
        let fd = memfd_create(
            "runc-sealed",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?;
        let mut copy = std::fs::File::from(fd);
        std::io::copy(&mut source, &mut copy)?;
        fcntl(
            &copy,
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SEAL
                    | SealFlag::F_SEAL_SHRINK
                    | SealFlag::F_SEAL_GROW
                    | SealFlag::F_SEAL_WRITE,
            ),
        )?;
        Ok(Some(SealedBinary { fd: copy.into() }))
    }

    /// The path other processes of this machine open the copy by.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.fd.as_raw_fd()
        ))
    }
}

pub struct OciRuntime {
    root: PathBuf,
    runc: PathBuf,
    /// A sealed in-memory copy of `runc`, made on the first container start
    /// (see [`SealedBinary`]); `None` inside when it could not be made.
    sealed_runc: std::sync::OnceLock<Option<SealedBinary>>,
    cgroups: Cgroups,
    cgroup_parent: PathBuf,
    shim: ShimCommand,
    images: Arc<dyn ImageService>,
    /// The node's IP (the pod IP of `hostNetwork` pods).
    host_ip: String,
    /// Pod networking; `None` runs every pod on the host network.
    network: Option<PodNetwork>,
    /// What each pod cgroup is limited to (`--pod-max-pids`).
    pod_limits: crate::cgroups::PodCgroupLimits,
}

#[derive(Serialize, Deserialize)]
struct SandboxFile {
    namespace: String,
    name: String,
    ip: Option<String>,
    created_at: String,
    /// The pod's network namespace (`None`: the host's).
    netns: Option<PathBuf>,
    /// The pod's IPC namespace (`None`: `hostIPC`).
    ipc: Option<PathBuf>,
    /// The pod's UTS namespace (`None`: the host's, for `hostNetwork`).
    uts: Option<PathBuf>,
    /// The pod's `/dev/shm` (a tmpfs under the pod dir; the host's for
    /// `hostIPC`); `None` in sandboxes made before pods had one.
    #[serde(default)]
    shm: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct ImageFile {
    image_id: String,
}

/// Everything the bundle's config.json is made from (pure input of
/// [`build_spec`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecInput {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub capabilities: Vec<String>,
    pub privileged: bool,
    pub no_new_privileges: bool,
    pub readonly_root: bool,
    pub rootfs: PathBuf,
    /// Namespace files to join; `None` shares the host's.
    pub netns: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    pub host_pid: bool,
    /// The pod's `/dev/shm`, bind-mounted instead of a tmpfs of the
    /// container's own, so the containers of a pod (which share its IPC
    /// namespace) share POSIX shared memory too; `None`: a tmpfs per
    /// container (sandboxes made before pods had one).
    pub shm: Option<PathBuf>,
    /// The container runs on a terminal (`tty: true`): runc makes it one.
    pub terminal: bool,
    /// `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` of the pod.
    pub etc_files: Vec<(String, PathBuf)>,
    /// The pod's volumes as the container mounts them (bind mounts made by
    /// runc inside the rootfs).
    pub volume_mounts: Vec<agent::runtime::Mount>,
    pub cgroups_path: PathBuf,
    pub memory_limit: Option<i64>,
    pub cpu_limit_milli: Option<i64>,
    pub cpu_request_milli: Option<i64>,
    /// Host devices to create in the container (a privileged one gets
    /// them all: [`host_devices`]).
    pub devices: Vec<oci::LinuxDevice>,
}

/// The host's character and block devices under /dev (what containerd
/// gives a privileged container), without the per-container /dev/pts,
/// /dev/shm and /dev/mqueue.
pub fn host_devices() -> Vec<oci::LinuxDevice> {
    fn walk(dir: &Path, out: &mut Vec<oci::LinuxDevice>) {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let kind = meta.file_type();
            if kind.is_dir() {
                if !["pts", "shm", "mqueue", ".lxc", ".lxd-mounts", ".udev"]
                    .iter()
                    .any(|d| path.file_name().is_some_and(|n| n == *d))
                {
                    walk(&path, out);
                }
                continue;
            }
            let typ = if kind.is_char_device() {
                oci::LinuxDeviceType::C
            } else if kind.is_block_device() {
                oci::LinuxDeviceType::B
            } else {
                continue;
            };
            // /dev/console belongs to the container's terminal, if any.
            if path == Path::new("/dev/console") {
                continue;
            }
            let rdev = meta.rdev();
            if let Ok(device) = oci::LinuxDeviceBuilder::default()
                .path(&path)
                .typ(typ)
                .major(libc::major(rdev) as i64)
                .minor(libc::minor(rdev) as i64)
                .file_mode(meta.mode() & 0o7777)
                .uid(meta.uid())
                .gid(meta.gid())
                .build()
            {
                out.push(device);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/dev"), &mut out);
    out
}

/// The process's argv from the container's `command`/`args` and the
/// image's ENTRYPOINT/CMD, as Kubernetes combines them: `command` replaces
/// ENTRYPOINT and drops CMD; `args` alone replace CMD.
pub fn resolve_argv(command: &[String], args: &[String], image: &ImageConfig) -> Vec<String> {
    if !command.is_empty() {
        return command.iter().chain(args).cloned().collect();
    }
    let args = if args.is_empty() { &image.cmd } else { args };
    image.entrypoint.iter().chain(args).cloned().collect()
}

/// The environment: the OCI default PATH unless the image sets one, the
/// image's variables, `HOSTNAME`, then the container's own.
pub fn resolve_env(
    image: &ImageConfig,
    hostname: &str,
    container: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let image_env: Vec<(String, String)> = image
        .env
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e.clone(), String::new()),
        })
        .collect();
    if !image_env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".to_string(), crate::shim::DEFAULT_PATH.to_string()));
    }
    crate::merge_env(&mut env, &image_env);
    crate::merge_env(&mut env, &[("HOSTNAME".to_string(), hostname.to_string())]);
    crate::merge_env(&mut env, container);
    env
}

/// The capabilities in this process's bounding set: what a privileged
/// container gets (containerd gives it the runtime's own set; one the
/// runtime lacks cannot be granted).
pub fn current_capabilities() -> Vec<String> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    capabilities_of_mask(bounding)
}

/// The names of the capabilities whose bits are set in `mask`.
pub fn capabilities_of_mask(mask: u64) -> Vec<String> {
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// The capability set: the default set (`available`, the runtime's own,
/// if privileged), minus `drop` (`ALL` drops every one), plus `add` (`ALL`
/// adds `available`). Names as Kubernetes writes them, with or without
/// `CAP_`.
pub fn resolve_capabilities(
    add: &[String],
    drop: &[String],
    privileged: bool,
    available: &[String],
) -> Vec<String> {
    let norm = |c: &String| {
        let c = c.to_ascii_uppercase();
        c.strip_prefix("CAP_").map(str::to_string).unwrap_or(c)
    };
    let mut set: BTreeSet<String> = if privileged {
        available.iter().cloned().collect()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    };
    if privileged {
        return set.into_iter().collect();
    }
    for d in drop.iter().map(norm) {
        if d == "ALL" {
            set.clear();
        } else {
            set.remove(&d);
        }
    }
    for a in add.iter().map(norm) {
        if a == "ALL" {
            set.extend(available.iter().cloned());
        } else {
            set.insert(a);
        }
    }
    set.into_iter().collect()
}

/// `user`, `user:group`, `uid` or `uid:gid` of an image, against the
/// rootfs's /etc/passwd and /etc/group: `(uid, gid)`.
pub fn resolve_image_user(user: &str, passwd: &str, group: &str) -> Result<(u32, u32), String> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let entries = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
            .filter(|f| f.len() >= 3)
            .collect()
    };
    let users = entries(passwd);
    let (uid, passwd_gid) = match u.parse::<u32>() {
        Ok(uid) => {
            let gid = users
                .iter()
                .find(|f| f[2] == u)
                .and_then(|f| f.get(3)?.parse().ok());
            (uid, gid)
        }
        Err(_) => {
            let entry = users.iter().find(|f| f[0] == u).ok_or_else(|| {
                format!("unable to find user {u}: no matching entries in passwd file")
            })?;
            (
                entry[2]
                    .parse()
                    .map_err(|_| format!("bad uid for user {u} in passwd file"))?,
                entry.get(3).and_then(|g| g.parse().ok()),
            )
        }
    };
    let gid = match g {
        None => passwd_gid.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => entries(group)
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
    };
    Ok((uid, gid))
}

/// The bundle's config.json: containerd's defaults (mounts, masked and
/// read-only paths, 14 capabilities) with the container's settings.
pub fn build_spec(input: &SpecInput) -> Result<oci::Spec, String> {
    let e = |e: oci_spec::OciSpecError| e.to_string();
    let mut spec = oci::Spec::default();
    // The pod's UTS namespace has the hostname already.
    spec.set_hostname(None);
    spec.set_annotations(None);

    let capabilities: oci::Capabilities = input
        .capabilities
        .iter()
        .filter_map(|c| c.parse::<oci::Capability>().ok())
        .collect();
    let user = oci::UserBuilder::default()
        .uid(input.uid)
        .gid(input.gid)
        .additional_gids(input.additional_gids.clone())
        .build()
        .map_err(e)?;
    let process = oci::ProcessBuilder::default()
        .args(input.argv.clone())
        .env(
            input
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )
        .cwd(&input.cwd)
        .terminal(input.terminal)
        .user(user)
        .no_new_privileges(input.no_new_privileges)
        // The runtime's own limits are inherited, as containerd does.
        .rlimits(Vec::new())
        .capabilities(
            oci::LinuxCapabilitiesBuilder::default()
                .bounding(capabilities.clone())
                .effective(capabilities.clone())
                .permitted(capabilities)
                // Explicitly empty: the builder's default would fill
                // both with oci-spec's three default capabilities.
                // Nothing inheritable (CVE-2022-24769), no ambient ones.
                .inheritable(oci::Capabilities::new())
                .ambient(oci::Capabilities::new())
                .build()
                .map_err(e)?,
        )
        .build()
        .map_err(e)?;
    spec.set_process(Some(process));
    spec.set_root(Some(
        oci::RootBuilder::default()
            .path(&input.rootfs)
            .readonly(input.readonly_root)
            .build()
            .map_err(e)?,
    ));

    let mut mounts = oci::get_default_mounts();
    if let Some(shm) = &input.shm {
        let pod_shm = oci::MountBuilder::default()
            .destination("/dev/shm")
            .typ("bind")
            .source(shm)
            .options(
                ["rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"]
                    .map(String::from)
                    .to_vec(),
            )
            .build()
            .map_err(e)?;
        match mounts
            .iter_mut()
            .find(|m| m.destination() == Path::new("/dev/shm"))
        {
            Some(m) => *m = pod_shm,
            None => mounts.push(pod_shm),
        }
    }
    if input.privileged {
        // A privileged container may write /sys (and its cgroups).
        for m in &mut mounts {
            if let Some(options) = m.options().clone() {
                if m.destination().starts_with("/sys") {
                    m.set_options(Some(
                        options
                            .into_iter()
                            .map(|o| if o == "ro" { "rw".into() } else { o })
                            .collect(),
                    ));
                }
            }
        }
    }
    for (destination, source) in &input.etc_files {
        mounts.push(
            oci::MountBuilder::default()
                .destination(destination)
                .typ("bind")
                .source(source)
                .options(vec![
                    "rbind".to_string(),
                    "rprivate".to_string(),
                    "rw".to_string(),
                ])
                .build()
                .map_err(e)?,
        );
    }
    for m in &input.volume_mounts {
        mounts.push(
            oci::MountBuilder::default()
                .destination(&m.destination)
                .typ("bind")
                .source(&m.source)
                .options(vec![
                    "rbind".to_string(),
                    "rprivate".to_string(),
                    if m.read_only { "ro" } else { "rw" }.to_string(),
                ])
                .build()
                .map_err(e)?,
        );
    }
    spec.set_mounts(Some(mounts));

    let mut namespaces = vec![oci::LinuxNamespaceBuilder::default()
        .typ(oci::LinuxNamespaceType::Mount)
        .build()
        .map_err(e)?];
    if !input.host_pid {
        namespaces.push(
            oci::LinuxNamespaceBuilder::default()
                .typ(oci::LinuxNamespaceType::Pid)
                .build()
                .map_err(e)?,
        );
    }
    for (typ, path) in [
        (oci::LinuxNamespaceType::Network, &input.netns),
        (oci::LinuxNamespaceType::Ipc, &input.ipc),
        (oci::LinuxNamespaceType::Uts, &input.uts),
    ] {
        if let Some(path) = path {
            namespaces.push(
                oci::LinuxNamespaceBuilder::default()
                    .typ(typ)
                    .path(path)
                    .build()
                    .map_err(e)?,
            );
        }
    }

    let mut resources = oci::LinuxResourcesBuilder::default().devices(vec![
        oci::LinuxDeviceCgroupBuilder::default()
            .allow(input.privileged)
            .access("rwm")
            .build()
            .map_err(e)?,
    ]);
    if let Some(limit) = input.memory_limit {
        resources = resources.memory(
            oci::LinuxMemoryBuilder::default()
                .limit(limit)
                .build()
                .map_err(e)?,
        );
    }
    if input.cpu_limit_milli.is_some() || input.cpu_request_milli.is_some() {
        let mut cpu = oci::LinuxCpuBuilder::default();
        if let Some(limit) = input.cpu_limit_milli {
            cpu = cpu
                .quota((limit * 100_000 / 1000).max(1000))
                .period(100_000u64);
        }
        if let Some(request) = input.cpu_request_milli {
            cpu = cpu.shares(crate::cgroups::cpu_shares(request) as u64);
        }
        resources = resources.cpu(cpu.build().map_err(e)?);
    }

    let mut linux = oci::Linux::default();
    if !input.devices.is_empty() {
        linux.set_devices(Some(input.devices.clone()));
    }
    linux.set_namespaces(Some(namespaces));
    linux.set_resources(Some(resources.build().map_err(e)?));
    linux.set_cgroups_path(Some(input.cgroups_path.clone()));
    if input.privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        let mut masked = oci::get_default_maskedpaths();
        masked.push("/sys/devices/virtual/powercap".to_string());
        linux.set_masked_paths(Some(masked));
    }
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// The pod's container `name` (an init container if `init`).
fn find_container<'a>(pod: &'a Pod, name: &str, init: bool) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    let list = if init {
        spec.init_containers.as_deref().unwrap_or_default()
    } else {
        &spec.containers
    };
    list.iter().find(|c| c.name == name)
}

/// The pull policy as the API server defaults it (`Always` for `:latest`
/// or no tag, else `IfNotPresent`), when the pod does not say.
fn pull_policy(container: &Container) -> PullPolicy {
    match container.image_pull_policy.as_deref() {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        Some("IfNotPresent") => PullPolicy::IfNotPresent,
        _ => {
            let image = container.image.as_deref().unwrap_or_default();
            let last = image.rsplit('/').next().unwrap_or_default();
            if image.contains('@') || (last.contains(':') && !last.ends_with(":latest")) {
                PullPolicy::IfNotPresent
            } else {
                PullPolicy::Always
            }
        }
    }
}

/// Persistent namespaces kept by bind mounts on files (what `ip netns add`
/// does for network namespaces), made by a short-lived thread of ours that
/// unshares them (IPC and UTS namespaces are per thread) rather than an
/// `unshare` process: no exec on a pod's start path.
fn make_namespaces(ipc: Option<&Path>, uts: Option<&Path>, hostname: &str) -> Result<(), String> {
    use nix::sched::CloneFlags;
    let mut flags = CloneFlags::empty();
    for (flag, path) in [
        (CloneFlags::CLONE_NEWIPC, ipc),
        (CloneFlags::CLONE_NEWUTS, uts),
    ] {
        if let Some(path) = path {
            // A namespace left from an attempt that did not finish.
            unmount(path);
            std::fs::write(path, "").map_err(|e| format!("creating {}: {e}", path.display()))?;
            flags |= flag;
        }
    }
    if flags.is_empty() {
        return Ok(());
    }
    let (ipc, uts, hostname) = (
        ipc.map(Path::to_path_buf),
        uts.map(Path::to_path_buf),
        hostname.to_string(),
    );
    std::thread::spawn(move || {
        nix::sched::unshare(flags).map_err(|e| format!("creating the pod namespaces: {e}"))?;
        if uts.is_some() {
            nix::unistd::sethostname(&hostname)
                .map_err(|e| format!("setting the pod's hostname {hostname:?}: {e}"))?;
        }
        for (kind, path) in [("ipc", &ipc), ("uts", &uts)] {
            if let Some(path) = path {
                nix::mount::mount(
                    Some(format!("/proc/thread-self/ns/{kind}").as_str()),
                    path,
                    None::<&str>,
                    nix::mount::MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| {
                    format!(
                        "keeping the pod's {kind} namespace on {}: {e}",
                        path.display()
                    )
                })?;
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| "creating the pod namespaces: the thread panicked".to_string())?
}

/// A duration as Go prints one (`1.234s`, `56.789ms`), as in the kubelet's
/// messages.
fn go_duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{}s", d.as_millis() as f64 / 1000.0)
    } else {
        format!("{}ms", d.as_micros() as f64 / 1000.0)
    }
}

/// Unmounts `path` if it is a mount point (lazily: a namespace file or a
/// rootfs may still be held by an exiting process).
fn unmount(path: &Path) {
    let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
}

/// The `/etc/hosts` the kubelet writes for a pod with its own network.
fn hosts_file(ip: &str, hostname: &str) -> String {
    format!(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{ip}\t{hostname}\n"
    )
}

/// Every cgroup hierarchy mounted on this machine (runc makes a
/// container's cgroup in each, v1 controllers it does not limit included).
/// Read once: cgroup hierarchies are mounted at boot, while the rest of the
/// mount table grows with the pods (a few mounts each), and this ran for
/// every pod removed.
fn all_cgroup_mounts() -> &'static [PathBuf] {
    static MOUNTS: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    MOUNTS.get_or_init(read_cgroup_mounts)
}

fn read_cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            matches!(fields.get(dash + 1), Some(&"cgroup" | &"cgroup2"))
                .then(|| fields.get(4).map(PathBuf::from))
                .flatten()
        })
        .collect()
}

/// Removes cgroup `relative` (bottom-up) from every hierarchy.
pub fn remove_cgroup_everywhere(relative: &Path) {
    fn remove_tree(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for mount in all_cgroup_mounts() {
        remove_tree(&mount.join(relative));
    }
}

/// An instance's container init, to signal (what `runc kill` does).
struct InitTarget {
    runc: PathBuf,
    root: PathBuf,
    id: String,
    state_path: PathBuf,
    /// The container's cgroup, relative to the hierarchy roots.
    cgroup: PathBuf,
    cgroups: Cgroups,
}

impl InitTarget {
    /// Sends `signal` to the container's init without a runc process (≈ 25
    /// ms of CPU each; a pod's deletion took two). The shim's state names
    /// the init, which is the shim's child (its subreaper) since runc ran
    /// it detached. The process is pinned with a pidfd and then checked to
    /// be in the container's cgroup, so a recycled PID is never signalled.
    /// Anything else (a terminal container's foreground runc, whose PID the
    /// state holds; no pidfd support) falls back to `runc kill`.
    async fn signal(&self, signal: Signal) {
        let sent = read_state(&self.state_path)
            .filter(|s| s.exit_code.is_none() && s.failed.is_none() && s.pid > 0)
            .is_some_and(|s| self.signal_pid(s.pid, signal));
        if !sent {
            let _ = tokio::process::Command::new(&self.runc)
                .arg("--root")
                .arg(&self.root)
                .args(["kill", &self.id, signal.as_str().trim_start_matches("SIG")])
                .stdin(Stdio::null())
                .output()
                .await;
        }
    }

    /// Whether `signal` was delivered to `pid`, a member of the container's
    /// cgroup.
    fn signal_pid(&self, pid: i32, signal: Signal) -> bool {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd
        // (or -1), which OwnedFd then owns.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return false;
        }
        // SAFETY: `fd` is a new descriptor no one else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // With the process pinned, its PID cannot be reused: is it ours?
        if !self.cgroups.pids(&self.cgroup).contains(&pid) {
            return false;
        }
        // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                signal as i32,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        rc == 0
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let what = what.into();
    move |e| RuntimeError::io(what, e)
}

impl OciRuntime {
    /// Limits the processes of every pod to `limit` (the kubelet's
    /// `--pod-max-pids`; 0 or less: no limit).
    pub fn set_pod_pids_limit(&self, limit: i64) {
        self.pod_limits.set_pids(limit);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        root: PathBuf,
        runc: PathBuf,
        cgroups: Cgroups,
        cgroup_parent: PathBuf,
        shim: ShimCommand,
        images: Arc<dyn ImageService>,
        host_ip: String,
        network: Option<PodNetwork>,
    ) -> Arc<OciRuntime> {
        Arc::new(OciRuntime {
            root,
            runc,
            sealed_runc: std::sync::OnceLock::new(),
            cgroups,
            cgroup_parent,
            shim,
            images,
            host_ip,
            network,
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

    /// The path by which shims run the sealed copy of runc, if there is one.
    fn sealed_runc_path(&self) -> Option<PathBuf> {
        self.sealed_runc
            .get_or_init(|| match SealedBinary::copy_of(&self.runc) {
                Ok(sealed) => sealed,
                Err(e) => {
                    tracing::warn!(
                        "sealing a copy of {}: {e}; runc copies itself for every container",
                        self.runc.display()
                    );
                    None
                }
            })
            .as_ref()
            .map(SealedBinary::path)
    }

    /// A command running runc for `runc exec` (exec probes, `kubectl
    /// exec`): from the sealed copy when there is one, whose `runc init`
    /// then skips copying itself, as the shims' does.
    fn runc_exec_command(&self) -> tokio::process::Command {
        match self.sealed_runc_path() {
            Some(sealed) => {
                let mut command = tokio::process::Command::new(sealed);
                command.arg0(&self.runc);
                command
            }
            None => tokio::process::Command::new(&self.runc),
        }
    }

    fn runc_root(&self) -> PathBuf {
        self.root.join("runc")
    }

    fn runc_id(uid: &str, name: &str, attempt: u32) -> String {
        format!("{uid}_{name}_{attempt}")
    }

    fn pod_cgroup(&self, uid: &str) -> PathBuf {
        self.cgroup_parent.join(format!("pod{uid}"))
    }

    fn sandbox_file(&self, uid: &str) -> Option<SandboxFile> {
        let bytes = std::fs::read(self.pod_dir(uid).join("sandbox.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn sandbox_or_last(&self, uid: &str) -> Option<SandboxFile> {
        self.sandbox_file(uid).or_else(|| {
            std::fs::read(self.pod_dir(uid).join("sandbox.last.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
        })
    }

    fn pod_logs_dir(&self, uid: &str, sandbox: &SandboxFile) -> PathBuf {
        self.root
            .join("logs")
            .join(format!("{}_{}_{uid}", sandbox.namespace, sandbox.name))
    }

    fn names(&self, uid: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.pod_dir(uid).join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        names
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
        let state =
            crate::process::instance_state(&dir.join("state.json"), &dir.join("shim.json"))?;
        let image_id = std::fs::read(dir.join("image.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<ImageFile>(&b).ok())
            .map(|f| f.image_id)
            .unwrap_or_default();
        Some(ContainerInstance {
            name: name.to_string(),
            init: dir.join("init").exists(),
            attempt,
            container_id: format!("runc://{}", Self::runc_id(uid, name, attempt)),
            image_id,
            state,
        })
    }

    fn is_running(&self, uid: &str, name: &str, attempt: u32) -> bool {
        self.instance(uid, name, attempt)
            .is_some_and(|i| matches!(i.state, InstanceState::Running { .. }))
    }

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

    async fn runc(&self, args: &[&str]) -> Result<std::process::Output, RuntimeError> {
        tokio::process::Command::new(&self.runc)
            .arg("--root")
            .arg(self.runc_root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(io(format!("running {}", self.runc.display())))
    }

    /// Where an instance's container init is (see [`InitTarget::signal`]).
    fn init_target(&self, uid: &str, name: &str, attempt: u32) -> InitTarget {
        InitTarget {
            runc: self.runc.clone(),
            root: self.runc_root(),
            id: Self::runc_id(uid, name, attempt),
            state_path: self.container_dir(uid, name, attempt).join("state.json"),
            cgroup: self.pod_cgroup(uid).join(name),
            cgroups: self.cgroups.clone(),
        }
    }

    async fn signal_init(&self, uid: &str, name: &str, attempt: u32, signal: Signal) {
        self.init_target(uid, name, attempt).signal(signal).await;
    }

    /// Unmounts the rootfs of an instance and removes its writable layer.
    fn remove_rootfs(dir: &Path) {
        let bundle = dir.join("bundle");
        unmount(&bundle.join("rootfs"));
        let _ = std::fs::remove_dir_all(bundle.join("upper"));
        let _ = std::fs::remove_dir_all(bundle.join("work"));
    }

    /// Stops whatever of the pod still runs and waits (a little) for the
    /// shims to record it.
    async fn kill_everything(&self, uid: &str) {
        let mut running = Vec::new();
        for name in self.names(uid) {
            for attempt in self.attempts(uid, &name) {
                if self.is_running(uid, &name, attempt) {
                    self.signal_init(uid, &name, attempt, Signal::SIGKILL).await;
                    running.push((name.clone(), attempt));
                }
            }
        }
        for _ in 0..100 {
            if running.iter().all(|(n, a)| !self.is_running(uid, n, *a)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Builds the bundle of one instance: image, rootfs, config.json.
    async fn prepare(
        &self,
        pod: &Pod,
        launch: &ContainerLaunch,
        dir: &Path,
        sandbox: &SandboxFile,
    ) -> Result<PathBuf, (String, String)> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let invalid = |m: String| ("CreateContainerError".to_string(), m);
        let container = find_container(pod, &launch.name, launch.init)
            .ok_or_else(|| invalid(format!("container {} is not in the pod", launch.name)))?;
        let image = container.image.clone().unwrap_or_default();
        if image.is_empty() {
            return Err((
                "InvalidImageName".into(),
                "the OCI runtime needs an image: the container has none".into(),
            ));
        }
        // The kubelet's image events, with its wording.
        let events = &launch.events;
        let report = |progress: images::PullProgress| {
            match progress {
            images::PullProgress::Pulling => {
                events.emit(false, "Pulling", format!("Pulling image \"{image}\""))
            }
            images::PullProgress::Pulled {
                pulled,
                waited,
                size,
            } => events.emit(
                false,
                "Pulled",
                format!(
                    "Successfully pulled image \"{image}\" in {} ({} including waiting). Image size: {size} bytes.",
                    go_duration(pulled),
                    go_duration(waited)
                ),
            ),
            images::PullProgress::Present => events.emit(
                false,
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            ),
        }
        };
        let resolved = self
            .images
            .ensure_reporting(
                &ImageRequest {
                    image: image.clone(),
                    pull_policy: pull_policy(container),
                    credentials: launch.pull_credentials.clone(),
                },
                &report,
            )
            .await
            .map_err(|e| {
                match &e {
                    images::ImageError::Pull(message) => events.emit(
                        true,
                        "Failed",
                        format!("Failed to pull image \"{image}\": {message}"),
                    ),
                    images::ImageError::NeverPull(_) => events.emit(
                        true,
                        "ErrImageNeverPull",
                        format!(
                            "Container image \"{image}\" is not present with pull policy of Never"
                        ),
                    ),
                    images::ImageError::InvalidName(message) => events.emit(
                        true,
                        "InspectFailed",
                        format!("Failed to apply default image tag \"{image}\": {message}"),
                    ),
                }
                (e.reason().to_string(), e.to_string())
            })?;
        let _ = std::fs::write(
            dir.join("image.json"),
            serde_json::to_vec(&ImageFile {
                image_id: resolved.image_id.clone(),
            })
            .unwrap_or_default(),
        );

        // The rootfs: the image's layers under this instance's own
        // writable layer.
        let bundle = dir.join("bundle");
        let rootfs = bundle.join("rootfs");
        Self::remove_rootfs(dir);
        for d in [&rootfs, &bundle.join("upper"), &bundle.join("work")] {
            std::fs::create_dir_all(d)
                .map_err(|e| invalid(format!("creating {}: {e}", d.display())))?;
        }
        if resolved.layers.is_empty() {
            return Err(invalid(format!(
                "image {} has no layers",
                resolved.reference
            )));
        }
        let lower: Vec<String> = resolved
            .layers
            .iter()
            .rev()
            .map(|l| l.display().to_string())
            .collect();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            bundle.join("upper").display(),
            bundle.join("work").display()
        );
        nix::mount::mount(
            Some("overlay"),
            &rootfs,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| {
            invalid(format!(
                "mounting the overlay rootfs {}: {e}",
                rootfs.display()
            ))
        })?;

        let security = container.security_context.clone().unwrap_or_default();
        let pod_security = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
            .unwrap_or_default();
        let config_error = |m: String| ("CreateContainerConfigError".to_string(), m);
        let (image_uid, image_gid) = match resolved.config.user.as_deref().filter(|u| !u.is_empty())
        {
            None => (0, 0),
            Some(user) => {
                let read = |f: &str| std::fs::read_to_string(rootfs.join(f)).unwrap_or_default();
                resolve_image_user(user, &read("etc/passwd"), &read("etc/group"))
                    .map_err(config_error)?
            }
        };
        let run_as_user = security.run_as_user.or(pod_security.run_as_user);
        let uid_n = run_as_user.map(|u| u as u32).unwrap_or(image_uid);
        let gid_n = security
            .run_as_group
            .or(pod_security.run_as_group)
            .map(|g| g as u32)
            .unwrap_or(if run_as_user.is_some() { 0 } else { image_gid });
        if security.run_as_non_root.or(pod_security.run_as_non_root) == Some(true) && uid_n == 0 {
            return Err(config_error(
                "container has runAsNonRoot and image will run as root".into(),
            ));
        }
        let privileged = security.privileged == Some(true);
        let caps = security.capabilities.clone().unwrap_or_default();
        let argv = resolve_argv(&launch.command, &launch.args, &resolved.config);
        if argv.is_empty() {
            return Err(invalid("no command specified".into()));
        }
        let hostname = pod.metadata.name.clone().unwrap_or_default();
        let etc = self.pod_dir(uid).join("etc");
        let spec_input = SpecInput {
            argv,
            env: resolve_env(&resolved.config, &hostname, &launch.env),
            cwd: launch
                .working_dir
                .clone()
                .or(resolved.config.working_dir.clone())
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "/".into()),
            uid: uid_n,
            gid: gid_n,
            additional_gids: pod_security
                .supplemental_groups
                .iter()
                .flatten()
                .map(|g| *g as u32)
                .collect(),
            capabilities: resolve_capabilities(
                caps.add.as_deref().unwrap_or_default(),
                caps.drop.as_deref().unwrap_or_default(),
                privileged,
                &current_capabilities(),
            ),
            privileged,
            no_new_privileges: security.allow_privilege_escalation == Some(false),
            readonly_root: security.read_only_root_filesystem == Some(true),
            rootfs: rootfs.clone(),
            netns: sandbox.netns.clone(),
            ipc: sandbox.ipc.clone(),
            uts: sandbox.uts.clone(),
            shm: sandbox.shm.clone(),
            terminal: pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|c| c.name == launch.name))
                .is_some_and(|c| c.tty == Some(true)),
            host_pid: pod.spec.as_ref().and_then(|s| s.host_pid) == Some(true),
            volume_mounts: launch.mounts.clone(),
            etc_files: ["hosts", "hostname", "resolv.conf"]
                .iter()
                .map(|f| (format!("/etc/{f}"), etc.join(f)))
                .collect(),
            cgroups_path: Path::new("/").join(self.pod_cgroup(uid)).join(&launch.name),
            memory_limit: launch.memory_limit,
            cpu_limit_milli: launch.cpu_limit_milli,
            cpu_request_milli: launch.cpu_request_milli,
            devices: if privileged {
                host_devices()
            } else {
                Vec::new()
            },
        };
        let spec = build_spec(&spec_input).map_err(invalid)?;
        spec.save(bundle.join("config.json"))
            .map_err(|e| invalid(format!("writing {}/config.json: {e}", bundle.display())))?;
        Ok(bundle)
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for OciRuntime {
    fn name(&self) -> &'static str {
        "oci"
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
        for name in self.names(uid) {
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
        let began = std::time::Instant::now();
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let dir = self.pod_dir(uid);
        let name = pod.metadata.name.clone().unwrap_or_default();
        for d in [dir.join("containers"), dir.join("ns"), dir.join("etc")] {
            std::fs::create_dir_all(&d)
                .map_err(io(format!("creating pod directory {}", d.display())))?;
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        let (ip, netns) = match (&self.network, host_network) {
            (Some(network), false) => {
                let ip = network.setup(uid).await.map_err(RuntimeError::Invalid)?;
                (ip, Some(PodNetwork::netns_path(uid)))
            }
            _ => (self.host_ip.clone(), None),
        };
        let networked = began.elapsed();
        let ipc = (spec.host_ipc != Some(true)).then(|| dir.join("ns/ipc"));
        // A hostNetwork pod has the node's hostname (and UTS namespace).
        let uts = (!host_network).then(|| dir.join("ns/uts"));
        if ipc.is_some() || uts.is_some() {
            make_namespaces(ipc.as_deref(), uts.as_deref(), &name)
                .map_err(RuntimeError::Invalid)?;
        }
        let namespaces = began.elapsed();
        // One /dev/shm per pod, as containerd gives its sandbox: 64 MiB
        // of tmpfs that every container of the pod mounts; a hostIPC pod
        // shares the host's.
        let shm = match &ipc {
            Some(_) => {
                let shm = dir.join("shm");
                std::fs::create_dir_all(&shm).map_err(io(format!("creating {}", shm.display())))?;
                if !is_mount_point(&shm) {
                    nix::mount::mount(
                        Some("shm"),
                        &shm,
                        Some("tmpfs"),
                        nix::mount::MsFlags::MS_NOSUID
                            | nix::mount::MsFlags::MS_NODEV
                            | nix::mount::MsFlags::MS_NOEXEC,
                        Some("mode=1777,size=65536k"),
                    )
                    .map_err(|e| {
                        RuntimeError::Invalid(format!(
                            "mounting the pod's /dev/shm at {}: {e}",
                            shm.display()
                        ))
                    })?;
                }
                Some(shm)
            }
            None => Some(PathBuf::from("/dev/shm")),
        };
        let hostname = if host_network {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default()
        } else {
            name.clone()
        };
        let hosts = if host_network {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            hosts_file(&ip, &hostname)
        };
        // The agent's (cluster DNS, dnsPolicy, dnsConfig), else a copy of
        // the host's.
        let resolv = match &config.resolv_conf {
            Some(text) => text.clone(),
            None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        for (file, text) in [
            ("hosts", hosts),
            ("hostname", format!("{hostname}\n")),
            ("resolv.conf", resolv),
        ] {
            std::fs::write(dir.join("etc").join(file), text)
                .map_err(io(format!("writing the pod's /etc/{file}")))?;
        }
        let created_at = jiff::Timestamp::now();
        let file = SandboxFile {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name,
            ip: Some(ip),
            created_at: created_at.to_string(),
            netns,
            ipc,
            uts,
            shm,
        };
        let files = began.elapsed();
        self.cgroups
            .create(&self.pod_cgroup(uid), &self.pod_limits.limits())
            .map_err(io("creating the pod cgroup"))?;
        let cgroup = began.elapsed();
        let logs = self.pod_logs_dir(uid, &file);
        std::fs::create_dir_all(&logs)
            .map_err(io(format!("creating log directory {}", logs.display())))?;
        std::fs::write(
            dir.join("sandbox.json"),
            serde_json::to_vec(&file).unwrap_or_default(),
        )
        .map_err(io("writing sandbox.json"))?;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            target: "agent::timing",
            "oci sandbox of {uid}: network@{:.1} namespaces@{:.1} files@{:.1} cgroup@{:.1} done@{:.1}",
            ms(networked),
            ms(namespaces),
            ms(files),
            ms(cgroup),
            ms(began.elapsed())
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
        let began = std::time::Instant::now();
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let dir = self.container_dir(uid, &launch.name, launch.attempt);
        std::fs::create_dir_all(&dir).map_err(io(format!(
            "creating container directory {}",
            dir.display()
        )))?;
        if launch.init {
            let _ = std::fs::write(dir.join("init"), "");
        }
        let _ = std::fs::remove_file(dir.join("state.json"));
        // Older instances that ended keep their state and log, not their
        // rootfs.
        for attempt in self.attempts(uid, &launch.name) {
            if attempt < launch.attempt && !self.is_running(uid, &launch.name, attempt) {
                Self::remove_rootfs(&self.container_dir(uid, &launch.name, attempt));
            }
        }
        if let Some((reason, message)) = &launch.config_error {
            self.record_failure(&dir, reason, message);
            return Err(RuntimeError::Invalid(message.clone()));
        }
        let Some(sandbox) = self.sandbox_file(uid) else {
            return Err(RuntimeError::Invalid("the pod has no sandbox".into()));
        };
        let logs = self.pod_logs_dir(uid, &sandbox).join(&launch.name);
        std::fs::create_dir_all(&logs).map_err(io("creating the container log directory"))?;
        let bundle = match self.prepare(pod, launch, &dir, &sandbox).await {
            Ok(b) => b,
            Err((reason, message)) => {
                Self::remove_rootfs(&dir);
                self.record_failure(&dir, &reason, &message);
                return Err(RuntimeError::Invalid(message));
            }
        };
        let prepared = began.elapsed();
        // A leftover runc state of this ID (an agent that died mid-start).
        // runc keeps a container's state in `<root>/<id>`: without it there
        // is nothing to delete, and no runc process to spend on finding out.
        let id = Self::runc_id(uid, &launch.name, launch.attempt);
        if self.runc_root().join(&id).exists() {
            let _ = self.runc(&["delete", "--force", &id]).await;
        }
        let (stdin, tty) = crate::shim::stream_configs(pod, &launch.name, launch.attempt);
        let config = ShimConfig {
            argv: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            hostname: pod.metadata.name.clone().unwrap_or_default(),
            log_path: logs.join(format!("{}.log", launch.attempt)),
            state_path: dir.join("state.json"),
            cgroups: self.cgroups.clone(),
            cgroup: self.pod_cgroup(uid).join(&launch.name),
            netns: None,
            stdin,
            tty,
            // runc mounts the volumes (config.json).
            mounts: Vec::new(),
            log_rotation: self.shim.log_rotation,
            runc: Some(RuncRun {
                binary: self.runc.clone(),
                sealed: self.sealed_runc_path(),
                root: self.runc_root(),
                id,
                bundle,
            }),
        };
        let config_path = dir.join("shim.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec(&config).unwrap_or_default(),
        )
        .map_err(io("writing the shim config"))?;
        // runc may take a while (a large rootfs, a slow disk): 30 s.
        let started = crate::shim::start_and_await(
            &self.shim,
            &config_path,
            &dir.join("state.json"),
            Duration::from_secs(30),
        )
        .await;
        tracing::debug!(
            target: "agent::timing",
            "oci start {}/{}: prepared@{:.1} shim@{:.1}",
            uid,
            launch.name,
            prepared.as_secs_f64() * 1000.0,
            began.elapsed().as_secs_f64() * 1000.0
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
        if !self.is_running(uid, name, attempt) {
            return Ok(());
        }
        let target = self.init_target(uid, name, attempt);
        target.signal(Signal::SIGTERM).await;
        tokio::spawn(async move {
            let ended = || {
                read_state(&target.state_path)
                    .is_none_or(|s| s.exit_code.is_some() || s.failed.is_some())
            };
            let deadline = tokio::time::Instant::now() + grace;
            while tokio::time::Instant::now() < deadline {
                if ended() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !ended() {
                // The container's init: its death takes the PID namespace.
                target.signal(Signal::SIGKILL).await;
            }
        });
        Ok(())
    }

    async fn remove_sandbox(&self, uid: &str) -> Result<(), RuntimeError> {
        self.kill_everything(uid).await;
        for name in self.names(uid) {
            for attempt in self.attempts(uid, &name) {
                let id = Self::runc_id(uid, &name, attempt);
                if self.runc_root().join(&id).exists() {
                    let _ = self.runc(&["delete", "--force", &id]).await;
                }
                Self::remove_rootfs(&self.container_dir(uid, &name, attempt));
            }
        }
        let cgroup = self.pod_cgroup(uid);
        for _ in 0..50 {
            let pids = self.cgroups.pids(&cgroup);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        remove_cgroup_everywhere(&cgroup);
        self.cgroups
            .remove(&cgroup)
            .map_err(io("removing the pod cgroup"))?;
        // The namespace files whether or not sandbox.json was written (an
        // agent may have died in between).
        for ns in ["ipc", "uts"] {
            let path = self.pod_dir(uid).join("ns").join(ns);
            unmount(&path);
            let _ = std::fs::remove_file(&path);
        }
        let shm = self.pod_dir(uid).join("shm");
        if is_mount_point(&shm) {
            unmount(&shm);
        }
        let _ = std::fs::remove_dir(&shm);
        let Some(mut file) = self.sandbox_file(uid) else {
            return Ok(());
        };
        if let (Some(network), Some(_)) = (&self.network, &file.netns) {
            network.teardown(uid).await.map_err(RuntimeError::Invalid)?;
        }
        file.ip = None;
        let _ = std::fs::write(
            self.pod_dir(uid).join("sandbox.last.json"),
            serde_json::to_vec(&file).unwrap_or_default(),
        );
        match std::fs::remove_file(self.pod_dir(uid).join("sandbox.json")) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RuntimeError::io("removing sandbox.json", e)),
        }
    }

    async fn forget(&self, uid: &str) -> Result<(), RuntimeError> {
        self.remove_sandbox(uid).await?;
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
        if !self.is_running(uid, name, attempt) {
            return Err(RuntimeError::Invalid(format!(
                "container {name} is not running"
            )));
        }
        if argv.is_empty() {
            return Err(RuntimeError::Invalid("no command given".into()));
        }
        // `runc exec` runs in the container's namespaces and cgroup with
        // its config.json's environment, user and working directory.
        let mut command = self.runc_exec_command();
        command
            .arg("--root")
            .arg(self.runc_root())
            .arg("exec")
            .arg(Self::runc_id(uid, name, attempt))
            .args(argv)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(timeout, command.output())
            .await
            .map_err(|_| {
                RuntimeError::Invalid(format!("command timed out after {}s", timeout.as_secs()))
            })?
            .map_err(io("running runc exec"))?;
        let mut text = String::from_utf8_lossy(&output.stdout).to_string();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        let code = output.status.code().unwrap_or(128 + 9);
        Ok((code, text))
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

    async fn exec(
        &self,
        uid: &str,
        name: &str,
        attempt: u32,
        request: &agent::runtime::ExecRequest,
    ) -> Result<agent::runtime::ProcessStreams, RuntimeError> {
        if !self.is_running(uid, name, attempt) {
            return Err(RuntimeError::Invalid(format!(
                "container {name} is not running"
            )));
        }
        if request.command.is_empty() {
            return Err(RuntimeError::Invalid("no command given".into()));
        }
        // `runc exec` enters the container (namespaces, cgroup, user, env,
        // working directory); the streams are its stdio (a pty for -t).
        let mut command = self.runc_exec_command();
        command
            .arg("--root")
            .arg(self.runc_root())
            .arg("exec")
            .arg(Self::runc_id(uid, name, attempt))
            .args(&request.command);
        crate::streams::spawn(command, request).map_err(io("running runc exec"))
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

/// An [`ImageService`] over a directory, for tests and for running the OCI
/// runtime before an image store is wired (`drover server
/// --oci-image-dir-for-tests`): image `…/NAME:TAG` is the single layer
/// `<dir>/NAME` with the config in `<dir>/NAME.json` (an [`ImageConfig`]
/// as JSON; empty if absent); any other image fails as a pull would.
pub struct DirectoryImages {
    pub dir: PathBuf,
}

#[derive(Deserialize)]
struct DirectoryImageConfig {
    #[serde(default)]
    entrypoint: Vec<String>,
    #[serde(default)]
    cmd: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[async_trait::async_trait]
impl ImageService for DirectoryImages {
    async fn ensure_reporting(
        &self,
        request: &ImageRequest,
        progress: &(dyn Fn(images::PullProgress) + Send + Sync),
    ) -> Result<images::ResolvedImage, images::ImageError> {
        let last = request.image.rsplit('/').next().unwrap_or_default();
        let name = last.split(['@', ':']).next().unwrap_or_default();
        let layer = self.dir.join(name);
        if name.is_empty() || !layer.is_dir() {
            return Err(images::ImageError::Pull(format!(
                "failed to pull and unpack image \"{}\": not found in {}",
                request.image,
                self.dir.display()
            )));
        }
        let config = std::fs::read(self.dir.join(format!("{name}.json")))
            .ok()
            .and_then(|b| serde_json::from_slice::<DirectoryImageConfig>(&b).ok())
            .map(|c| ImageConfig {
                entrypoint: c.entrypoint,
                cmd: c.cmd,
                env: c.env,
                working_dir: c.working_dir,
                user: c.user,
            })
            .unwrap_or_default();
        progress(images::PullProgress::Present);
        Ok(images::ResolvedImage {
            reference: request.image.clone(),
            image_id: format!("dir://{}", layer.display()),
            layers: vec![layer],
            config,
            size: 0,
        })
    }
}

/// Makes `<dir>/<name>`, a rootfs of static busybox (`/bin/busybox` and a
/// link per applet), with /etc/passwd and /etc/group of `root` and `app`
/// (1234), and `<dir>/<name>.json` with `cmd` `sh` and `env`.
pub fn make_busybox_image(
    dir: &Path,
    name: &str,
    busybox: &Path,
    env: &[&str],
) -> std::io::Result<()> {
    let root = dir.join(name);
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(busybox, root.join("bin/busybox"))?;
    let list = std::process::Command::new(busybox).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = root.join("bin").join(applet.trim());
        if applet.trim().is_empty() || link.exists() {
            continue;
        }
        std::os::unix::fs::symlink("busybox", link)?;
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/tmp:/bin/sh\n",
    )?;
    std::fs::write(root.join("etc/group"), "root:x:0:\napp:x:1234:\n")?;
    let config = serde_json::json!({"cmd": ["sh"], "env": env});
    std::fs::write(dir.join(format!("{name}.json")), config.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_sealed_copy_runs_and_cannot_be_written() {
        use nix::fcntl::{fcntl, FcntlArg, SealFlag};
        // Any ELF binary of the host will do; `true` is everywhere.
        let binary = ["/usr/bin/true", "/bin/true"]
            .map(Path::new)
            .into_iter()
            .find(|p| p.is_file())
            .expect("no true binary on this machine");
        let sealed = SealedBinary::copy_of(binary)
            .expect("copying true")
            .expect("true is an ELF binary");
        let seals = fcntl(&sealed.fd, FcntlArg::F_GET_SEALS).expect("F_GET_SEALS");
        let all = SealFlag::F_SEAL_SEAL
            | SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_WRITE;
        // runc skips its own copy only when exactly these seals are set.
        assert_eq!(seals, all.bits(), "seals of the copy");
        assert_eq!(
            std::fs::read(sealed.path()).expect("reading the copy"),
            std::fs::read(binary).expect("reading the original"),
            "the copy differs from the binary"
        );
        let write = std::fs::OpenOptions::new()
            .write(true)
            .open(sealed.path())
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
        assert!(write.is_err(), "the sealed copy could be written");
        // Run as shims do: another process opens the agent's descriptor by
        // its /proc path and executes it.
        let status = std::process::Command::new(sealed.path())
            .status()
            .expect("running the sealed copy");
        assert!(status.success(), "the sealed copy of true exited {status}");
    }

    #[test]
    fn scripts_are_not_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("runc");
        std::fs::write(&script, "#!/bin/sh\nexec runc \"$@\"\n").unwrap();
        assert!(SealedBinary::copy_of(&script).unwrap().is_none());
        assert!(SealedBinary::copy_of(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn command_and_args_combine_with_the_image_as_kubernetes_does() {
        let image = ImageConfig {
            entrypoint: strings(&["/entry"]),
            cmd: strings(&["--default"]),
            ..Default::default()
        };
        let check = |command: &[&str], args: &[&str], want: &[&str]| {
            assert_eq!(
                resolve_argv(&strings(command), &strings(args), &image),
                strings(want),
                "command {command:?} args {args:?}"
            );
        };
        check(&[], &[], &["/entry", "--default"]);
        check(&["/bin/sh"], &[], &["/bin/sh"]);
        check(&[], &["-x"], &["/entry", "-x"]);
        check(&["/bin/sh"], &["-c", "true"], &["/bin/sh", "-c", "true"]);
    }

    #[test]
    fn environment_layers_image_under_container() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        let image = ImageConfig {
            env: strings(&["PATH=/image/bin", "A=image", "B=image"]),
            ..Default::default()
        };
        assert_eq!(
            resolve_env(&image, "pod", &[pair("B", "pod")]),
            vec![
                pair("PATH", "/image/bin"),
                pair("A", "image"),
                pair("B", "pod"),
                pair("HOSTNAME", "pod"),
            ]
        );
        let bare = resolve_env(&ImageConfig::default(), "p", &[]);
        assert_eq!(bare[0], pair("PATH", crate::shim::DEFAULT_PATH));
    }

    #[test]
    fn capabilities_add_and_drop_on_the_default_set() {
        let all = strings(&ALL_CAPABILITIES);
        let caps = |add: &[&str], drop: &[&str], privileged: bool| {
            resolve_capabilities(&strings(add), &strings(drop), privileged, &all)
        };
        assert_eq!(caps(&[], &[], false).len(), 14);
        let c = caps(&["NET_ADMIN"], &["CAP_KILL", "MKNOD"], false);
        assert!(c.contains(&"NET_ADMIN".to_string()));
        assert!(!c.contains(&"KILL".to_string()) && !c.contains(&"MKNOD".to_string()));
        assert_eq!(caps(&["CHOWN"], &["ALL"], false), strings(&["CHOWN"]));
        assert_eq!(caps(&[], &["ALL"], true).len(), ALL_CAPABILITIES.len());
        // A privileged container gets what the runtime has.
        let some = strings(&["CHOWN", "SYS_ADMIN"]);
        assert_eq!(resolve_capabilities(&[], &[], true, &some), some);
        assert_eq!(
            capabilities_of_mask(0x420),
            strings(&["KILL", "NET_BIND_SERVICE"])
        );
        assert_eq!(capabilities_of_mask(0xa80425fb).len(), 14);
        // Every name is one oci-spec knows.
        for c in ALL_CAPABILITIES {
            assert!(c.parse::<oci::Capability>().is_ok(), "{c}");
        }
    }

    #[test]
    fn image_users_resolve_against_passwd_and_group() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n";
        let group = "root:x:0:\nstaff:x:50:\n";
        let check = |user: &str| resolve_image_user(user, passwd, group);
        assert_eq!(check("1000"), Ok((1000, 0)));
        assert_eq!(check("1000:7"), Ok((1000, 7)));
        assert_eq!(check("33"), Ok((33, 34)));
        assert_eq!(check("www"), Ok((33, 34)));
        assert_eq!(check("www:staff"), Ok((33, 50)));
        assert!(check("nobody")
            .unwrap_err()
            .contains("unable to find user nobody"));
        assert!(check("www:nogroup")
            .unwrap_err()
            .contains("unable to find group"));
    }

    #[test]
    fn spec_joins_the_pod_namespaces_and_applies_security() {
        let input = SpecInput {
            argv: strings(&["sh"]),
            cwd: "/".into(),
            uid: 1000,
            gid: 1000,
            capabilities: strings(&["KILL"]),
            no_new_privileges: true,
            readonly_root: true,
            rootfs: "/b/rootfs".into(),
            netns: Some("/run/netns/x".into()),
            ipc: Some("/p/ns/ipc".into()),
            uts: Some("/p/ns/uts".into()),
            shm: Some("/p/shm".into()),
            cgroups_path: "/drover/podu/c".into(),
            memory_limit: Some(1 << 20),
            cpu_limit_milli: Some(500),
            cpu_request_milli: Some(250),
            ..Default::default()
        };
        let json = serde_json::to_value(build_spec(&input).unwrap()).unwrap();
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(json["process"]["user"]["uid"], 1000);
        assert_eq!(
            json["process"]["capabilities"]["bounding"],
            serde_json::json!(["CAP_KILL"])
        );
        assert!(json.get("hostname").is_none());
        let ns = json["linux"]["namespaces"].as_array().unwrap();
        let path_of = |t: &str| {
            ns.iter()
                .find(|n| n["type"] == t)
                .map(|n| n["path"].clone())
        };
        assert_eq!(path_of("network"), Some(serde_json::json!("/run/netns/x")));
        assert_eq!(path_of("ipc"), Some(serde_json::json!("/p/ns/ipc")));
        assert_eq!(path_of("pid"), Some(serde_json::Value::Null));
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 1 << 20);
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(json["linux"]["resources"]["cpu"]["shares"], 256);
        assert!(json["linux"]["maskedPaths"].as_array().is_some());
        // The pod's /dev/shm, once, instead of a tmpfs of its own.
        let shm: Vec<&serde_json::Value> = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["destination"] == "/dev/shm")
            .collect();
        assert_eq!(shm.len(), 1, "{shm:?}");
        assert_eq!(shm[0]["type"], "bind");
        assert_eq!(shm[0]["source"], "/p/shm");

        let host = SpecInput {
            privileged: true,
            ..input
        };
        let host = SpecInput {
            netns: None,
            ..host
        };
        let json = serde_json::to_value(build_spec(&host).unwrap()).unwrap();
        let ns = json["linux"]["namespaces"].as_array().unwrap();
        assert!(!ns.iter().any(|n| n["type"] == "network"));
        assert!(json["linux"].get("maskedPaths").is_none());
        assert_eq!(json["linux"]["resources"]["devices"][0]["allow"], true);
    }
}
