//! Pod start-up benchmark on this machine: pod create → Running and →
//! Ready (no probes), for 1 pod and for N pods at once
//! (`DROVER_BENCH_PODS`, default 100), per runtime (`process`, `oci`), on
//! the real `drover server` with its node agent, driven with kubectl. The
//! times are taken by a `kubectl get pods --watch` stream read by this
//! program, from just before `kubectl apply` to the first event showing
//! each pod Running / Ready, and from the first event showing the pod at all
//! (the API stored it) to Running: the server's share, without kubectl's
//! own start-up. One pod is started 20 times one after another
//! (`DROVER_BENCH_SINGLE`), then N at once. For N at once, "all Ready" is
//! from just before `kubectl apply` to the last pod Ready, and next to it
//! from the first pod stored (the earliest first event of any pod) to the
//! last pod Ready: the server's and the agent's share, without kubectl's
//! start-up and its per-object client-side validation (kubectl 1.32
//! re-parses the server's OpenAPI v3 document for every object, ≈ 27–30 ms
//! of CPU each on this machine); a line after the table gives the wall
//! time of that `kubectl apply` itself. Peers, in the same run: bare
//! `runc run -d` of a bundle of the same busybox image (one after another:
//! each one's duration), and `podman kube play` of the same pod spec and
//! image, one pod `DROVER_BENCH_SINGLE` times then N pods in one file (its
//! wall time: podman reports no per-pod times; it returns once every
//! container runs). podman (Debian's `apt-get install podman`) runs from a
//! temporary directory of its own (storage, network configuration,
//! containers.conf) with runc, cgroupfs, overlay and its default kube
//! bridge network; see `Podman`. Run as root:
//!
//! ```text
//! cargo bench -p drover --bench podstart
//! DROVER_BENCH_ONLY_PEERS=1 cargo bench -p drover --bench podstart   # runc and podman only
//! DROVER_BENCH_NO_PEERS=1 cargo bench -p drover --bench podstart     # drover only (to profile it)
//! DROVER_BENCH_RUNTIMES=process DROVER_BENCH_VERBOSE=1 cargo bench -p drover --bench podstart
//!     # drover's process runtime only (and the peers), each pod's time on stderr
//! ```
//!
//! Each series (one pod at a time, N at once, per runtime and per peer)
//! starts once the machine is quiet (under 15 % CPU busy for a second, at
//! most 30 s of waiting), not in the previous series' clean-up.
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
/// (the server's share: without kubectl's own start-up and request); and
/// of the last `start_pods` call, the wall time of its `kubectl apply` and
/// the time from the first pod stored to the last pod Ready (`None` unless
/// every pod was seen stored and Ready).
#[derive(Default)]
struct Times {
    running: Vec<Duration>,
    ready: Vec<Duration>,
    stored_to_running: Vec<Duration>,
    apply: Duration,
    first_stored_to_all_ready: Option<Duration>,
    /// `kubectl delete pods --all` afterwards: from the call until the
    /// watch saw the last pod deleted (its containers stopped, its sandbox
    /// removed, the object gone).
    delete: Duration,
}

impl Times {
    fn extend(&mut self, other: Times) {
        self.running.extend(other.running);
        self.ready.extend(other.ready);
        self.stored_to_running.extend(other.stored_to_running);
        self.apply = other.apply;
        self.first_stored_to_all_ready = other.first_stored_to_all_ready;
        self.delete = other.delete;
        self.running.sort();
        self.ready.sort();
        self.stored_to_running.sort();
    }
}

/// Waits (at most 30 s) until the machine is quiet: two samples of
/// /proc/stat 500 ms apart in a row with under 15 % of the CPUs busy. Each
/// measured phase starts so, rather than in the kernel's and the previous
/// phase's clean-up (network namespaces, mounts and cgroups of 100 pods
/// are torn down in the background, after the command that removed them
/// returned).
fn settle() {
    fn busy_idle() -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        let total: u64 = fields.iter().take(8).sum();
        (total - idle, idle)
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet = 0;
    let mut last = busy_idle();
    while quiet < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let now = busy_idle();
        let (busy, idle) = (now.0 - last.0, now.1 - last.1);
        last = now;
        if busy * 100 < (busy + idle) * 15 {
            quiet += 1;
        } else {
            quiet = 0;
        }
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
                "jsonpath={.type} {.object.metadata.name} {.object.status.phase} {.object.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let seen: Arc<Mutex<BTreeMap<String, Seen>>> = Arc::default();
    // When each pod's DELETED event came.
    let gone: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let (sink, gone_sink) = (seen.clone(), gone.clone());
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let now = Instant::now();
            let mut parts = line.split_whitespace();
            let (Some(kind), Some(name), phase, ready) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if kind == "DELETED" {
                gone_sink.lock().unwrap().insert(name.to_string(), now);
                continue;
            }
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
    let apply = t0.elapsed();
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
    let seen = seen.lock().unwrap().clone();
    // The first pod stored → the last pod Ready, once all n were seen
    // stored and Ready.
    let first_stored = seen.values().filter_map(|(stored, _, _)| *stored).min();
    let last_ready = seen.values().filter_map(|(_, _, ready)| *ready).max();
    let all_ready = seen
        .values()
        .filter(|(_, _, ready)| ready.is_some())
        .count()
        >= n;
    let first_stored_to_all_ready = match (first_stored, last_ready) {
        (Some(first), Some(last)) if all_ready => Some(last.duration_since(first)),
        _ => None,
    };
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
        apply,
        first_stored_to_all_ready,
        delete: Duration::ZERO,
    };
    if std::env::var_os("DROVER_BENCH_VERBOSE").is_some() {
        for (name, (stored, running, _)) in seen.iter() {
            if let (Some(stored), Some(running)) = (stored, running) {
                eprintln!(
                    "{name}: stored → Running {}",
                    ms(running.duration_since(*stored))
                );
            }
        }
    }
    times.running.sort();
    times.ready.sort();
    times.stored_to_running.sort();
    // Delete them all; the time until the watch has seen the last one go
    // (`kubectl delete --wait` itself then checks each pod with a GET, five
    // a second: its client-side rate limit, not the server, sets its pace).
    let deleting = Instant::now();
    c.kubectl(
        &["delete", "pods", "--all", "--wait=true", "--timeout=300s"],
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while gone.lock().unwrap().len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    times.delete = gone
        .lock()
        .unwrap()
        .values()
        .max()
        .map(|last| last.duration_since(deleting))
        .unwrap_or_default();
    let _ = watch.kill();
    let _ = watch.wait();
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
    settle();
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

/// A podman kept to a temporary directory: its own storage (overlay), run
/// root, libpod tmpdir, network configuration and containers.conf, so the
/// run neither uses nor leaves anything in the host's podman. On drop it
/// removes its pods, containers and images.
struct Podman {
    dir: tempfile::TempDir,
}

/// The hard limit of `name` (a row of `/proc/self/limits`), if finite.
fn hard_limit(name: &str) -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let row = limits.lines().find(|l| l.starts_with(name))?;
    row[name.len()..].split_whitespace().nth(1)?.parse().ok()
}

impl Podman {
    fn new() -> Podman {
        let dir = tempfile::tempdir().unwrap();
        // Run as root without `default_ulimits`, podman gives every
        // container (the pod's infra container too) RLIMIT_NOFILE 1048576;
        // raising a hard limit needs CAP_SYS_RESOURCE, which this sandbox
        // does not grant, so runc fails ("error setting rlimit type 7:
        // operation not permitted"). With `nofile` alone in
        // `default_ulimits`, podman sets RLIMIT_NPROC 1048576 (type 6).
        // So both, the most podman can set here: this process's own hard
        // RLIMIT_NOFILE, and RLIMIT_NPROC 32768 (or less) — podman 4.3 and
        // so conmon and runc run with a hard RLIMIT_NPROC of 32768.
        let nofile = hard_limit("Max open files").unwrap_or(1 << 20).min(1 << 20);
        let nproc = hard_limit("Max processes").unwrap_or(32768).min(32768);
        std::fs::write(
            dir.path().join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n"
            ),
        )
        .unwrap();
        Podman { dir }
    }

    /// `podman <args>` with this instance's options.
    fn command(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--network-config-dir")
            .arg(d.join("net"))
            .args([
                "--storage-driver",
                "overlay",
                // No private bind mount of the storage directory onto itself.
                "--storage-opt",
                "overlay.skip_mount_home=true",
                "--runtime",
                "runc",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs `podman <args>`: its stdout, or the last line of its stderr.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command(args)
            .output()
            .map_err(|e| format!("podman: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr)
                .lines()
                .rfind(|l| !l.contains("syslog"))
                .unwrap_or("")
                .trim()
                .to_string())
        }
    }

    /// `podman kube play` of `n` pods: its wall time, once every pod's
    /// infra container and container run (checked after the clock stops),
    /// then `podman kube down` (not timed).
    fn play(&self, image: &str, n: usize) -> Result<Duration, String> {
        let file = self.dir.path().join(format!("pods-{n}.yaml"));
        let mut yaml = String::new();
        for i in 0..n {
            yaml.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: podstart-{i}}}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: {image}\n    imagePullPolicy: Never\n    command: [sleep, \"3600\"]\n"
            ));
        }
        std::fs::write(&file, yaml).unwrap();
        let file = file.to_str().unwrap();
        let started = Instant::now();
        let play = self.run(&["kube", "play", "--quiet", file]);
        let elapsed = started.elapsed();
        let running = self
            .run(&["ps", "--filter", "status=running", "--quiet"])
            .map(|out| out.lines().count());
        let _ = self.run(&["kube", "down", file]);
        play?;
        match running? {
            r if r == 2 * n => Ok(elapsed),
            r => Err(format!(
                "{r} of {} containers (infra and `c`) running after `kube play`",
                2 * n
            )),
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["pod", "rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["rmi", "--all", "--force"]);
        // Whatever podman left mounted under its directory (nothing, when
        // it cleaned up), innermost first.
        let dir = self.dir.path().to_str().unwrap().to_string();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

/// podman's figures: `kube play` of one pod, `single` times one after
/// another (each one's wall time, sorted), then of `n` pods in one file.
struct PodmanTimes {
    one: Vec<Duration>,
    many: Duration,
}

/// `podman kube play` of the same pod spec and image, after one untimed
/// play of one pod (podman builds its pause image and creates its kube
/// network then); its times, or why it failed.
fn podman_peer(
    archive: &Path,
    image: &str,
    single: usize,
    n: usize,
) -> Result<PodmanTimes, String> {
    Command::new("podman")
        .arg("--version")
        .output()
        .map_err(|e| format!("podman: {e}"))?;
    let podman = Podman::new();
    podman.run(&["load", "--quiet", "--input", archive.to_str().unwrap()])?;
    podman.play(image, 1)?;
    let mut one = Vec::new();
    settle();
    for _ in 0..single {
        one.push(podman.play(image, 1)?);
    }
    one.sort();
    settle();
    let many = podman.play(image, n)?;
    Ok(PodmanTimes { one, many })
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

    // One pod at a time, `DROVER_BENCH_SINGLE` times (default 20), then n
    // pods at once.
    let single: usize = std::env::var("DROVER_BENCH_SINGLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // Only bare runc and podman, not drover.
    let only_peers = std::env::var("DROVER_BENCH_ONLY_PEERS").is_ok_and(|v| v == "1");
    // Only drover, no peers (to profile drover's side alone).
    let no_peers = std::env::var("DROVER_BENCH_NO_PEERS").is_ok_and(|v| v == "1");

    let (runc_1, runc_n, podman) = if no_peers {
        (
            Vec::new(),
            Vec::new(),
            Err("not run (DROVER_BENCH_NO_PEERS=1)".to_string()),
        )
    } else {
        (
            runc_peer(&rootfs.path().join("busybox"), 1),
            runc_peer(&rootfs.path().join("busybox"), n),
            podman_peer(&archive, reference, single, n),
        )
    };

    println!(
        "| runtime | pods | apply → Running p50 / p99 | stored → Running p50 / p99 | apply → Ready p50 / p99 | all Ready |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    // Printed after the table: each N-at-once `kubectl apply`'s wall time.
    let mut applies = Vec::new();
    if !only_peers {
        let cluster = Cluster::start("start", "10.198.0.0/16", 250);
        let imported = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["image", "import"])
            .arg(&archive)
            .arg("--data-dir")
            .arg(cluster.data.path())
            .status()
            .unwrap();
        assert!(imported.success(), "drover image import");
        // DROVER_BENCH_RUNTIMES=process (comma-separated): only those.
        let runtimes =
            std::env::var("DROVER_BENCH_RUNTIMES").unwrap_or_else(|_| "process,oci".into());
        for runtime in ["process", "oci"] {
            if !runtimes.split(',').any(|r| r.trim() == runtime) {
                continue;
            }
            let mut one = Times::default();
            settle();
            for _ in 0..single {
                one.extend(start_pods(&cluster, runtime, reference, 1));
            }
            settle();
            let many = start_pods(&cluster, runtime, reference, n);
            applies.push(format!(
                "kubectl apply of {n} pods (drover `{runtime}`): {}; `kubectl delete pods --all` of them → the last one gone: {}",
                ms(many.apply),
                ms(many.delete)
            ));
            for (label, times, count) in [
                (format!("1 (× {single}, one at a time)"), &one, 1),
                (format!("{n} at once"), &many, n),
            ] {
                let server_share = match times.first_stored_to_all_ready {
                    Some(d) if count > 1 => format!(" (first stored → all Ready {})", ms(d)),
                    _ => String::new(),
                };
                println!(
                    "| drover `{runtime}` | {label} | {} / {} | {} / {} | {} / {} | {}/{count} in {}{server_share} |",
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
    }
    println!(
        "| bare `runc run -d` | 1 | {} | — | — | — |",
        ms(percentile(&runc_1, 0.5))
    );
    println!(
        "| bare `runc run -d`, one after another | {n} | {} / {} per container | — | — | {n} in {} |",
        ms(percentile(&runc_n, 0.5)),
        ms(percentile(&runc_n, 0.99)),
        ms(runc_n.iter().sum())
    );
    match podman {
        Ok(podman) => {
            println!(
                "| `podman kube play` (wall time) | 1 (× {single}, one at a time) | {} / {} | — | — | — |",
                ms(percentile(&podman.one, 0.5)),
                ms(percentile(&podman.one, 0.99)),
            );
            println!(
                "| `podman kube play` (wall time) | {n} in one file | — | — | — | {n}/{n} in {} ({} per pod) |",
                ms(podman.many),
                ms(podman.many / n as u32)
            );
        }
        Err(e) => println!("| `podman kube play` | 1, {n} | failed: {e} | | | |"),
    }
    if !applies.is_empty() {
        println!();
        for line in applies {
            println!("{line}");
        }
    }
}
