//! h2c: terminate with hyper, balance every request with tower.
//!
//! This path serves the h2c (gRPC) ports, and the clients of an HTTP/1.1 port that speak HTTP/2
//! with prior knowledge (`h1` hands them over; their requests go on to the endpoint as HTTP/1.1).
//! Plain HTTP/1.1 has its own hand-written path in `h1.rs`: hyper's pooled client cost a channel
//! hop and a task wake-up per request, which an HTTP/1.1 proxy does not need, while HTTP/2's
//! multiplexing, flow control and HPACK are what hyper is for.
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
//!   (HTTP/2 multiplexed for h2c, so gRPC streams spread across replicas), records metrics;
//!   request and response bodies count their bytes as they stream.
//!
//! A request that never reached its endpoint (the connect failed or took longer than
//! `UPSTREAM_CONNECT_TIMEOUT`) is sent again to another ready endpoint, at most
//! `MAX_ATTEMPTS` tries in all, before a 502: the body is handed to hyper only when it first
//! polls it (`Resendable`), so an unsent request still has it. A request whose bytes may have
//! left is never retried. hyper itself resends a request whose pooled connection turned out
//! closed before anything was written (on a fresh connection to the same endpoint; if that
//! connect fails, the request moves on to another endpoint as above).
//!
//! HTTP/1.1 upgrades (WebSocket, SPDY, any `Connection: upgrade`) are balanced like any request;
//! when the endpoint answers 101, both sides are upgraded and spliced as raw bytes until either
//! closes, counted as an open connection of that endpoint.

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
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::balance::p2c::Balance;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use tower::{BoxError, Service};

use crate::runtime::{accept_each, pick_least_open, EndpointState, PortConfig, PortState};
use crate::table::AppProtocol;

pub type ProxyBody = Either<Counted<Incoming>, Full<Bytes>>;
type UpstreamResponse = Response<Counted<Incoming>>;
type ResponseFuture = Pin<Box<dyn Future<Output = Result<UpstreamResponse, BoxError>> + Send>>;
type Upstream = Client<HttpConnector, Counted<Resendable>>;
type BoxedBalance = tower::util::BoxService<Request<Resendable>, UpstreamResponse, BoxError>;

/// An upstream connect that takes longer fails (and the request goes to another endpoint): a
/// pod that is going away may drop SYNs instead of refusing them.
pub(crate) const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How many endpoints one request tries, in all, while it has not been sent.
pub(crate) const MAX_ATTEMPTS: usize = 3;

/// A client's request body as sent upstream. `Shared` leaves the body in a slot until hyper
/// first polls it, so after a failed connect (hyper drops the request without polling its body)
/// the proxy still holds it and can send the request to another endpoint. `Direct` is for a
/// port with one endpoint, where there is no other endpoint to retry on.
pub enum Resendable {
    Direct(Incoming),
    Shared {
        slot: Arc<Mutex<Option<Incoming>>>,
        taken: Option<Incoming>,
    },
}

impl Resendable {
    fn shared(slot: Arc<Mutex<Option<Incoming>>>) -> Self {
        Resendable::Shared { slot, taken: None }
    }

    /// Reads the body without taking it: `f(None)` if another attempt already took it.
    fn peek<T>(&self, f: impl FnOnce(Option<&Incoming>) -> T) -> T {
        match self {
            Resendable::Direct(body) => f(Some(body)),
            Resendable::Shared {
                taken: Some(body), ..
            } => f(Some(body)),
            Resendable::Shared { slot, taken: None } => {
                f(slot.lock().expect("request body slot").as_ref())
            }
        }
    }
}

impl Body for Resendable {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut *self {
            Resendable::Direct(body) => Pin::new(body).poll_frame(cx),
            Resendable::Shared { slot, taken } => {
                if taken.is_none() {
                    *taken = slot.lock().expect("request body slot").take();
                }
                match taken {
                    Some(body) => Pin::new(body).poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.peek(|body| body.is_none_or(Body::is_end_stream))
    }

    fn size_hint(&self) -> SizeHint {
        self.peek(|body| body.map_or_else(|| SizeHint::with_exact(0), Body::size_hint))
    }
}

/// The error of an attempt that sent nothing to `endpoint` (the connect failed or timed out), so
/// the request may go to another endpoint.
#[derive(Debug)]
struct NotSent {
    endpoint: SocketAddr,
    source: hyper_util::client::legacy::Error,
}

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connect to endpoint {} failed", self.endpoint)
    }
}

impl std::error::Error for NotSent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A body that adds the length of every data frame it yields to a counter (the `bytes` metric).
pub struct Counted<B> {
    inner: B,
    counter: Counter,
}

impl<B> Counted<B> {
    fn new(inner: B, counter: Counter) -> Self {
        Counted { inner, counter }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.counter.inc_by(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request waits at most this long for the balancer (e.g. every endpoint just went away).
const BALANCER_WAIT: Duration = Duration::from_secs(10);

/// The endpoint that served a response, so the route layer can pin sessionAffinity to it (and
/// account an upgraded connection to it).
#[derive(Clone)]
struct ServedBy(Arc<EndpointState>);

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
        connector.set_connect_timeout(Some(UPSTREAM_CONNECT_TIMEOUT));
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
        let discover = PendingRequestsDiscover::new::<Request<Resendable>>(
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

impl Service<Request<Resendable>> for EndpointService {
    type Response = UpstreamResponse;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The pooled client opens connections on demand; it is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Resendable>) -> Self::Future {
        let endpoint = self.endpoint.clone();
        let upstream = self.upstream.clone();
        let authority = self.authority.clone();
        Box::pin(async move {
            let metrics = endpoint.metrics();
            let mut request = request.map(|body| Counted::new(body, metrics.bytes_in.clone()));
            let mut parts = std::mem::take(request.uri_mut()).into_parts();
            parts.scheme = Some(http::uri::Scheme::HTTP);
            parts.authority = Some(authority);
            if parts.path_and_query.is_none() {
                parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
            }
            *request.uri_mut() = Uri::from_parts(parts)?;
            let upgrade = upgrade_protocol(&request);
            strip_hop_by_hop(&mut request);
            if let Some(protocol) = upgrade {
                // The upgrade is end to end: the endpoint must see what the client asked for.
                let headers = request.headers_mut();
                headers.insert(header::UPGRADE, protocol);
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
            metrics.requests.inc();
            let started = Instant::now();
            let result = upstream.request(request).await;
            metrics
                .request_duration
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(response) => {
                    metrics.responses(response.status().as_u16()).inc();
                    let mut response =
                        response.map(|body| Counted::new(body, metrics.bytes_out.clone()));
                    response.extensions_mut().insert(ServedBy(endpoint));
                    Ok(response)
                }
                Err(error) => {
                    metrics.connection_errors.inc();
                    if error.is_connect() {
                        return Err(Box::new(NotSent {
                            endpoint: endpoint.endpoint.addr,
                            source: error,
                        }) as BoxError);
                    }
                    Err(error.into())
                }
            }
        })
    }
}

/// The `Upgrade` header of an HTTP/1.1 request that asks to switch protocols
/// (`Connection: upgrade`), e.g. a WebSocket handshake.
fn upgrade_protocol<B>(request: &Request<B>) -> Option<HeaderValue> {
    if request.version() != http::Version::HTTP_11 {
        return None;
    }
    let headers = request.headers();
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
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
    accept_each(listener, &port, |stream, client| {
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            port.clone(),
            client,
            balancer.clone(),
        ));
    })
    .await
}

/// Serves one client connection with hyper (h2c ports; HTTP/2 with prior knowledge on an HTTP/1.1
/// port, handed over by `h1`).
pub(crate) async fn serve_connection<I>(
    io: I,
    port: Arc<PortState>,
    client: SocketAddr,
    balancer: Balancer,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let app = port.app;
    let service = hyper::service::service_fn(move |request| {
        let port = port.clone();
        let balancer = balancer.clone();
        let routed: Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>> =
            Box::pin(async move { Ok(route(port, balancer, client, request).await) });
        routed
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if app == AppProtocol::H2c {
        builder = builder.http2_only();
    }
    if let Err(error) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await
    {
        tracing::debug!(%error, %client, "http connection ended");
    }
}

/// The route layer: no endpoints -> 503; affinity pin -> that endpoint; else the balancer.
async fn route(
    port: Arc<PortState>,
    balancer: Balancer,
    client: SocketAddr,
    mut request: Request<Incoming>,
) -> Response<ProxyBody> {
    let config = port.config();
    if config.endpoints.is_empty() {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "no endpoints available for service",
        );
    }
    if port.app == AppProtocol::Http1 {
        // An HTTP/2 client on an HTTP/1.1 port (prior knowledge): the endpoint speaks HTTP/1.1.
        *request.version_mut() = http::Version::HTTP_11;
    }
    let client_upgrade = upgrade_protocol(&request)
        .is_some()
        .then(|| hyper::upgrade::on(&mut request));
    // With one endpoint there is nowhere else to send a request again: no copy of its head.
    let (parts, body) = request.into_parts();
    let (resend, body) = if config.endpoints.len() > 1 {
        let slot = Arc::new(Mutex::new(Some(body)));
        let body = Resendable::shared(slot.clone());
        (Some((parts.clone(), slot)), body)
    } else {
        (None, Resendable::Direct(body))
    };
    let request = Request::from_parts(parts, body);
    let mut result = match port.affinity_endpoint(&config, client.ip()) {
        Some(endpoint) => {
            let mut service = EndpointService::new(endpoint, balancer.upstream.clone());
            service.call(request).await
        }
        None => match balance(&balancer.service, request).await {
            Some(result) => result,
            None => {
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no endpoint became ready in time",
                )
            }
        },
    };
    if let Some((parts, slot)) = resend {
        let mut tried = Vec::with_capacity(MAX_ATTEMPTS);
        loop {
            let not_sent = match &result {
                Err(error) => error.downcast_ref::<NotSent>().map(|e| e.endpoint),
                Ok(_) => None,
            };
            let Some(failed) = not_sent else { break };
            tried.push(failed);
            // The body still in its slot proves no attempt has polled it.
            if tried.len() >= MAX_ATTEMPTS || slot.lock().expect("request body slot").is_none() {
                break;
            }
            // The current endpoint set: an endpoint removed since the first try is not chosen.
            let config = port.config();
            let Some(endpoint) =
                pick_least_open(&config, &tried).or_else(|| pick_least_open(&config, &[]))
            else {
                break;
            };
            tracing::debug!(%failed, next = %endpoint.endpoint.addr, "request not sent; trying another endpoint");
            let request = Request::from_parts(parts.clone(), Resendable::shared(slot.clone()));
            let mut service = EndpointService::new(endpoint, balancer.upstream.clone());
            result = service.call(request).await;
        }
    }
    match result {
        Ok(mut response) => {
            let served_by = response.extensions_mut().remove::<ServedBy>();
            if let Some(ServedBy(endpoint)) = served_by {
                port.pin(&config, client.ip(), endpoint.endpoint.addr);
                if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) =
                    (client_upgrade, response.status())
                {
                    let upstream_upgrade = hyper::upgrade::on(&mut response);
                    tokio::spawn(splice_upgraded(endpoint, client_upgrade, upstream_upgrade));
                }
            }
            response.map(Either::Left)
        }
        Err(error) => {
            tracing::debug!(%error, service = %port.key.service, "request to endpoint failed");
            error_response(StatusCode::BAD_GATEWAY, "endpoint failed")
        }
    }
}

/// After a 101: both connections switch protocols and their bytes are spliced until either side
/// closes.
async fn splice_upgraded(
    endpoint: Arc<EndpointState>,
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%error, endpoint = %endpoint.endpoint.addr, "upgrade failed");
            return;
        }
    };
    let metrics = endpoint.metrics();
    metrics.connections.inc();
    metrics.open_connections.inc();
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((sent, received)) => {
            metrics.bytes_in.inc_by(sent);
            metrics.bytes_out.inc_by(received);
        }
        Err(error) => {
            tracing::debug!(%error, endpoint = %endpoint.endpoint.addr, "upgraded connection ended")
        }
    }
    metrics.open_connections.dec();
}

/// Picks an endpoint and starts the request while holding the balancer's lock, then awaits the
/// response without it. `None` if no endpoint became ready within `BALANCER_WAIT` (the timer is
/// armed only then: the usual pick is immediate).
async fn balance(
    service: &Mutex<BoxedBalance>,
    request: Request<Resendable>,
) -> Option<Result<UpstreamResponse, BoxError>> {
    let mut request = Some(request);
    let pick = std::future::poll_fn(|cx| {
        let mut balance = service.lock().expect("balancer lock");
        match balance.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                Poll::Ready(Ok(balance.call(request.take().expect("request sent once"))))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            // No endpoint is ready: the balancer wakes us when discovery changes.
            Poll::Pending => Poll::Pending,
        }
    });
    let mut pick = std::pin::pin!(pick);
    let picked = match futures::poll!(pick.as_mut()) {
        Poll::Ready(picked) => picked,
        Poll::Pending => tokio::time::timeout(BALANCER_WAIT, pick).await.ok()?,
    };
    Some(match picked {
        Ok(response) => response.await,
        Err(error) => Err(error),
    })
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
