//! Pod start-up benchmark on this machine: pod create → Running and →
//! Ready (no probes), for 1 pod and for N pods at once
//! (`DROVER_BENCH_PODS`, default 100), per runtime (`process`, `oci`), on
//! the real `drover server` with its node agent, driven with kubectl. The
//! times are taken by a `kubectl get pods --watch` stream read by this
//! program, from just before `kubectl apply` to the first event showing
//! each pod Running / Ready, and from the first event showing the pod at all
//! (the API stored it) to Running: the server's share, without kubectl's
//! own start-up. One pod is started 20 times one after another
//! (`DROVER_BENCH_SINGLE`), then N at once. Peers, in the same run: bare `runc run -d` of
//! a bundle of the same busybox image (one after another: each one's
//! duration), and `podman kube play` of the same pod spec and image (its
//! wall time; podman reports no per-pod times). Run as root:
//!
//! ```text
//! cargo bench -p drover --bench podstart
//! ```
//!
//! Prints markdown; asserts nothing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

mod common;

use common::Cluster;

/// When a pod was first seen at all (the API stored it), Running, and Ready.
type Seen = (Option<Instant>, Option<Instant>, Option<Instant>);

/// Each pod's times: apply → Running, apply → Ready, and stored → Running
/// (the server's share: without kubectl's own start-up and request).
#[derive(Default)]
struct Times {
    running: Vec<Duration>,
    ready: Vec<Duration>,
    stored_to_running: Vec<Duration>,
}

impl Times {
    fn extend(&mut self, other: Times) {
        self.running.extend(other.running);
        self.ready.extend(other.ready);
        self.stored_to_running.extend(other.stored_to_running);
        self.running.sort();
        self.ready.sort();
        self.stored_to_running.sort();
    }
}

/// Creates `n` pods of `runtime` at once; returns each pod's times, sorted.
fn start_pods(cluster: &Cluster, runtime: &str, image: &str, n: usize) -> Times {
    let c = cluster;
    let mut watch = c
            .kubectl_command(&[
                "get",
                "pods",
                "--watch",
                "--output-watch-events",
                "-o",
                "jsonpath={.object.metadata.name} {.object.status.phase} {.object.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let seen: Arc<Mutex<BTreeMap<String, Seen>>> = Arc::default();
    let lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let sink = seen.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let now = Instant::now();
            let mut parts = line.split_whitespace();
            let (Some(name), phase, ready) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let mut seen = sink.lock().unwrap();
            let entry = seen.entry(name.to_string()).or_default();
            entry.0.get_or_insert(now);
            if phase == Some("Running") && entry.1.is_none() {
                entry.1 = Some(now);
            }
            if ready == Some("True") && entry.2.is_none() {
                entry.2 = Some(now);
            }
        }
    });
    // The watch is established once it lists the (empty) namespace.
    std::thread::sleep(Duration::from_millis(500));
    let mut list = String::new();
    for i in 0..n {
        list.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: start-{runtime}-{i}}}\nspec:\n  runtimeClassName: {runtime}\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: {image}\n    imagePullPolicy: Never\n    command: [sleep, \"3600\"]\n"
            ));
    }
    let t0 = Instant::now();
    c.kubectl(&["apply", "-f", "-"], Some(&list));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = {
            let seen = seen.lock().unwrap();
            seen.values()
                .filter(|(_, _, ready)| ready.is_some())
                .count()
                >= n
        };
        if done || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let seen = seen.lock().unwrap();
    let mut times = Times {
        running: seen
            .values()
            .filter_map(|(_, r, _)| r.map(|t| t - t0))
            .collect(),
        ready: seen
            .values()
            .filter_map(|(_, _, r)| r.map(|t| t - t0))
            .collect(),
        stored_to_running: seen
            .values()
            .filter_map(|(stored, r, _)| Some(r.as_ref()?.duration_since(*stored.as_ref()?)))
            .collect(),
    };
    times.running.sort();
    times.ready.sort();
    times.stored_to_running.sort();
    c.kubectl(
        &["delete", "pods", "--all", "--wait=true", "--timeout=300s"],
        None,
    );
    times
}

/// Bare runc: `n` containers of one bundle, one `runc run -d` after
/// another; each call's duration (it returns once the container runs).
fn runc_peer(rootfs: &Path, n: usize) -> Vec<Duration> {
    let bundle = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(bundle.path())
        .status()
        .expect("runc spec");
    let path = bundle.path().join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    spec["process"]["args"] = serde_json::json!(["sleep", "3600"]);
    spec["process"]["terminal"] = serde_json::json!(false);
    spec["root"]["path"] = serde_json::json!(rootfs);
    spec["root"]["readonly"] = serde_json::json!(true);
    std::fs::write(&path, spec.to_string()).unwrap();
    let mut times = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        let status = Command::new("runc")
            .arg("--root")
            .arg(root.path())
            .args(["run", "-d", "--bundle"])
            .arg(bundle.path())
            .arg(format!("podstart-{i}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("runc run");
        if status.success() {
            times.push(started.elapsed());
        }
    }
    for i in 0..n {
        let _ = Command::new("runc")
            .arg("--root")
            .arg(root.path())
            .args(["delete", "--force", &format!("podstart-{i}")])
            .status();
    }
    times.sort();
    times
}

/// `podman kube play` of `n` pods; its wall time, or why it failed.
fn podman_peer(archive: &Path, image: &str, n: usize) -> Result<Duration, String> {
    let load = Command::new("podman")
        .args(["--runtime", "runc", "load", "-q", "-i"])
        .arg(archive)
        .output()
        .map_err(|e| format!("podman: {e}"))?;
    if !load.status.success() {
        return Err(String::from_utf8_lossy(&load.stderr).trim().to_string());
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pods.yaml");
    let mut yaml = String::new();
    for i in 0..n {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: podstart-{i}}}\nspec:\n  containers:\n  - name: c\n    image: {image}\n    imagePullPolicy: Never\n    command: [sleep, \"3600\"]\n"
        ));
    }
    std::fs::write(&file, yaml).unwrap();
    let started = Instant::now();
    let play = Command::new("podman")
        .args(["--runtime", "runc", "kube", "play"])
        .arg(&file)
        .output()
        .map_err(|e| format!("podman: {e}"))?;
    let elapsed = started.elapsed();
    let _ = Command::new("podman")
        .args(["--runtime", "runc", "kube", "down"])
        .arg(&file)
        .output();
    if play.status.success() {
        Ok(elapsed)
    } else {
        Err(String::from_utf8_lossy(&play.stderr)
            .trim()
            .lines()
            .last()
            .unwrap_or("")
            .to_string())
    }
}

fn main() {
    let n: usize = std::env::var("DROVER_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    println!("# drover pod start-up benchmark\n");
    println!(
        "cpus: {}, pods: 1 and {n}\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    // One image for everyone: busybox-static running `sleep 3600`.
    let image = images::testing::ImageBuilder::busybox(&["sleep", "3600"]);
    let archives = tempfile::tempdir().unwrap();
    let archive = archives.path().join("busybox.tar");
    let reference = "localhost/bench/busybox:1";
    image.save_docker_archive(&archive, reference);
    let rootfs = tempfile::tempdir().unwrap();
    runtime_linux::oci::make_busybox_image(
        rootfs.path(),
        "busybox",
        &images::testing::busybox_path(),
        &["PATH=/bin"],
    )
    .unwrap();

    let runc_1 = runc_peer(&rootfs.path().join("busybox"), 1);
    let runc_n = runc_peer(&rootfs.path().join("busybox"), n);
    let podman_1 = podman_peer(&archive, reference, 1);
    let podman_n = podman_peer(&archive, reference, n);

    let cluster = Cluster::start("start", "10.198.0.0/16", 250);
    let imported = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["image", "import"])
        .arg(&archive)
        .arg("--data-dir")
        .arg(cluster.data.path())
        .status()
        .unwrap();
    assert!(imported.success(), "drover image import");

    // One pod at a time, `DROVER_BENCH_SINGLE` times (default 20), then n
    // pods at once.
    let single: usize = std::env::var("DROVER_BENCH_SINGLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    println!(
        "| runtime | pods | apply → Running p50 / p99 | stored → Running p50 / p99 | apply → Ready p50 / p99 | all Ready |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for runtime in ["process", "oci"] {
        let mut one = Times::default();
        for _ in 0..single {
            one.extend(start_pods(&cluster, runtime, reference, 1));
        }
        let many = start_pods(&cluster, runtime, reference, n);
        for (label, times, count) in [
            (format!("1 (× {single}, one at a time)"), &one, 1),
            (format!("{n} at once"), &many, n),
        ] {
            println!(
                "| drover `{runtime}` | {label} | {} / {} | {} / {} | {} / {} | {}/{count} in {} |",
                ms(percentile(&times.running, 0.5)),
                ms(percentile(&times.running, 0.99)),
                ms(percentile(&times.stored_to_running, 0.5)),
                ms(percentile(&times.stored_to_running, 0.99)),
                ms(percentile(&times.ready, 0.5)),
                ms(percentile(&times.ready, 0.99)),
                if count == 1 { 1 } else { times.ready.len() },
                ms(times.ready.last().copied().unwrap_or_default()),
            );
        }
    }
    println!(
        "| bare `runc run -d` (one after another) | 1 | {} | — | — |",
        ms(percentile(&runc_1, 0.5))
    );
    println!(
        "| bare `runc run -d` (one after another) | {n} | {} / {} per container | — | {n} in {} |",
        ms(percentile(&runc_n, 0.5)),
        ms(percentile(&runc_n, 0.99)),
        ms(runc_n.iter().sum())
    );
    for (count, result) in [(1, podman_1), (n, podman_n)] {
        match result {
            Ok(wall) => println!(
                "| `podman --runtime runc kube play` | {count} | — | — | {count} in {} ({} per pod) |",
                ms(wall),
                ms(wall / count as u32)
            ),
            Err(e) => println!("| `podman kube play` | {count} | failed: {e} | | |"),
        }
    }
}
