//! cgroups for pods and containers, on the unified hierarchy (cgroup v2)
//! and on the legacy per-controller hierarchies (cgroup v1, also in the
//! "hybrid" layout where v1 controllers sit beside an empty v2 mount).
//! Roots are paths, so tests point them at a temporary directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Limits applied to one container's cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<i64>,
    pub cpu_limit_milli: Option<i64>,
    pub cpu_request_milli: Option<i64>,
    pub pids: Option<i64>,
}

/// The limits every pod cgroup gets, set once the node's flags are known
/// (the kubelet's `--pod-max-pids`); both runtimes hold one.
#[derive(Debug, Default)]
pub struct PodCgroupLimits {
    pids: std::sync::atomic::AtomicI64,
}

impl PodCgroupLimits {
    /// At most `limit` processes per pod; 0 or less: no limit.
    pub fn set_pids(&self, limit: i64) {
        self.pids
            .store(limit.max(0), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn limits(&self) -> Limits {
        let pids = self.pids.load(std::sync::atomic::Ordering::Relaxed);
        Limits {
            pids: (pids > 0).then_some(pids),
            ..Limits::default()
        }
    }
}

/// Where the agent mounts a controller-less cgroup v1 hierarchy with the
/// `favordynmods` option (see [`favor_dynamic_modifications`]).
pub const FAVORDYNMODS_MOUNT: &str = "/run/drover/cgroup-favordynmods";

/// How to make the kernel favour dynamic cgroup modifications on this
/// machine (pure: from a mountinfo text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FavorDynmodsPlan {
    /// A cgroup mount already has `favordynmods` (the kernel's flag is
    /// global): nothing to do.
    AlreadyOn { mount_point: PathBuf },
    /// Mount a named v1 hierarchy (no controllers) with the option; if the
    /// kernel has no cgroup v1, remount `v2_root` (when there is one) with
    /// its own options plus `favordynmods`.
    Mount {
        v2_root: Option<(PathBuf, String, String)>,
    },
}

/// Every task moved between cgroups (a pod's first process written into
/// `cgroup.procs`, runc's `cgroup.procs` writes, `CLONE_INTO_CGROUP`)
/// takes the kernel's global `cgroup_threadgroup_rwsem` for writing, which
/// first waits out an RCU grace period when the lock has been idle: 5-20 ms
/// per pod start on this machine's kernel. With `favordynmods` on any
/// cgroup root the lock stays in its writer-friendly mode and a move takes
/// ≈0.25 ms, at the cost of slightly dearer forks and exits (the kernel's
/// documented trade-off; systemd offers it for cgroup2 too).
pub fn favordynmods_plan(mountinfo: &str) -> FavorDynmodsPlan {
    let mut v2_root = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount_point), Some(mount_options), Some(fstype), Some(options)) = (
            fields.get(4),
            fields.get(5),
            fields.get(dash + 1),
            fields.get(dash + 3),
        ) else {
            continue;
        };
        if !matches!(*fstype, "cgroup" | "cgroup2") {
            continue;
        }
        if options.split(',').any(|o| o == "favordynmods") {
            return FavorDynmodsPlan::AlreadyOn {
                mount_point: PathBuf::from(mount_point),
            };
        }
        if *fstype == "cgroup2" && v2_root.is_none() {
            let super_options: Vec<&str> = options
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro"))
                .chain(std::iter::once("favordynmods"))
                .collect();
            v2_root = Some((
                PathBuf::from(mount_point),
                mount_options.to_string(),
                super_options.join(","),
            ));
        }
    }
    FavorDynmodsPlan::Mount { v2_root }
}

/// Turns on the kernel's `favordynmods` for cgroups (see
/// [`favordynmods_plan`]): by mounting a controller-less named v1
/// hierarchy at [`FAVORDYNMODS_MOUNT`] (kept for the machine's life, like
/// the cgroup mounts themselves; a second agent finds it there), or, on a
/// kernel without cgroup v1, by remounting the cgroup2 root with its own
/// options plus `favordynmods`. Returns what it did, for the log.
pub fn favor_dynamic_modifications() -> io::Result<String> {
    use nix::mount::{mount, MsFlags};
    // Agents starting together (tests, several on one machine) decide one
    // at a time, so the hierarchy is mounted once.
    fs::create_dir_all("/run/drover")?;
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/drover/cgroup-favordynmods.lock")?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io::Error::other(format!("locking /run/drover: {e}")))?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    match favordynmods_plan(&mountinfo) {
        FavorDynmodsPlan::AlreadyOn { mount_point } => Ok(format!(
            "already on ({} has favordynmods)",
            mount_point.display()
        )),
        FavorDynmodsPlan::Mount { v2_root } => {
            let at = Path::new(FAVORDYNMODS_MOUNT);
            fs::create_dir_all(at)?;
            let named = mount(
                Some("cgroup"),
                at,
                Some("cgroup"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("none,name=drover,favordynmods"),
            );
            match (named, v2_root) {
                (Ok(()), _) => Ok(format!(
                    "mounted a named cgroup hierarchy at {FAVORDYNMODS_MOUNT}"
                )),
                (Err(e), None) => Err(io::Error::other(format!(
                    "mounting a named cgroup hierarchy at {FAVORDYNMODS_MOUNT}: {e}"
                ))),
                (Err(named_error), Some((root, mount_options, super_options))) => {
                    let _ = fs::remove_dir(at);
                    let mut flags = MsFlags::MS_REMOUNT;
                    for o in mount_options.split(',') {
                        flags |= match o {
                            "ro" => MsFlags::MS_RDONLY,
                            "nosuid" => MsFlags::MS_NOSUID,
                            "nodev" => MsFlags::MS_NODEV,
                            "noexec" => MsFlags::MS_NOEXEC,
                            "relatime" => MsFlags::MS_RELATIME,
                            "noatime" => MsFlags::MS_NOATIME,
                            _ => MsFlags::empty(),
                        };
                    }
                    mount(None::<&str>, &root, None::<&str>, flags, Some(super_options.as_str()))
                        .map_err(|e| {
                            io::Error::other(format!(
                                "mounting a named cgroup hierarchy: {named_error}; remounting {} with favordynmods: {e}",
                                root.display()
                            ))
                        })?;
                    Ok(format!("remounted {} with {super_options}", root.display()))
                }
            }
        }
    }
}

/// The CFS period the CPU quota is expressed in (as the kubelet uses).
const CPU_PERIOD_US: i64 = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Cgroups {
    /// cgroup v2 mounted at `root` (normally /sys/fs/cgroup).
    V2 { root: PathBuf },
    /// cgroup v1: one mount per controller we use.
    V1 {
        memory: PathBuf,
        cpu: PathBuf,
        cpuacct: PathBuf,
        pids: PathBuf,
    },
}

impl Cgroups {
    /// Finds how this machine mounts cgroups (from /proc/self/mountinfo).
    pub fn detect() -> io::Result<Cgroups> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        Cgroups::from_mountinfo(&mountinfo).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no usable cgroup mount (need cgroup2 with memory/cpu/pids controllers, or cgroup v1 memory, cpu, cpuacct and pids)",
            )
        })
    }

    /// The choice from a mountinfo text: v2 if its root has the controllers
    /// we need (pure; tested with both layouts).
    pub fn from_mountinfo(mountinfo: &str) -> Option<Cgroups> {
        let mut v2 = None;
        let (mut memory, mut cpu, mut cpuacct, mut pids) = (None, None, None, None);
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(dash) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let (Some(mount_point), Some(fstype), Some(options)) =
                (fields.get(4), fields.get(dash + 1), fields.get(dash + 3))
            else {
                continue;
            };
            let path = PathBuf::from(mount_point);
            match *fstype {
                "cgroup2" => {
                    // A hybrid layout's /sys/fs/cgroup/unified has no
                    // controllers; only a full v2 root counts.
                    let controllers =
                        fs::read_to_string(path.join("cgroup.controllers")).unwrap_or_default();
                    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
                    if has("memory") && has("cpu") && has("pids") {
                        v2 = Some(path);
                    }
                }
                "cgroup" => {
                    for option in options.split(',') {
                        match option {
                            "memory" => memory = Some(path.clone()),
                            "cpu" => cpu = Some(path.clone()),
                            "cpuacct" => cpuacct = Some(path.clone()),
                            "pids" => pids = Some(path.clone()),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(root) = v2 {
            return Some(Cgroups::V2 { root });
        }
        Some(Cgroups::V1 {
            memory: memory?,
            cpu: cpu?,
            cpuacct: cpuacct?,
            pids: pids?,
        })
    }

    pub fn version(&self) -> u8 {
        match self {
            Cgroups::V2 { .. } => 2,
            Cgroups::V1 { .. } => 1,
        }
    }

    /// The directories of cgroup `relative` (one per hierarchy).
    fn dirs(&self, relative: &Path) -> Vec<PathBuf> {
        match self {
            Cgroups::V2 { root } => vec![root.join(relative)],
            Cgroups::V1 {
                memory,
                cpu,
                cpuacct,
                pids,
            } => {
                let mut dirs = vec![
                    memory.join(relative),
                    cpu.join(relative),
                    cpuacct.join(relative),
                    pids.join(relative),
                ];
                dirs.dedup();
                dirs
            }
        }
    }

    /// Creates cgroup `relative` (and its parents) with `limits`.
    pub fn create(&self, relative: &Path, limits: &Limits) -> io::Result<()> {
        if let Cgroups::V2 { root } = self {
            // Controllers must be enabled in every ancestor's subtree_control.
            let mut dir = root.clone();
            for part in relative.parent().into_iter().flat_map(|p| p.components()) {
                enable_v2_controllers(&dir);
                dir = dir.join(part);
                create_dir(&dir)?;
            }
            enable_v2_controllers(&dir);
        }
        for dir in self.dirs(relative) {
            create_dir(&dir)?;
        }
        self.apply(relative, limits)
    }

    fn apply(&self, relative: &Path, limits: &Limits) -> io::Result<()> {
        match self {
            Cgroups::V2 { root } => {
                let dir = root.join(relative);
                if let Some(m) = limits.memory_bytes {
                    write(&dir.join("memory.max"), &m.to_string())?;
                    // No swap beyond the limit, like the kubelet's default.
                    let _ = write(&dir.join("memory.swap.max"), "0");
                }
                if let Some(cpu) = limits.cpu_limit_milli {
                    let quota = (cpu * CPU_PERIOD_US / 1000).max(1000);
                    write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
                }
                if let Some(request) = limits.cpu_request_milli {
                    write(&dir.join("cpu.weight"), &cpu_weight(request).to_string())?;
                }
                if let Some(p) = limits.pids {
                    write(&dir.join("pids.max"), &p.to_string())?;
                }
            }
            Cgroups::V1 {
                memory, cpu, pids, ..
            } => {
                if let Some(m) = limits.memory_bytes {
                    write(
                        &memory.join(relative).join("memory.limit_in_bytes"),
                        &m.to_string(),
                    )?;
                    let _ = write(
                        &memory.join(relative).join("memory.memsw.limit_in_bytes"),
                        &m.to_string(),
                    );
                }
                if let Some(c) = limits.cpu_limit_milli {
                    let quota = (c * CPU_PERIOD_US / 1000).max(1000);
                    write(
                        &cpu.join(relative).join("cpu.cfs_period_us"),
                        &CPU_PERIOD_US.to_string(),
                    )?;
                    write(
                        &cpu.join(relative).join("cpu.cfs_quota_us"),
                        &quota.to_string(),
                    )?;
                }
                if let Some(request) = limits.cpu_request_milli {
                    write(
                        &cpu.join(relative).join("cpu.shares"),
                        &cpu_shares(request).to_string(),
                    )?;
                }
                if let Some(p) = limits.pids {
                    write(&pids.join(relative).join("pids.max"), &p.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files a process must be written to, to join
    /// cgroup `relative` in every hierarchy.
    pub fn procs_files(&self, relative: &Path) -> Vec<PathBuf> {
        self.dirs(relative)
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// Processes in cgroup `relative` and below.
    pub fn pids(&self, relative: &Path) -> Vec<i32> {
        let mut out = Vec::new();
        for dir in self.dirs(relative) {
            collect_pids(&dir, &mut out);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// How many processes the OOM killer killed in cgroup `relative`.
    pub fn oom_kill_count(&self, relative: &Path) -> u64 {
        let (file, key) = match self {
            Cgroups::V2 { root } => (root.join(relative).join("memory.events"), "oom_kill"),
            Cgroups::V1 { memory, .. } => {
                (memory.join(relative).join("memory.oom_control"), "oom_kill")
            }
        };
        fs::read_to_string(file)
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
                })
            })
            .unwrap_or(0)
    }

    /// CPU time used (ns) and memory working set (bytes) of cgroup `relative`.
    pub fn usage(&self, relative: &Path) -> Option<(u64, u64)> {
        match self {
            Cgroups::V2 { root } => {
                let dir = root.join(relative);
                let stat = fs::read_to_string(dir.join("cpu.stat")).ok()?;
                let cpu_us: u64 = stat.lines().find_map(|l| {
                    l.strip_prefix("usage_usec ")
                        .and_then(|v| v.trim().parse().ok())
                })?;
                let current: u64 = read_u64(&dir.join("memory.current"))?;
                let inactive = memory_stat(&dir.join("memory.stat"), "inactive_file");
                Some((cpu_us * 1000, current.saturating_sub(inactive)))
            }
            Cgroups::V1 {
                memory, cpuacct, ..
            } => {
                let cpu_ns = read_u64(&cpuacct.join(relative).join("cpuacct.usage"))?;
                let usage = read_u64(&memory.join(relative).join("memory.usage_in_bytes"))?;
                let inactive = memory_stat(
                    &memory.join(relative).join("memory.stat"),
                    "total_inactive_file",
                );
                Some((cpu_ns, usage.saturating_sub(inactive)))
            }
        }
    }

    /// Removes cgroup `relative` and everything below it (must be empty of
    /// processes).
    pub fn remove(&self, relative: &Path) -> io::Result<()> {
        for dir in self.dirs(relative) {
            remove_tree(&dir)?;
        }
        Ok(())
    }
}

/// cgroup v1 `cpu.shares` from a CPU request (the kubelet's MilliCPUToShares).
pub fn cpu_shares(milli: i64) -> i64 {
    (milli * 1024 / 1000).max(2)
}

/// cgroup v2 `cpu.weight` from a CPU request (the shares → weight
/// conversion runc and the kubelet use).
pub fn cpu_weight(milli: i64) -> i64 {
    let shares = cpu_shares(milli);
    (1 + ((shares - 2) * 9999) / 262142).clamp(1, 10000)
}

fn enable_v2_controllers(dir: &Path) {
    let _ = fs::write(dir.join("cgroup.subtree_control"), "+memory +cpu +pids");
}

fn create_dir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(dir),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("creating cgroup {}: {e}", dir.display()),
        )),
    }
}

fn write(file: &Path, value: &str) -> io::Result<()> {
    fs::write(file, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value} to {}: {e}", file.display()),
        )
    })
}

fn read_u64(file: &Path) -> Option<u64> {
    fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn memory_stat(file: &Path, key: &str) -> u64 {
    fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&e.path(), out);
            }
        }
    }
}

/// cgroup directories are removed bottom-up with rmdir (their files are
/// not removable).
fn remove_tree(dir: &Path) -> io::Result<()> {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path())?;
            }
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("removing cgroup {}: {e}", dir.display()),
        )),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn favordynmods_is_planned_from_mountinfo() {
        let hybrid = "\
30 25 0:26 / /sys/fs/cgroup/pids rw,relatime shared:9 - cgroup cgroup rw,pids
31 25 0:27 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
";
        assert_eq!(
            favordynmods_plan(hybrid),
            FavorDynmodsPlan::Mount {
                v2_root: Some((
                    PathBuf::from("/sys/fs/cgroup/unified"),
                    "rw,relatime".into(),
                    "favordynmods".into()
                ))
            }
        );
        let v2 = "\
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
        assert_eq!(
            favordynmods_plan(v2),
            FavorDynmodsPlan::Mount {
                v2_root: Some((
                    PathBuf::from("/sys/fs/cgroup"),
                    "rw,nosuid,nodev,noexec,relatime".into(),
                    "nsdelegate,memory_recursiveprot,favordynmods".into()
                ))
            }
        );
        let on = "\
35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate,favordynmods
";
        assert_eq!(
            favordynmods_plan(on),
            FavorDynmodsPlan::AlreadyOn {
                mount_point: PathBuf::from("/sys/fs/cgroup")
            }
        );
        let named = "\
40 25 0:40 / /run/drover/cgroup-favordynmods rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,favordynmods,name=drover
";
        assert!(matches!(
            favordynmods_plan(named),
            FavorDynmodsPlan::AlreadyOn { .. }
        ));
        assert_eq!(
            favordynmods_plan(""),
            FavorDynmodsPlan::Mount { v2_root: None }
        );
    }
    use super::*;

    #[test]
    fn hybrid_layout_is_v1() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
33 30 0:29 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids";
        assert_eq!(
            Cgroups::from_mountinfo(mountinfo),
            Some(Cgroups::V1 {
                memory: "/sys/fs/cgroup/memory".into(),
                cpu: "/sys/fs/cgroup/cpu".into(),
                cpuacct: "/sys/fs/cgroup/cpuacct".into(),
                pids: "/sys/fs/cgroup/pids".into(),
            })
        );
    }

    #[test]
    fn combined_cpu_cpuacct_mount() {
        let mountinfo = "\
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids";
        let Some(Cgroups::V1 { cpu, cpuacct, .. }) = Cgroups::from_mountinfo(mountinfo) else {
            panic!("not v1");
        };
        assert_eq!(cpu, cpuacct);
    }

    #[test]
    fn no_controllers_no_cgroups() {
        assert_eq!(Cgroups::from_mountinfo(""), None);
    }

    #[test]
    fn limits_are_written_in_each_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let v2 = Cgroups::V2 {
            root: tmp.path().join("v2"),
        };
        fs::create_dir_all(tmp.path().join("v2")).unwrap();
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            cpu_limit_milli: Some(250),
            cpu_request_milli: Some(100),
            pids: Some(512),
        };
        v2.create(Path::new("drover/pod1/c"), &limits).unwrap();
        let dir = tmp.path().join("v2/drover/pod1/c");
        assert_eq!(
            fs::read_to_string(dir.join("memory.max")).unwrap(),
            "67108864"
        );
        assert_eq!(
            fs::read_to_string(dir.join("cpu.max")).unwrap(),
            "25000 100000"
        );
        assert_eq!(fs::read_to_string(dir.join("cpu.weight")).unwrap(), "4");
        assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "512");

        let base = tmp.path().join("v1");
        let v1 = Cgroups::V1 {
            memory: base.join("memory"),
            cpu: base.join("cpu"),
            cpuacct: base.join("cpuacct"),
            pids: base.join("pids"),
        };
        v1.create(Path::new("drover/pod1/c"), &limits).unwrap();
        let rel = "drover/pod1/c";
        let read = |c: &str, f: &str| fs::read_to_string(base.join(c).join(rel).join(f)).unwrap();
        assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "25000");
        assert_eq!(read("cpu", "cpu.shares"), "102");
        assert_eq!(read("pids", "pids.max"), "512");
        assert_eq!(v1.procs_files(Path::new(rel)).len(), 4);
    }

    #[test]
    fn shares_and_weights_follow_the_kubelet() {
        assert_eq!(cpu_shares(1000), 1024);
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(cpu_weight(1000), 39);
        assert_eq!(cpu_weight(1), 1);
    }
}
