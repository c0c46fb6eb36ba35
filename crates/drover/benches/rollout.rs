//! End-to-end rollout benchmark on this machine: the real `drover server`
//! (API server, controllers, scheduler and node agent with the process
//! runtime), driven with kubectl. Run as root with
//!
//! ```text
//! cargo bench -p drover --bench rollout
//! ```
//!
//! Measures, for a Deployment of `DROVER_BENCH_REPLICAS` (default 100)
//! replicas whose readiness probe (exec, periodSeconds 1) passes at once:
//! apply → all replicas Ready; a rolling update with maxSurge 25 % and
//! maxUnavailable 0 → rollout complete. The floor the probes impose is one
//! probe period per pod wave. The benchmark polls the Deployment with one
//! kubectl run every 500 ms. Peer, in the same run: the same number of
//! sandboxed processes (new PID, mount, IPC and UTS namespaces, private
//! /proc) started directly with util-linux `unshare`, no orchestration.
//! Prints markdown; asserts nothing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn kubectl_binary() -> std::path::PathBuf {
    let dispatcher = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v kubectl)\""])
        .output()
        .expect("kubectl on PATH");
    let real = String::from_utf8_lossy(&dispatcher.stdout)
        .trim()
        .to_string();
    Path::new(&real).parent().unwrap().join("kubectl.1.32")
}

struct Cluster {
    child: Child,
    kubeconfig: std::path::PathBuf,
    home: tempfile::TempDir,
    _data: tempfile::TempDir,
    cgroup: String,
}

impl Cluster {
    fn start() -> Cluster {
        let data = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let cgroup = format!("drover-bench-{}", std::process::id());
        let child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["server", "--port", "0", "--node-name", "bench"])
            .arg("--data-dir")
            .arg(data.path())
            .arg(format!("--cgroup-parent={cgroup}"))
            .args(["--pod-cidr=10.199.0.0/16", "--pod-bridge=drvbench"])
            // 100 replicas + 25 % surge exceed the kubelet's default 110.
            .arg("--max-pods=250")
            .env("DROVER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("drover server");
        let kubeconfig = data.path().join("kubeconfig.yaml");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&kubeconfig).is_ok_and(|t| t.contains("token:")) {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Cluster {
            child,
            kubeconfig,
            home,
            _data: data,
            cgroup,
        }
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = Command::new(kubectl_binary())
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
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
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn wait(&self, what: &str, mut done: impl FnMut(&Cluster) -> bool) -> Duration {
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
                "deployment",
                "bench",
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
                 for n in $(ip netns list | awk '{{print $1}}' | grep ^drover-); do ip netns delete $n; done; ip link del drvbench 2>/dev/null; true",
                c = self.cgroup
            ))
            .status();
    }
}

fn deployment(replicas: usize, version: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: bench}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: bench}}}}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 25%, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: bench}}, annotations: {{version: "{version}"}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: unused
        command: [sleep, "3600"]
        resources: {{requests: {{cpu: 1m, memory: 4Mi}}}}
        readinessProbe:
          exec: {{command: ["true"]}}
          periodSeconds: 1
"#
    )
}

/// Whether the rollout is complete, as `kubectl rollout status` decides it
/// (one kubectl run per poll: polling must not starve the server).
fn rolled_out(c: &Cluster, replicas: i64) -> bool {
    let out = c.kubectl(&["get", "deployment", "bench", "-o", "json"], None);
    let d: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let int = |p: &str| {
        d.pointer(p)
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(-1)
    };
    int("/status/observedGeneration") >= int("/metadata/generation")
        && int("/status/updatedReplicas") == replicas
        && int("/status/replicas") == replicas
        && int("/status/availableReplicas") == replicas
        && int("/status/readyReplicas") == replicas
}

/// The peer: `n` sandboxed processes started directly.
fn unshare_peer(n: usize) -> Duration {
    let started = Instant::now();
    let mut children: Vec<Child> = (0..n)
        .map(|_| {
            Command::new("unshare")
                .args([
                    "--pid",
                    "--fork",
                    "--mount-proc",
                    "--ipc",
                    "--uts",
                    "sleep",
                    "3600",
                ])
                .stdout(Stdio::null())
                .spawn()
                .expect("unshare")
        })
        .collect();
    // Running: each one's forked sleep exists.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = Command::new("pgrep")
            .args(["-c", "-x", "sleep"])
            .output()
            .unwrap();
        let count: usize = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        if count >= n || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = Command::new("pkill")
        .args(["-9", "-f", "^sleep 3600$"])
        .status();
    elapsed
}

fn main() {
    let replicas: usize = std::env::var("DROVER_BENCH_REPLICAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    println!("# drover rollout benchmark\n");
    println!("binary: {}", env!("CARGO_BIN_EXE_drover"));
    println!(
        "cpus: {}, replicas: {replicas}\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let peer = unshare_peer(replicas);

    let cluster = Cluster::start();
    cluster.wait("node ready", |c| {
        c.kubectl(&["get", "nodes"], None).contains(" Ready")
    });
    cluster.kubectl(&["apply", "-f", "-"], Some(&deployment(replicas, 1)));
    let applied = cluster.wait("all ready", |c| rolled_out(c, replicas as i64));
    cluster.kubectl(&["apply", "-f", "-"], Some(&deployment(replicas, 2)));
    let rolled = cluster.wait("rolled out", |c| rolled_out(c, replicas as i64));
    let waves = replicas.div_ceil((replicas * 25).div_ceil(100));

    println!("| measure | drover | floor from probes | peer: {replicas} × `unshare` directly |");
    println!("|---|---:|---:|---:|");
    println!(
        "| apply → {replicas}/{replicas} Ready | {:.1} s | ≈1 s (one probe period) | {:.2} s to running |",
        applied.as_secs_f64(),
        peer.as_secs_f64()
    );
    println!(
        "| rolling update, maxSurge 25 %, maxUnavailable 0 | {:.1} s | ≈{waves} s ({waves} waves × 1 probe period) | — |",
        rolled.as_secs_f64()
    );
}
