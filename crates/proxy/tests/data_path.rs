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

    // The splice finishes its accounting just after the client sees EOF,
    // and a response body's last bytes are counted as the proxy's body
    // stream ends, which can be just after the client has them: poll for
    // both.
    let http_out = format!(
        "service=\"m-http\",port=\"web\",endpoint=\"{http}\",pod=\"m-http-pod-0\",pod_template_hash=\"abc123\",direction=\"out\""
    );
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
            && metric(&text, "drover_proxy_bytes_total", &http_out) == 5.0 * 5.0
        {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tcp and http byte accounting did not settle (tcp: 20 bytes out, no open connection; http: 25 bytes out):\n{text}"
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

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 framing through the hand-written forwarding path, with a raw client so that every
// byte on the wire is the test's choice.

/// A client connection that writes requests as given and parses the responses itself.
struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl RawClient {
    async fn connect(frontend: SocketAddr) -> Self {
        RawClient {
            stream: TcpStream::connect(frontend)
                .await
                .expect("connect to the proxy"),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("write to the proxy");
    }

    /// Reads more; the number of bytes (0 at EOF).
    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .expect("the proxy answered nothing within 10 s")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    async fn need(&mut self, n: usize) {
        while self.buf.len() < n {
            assert!(
                self.fill().await > 0,
                "EOF with {} of {n} bytes: {:?}",
                self.buf.len(),
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + 2);
                return line;
            }
            assert!(self.fill().await > 0, "EOF inside a line");
        }
    }

    /// Reads one response (an interim 1xx too); `head_request`: it answers a HEAD.
    async fn response(&mut self, head_request: bool) -> RawResponse {
        let (status, headers) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buf).expect("a valid response head") {
                httparse::Status::Complete(len) => {
                    let parsed = (
                        response.code.unwrap(),
                        response
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_ascii_lowercase(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect::<Vec<_>>(),
                    );
                    self.buf.drain(..len);
                    break parsed;
                }
                httparse::Status::Partial => {
                    assert!(
                        self.fill().await > 0,
                        "EOF before a response head: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    );
                }
            }
        };
        let mut response = RawResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || status < 200 || status == 204 || status == 304 {
            return response;
        }
        if response
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
        {
            loop {
                let line = self.line().await;
                let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                    .unwrap_or_else(|_| panic!("chunk size line {line:?}"));
                if size == 0 {
                    while !self.line().await.is_empty() {}
                    break;
                }
                self.need(size + 2).await;
                response.body.extend_from_slice(&self.buf[..size]);
                assert_eq!(&self.buf[size..size + 2], b"\r\n", "chunk data end");
                self.buf.drain(..size + 2);
            }
        } else if let Some(length) = response.header("content-length") {
            let length: usize = length.trim().parse().unwrap();
            self.need(length).await;
            response.body = self.buf.drain(..length).collect();
        } else {
            while self.fill().await > 0 {}
            response.body = std::mem::take(&mut self.buf);
        }
        response
    }

    /// The proxy closes the connection: EOF with nothing more to read.
    async fn expect_eof(&mut self) {
        let n = self.fill().await;
        assert_eq!(
            (n, self.buf.len()),
            (0, 0),
            "expected the proxy to close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}

/// A hyper HTTP/1.1 backend whose answer depends on the path: `/echo` echoes the body (with a
/// length), `/chunked` answers in three chunks, `/head` is "hello", `/204` and `/304` have no
/// body, anything else answers with its path.
async fn framing_backend() -> SocketAddr {
    use http_body_util::combinators::BoxBody;
    spawn_backend("framing", |stream| async move {
        let service =
            hyper::service::service_fn(|request: Request<hyper::body::Incoming>| async move {
                let path = request.uri().path().to_string();
                let full = |b: Bytes| BoxBody::new(Full::new(b).map_err(|e| match e {}));
                let response = match path.as_str() {
                    "/echo" => {
                        let body = request.into_body().collect().await?.to_bytes();
                        Response::new(full(body))
                    }
                    "/chunked" => {
                        let frames = ["hello", " ", "world!"].map(|s| {
                            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
                                Bytes::from(s),
                            ))
                        });
                        let stream = http_body_util::StreamBody::new(futures::stream::iter(frames));
                        Response::new(BoxBody::new(stream))
                    }
                    "/head" => Response::new(full(Bytes::from("hello"))),
                    "/204" | "/304" => {
                        let mut response = Response::new(full(Bytes::new()));
                        *response.status_mut() =
                            hyper::StatusCode::from_u16(path[1..].parse().unwrap()).unwrap();
                        response
                    }
                    _ => Response::new(full(Bytes::from(path))),
                };
                Ok::<_, hyper::Error>(response)
            });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
    .await
}

async fn http1_proxy(name: &str, endpoints: &[SocketAddr]) -> (std::sync::Arc<Proxy>, SocketAddr) {
    let frontend = free_addr();
    let proxy = Proxy::new();
    apply(
        &proxy,
        vec![service_port(
            name,
            AppProtocol::Http1,
            frontend,
            endpoints,
            None,
        )],
    )
    .await;
    (proxy, frontend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_length_and_chunked_bodies_pass_both_ways_on_one_connection() {
    let backend = framing_backend().await;
    let (proxy, frontend) = http1_proxy("framing", &[backend]).await;
    let mut client = RawClient::connect(frontend).await;

    client
        .send(b"POST /echo HTTP/1.1\r\nhost: web\r\ncontent-length: 10\r\n\r\n0123456789")
        .await;
    let response = client.response(false).await;
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "0123456789")
    );

    // A chunked request body, its chunks in separate writes.
    client
        .send(b"POST /echo HTTP/1.1\r\nhost: web\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    client.send(b"4;ext=1\r\ndefg\r\n0\r\n\r\n").await;
    let response = client.response(false).await;
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "abcdefg")
    );

    // A chunked response arrives chunked and whole.
    client
        .send(b"GET /chunked HTTP/1.1\r\nhost: web\r\n\r\n")
        .await;
    let response = client.response(false).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.text(), "hello world!");

    // The connection is still in step.
    client
        .send(b"GET /after HTTP/1.1\r\nhost: web\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.text(), "/after");

    // Body data bytes are counted (not the chunk framing).
    let labels = format!("service=\"framing\",port=\"web\",endpoint=\"{backend}\",pod=\"framing-pod-0\",pod_template_hash=\"abc123\"");
    let mut text = String::new();
    proxy.encode_metrics(&mut text);
    assert_eq!(
        metric(
            &text,
            "drover_proxy_bytes_total",
            &format!("{labels},direction=\"in\"")
        ),
        17.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "drover_proxy_bytes_total",
            &format!("{labels},direction=\"out\"")
        ),
        10.0 + 7.0 + 12.0 + 6.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "drover_proxy_requests_total", &labels),
        4.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_head_204_and_304_responses_have_no_body() {
    let backend = framing_backend().await;
    let (_proxy, frontend) = http1_proxy("nobody", &[backend]).await;
    let mut client = RawClient::connect(frontend).await;
    client
        .send(b"HEAD /head HTTP/1.1\r\nhost: web\r\n\r\n")
        .await;
    let response = client.response(true).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("5"));
    for status in [204, 304] {
        client
            .send(format!("GET /{status} HTTP/1.1\r\nhost: web\r\n\r\n").as_bytes())
            .await;
        assert_eq!(client.response(false).await.status, status);
    }
    // Had the proxy waited for (or passed on) a body after any of them, this would not line up.
    client
        .send(b"GET /head HTTP/1.1\r\nhost: web\r\n\r\n")
        .await;
    let response = client.response(false).await;
    assert_eq!((response.status, response.text().as_str()), (200, "hello"));
    assert!(client.buf.is_empty(), "stray bytes: {:?}", client.buf);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_response_without_length_is_read_to_the_close_and_closes_the_client() {
    let backend = spawn_backend("until close", |mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nstreamed ")
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = stream.write_all(b"until the close").await;
    })
    .await;
    let (_proxy, frontend) = http1_proxy("until-close", &[backend]).await;
    let mut client = RawClient::connect(frontend).await;
    client.send(b"GET / HTTP/1.1\r\nhost: web\r\n\r\n").await;
    let response = client.response(false).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("connection"), Some("close"));
    // The body ran to the proxy's close, which came after the endpoint's.
    assert_eq!(response.text(), "streamed until the close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_connection_close_from_the_client_and_from_the_endpoint() {
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    // Answers one request per connection and closes it, saying so.
    let closing = spawn_backend("closing", move |mut stream| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            read_head(&mut stream).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        }
    })
    .await;
    let (_proxy, frontend) = http1_proxy("upstream-close", &[closing]).await;
    let mut client = RawClient::connect(frontend).await;
    for _ in 0..3 {
        client.send(b"GET / HTTP/1.1\r\nhost: web\r\n\r\n").await;
        let response = client.response(false).await;
        assert_eq!((response.status, response.text().as_str()), (200, "ok"));
        // The endpoint's close is its own hop's: the client connection stays.
        assert_eq!(response.header("connection"), None);
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "a connection the endpoint closed was reused"
    );

    let backend = framing_backend().await;
    let (_proxy, frontend) = http1_proxy("client-close", &[backend]).await;
    let mut client = RawClient::connect(frontend).await;
    client
        .send(b"GET /bye HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n")
        .await;
    let response = client.response(false).await;
    assert_eq!((response.status, response.text().as_str()), (200, "/bye"));
    assert_eq!(response.header("connection"), Some("close"));
    client.expect_eof().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_expect_100_continue_is_relayed() {
    let backend = framing_backend().await;
    let (_proxy, frontend) = http1_proxy("expect", &[backend]).await;
    let mut client = RawClient::connect(frontend).await;
    client
        .send(b"POST /echo HTTP/1.1\r\nhost: web\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
        .await;
    // The body is sent only after the endpoint's 100 came through the proxy.
    let interim = client.response(false).await;
    assert_eq!(interim.status, 100);
    client.send(b"hello").await;
    let response = client.response(false).await;
    assert_eq!((response.status, response.text().as_str()), (200, "hello"));
    client
        .send(b"GET /again HTTP/1.1\r\nhost: web\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.text(), "/again");
}

/// A backend that answers one request per connection (with a length, as if it kept the
/// connection) and then closes: `at_once`, right after the response; else when the next request
/// arrives, without answering it. Returns its address and its count of answered requests.
async fn one_shot_backend(
    at_once: bool,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = answered.clone();
    let addr = spawn_backend("one-shot", move |mut stream| {
        let counter = counter.clone();
        async move {
            let head = read_head(&mut stream).await.to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            let mut body = vec![0u8; length];
            if stream.read_exact(&mut body).await.is_err() {
                return;
            }
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let answer = format!("answer {n} {}", String::from_utf8_lossy(&body));
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            );
            if stream.write_all(response.as_bytes()).await.is_err() || at_once {
                return;
            }
            // Wait for the next request, then close without a word.
            let mut byte = [0u8; 1];
            let _ = stream.read(&mut byte).await;
        }
    })
    .await;
    (addr, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_pooled_connection_closed_by_the_endpoint_is_replaced() {
    for at_once in [true, false] {
        let (backend, answered) = one_shot_backend(at_once).await;
        let (_proxy, frontend) = http1_proxy("stale", &[backend]).await;
        let mut client = RawClient::connect(frontend).await;
        for i in 1..=6 {
            if i % 2 == 0 {
                client
                    .send(b"POST / HTTP/1.1\r\nhost: web\r\ncontent-length: 4\r\n\r\nbody")
                    .await;
            } else {
                client.send(b"GET / HTTP/1.1\r\nhost: web\r\n\r\n").await;
            }
            let response = client.response(false).await;
            let body = if i % 2 == 0 { "body" } else { "" };
            assert_eq!(
                (response.status, response.text()),
                (200, format!("answer {i} {body}")),
                "request {i} (endpoint closes {})",
                if at_once {
                    "at once"
                } else {
                    "on the next request"
                }
            );
        }
        assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_pipelined_requests_are_answered_in_order() {
    let backend = framing_backend().await;
    let (_proxy, frontend) = http1_proxy("pipeline", &[backend]).await;
    let mut client = RawClient::connect(frontend).await;
    client
        .send(concat!(
            "GET /one HTTP/1.1\r\nhost: web\r\n\r\n",
            "POST /echo HTTP/1.1\r\nhost: web\r\ncontent-length: 3\r\n\r\ntwo",
            "POST /echo HTTP/1.1\r\nhost: web\r\ntransfer-encoding: chunked\r\n\r\n5\r\nthree\r\n0\r\n\r\n",
            "HEAD /head HTTP/1.1\r\nhost: web\r\n\r\n",
            "GET /five HTTP/1.1\r\nhost: web\r\n\r\n",
        ).as_bytes())
        .await;
    for (expected, head) in [
        ("/one", false),
        ("two", false),
        ("three", false),
        ("", true),
        ("/five", false),
    ] {
        let response = client.response(head).await;
        assert_eq!((response.status, response.text().as_str()), (200, expected));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_malformed_requests_get_400_and_a_close() {
    let backend = framing_backend().await;
    let (_proxy, frontend) = http1_proxy("malformed", &[backend]).await;
    for request in [
        &b"this is not http\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nbad header line\r\n\r\n",
        b"POST /echo HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\nabc",
        b"POST /echo HTTP/1.1\r\ncontent-length: x\r\n\r\n",
    ] {
        let mut client = RawClient::connect(frontend).await;
        client.send(request).await;
        let response = client.response(false).await;
        assert_eq!(
            response.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(request),
            response.text()
        );
        assert_eq!(response.header("connection"), Some("close"));
        client.expect_eof().await;
    }
    // A good request before a bad one is answered; the bad one ends the connection.
    let mut client = RawClient::connect(frontend).await;
    client
        .send(b"GET /fine HTTP/1.1\r\nhost: web\r\n\r\nGARBAGE\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.text(), "/fine");
    assert_eq!(client.response(false).await.status, 400);
    client.expect_eof().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_on_an_http1_port_is_still_served() {
    let backend = http_backend("h2", Duration::ZERO).await;
    let (_proxy, frontend) = http1_proxy("h2-on-h1", &[backend]).await;
    let stream = TcpStream::connect(frontend)
        .await
        .expect("connect to the proxy");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 prior-knowledge handshake with the proxy");
    tokio::spawn(connection);
    for _ in 0..3 {
        let request = Request::get("http://web/")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.expect("h2 response");
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "h2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_endpoint_failing_mid_response_closes_the_client_connection() {
    // Promises 100 bytes, sends 7, and closes.
    let backend = spawn_backend("truncating", |mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
            .await;
    })
    .await;
    let (proxy, frontend) = http1_proxy("truncated", &[backend]).await;
    let mut client = RawClient::connect(frontend).await;
    client.send(b"GET / HTTP/1.1\r\nhost: web\r\n\r\n").await;
    // The head and the 7 bytes arrive, then the close: the client never mistakes the rest of the
    // connection for the missing 93 bytes.
    let mut received = Vec::new();
    loop {
        let n = client.fill().await;
        if n == 0 {
            break;
        }
        received = client.buf.clone();
    }
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.starts_with("HTTP/1.1 200 OK") && text.ends_with("\r\n\r\npartial"),
        "{text:?}"
    );
    assert_connection_errors_counted(&proxy, &backend.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_0_clients_close_unless_they_ask_for_keep_alive() {
    let backend = framing_backend().await;
    let (_proxy, frontend) = http1_proxy("http10", &[backend]).await;
    let mut client = RawClient::connect(frontend).await;
    client.send(b"GET /old HTTP/1.0\r\n\r\n").await;
    let response = client.response(false).await;
    assert_eq!((response.status, response.text().as_str()), (200, "/old"));
    client.expect_eof().await;

    let mut client = RawClient::connect(frontend).await;
    for path in ["/a", "/b"] {
        client
            .send(format!("GET {path} HTTP/1.0\r\nconnection: keep-alive\r\n\r\n").as_bytes())
            .await;
        let response = client.response(false).await;
        assert_eq!((response.status, response.text().as_str()), (200, path));
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
}
