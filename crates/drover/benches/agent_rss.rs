//! Memory of a node agent on its own (`drover agent`, joined to a server
//! that runs no agent): resident set size idle, and with N running pods
//! (`DROVER_BENCH_PODS`, default 100; process runtime, `sleep 3600`). Run
//! as root:
//!
//! ```text
//! cargo bench -p drover --bench agent_rss
//! ```
//!
//! Prints markdown; asserts nothing.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct AgentProcess {
    child: Child,
    cgroup: String,
    _data: tempfile::TempDir,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "for f in $(find /sys/fs/cgroup/*/{c} /sys/fs/cgroup/{c} -name cgroup.procs 2>/dev/null); do for p in $(cat $f); do kill -9 $p; done; done; sleep 0.5; \
                 for d in /sys/fs/cgroup/*/{c} /sys/fs/cgroup/{c}; do [ -d $d ] && find $d -depth -type d -exec rmdir {{}} \\; ; done; \
                 for n in $(ip netns list | awk '{{print $1}}' | grep ^drover-); do ip netns delete $n; done; ip link del drvrss 2>/dev/null; true",
                c = self.cgroup
            ))
            .status();
    }
}

fn main() {
    let n: usize = std::env::var("DROVER_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    // The server's own agent stays on a second node nobody schedules to.
    let cluster = common::Cluster::start("rssserver", "10.197.0.0/24", 250);
    cluster.kubectl(&["cordon", "bench"], None);
    let token = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["token", "create", "--kubeconfig"])
        .arg(&cluster.kubeconfig)
        .output()
        .unwrap();
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let url = std::fs::read_to_string(&cluster.kubeconfig)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("server:")
                .map(|v| v.trim().to_string())
        })
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let cgroup = format!("drover-rss-{}", std::process::id());
    let child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "agent",
            "--server",
            &url,
            "--token",
            &token,
            "--node-name",
            "rss",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .arg(format!("--cgroup-parent={cgroup}"))
        .args([
            "--pod-cidr=10.196.0.0/16",
            "--pod-bridge=drvrss",
            "--max-pods=250",
        ])
        .env("DROVER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("drover agent");
    let agent = AgentProcess {
        child,
        cgroup,
        _data: data,
    };
    cluster.wait("node rss ready", |c| {
        c.kubectl(&["get", "node", "rss"], None).contains(" Ready")
    });
    std::thread::sleep(Duration::from_secs(15));
    let idle = rss_kib(agent.child.id());

    let mut list = String::new();
    for i in 0..n {
        list.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: rss-{i}}}\nspec:\n  nodeName: rss\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: unused\n    command: [sleep, \"3600\"]\n"
        ));
    }
    cluster.kubectl(&["apply", "-f", "-"], Some(&list));
    let started = Instant::now();
    cluster.wait("all pods running", |c| {
        c.kubectl(&["get", "pods", "--no-headers"], None)
            .lines()
            .filter(|l| l.contains(" Running "))
            .count()
            >= n
    });
    let to_running = started.elapsed();
    std::thread::sleep(Duration::from_secs(15));
    let busy = rss_kib(agent.child.id());
    println!("# drover agent memory\n");
    println!("| `drover agent` | RSS |");
    println!("|---|---:|");
    println!(
        "| idle (registered, Lease renewals, tunnel open) | {:.1} MiB |",
        idle as f64 / 1024.0
    );
    println!(
        "| with {n} running pods (all Running after {:.1} s) | {:.1} MiB |",
        to_running.as_secs_f64(),
        busy as f64 / 1024.0
    );
    cluster.kubectl(
        &["delete", "pods", "--all", "--wait=true", "--timeout=300s"],
        None,
    );
}
