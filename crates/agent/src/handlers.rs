//! One handler of a probe or a lifecycle hook, run against a container:
//! exec (inside the container), httpGet (HTTP or HTTPS — unverified, as the
//! kubelet does), tcpSocket, grpc (the standard `grpc.health.v1.Health/Check`
//! over HTTP/2 without TLS) and sleep. Messages follow the kubelet's.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::runtime::ContainerRuntime;

/// What a handler does, with ports resolved against the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Exec(Vec<String>),
    HttpGet {
        https: bool,
        /// `None`: the pod IP.
        host: Option<String>,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    TcpSocket {
        host: Option<String>,
        port: u16,
    },
    Grpc {
        port: u16,
        service: String,
    },
    Sleep(Duration),
}

/// The container a handler runs against.
pub struct Target<'a> {
    pub runtime: &'a dyn ContainerRuntime,
    pub uid: &'a str,
    pub container: &'a Container,
    pub attempt: u32,
    pub pod_ip: &'a str,
}

fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port {p}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("couldn't find port {name} in container {}", container.name)),
    }
}

fn http_action(
    http: &k8s_openapi::api::core::v1::HTTPGetAction,
    container: &Container,
) -> Result<Action, String> {
    Ok(Action::HttpGet {
        https: http
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS")),
        host: http.host.clone().filter(|h| !h.is_empty()),
        port: resolve_port(&http.port, container)?,
        path: match http.path.as_deref() {
            None | Some("") => "/".into(),
            Some(p) if p.starts_with('/') => p.into(),
            Some(p) => format!("/{p}"),
        },
        headers: http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    })
}

/// The action of a probe.
pub fn probe_action(probe: &Probe, container: &Container) -> Result<Action, String> {
    if let Some(exec) = &probe.exec {
        return Ok(Action::Exec(exec.command.clone().unwrap_or_default()));
    }
    if let Some(http) = &probe.http_get {
        return http_action(http, container);
    }
    if let Some(tcp) = &probe.tcp_socket {
        return Ok(Action::TcpSocket {
            host: tcp.host.clone().filter(|h| !h.is_empty()),
            port: resolve_port(&tcp.port, container)?,
        });
    }
    if let Some(grpc) = &probe.grpc {
        return Ok(Action::Grpc {
            port: u16::try_from(grpc.port)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("invalid port {}", grpc.port))?,
            service: grpc.service.clone().unwrap_or_default(),
        });
    }
    Err("the probe has no handler".into())
}

/// The action of a postStart/preStop hook.
pub fn hook_action(hook: &LifecycleHandler, container: &Container) -> Result<Action, String> {
    if let Some(exec) = &hook.exec {
        return Ok(Action::Exec(exec.command.clone().unwrap_or_default()));
    }
    if let Some(http) = &hook.http_get {
        return http_action(http, container);
    }
    if let Some(sleep) = &hook.sleep {
        return Ok(Action::Sleep(Duration::from_secs(
            u64::try_from(sleep.seconds).unwrap_or(0),
        )));
    }
    if hook.tcp_socket.is_some() {
        // Deprecated and never implemented by the kubelet either.
        return Err("tcpSocket lifecycle hooks are not supported".into());
    }
    Err("the hook has no handler".into())
}

/// Runs `action`; `Err` carries the kubelet-style reason.
pub async fn run(action: &Action, target: &Target<'_>, timeout: Duration) -> Result<(), String> {
    match action {
        Action::Exec(argv) => {
            let (code, output) = target
                .runtime
                .exec_sync(
                    target.uid,
                    &target.container.name,
                    target.attempt,
                    argv,
                    timeout,
                )
                .await
                .map_err(|e| e.to_string())?;
            if code == 0 {
                Ok(())
            } else {
                Err(format!(
                    "command {argv:?} exited with {code}: {}",
                    output.trim_end()
                ))
            }
        }
        Action::TcpSocket { host, port } => {
            let host = host.as_deref().unwrap_or(target.pod_ip);
            tokio::net::TcpStream::connect((host, *port))
                .await
                .map(|_| ())
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
        }
        Action::HttpGet {
            https,
            host,
            port,
            path,
            headers,
        } => {
            let host = host.as_deref().unwrap_or(target.pod_ip);
            http_get(*https, host, *port, path, headers).await
        }
        Action::Grpc { port, service } => grpc_health(target.pod_ip, *port, service, timeout).await,
        Action::Sleep(d) => {
            tokio::time::sleep(*d).await;
            Ok(())
        }
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `GET` with the kubelet's headers; success is a status in 200..400.
async fn http_get(
    https: bool,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let scheme = if https { "https" } else { "http" };
    let url = format!("{scheme}://{}{path}", authority(host, port));
    let fail = |e: &dyn std::fmt::Display| format!("Get \"{url}\": {e}");
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| fail(&format!("dial tcp {}: {e}", authority(host, port))))?;
    let mut request = http::Request::get(path)
        .header(http::header::HOST, authority(host, port))
        .header(http::header::USER_AGENT, "kube-probe/1.33")
        .header(http::header::ACCEPT, "*/*")
        .header(http::header::CONNECTION, "close");
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .map_err(|e| fail(&e))?;
    let status = if https {
        let config = client::https::unverified_tls_config(&[b"http/1.1"]);
        let name =
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| fail(&e))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| fail(&e))?;
        send_http1(hyper_util::rt::TokioIo::new(tls), request)
            .await
            .map_err(|e| fail(&e))?
    } else {
        send_http1(hyper_util::rt::TokioIo::new(tcp), request)
            .await
            .map_err(|e| fail(&e))?
    };
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {status}"))
    }
}

async fn send_http1<I>(io: I, request: http::Request<Full<Bytes>>) -> Result<u16, hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    // Read (and drop) the body, as the kubelet does, bounded in size.
    let _ = http_body_util::Limited::new(response.into_body(), 10 * 1024)
        .collect()
        .await;
    Ok(status)
}

/// `grpc.health.v1.Health/Check` for `service`: healthy only if the server
/// answers `SERVING`.
async fn grpc_health(
    host: &str,
    port: u16,
    service: &str,
    timeout: Duration,
) -> Result<(), String> {
    let addr = authority(host, port);
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| {
            format!(
                "timeout: failed to connect service \"{addr}\" within {}s: {e}",
                timeout.as_secs()
            )
        })?;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .map_err(|e| format!("failed to connect service \"{addr}\": {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .header(http::header::USER_AGENT, "kube-probe/1.33")
        .body(Full::new(Bytes::from(grpc_frame(&health_request(service)))))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("health rpc failed: {e}"))?;
    let immediate_status = grpc_status(response.headers());
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("health rpc failed: {e}"))?;
    let status = collected
        .trailers()
        .and_then(grpc_status)
        .or(immediate_status)
        .unwrap_or_else(|| ("2".into(), "no grpc-status".into()));
    if status.0 != "0" {
        return Err(format!(
            "health rpc probe failed: rpc error: code = {} desc = {}",
            grpc_code_name(&status.0),
            status.1
        ));
    }
    let body = collected.to_bytes();
    let message = parse_grpc_frame(&body).ok_or("health rpc failed: malformed response")?;
    match health_status(message) {
        1 => Ok(()),
        other => Err(format!(
            "service unhealthy (responded with \"{}\")",
            serving_status_name(other)
        )),
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<(String, String)> {
    let code = headers.get("grpc-status")?.to_str().ok()?.to_string();
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Some((code, message))
}

fn grpc_code_name(code: &str) -> &'static str {
    match code {
        "1" => "Canceled",
        "2" => "Unknown",
        "3" => "InvalidArgument",
        "4" => "DeadlineExceeded",
        "5" => "NotFound",
        "7" => "PermissionDenied",
        "12" => "Unimplemented",
        "13" => "Internal",
        "14" => "Unavailable",
        _ => "Unknown",
    }
}

/// `HealthCheckRequest { string service = 1; }` in protobuf.
fn health_request(service: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if !service.is_empty() {
        out.push(0x0a);
        push_varint(&mut out, service.len() as u64);
        out.extend_from_slice(service.as_bytes());
    }
    out
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A gRPC length-prefixed message (uncompressed).
fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

fn parse_grpc_frame(body: &[u8]) -> Option<&[u8]> {
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    body.get(5..5 + len)
}

/// `HealthCheckResponse.status` (field 1, an enum); absent means UNKNOWN (0).
fn health_status(message: &[u8]) -> u64 {
    let mut i = 0;
    while i < message.len() {
        let key = message[i];
        i += 1;
        let mut value = 0u64;
        let mut shift = 0;
        match key & 7 {
            0 => {
                while i < message.len() {
                    let b = message[i];
                    i += 1;
                    value |= u64::from(b & 0x7f) << shift;
                    shift += 7;
                    if b & 0x80 == 0 {
                        break;
                    }
                }
                if key >> 3 == 1 {
                    return value;
                }
            }
            2 => {
                let mut len = 0u64;
                while i < message.len() {
                    let b = message[i];
                    i += 1;
                    len |= u64::from(b & 0x7f) << shift;
                    shift += 7;
                    if b & 0x80 == 0 {
                        break;
                    }
                }
                i += len as usize;
            }
            _ => return 0,
        }
    }
    0
}

fn serving_status_name(status: u64) -> &'static str {
    match status {
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::Arc;

    #[test]
    fn health_messages_encode_and_decode() {
        assert_eq!(health_request(""), Vec::<u8>::new());
        assert_eq!(health_request("db"), vec![0x0a, 2, b'd', b'b']);
        assert_eq!(grpc_frame(&[0x08, 1]), vec![0, 0, 0, 0, 2, 0x08, 1]);
        assert_eq!(
            parse_grpc_frame(&[0, 0, 0, 0, 2, 0x08, 1]),
            Some(&[0x08, 1][..])
        );
        assert_eq!(parse_grpc_frame(&[1, 0, 0, 0, 0]), None, "compressed");
        assert_eq!(health_status(&[0x08, 1]), 1);
        assert_eq!(health_status(&[0x08, 2]), 2);
        assert_eq!(health_status(&[]), 0);
        // An unknown length-delimited field before the status is skipped.
        assert_eq!(health_status(&[0x12, 2, b'x', b'y', 0x08, 1]), 1);
    }

    /// A gRPC health server on loopback (hyper's HTTP/2 server, no TLS):
    /// `SERVING` for "" and "db", `NOT_SERVING` for "cache", NotFound else.
    async fn health_server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |req: http::Request<hyper::body::Incoming>| async move {
                            assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let message = parse_grpc_frame(&body).unwrap().to_vec();
                            let name = if message.is_empty() {
                                String::new()
                            } else {
                                String::from_utf8(message[2..].to_vec()).unwrap()
                            };
                            let (status, code) = match name.as_str() {
                                "" | "db" => (1u8, "0"),
                                "cache" => (2, "0"),
                                _ => (0, "5"),
                            };
                            let frames: Vec<Result<http_body::Frame<Bytes>, Infallible>> = vec![
                                Ok(http_body::Frame::data(Bytes::from(grpc_frame(&[
                                    0x08, status,
                                ])))),
                                Ok(http_body::Frame::trailers({
                                    let mut t = http::HeaderMap::new();
                                    t.insert("grpc-status", code.parse().unwrap());
                                    if code != "0" {
                                        t.insert(
                                            "grpc-message",
                                            "unknown service".parse().unwrap(),
                                        );
                                    }
                                    t
                                })),
                            ];
                            let body =
                                http_body_util::StreamBody::new(futures::stream::iter(frames));
                            Ok::<_, Infallible>(
                                http::Response::builder()
                                    .header("content-type", "application/grpc")
                                    .body(body)
                                    .unwrap(),
                            )
                        },
                    );
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn grpc_probes_ask_the_standard_health_service() {
        let port = health_server().await;
        let t = Duration::from_secs(5);
        assert_eq!(grpc_health("127.0.0.1", port, "", t).await, Ok(()));
        assert_eq!(grpc_health("127.0.0.1", port, "db", t).await, Ok(()));
        assert_eq!(
            grpc_health("127.0.0.1", port, "cache", t).await,
            Err("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        assert_eq!(
            grpc_health("127.0.0.1", port, "nope", t).await,
            Err(
                "health rpc probe failed: rpc error: code = NotFound desc = unknown service".into()
            )
        );
        // Nothing listening: the connection error is reported.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let err = grpc_health("127.0.0.1", closed_port, "", t)
            .await
            .unwrap_err();
        assert!(
            err.starts_with("timeout: failed to connect service"),
            "{err}"
        );
    }

    /// An HTTPS server with a self-signed certificate answering `code`.
    async fn https_server(code: u16) -> u16 {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = key.cert.der().clone();
        let private =
            rustls::pki_types::PrivateKeyDer::try_from(key.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], private)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| async move {
                            assert_eq!(req.headers()["user-agent"], "kube-probe/1.33");
                            assert_eq!(req.headers()["x-probe"], "yes");
                            Ok::<_, Infallible>(
                                http::Response::builder()
                                    .status(code)
                                    .body(Full::new(Bytes::from_static(b"ok")))
                                    .unwrap(),
                            )
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn https_probes_do_not_verify_the_certificate_and_judge_the_status() {
        let headers = vec![("X-Probe".to_string(), "yes".to_string())];
        let ok = https_server(204).await;
        assert_eq!(
            http_get(true, "127.0.0.1", ok, "/healthz", &headers).await,
            Ok(())
        );
        let bad = https_server(503).await;
        assert_eq!(
            http_get(true, "127.0.0.1", bad, "/healthz", &headers).await,
            Err("HTTP probe failed with statuscode: 503".into())
        );
        // Plain HTTP against the TLS port fails with the URL in the message.
        let err = http_get(false, "127.0.0.1", ok, "/healthz", &headers)
            .await
            .unwrap_err();
        assert!(
            err.starts_with(&format!("Get \"http://127.0.0.1:{ok}/healthz\"")),
            "{err}"
        );
    }

    #[test]
    fn hook_and_probe_actions_resolve_named_ports() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "app",
            "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .unwrap();
        let hook: LifecycleHandler = serde_json::from_value(serde_json::json!({
            "httpGet": {"port": "http", "path": "stop"}
        }))
        .unwrap();
        assert_eq!(
            hook_action(&hook, &container),
            Ok(Action::HttpGet {
                https: false,
                host: None,
                port: 8080,
                path: "/stop".into(),
                headers: vec![]
            })
        );
        let missing: LifecycleHandler =
            serde_json::from_value(serde_json::json!({"httpGet": {"port": "admin"}})).unwrap();
        assert_eq!(
            hook_action(&missing, &container),
            Err("couldn't find port admin in container app".into())
        );
        let sleep: LifecycleHandler =
            serde_json::from_value(serde_json::json!({"sleep": {"seconds": 3}})).unwrap();
        assert_eq!(
            hook_action(&sleep, &container),
            Ok(Action::Sleep(Duration::from_secs(3)))
        );
        let grpc: Probe =
            serde_json::from_value(serde_json::json!({"grpc": {"port": 9090}})).unwrap();
        assert_eq!(
            probe_action(&grpc, &container),
            Ok(Action::Grpc {
                port: 9090,
                service: String::new()
            })
        );
    }
}
