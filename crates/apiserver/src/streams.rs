//! The streaming subresources `pods/exec`, `pods/attach` and
//! `pods/portforward`, over WebSocket (hyper's upgrade + tungstenite).
//!
//! exec/attach speak the channel protocols (`v5.channel.k8s.io` …
//! `channel.k8s.io`): each binary message is one channel byte then data —
//! 0 stdin, 1 stdout, 2 stderr, 3 error (a metav1.Status from v4 on, which
//! client-go turns into the exit code), 4 resize (`{"Width","Height"}`, v3
//! on) and, in v5, 255 close (`[255, channel]`: the client closed its
//! stdin). Port forwarding speaks either the channel protocol (per port
//! `2i` data and `2i+1` error, each channel's first server message the
//! port as two little-endian bytes: kube-rs, the Python client) or SPDY/3.1
//! tunnelled through the WebSocket (`SPDY/3.1+portforward.k8s.io`:
//! kubectl ≥ 1.31, see [`crate::spdy`]). SPDY/3.1 over a plain HTTP/1.1
//! Upgrade (`X-Stream-Protocol-Version`: `v4.channel.k8s.io` … for
//! exec/attach, one SPDY stream per channel named by its `streamType`
//! header; `portforward.k8s.io`) is served too: what client-go before 1.30
//! speaks, and kubectl with its WebSocket feature gates off.

use std::collections::HashMap;
use std::sync::Arc;

use api::ApiError;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{header, Response, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::nodes::{ExecRequest, ExitStatus, NodeConnection, ProcessStreams, TerminalSize};
use crate::request::Query;
use crate::spdy;
use crate::ResponseBody;

/// Which subresource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
    PortForward,
}

/// A negotiated WebSocket subprotocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `channel.k8s.io` (v1), `v2.channel.k8s.io`, … `v5.channel.k8s.io`.
    Channel(u8),
    /// `SPDY/3.1+portforward.k8s.io`.
    SpdyPortForward,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Channel(1) => "channel.k8s.io",
            Protocol::Channel(2) => "v2.channel.k8s.io",
            Protocol::Channel(3) => "v3.channel.k8s.io",
            Protocol::Channel(4) => "v4.channel.k8s.io",
            Protocol::Channel(_) => "v5.channel.k8s.io",
            Protocol::SpdyPortForward => "SPDY/3.1+portforward.k8s.io",
        }
    }
}

/// The first protocol the client offers that this server speaks for
/// `kind` (`portforward.k8s.io` is the port-forward channel protocol).
pub fn negotiate(kind: Kind, offered: &[&str]) -> Option<(Protocol, &'static str)> {
    offered.iter().find_map(|p| {
        let protocol = match (kind, p.trim()) {
            (_, "v5.channel.k8s.io") => Protocol::Channel(5),
            (_, "v4.channel.k8s.io") => Protocol::Channel(4),
            (_, "v3.channel.k8s.io") => Protocol::Channel(3),
            (_, "v2.channel.k8s.io") => Protocol::Channel(2),
            (_, "channel.k8s.io") => Protocol::Channel(1),
            (Kind::PortForward, "portforward.k8s.io") => {
                return Some((Protocol::Channel(4), "portforward.k8s.io"))
            }
            (Kind::PortForward, "SPDY/3.1+portforward.k8s.io") => Protocol::SpdyPortForward,
            _ => return None,
        };
        Some((protocol, protocol.name()))
    })
}

/// Every value of a repeated query parameter (`command`, `ports`).
pub fn all_values(raw_query: Option<&str>, key: &str) -> Vec<String> {
    url::form_urlencoded::parse(raw_query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// One channel-protocol message.
pub fn channel_message(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + data.len());
    out.push(channel);
    out.extend_from_slice(data);
    out
}

/// What the error channel carries at the end of an exec/attach: from v4 a
/// metav1.Status (client-go reads the exit code from the `ExitCode`
/// cause), before that the message alone (nothing on success).
pub fn exit_message(version: u8, command: &[String], status: &ExitStatus) -> Option<Vec<u8>> {
    let (status_json, text) = match status {
        ExitStatus::Exited(0) => (json!({"metadata": {}, "status": "Success"}), None),
        ExitStatus::Exited(code) => {
            let message = format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            );
            (
                json!({
                    "metadata": {},
                    "status": "Failure",
                    "message": message,
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
                }),
                Some(message),
            )
        }
        ExitStatus::Error(message) => (
            json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"}),
            Some(message.clone()),
        ),
    };
    if version >= 4 {
        Some(serde_json::to_vec(&status_json).expect("serializing a Value cannot fail"))
    } else {
        text.map(String::into_bytes)
    }
}

/// What a channel-protocol client sent, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    Stdin(Vec<u8>),
    Resize(TerminalSize),
    /// v5: the client will send nothing more on this channel.
    Close(u8),
    Ignored,
}

pub fn decode_input(version: u8, message: &[u8]) -> Input {
    match message.split_first() {
        Some((0, data)) => Input::Stdin(data.to_vec()),
        Some((4, data)) if version >= 3 => match serde_json::from_slice(data) {
            Ok(size) => Input::Resize(size),
            Err(_) => Input::Ignored,
        },
        Some((255, [channel, ..])) if version >= 5 => Input::Close(*channel),
        _ => Input::Ignored,
    }
}

/// The port numbers of a port-forward request (`ports=80&ports=8080` or
/// `ports=80,8080`).
pub fn parse_ports(raw_query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for value in all_values(raw_query, "ports") {
        for p in value.split(',').filter(|p| !p.trim().is_empty()) {
            match p.trim().parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => return Err(format!("unable to parse \"{p}\" as a port")),
            }
        }
    }
    Ok(ports)
}

fn node_of(
    server: &Arc<crate::ApiServer>,
    pod: &Value,
    container: Option<&str>,
) -> Result<Arc<dyn NodeConnection>, ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let Some(node) = node else {
        return Err(ApiError::bad_request(match container {
            Some(c) => format!(
                "container \"{c}\" in pod \"{name}\" is waiting to start: pod has not been scheduled"
            ),
            None => format!("pod {name} does not have a host assigned"),
        }));
    };
    server.node_connection(node).ok_or_else(|| {
        ApiError::new(
            500,
            "InternalError",
            format!("no agent of node \"{node}\" is connected to this server"),
        )
    })
}

/// `GET|POST pods/NAME/{exec,attach,portforward}`: validates, asks the
/// node (errors become a Status before the upgrade), then answers 101 and
/// serves the session on the upgraded connection.
pub(crate) async fn serve(
    server: &Arc<crate::ApiServer>,
    pod: Value,
    kind: Kind,
    mut parts: http::request::Parts,
    query: &Query,
) -> Result<Response<ResponseBody>, ApiError> {
    let header_value = |h: header::HeaderName| {
        parts
            .headers
            .get_all(h)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",")
    };
    let raw_query = parts.uri.query().map(str::to_string);
    // Errors about the pod and container come first: kubectl retries a
    // failed WebSocket upgrade over SPDY and shows that attempt's error.
    let negotiate_upgrade = || -> Result<(Upgrade, Protocol, &'static str), ApiError> {
        let upgrade = header_value(header::UPGRADE);
        let websocket = upgrade
            .split(',')
            .any(|u| u.trim().eq_ignore_ascii_case("websocket"));
        let spdy = upgrade
            .split(',')
            .any(|u| u.trim().eq_ignore_ascii_case("SPDY/3.1"));
        if spdy && !websocket {
            let offered =
                header_value(header::HeaderName::from_static("x-stream-protocol-version"));
            let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
            let Some((protocol, protocol_name)) = negotiate_spdy(kind, &offered) else {
                return Err(ApiError::new(
                    403,
                    "Forbidden",
                    format!(
                        "none of the offered stream protocols [{}] is supported",
                        offered.join(", ")
                    ),
                ));
            };
            return Ok((Upgrade::Spdy, protocol, protocol_name));
        }
        let key = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned();
        let (Some(key), true) = (key, websocket) else {
            return Err(ApiError::bad_request(
                "upgrade request required (WebSocket, or SPDY/3.1)",
            ));
        };
        let offered = header_value(header::SEC_WEBSOCKET_PROTOCOL);
        let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
        let Some((protocol, protocol_name)) = negotiate(kind, &offered) else {
            return Err(ApiError::bad_request(format!(
                "none of the offered WebSocket subprotocols [{}] is supported",
                offered.join(", ")
            )));
        };
        Ok((Upgrade::WebSocket(key), protocol, protocol_name))
    };
    let (session, key, protocol_name) = match kind {
        Kind::Exec | Kind::Attach => {
            let name = pod
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let container = crate::nodes::choose_container(&pod, query)?;
            let phase = pod
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("");
            if matches!(phase, "Succeeded" | "Failed") {
                return Err(ApiError::bad_request(format!(
                    "cannot {} a container in a completed pod; current phase is {phase}",
                    if kind == Kind::Exec {
                        "exec into"
                    } else {
                        "attach to"
                    }
                )));
            }
            let request = ExecRequest {
                container: container.clone(),
                command: if kind == Kind::Exec {
                    all_values(raw_query.as_deref(), "command")
                } else {
                    Vec::new()
                },
                stdin: query.flag("stdin"),
                stdout: query.flag("stdout"),
                stderr: query.flag("stderr"),
                tty: query.flag("tty"),
            };
            if kind == Kind::Exec && request.command.is_empty() {
                return Err(ApiError::bad_request("you must specify at least 1 command"));
            }
            if !(request.stdin || request.stdout || request.stderr) {
                return Err(ApiError::bad_request(
                    "you must specify at least 1 of stdin, stdout, stderr",
                ));
            }
            let (key, protocol, protocol_name) = negotiate_upgrade()?;
            let Protocol::Channel(version) = protocol else {
                return Err(ApiError::bad_request(format!(
                    "{protocol_name} is for port forwarding"
                )));
            };
            let node = node_of(server, &pod, Some(&container))?;
            // The node's errors go on the error channel after the upgrade
            // (as the kubelet's do): an HTTP error here would make kubectl
            // retry over SPDY and show that attempt's error instead.
            let streams = match kind {
                Kind::Exec => node.exec(&pod, &request).await,
                _ => node.attach(&pod, &request).await,
            }
            .map_err(|e| e.message);
            tracing::debug!("{kind:?} into {name}/{container}: {protocol_name}");
            (
                Session::Exec {
                    version,
                    command: request.command,
                    streams,
                },
                key,
                protocol_name,
            )
        }
        Kind::PortForward => {
            let node = node_of(server, &pod, None)?;
            let (key, protocol, protocol_name) = negotiate_upgrade()?;
            let session = match protocol {
                Protocol::Channel(_) if matches!(key, Upgrade::Spdy) => {
                    Session::SpdyPortForward { node, pod }
                }
                Protocol::Channel(_) => {
                    let ports = parse_ports(raw_query.as_deref()).map_err(ApiError::bad_request)?;
                    if ports.is_empty() {
                        return Err(ApiError::bad_request(
                            "query parameter \"ports\" is required",
                        ));
                    }
                    Session::PortForward { node, pod, ports }
                }
                Protocol::SpdyPortForward => Session::SpdyPortForward { node, pod },
            };
            (session, key, protocol_name)
        }
    };
    let is_spdy = matches!(key, Upgrade::Spdy);
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return Err(ApiError::new(
            500,
            "InternalError",
            "this connection cannot be upgraded",
        ));
    };
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("websocket upgrade failed: {e}");
                return;
            }
        };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        if is_spdy {
            match session {
                Session::Exec {
                    version,
                    command,
                    streams,
                } => run_spdy_exec(Wire::Raw(io), version, &command, streams).await,
                Session::SpdyPortForward { node, pod } => {
                    run_spdy_port_forward(Wire::Raw(io), node, pod).await
                }
                Session::PortForward { .. } => {}
            }
            return;
        }
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        match session {
            Session::Exec {
                version,
                command,
                streams,
            } => run_exec(ws, version, &command, streams).await,
            Session::PortForward { node, pod, ports } => {
                run_port_forward(ws, node, &pod, &ports).await
            }
            Session::SpdyPortForward { node, pod } => {
                run_spdy_port_forward(Wire::WebSocket(Box::new(ws)), node, pod).await
            }
        }
    });
    let key = match key {
        Upgrade::Spdy => {
            return Ok(Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::CONNECTION, "Upgrade")
                .header(header::UPGRADE, "SPDY/3.1")
                .header("X-Stream-Protocol-Version", protocol_name)
                .body(crate::full(Bytes::new()))
                .unwrap())
        }
        Upgrade::WebSocket(key) => key,
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol_name)
        .body(crate::full(Bytes::new()))
        .unwrap())
}

/// How the connection is upgraded.
enum Upgrade {
    /// With this `Sec-WebSocket-Key`.
    WebSocket(http::HeaderValue),
    /// `Upgrade: SPDY/3.1`.
    Spdy,
}

/// The first stream protocol a SPDY client offers (`X-Stream-Protocol-
/// Version`) that this server speaks for `kind`: the channel protocols up
/// to v4 for exec/attach (v5 is WebSocket-only), `portforward.k8s.io`.
pub fn negotiate_spdy(kind: Kind, offered: &[&str]) -> Option<(Protocol, &'static str)> {
    offered.iter().find_map(|p| match (kind, p.trim()) {
        (Kind::PortForward, "portforward.k8s.io") => {
            Some((Protocol::Channel(4), "portforward.k8s.io"))
        }
        (Kind::PortForward, _) => None,
        (_, "v4.channel.k8s.io") => Some((Protocol::Channel(4), "v4.channel.k8s.io")),
        (_, "v3.channel.k8s.io") => Some((Protocol::Channel(3), "v3.channel.k8s.io")),
        (_, "v2.channel.k8s.io") => Some((Protocol::Channel(2), "v2.channel.k8s.io")),
        (_, "channel.k8s.io") => Some((Protocol::Channel(1), "channel.k8s.io")),
        _ => None,
    })
}

/// What SPDY frames travel in: a WebSocket's binary messages (kubectl's
/// port-forward tunnel) or the upgraded connection itself.
enum Wire<S> {
    WebSocket(Box<WebSocketStream<S>>),
    Raw(S),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    /// The next bytes from the client (cancel-safe); `None` at its end.
    async fn recv(&mut self) -> Option<Vec<u8>> {
        match self {
            Wire::WebSocket(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(data))) => return Some(data.to_vec()),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                    Some(Ok(_)) => continue,
                }
            },
            Wire::Raw(io) => {
                let mut buf = vec![0u8; 16 * 1024];
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some(buf)
                    }
                }
            }
        }
    }

    async fn send(&mut self, bytes: Vec<u8>) -> bool {
        match self {
            Wire::WebSocket(ws) => ws.send(Message::Binary(bytes.into())).await.is_ok(),
            Wire::Raw(io) => io.write_all(&bytes).await.is_ok() && io.flush().await.is_ok(),
        }
    }
}

enum Session {
    Exec {
        version: u8,
        command: Vec<String>,
        streams: Result<ProcessStreams, String>,
    },
    PortForward {
        node: Arc<dyn NodeConnection>,
        pod: Value,
        ports: Vec<u16>,
    },
    SpdyPortForward {
        node: Arc<dyn NodeConnection>,
        pod: Value,
    },
}

/// Copies between the WebSocket and the process until the process has
/// exited and its output is drained, then sends the exit status.
async fn run_exec<S>(
    mut ws: WebSocketStream<S>,
    version: u8,
    command: &[String],
    streams: Result<ProcessStreams, String>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let streams = match streams {
        Ok(s) => s,
        Err(message) => {
            if let Some(m) = exit_message(version, command, &ExitStatus::Error(message)) {
                let _ = ws
                    .send(Message::Binary(channel_message(3, &m).into()))
                    .await;
            }
            close(&mut ws).await;
            return;
        }
    };
    let ProcessStreams {
        mut stdin,
        mut stdout,
        mut stderr,
        resize,
        mut exit,
    } = streams;
    let mut status: Option<ExitStatus> = None;
    let mut client_open = true;
    while stdout.is_some() || stderr.is_some() || status.is_none() {
        tokio::select! {
            message = ws.next(), if client_open => match message {
                Some(Ok(Message::Binary(data))) => match decode_input(version, &data) {
                    Input::Stdin(bytes) => {
                        if let Some(tx) = &stdin {
                            if tx.send(Bytes::from(bytes)).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    Input::Resize(size) => {
                        if let Some(tx) = &resize {
                            let _ = tx.send(size).await;
                        }
                    }
                    Input::Close(0) => stdin = None,
                    Input::Close(_) | Input::Ignored => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // The client is gone: nobody reads the output any more.
                    return;
                }
                Some(Ok(_)) => {}
            },
            chunk = async { stdout.as_mut().expect("guarded").recv().await }, if stdout.is_some() => match chunk {
                Some(bytes) => {
                    if ws.send(Message::Binary(channel_message(1, &bytes).into())).await.is_err() {
                        client_open = false;
                    }
                }
                None => stdout = None,
            },
            chunk = async { stderr.as_mut().expect("guarded").recv().await }, if stderr.is_some() => match chunk {
                Some(bytes) => {
                    if ws.send(Message::Binary(channel_message(2, &bytes).into())).await.is_err() {
                        client_open = false;
                    }
                }
                None => stderr = None,
            },
            result = &mut exit, if status.is_none() => {
                status = Some(result.unwrap_or_else(|_| ExitStatus::Error("the node ended the session without an exit status".into())));
            }
        }
        if !client_open {
            return;
        }
    }
    drop(stdin);
    if let Some(message) = exit_message(version, command, &status.expect("loop ends with one")) {
        let _ = ws
            .send(Message::Binary(channel_message(3, &message).into()))
            .await;
    }
    close(&mut ws).await;
}

/// A normal closure (1000): client-go takes a close without a status code
/// for an error.
async fn close<S>(ws: &mut WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = ws
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
    // Let the client's close frame arrive so the TCP connection ends cleanly.
    while let Some(Ok(_)) = ws.next().await {}
}

/// The channel protocol for ports: connects every port at once, then
/// copies both ways until every connection has ended.
async fn run_port_forward<S>(
    mut ws: WebSocketStream<S>,
    node: Arc<dyn NodeConnection>,
    pod: &Value,
    ports: &[u16],
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // (port index, bytes read; None at EOF)
    let (read_tx, mut read_rx) = mpsc::channel::<(usize, Event)>(16);
    let mut writers: HashMap<usize, mpsc::Sender<Bytes>> = HashMap::new();
    let mut open = 0;
    for (i, port) in ports.iter().enumerate() {
        let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
        let le = port.to_le_bytes();
        for channel in [data, error] {
            if ws
                .send(Message::Binary(channel_message(channel, &le).into()))
                .await
                .is_err()
            {
                return;
            }
        }
        match node.port_forward(pod, *port).await {
            Ok(tunnel) => {
                let (write_tx, write_rx) = mpsc::channel(16);
                writers.insert(i, write_tx);
                open += 1;
                tokio::spawn(pump(tunnel, write_rx, read_tx.clone(), i));
            }
            Err(e) => {
                let _ = ws
                    .send(Message::Binary(
                        channel_message(error, e.message.as_bytes()).into(),
                    ))
                    .await;
            }
        }
    }
    drop(read_tx);
    while open > 0 {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    if let Some((channel, bytes)) = data.split_first() {
                        // Data channels are even; the client writes nothing
                        // on error channels.
                        if channel % 2 == 0 {
                            if let Some(tx) = writers.get(&(*channel as usize / 2)) {
                                let _ = tx.send(Bytes::copy_from_slice(bytes)).await;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            read = read_rx.recv() => match read {
                Some((i, Event::Data(bytes))) => {
                    if ws.send(Message::Binary(channel_message((2 * i) as u8, &bytes).into())).await.is_err() {
                        return;
                    }
                }
                Some((i, Event::End | Event::Failed(_))) => {
                    writers.remove(&i);
                    open -= 1;
                }
                None => break,
            },
        }
    }
    close(&mut ws).await;
}

/// What happened on one forwarded connection, in order.
enum Event {
    Data(Bytes),
    /// The connection could not be made (the message for the user).
    Failed(String),
    End,
}

/// Copies a tunnel: `writes` into it (shut down when the sender goes),
/// what it yields out to `reads` tagged with `tag`, then [`Event::End`].
async fn pump<T>(
    tunnel: Box<dyn crate::nodes::Tunnel>,
    mut writes: mpsc::Receiver<Bytes>,
    reads: mpsc::Sender<(T, Event)>,
    tag: T,
) where
    T: Clone + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(tunnel);
    let writing = tokio::spawn(async move {
        while let Some(bytes) = writes.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if reads
                    .send((
                        tag.clone(),
                        Event::Data(Bytes::copy_from_slice(&buffer[..n])),
                    ))
                    .await
                    .is_err()
                {
                    writing.abort();
                    return;
                }
            }
        }
    }
    let _ = reads.send((tag, Event::End)).await;
    // The read side ended: the peer is done; stop writing too.
    writing.abort();
}

/// exec/attach over SPDY/3.1 (a plain HTTP Upgrade): the client opens one
/// stream per channel (`streamType` error, stdin, stdout, stderr, resize);
/// each is answered, output goes on its stream once the client has made
/// it, and the exit status goes on the error stream (a Status from v4 on,
/// as on the WebSocket's channel 3) before every stream is finished.
async fn run_spdy_exec<S>(
    mut wire: Wire<S>,
    version: u8,
    command: &[String],
    streams: Result<ProcessStreams, String>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut decoder = spdy::Decoder::default();
    let mut encoder = spdy::Encoder::default();
    // stream type -> stream id, as the client makes them.
    let mut ids: HashMap<String, u32> = HashMap::new();
    let (mut stdin, mut stdout, mut stderr, resize, mut exit) = match streams {
        Ok(p) => (p.stdin, p.stdout, p.stderr, p.resize, Some(p.exit)),
        Err(message) => (None, None, None, None, {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(ExitStatus::Error(message));
            Some(rx)
        }),
    };
    // What is written before its stream exists waits here (the client
    // makes its streams right after the upgrade, error first).
    let mut held: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let mut status: Option<ExitStatus> = None;
    let mut resize_buffer: Vec<u8> = Vec::new();
    // The streams the client makes for this session, as the kubelet waits
    // for them: a command that ends before the client has made them all
    // must not close the session under a stream still being made (kubectl
    // then fails with "Timeout occurred" or a broken pipe).
    let mut expected: Vec<&'static str> = vec!["error"];
    if stdin.is_some() {
        expected.push("stdin");
    }
    if stdout.is_some() {
        expected.push("stdout");
    }
    if stderr.is_some() {
        expected.push("stderr");
    }
    if resize.is_some() && version >= 3 {
        expected.push("resize");
    }
    // Once the command is done: how long to wait for streams still missing.
    let mut missing_deadline: Option<tokio::time::Instant> = None;
    loop {
        let mut out: Vec<u8> = Vec::new();
        let waiting_for_streams = missing_deadline.is_some();
        tokio::select! {
            _ = async { tokio::time::sleep_until(missing_deadline.expect("guarded")).await }, if waiting_for_streams => {
                expected.clear();
            }
            data = wire.recv() => {
                let Some(data) = data else { return };
                decoder.feed(&data);
                loop {
                    let frame = match decoder.next_frame() {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!("exec session: {e}");
                            let _ = wire.send(encoder.goaway(0, 1)).await;
                            return;
                        }
                    };
                    match frame {
                        spdy::Frame::SynStream { stream_id, headers, .. } => {
                            out.extend(encoder.syn_reply(stream_id, false, &spdy::Headers::new()));
                            let kind = headers.get("streamtype").cloned().unwrap_or_default();
                            ids.insert(kind, stream_id);
                        }
                        spdy::Frame::Data { stream_id, fin, data } => {
                            if Some(&stream_id) == ids.get("stdin") {
                                if !data.is_empty() {
                                    if let Some(tx) = &stdin {
                                        if tx.send(Bytes::from(data)).await.is_err() {
                                            stdin = None;
                                        }
                                    }
                                }
                                if fin {
                                    stdin = None;
                                }
                            } else if Some(&stream_id) == ids.get("resize") {
                                // One JSON object per size, back to back.
                                resize_buffer.extend_from_slice(&data);
                                let mut objects = serde_json::Deserializer::from_slice(&resize_buffer)
                                    .into_iter::<TerminalSize>();
                                let mut sizes = Vec::new();
                                let mut used = 0;
                                while let Some(Ok(size)) = objects.next() {
                                    used = objects.byte_offset();
                                    sizes.push(size);
                                }
                                resize_buffer.drain(..used);
                                for size in sizes {
                                    if let Some(tx) = &resize {
                                        let _ = tx.send(size).await;
                                    }
                                }
                            }
                        }
                        spdy::Frame::RstStream { stream_id, .. }
                            if Some(&stream_id) == ids.get("stdin") =>
                        {
                            stdin = None;
                        }
                        spdy::Frame::Ping(id) => out.extend(encoder.ping(id)),
                        spdy::Frame::GoAway { .. } => return,
                        _ => {}
                    }
                }
            }
            chunk = async { stdout.as_mut().expect("guarded").recv().await }, if stdout.is_some() => match chunk {
                Some(bytes) => held.push(("stdout", bytes.to_vec())),
                None => stdout = None,
            },
            chunk = async { stderr.as_mut().expect("guarded").recv().await }, if stderr.is_some() => match chunk {
                Some(bytes) => held.push(("stderr", bytes.to_vec())),
                None => stderr = None,
            },
            result = async { exit.as_mut().expect("guarded").await }, if exit.is_some() => {
                exit = None;
                status = Some(result.unwrap_or_else(|_| ExitStatus::Error("the node ended the session without an exit status".into())));
            }
        }
        // Output whose stream exists goes out, in order.
        while let Some((kind, _)) = held.first() {
            let Some(&id) = ids.get(*kind) else { break };
            let (_, bytes) = held.remove(0);
            out.extend(encoder.data(id, false, &bytes));
        }
        let done = stdout.is_none() && stderr.is_none() && held.is_empty();
        let all_streams = expected.iter().all(|kind| ids.contains_key(*kind));
        if done && status.is_some() && !all_streams && missing_deadline.is_none() {
            missing_deadline = Some(tokio::time::Instant::now() + STREAM_CREATION_WAIT);
        }
        if let (true, true, Some(st)) = (done, all_streams, &status) {
            if let Some(&error) = ids.get("error") {
                drop(stdin.take());
                if let Some(message) = exit_message(version, command, st) {
                    out.extend(encoder.data(error, false, &message));
                }
                for (_, id) in ids.iter() {
                    out.extend(encoder.data(*id, true, b""));
                }
                let _ = wire.send(out).await;
                if let Wire::Raw(io) = &mut wire {
                    let _ = io.shutdown().await;
                }
                // The client may still be writing (its own FINs, a resize):
                // read until it closes, so that those writes do not meet a
                // reset connection.
                let drain = async { while wire.recv().await.is_some() {} };
                let _ = tokio::time::timeout(STREAM_CREATION_WAIT, drain).await;
                return;
            }
        }
        if !out.is_empty() && !wire.send(out).await {
            return;
        }
    }
}

/// How long an ended exec session waits for the client's streams (those
/// still missing, then the client's close).
const STREAM_CREATION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// One forwarded connection of a SPDY session: its two streams.
#[derive(Default)]
struct SpdyRequest {
    port: u16,
    data_stream: Option<u32>,
    error_stream: Option<u32>,
    writer: Option<mpsc::Sender<Bytes>>,
    pending: Vec<Bytes>,
    started: bool,
}

/// SPDY/3.1 inside the WebSocket: every SYN_STREAM is answered with a
/// SYN_REPLY; once a request id has its error and data streams, the port
/// is connected and copied; failures go on the error stream.
async fn run_spdy_port_forward<S>(mut wire: Wire<S>, node: Arc<dyn NodeConnection>, pod: Value)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let pod = Arc::new(pod);
    let mut decoder = spdy::Decoder::default();
    let mut encoder = spdy::Encoder::default();
    let mut requests: HashMap<String, SpdyRequest> = HashMap::new();
    // stream id -> request id
    let mut streams: HashMap<u32, String> = HashMap::new();
    // (request id, bytes read from the port; None at its end)
    let (read_tx, mut read_rx) = mpsc::channel::<(String, Event)>(32);
    loop {
        let mut out: Vec<u8> = Vec::new();
        tokio::select! {
            data = wire.recv() => {
                let Some(data) = data else { return };
                decoder.feed(&data);
                loop {
                    let frame = match decoder.next_frame() {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!("port-forward session: {e}");
                            let _ = wire.send(encoder.goaway(0, 1)).await;
                            return;
                        }
                    };
                    match frame {
                        spdy::Frame::SynStream { stream_id, headers, .. } => {
                            out.extend(encoder.syn_reply(stream_id, false, &spdy::Headers::new()));
                            let request_id = headers.get("requestid").cloned().unwrap_or_default();
                            let port = headers.get("port").and_then(|p| p.parse::<u16>().ok());
                            let Some(port) = port else {
                                out.extend(encoder.data(stream_id, false, b"invalid port in the port-forward stream headers"));
                                out.extend(encoder.data(stream_id, true, b""));
                                continue;
                            };
                            let request = requests.entry(request_id.clone()).or_default();
                            request.port = port;
                            match headers.get("streamtype").map(String::as_str) {
                                Some("error") => request.error_stream = Some(stream_id),
                                Some("data") => request.data_stream = Some(stream_id),
                                _ => {
                                    out.extend(encoder.rst_stream(stream_id, spdy::RST_PROTOCOL_ERROR));
                                    continue;
                                }
                            }
                            streams.insert(stream_id, request_id.clone());
                            if request.data_stream.is_some() && request.error_stream.is_some() && !request.started {
                                request.started = true;
                                // Room for what arrived before both streams did.
                                let (write_tx, write_rx) = mpsc::channel(16 + request.pending.len());
                                for bytes in request.pending.drain(..) {
                                    let _ = write_tx.try_send(bytes);
                                }
                                request.writer = Some(write_tx);
                                tokio::spawn(spdy_connection(
                                    node.clone(),
                                    pod.clone(),
                                    port,
                                    request_id,
                                    write_rx,
                                    read_tx.clone(),
                                ));
                            }
                        }
                        spdy::Frame::Data { stream_id, fin, data } => {
                            let Some(request) = streams.get(&stream_id).and_then(|r| requests.get_mut(r)) else {
                                continue;
                            };
                            if request.data_stream != Some(stream_id) {
                                continue;
                            }
                            if !data.is_empty() {
                                match &request.writer {
                                    Some(tx) => {
                                        let _ = tx.send(Bytes::from(data)).await;
                                    }
                                    None if !request.started => request.pending.push(Bytes::from(data)),
                                    None => {}
                                }
                            }
                            if fin {
                                request.writer = None;
                            }
                        }
                        spdy::Frame::RstStream { stream_id, .. } => {
                            if let Some(request_id) = streams.remove(&stream_id) {
                                if let Some(request) = requests.get_mut(&request_id) {
                                    request.writer = None;
                                    if request.data_stream == Some(stream_id) {
                                        request.data_stream = None;
                                    }
                                    if request.error_stream == Some(stream_id) {
                                        request.error_stream = None;
                                    }
                                    if request.data_stream.is_none() && request.error_stream.is_none() {
                                        requests.remove(&request_id);
                                    }
                                }
                            }
                        }
                        spdy::Frame::Ping(id) => out.extend(encoder.ping(id)),
                        spdy::Frame::GoAway { .. } => return,
                        _ => {}
                    }
                }
            }
            read = read_rx.recv() => {
                let Some((request_id, event)) = read else { return };
                let Some(request) = requests.get(&request_id) else { continue };
                match event {
                    Event::Data(bytes) => {
                        if let Some(data) = request.data_stream {
                            out.extend(encoder.data(data, false, &bytes));
                        }
                    }
                    Event::Failed(message) => {
                        if let Some(error) = request.error_stream {
                            out.extend(encoder.data(error, false, message.as_bytes()));
                        }
                    }
                    Event::End => {
                        // Both streams finish and the connection is forgotten
                        // (the client may or may not reset the streams).
                        for stream_id in [request.data_stream, request.error_stream].into_iter().flatten() {
                            out.extend(encoder.data(stream_id, true, b""));
                            streams.remove(&stream_id);
                        }
                        requests.remove(&request_id);
                    }
                }
            }
        }
        if !out.is_empty() && !wire.send(out).await {
            return;
        }
    }
}

/// Connects one forwarded connection and copies it; a failure goes to the
/// error stream. Either way the connection's last event is `End`.
async fn spdy_connection(
    node: Arc<dyn NodeConnection>,
    pod: Arc<Value>,
    port: u16,
    request_id: String,
    writes: mpsc::Receiver<Bytes>,
    reads: mpsc::Sender<(String, Event)>,
) {
    match node.port_forward(&pod, port).await {
        Ok(tunnel) => pump(tunnel, writes, reads, request_id).await,
        Err(e) => {
            if reads
                .send((request_id.clone(), Event::Failed(e.message)))
                .await
                .is_ok()
            {
                let _ = reads.send((request_id, Event::End)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_clients_first_supported_protocol() {
        let cases: &[(Kind, &[&str], Option<&str>)] = &[
            (
                Kind::Exec,
                &["v5.channel.k8s.io", "v4.channel.k8s.io"],
                Some("v5.channel.k8s.io"),
            ),
            (
                Kind::Exec,
                &["base64.channel.k8s.io", "v4.channel.k8s.io"],
                Some("v4.channel.k8s.io"),
            ),
            (Kind::Exec, &["channel.k8s.io"], Some("channel.k8s.io")),
            (Kind::Exec, &["SPDY/3.1+portforward.k8s.io"], None),
            (Kind::Exec, &["portforward.k8s.io"], None),
            (
                Kind::PortForward,
                &["SPDY/3.1+portforward.k8s.io"],
                Some("SPDY/3.1+portforward.k8s.io"),
            ),
            (
                Kind::PortForward,
                &["portforward.k8s.io"],
                Some("portforward.k8s.io"),
            ),
            (
                Kind::PortForward,
                &["v4.channel.k8s.io"],
                Some("v4.channel.k8s.io"),
            ),
            (Kind::Attach, &[""], None),
        ];
        for (kind, offered, want) in cases {
            assert_eq!(
                negotiate(*kind, offered).map(|(_, name)| name),
                *want,
                "{kind:?} {offered:?}"
            );
        }
    }

    #[test]
    fn spdy_negotiation_takes_the_channel_protocols_up_to_v4() {
        let cases: &[(Kind, &[&str], Option<&str>)] = &[
            (
                Kind::Exec,
                &[
                    "v5.channel.k8s.io",
                    "v4.channel.k8s.io",
                    "v3.channel.k8s.io",
                ],
                Some("v4.channel.k8s.io"),
            ),
            (
                Kind::Attach,
                &["v2.channel.k8s.io"],
                Some("v2.channel.k8s.io"),
            ),
            (Kind::Exec, &["portforward.k8s.io"], None),
            (
                Kind::PortForward,
                &["portforward.k8s.io"],
                Some("portforward.k8s.io"),
            ),
            (Kind::PortForward, &["v4.channel.k8s.io"], None),
            (Kind::Exec, &[""], None),
        ];
        for (kind, offered, want) in cases {
            assert_eq!(
                negotiate_spdy(*kind, offered).map(|(_, name)| name),
                *want,
                "{kind:?} {offered:?}"
            );
        }
    }

    #[test]
    fn channel_input_decodes_by_version() {
        assert_eq!(decode_input(5, b"\x00abc"), Input::Stdin(b"abc".to_vec()));
        assert_eq!(
            decode_input(5, b"\x04{\"Width\":80,\"Height\":24}"),
            Input::Resize(TerminalSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(
            decode_input(2, b"\x04{\"Width\":80,\"Height\":24}"),
            Input::Ignored
        );
        assert_eq!(decode_input(5, &[255, 0]), Input::Close(0));
        assert_eq!(decode_input(4, &[255, 0]), Input::Ignored);
        assert_eq!(decode_input(5, &[]), Input::Ignored);
        assert_eq!(channel_message(3, b"x"), b"\x03x".to_vec());
    }

    #[test]
    fn exit_status_is_what_client_go_parses() {
        let command = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        let status: Value =
            serde_json::from_slice(&exit_message(5, &command, &ExitStatus::Exited(3)).unwrap())
                .unwrap();
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(
            status["details"]["causes"],
            json!([{"reason": "ExitCode", "message": "3"}])
        );
        assert_eq!(
            status["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
        let ok: Value =
            serde_json::from_slice(&exit_message(4, &command, &ExitStatus::Exited(0)).unwrap())
                .unwrap();
        assert_eq!(ok, json!({"metadata": {}, "status": "Success"}));
        assert_eq!(exit_message(2, &command, &ExitStatus::Exited(0)), None);
        assert_eq!(
            exit_message(2, &command, &ExitStatus::Error("boom".into())),
            Some(b"boom".to_vec())
        );
    }

    #[test]
    fn query_values() {
        let q = Some("command=sh&command=-c&command=echo%20hi&container=c&ports=80,8080&ports=9");
        assert_eq!(all_values(q, "command"), ["sh", "-c", "echo hi"]);
        assert_eq!(parse_ports(q), Ok(vec![80, 8080, 9]));
        assert!(parse_ports(Some("ports=x")).is_err());
        assert!(parse_ports(Some("ports=0")).is_err());
    }
}
