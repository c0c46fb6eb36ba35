//! The OCI runtime against the real kernel and real runc: bundles over an
//! overlayfs rootfs from a directory image of static busybox, the pod's
//! shared IPC and UTS namespaces, cgroups (v1 or v2, whatever this machine
//! has), logs, exit codes, OOM kills, graceful kills, security settings,
//! and that removal leaves no mount, cgroup or runc state. Needs root (as
//! CI runs), runc and busybox-static; each test has its own state
//! directory and cgroup parent and removes both, even when it fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::runtime::{ContainerLaunch, ContainerRuntime, SandboxConfig};
use agent::sync::{InstanceState, Observed};
use k8s_openapi::api::core::v1::Pod;
use runtime_linux::cgroups::Cgroups;
use runtime_linux::oci::{self, DirectoryImages, OciRuntime};
use runtime_linux::process::ShimCommand;

struct Fixture {
    runtime: Arc<OciRuntime>,
    cgroups: Cgroups,
    parent: String,
    root: PathBuf,
    runc: PathBuf,
    _dir: tempfile::TempDir,
    uid: String,
    name: String,
}

fn runtime_at(root: &Path, runc: &Path, cgroups: &Cgroups, parent: &str) -> Arc<OciRuntime> {
    OciRuntime::new(
        root.join("state"),
        runc.to_path_buf(),
        cgroups.clone(),
        parent.into(),
        ShimCommand {
            program: env!("CARGO_BIN_EXE_drover-shim").into(),
            args: Vec::new(),
            log_rotation: Default::default(),
            // Exec'd shims here; the process runtime's tests fork them
            // from a zygote.
            zygote: None,
        },
        Arc::new(DirectoryImages {
            dir: root.join("images"),
        }),
        "127.0.0.1".into(),
        None,
    )
}

fn fixture(test: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    oci::make_busybox_image(
        &root.join("images"),
        "busybox",
        Path::new("/usr/bin/busybox"),
        &["PATH=/bin", "IMAGE_VAR=from-image"],
    )
    .expect("a busybox image from /usr/bin/busybox (busybox-static)");
    let cgroups = Cgroups::detect().expect("cgroups on this machine");
    let parent = format!("drover-oci-test-{test}-{}", std::process::id());
    let runc = oci::detect_runc(None).expect("runc on PATH");
    Fixture {
        runtime: runtime_at(&root, &runc, &cgroups, &parent),
        cgroups,
        parent,
        root,
        runc,
        _dir: dir,
        uid: format!("uid-{test}"),
        name: format!("pod-{test}"),
    }
}

/// Mount points under `root` (from /proc/self/mountinfo).
fn mounts_under(root: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(root))
        .collect()
}

fn runc_states(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("state/runc"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect()
}

impl Drop for Fixture {
    /// Even when a test fails half-way: no container, mount, cgroup or
    /// runc state left behind.
    fn drop(&mut self) {
        for id in runc_states(&self.root) {
            let _ = std::process::Command::new(&self.runc)
                .arg("--root")
                .arg(self.root.join("state/runc"))
                .args(["delete", "--force", &id])
                .output();
        }
        let parent = Path::new(&self.parent);
        for _ in 0..100 {
            let pids = self.cgroups.pids(parent);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut mounts = mounts_under(&self.root);
        mounts.reverse();
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        oci::remove_cgroup_everywhere(parent);
    }
}

impl Fixture {
    fn pod(&self, containers: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": self.name, "namespace": "default", "uid": self.uid},
            "spec": {"containers": containers},
        }))
        .unwrap()
    }

    /// The shim's state of the first instance of container `name`.
    fn shim_state(&self, name: &str) -> runtime_linux::shim::ShimState {
        runtime_linux::shim::read_state(
            &self
                .root
                .join("state/pods")
                .join(&self.uid)
                .join("containers")
                .join(name)
                .join("0/state.json"),
        )
        .expect("the container's shim state")
    }

    fn log(&self, name: &str) -> String {
        let path = self
            .runtime
            .log_path(&self.uid, name, 0)
            .expect("a log file");
        std::fs::read_to_string(path).unwrap()
    }

    /// The stdout lines of container `name`'s log, without the CRI prefix.
    fn stdout(&self, name: &str) -> Vec<String> {
        self.log(name)
            .lines()
            .filter_map(|l| l.split_once(" stdout F ").map(|(_, t)| t.to_string()))
            .collect()
    }

    async fn wait_exited(&self, name: &str, timeout: Duration) -> InstanceState {
        let deadline = Instant::now() + timeout;
        loop {
            let observed = self.runtime.observe(&self.uid).await;
            if let Some(c) = observed.containers.iter().find(|c| c.name == name) {
                if !matches!(c.state, InstanceState::Running { .. }) {
                    return c.state.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{name} not exited after {timeout:?}: {observed:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Removes the pod and checks nothing of it is left.
    async fn forget_and_check(&self) {
        self.runtime.forget(&self.uid).await.expect("forget");
        assert_eq!(
            mounts_under(&self.root),
            Vec::<String>::new(),
            "mounts left after forget"
        );
        assert_eq!(
            runc_states(&self.root),
            Vec::<String>::new(),
            "runc states left after forget"
        );
        let pod_cgroup = Path::new(&self.parent).join(format!("pod{}", self.uid));
        let left: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(" - cgroup"))
            .filter_map(|l| l.split(' ').nth(4).map(|m| Path::new(m).join(&pod_cgroup)))
            .filter(|p| p.exists())
            .collect();
        assert!(left.is_empty(), "cgroups left after forget: {left:?}");
        assert!(
            !self.root.join("state/pods").join(&self.uid).exists(),
            "pod state left after forget"
        );
    }
}

fn launch(name: &str, command: &[&str]) -> ContainerLaunch {
    let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    ContainerLaunch {
        name: name.into(),
        argv: command.clone(),
        command,
        env: vec![("GREETING".into(), "hello".into())],
        ..Default::default()
    }
}

fn busybox(name: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "image": "busybox"})
}

#[tokio::test]
async fn a_container_runs_from_its_image_and_its_exit_code_and_log_are_kept() {
    let f = fixture("exit");
    let pod = f.pod(serde_json::json!([busybox("c")]));
    f.runtime
        .create_sandbox(&pod, &SandboxConfig::default())
        .await
        .unwrap();
    let l = launch(
        "c",
        &[
            "sh",
            "-c",
            "echo $GREETING $IMAGE_VAR $$ $HOSTNAME; echo oops >&2; exit 3",
        ],
    );
    f.runtime.start_container(&pod, &l).await.unwrap();
    let state = f.wait_exited("c", Duration::from_secs(30)).await;
    assert!(
        matches!(
            state,
            InstanceState::Exited {
                exit_code: 3,
                oom_killed: false,
                ..
            }
        ),
        "{state:?}\nlog: {}",
        f.log("c")
    );
    // The image's environment under the container's; PID 1 of its own PID
    // namespace; the pod's name as HOSTNAME.
    assert_eq!(
        f.stdout("c"),
        vec![format!("hello from-image 1 {}", f.name)],
        "log: {}",
        f.log("c")
    );
    assert!(f.log("c").contains(" stderr F oops"), "{}", f.log("c"));
    let observed = f.runtime.observe(&f.uid).await;
    assert!(
        observed.containers[0].image_id.starts_with("dir://"),
        "{observed:?}"
    );
    f.forget_and_check().await;
}

#[tokio::test]
async fn runc_runs_from_the_agents_sealed_copy() {
    let f = fixture("sealed");
    let pod = f.pod(serde_json::json!([busybox("c")]));
    f.runtime
        .create_sandbox(&pod, &SandboxConfig::default())
        .await
        .unwrap();
    f.runtime
        .start_container(&pod, &launch("c", &["sleep", "600"]))
        .await
        .unwrap();
    let state = f.shim_state("c");
    // The shim holds the copy it ran runc from for the container's life
    // (it runs `runc delete` from it at the end): a sealed memfd, so that
    // runc's `init` skips copying or bind-mounting itself per container.
    let shim_fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", state.shim_pid))
        .expect("the shim's descriptors")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|l| l.display().to_string())
        .collect();
    assert!(
        shim_fds.iter().any(|l| l.starts_with("/memfd:runc-sealed")),
        "the shim holds no sealed runc: {shim_fds:?}"
    );
    f.runtime
        .kill_container(&f.uid, "c", 0, Duration::from_secs(1))
        .await
        .unwrap();
    let state = f.wait_exited("c", Duration::from_secs(30)).await;
    assert!(
        matches!(state, InstanceState::Exited { .. }),
        "{state:?}\nlog: {}",
        f.log("c")
    );
    f.forget_and_check().await;
}

#[tokio::test]
async fn the_image_cmd_runs_when_the_container_gives_no_command() {
    let f = fixture("cmd");
    let pod = f.pod(serde_json::json!([busybox("c")]));
    f.runtime
        .create_sandbox(&pod, &SandboxConfig::default())
        .await
        .unwrap();
    // args only: they replace the image's CMD (`sh`) — no ENTRYPOINT, so
    // the args are the whole command line.
    let l = ContainerLaunch {
        name: "c".into(),
        args: vec!["echo".into(), "args-ran".into()],
        argv: vec!["echo".into(), "args-ran".into()],
        ..Default::default()
    };
    f.runtime.start_container(&pod, &l).await.unwrap();
    let state = f.wait_exited("c", Duration::from_secs(30)).await;
    assert!(
        matches!(state, InstanceState::Exited { exit_code: 0, .. }),
        "{state:?}"
    );
    assert_eq!(f.stdout("c"), vec!["args-ran".to_string()]);
    f.forget_and_check().await;
}

#[tokio::test]
async fn over_its_memory_limit_a_container_is_oom_killed() {
    let f = fixture("oom");
    let pod = f.pod(serde_json::json!([busybox("c")]));
    f.runtime
        .create_sandbox(&pod, &SandboxConfig::default())
        .await
        .unwrap();
    let mut l = launch(
        "c",
        &[
            "sh",
            "-c",
            "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    l.memory_limit = Some(32 << 20);
    f.runtime.start_container(&pod, &l).await.unwrap();
    let state = f.wait_exited("c", Duration::from_secs(60)).await;
    assert!(
        matches!(
            state,
            InstanceState::Exited {
                oom_killed: true,
                ..
            }
        ),
        "{state:?}\nlog: {}",
        f.log("c")
    );
    f.forget_and_check().await;
}

/// SIGTERM first, SIGKILL after the grace period. runc ran the container
/// detached and is gone, and stopping it signals the init directly (a
/// pidfd, checked against the container's cgroup), not through `runc kill`
/// processes: the runtime runs a runc wrapper that logs its calls.
#[tokio::test]
async fn a_container_that_ignores_sigterm_is_killed_after_its_grace_period() {
    let f = fixture("kill");
    let log = f.root.join("runc-calls.log");
    let wrapper = f.root.join("runc-logged");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
            log.display(),
            f.runc.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let runtime = runtime_at(&f.root, &wrapper, &f.cgroups, &f.parent);
    let pod = f.pod(serde_json::json!([busybox("c")]));
    runtime
        .create_sandbox(&pod, &SandboxConfig::default())
        .await
        .unwrap();
    let l = launch(
        "c",
        &[
            "sh",
            "-c",
            "trap 'echo got TERM' TERM; while true; do sleep 0.1; done",
        ],
    );
    runtime.start_container(&pod, &l).await.unwrap();
    let observed = runtime.observe(&f.uid).await;
    assert!(
        matches!(observed.containers[0].state, InstanceState::Running { .. }),
        "{observed:?}"
    );
    // usage() reads the container's cgroup.
    assert!(runtime.usage(&f.uid, Some("c")).await.is_some());
    // runc ran the container detached and is gone: the container's init is
    // the shim's child (its subreaper), and no runc process stays behind.
    let state = f.shim_state("c");
    let parent_of = |pid: i32| -> Option<i32> {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|p| p.trim().parse().ok())
    };
    assert_eq!(
        parent_of(state.pid),
        Some(state.shim_pid),
        "the container's init {} should be the shim's ({}) child: {state:?}",
        state.pid,
        state.shim_pid
    );
    let runc_left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("runc") && c.contains(&f.uid))
        .collect();
    assert!(runc_left.is_empty(), "runc processes left: {runc_left:?}");
    runtime
        .kill_container(&f.uid, "c", 0, Duration::from_secs(1))
        .await
        .unwrap();
    let state = f.wait_exited("c", Duration::from_secs(30)).await;
    assert!(
        matches!(state, InstanceState::Exited { exit_code: 137, .. }),
        "{state:?}\nlog: {}",
        f.log("c")
    );
    assert!(
        f.stdout("c").contains(&"got TERM".to_string()),
        "{}",
        f.log("c")
    );
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        calls.lines().any(|l| l.contains(" run --detach ")),
        "the wrapper should have run the container: {calls}"
    );
    assert!(
        !calls.lines().any(|l| l.contains(" kill ")),
        "runc kill was run: {calls}"
    );
    f.forget_and_check().await;
}

#[tokio::test]
async fn security_context_read_only_root_and_run_as_user_apply() {
    let f = fixture("security");
    let pod = f.pod(serde_json::json!([
        {"name": "ro", "image": "busybox", "securityContext": {"readOnlyRootFilesystem": true}},
        {"name": "user", "image": "busybox",
         "securityContext": {"runAsUser": 1234, "runAsGroup": 1234, "allowPrivilegeEscalation": false}},
        {"name": "caps", "image": "busybox",
         "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "KILL"]}}},
        {"name": "default", "image": "busybox"},
        {"name": "privileged", "image": "busybox", "securityContext": {"privileged": true}},
    ]));
    f.runtime
        .create_sandbox(&pod, &SandboxConfig::default())
        .await
        .unwrap();
    let ro = launch(
        "ro",
        &[
            "sh",
            "-c",
            "touch /x 2>/dev/null && echo wrote || echo read-only",
        ],
    );
    let user = launch(
        "user",
        &["sh", "-c", "echo $(id -u):$(id -g); grep NoNewPrivs /proc/self/status; grep CapEff /proc/self/status"],
    );
    let caps = |name: &str| {
        launch(
            name,
            &["sh", "-c", "grep -E '^Cap(Eff|Bnd)' /proc/self/status"],
        )
    };
    f.runtime.start_container(&pod, &ro).await.unwrap();
    f.runtime.start_container(&pod, &user).await.unwrap();
    f.runtime
        .start_container(&pod, &caps("caps"))
        .await
        .unwrap();
    f.runtime
        .start_container(&pod, &caps("default"))
        .await
        .unwrap();
    // Privileged: every capability the kernel has, the host's devices,
    // /sys writable.
    let privileged = launch(
        "privileged",
        &[
            "sh",
            "-c",
            "grep -E '^CapEff' /proc/self/status; ls /dev; grep ' /sys ' /proc/self/mounts",
        ],
    );
    f.runtime.start_container(&pod, &privileged).await.unwrap();
    for name in ["ro", "user", "caps", "default", "privileged"] {
        let state = f.wait_exited(name, Duration::from_secs(30)).await;
        assert!(
            matches!(state, InstanceState::Exited { exit_code: 0, .. }),
            "{name}: {state:?}"
        );
    }
    // KILL (bit 5) and NET_BIND_SERVICE (bit 10) only; containerd's 14 by
    // default.
    assert_eq!(
        f.stdout("caps"),
        vec!["CapEff:\t0000000000000420", "CapBnd:\t0000000000000420"],
        "{}",
        f.log("caps")
    );
    assert_eq!(
        f.stdout("default"),
        vec!["CapEff:\t00000000a80425fb", "CapBnd:\t00000000a80425fb"],
        "{}",
        f.log("default")
    );
    let out = f.stdout("privileged");
    let host_caps = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("CapBnd:"))
        .unwrap()
        .replace("CapBnd:", "CapEff:");
    assert_eq!(out.first(), Some(&host_caps), "{out:?}");
    let host_block = oci::host_devices()
        .into_iter()
        .find(|d| {
            d.typ() == oci_spec::runtime::LinuxDeviceType::B
                && d.path().parent() == Some(Path::new("/dev"))
        })
        .map(|d| d.path().file_name().unwrap().to_string_lossy().to_string());
    if let Some(block) = host_block {
        assert!(
            out.contains(&block),
            "host block device {block} missing: {out:?}"
        );
    }
    assert!(
        out.iter().any(|l| l.contains(" /sys sysfs rw")),
        "/sys not writable: {out:?}"
    );
    assert_eq!(
        f.stdout("ro"),
        vec!["read-only".to_string()],
        "{}",
        f.log("ro")
    );
    let out = f.stdout("user");
    assert_eq!(
        out.first().map(String::as_str),
        Some("1234:1234"),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')),
        "{out:?}"
    );
    f.forget_and_check().await;
}

#[tokio::test]
async fn containers_of_a_pod_share_hostname_and_ipc_but_not_pids() {
    let f = fixture("share");
    let pod = f.pod(serde_json::json!([busybox("a"), busybox("b")]));
    f.runtime
        .create_sandbox(&pod, &SandboxConfig::default())
        .await
        .unwrap();
    // Both stay up, so their PID namespaces exist at the same time (an
    // exited one's inode number may be reused).
    // `a` leaves a note in /dev/shm, `b` reads it there: one /dev/shm
    // per pod.
    let script = "hostname; readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; readlink /proc/self/ns/pid; cat /etc/hostname;";
    let a_script = format!("{script} echo shared-by-a > /dev/shm/note; exec sleep 300");
    let b_script = format!(
        "{script} i=0; while [ ! -f /dev/shm/note ] && [ $i -lt 25 ]; do sleep 1; i=$((i+1)); done; cat /dev/shm/note || echo no-note; exec sleep 300"
    );
    for (name, script) in [("a", &a_script), ("b", &b_script)] {
        f.runtime
            .start_container(&pod, &launch(name, &["sh", "-c", script]))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let (a, b) = loop {
        let (a, b) = (f.stdout("a"), f.stdout("b"));
        if a.len() >= 5 && b.len() >= 6 {
            break (a, b);
        }
        assert!(
            Instant::now() < deadline,
            "no output after 30 s: {a:?} {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(a.len(), 5, "{a:?}");
    assert_eq!(a[0], f.name, "hostname is the pod's name: {a:?}");
    assert_eq!(a[4], f.name, "/etc/hostname: {a:?}");
    assert_eq!(a[..3], b[..3], "hostname, IPC and UTS namespaces differ");
    assert_ne!(a[3], b[3], "the containers share a PID namespace");
    assert_eq!(b[5], "shared-by-a", "/dev/shm is not the pod's: {b:?}");
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    assert_ne!(
        a[1],
        host_ipc.to_string_lossy(),
        "the pod uses the host IPC namespace"
    );
    f.forget_and_check().await;
}

#[tokio::test]
async fn a_new_runtime_finds_a_running_container_and_execs_in_it() {
    let f = fixture("restart");
    let pod = f.pod(serde_json::json!([busybox("c")]));
    f.runtime
        .create_sandbox(&pod, &SandboxConfig::default())
        .await
        .unwrap();
    f.runtime
        .start_container(&pod, &launch("c", &["sleep", "300"]))
        .await
        .unwrap();
    // What an agent restart sees: a fresh runtime over the same state.
    let again = runtime_at(&f.root, &f.runc, &f.cgroups, &f.parent);
    assert_eq!(again.pods().await, vec![f.uid.clone()]);
    let observed: Observed = again.observe(&f.uid).await;
    assert!(observed.sandbox.is_some(), "{observed:?}");
    assert!(
        matches!(observed.containers[0].state, InstanceState::Running { .. }),
        "{observed:?}"
    );
    let (code, out) = again
        .exec_sync(
            &f.uid,
            "c",
            0,
            &["sh".into(), "-c".into(), "echo $GREETING; exit 4".into()],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!((code, out.trim()), (4, "hello"));
    again.forget(&f.uid).await.unwrap();
    f.forget_and_check().await;
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_the_container_with_err_image_pull() {
    let f = fixture("pull");
    let pod = f.pod(serde_json::json!([{"name": "c", "image": "127.0.0.1:1/missing:1"}]));
    f.runtime
        .create_sandbox(&pod, &SandboxConfig::default())
        .await
        .unwrap();
    let err = f
        .runtime
        .start_container(&pod, &launch("c", &["true"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let observed = f.runtime.observe(&f.uid).await;
    assert!(
        matches!(&observed.containers[0].state, InstanceState::Failed { reason, .. } if reason == "ErrImagePull"),
        "{observed:?}"
    );
    f.forget_and_check().await;
}

#[tokio::test]
async fn a_missing_program_is_a_start_failure_not_an_exit() {
    let f = fixture("noexec");
    let pod = f.pod(serde_json::json!([busybox("c")]));
    f.runtime
        .create_sandbox(&pod, &SandboxConfig::default())
        .await
        .unwrap();
    let _ = f
        .runtime
        .start_container(&pod, &launch("c", &["no-such-program"]))
        .await;
    let state = f.wait_exited("c", Duration::from_secs(30)).await;
    assert!(
        matches!(&state, InstanceState::Failed { reason, message, .. }
            if reason == "RunContainerError" && message.contains("no-such-program")),
        "{state:?}"
    );
    f.forget_and_check().await;
}

#[tokio::test]
async fn resolv_conf_the_agent_gives_is_the_containers_and_the_host_keeps_its_own() {
    let f = fixture("resolv");
    let host_before = std::fs::read("/etc/resolv.conf").ok();
    let pod = f.pod(serde_json::json!([busybox("c")]));
    let text = "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n";
    let config = SandboxConfig {
        resolv_conf: Some(text.to_string()),
    };
    f.runtime.create_sandbox(&pod, &config).await.unwrap();
    f.runtime
        .start_container(&pod, &launch("c", &["cat", "/etc/resolv.conf"]))
        .await
        .unwrap();
    let state = f.wait_exited("c", Duration::from_secs(30)).await;
    assert!(
        matches!(state, InstanceState::Exited { exit_code: 0, .. }),
        "{state:?}\nlog: {}",
        f.log("c")
    );
    assert_eq!(
        f.stdout("c"),
        text.lines().collect::<Vec<_>>(),
        "the container's /etc/resolv.conf"
    );
    assert_eq!(
        std::fs::read("/etc/resolv.conf").ok(),
        host_before,
        "the host's /etc/resolv.conf changed"
    );
    f.forget_and_check().await;
}

#[tokio::test]
async fn attach_writes_to_stdin_and_a_tty_container_runs_on_a_terminal_that_resizes() {
    let f = fixture("tty");
    let mut plain = busybox("plain");
    plain["stdin"] = serde_json::json!(true);
    let mut tty = busybox("tty");
    tty["stdin"] = serde_json::json!(true);
    tty["tty"] = serde_json::json!(true);
    let pod = f.pod(serde_json::json!([plain, tty]));
    f.runtime
        .create_sandbox(&pod, &SandboxConfig::default())
        .await
        .unwrap();
    let script = "[ -t 0 ] && [ -t 1 ] && echo on-a-tty; echo ready; read line; echo got:$line; stty size 2>/dev/null; exit 0";
    for name in ["plain", "tty"] {
        f.runtime
            .start_container(&pod, &launch(name, &["sh", "-c", script]))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(f.log("plain").contains("ready") && f.log("tty").contains("ready")) {
        assert!(
            Instant::now() < deadline,
            "no output: {} / {}",
            f.log("plain"),
            f.log("tty")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resize = f.runtime.attach_resize(&f.uid, "tty", 0).await.unwrap();
    resize
        .send(agent::runtime::TerminalSize {
            width: 100,
            height: 40,
        })
        .await
        .unwrap();
    drop(resize);
    // runc follows the resize on SIGWINCH before stdin's line arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for name in ["plain", "tty"] {
        let stdin = f.runtime.attach_stdin(&f.uid, name, 0).await.unwrap();
        stdin.send(bytes::Bytes::from("hello\n")).await.unwrap();
    }
    for name in ["plain", "tty"] {
        let state = f.wait_exited(name, Duration::from_secs(30)).await;
        assert!(
            matches!(state, InstanceState::Exited { exit_code: 0, .. }),
            "{name}: {state:?}: {}",
            f.log(name)
        );
    }
    let plain_log = f.log("plain");
    assert!(!plain_log.contains("on-a-tty"), "{plain_log}");
    assert!(plain_log.contains(" stdout F got:hello\n"), "{plain_log}");
    let tty_log = f.log("tty");
    // What the terminal showed, its records joined (the shim flushes a
    // partial record as soon as it reads one, so a line may span two).
    let shown =
        String::from_utf8_lossy(&agent::logs::cri_record_bytes(tty_log.as_bytes()).0).into_owned();
    for want in ["on-a-tty\r\n", "got:hello\r\n", "40 100\r\n"] {
        assert!(shown.contains(want), "{want:?} not in the log:\n{tty_log}");
    }
    f.forget_and_check().await;
}
