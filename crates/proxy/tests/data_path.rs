//! The proxy's data path against real in-process backends on loopback: spreading, endpoint
//! removal, per-request HTTP balancing, UDP, affinity, no-endpoint behaviour and metrics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy::{
    AppProtocol, Endpoint, Protocol, Proxy, ProxyTable, Scope, ServicePort, ServicePortKey,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr")
}

fn service_port(
    name: &str,
    app: AppProtocol,
    frontend: SocketAddr,
    endpoints: &[SocketAddr],
    affinity: Option<Duration>,
) -> ServicePort {
    ServicePort {
        key: ServicePortKey {
            namespace: "default".into(),
            service: name.into(),
            port: "web".into(),
            protocol: if app == AppProtocol::Udp {
                Protocol::Udp
            } else {
                Protocol::Tcp
            },
        },
        scope: Scope::Cluster,
        frontends: vec![frontend],
        app,
        session_affinity: affinity,
        endpoints: endpoints
            .iter()
            .enumerate()
            .map(|(i, addr)| Endpoint {
                addr: *addr,
                pod: Some(format!("{name}-pod-{i}")),
                pod_template_hash: Some("abc123".into()),
                node: Some("node-a".into()),
            })
            .collect(),
    }
}

async fn apply(proxy: &Proxy, ports: Vec<ServicePort>) {
    let failures = proxy.apply(&ProxyTable { ports }).await;
    assert!(failures.is_empty(), "apply failed to bind: {failures:?}");
}

/// Binds a backend on a fresh loopback port and serves every accepted connection with `handler`
/// on its own task.
async fn spawn_backend<F, Fut>(what: &str, handler: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind {what} backend: {e}"));
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handler(stream));
        }
    });
    addr
}

/// Echoes what it reads until the peer closes.
async fn echo(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A TCP backend that greets each connection with its id byte, then echoes.
async fn tcp_backend(id: u8) -> SocketAddr {
    spawn_backend("tcp", move |mut stream| async move {
        if stream.write_all(&[id]).await.is_ok() {
            echo(&mut stream).await;
        }
    })
    .await
}

/// Connects through the proxy and reads the backend's id byte.
async fn tcp_greeting(frontend: SocketAddr) -> (TcpStream, u8) {
    let mut stream = TcpStream::connect(frontend)
        .await
        .expect("connect to the proxy");
    let mut id = [0u8; 1];
    stream
        .read_exact(&mut id)
        .await
        .expect("read the backend's greeting through the proxy");
    (stream, id[0])
}

/// An HTTP backend (HTTP/1.1 and HTTP/2) answering every request with its name after `delay`.
async fn http_backend(name: &'static str, delay: Duration) -> SocketAddr {
    spawn_backend("http", move |stream| async move {
        let service = hyper::service::service_fn(
            move |_request: Request<hyper::body::Incoming>| async move {
                tokio::time::sleep(delay).await;
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(name))))
            },
        );
        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
    .await
}

async fn http1_connection(
    frontend: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(frontend)
        .await
        .expect("connect to the proxy");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http/1.1 handshake with the proxy");
    tokio::spawn(connection);
    sender
}

async fn get(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>) -> (u16, String) {
    sender.ready().await.expect("connection ready");
    let request = Request::get("/")
        .header("host", "web")
        .body(Empty::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .expect("response from the proxy");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn assert_within(counts: &BTreeMap<String, usize>, total: usize, backends: usize, tolerance: f64) {
    assert_eq!(
        counts.len(),
        backends,
        "not every backend got traffic: {counts:?}"
    );
    let expected = total as f64 / backends as f64;
    for (backend, count) in counts {
        let deviation = (*count as f64 - expected).abs() / expected;
        assert!(
            deviation <= tolerance,
            "backend {backend} got {count} of {total}, more than {:.0}% off the even share: {counts:?}",
            tolerance * 100.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_spread_evenly_over_three_endpoints() {
    let backends = [
        tcp_backend(0).await,
        tcp_backend(1).await,
        tcp_backend(2).await,
    ];
    let frontend = free_addr();
    let proxy = Proxy::new();
    apply(
        &proxy,
        vec![service_port(
            "spread",
            AppProtocol::Tcp,
            frontend,
            &backends,
            None,
        )],
    )
    .await;

    let total = 3000;
    let mut counts = BTreeMap::new();
    for _ in 0..total {
        let (_, id) = tcp_greeting(frontend).await;
        *counts.entry(id.to_string()).or_insert(0) += 1;
    }
    assert_within(&counts, total, 3, 0.10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_endpoint_gets_no_new_connections_while_its_open_one_completes() {
    let backends = [
        tcp_backend(0).await,
        tcp_backend(1).await,
        tcp_backend(2).await,
    ];
    let frontend = free_addr();
    let proxy = Proxy::new();
    apply(
        &proxy,
        vec![service_port(
            "remove",
            AppProtocol::Tcp,
            frontend,
            &backends,
            None,
        )],
    )
    .await;

    let (mut in_flight, removed) = tcp_greeting(frontend).await;
    let remaining: Vec<SocketAddr> = backends
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as u8 != removed)
        .map(|(_, a)| *a)
        .collect();
    apply(
        &proxy,
        vec![service_port(
            "remove",
            AppProtocol::Tcp,
            frontend,
            &remaining,
            None,
        )],
    )
    .await;

    for attempt in 0..300 {
        let (_, id) = tcp_greeting(frontend).await;
        assert_ne!(
            id, removed,
            "connection {attempt} after apply went to the removed endpoint {removed}"
        );
    }
    in_flight
        .write_all(b"still here")
        .await
        .expect("write on the in-flight connection");
    let mut echo = [0u8; 10];
    in_flight
        .read_exact(&mut echo)
        .await
        .expect("the in-flight connection to the removed endpoint keeps working");
    assert_eq!(&echo, b"still here");
    // Half-close passes through: our FIN reaches the backend, whose close comes back as EOF.
    in_flight.shutdown().await.unwrap();
    let mut rest = Vec::new();
    in_flight
        .read_to_end(&mut rest)
        .await
        .expect("clean EOF after half-close");
    assert!(rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_keep_alive_requests_on_one_connection_spread_across_backends() {
    let backends = [
        http_backend("a", Duration::ZERO).await,
        http_backend("b", Duration::ZERO).await,
        http_backend("c", Duration::ZERO).await,
    ];
    let frontend = free_addr();
    let proxy = Proxy::new();
    apply(
        &proxy,
        vec![service_port(
            "h1",
            AppProtocol::Http1,
            frontend,
            &backends,
            None,
        )],
    )
    .await;

    let mut sender = http1_connection(frontend).await;
    let total = 3000;
    let mut counts = BTreeMap::new();
    for _ in 0..total {
        let (status, body) = get(&mut sender).await;
        assert_eq!(status, 200, "body {body}");
        *counts.entry(body).or_insert(0) += 1;
    }
    // Per-request balancing over one connection: every backend gets a real share (peak-EWMA
    // follows latency, so the split is not exactly even).
    for (backend, count) in &counts {
        assert!(
            *count >= total / 10,
            "backend {backend} got only {count} of {total}: {counts:?}"
        );
    }
    assert_eq!(
        counts.len(),
        3,
        "one keep-alive connection reached only {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoint_removed_by_apply_gets_no_new_requests_on_an_open_connection() {
    let backends = [
        http_backend("a", Duration::ZERO).await,
        http_backend("b", Duration::ZERO).await,
        http_backend("c", Duration::ZERO).await,
    ];
    let frontend = free_addr();
    let proxy = Proxy::new();
    apply(
        &proxy,
        vec![service_port(
            "h1-remove",
            AppProtocol::Http1,
            frontend,
            &backends,
            None,
        )],
    )
    .await;
    let mut sender = http1_connection(frontend).await;
    for _ in 0..30 {
        assert_eq!(get(&mut sender).await.0, 200);
    }
    // "b" goes away; the client's keep-alive connection to the proxy stays.
    apply(
        &proxy,
        vec![service_port(
            "h1-remove",
            AppProtocol::Http1,
            frontend,
            &[backends[0], backends[2]],
            None,
        )],
    )
    .await;
    let mut counts = BTreeMap::new();
    for attempt in 0..300 {
        let (status, body) = get(&mut sender).await;
        assert_eq!(status, 200, "request {attempt}: {body}");
        assert_ne!(
            body, "b",
            "request {attempt} after apply went to the removed endpoint"
        );
        *counts.entry(body).or_insert(0) += 1;
    }
    assert_eq!(
        counts.len(),
        2,
        "the remaining endpoints should both serve: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_concurrent_streams_on_one_connection_spread_across_backends() {
    let backends = [
        http_backend("a", Duration::from_millis(5)).await,
        http_backend("b", Duration::from_millis(5)).await,
        http_backend("c", Duration::from_millis(5)).await,
    ];
    let frontend = free_addr();
    let proxy = Proxy::new();
    apply(
        &proxy,
        vec![service_port(
            "grpc",
            AppProtocol::H2c,
            frontend,
            &backends,
            None,
        )],
    )
    .await;

    let stream = TcpStream::connect(frontend)
        .await
        .expect("connect to the proxy");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c prior-knowledge handshake with the proxy");
    tokio::spawn(connection);
    let total = 600;
    let requests = (0..total).map(|_| {
        let mut sender = sender.clone();
        async move {
            let request = Request::post("http://grpc/pkg.Service/Method")
                .header("te", "trailers")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let response = sender
                .send_request(request)
                .await
                .expect("h2 response from the proxy");
            assert_eq!(response.status(), 200);
            let body = response
                .into_body()
                .collect()
                .await
                .expect("h2 body")
                .to_bytes();
            String::from_utf8_lossy(&body).into_owned()
        }
    });
    let mut counts = BTreeMap::new();
    for body in futures::future::join_all(requests).await {
        *counts.entry(body).or_insert(0) += 1;
    }
    for (backend, count) in &counts {
        assert!(
            *count >= total / 10,
            "backend {backend} got only {count} of {total}: {counts:?}"
        );
    }
    assert_eq!(
        counts.len(),
        3,
        "one HTTP/2 connection reached only {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_echo_through_the_proxy_replies_from_the_frontend() {
    let backend = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, from)) = backend.recv_from(&mut buf).await else {
                return;
            };
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = backend.send_to(&reply, from).await;
        }
    });
    let frontend = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let proxy = Proxy::new();
    apply(
        &proxy,
        vec![service_port(
            "dns",
            AppProtocol::Udp,
            frontend,
            &[backend_addr],
            None,
        )],
    )
    .await;

    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..5 {
        let message = format!("hello {i}");
        client.send_to(message.as_bytes(), frontend).await.unwrap();
        let mut buf = [0u8; 1500];
        let (n, from) = tokio::time::timeout(Duration::from_secs(10), client.recv_from(&mut buf))
            .await
            .expect("a UDP reply through the proxy within 10 s")
            .unwrap();
        assert_eq!(
            from, frontend,
            "the reply must come from the frontend address"
        );
        assert_eq!(&buf[..n], format!("echo:{message}").as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_sticks_for_tcp_and_http() {
    let tcp = [
        tcp_backend(0).await,
        tcp_backend(1).await,
        tcp_backend(2).await,
    ];
    let http = [
        http_backend("a", Duration::ZERO).await,
        http_backend("b", Duration::ZERO).await,
        http_backend("c", Duration::ZERO).await,
    ];
    let (tcp_frontend, http_frontend) = (free_addr(), free_addr());
    let affinity = Some(Duration::from_secs(600));
    let proxy = Proxy::new();
    apply(
        &proxy,
        vec![
            service_port("sticky-tcp", AppProtocol::Tcp, tcp_frontend, &tcp, affinity),
            service_port(
                "sticky-http",
                AppProtocol::Http1,
                http_frontend,
                &http,
                affinity,
            ),
        ],
    )
    .await;

    let (_, first) = tcp_greeting(tcp_frontend).await;
    for attempt in 0..100 {
        let (_, id) = tcp_greeting(tcp_frontend).await;
        assert_eq!(
            id, first,
            "tcp connection {attempt} left the pinned endpoint"
        );
    }
    let (_, first) = get(&mut http1_connection(http_frontend).await).await;
    for attempt in 0..100 {
        // New connections too: affinity is by client IP, not by connection.
        let (_, body) = get(&mut http1_connection(http_frontend).await).await;
        assert_eq!(
            body, first,
            "http request {attempt} left the pinned endpoint"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoints_resets_tcp_and_answers_503_for_http() {
    let (tcp_frontend, http_frontend) = (free_addr(), free_addr());
    let proxy = Proxy::new();
    apply(
        &proxy,
        vec![
            service_port("empty-tcp", AppProtocol::Tcp, tcp_frontend, &[], None),
            service_port("empty-http", AppProtocol::Http1, http_frontend, &[], None),
        ],
    )
    .await;

    // The RST may arrive before connect() returns (it then reports it) or on the first read.
    let outcome = match TcpStream::connect(tcp_frontend).await {
        Err(error) => Err(error),
        Ok(mut stream) => {
            let mut buf = [0u8; 1];
            stream.read(&mut buf).await
        }
    };
    assert!(
        matches!(&outcome, Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused)),
        "expected a reset from a service with no endpoints, got {outcome:?}"
    );

    let (status, body) = get(&mut http1_connection(http_frontend).await).await;
    assert_eq!(status, 503, "body {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_gives_502_and_tcp_retries_another_endpoint() {
    let dead = free_addr(); // nothing listens here
    let alive = tcp_backend(7).await;
    let (tcp_frontend, http_frontend) = (free_addr(), free_addr());
    let proxy = Proxy::new();
    apply(
        &proxy,
        vec![
            service_port(
                "retry",
                AppProtocol::Tcp,
                tcp_frontend,
                &[dead, alive],
                None,
            ),
            service_port(
                "bad-gateway",
                AppProtocol::Http1,
                http_frontend,
                &[dead],
                None,
            ),
        ],
    )
    .await;
    for attempt in 0..20 {
        let (_, id) = tcp_greeting(tcp_frontend).await;
        assert_eq!(
            id, 7,
            "connection {attempt} was not retried on the live endpoint"
        );
    }
    let (status, _) = get(&mut http1_connection(http_frontend).await).await;
    assert_eq!(status, 502);
    assert_connection_errors_counted(&proxy, &dead.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_of_unchanged_frontends_survive_apply_and_bind_failures_are_reported() {
    let backend = tcp_backend(1).await;
    let frontend = free_addr();
    // A plain listener without SO_REUSEPORT makes binding its address fail.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let proxy = Proxy::new();
    apply(
        &proxy,
        vec![service_port(
            "stay",
            AppProtocol::Tcp,
            frontend,
            &[backend],
            None,
        )],
    )
    .await;
    let (mut open, _) = tcp_greeting(frontend).await;

    let failures = proxy
        .apply(&ProxyTable {
            ports: vec![
                service_port("stay", AppProtocol::Tcp, frontend, &[backend], None),
                service_port("taken", AppProtocol::Tcp, taken_addr, &[backend], None),
            ],
        })
        .await;
    assert_eq!(
        failures.len(),
        1,
        "expected only {taken_addr} to fail: {failures:?}"
    );
    assert_eq!(failures[0].0, taken_addr);
    open.write_all(b"x").await.unwrap();
    let mut echo = [0u8; 1];
    open.read_exact(&mut echo)
        .await
        .expect("connection open across apply still works");
    let (_, id) = tcp_greeting(frontend).await;
    assert_eq!(id, 1);

    // Removing the frontend closes its listener.
    apply(&proxy, vec![]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect(frontend).await.is_err() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "listener on {frontend} still open 10 s after its removal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(taken);
}

/// At least one connection error is counted for `endpoint` (ip:port).
fn assert_connection_errors_counted(proxy: &Proxy, endpoint: &str) {
    let mut text = String::new();
    proxy.encode_metrics(&mut text);
    let errors = metric(
        &text,
        "drover_proxy_connection_errors_total",
        &format!("endpoint=\"{endpoint}\""),
    );
    assert!(
        errors >= 1.0,
        "connection errors to {endpoint} not counted:\n{text}"
    );
}

/// The value of one series whose label text contains `labels`.
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_connections_bytes_and_requests_per_endpoint() {
    let tcp = tcp_backend(3).await;
    let http = http_backend("hello", Duration::ZERO).await;
    let (tcp_frontend, http_frontend) = (free_addr(), free_addr());
    let proxy = Proxy::new();
    apply(
        &proxy,
        vec![
            service_port("m-tcp", AppProtocol::Tcp, tcp_frontend, &[tcp], None),
            service_port("m-http", AppProtocol::Http1, http_frontend, &[http], None),
        ],
    )
    .await;
    for _ in 0..4 {
        let (mut stream, _) = tcp_greeting(tcp_frontend).await;
        stream.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        stream.read_exact(&mut echo).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
    }
    let mut sender = http1_connection(http_frontend).await;
    for _ in 0..5 {
        assert_eq!(get(&mut sender).await.0, 200);
    }

    // The splice finishes its accounting just after the client sees EOF: poll for it.
    let tcp_labels = format!(
        "namespace=\"default\",service=\"m-tcp\",port=\"web\",endpoint=\"{tcp}\",pod=\"m-tcp-pod-0\",pod_template_hash=\"abc123\""
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let mut text = String::new();
        proxy.encode_metrics(&mut text);
        if metric(&text, "drover_proxy_open_connections", &tcp_labels) == 0.0
            && metric(
                &text,
                "drover_proxy_bytes_total",
                &format!("{tcp_labels},direction=\"out\""),
            ) == 4.0 * 5.0
        {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tcp accounting did not settle:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        metric(&text, "drover_proxy_connections_total", &tcp_labels),
        4.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "drover_proxy_bytes_total",
            &format!("{tcp_labels},direction=\"in\"")
        ),
        16.0,
        "{text}"
    );
    let http_labels = format!("service=\"m-http\",port=\"web\",endpoint=\"{http}\"");
    assert_eq!(
        metric(&text, "drover_proxy_requests_total", &http_labels),
        5.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "drover_proxy_responses_total", &format!("{http_labels},pod=\"m-http-pod-0\",pod_template_hash=\"abc123\",code_class=\"2xx\"")),
        5.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "drover_proxy_request_duration_seconds_count",
            &http_labels
        ),
        5.0,
        "{text}"
    );
    // HTTP bodies are counted as they stream: 5 responses of "hello".
    assert_eq!(
        metric(
            &text,
            "drover_proxy_bytes_total",
            &format!(
                "{http_labels},pod=\"m-http-pod-0\",pod_template_hash=\"abc123\",direction=\"out\""
            )
        ),
        25.0,
        "{text}"
    );

    // Series of an endpoint that is gone are dropped.
    apply(
        &proxy,
        vec![service_port(
            "m-http",
            AppProtocol::Http1,
            http_frontend,
            &[http],
            None,
        )],
    )
    .await;
    let mut text = String::new();
    proxy.encode_metrics(&mut text);
    assert!(
        !text.contains("m-tcp"),
        "series of the removed service remain:\n{text}"
    );
}

/// A backend that answers an `Upgrade: echo` request with 101 and then echoes raw bytes, like a
/// WebSocket server after its handshake.
async fn upgrade_backend() -> SocketAddr {
    spawn_backend("upgrade", |mut stream| async move {
        let head = read_head(&mut stream).await.to_ascii_lowercase();
        if !(head.contains("upgrade: echo") && head.contains("connection: upgrade")) {
            // Not an upgrade: answer and close, so the pooled client cannot reuse it.
            let _ = stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return;
        }
        let response =
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n";
        if stream.write_all(response).await.is_ok() {
            echo(&mut stream).await;
        }
    })
    .await
}

/// Reads an HTTP head (through the blank line) byte by byte, so nothing after it is consumed.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_upgrade_switches_protocols_end_to_end_and_is_spliced() {
    let backend = upgrade_backend().await;
    let frontend = free_addr();
    let proxy = Proxy::new();
    apply(
        &proxy,
        vec![service_port(
            "ws",
            AppProtocol::Http1,
            frontend,
            &[backend],
            None,
        )],
    )
    .await;

    // A plain request on the same port is still answered per request.
    let mut plain = TcpStream::connect(frontend).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: ws\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut plain).await;
    assert!(head.starts_with("HTTP/1.1 400"), "plain request: {head:?}");

    let mut stream = TcpStream::connect(frontend).await.unwrap();
    stream
        .write_all(b"GET /chat HTTP/1.1\r\nhost: ws\r\nconnection: keep-alive, Upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "the proxy must pass the endpoint's 101 through: {head:?}"
    );
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo"),
        "{head:?}"
    );
    for message in [&b"hello"[..], b"after the upgrade, bytes are raw"] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut echoed))
            .await
            .expect("echo through the upgraded connection timed out")
            .unwrap();
        assert_eq!(echoed, message);
    }
    let labels = format!("service=\"ws\",port=\"web\",endpoint=\"{backend}\"");
    let mut text = String::new();
    proxy.encode_metrics(&mut text);
    assert_eq!(
        metric(&text, "drover_proxy_open_connections", &labels),
        1.0,
        "the upgraded connection is open:\n{text}"
    );
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut text = String::new();
        proxy.encode_metrics(&mut text);
        let closed = metric(&text, "drover_proxy_open_connections", &labels) == 0.0;
        let bytes_in = metric(
            &text,
            "drover_proxy_bytes_total",
            &format!("{labels},pod=\"ws-pod-0\",pod_template_hash=\"abc123\",direction=\"in\""),
        );
        if closed && bytes_in == 37.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "upgraded connection accounting did not settle (want 37 bytes in, closed):\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTP/1.1 backend that answers every request with `name`, the method and the request body.
async fn body_echo_backend(name: &'static str) -> SocketAddr {
    spawn_backend("body echo", move |stream| async move {
        let service =
            hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| async move {
                let method = request.method().to_string();
                let body = request.into_body().collect().await?.to_bytes();
                let text = format!("{name} {method} {}", String::from_utf8_lossy(&body));
                Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(text))))
            });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
    .await
}

/// A loopback address whose listener never accepts and whose accept queue is full, so the kernel
/// drops further SYNs: a connect to it hangs, like one to a pod that is going away. Returns the
/// listener and the connections that fill its queue; both must live as long as the test.
fn blackholed_addr() -> (socket2::Socket, Vec<std::net::TcpStream>, SocketAddr) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("socket for the blackholed listener");
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .expect("bind the blackholed listener");
    socket.listen(0).expect("listen with a backlog of 0");
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut filling = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => filling.push(stream),
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                return (socket, filling, addr)
            }
            Err(error) => panic!("filling the accept queue of {addr}: {error}"),
        }
    }
    panic!("the accept queue of {addr} never filled up: connects do not hang");
}

/// Sends a request with `body` on a fresh connection; returns the status and the response body.
async fn send(frontend: SocketAddr, method: &str, body: &'static str) -> (u16, String) {
    let stream = TcpStream::connect(frontend)
        .await
        .expect("connect to the proxy");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http/1.1 handshake with the proxy");
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri("/")
        .header("host", "web")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .expect("response from the proxy");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_never_sent_is_retried_on_another_endpoint() {
    let refused = free_addr(); // nothing listens here
    let (_listener, _filling, blackholed) = blackholed_addr();
    let alive = body_echo_backend("alive").await;
    let (refused_frontend, blackholed_frontend, all_dead_frontend) =
        (free_addr(), free_addr(), free_addr());
    let proxy = Proxy::new();
    apply(
        &proxy,
        vec![
            service_port(
                "refused",
                AppProtocol::Http1,
                refused_frontend,
                &[refused, alive],
                None,
            ),
            service_port(
                "blackholed",
                AppProtocol::Http1,
                blackholed_frontend,
                &[blackholed, alive],
                None,
            ),
            service_port(
                "all-dead",
                AppProtocol::Http1,
                all_dead_frontend,
                &[refused, free_addr()],
                None,
            ),
        ],
    )
    .await;

    // Fresh connections, so the balancer's pick is fresh too: about half go to the dead
    // endpoint first. Bodies (fixed length) go along with the retried request.
    for attempt in 0..20 {
        let (method, body) = if attempt % 2 == 0 {
            ("GET", "")
        } else {
            ("POST", "payload")
        };
        let (status, answer) = send(refused_frontend, method, body).await;
        assert_eq!(
            (status, answer.as_str()),
            (200, format!("alive {method} {body}").as_str()),
            "request {attempt} to a service with a refusing endpoint"
        );
    }
    // Each connect to the blackholed endpoint waits for the connect timeout: few requests.
    for attempt in 0..4 {
        let (status, answer) = send(blackholed_frontend, "POST", "data").await;
        assert_eq!(
            (status, answer.as_str()),
            (200, "alive POST data"),
            "request {attempt} to a service with a blackholed endpoint"
        );
    }
    // With every endpoint failing, the retries are bounded and the answer is a 502.
    let (status, _) = send(all_dead_frontend, "GET", "").await;
    assert_eq!(status, 502);

    assert_connection_errors_counted(&proxy, &refused.to_string());
}
