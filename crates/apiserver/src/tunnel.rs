//! How the API server reaches a node agent on another machine: the agent
//! dials the server (so it works from behind NAT and needs no certificate
//! of its own, as k3s's agent tunnel does), authenticates with its join
//! token and upgrades the HTTP/1.1 connection; over the upgraded stream the
//! roles swap — the server is the HTTP/2 client, the agent serves a small
//! node API — and the server registers a [`NodeConnection`] for the node
//! that sends its requests down the tunnel.
//!
//! Both ends live here so that the wire format is in one file:
//! `POST /containerLog` (JSON `{pod, request}` → the log, streamed when
//! following; an error is a non-200 with the message as text) and
//! `GET /metrics` (JSON [`NodeMetricsReport`]); `POST /exec`, `/attach` and
//! `/portForward` are full-duplex HTTP/2 streams: the request body starts
//! with a length-prefixed JSON preamble (`{pod, request}` or `{pod, port}`);
//! exec/attach then carry frames `[channel u8][length u32 BE][bytes]` —
//! to the agent 0 stdin, 4 resize (JSON), 255 stdin closed; from the agent
//! 1 stdout, 2 stderr (an empty frame: that stream ended), 3 the exit (JSON)
//! — and port-forward carries raw bytes both ways.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use crate::nodes::{
    ExecRequest, ExitStatus, LogBody, LogRequest, NodeConnection, NodeError, NodeMetricsReport,
    ProcessStreams, TerminalSize, Tunnel,
};
use crate::ApiServer;

/// The `Upgrade` protocol name of the tunnel.
pub const UPGRADE: &str = "drover-node-tunnel";

/// The path an agent opens its tunnel on.
pub fn path(node: &str) -> String {
    format!("/drover/v1/nodes/{node}/tunnel")
}

/// The server's side of `GET /drover/v1/nodes/NODE/tunnel`: answers 101 and
/// serves the node through the upgraded connection until it breaks.
pub(crate) fn accept<B>(
    server: &Arc<ApiServer>,
    mut req: Request<B>,
    node: &str,
) -> Response<crate::ResponseBody> {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !upgrade.eq_ignore_ascii_case(UPGRADE) {
        return crate::error_response(&api::ApiError::bad_request(format!(
            "the node tunnel needs `Upgrade: {UPGRADE}`"
        )));
    }
    if !apimachinery::names::is_dns1123_subdomain(node).is_empty() {
        return crate::error_response(&api::ApiError::bad_request(format!(
            "invalid node name {node:?}"
        )));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let server = server.clone();
    let node = node.to_string();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!("node {node}: tunnel upgrade failed: {e}");
                return;
            }
        };
        let (sender, connection) = match hyper::client::conn::http2::handshake::<_, _, TunnelBody>(
            hyper_util::rt::TokioExecutor::new(),
            upgraded,
        )
        .await
        {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("node {node}: tunnel handshake failed: {e}");
                return;
            }
        };
        let remote: Arc<dyn NodeConnection> = Arc::new(RemoteNode {
            node: node.clone(),
            sender,
        });
        server.connect_node(&node, remote.clone());
        tracing::info!("node {node}: agent connected through its tunnel");
        let _ = connection.await;
        server.disconnect_node(&node, &remote);
        tracing::info!("node {node}: agent tunnel closed");
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, UPGRADE)
        .body(crate::full(Bytes::new()))
        .unwrap()
}

/// A node agent at the other end of a tunnel.
struct RemoteNode {
    node: String,
    sender: hyper::client::conn::http2::SendRequest<TunnelBody>,
}

/// Request bodies down the tunnel: whole, or streamed (exec, port-forward).
type TunnelBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn whole(bytes: Bytes) -> TunnelBody {
    Full::new(bytes).boxed()
}

impl RemoteNode {
    async fn send(
        &self,
        request: Request<TunnelBody>,
    ) -> Result<Response<hyper::body::Incoming>, NodeError> {
        let mut sender = self.sender.clone();
        sender.send_request(request).await.map_err(|e| NodeError {
            code: 500,
            message: format!("node {}: the agent's tunnel failed: {e}", self.node),
        })
    }
}

#[async_trait::async_trait]
impl NodeConnection for RemoteNode {
    async fn container_log(&self, pod: &Value, request: &LogRequest) -> Result<LogBody, NodeError> {
        let body = serde_json::to_vec(&serde_json::json!({"pod": pod, "request": request}))
            .expect("serializing JSON values cannot fail");
        let req = Request::post("http://node/containerLog")
            .header(header::CONTENT_TYPE, "application/json")
            .body(whole(Bytes::from(body)))
            .expect("a valid request");
        let response = self.send(req).await?;
        let status = response.status();
        if !status.is_success() {
            let text = response
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(NodeError {
                code: status.as_u16(),
                message: String::from_utf8_lossy(&text).into_owned(),
            });
        }
        if request.follow {
            let stream = http_body_util::BodyStream::new(response.into_body());
            let data = futures::StreamExt::filter_map(stream, |frame| {
                std::future::ready(frame.ok().and_then(|f| f.into_data().ok()))
            });
            // A broken tunnel ends the stream, like a container that ended.
            Ok(LogBody::Follow(Box::pin(data)))
        } else {
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| NodeError {
                    code: 500,
                    message: format!("node {}: reading the log: {e}", self.node),
                })?
                .to_bytes();
            Ok(LogBody::Complete(bytes.to_vec()))
        }
    }

    async fn metrics(&self) -> NodeMetricsReport {
        let req = Request::get("http://node/metrics")
            .body(whole(Bytes::new()))
            .expect("a valid request");
        let Ok(response) = self.send(req).await else {
            return NodeMetricsReport::default();
        };
        let Ok(body) = response.into_body().collect().await else {
            return NodeMetricsReport::default();
        };
        serde_json::from_slice(&body.to_bytes()).unwrap_or_default()
    }
    async fn exec(&self, pod: &Value, request: &ExecRequest) -> Result<ProcessStreams, NodeError> {
        self.process("exec", pod, request).await
    }

    async fn attach(
        &self,
        pod: &Value,
        request: &ExecRequest,
    ) -> Result<ProcessStreams, NodeError> {
        self.process("attach", pod, request).await
    }

    async fn port_forward(&self, pod: &Value, port: u16) -> Result<Box<dyn Tunnel>, NodeError> {
        let (to_agent, body) = streamed_body();
        let _ = to_agent
            .send(preamble(&serde_json::json!({"pod": pod, "port": port})))
            .await;
        let req = Request::post("http://node/portForward")
            .body(body)
            .expect("a valid request");
        let response = self.send(req).await?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        // One end of an in-memory pipe is the caller's; the other is
        // copied to and from the HTTP/2 stream.
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (mut read_half, mut write_half) = tokio::io::split(ours);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match read_half.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to_agent
                            .send(Bytes::copy_from_slice(&buf[..n]))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut body = http_body_util::BodyStream::new(response.into_body());
            while let Some(Ok(frame)) = futures::StreamExt::next(&mut body).await {
                if let Ok(data) = frame.into_data() {
                    if write_half.write_all(&data).await.is_err() {
                        break;
                    }
                }
            }
            let _ = write_half.shutdown().await;
        });
        Ok(Box::new(theirs))
    }
}

impl RemoteNode {
    async fn process(
        &self,
        verb: &str,
        pod: &Value,
        request: &ExecRequest,
    ) -> Result<ProcessStreams, NodeError> {
        let (to_agent, body) = streamed_body();
        let _ = to_agent
            .send(preamble(
                &serde_json::json!({"pod": pod, "request": request}),
            ))
            .await;
        let req = Request::post(format!("http://node/{verb}"))
            .body(body)
            .expect("a valid request");
        let response = self.send(req).await?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        let stdin = request.stdin.then(|| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
            let to_agent = to_agent.clone();
            tokio::spawn(async move {
                while let Some(data) = rx.recv().await {
                    if to_agent.send(frame(0, &data)).await.is_err() {
                        return;
                    }
                }
                let _ = to_agent.send(frame(255, &[])).await;
            });
            tx
        });
        let resize = request.tty.then(|| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<TerminalSize>(4);
            let to_agent = to_agent.clone();
            tokio::spawn(async move {
                while let Some(size) = rx.recv().await {
                    let json = serde_json::to_vec(&size).unwrap_or_default();
                    if to_agent.send(frame(4, &json)).await.is_err() {
                        return;
                    }
                }
            });
            tx
        });
        let (stdout_tx, stdout) = tokio::sync::mpsc::channel::<Bytes>(16);
        let (stderr_tx, stderr) = tokio::sync::mpsc::channel::<Bytes>(16);
        let (exit_tx, exit) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            // Keeps the request body open while the response runs.
            let _keep = to_agent;
            let mut reader = FrameReader::new(response.into_body());
            let mut stdout_tx = Some(stdout_tx);
            let mut stderr_tx = Some(stderr_tx);
            let mut exit_tx = Some(exit_tx);
            while let Some((channel, data)) = reader.frame().await {
                let target = match channel {
                    1 => &mut stdout_tx,
                    2 => &mut stderr_tx,
                    3 => {
                        let status: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
                        let status = match status.get("code").and_then(Value::as_i64) {
                            Some(code) => ExitStatus::Exited(code as i32),
                            None => ExitStatus::Error(
                                status
                                    .get("error")
                                    .and_then(Value::as_str)
                                    .unwrap_or("the agent's tunnel failed")
                                    .to_string(),
                            ),
                        };
                        if let Some(tx) = exit_tx.take() {
                            let _ = tx.send(status);
                        }
                        continue;
                    }
                    _ => continue,
                };
                if data.is_empty() {
                    *target = None;
                } else if let Some(tx) = target {
                    let _ = tx.send(data).await;
                }
            }
            if let Some(tx) = exit_tx.take() {
                let _ = tx.send(ExitStatus::Error("the agent's tunnel closed".into()));
            }
        });
        Ok(ProcessStreams {
            stdin,
            stdout: request.stdout.then_some(stdout),
            stderr: request.stderr.then_some(stderr),
            resize,
            exit,
        })
    }
}

/// A response body fed from a channel (the agent's side).
fn response_channel() -> (tokio::sync::mpsc::Sender<Bytes>, crate::ResponseBody) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(http_body::Frame::data(b)), rx))
    });
    (tx, BodyExt::boxed(http_body_util::StreamBody::new(stream)))
}

/// The agent's side of an exec/attach: stdin and resizes from the request
/// frames, stdout/stderr and then the exit into the response.
fn serve_process(
    mut reader: FrameReader<hyper::body::Incoming>,
    streams: ProcessStreams,
) -> Response<crate::ResponseBody> {
    let ProcessStreams {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = streams;
    tokio::spawn(async move {
        let mut stdin = stdin;
        while let Some((channel, data)) = reader.frame().await {
            match channel {
                0 => {
                    if let Some(tx) = &stdin {
                        let _ = tx.send(data).await;
                    }
                }
                4 => {
                    if let (Some(tx), Ok(size)) = (&resize, serde_json::from_slice(&data)) {
                        let _ = tx.send(size).await;
                    }
                }
                255 => stdin = None,
                _ => {}
            }
        }
    });
    let (tx, body) = response_channel();
    tokio::spawn(async move {
        let pump = |rx: Option<tokio::sync::mpsc::Receiver<Bytes>>, channel: u8| {
            let tx = tx.clone();
            async move {
                if let Some(mut rx) = rx {
                    while let Some(data) = rx.recv().await {
                        if tx.send(frame(channel, &data)).await.is_err() {
                            return;
                        }
                    }
                    let _ = tx.send(frame(channel, &[])).await;
                }
            }
        };
        futures::future::join(pump(stdout, 1), pump(stderr, 2)).await;
        let status = match exit.await {
            Ok(ExitStatus::Exited(code)) => serde_json::json!({"code": code}),
            Ok(ExitStatus::Error(message)) => serde_json::json!({"error": message}),
            Err(_) => serde_json::json!({"error": "the session ended without an exit status"}),
        };
        let _ = tx
            .send(frame(3, &serde_json::to_vec(&status).unwrap_or_default()))
            .await;
    });
    Response::builder()
        .status(StatusCode::OK)
        .body(body)
        .unwrap()
}

/// A request body fed from a channel.
fn streamed_body() -> (tokio::sync::mpsc::Sender<Bytes>, TunnelBody) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(http_body::Frame::data(b)), rx))
    });
    (tx, BodyExt::boxed(http_body_util::StreamBody::new(stream)))
}

fn preamble(value: &Value) -> Bytes {
    let json = serde_json::to_vec(value).expect("serializing JSON values cannot fail");
    let mut out = Vec::with_capacity(4 + json.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    Bytes::from(out)
}

fn frame(channel: u8, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + data.len());
    out.push(channel);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    Bytes::from(out)
}

async fn error_of(response: Response<hyper::body::Incoming>) -> NodeError {
    let code = response.status().as_u16();
    let text = response
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    NodeError {
        code,
        message: String::from_utf8_lossy(&text).into_owned(),
    }
}

/// Reads the preamble and the frames of a streamed body.
struct FrameReader<B> {
    body: http_body_util::BodyStream<B>,
    buffer: Vec<u8>,
    done: bool,
}

impl<B> FrameReader<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    fn new(body: B) -> Self {
        FrameReader {
            body: http_body_util::BodyStream::new(body),
            buffer: Vec::new(),
            done: false,
        }
    }

    /// At least `n` bytes buffered, or `false` at the end of the body.
    async fn fill(&mut self, n: usize) -> bool {
        while self.buffer.len() < n {
            if self.done {
                return false;
            }
            match futures::StreamExt::next(&mut self.body).await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                _ => self.done = true,
            }
        }
        true
    }

    async fn preamble(&mut self) -> Option<Value> {
        if !self.fill(4).await {
            return None;
        }
        let len = u32::from_be_bytes(self.buffer[..4].try_into().ok()?) as usize;
        if !self.fill(4 + len).await {
            return None;
        }
        let json: Vec<u8> = self.buffer.drain(..4 + len).skip(4).collect();
        serde_json::from_slice(&json).ok()
    }

    async fn frame(&mut self) -> Option<(u8, Bytes)> {
        if !self.fill(5).await {
            return None;
        }
        let len = u32::from_be_bytes(self.buffer[1..5].try_into().ok()?) as usize;
        if !self.fill(5 + len).await {
            return None;
        }
        let channel = self.buffer[0];
        let data: Vec<u8> = self.buffer.drain(..5 + len).skip(5).collect();
        Some((channel, Bytes::from(data)))
    }

    /// Whatever is buffered, then the rest of the body as it comes.
    async fn raw(&mut self) -> Option<Bytes> {
        if !self.buffer.is_empty() {
            return Some(Bytes::from(std::mem::take(&mut self.buffer)));
        }
        if !self.fill(1).await {
            return None;
        }
        Some(Bytes::from(std::mem::take(&mut self.buffer)))
    }
}

/// The agent's side: serves `node`'s API over the upgraded connection `io`
/// until it closes.
pub async fn serve<I>(node: Arc<dyn NodeConnection>, io: I) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let node = node.clone();
        async move { Ok::<_, Infallible>(answer(node.as_ref(), req).await) }
    });
    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(io, service)
        .await
}

async fn answer(
    node: &dyn NodeConnection,
    req: Request<hyper::body::Incoming>,
) -> Response<crate::ResponseBody> {
    let plain = |code: StatusCode, text: String| {
        Response::builder()
            .status(code)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(crate::full(text))
            .unwrap()
    };
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics") => {
            let report = node.metrics().await;
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(crate::full(
                    serde_json::to_vec(&report).expect("serializing a report cannot fail"),
                ))
                .unwrap()
        }
        ("POST", "/containerLog") => {
            #[derive(serde::Deserialize)]
            struct Ask {
                pod: Value,
                request: LogRequest,
            }
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return plain(StatusCode::BAD_REQUEST, format!("reading: {e}")),
            };
            let ask: Ask = match serde_json::from_slice(&body) {
                Ok(a) => a,
                Err(e) => return plain(StatusCode::BAD_REQUEST, format!("decoding: {e}")),
            };
            match node.container_log(&ask.pod, &ask.request).await {
                Err(e) => plain(
                    StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    e.message,
                ),
                Ok(LogBody::Complete(bytes)) => {
                    plain(StatusCode::OK, String::new()).map(|_| crate::full(bytes))
                }
                Ok(LogBody::Follow(stream)) => {
                    let frames = futures::StreamExt::map(stream, |b| {
                        Ok::<_, Infallible>(http_body::Frame::data(b))
                    });
                    Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, "text/plain")
                        .body(BodyExt::boxed(http_body_util::StreamBody::new(frames)))
                        .unwrap()
                }
            }
        }
        ("POST", "/exec") | ("POST", "/attach") => {
            let attach = req.uri().path() == "/attach";
            let mut reader = FrameReader::new(req.into_body());
            let Some(preamble) = reader.preamble().await else {
                return plain(StatusCode::BAD_REQUEST, "no preamble".into());
            };
            let request: ExecRequest = match serde_json::from_value(
                preamble.get("request").cloned().unwrap_or_default(),
            ) {
                Ok(r) => r,
                Err(e) => return plain(StatusCode::BAD_REQUEST, format!("decoding: {e}")),
            };
            let pod = preamble.get("pod").cloned().unwrap_or_default();
            let streams = if attach {
                node.attach(&pod, &request).await
            } else {
                node.exec(&pod, &request).await
            };
            let streams = match streams {
                Ok(s) => s,
                Err(e) => {
                    return plain(
                        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                        e.message,
                    )
                }
            };
            serve_process(reader, streams)
        }
        ("POST", "/portForward") => {
            let mut reader = FrameReader::new(req.into_body());
            let Some(preamble) = reader.preamble().await else {
                return plain(StatusCode::BAD_REQUEST, "no preamble".into());
            };
            let pod = preamble.get("pod").cloned().unwrap_or_default();
            let Some(port) = preamble
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
            else {
                return plain(StatusCode::BAD_REQUEST, "no port".into());
            };
            let tunnel = match node.port_forward(&pod, port).await {
                Ok(t) => t,
                Err(e) => {
                    return plain(
                        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                        e.message,
                    )
                }
            };
            let (mut read_half, mut write_half) = tokio::io::split(tunnel);
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                while let Some(data) = reader.raw().await {
                    if write_half.write_all(&data).await.is_err() {
                        break;
                    }
                }
                let _ = write_half.shutdown().await;
            });
            let (tx, body) = response_channel();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match read_half.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
            Response::builder()
                .status(StatusCode::OK)
                .body(body)
                .unwrap()
        }
        (method, path) => plain(
            StatusCode::NOT_FOUND,
            format!("the node API has no {method} {path}"),
        ),
    }
}
