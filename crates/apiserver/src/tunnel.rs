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
//! `GET /metrics` (JSON [`NodeMetricsReport`]).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use crate::nodes::{LogBody, LogRequest, NodeConnection, NodeError, NodeMetricsReport};
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
        let (sender, connection) = match hyper::client::conn::http2::handshake(
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
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

impl RemoteNode {
    async fn send(
        &self,
        request: Request<Full<Bytes>>,
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
            .body(Full::new(Bytes::from(body)))
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
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        let Ok(response) = self.send(req).await else {
            return NodeMetricsReport::default();
        };
        let Ok(body) = response.into_body().collect().await else {
            return NodeMetricsReport::default();
        };
        serde_json::from_slice(&body.to_bytes()).unwrap_or_default()
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
        (method, path) => plain(
            StatusCode::NOT_FOUND,
            format!("the node API has no {method} {path}"),
        ),
    }
}
