//! Benchmarks of the drover API server, driving the real `drover` binary
//! over HTTPS the way a client would. Run with
//!
//! ```text
//! cargo bench -p drover --bench api [-- SECTION...]
//! ```
//!
//! Sections: `cold` (cold start), `idle` (idle RSS), `api` (latency and
//! throughput, embedded store vs etcd side by side), `bulk` (RSS and disk
//! with 10,000 ConfigMaps). With no section named, all run. Everything is
//! measured and printed as markdown tables; nothing is asserted.
//!
//! Knobs (environment): `DROVER_BENCH_SECONDS` (seconds per API cell,
//! default 3), `DROVER_BENCH_COLD_STARTS` (default 20),
//! `DROVER_BENCH_WATCH_WRITES` (default 500), `DROVER_BENCH_BULK` (number
//! of ConfigMaps for the bulk section, default 10000).
//!
//! Client: one HTTPS connection per concurrent worker, HTTP/1.1 with
//! keep-alive (ALPN `http/1.1`, TCP_NODELAY), hyper 1 + tokio-rustls
//! trusting the server's own CA. The client runs on the same machine as the
//! server, so they share the CPUs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use store::testing::EtcdProcess;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const CONCURRENCY: [usize; 3] = [1, 32, 256];
/// Objects in the namespace the list benchmark lists (and `get` reads from).
const LIST_SIZE: usize = 100;

fn main() -> Result<()> {
    let sections: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| sections.is_empty() || sections.iter().any(|s| s == name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        println!("# drover API benchmarks\n");
        println!("binary: {}", env!("CARGO_BIN_EXE_drover"));
        println!("cpus: {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
        println!("client: one HTTPS connection per worker, HTTP/1.1 keep-alive (hyper 1 + tokio-rustls)\n");
        if wanted("cold") {
            section("Cold start", cold_start()).await?;
        }
        if wanted("idle") {
            section("Idle RSS", idle_rss()).await?;
        }
        if wanted("api") {
            section("API latency and throughput", api_latency()).await?;
        }
        if wanted("bulk") {
            section("RSS with many ConfigMaps", bulk_rss()).await?;
        }
        Ok(())
    })
}

/// Runs one measurement between two `uptime` readings.
async fn section(title: &str, body: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    println!("## {title}\n");
    println!("load before: {}", uptime());
    let started = Instant::now();
    body.await.with_context(|| format!("section {title}"))?;
    println!(
        "\nload after:  {} (section took {:.1} s)\n",
        uptime(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn uptime() -> String {
    Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| {
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_string()
        })
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------
// Statistics

/// Nearest-rank percentile of `sorted` (ascending), in milliseconds.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

/// Latencies and counts of one benchmark cell.
#[derive(Default)]
struct Stats {
    latencies: Vec<Duration>,
    errors: u64,
    elapsed: Duration,
    /// Operations that completed (for watch: events delivered).
    ops: u64,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.ops += other.ops;
    }

    fn finish(mut self, elapsed: Duration) -> Stats {
        self.latencies.sort_unstable();
        self.elapsed = elapsed;
        self
    }

    fn p(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies, p)
    }

    fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

// ---------------------------------------------------------------------------
// HTTPS client

/// A rustls client config trusting only the server's CA.
fn tls_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert?)?;
    }
    if roots.is_empty() {
        bail!("no certificate in {}", ca.display());
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One keep-alive HTTP/1.1 connection to the API server.
struct Client {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    token: String,
}

impl Client {
    async fn connect(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        token: &str,
    ) -> Result<Client> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(addr.ip().into());
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Client {
            sender,
            addr,
            token: token.to_string(),
        })
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.to_string())
            .header(header::ACCEPT, "application/json");
        if !self.token.is_empty() {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default()))?;
        self.sender.ready().await?;
        Ok(self.sender.send_request(req).await?)
    }

    /// A request whose whole body is read: (status, body).
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes)> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Like `request`, but a non-2xx answer is an error.
    async fn expect_ok(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes> {
        let (status, body) = self.request(method.clone(), path, body).await?;
        if !status.is_success() {
            bail!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }
}

/// A ConfigMap named `name` carrying about 1 KiB of data.
fn configmap(name: &str) -> Bytes {
    let payload = "x".repeat(1024);
    Bytes::from(format!(
        r#"{{"metadata":{{"name":"{name}"}},"data":{{"payload":"{payload}"}}}}"#
    ))
}

fn configmaps_path(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/configmaps")
}

// ---------------------------------------------------------------------------
// The server under test

/// A `drover server` process on a fresh data dir; SIGKILLed on drop.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    token: String,
    tls: Arc<rustls::ClientConfig>,
    /// From exec to the kubeconfig existing.
    to_kubeconfig: Duration,
    /// From exec to `/readyz` answering 200.
    to_ready: Duration,
}

impl Server {
    /// Starts a server (on etcd when `etcd` is given) and polls every 2 ms
    /// until the kubeconfig exists and then until `/readyz` answers 200.
    async fn start(etcd: Option<&str>) -> Result<Server> {
        let dir = tempfile::Builder::new().prefix("drover-bench-").tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_drover"));
        cmd.arg("server")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--port", "0", "--disable-agent"])
            .env("DROVER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(endpoint) = etcd {
            cmd.args(["--datastore-endpoint", endpoint]);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().context("starting drover server")?;
        let deadline = started + Duration::from_secs(60);
        let mut found: Option<(SocketAddr, String, Duration)> = None;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "drover server exited with {status}; log:\n{}",
                    log_text(dir.path())
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "drover server not ready after 60 s; log:\n{}",
                    log_text(dir.path())
                );
            }
            if found.is_none() {
                found = read_kubeconfig(&kubeconfig)
                    .map(|(addr, token)| (addr, token, started.elapsed()));
            }
            if let Some((addr, token, to_kubeconfig)) = &found {
                if let Ok(tls) = tls_config(&dir.path().join("tls/ca.crt")) {
                    if readyz(*addr, tls.clone()).await {
                        let to_ready = started.elapsed();
                        return Ok(Server {
                            child,
                            addr: *addr,
                            token: token.clone(),
                            tls,
                            to_kubeconfig: *to_kubeconfig,
                            to_ready,
                            dir,
                        });
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn client(&self) -> Result<Client> {
        Client::connect(self.addr, self.tls.clone(), &self.token).await
    }

    /// `count` clients, connected concurrently.
    async fn clients(&self, count: usize) -> Result<Vec<Client>> {
        let mut set = JoinSet::new();
        for _ in 0..count {
            let (addr, tls, token) = (self.addr, self.tls.clone(), self.token.clone());
            set.spawn(async move { Client::connect(addr, tls, &token).await });
        }
        let mut clients = Vec::with_capacity(count);
        while let Some(c) = set.join_next().await {
            clients.push(c??);
        }
        Ok(clients)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

/// (address, token) once the kubeconfig has both lines.
fn read_kubeconfig(path: &Path) -> Option<(SocketAddr, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty())
    };
    let server = field("server:")?;
    let token = field("token:")?;
    let addr = server
        .strip_prefix("https://")?
        .trim_end_matches('/')
        .parse()
        .ok()?;
    Some((addr, token))
}

async fn readyz(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> bool {
    let Ok(mut client) = Client::connect(addr, tls, "").await else {
        return false;
    };
    matches!(
        client.request(Method::GET, "/readyz", None).await,
        Ok((StatusCode::OK, _))
    )
}

/// (VmRSS, VmHWM) of a process, in KiB.
fn rss_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |key: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))?;
        Ok(line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// (apparent bytes, allocated bytes) of everything under `path`.
fn disk_usage(path: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    let mut stack: Vec<PathBuf> = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p)?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&p)? {
                stack.push(entry?.path());
            }
        } else {
            total.0 += meta.len();
            total.1 += meta.blocks() * 512;
        }
    }
    Ok(total)
}

// ---------------------------------------------------------------------------
// 1. Cold start

async fn cold_start() -> Result<()> {
    let runs = env_number("DROVER_BENCH_COLD_STARTS", 20) as usize;
    let mut to_kubeconfig = Vec::new();
    let mut to_ready = Vec::new();
    for _ in 0..runs {
        let server = Server::start(None).await?;
        to_kubeconfig.push(server.to_kubeconfig);
        to_ready.push(server.to_ready);
        drop(server);
    }
    to_kubeconfig.sort_unstable();
    to_ready.sort_unstable();
    println!("\n{runs} starts on a fresh empty data dir, embedded store, polled every 2 ms.\n");
    println!("| milestone (from exec) | min ms | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in [
        ("kubeconfig written", &to_kubeconfig),
        ("/readyz 200 over HTTPS", &to_ready),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
            percentile_ms(v, 0.0),
            percentile_ms(v, 50.0),
            percentile_ms(v, 99.0),
            percentile_ms(v, 100.0)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. Idle RSS

async fn idle_rss() -> Result<()> {
    let etcd = EtcdProcess::start().map_err(|e| anyhow!(e))?;
    println!("\nVmRSS of the drover process after start + 2 s idle (no clients).\n");
    println!("| backend | VmRSS MiB | VmHWM MiB |");
    println!("|---|---:|---:|");
    for (name, endpoint) in [("embedded", None), ("etcd", Some(etcd.endpoint()))] {
        let server = Server::start(endpoint).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (rss, hwm) = rss_kib(server.pid())?;
        println!("| {name} | {:.1} | {:.1} |", mib(rss), mib(hwm));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. API latency and throughput

/// Builds a worker's next request (method, path, body) from the worker's
/// index and its request counter.
type MakeRequest = Arc<dyn Fn(usize, u64) -> (Method, String, Option<Bytes>) + Send + Sync>;

/// Runs `clients` workers for `duration`, each sending the request `make`
/// builds (from worker index and a per-worker counter) back to back.
async fn run_cell(
    server: &Server,
    clients: usize,
    duration: Duration,
    make: MakeRequest,
) -> Result<Stats> {
    let connected = server.clients(clients).await?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut set = JoinSet::new();
    for (worker, mut client) in connected.into_iter().enumerate() {
        let make = make.clone();
        set.spawn(async move {
            let mut stats = Stats::default();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let (method, path, body) = make(worker, i);
                i += 1;
                let t = Instant::now();
                match client.request(method, &path, body).await {
                    Ok((status, _)) if status.is_success() => {
                        stats.latencies.push(t.elapsed());
                        stats.ops += 1;
                    }
                    _ => stats.errors += 1,
                }
            }
            stats
        });
    }
    let mut total = Stats::default();
    while let Some(s) = set.join_next().await {
        total.merge(s?);
    }
    Ok(total.finish(started.elapsed()))
}

async fn bench_create(server: &Server, clients: usize, duration: Duration) -> Result<Stats> {
    let ns = format!("bench-create-{clients}");
    create_namespace(server, &ns).await?;
    let path = configmaps_path(&ns);
    run_cell(
        server,
        clients,
        duration,
        Arc::new(move |w, i| {
            (
                Method::POST,
                path.clone(),
                Some(configmap(&format!("c-{w}-{i}"))),
            )
        }),
    )
    .await
}

async fn bench_get(server: &Server, clients: usize, duration: Duration) -> Result<Stats> {
    let path = configmaps_path("bench-list");
    run_cell(
        server,
        clients,
        duration,
        Arc::new(move |w, i| {
            (
                Method::GET,
                format!("{path}/l-{}", (w as u64 + i) % LIST_SIZE as u64),
                None,
            )
        }),
    )
    .await
}

async fn bench_list(server: &Server, clients: usize, duration: Duration) -> Result<Stats> {
    let path = configmaps_path("bench-list");
    run_cell(
        server,
        clients,
        duration,
        Arc::new(move |_, _| (Method::GET, path.clone(), None)),
    )
    .await
}

/// What one watch cell measured.
struct WatchResult {
    /// From the write's request being sent to its event arriving.
    from_sent: Stats,
    /// From the write's response arriving to its event arriving (0 when
    /// the event beat the response).
    from_response: Stats,
    /// Events that arrived before the write's response did.
    early: u64,
    /// Events that never arrived (within 10 s of the previous one).
    missing: u64,
}

/// `watchers` clients watch one namespace while a single writer creates
/// `writes` ConfigMaps back to back (not waiting for events). Latencies are
/// over every (write, watcher) pair; throughput is events delivered per
/// second over all watchers, from the first write to the last event.
async fn bench_watch(server: &Server, watchers: usize, writes: usize) -> Result<WatchResult> {
    let ns = format!("bench-watch-{watchers}");
    create_namespace(server, &ns).await?;
    let path = configmaps_path(&ns);
    let mut writer = server.client().await?;
    let listed: serde_json::Value =
        serde_json::from_slice(&writer.expect_ok(Method::GET, &path, None).await?)?;
    let rv = listed["metadata"]["resourceVersion"]
        .as_str()
        .ok_or_else(|| anyhow!("list without resourceVersion"))?
        .to_string();

    let mut set = JoinSet::new();
    for mut client in server.clients(watchers).await? {
        let resp = client
            .send(
                Method::GET,
                &format!("{path}?watch=true&resourceVersion={rv}"),
                None,
            )
            .await?;
        if resp.status() != StatusCode::OK {
            bail!("watch: {}", resp.status());
        }
        set.spawn(async move { receive_events(client, resp.into_body(), writes).await });
    }

    let started = Instant::now();
    let mut sent = Vec::with_capacity(writes);
    let mut responded = Vec::with_capacity(writes);
    for i in 0..writes {
        sent.push(Instant::now());
        writer
            .expect_ok(Method::POST, &path, Some(configmap(&format!("w-{i}"))))
            .await?;
        responded.push(Instant::now());
    }

    let (mut from_sent, mut from_response) = (Stats::default(), Stats::default());
    let mut early = 0;
    let mut last = started;
    while let Some(received) = set.join_next().await {
        for (i, at) in received?? {
            let (Some(&sent), Some(&resp)) = (sent.get(i), responded.get(i)) else {
                continue;
            };
            if at < resp {
                early += 1;
            }
            from_sent.latencies.push(at.saturating_duration_since(sent));
            from_response
                .latencies
                .push(at.saturating_duration_since(resp));
            from_sent.ops += 1;
            from_response.ops += 1;
            last = last.max(at);
        }
    }
    let missing = (watchers * writes) as u64 - from_sent.ops;
    let elapsed = last - started;
    Ok(WatchResult {
        from_sent: from_sent.finish(elapsed),
        from_response: from_response.finish(elapsed),
        early,
        missing,
    })
}

/// Reads watch events until `count` ADDED events named `w-N` arrived (or
/// none came for 10 s);
/// returns (N, arrival time) for each. Lines are scanned for the name, not
/// fully parsed, so the client spends little of the shared CPU.
async fn receive_events(
    _client: Client,
    mut body: hyper::body::Incoming,
    count: usize,
) -> Result<Vec<(usize, Instant)>> {
    let mut received = Vec::with_capacity(count);
    let mut buf: Vec<u8> = Vec::new();
    while received.len() < count {
        // A watcher that hears nothing for 10 s gives up; the rest count as missing.
        let Ok(frame) = tokio::time::timeout(Duration::from_secs(10), body.frame()).await else {
            break;
        };
        let frame =
            frame.ok_or_else(|| anyhow!("watch ended after {} events", received.len()))??;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let at = Instant::now();
        buf.extend_from_slice(&data);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if !line.starts_with(r#"{"type":"ADDED""#) {
                continue;
            }
            if let Some(n) = line
                .split(r#""name":"w-"#)
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .and_then(|n| n.parse().ok())
            {
                received.push((n, at));
            }
        }
    }
    Ok(received)
}

async fn create_namespace(server: &Server, name: &str) -> Result<()> {
    let mut client = server.client().await?;
    let body = Bytes::from(format!(r#"{{"metadata":{{"name":"{name}"}}}}"#));
    let (status, text) = client
        .request(Method::POST, "/api/v1/namespaces", Some(body))
        .await?;
    if !(status.is_success() || status == StatusCode::CONFLICT) {
        bail!(
            "creating namespace {name}: {status}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    Ok(())
}

/// Creates `count` ConfigMaps named `{prefix}{i}` in `ns` with `workers`
/// concurrent clients.
async fn create_many(
    server: &Server,
    ns: &str,
    prefix: &str,
    count: u64,
    workers: usize,
) -> Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let path = Arc::new(configmaps_path(ns));
    let prefix = Arc::new(prefix.to_string());
    let mut set = JoinSet::new();
    for mut client in server.clients(workers).await? {
        let (next, path, prefix) = (next.clone(), path.clone(), prefix.clone());
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                client
                    .expect_ok(
                        Method::POST,
                        &path,
                        Some(configmap(&format!("{prefix}{i}"))),
                    )
                    .await?;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

async fn api_latency() -> Result<()> {
    let duration = Duration::from_secs_f64(env_number("DROVER_BENCH_SECONDS", 3) as f64);
    let writes = env_number("DROVER_BENCH_WATCH_WRITES", 500) as usize;
    let etcd = EtcdProcess::start().map_err(|e| anyhow!(e))?;
    let servers = [
        ("embedded", Server::start(None).await?),
        ("etcd", Server::start(Some(etcd.endpoint())).await?),
    ];
    for (_, server) in &servers {
        create_namespace(server, "bench-list").await?;
        create_many(server, "bench-list", "l-", LIST_SIZE as u64, 8).await?;
    }
    println!(
        "\nBoth servers run side by side (etcd {} on loopback); cells alternate between them.",
        etcd.endpoint()
    );
    println!("{} s per cell; `get` reads one of {LIST_SIZE} ConfigMaps, `list` lists a namespace of {LIST_SIZE} ConfigMaps of ~1 KiB,", duration.as_secs_f64());
    println!("`create` POSTs ~1 KiB ConfigMaps. Latency per request; errors = non-2xx or failed requests.");

    type Bench = for<'a> fn(
        &'a Server,
        usize,
        Duration,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Stats>> + 'a>,
    >;
    let benches: [(&str, Bench); 3] = [
        ("create", |s, c, d| Box::pin(bench_create(s, c, d))),
        ("get", |s, c, d| Box::pin(bench_get(s, c, d))),
        ("list", |s, c, d| Box::pin(bench_list(s, c, d))),
    ];
    for (op, bench) in benches {
        println!("\n### {op}\n");
        println!("| clients | embedded p50 ms | embedded p99 ms | embedded req/s | etcd p50 ms | etcd p99 ms | etcd req/s | errors (emb/etcd) |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
        for clients in CONCURRENCY {
            let mut row = Vec::new();
            for (_, server) in &servers {
                row.push(bench(server, clients, duration).await?);
            }
            let (a, b) = (&row[0], &row[1]);
            println!(
                "| {clients} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0} | {}/{} |",
                a.p(50.0),
                a.p(99.0),
                a.per_second(),
                b.p(50.0),
                b.p(99.0),
                b.per_second(),
                a.errors,
                b.errors
            );
        }
    }

    println!("\n### watch\n");
    println!("N watchers on one namespace; one writer creates {writes} ConfigMaps back to back (not waiting for events).");
    println!("Latency over every (write, watcher) pair: `sent→event` from the POST being sent, `resp→event` from its response");
    println!("arriving (0 when the event came first; `early` = share of events that beat the response). Rate: events delivered/s.\n");
    println!("| watchers | backend | sent→event p50 ms | sent→event p99 ms | resp→event p50 ms | resp→event p99 ms | early | events/s | missing |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for watchers in CONCURRENCY {
        for (name, server) in &servers {
            let r = bench_watch(server, watchers, writes).await?;
            println!(
                "| {watchers} | {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0}% | {:.0} | {} |",
                r.from_sent.p(50.0),
                r.from_sent.p(99.0),
                r.from_response.p(50.0),
                r.from_response.p(99.0),
                100.0 * r.early as f64 / r.from_sent.ops.max(1) as f64,
                r.from_sent.per_second(),
                r.missing
            );
        }
    }

    println!("\nRSS after the API section:");
    for (name, server) in &servers {
        let (rss, hwm) = rss_kib(server.pid())?;
        println!(
            "- drover on {name}: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
            mib(rss),
            mib(hwm)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 4. RSS and disk with many ConfigMaps

async fn bulk_rss() -> Result<()> {
    let count = env_number("DROVER_BENCH_BULK", 10_000);
    let workers = 64;
    let server = Server::start(None).await?;
    create_namespace(&server, "bulk").await?;
    let (rss_before, _) = rss_kib(server.pid())?;
    let (disk_before, _) = disk_usage(&server.dir.path().join("db"))?;
    let started = Instant::now();
    create_many(&server, "bulk", "b-", count, workers).await?;
    let took = started.elapsed();
    let (rss_after, hwm_after) = rss_kib(server.pid())?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_settled, _) = rss_kib(server.pid())?;
    let (apparent, allocated) = disk_usage(&server.dir.path().join("db"))?;
    let (all_apparent, _) = disk_usage(server.dir.path())?;

    println!("\nEmbedded store; {count} ConfigMaps of ~1 KiB created by {workers} concurrent clients in {:.2} s ({:.0}/s).\n", took.as_secs_f64(), count as f64 / took.as_secs_f64());
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| VmRSS before (empty, just started) | {:.1} MiB |",
        mib(rss_before)
    );
    println!(
        "| VmRSS right after the creates | {:.1} MiB |",
        mib(rss_after)
    );
    println!(
        "| VmRSS after 2 s more idle | {:.1} MiB |",
        mib(rss_settled)
    );
    println!("| VmHWM (peak) | {:.1} MiB |", mib(hwm_after));
    println!(
        "| store dir (db/) before, apparent | {:.2} MiB |",
        disk_before as f64 / 1048576.0
    );
    println!(
        "| store dir (db/) after, apparent | {:.2} MiB |",
        apparent as f64 / 1048576.0
    );
    println!(
        "| store dir (db/) after, allocated | {:.2} MiB |",
        allocated as f64 / 1048576.0
    );
    println!(
        "| whole data dir after, apparent | {:.2} MiB |",
        all_apparent as f64 / 1048576.0
    );
    Ok(())
}
