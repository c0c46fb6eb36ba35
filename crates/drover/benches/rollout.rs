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

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::Cluster;

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

    // 100 replicas + 25 % surge exceed the kubelet's default 110 pods.
    let cluster = Cluster::start("bench", "10.199.0.0/16", 250);
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
