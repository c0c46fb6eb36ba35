//! End to end: Services through drover's own service proxy and cluster DNS
//! with real pods (the process runtime running `drover echo-server`, which
//! answers with its pod's name), driven by kubectl 1.32 — balancing per
//! request, NodePort, UDP, h2c, session affinity, DNS names from a pod,
//! readiness taking an endpoint out of rotation, and a rolling update under
//! continuous traffic with no failed request.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(120);

fn echo_binary() -> &'static str {
    env!("CARGO_BIN_EXE_drover")
}

/// A Deployment of `drover echo-server` pods, ready when they answer HTTP.
fn echo_deployment(name: &str, replicas: u32, extra_spec: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  strategy: {{rollingUpdate: {{maxUnavailable: 0, maxSurge: 1}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: echo
        image: unused
        command: ["{binary}", echo-server, --http, "8080", --udp, "5353"]
        readinessProbe:
          httpGet: {{path: /, port: 8080}}
          periodSeconds: 1
{extra_spec}"#,
        binary = echo_binary()
    )
}

fn ready_pods(s: &Server, app: &str) -> Vec<Value> {
    let list = s.json(&["get", "pods", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p["metadata"]["deletionTimestamp"].is_null()
                && p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .collect()
}

fn names(pods: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

fn cluster_ip(s: &Server, service: &str) -> String {
    let svc = s.json(&["get", "service", service]);
    svc["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_else(|| panic!("service {service} has no clusterIP: {svc}"))
        .to_string()
}

/// Waits until the Service's EndpointSlices list exactly `count` ready
/// addresses.
fn wait_for_endpoints(s: &Server, service: &str, count: usize) {
    s.wait(
        &format!("{count} ready endpoints of {service}"),
        TIMEOUT,
        || {
            let slices = s.json(&[
                "get",
                "endpointslices",
                "-l",
                &format!("kubernetes.io/service-name={service}"),
            ]);
            let ready = slices["items"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                .filter(|e| e["conditions"]["ready"] != false)
                .count();
            ready == count
        },
    );
}

/// An HTTP/1.1 keep-alive connection (the echo server always sends a
/// Content-Length).
struct Http {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Http {
    fn connect(at: &str) -> std::io::Result<Http> {
        let addr: SocketAddr = at.parse().expect("an ip:port");
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Http {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// One GET; returns (status, body).
    fn get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        // One write: pieces would wait on Nagle and delayed ACKs.
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: e2e\r\n\r\n");
        self.writer.write_all(request.as_bytes())?;
        let mut status_line = String::new();
        if self.reader.read_line(&mut status_line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).trim().to_string()))
    }
}

/// One request on a fresh connection.
fn get_once(at: &str) -> std::io::Result<(u16, String)> {
    Http::connect(at)?.get("/")
}

#[test]
fn services_balance_resolve_and_reach_from_host_and_pods() {
    let s = Server::start_with_agent(&[]);
    s.ok_stdin(&["apply", "-f", "-"], &echo_deployment("web", 3, ""));
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: echo-udp, port: 5353, targetPort: 5353, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: web-grpc}
spec:
  selector: {app: web}
  ports:
  - {name: grpc, port: 9090, targetPort: 8080, appProtocol: kubernetes.io/h2c}
---
apiVersion: v1
kind: Service
metadata: {name: web-sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports:
  - {name: tcp, port: 80, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {name: http, port: 8080}
"#,
    );
    s.wait("3 web pods Ready", TIMEOUT, || {
        ready_pods(&s, "web").len() == 3
    });
    let pods = names(&ready_pods(&s, "web"));
    wait_for_endpoints(&s, "web", 3);
    let ip = cluster_ip(&s, "web");

    // Per-request balancing over one keep-alive connection: 10,000
    // requests spread evenly (±10%) over the 3 replicas.
    let front = format!("{ip}:80");
    let mut http = None;
    s.wait("the ClusterIP answers", TIMEOUT, || {
        http = Http::connect(&front)
            .ok()
            .filter(|_| get_once(&front).is_ok_and(|(code, _)| code == 200));
        http.is_some()
    });
    let mut http = http.unwrap();
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..10_000 {
        let (code, who) = http
            .get("/")
            .unwrap_or_else(|e| panic!("request {i} through {front}: {e}"));
        assert_eq!(code, 200, "request {i} answered by {who}");
        *counts.entry(who).or_default() += 1;
    }
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        pods,
        "every replica and only them answer: {counts:?}"
    );
    for (pod, n) in &counts {
        assert!(
            (3000..=3667).contains(n),
            "{pod} got {n} of 10,000 requests, outside 3,333 ±10%: {counts:?}"
        );
    }

    // NodePort from the host.
    let svc = s.json(&["get", "service", "web"]);
    let node_port = svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .unwrap_or_else(|| panic!("no nodePort allocated: {svc}"));
    assert!((30000..=32767).contains(&node_port), "{svc}");
    let (code, who) = get_once(&format!("127.0.0.1:{node_port}")).expect("NodePort answers");
    assert_eq!(code, 200);
    assert!(pods.contains(&who), "{who} is not one of {pods:?}");

    // UDP through the ClusterIP.
    let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut reply = String::new();
    s.wait("a UDP answer through the ClusterIP", TIMEOUT, || {
        udp.send_to(b"ping", format!("{ip}:5353")).unwrap();
        let mut buffer = [0u8; 512];
        match udp.recv_from(&mut buffer) {
            Ok((n, _)) => {
                reply = String::from_utf8_lossy(&buffer[..n]).to_string();
                true
            }
            Err(_) => false,
        }
    });
    let (who, payload) = reply.split_once(' ').unwrap_or_default();
    assert!(
        pods.contains(&who.to_string()) && payload == "ping",
        "{reply:?}"
    );

    // h2c: one HTTP/2 connection, its requests spread across replicas.
    let grpc = format!("{}:9090", cluster_ip(&s, "web-grpc"));
    let seen = h2c_backends(&grpc, 300);
    assert!(
        seen.len() == 3 && seen.values().all(|n| *n >= 30),
        "300 requests on one HTTP/2 connection should reach every replica: {seen:?}"
    );

    // ClientIP affinity: new connections from this host stick to one pod.
    let sticky = format!("{}:80", cluster_ip(&s, "web-sticky"));
    let mut stuck: BTreeMap<String, u32> = BTreeMap::new();
    s.wait("web-sticky answers", TIMEOUT, || get_once(&sticky).is_ok());
    for _ in 0..30 {
        let (_, who) = get_once(&sticky).expect("web-sticky answers");
        *stuck.entry(who).or_default() += 1;
    }
    assert_eq!(stuck.len(), 1, "sessionAffinity ClientIP: {stuck:?}");

    // Another Deployment reaches web by its name through cluster DNS.
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: client}
spec:
  replicas: 1
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
      containers:
      - {name: sh, image: unused, command: [sleep, "3600"]}
"#,
    );
    s.wait("the client pod Ready", TIMEOUT, || {
        ready_pods(&s, "client").len() == 1
    });
    let resolv = s.ok(&["exec", "deploy/client", "--", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local")
            && resolv.contains("options ndots:5"),
        "{resolv}"
    );
    let script = "import socket, urllib.request\n\
        print(urllib.request.urlopen('http://web/', timeout=10).read().decode().strip())\n\
        print(socket.gethostbyname('web.default.svc.cluster.local'))\n\
        print(sorted(set(a[4][0] for a in socket.getaddrinfo('web-headless', 8080, proto=socket.IPPROTO_TCP))))\n";
    let out = s.ok(&["exec", "deploy/client", "--", "python3", "-c", script]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(pods.contains(&lines[0].to_string()), "{out}");
    assert_eq!(lines[1], ip, "{out}");
    let mut pod_ips: Vec<String> = ready_pods(&s, "web")
        .iter()
        .map(|p| format!("'{}'", p["status"]["podIP"].as_str().unwrap_or_default()))
        .collect();
    pod_ips.sort();
    assert_eq!(lines[2], format!("[{}]", pod_ips.join(", ")), "{out}");

    // The proxy's metrics, per service and pod-template-hash.
    let (code, metrics) = s.curl("GET", "/metrics", Some(&s.token), None, None);
    assert_eq!(code, 200);
    let requests: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("drover_proxy_requests_total{")
                && l.contains("service=\"web\"")
                && l.contains("pod_template_hash=\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        requests >= 10_000.0,
        "drover_proxy_requests_total of web should count the 10,000 requests, got {requests}:\n{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("drover_proxy"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Sends `n` concurrent requests over one h2c connection; counts answers
/// per backend.
fn h2c_backends(at: &str, n: usize) -> BTreeMap<String, u32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(at)
            .await
            .unwrap_or_else(|e| panic!("connecting to {at}: {e}"));
        let (sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .expect("h2c handshake");
        tokio::spawn(connection);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let mut sender = sender.clone();
            let uri = format!("http://{at}/");
            tasks.spawn(async move {
                sender.ready().await.expect("h2 connection ready");
                let request = hyper::Request::get(uri)
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap();
                let response = sender.send_request(request).await.expect("h2c response");
                assert_eq!(response.status(), 200);
                let body = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .expect("h2c body")
                    .to_bytes();
                String::from_utf8_lossy(&body).trim().to_string()
            });
        }
        let mut seen = BTreeMap::new();
        while let Some(who) = tasks.join_next().await {
            *seen.entry(who.unwrap()).or_default() += 1;
        }
        seen
    })
}

#[test]
fn readiness_and_rolling_updates_keep_traffic_on_ready_pods() {
    let s = Server::start_with_agent(&[]);
    let extra = r#"        lifecycle:
          preStop: {sleep: {seconds: 2}}
        env: [{name: VERSION, value: "1"}]
"#;
    let deployment = echo_deployment("api", 3, extra).replace(
        "          periodSeconds: 1\n",
        "          periodSeconds: 1\n        volumeMounts: [{name: flags, mountPath: /flags}]\n",
    ) + "      volumes: [{name: flags, emptyDir: {}}]\n";
    // Readiness also fails while /flags/off exists.
    let deployment = deployment.replace(
        "          httpGet: {path: /, port: 8080}\n",
        "          exec: {command: [sh, -c, 'test ! -e /flags/off']}\n",
    );
    s.ok_stdin(&["apply", "-f", "-"], &deployment);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports:
  - {name: http, port: 80, targetPort: 8080}
"#,
    );
    s.wait("3 api pods Ready", TIMEOUT, || {
        ready_pods(&s, "api").len() == 3
    });
    wait_for_endpoints(&s, "api", 3);
    let front = format!("{}:80", cluster_ip(&s, "api"));
    s.wait("the api ClusterIP answers", TIMEOUT, || {
        get_once(&front).is_ok_and(|(c, _)| c == 200)
    });

    // A readiness flip takes the pod out of rotation within a second of
    // the API showing it not ready.
    let victim = names(&ready_pods(&s, "api"))[0].clone();
    s.ok(&["exec", &victim, "--", "touch", "/flags/off"]);
    s.wait(&format!("{victim} not Ready"), TIMEOUT, || {
        !names(&ready_pods(&s, "api")).contains(&victim)
    });
    let flipped = Instant::now();
    let mut http = Http::connect(&front).expect("connecting to the api ClusterIP");
    let mut last_seen = None;
    while flipped.elapsed() < Duration::from_secs(1) {
        let (_, who) = http
            .get("/")
            .expect("a request while the pod turns unready");
        if who == victim {
            last_seen = Some(flipped.elapsed());
        }
    }
    for i in 0..300 {
        let (code, who) = http.get("/").expect("a request after the flip");
        assert_eq!(code, 200);
        assert_ne!(
            who, victim,
            "request {i} went to {victim} more than 1 s after it turned unready (last seen {last_seen:?} after)"
        );
    }
    s.ok(&["exec", &victim, "--", "rm", "/flags/off"]);
    s.wait(&format!("{victim} back in rotation"), TIMEOUT, || {
        (0..30).any(|_| http.get("/").is_ok_and(|(_, who)| who == victim))
    });

    // A rolling update under continuous traffic: not one failed request.
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        let front = front.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed, mut seen) = (0u32, Vec::new(), BTreeMap::new());
            let mut http = Http::connect(&front).ok();
            while !stop.load(Ordering::Relaxed) {
                let result = match http.as_mut() {
                    Some(h) => h.get("/"),
                    None => Err(std::io::Error::other("not connected")),
                };
                match result {
                    Ok((200, who)) => {
                        ok += 1;
                        *seen.entry(who).or_insert(0u32) += 1;
                    }
                    Ok((code, who)) => failed.push(format!("{code} from {who}")),
                    Err(e) => {
                        failed.push(e.to_string());
                        http = Http::connect(&front).ok();
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (ok, failed, seen)
        })
    };
    let before = names(&ready_pods(&s, "api"));
    s.ok(&["set", "env", "deployment/api", "VERSION=2"]);
    s.ok(&["rollout", "status", "deployment/api", "--timeout=180s"]);
    s.wait("the old pods gone", TIMEOUT, || {
        let list = s.json(&["get", "pods", "-l", "app=api"]);
        list["items"].as_array().is_some_and(|items| {
            items.len() == 3
                && items.iter().all(|p| {
                    !before.contains(&p["metadata"]["name"].as_str().unwrap_or("").to_string())
                })
        })
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, seen) = client.join().unwrap();
    let after = names(&ready_pods(&s, "api"));
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rolling update: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(10)]
    );
    assert!(
        after.iter().all(|p| seen.contains_key(p)),
        "the new pods {after:?} should have answered: {seen:?}"
    );
}
