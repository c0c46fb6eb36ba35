//! End-to-end harness: starts the real `drover` binary on a fresh port and
//! data dir, and runs a fixed kubectl version (not the machine's dispatcher)
//! with a throwaway HOME against it. Everything it starts is stopped on drop.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The kubectl the tests drive. The machine's `kubectl` picks a binary by
/// the server's version; tests pin one so results do not depend on that.
pub const KUBECTL_VERSION: &str = "1.32";

pub fn kubectl_binary() -> PathBuf {
    if let Ok(p) = std::env::var("DROVER_TEST_KUBECTL") {
        return PathBuf::from(p);
    }
    let name = format!("kubectl.{KUBECTL_VERSION}");
    let dispatcher = which("kubectl").unwrap_or_else(|| {
        panic!("kubectl is not on PATH; the tests need {name} (set DROVER_TEST_KUBECTL)")
    });
    let real = std::fs::canonicalize(&dispatcher).unwrap_or(dispatcher);
    let candidate = real.parent().unwrap().join(&name);
    if candidate.exists() {
        return candidate;
    }
    which(&name).unwrap_or_else(|| {
        panic!(
            "{name} not found next to {} nor on PATH (set DROVER_TEST_KUBECTL)",
            real.display()
        )
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// The second and third octets of test server `n`'s service CIDR in test
/// process `pid`: 10.50.0.0/16 … 10.84.0.0/16 by process, a /24 per server —
/// apart from the pod CIDRs of test servers (10.100–199) and joined agents
/// (10.200–249), and from the defaults 10.43 (services) and 10.88 (pods).
pub fn service_cidr_octets(pid: u32, n: u32) -> (u32, u32) {
    (50 + pid % 35, n % 256)
}

pub struct Server {
    pub child: Option<Child>,
    pub data_dir: tempfile::TempDir,
    pub home: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub url: String,
    pub token: String,
    pub extra_args: Vec<String>,
    log: PathBuf,
    /// With the node agent: the cgroup parent its pods live under (every
    /// process in it is killed and the cgroups removed on drop).
    pub agent_cgroup: Option<String>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        Server::launch(extra.iter().map(|s| s.to_string()).collect(), None)
    }

    /// A server that is also a node: its agent runs pods (process runtime)
    /// under a cgroup parent of its own.
    pub fn start_with_agent(extra: &[&str]) -> Server {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let cgroup = format!("drover-e2e-{pid}-{n}");
        let mut args = vec![
            format!("--cgroup-parent={cgroup}"),
            "--node-name=e2e-node".to_string(),
            // Each server its own bridge and pod CIDR (a bridge has one).
            format!("--pod-cidr=10.{}.{}.0/24", 100 + pid % 100, n % 250),
            format!("--pod-bridge=drv{}x{n}", pid % 100_000),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Server::launch(args, Some(cgroup))
    }

    /// Starts a server on a fresh data dir and HOME.
    fn launch(mut extra_args: Vec<String>, agent_cgroup: Option<String>) -> Server {
        // Each server its own service CIDR (a /24) and cluster DNS address,
        // so the service proxies of concurrent test servers never overlap;
        // kept across restarts. Servers sharing an etcd pass one themselves.
        if !extra_args.iter().any(|a| a.starts_with("--service-cidr")) {
            static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (a, b) = service_cidr_octets(std::process::id(), n);
            extra_args.push(format!("--service-cidr=10.{a}.{b}.0/24"));
            extra_args.push(format!("--cluster-dns=10.{a}.{b}.10"));
        }
        let data_dir = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let kubeconfig = data_dir.path().join("kubeconfig.yaml");
        let log = data_dir.path().join("server.log");
        let mut s = Server {
            child: None,
            data_dir,
            home,
            kubeconfig,
            url: String::new(),
            token: String::new(),
            extra_args,
            log,
            agent_cgroup,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(["--port", "0"])
            .args(if self.agent_cgroup.is_none() {
                &["--disable-agent"][..]
            } else {
                &[]
            })
            .args(&self.extra_args)
            .env("DROVER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting drover server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.kubeconfig) {
                if let (Some(url), Some(token)) =
                    (yaml_field(&text, "server:"), yaml_field(&text, "token:"))
                {
                    self.url = url;
                    self.token = token;
                    break;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "drover server exited with {status} before becoming ready; log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "drover server not ready after 60 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Network namespaces of pods the agent did not tear down (it was
    /// stopped first), and this server's gateway address on the bridge.
    fn remove_pod_networks(&self) {
        let pods = self.data_dir.path().join("agent/pods");
        let oci_pods = self.data_dir.path().join("agent/oci/pods");
        let entries = [pods, oci_pods]
            .into_iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten());
        for e in entries {
            let name = format!("drover-{}", e.file_name().to_string_lossy());
            if Path::new("/run/netns").join(&name).exists() {
                let _ = Command::new("ip").args(["netns", "delete", &name]).status();
            }
        }
        remove_spare_networks(&self.data_dir.path().join("agent/cni"));
        if let Some(bridge) = self
            .extra_args
            .iter()
            .find_map(|a| a.strip_prefix("--pod-bridge="))
        {
            // The bridge and the node's service interface (BRIDGE-svc).
            for link in [bridge.to_string(), format!("{bridge}-svc")] {
                let _ = Command::new("ip")
                    .args(["link", "del", &link])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }

    /// Mounts the OCI runtime left under the data dir (rootfs overlays,
    /// pod namespace files) when the server stopped before removing them.
    pub fn mounts(&self) -> Vec<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| Path::new(m).starts_with(self.data_dir.path()))
            .collect()
    }

    fn remove_mounts(&self) {
        for m in self.mounts().into_iter().rev() {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server the hard way (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.kubectl_env(args, stdin, &[])
    }

    /// kubectl with extra environment variables (its feature gates, say).
    pub fn kubectl_env(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(kubectl_binary());
        cmd.args(args)
            .envs(env.iter().copied())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("running kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl and insists it succeeds; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[track_caller]
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, Some(stdin));
        assert!(
            out.status.success(),
            "kubectl {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl and insists it fails; returns stderr.
    #[track_caller]
    pub fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {} should have failed:\nstdout: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl -o json output")
    }

    /// A raw HTTPS request with curl; returns (status code, body).
    pub fn curl(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> (u16, String) {
        let body_file = self
            .data_dir
            .path()
            .join(format!("curl-body-{}", std::process::id()));
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-k", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        if let Some(ct) = content_type {
            cmd.args(["-H", &format!("Content-Type: {ct}")]);
        }
        if let Some(b) = body {
            std::fs::write(&body_file, b).unwrap();
            cmd.args(["--data-binary", &format!("@{}", body_file.display())]);
        }
        cmd.arg(format!("{}{}", self.url, path));
        let out = cmd.output().expect("running curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_terminate(&c);
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut exited = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    exited = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !exited {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(cgroup) = &self.agent_cgroup {
            remove_cgroup_tree(cgroup);
            self.remove_pod_networks();
            self.remove_mounts();
            unmount_below(self.data_dir.path());
        }
    }
}

/// Mount points at or below `dir` (from /proc/self/mountinfo).
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect()
}

/// Volume mounts (tmpfs, subPath binds) a stopped agent left under its
/// data dir, deepest first.
fn unmount_below(dir: &Path) {
    let mut mounts = mounts_below(dir);
    mounts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for m in mounts {
        let _ = Command::new("umount").args(["-l", &m]).status();
    }
}

/// The directories of cgroup `name` (directly under a hierarchy root) in
/// every mounted hierarchy, v1 or v2.
pub fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(name)];
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        dirs.push(entry.path().join(name));
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

/// Processes in cgroup `name` and below, in any hierarchy.
pub fn cgroup_pids(name: &str) -> Vec<i32> {
    fn walk(dir: &Path, out: &mut Vec<i32>) {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    for dir in cgroup_dirs(name) {
        walk(&dir, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Kills every process of cgroup `name` and removes it everywhere.
pub fn remove_cgroup_tree(name: &str) {
    for _ in 0..100 {
        let pids = cgroup_pids(name);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    fn rmdir_tree(dir: &Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for dir in cgroup_dirs(name) {
        rmdir_tree(&dir);
    }
}

fn unsafe_terminate(c: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
}

fn yaml_field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()))
        .filter(|v| !v.is_empty())
}

/// Polls `cond` until it holds or `timeout` passes; panics with `what`.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

impl Server {
    /// [`wait_until`] that, on timeout, says what the cluster looked like:
    /// pods, warning events and the end of the server log.
    pub fn wait(&self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let pods = self.kubectl(&["get", "pods", "-A", "-o", "wide"]);
        let events = self.kubectl(&["get", "events", "-A", "--field-selector", "type=Warning"]);
        let log = self.log_text();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        panic!(
            "timed out after {timeout:?} waiting for: {what}\npods:\n{}\nwarnings:\n{}\nmounts below the data directory: {:?}\nserver log (end):\n{}",
            String::from_utf8_lossy(&pods.stdout),
            String::from_utf8_lossy(&events.stdout),
            self.mounts(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

/// A `drover agent` process joined to a server: its own data dir, cgroup
/// parent, pod CIDR and bridge; everything it made is removed on drop.
pub struct AgentProcess {
    pub child: Option<Child>,
    pub data_dir: tempfile::TempDir,
    pub name: String,
    pub cgroup: String,
    bridge: String,
    cidr: String,
    url: String,
    log: PathBuf,
}

impl AgentProcess {
    /// Starts `drover agent --server URL --token TOKEN` as node `name`.
    pub fn join(server: &Server, token: &str, name: &str) -> AgentProcess {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let data_dir = tempfile::tempdir().unwrap();
        let log = data_dir.path().join("agent.log");
        let mut a = AgentProcess {
            child: None,
            data_dir,
            name: name.to_string(),
            cgroup: format!("drover-e2e-agent-{pid}-{n}"),
            bridge: format!("dra{}x{n}", pid % 100_000),
            cidr: format!("10.{}.{}.0/24", 200 + pid % 50, n % 250),
            url: server.url.clone(),
            log,
        };
        a.start(token);
        a
    }

    /// Starts the agent process (again) with `token`.
    pub fn start(&mut self, token: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .arg("agent")
            .args(["--server", &self.url, "--token", token])
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg(format!("--node-name={}", self.name))
            .arg(format!("--cgroup-parent={}", self.cgroup))
            .arg(format!("--pod-cidr={}", self.cidr))
            .arg(format!("--pod-bridge={}", self.bridge))
            .env("DROVER_LOG", "info")
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting drover agent");
        self.child = Some(child);
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the agent the hard way (its pods keep running).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Has the agent process exited (and with what)?
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
        remove_cgroup_tree(&self.cgroup);
        let pods = self.data_dir.path().join("agent/pods");
        for e in std::fs::read_dir(pods).into_iter().flatten().flatten() {
            let name = format!("drover-{}", e.file_name().to_string_lossy());
            if Path::new("/run/netns").join(&name).exists() {
                let _ = Command::new("ip").args(["netns", "delete", &name]).status();
            }
        }
        remove_spare_networks(&self.data_dir.path().join("agent/cni"));
        for link in [self.bridge.clone(), format!("{}-svc", self.bridge)] {
            let _ = Command::new("ip")
                .args(["link", "del", &link])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The spare pod networks a killed agent left (a clean shutdown removes
/// them; the next agent on the same data directory would too).
pub fn remove_spare_networks(ipam_dir: &Path) {
    for name in runtime_linux::network::leftover_spare_namespaces(ipam_dir) {
        if Path::new("/run/netns").join(&name).exists() {
            let _ = Command::new("ip").args(["netns", "delete", &name]).status();
        }
    }
}

/// Runs `drover ARGS` to completion: (success, stdout, stderr).
pub fn drover(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("running drover");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `kubectl port-forward`, killed on drop.
pub struct PortForward {
    child: std::process::Child,
    pub local_port: u16,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kubectl port-forward pod/NAME :PORT` and waits for its
/// `Forwarding from 127.0.0.1:LOCAL -> PORT` line.
pub fn port_forward(s: &Server, pod: &str, port: u16) -> PortForward {
    port_forward_env(s, pod, port, &[])
}

/// [`port_forward`] with extra environment variables for kubectl.
pub fn port_forward_env(s: &Server, pod: &str, port: u16, env: &[(&str, &str)]) -> PortForward {
    let mut child = Command::new(kubectl_binary())
        .args(["port-forward", &format!("pod/{pod}"), &format!(":{port}")])
        .envs(env.iter().copied())
        .env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", s.home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running kubectl port-forward");
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut err_pipe = child.stderr.take().unwrap();
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut err_pipe, &mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut forward = PortForward {
        child,
        local_port: 0,
        stderr,
    };
    for line in lines.by_ref() {
        let line = line.unwrap();
        // "Forwarding from 127.0.0.1:41235 -> 8080"
        if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
            let (local, remote) = rest.split_once(" -> ").expect("a port mapping");
            assert_eq!(remote, port.to_string(), "{line}");
            forward.local_port = local.parse().unwrap();
            break;
        }
    }
    assert!(
        forward.local_port != 0,
        "kubectl port-forward printed no Forwarding line: {}",
        forward.stderr.lock().unwrap()
    );
    // Keep reading stdout (kubectl logs each connection there).
    std::thread::spawn(move || for _ in lines {});
    forward
}

pub fn http_get(port: u16, path: &str) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}
