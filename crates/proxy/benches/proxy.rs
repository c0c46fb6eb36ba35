//! Service proxy benchmark: wrk against a hyper backend directly, through drover's proxy, and
//! through haproxy, at saturation and paced at ~1,000 req/s; then the proxy's memory and apply()
//! time with 1,000 services x 10 endpoints (in a child process, so nothing else is in its RSS).
//!
//! Run: `cargo bench -p proxy` (needs `wrk` and `haproxy` on PATH; BENCH_SECONDS sets each run's length,
//! BENCH_ROUNDS how many interleaved rounds the medians are taken over).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use proxy::{
    AppProtocol, Endpoint, Protocol, Proxy, ProxyTable, Scope, ServicePort, ServicePortKey,
};

const RSS_CHILD_ENV: &str = "DROVER_PROXY_BENCH_RSS_CHILD";

fn main() {
    if std::env::var_os(RSS_CHILD_ENV).is_some() {
        rss_child();
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` does not, and must not start wrk.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("the proxy benchmark runs with `cargo bench -p proxy`");
        return;
    }
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    // Threads of the proxy's runtime and haproxy's nbthread alike (BENCH_PROXY_THREADS, default 1:
    // on this 2-core machine wrk and the backend already run two threads each).
    let proxy_threads: usize = std::env::var("BENCH_PROXY_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(proxy_threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The backend has its own runtime (as a pod would be its own process), so the proxy and
    // haproxy each get their own two threads next to it.
    let backend_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("backend runtime");
    let backend = backend_runtime.block_on(http_backend());
    let proxy = Proxy::with_workers(proxy_threads);
    let proxy_addr = free_addr();
    let failures = runtime.block_on(proxy.apply(&ProxyTable {
        ports: vec![ServicePort {
            key: ServicePortKey {
                namespace: "bench".into(),
                service: "web".into(),
                port: "http".into(),
                protocol: Protocol::Tcp,
            },
            scope: Scope::Cluster,
            frontends: vec![proxy_addr],
            app: AppProtocol::Http1,
            session_affinity: None,
            endpoints: vec![Endpoint {
                addr: backend,
                pod: Some("web-0".into()),
                pod_template_hash: None,
                node: None,
            }],
        }],
    }));
    assert!(failures.is_empty(), "proxy bind failed: {failures:?}");
    let haproxy = Haproxy::start(backend, proxy_threads);

    println!(
        "# service proxy: wrk, {seconds} s per run, proxy and haproxy on {proxy_threads} thread(s), load average {}",
        load_average()
    );
    let targets = [
        ("direct", backend),
        ("drover proxy", proxy_addr),
        ("haproxy", haproxy.addr),
    ];
    // Rounds interleave the three targets, so a burst of load from elsewhere on the machine hits
    // all of them alike; each figure below is the median of its rounds.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let mut results: BTreeMap<(&str, &str), WrkResult> = BTreeMap::new();
    let pacing = write_pacing_script();
    for (mode, args) in [
        ("saturation", vec!["-t2".to_string(), "-c50".to_string()]),
        (
            "1000 req/s",
            vec![
                "-t2".to_string(),
                "-c10".to_string(),
                "-s".to_string(),
                pacing.display().to_string(),
            ],
        ),
    ] {
        let mut runs: BTreeMap<&str, Vec<WrkResult>> = BTreeMap::new();
        for round in 1..=rounds {
            for (name, addr) in targets {
                // Warm up pools and connections, then measure.
                wrk(&args, addr, 1);
                let result = wrk(&args, addr, seconds);
                println!(
                    "{mode:>11} {name:>13} round {round}: {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms",
                    result.requests_per_second, result.p50_ms, result.p99_ms
                );
                runs.entry(name).or_default().push(result);
            }
        }
        for (name, runs) in runs {
            let median = |f: fn(&WrkResult) -> f64| {
                let mut v: Vec<f64> = runs.iter().map(f).collect();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let result = WrkResult {
                requests_per_second: median(|r| r.requests_per_second),
                p50_ms: median(|r| r.p50_ms),
                p99_ms: median(|r| r.p99_ms),
            };
            println!(
                "{mode:>11} {name:>13} median of {rounds}: {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms",
                result.requests_per_second, result.p50_ms, result.p99_ms
            );
            results.insert((mode, name), result);
        }
    }
    println!();
    for mode in ["saturation", "1000 req/s"] {
        let direct = &results[&(mode, "direct")];
        let ours = &results[&(mode, "drover proxy")];
        let theirs = &results[&(mode, "haproxy")];
        println!(
            "{mode:>11}: proxy/haproxy throughput {:.2}x; added p50/p99 vs direct: proxy {:.3}/{:.3} ms, haproxy {:.3}/{:.3} ms",
            ours.requests_per_second / theirs.requests_per_second,
            ours.p50_ms - direct.p50_ms,
            ours.p99_ms - direct.p99_ms,
            theirs.p50_ms - direct.p50_ms,
            theirs.p99_ms - direct.p99_ms,
        );
    }
    drop(haproxy);
    let _ = std::fs::remove_file(&pacing);

    println!();
    let output = Command::new(std::env::current_exe().expect("own path"))
        .env(RSS_CHILD_ENV, "1")
        .stderr(Stdio::inherit())
        .output()
        .expect("run the RSS child");
    print!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(output.status.success(), "RSS child failed");
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr")
}

async fn http_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|_request: Request<hyper::body::Incoming>| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"hello from the backend\n"),
                        )))
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

struct Haproxy {
    child: std::process::Child,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl Haproxy {
    fn start(backend: SocketAddr, threads: usize) -> Haproxy {
        let addr = free_addr();
        let dir = std::env::temp_dir().join(format!("drover-proxy-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("haproxy temp dir");
        let config = format!(
            "global\n  maxconn 4000\n  nbthread {threads}\n\
             defaults\n  mode http\n  option http-keep-alive\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend web\n  bind {addr}\n  default_backend pods\n\
             backend pods\n  http-reuse always\n  server web-0 {backend}\n"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .spawn()
            .expect("start haproxy (apt-get install haproxy)");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut child = child;
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("haproxy exited with {status} before listening on {addr}");
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen on {addr} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Haproxy { child, addr, dir }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// wrk has no rate option: each connection waits 10 ms after every response, so 10 connections
/// make ~1,000 req/s minus the response time.
fn write_pacing_script() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "drover-proxy-bench-pace-{}.lua",
        std::process::id()
    ));
    std::fs::write(&path, "function delay()\n  return 10\nend\n").expect("write wrk script");
    path
}

struct WrkResult {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn wrk(args: &[String], addr: SocketAddr, seconds: u64) -> WrkResult {
    let output = Command::new("wrk")
        .args(args)
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg(format!("http://{addr}/"))
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed: {text}");
    let field = |prefix: &str| -> &str {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in wrk output:\n{text}"))
            .trim()
    };
    if let Some(errors) = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        eprintln!("wrk against {addr}: {errors}");
    }
    WrkResult {
        requests_per_second: field("Requests/sec:").parse().expect("req/s"),
        p50_ms: millis(field("50%")),
        p99_ms: millis(field("99%")),
    }
}

/// wrk prints latencies as "812.00us", "1.20ms" or "1.01s".
fn millis(value: &str) -> f64 {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("latency {value:?}"));
    match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        _ => panic!("latency unit in {value:?}"),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// 1,000 Services (half HTTP, half opaque TCP) with 10 ready endpoints each, as the agent's informers would hold them.
fn synthetic_objects(services: usize, endpoints: usize) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut svcs = Vec::new();
    let mut slices = Vec::new();
    for i in 0..services {
        let name = format!("svc-{i}");
        let port_name = if i % 2 == 0 { "http" } else { "tcp" };
        let cluster_ip = Ipv4Addr::new(
            127,
            100 + (i / 65536) as u8,
            ((i / 256) % 256) as u8,
            (i % 256) as u8,
        );
        svcs.push(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "bench", "name": name},
                "spec": {"clusterIP": cluster_ip.to_string(), "clusterIPs": [cluster_ip.to_string()],
                         "ports": [{"name": port_name, "port": 80, "protocol": "TCP", "targetPort": 8080}]},
            }))
            .expect("service"),
        );
        let eps: Vec<serde_json::Value> = (0..endpoints)
            .map(|e| {
                let n = i * endpoints + e;
                serde_json::json!({
                    "addresses": [Ipv4Addr::new(10, 200 + (n / 65536) as u8, ((n / 256) % 256) as u8, (n % 256) as u8).to_string()],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "nodeName": "node-a",
                    "targetRef": {"kind": "Pod", "namespace": "bench", "name": format!("{name}-{e}")},
                })
            })
            .collect();
        slices.push(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "bench", "name": format!("{name}-x"),
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "ports": [{"name": port_name, "port": 8080, "protocol": "TCP"}],
                "endpoints": eps,
            }))
            .expect("slice"),
        );
    }
    (svcs, slices)
}

fn rss_child() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (services, endpoints) = (1000, 10);
    let start_kib = rss_kib();
    let (svcs, slices) = synthetic_objects(services, endpoints);
    let objects_kib = rss_kib();
    let hash = |_: &str, pod: &str| {
        Some(
            pod.rsplit_once('-')
                .map(|(p, _)| p)
                .unwrap_or(pod)
                .to_string(),
        )
    };
    let node_port_addresses = [IpAddr::V4(Ipv4Addr::UNSPECIFIED)];
    let inputs = proxy::TableInputs {
        services: &svcs,
        slices: &slices,
        pod_template_hash: &hash,
        node_name: "node-a",
        node_port_addresses: &node_port_addresses,
        skip_cluster_ips: &[],
    };
    let started = Instant::now();
    let table = proxy::build_table(&inputs);
    let build_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(table.ports.len(), services);
    let proxy = Proxy::new();
    let started = Instant::now();
    let failures = runtime.block_on(proxy.apply(&table));
    let first_apply_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert!(
        failures.is_empty(),
        "binding {} frontends failed: {:?}",
        failures.len(),
        failures.first()
    );
    let applied_kib = rss_kib();

    // Propagation inside the proxy: one endpoint turns not-ready; the table is rebuilt from the
    // objects and applied, as the agent does on an EndpointSlice event.
    let mut changing = slices.clone();
    let mut samples = Vec::new();
    for round in 0..200 {
        let endpoint = &mut changing[round % services].endpoints[0];
        let ready = round % 2 == 1;
        endpoint.conditions = Some(k8s_openapi::api::discovery::v1::EndpointConditions {
            ready: Some(ready),
            serving: Some(ready),
            terminating: Some(false),
        });
        let inputs = proxy::TableInputs {
            slices: &changing,
            ..inputs
        };
        let started = Instant::now();
        let table = proxy::build_table(&inputs);
        let failures = runtime.block_on(proxy.apply(&table));
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(failures.is_empty());
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "# {services} services x {endpoints} endpoints (half HTTP, half TCP), one listener each"
    );
    println!("VmRSS at start:                    {:>7} KiB", start_kib);
    println!(
        "after the API objects:             {:>7} KiB (+{} KiB)",
        objects_kib,
        objects_kib - start_kib
    );
    println!(
        "after build_table + apply:         {:>7} KiB (+{} KiB = the proxy's own memory)",
        applied_kib,
        applied_kib - objects_kib
    );
    println!("build_table: {build_ms:.1} ms; first apply (1,000 binds): {first_apply_ms:.1} ms");
    println!(
        "one endpoint turns not-ready -> build_table + apply of all 1,000 services: p50 {:.2} ms, p99 {:.2} ms",
        p(0.5),
        p(0.99)
    );
}
