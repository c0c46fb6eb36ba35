//! The process runtime against the real kernel: namespaces, cgroups (v1 or
//! v2, whatever this machine has), the shim, logs, exit codes, OOM kills and
//! graceful kills. Needs root (as CI runs); each test uses its own cgroup
//! parent and state directory and removes both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::runtime::{ContainerLaunch, ContainerRuntime, SandboxConfig};
use agent::sync::{InstanceState, Observed};
use k8s_openapi::api::core::v1::Pod;
use runtime_linux::cgroups::Cgroups;
use runtime_linux::process::{ProcessRuntime, ShimCommand};
use runtime_linux::zygote::Zygote;

struct Fixture {
    runtime: Arc<ProcessRuntime>,
    zygote: Arc<Zygote>,
    cgroups: Cgroups,
    parent: String,
    _dir: tempfile::TempDir,
    pod: Pod,
    uid: String,
}

fn fixture(test: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cgroups = Cgroups::detect().expect("cgroups on this machine");
    let zygote = Arc::new(Zygote::new(
        env!("CARGO_BIN_EXE_drover-shim").into(),
        vec!["internal-shim-zygote".into()],
    ));
    let parent = format!("drover-test-{test}-{}", std::process::id());
    let runtime = ProcessRuntime::new(
        dir.path().to_path_buf(),
        cgroups.clone(),
        parent.clone().into(),
        ShimCommand {
            program: env!("CARGO_BIN_EXE_drover-shim").into(),
            args: Vec::new(),
            log_rotation: Default::default(),
            // Shims forked by a zygote, as the agent starts them (the OCI
            // runtime's tests exec them).
            zygote: Some(zygote.clone()),
        },
        "127.0.0.1".into(),
        None,
    );
    let uid = format!("uid-{test}");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("pod-{test}"), "namespace": "default", "uid": uid},
        "spec": {"containers": [{"name": "c"}]},
    }))
    .unwrap();
    Fixture {
        runtime,
        zygote,
        cgroups,
        parent,
        _dir: dir,
        pod,
        uid,
    }
}

impl Drop for Fixture {
    /// Even when a test fails half-way: no process, no cgroup left behind.
    fn drop(&mut self) {
        let parent = std::path::Path::new(&self.parent);
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
        let _ = self.cgroups.remove(parent);
    }
}

fn launch(argv: &[&str]) -> ContainerLaunch {
    ContainerLaunch {
        name: "c".into(),
        init: false,
        attempt: 0,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        command: argv.iter().map(|s| s.to_string()).collect(),
        args: Vec::new(),
        pull_credentials: Vec::new(),
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("GREETING".into(), "hello".into()),
        ],
        working_dir: Some("/tmp".into()),
        memory_limit: None,
        cpu_limit_milli: None,
        cpu_request_milli: None,
        config_error: None,
        mounts: Vec::new(),
        events: Default::default(),
    }
}

async fn wait_exited(f: &Fixture, timeout: Duration) -> Observed {
    let deadline = Instant::now() + timeout;
    loop {
        let observed = f.runtime.observe(&f.uid).await;
        if observed
            .containers
            .iter()
            .any(|c| !matches!(c.state, InstanceState::Running { .. }))
        {
            return observed;
        }
        assert!(
            Instant::now() < deadline,
            "container still running after {timeout:?}: {observed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log_of(f: &Fixture) -> String {
    let path = f.runtime.log_path(&f.uid, "c", 0).expect("a log file");
    std::fs::read_to_string(path).unwrap()
}

async fn cleanup(f: &Fixture) {
    f.runtime.forget(&f.uid).await.expect("forget");
    assert!(
        f.cgroups.pids(std::path::Path::new(&f.parent)).is_empty(),
        "processes left after forget"
    );
}

#[tokio::test]
async fn a_process_runs_in_its_own_namespaces_and_its_exit_code_is_kept() {
    let f = fixture("exit");
    f.runtime
        .create_sandbox(&f.pod, &SandboxConfig::default())
        .await
        .unwrap();
    f.runtime
        .start_container(
            &f.pod,
            &launch(&[
                "sh",
                "-c",
                "echo $GREETING from $$ in $(pwd) on $(hostname); echo oops >&2; exit 3",
            ]),
        )
        .await
        .unwrap();
    let observed = wait_exited(&f, Duration::from_secs(20)).await;
    let c = &observed.containers[0];
    assert!(
        matches!(
            c.state,
            InstanceState::Exited {
                exit_code: 3,
                oom_killed: false,
                ..
            }
        ),
        "{c:?}"
    );
    let log = log_of(&f);
    // CRI format: time, stream, F, text. PID 1 in its own PID namespace, the
    // pod's name as host name, the working directory applied.
    assert!(
        log.lines()
            .any(|l| l.ends_with(" stdout F hello from 1 in /tmp on pod-exit")),
        "{log}"
    );
    assert!(log.lines().any(|l| l.ends_with(" stderr F oops")), "{log}");
    cleanup(&f).await;
    assert!(f.runtime.pods().await.is_empty());
}

/// The parent pid of `pid`, from /proc.
fn parent_of(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

fn shim_pid(f: &Fixture, attempt: u32) -> i32 {
    let state = f
        ._dir
        .path()
        .join("pods")
        .join(&f.uid)
        .join("containers/c")
        .join(attempt.to_string())
        .join("state.json");
    runtime_linux::shim::read_state(&state)
        .unwrap_or_else(|| panic!("no shim state at {}", state.display()))
        .shim_pid
}

#[tokio::test]
async fn shims_are_forked_by_the_zygote_and_outlive_it() {
    let f = fixture("zygote");
    f.runtime
        .create_sandbox(&f.pod, &SandboxConfig::default())
        .await
        .unwrap();
    let mut sleeper = launch(&["sleep", "60"]);
    f.runtime.start_container(&f.pod, &sleeper).await.unwrap();
    let zygote = f.zygote.pid().expect("a zygote runs after the first start");
    let shim = shim_pid(&f, 0);
    assert_eq!(
        parent_of(shim),
        Some(zygote),
        "the shim {shim} is a child of the zygote {zygote}"
    );
    // The zygote dies (as it does with the agent): the container runs on,
    // and the next start gets a new zygote.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(zygote as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while parent_of(shim) == Some(zygote) {
        assert!(
            Instant::now() < deadline,
            "shim {shim} not reparented after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let observed = f.runtime.observe(&f.uid).await;
    assert!(
        matches!(observed.containers[0].state, InstanceState::Running { .. }),
        "the container outlives its zygote: {observed:?}"
    );
    sleeper.attempt = 1;
    sleeper.argv = vec!["sh".into(), "-c".into(), "exit 4".into()];
    f.runtime.start_container(&f.pod, &sleeper).await.unwrap();
    let again = f.zygote.pid().expect("a new zygote");
    assert_ne!(again, zygote, "the dead zygote was replaced");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let observed = f.runtime.observe(&f.uid).await;
        let second = observed.containers.iter().find(|c| c.attempt == 1);
        if let Some(InstanceState::Exited { exit_code, .. }) = second.map(|c| &c.state) {
            assert_eq!(*exit_code, 4, "{observed:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "attempt 1 did not exit: {observed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cleanup(&f).await;
}

#[tokio::test]
async fn a_missing_program_is_a_clear_failure() {
    let f = fixture("missing");
    f.runtime
        .create_sandbox(&f.pod, &SandboxConfig::default())
        .await
        .unwrap();
    let err = f
        .runtime
        .start_container(&f.pod, &launch(&["no-such-program-anywhere"]))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("executable file not found in $PATH"),
        "{err}"
    );
    let observed = f.runtime.observe(&f.uid).await;
    assert!(
        matches!(&observed.containers[0].state, InstanceState::Failed { reason, .. } if reason == "RunContainerError"),
        "{observed:?}"
    );
    cleanup(&f).await;
}

#[tokio::test]
async fn over_its_memory_limit_a_container_is_oom_killed() {
    let f = fixture("oom");
    f.runtime
        .create_sandbox(&f.pod, &SandboxConfig::default())
        .await
        .unwrap();
    let mut l = launch(&[
        "sh",
        "-c",
        "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    l.memory_limit = Some(32 << 20);
    f.runtime.start_container(&f.pod, &l).await.unwrap();
    let observed = wait_exited(&f, Duration::from_secs(60)).await;
    assert!(
        matches!(
            observed.containers[0].state,
            InstanceState::Exited {
                oom_killed: true,
                ..
            }
        ),
        "{observed:?}\nlog: {}",
        log_of(&f)
    );
    cleanup(&f).await;
}

#[tokio::test]
async fn a_kill_waits_for_sigterm_then_sigkills_after_the_grace_period() {
    let f = fixture("kill");
    f.runtime
        .create_sandbox(&f.pod, &SandboxConfig::default())
        .await
        .unwrap();
    // Traps TERM and keeps running: only SIGKILL ends it.
    f.runtime
        .start_container(
            &f.pod,
            &launch(&[
                "sh",
                "-c",
                "trap 'echo got TERM' TERM; echo ready; while true; do sleep 0.1; done",
            ]),
        )
        .await
        .unwrap();
    // Signal only once the trap is set (PID 1 ignores an unhandled TERM).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f.runtime.log_path(&f.uid, "c", 0).is_some_and(|p| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .contains("ready")
    }) {
        assert!(Instant::now() < deadline, "the container never said ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    f.runtime
        .kill_container(&f.uid, "c", 0, Duration::from_secs(2))
        .await
        .unwrap();
    let observed = wait_exited(&f, Duration::from_secs(30)).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "killed before the grace period ended"
    );
    assert!(
        matches!(
            observed.containers[0].state,
            InstanceState::Exited { exit_code: 137, .. }
        ),
        "{observed:?}"
    );
    assert!(log_of(&f).contains("got TERM"), "{}", log_of(&f));
    cleanup(&f).await;
}

#[tokio::test]
async fn a_missing_config_map_is_recorded_not_run() {
    let f = fixture("config");
    f.runtime
        .create_sandbox(&f.pod, &SandboxConfig::default())
        .await
        .unwrap();
    let mut l = launch(&["true"]);
    l.config_error = Some((
        "CreateContainerConfigError".into(),
        "configmap \"settings\" not found".into(),
    ));
    assert!(f.runtime.start_container(&f.pod, &l).await.is_err());
    let observed = f.runtime.observe(&f.uid).await;
    assert!(
        matches!(&observed.containers[0].state, InstanceState::Failed { reason, message, .. }
            if reason == "CreateContainerConfigError" && message.contains("settings")),
        "{observed:?}"
    );
    cleanup(&f).await;
}

#[tokio::test]
async fn volumes_are_bound_in_the_container_only_and_mount_points_made_are_removed() {
    let f = fixture("mounts");
    let scratch = tempfile::tempdir().unwrap();
    let vol = scratch.path().join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("in-volume"), "from the volume\n").unwrap();
    let file = scratch.path().join("one-file");
    std::fs::write(&file, "a single file\n").unwrap();
    // Mount points that do not exist on the host: the runtime makes them
    // (and their missing parent) and removes them with the pod.
    let missing = scratch.path().join("made/here");
    let missing_file = scratch.path().join("made-file");
    let mut l = launch(&[
        "sh",
        "-c",
        &format!(
            "cat {m}/in-volume {mf}; touch {m}/written && echo rw-ok; touch {ro}/x 2>/dev/null || echo ro-refused",
            m = missing.display(),
            mf = missing_file.display(),
            ro = scratch.path().join("ro").display(),
        ),
    ]);
    std::fs::create_dir_all(scratch.path().join("ro")).unwrap();
    l.mounts = vec![
        agent::runtime::Mount {
            source: vol.clone(),
            destination: missing.clone(),
            read_only: false,
            is_file: false,
        },
        agent::runtime::Mount {
            source: file.clone(),
            destination: missing_file.clone(),
            read_only: true,
            is_file: true,
        },
        agent::runtime::Mount {
            source: vol.clone(),
            destination: scratch.path().join("ro"),
            read_only: true,
            is_file: false,
        },
    ];
    f.runtime
        .create_sandbox(&f.pod, &SandboxConfig::default())
        .await
        .unwrap();
    f.runtime.start_container(&f.pod, &l).await.unwrap();
    let observed = wait_exited(&f, Duration::from_secs(20)).await;
    assert!(
        matches!(
            observed.containers[0].state,
            InstanceState::Exited { exit_code: 0, .. }
        ),
        "{observed:?}"
    );
    let log = log_of(&f);
    for want in ["from the volume", "a single file", "rw-ok", "ro-refused"] {
        assert!(
            log.lines().any(|l| l.ends_with(want)),
            "{want} missing in {log}"
        );
    }
    // Written through the mount, into the volume; nothing mounted on the host.
    assert!(vol.join("written").exists());
    assert!(!vol.join("x").exists());
    assert!(
        !missing.join("in-volume").exists(),
        "the bind mount leaked to the host"
    );
    assert!(missing.is_dir() && missing_file.is_file());
    cleanup(&f).await;
    assert!(!missing.exists() && !missing.parent().unwrap().exists() && !missing_file.exists());
    assert!(
        file.exists() && vol.join("in-volume").exists(),
        "volume data removed"
    );
}

/// `cpu.stat` of the container's cgroup in whichever hierarchy has it
/// (the cpu controller's in v1, the unified one in v2).
fn container_cpu_stat(f: &Fixture) -> Option<String> {
    let relative = format!("{}/pod{}/c/cpu.stat", f.parent, f.uid);
    let root = std::path::Path::new("/sys/fs/cgroup");
    let mut candidates = vec![root.join(&relative)];
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        candidates.push(entry.path().join(&relative));
    }
    candidates
        .into_iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
}

#[tokio::test]
async fn a_cpu_limit_throttles_a_busy_container() {
    let f = fixture("throttle");
    f.runtime
        .create_sandbox(&f.pod, &SandboxConfig::default())
        .await
        .unwrap();
    let mut l = launch(&["sh", "-c", "while :; do :; done"]);
    l.cpu_limit_milli = Some(100);
    f.runtime.start_container(&f.pod, &l).await.unwrap();
    // The kernel counts the periods in which the quota ran out.
    let deadline = Instant::now() + Duration::from_secs(60);
    let throttled = loop {
        let stat = container_cpu_stat(&f).expect("the container's cpu.stat");
        let periods: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("nr_throttled "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if periods > 0 || Instant::now() > deadline {
            break periods;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        throttled > 0,
        "a busy loop under a 100m CPU limit was never throttled: {:?}",
        container_cpu_stat(&f)
    );
    f.runtime
        .kill_container(&f.uid, "c", 0, Duration::ZERO)
        .await
        .unwrap();
    wait_exited(&f, Duration::from_secs(30)).await;
    cleanup(&f).await;
}

#[tokio::test]
async fn a_pod_pids_limit_stops_a_fork_bomb() {
    let f = fixture("pids");
    f.runtime.set_pod_pids_limit(10);
    f.runtime
        .create_sandbox(&f.pod, &SandboxConfig::default())
        .await
        .unwrap();
    let l = launch(&[
        "sh",
        "-c",
        "for i in $(seq 40); do sleep 30 & done; echo started; wait",
    ]);
    f.runtime.start_container(&f.pod, &l).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(f.runtime.log_path(&f.uid, "c", 0).unwrap())
            .unwrap_or_default();
        if log.to_lowercase().contains("fork") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "40 background processes under a 10-process pod limit never failed to fork; log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let count = f
        .cgroups
        .pids(&std::path::Path::new(&f.parent).join(format!("pod{}", f.uid)));
    assert!(count.len() <= 10, "{} processes in the pod", count.len());
    f.runtime
        .kill_container(&f.uid, "c", 0, Duration::ZERO)
        .await
        .unwrap();
    wait_exited(&f, Duration::from_secs(30)).await;
    cleanup(&f).await;
}

#[tokio::test]
async fn resolv_conf_the_agent_gives_is_the_containers_and_the_host_keeps_its_own() {
    let f = fixture("resolv");
    let host_before = std::fs::read("/etc/resolv.conf").ok();
    let text = "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n";
    let config = SandboxConfig {
        resolv_conf: Some(text.to_string()),
    };
    f.runtime.create_sandbox(&f.pod, &config).await.unwrap();
    f.runtime
        .start_container(&f.pod, &launch(&["cat", "/etc/resolv.conf"]))
        .await
        .unwrap();
    let observed = wait_exited(&f, Duration::from_secs(30)).await;
    assert!(
        matches!(
            observed.containers[0].state,
            InstanceState::Exited { exit_code: 0, .. }
        ),
        "{observed:?}"
    );
    // CRI log lines: time, stream, F, text.
    let seen: String = log_of(&f)
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(seen, text, "the container's /etc/resolv.conf");
    assert_eq!(
        std::fs::read("/etc/resolv.conf").ok(),
        host_before,
        "the host's /etc/resolv.conf changed"
    );
    cleanup(&f).await;
}

#[tokio::test]
async fn a_tty_container_runs_on_a_terminal_that_attach_writes_into_and_resizes() {
    let mut f = fixture("tty");
    f.pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "pod-tty", "namespace": "default", "uid": f.uid},
        "spec": {"containers": [{"name": "c", "tty": true, "stdin": true}]},
    }))
    .unwrap();
    f.runtime
        .create_sandbox(&f.pod, &SandboxConfig::default())
        .await
        .unwrap();
    let script =
        "[ -t 0 ] && [ -t 1 ] && echo on-a-tty; stty size; read line; echo got:$line; stty size";
    f.runtime
        .start_container(&f.pod, &launch(&["sh", "-c", script]))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log_of(&f).contains("on-a-tty") {
        assert!(Instant::now() < deadline, "no output: {}", log_of(&f));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resize = f.runtime.attach_resize(&f.uid, "c", 0).await.unwrap();
    resize
        .send(agent::runtime::TerminalSize {
            width: 100,
            height: 40,
        })
        .await
        .unwrap();
    drop(resize);
    // The resize relay applies it before stdin's line arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stdin = f.runtime.attach_stdin(&f.uid, "c", 0).await.unwrap();
    stdin.send(bytes::Bytes::from("hello\n")).await.unwrap();
    drop(stdin);
    let observed = wait_exited(&f, Duration::from_secs(30)).await;
    let state = &observed.containers[0].state;
    assert!(
        matches!(state, InstanceState::Exited { exit_code: 0, .. }),
        "{state:?}: {}",
        log_of(&f)
    );
    let log = log_of(&f);
    // One stream (stdout), terminal line endings, the input echoed.
    assert!(!log.contains(" stderr "), "{log}");
    // What the terminal showed, its records joined (the shim flushes a
    // partial record as soon as it reads one, so a line may span two).
    let shown =
        String::from_utf8_lossy(&agent::logs::cri_record_bytes(log.as_bytes()).0).into_owned();
    for want in ["on-a-tty\r\n", "hello\r\n", "got:hello\r\n", "40 100\r\n"] {
        assert!(shown.contains(want), "{want:?} not in the log:\n{log}");
    }
    cleanup(&f).await;
}
