//! HTTP/1.1 and h2c: terminate with hyper, balance every request with tower.
//!
//! The stack, outermost first:
//! - `route` (per request): 503 when the port has no endpoints; sessionAffinity ClientIP pins;
//!   otherwise hands the request to the port's balancer. This is the layer boundary where a
//!   weighted split by pod-template-hash goes: it would choose an endpoint group (one balancer
//!   per group) before the balancer, without touching anything below.
//! - `Balancer`: a mutex around one `p2c::Balance` shared by all connections of the listener
//!   (held only inside `poll_ready` + `call`, never across an await: cheaper than tower's
//!   `Buffer`, whose single worker task serialised every request through a channel) over a
//!   `Discover` stream fed by `apply` -> `PendingRequests` per endpoint: least outstanding
//!   requests between two random endpoints. A replica that slows down accumulates pending
//!   requests and is avoided; identical replicas get an even split, which peak-EWMA does not
//!   give (its latency estimate decays over seconds, so with two endpoints the one that was
//!   slower once is starved until it decays).
//! - `EndpointService`: rewrites the URI to the endpoint, sends it on a pooled hyper client
//!   (HTTP/2 multiplexed for h2c, so gRPC streams spread across replicas), records metrics.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::balance::p2c::Balance;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use tower::{BoxError, Service};

use crate::metrics::{code_class, ResponseLabels};
use crate::runtime::{EndpointState, PortConfig, PortState};
use crate::table::AppProtocol;

pub type ProxyBody = Either<Incoming, Full<Bytes>>;
type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;
type Upstream = Client<HttpConnector, Incoming>;
type BoxedBalance = tower::util::BoxService<Request<Incoming>, Response<Incoming>, BoxError>;

/// A request waits at most this long for the balancer (e.g. every endpoint just went away).
const BALANCER_WAIT: Duration = Duration::from_secs(10);

/// The endpoint that served a response, so the route layer can pin sessionAffinity to it.
#[derive(Clone, Copy, Debug)]
struct ServedBy(SocketAddr);

/// The per-listener balancer: shared by every connection of the frontend.
#[derive(Clone)]
pub struct Balancer {
    service: Arc<Mutex<BoxedBalance>>,
    changes: mpsc::UnboundedSender<Change<SocketAddr, EndpointService>>,
    upstream: Upstream,
}

impl Balancer {
    pub fn new(port: Arc<PortState>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256);
        if port.app == AppProtocol::H2c {
            builder.http2_only(true);
        }
        let upstream: Upstream = builder.build(connector);
        let (changes, receiver) = mpsc::unbounded_channel();
        let discover =
            tokio_stream::wrappers::UnboundedReceiverStream::new(receiver).map(Ok::<_, Infallible>);
        let discover = PendingRequestsDiscover::new::<Request<Incoming>>(
            discover,
            CompleteOnResponse::default(),
        );
        let balance = Balance::new(discover);
        let service = Arc::new(Mutex::new(tower::util::BoxService::new(balance)));
        Balancer {
            service,
            changes,
            upstream,
        }
    }

    /// Tells the balancer which endpoints were added and removed. Sent before `apply` returns, and
    /// the balancer takes every queued change before it picks for the next request.
    pub fn update(&self, old: &PortConfig, new: &PortConfig) {
        for gone in old
            .endpoints
            .iter()
            .filter(|e| new.find(e.endpoint.addr).is_none())
        {
            let _ = self.changes.send(Change::Remove(gone.endpoint.addr));
        }
        for endpoint in &new.endpoints {
            let unchanged = old
                .find(endpoint.endpoint.addr)
                .is_some_and(|o| Arc::ptr_eq(o, endpoint));
            if !unchanged {
                let service = EndpointService::new(endpoint.clone(), self.upstream.clone());
                let _ = self
                    .changes
                    .send(Change::Insert(endpoint.endpoint.addr, service));
            }
        }
    }
}

/// One endpoint as a tower service.
#[derive(Clone)]
pub struct EndpointService {
    endpoint: Arc<EndpointState>,
    upstream: Upstream,
    /// The endpoint's ip:port, parsed once.
    authority: http::uri::Authority,
}

impl EndpointService {
    fn new(endpoint: Arc<EndpointState>, upstream: Upstream) -> Self {
        let authority = endpoint
            .endpoint
            .addr
            .to_string()
            .parse()
            .expect("a socket address is a valid authority");
        EndpointService {
            endpoint,
            upstream,
            authority,
        }
    }
}

impl Service<Request<Incoming>> for EndpointService {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The pooled client opens connections on demand; it is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        let endpoint = self.endpoint.clone();
        let upstream = self.upstream.clone();
        let authority = self.authority.clone();
        Box::pin(async move {
            let addr = endpoint.endpoint.addr;
            let mut parts = std::mem::take(request.uri_mut()).into_parts();
            parts.scheme = Some(http::uri::Scheme::HTTP);
            parts.authority = Some(authority);
            if parts.path_and_query.is_none() {
                parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
            }
            *request.uri_mut() = Uri::from_parts(parts)?;
            strip_hop_by_hop(&mut request);
            let metrics = endpoint.metrics();
            metrics.requests.inc();
            let started = Instant::now();
            let result = upstream.request(request).await;
            metrics
                .request_duration
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(mut response) => {
                    let labels = ResponseLabels::new(
                        &metrics.labels,
                        code_class(response.status().as_u16()),
                    );
                    metrics.responses.get_or_create(&labels).inc();
                    response.extensions_mut().insert(ServedBy(addr));
                    Ok(response)
                }
                Err(error) => {
                    metrics.connection_errors.inc();
                    Err(error.into())
                }
            }
        })
    }
}

/// Connection-level headers are per hop (RFC 9110 7.6.1); hyper sets its own on the upstream side.
fn strip_hop_by_hop<B>(request: &mut Request<B>) {
    let headers = request.headers_mut();
    if let Some(listed) = headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    {
        for name in listed.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            headers.remove(name);
        }
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
    // gRPC needs `te: trailers`; any other TE value is hop-by-hop.
    if headers.get(header::TE).is_some_and(|v| v != "trailers") {
        headers.remove(header::TE);
    }
}

pub async fn serve(listener: std::net::TcpListener, port: Arc<PortState>, balancer: Balancer) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, service = %port.key.service, "listener");
            return;
        }
    };
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, service = %port.key.service, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let port = port.clone();
        let balancer = balancer.clone();
        tokio::spawn(async move {
            let app = port.app;
            let service = hyper::service::service_fn(move |request| {
                let port = port.clone();
                let balancer = balancer.clone();
                let routed: Pin<
                    Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>,
                > = Box::pin(async move { Ok(route(port, balancer, client, request).await) });
                routed
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if app == AppProtocol::H2c {
                builder = builder.http2_only();
            }
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, %client, "http connection ended");
            }
        });
    }
}

/// The route layer: no endpoints -> 503; affinity pin -> that endpoint; else the balancer.
async fn route(
    port: Arc<PortState>,
    balancer: Balancer,
    client: SocketAddr,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let config = port.config();
    if config.endpoints.is_empty() {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "no endpoints available for service",
        );
    }
    let result = match port.affinity_endpoint(&config, client.ip()) {
        Some(endpoint) => {
            let mut service = EndpointService::new(endpoint, balancer.upstream.clone());
            service.call(request).await
        }
        None => {
            match tokio::time::timeout(BALANCER_WAIT, balance(balancer.service.clone(), request))
                .await
            {
                Ok(result) => result,
                Err(_) => {
                    return error_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no endpoint became ready in time",
                    )
                }
            }
        }
    };
    match result {
        Ok(response) => {
            if let Some(ServedBy(addr)) = response.extensions().get::<ServedBy>().copied() {
                port.pin(&config, client.ip(), addr);
            }
            response.map(Either::Left)
        }
        Err(error) => {
            tracing::debug!(%error, service = %port.key.service, "request to endpoint failed");
            error_response(StatusCode::BAD_GATEWAY, "endpoint failed")
        }
    }
}

/// Picks an endpoint and starts the request while holding the balancer's lock, then awaits the
/// response without it.
async fn balance(
    service: Arc<Mutex<BoxedBalance>>,
    request: Request<Incoming>,
) -> Result<Response<Incoming>, BoxError> {
    let mut request = Some(request);
    let response = std::future::poll_fn(|cx| {
        let mut balance = service.lock().expect("balancer lock");
        match balance.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                Poll::Ready(Ok(balance.call(request.take().expect("request sent once"))))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            // No endpoint is ready: the balancer wakes us when discovery changes.
            Poll::Pending => Poll::Pending,
        }
    })
    .await?;
    response.await
}

fn error_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(format!(
        "{message}\n"
    )))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
