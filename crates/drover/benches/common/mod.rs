//! What the end-to-end benchmarks share: a real `drover server` (with its
//! node agent) on a fresh port, data dir, cgroup parent, bridge and pod
//! CIDR, driven with kubectl 1.32; everything it made is removed on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn kubectl_binary() -> PathBuf {
    let dispatcher = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v kubectl)\""])
        .output()
        .expect("kubectl on PATH");
    let real = String::from_utf8_lossy(&dispatcher.stdout)
        .trim()
        .to_string();
    Path::new(&real).parent().unwrap().join("kubectl.1.32")
}

pub struct Cluster {
    child: Child,
    pub data: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub home: tempfile::TempDir,
    cgroup: String,
    bridge: String,
}

impl Cluster {
    /// `name` names the cgroup parent and the bridge; `pod_cidr` must not
    /// overlap another bridge's.
    pub fn start(name: &str, pod_cidr: &str, max_pods: usize) -> Cluster {
        Cluster::start_with(name, pod_cidr, max_pods, &[])
    }

    /// [`Cluster::start`] with more `drover server` flags.
    pub fn start_with(name: &str, pod_cidr: &str, max_pods: usize, extra: &[&str]) -> Cluster {
        let data = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let cgroup = format!("drover-{name}-{}", std::process::id());
        let bridge = format!("drv{name}");
        // DROVER_BENCH_SERVER_LOG=FILE keeps the server's log (its level from
        // DROVER_BENCH_LOG, e.g. `agent::timing=debug`), to see where time goes.
        let stderr = match std::env::var_os("DROVER_BENCH_SERVER_LOG") {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("server log file")),
            None => Stdio::null(),
        };
        let level = std::env::var("DROVER_BENCH_LOG").unwrap_or_else(|_| "warn".into());
        let child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["server", "--port", "0", "--node-name", "bench"])
            .arg("--data-dir")
            .arg(data.path())
            .arg(format!("--cgroup-parent={cgroup}"))
            .arg(format!("--pod-cidr={pod_cidr}"))
            .arg(format!("--pod-bridge={bridge}"))
            .arg(format!("--max-pods={max_pods}"))
            .args(extra)
            .env("DROVER_LOG", level)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("drover server");
        let kubeconfig = data.path().join("kubeconfig.yaml");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&kubeconfig).is_ok_and(|t| t.contains("token:")) {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let cluster = Cluster {
            child,
            data,
            kubeconfig,
            home,
            cgroup,
            bridge,
        };
        cluster.wait("node ready", |c| {
            c.kubectl(&["get", "nodes"], None).contains(" Ready")
        });
        cluster
    }

    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kubectl_binary());
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path());
        c
    }

    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = self
            .kubectl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        } else {
            drop(child.stdin.take());
        }
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).to_string()
    }

    /// Polls `done` every 500 ms (one kubectl run per poll: polling must
    /// not starve the server); returns how long it took.
    pub fn wait(&self, what: &str, mut done: impl FnMut(&Cluster) -> bool) -> Duration {
        let started = Instant::now();
        while !done(self) {
            assert!(
                started.elapsed() < Duration::from_secs(900),
                "{what} took over 15 min"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        started.elapsed()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.kubectl(
            &[
                "delete",
                "deployments,pods",
                "--all",
                "--wait=true",
                "--timeout=120s",
            ],
            None,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "for f in $(find /sys/fs/cgroup/*/{c} /sys/fs/cgroup/{c} -name cgroup.procs 2>/dev/null); do for p in $(cat $f); do kill -9 $p; done; done; sleep 0.5; \
                 for d in /sys/fs/cgroup/*/{c} /sys/fs/cgroup/{c}; do [ -d $d ] && find $d -depth -type d -exec rmdir {{}} \\; ; done; \
                 for n in $(ip netns list | awk '{{print $1}}' | grep ^drover-); do ip netns delete $n; done; ip link del {b} 2>/dev/null; ip link del {b}-svc 2>/dev/null; \
                 grep ' {d}' /proc/self/mountinfo | awk '{{print $5}}' | sort -r | xargs -r -n1 umount -l; true",
                c = self.cgroup,
                b = self.bridge,
                d = self.data.path().display()
            ))
            .status();
    }
}
