//! The running proxy: one listener per frontend, each reading its port's current endpoint set.
//!
//! Invariants: `apply` never closes the listener of a frontend whose service port and protocol are
//! unchanged (it swaps the endpoint set under it), and an endpoint removed by `apply` is never
//! chosen for a connection, session or request that starts after `apply` returns; in-flight ones
//! keep their own handles and finish.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use rand::Rng;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::{BytesLabels, EndpointLabels, Metrics};
use crate::table::{AppProtocol, Endpoint, Protocol, ProxyTable, ServicePort, ServicePortKey};

/// An endpoint as the data path sees it: the table's endpoint plus live load and metric handles.
pub(crate) struct EndpointState {
    pub endpoint: Endpoint,
    /// The load that power of two choices compares (`pick_least_open`): open TCP connections / UDP
    /// sessions; on an HTTP/1.1 port, requests in flight (an upgraded connection stays one).
    pub open: AtomicUsize,
    labels: EndpointLabels,
    families: Arc<Metrics>,
    /// Made on first use: an endpoint that never serves costs no series (10,000 idle endpoints
    /// would otherwise hold 70,000 label sets).
    metrics: std::sync::OnceLock<EndpointMetrics>,
}

impl EndpointState {
    pub fn metrics(&self) -> &EndpointMetrics {
        self.metrics
            .get_or_init(|| EndpointMetrics::new(&self.families, self.labels.clone()))
    }
}

/// Handles into the metric families, resolved once per endpoint so the data path does no lookups.
pub(crate) struct EndpointMetrics {
    pub labels: EndpointLabels,
    pub requests: Counter,
    /// The family itself: a series per status class is made on first use.
    responses: prometheus_client::metrics::family::Family<crate::metrics::ResponseLabels, Counter>,
    /// The series of each status class (1xx..5xx), resolved once: the data path does no label
    /// hashing after the first response of a class.
    response_classes: [std::sync::OnceLock<Counter>; 5],
    pub request_duration: Histogram,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub connections: Counter,
    pub open_connections: Gauge,
    pub connection_errors: Counter,
}

impl EndpointMetrics {
    fn new(metrics: &Metrics, labels: EndpointLabels) -> Self {
        let bytes = |direction| {
            metrics
                .bytes
                .get_or_create(&BytesLabels::new(&labels, direction))
                .clone()
        };
        EndpointMetrics {
            requests: metrics.requests.get_or_create(&labels).clone(),
            responses: metrics.responses.clone(),
            response_classes: Default::default(),
            request_duration: metrics.request_duration.get_or_create(&labels).clone(),
            bytes_in: bytes("in"),
            bytes_out: bytes("out"),
            connections: metrics.connections.get_or_create(&labels).clone(),
            open_connections: metrics.open_connections.get_or_create(&labels).clone(),
            connection_errors: metrics.connection_errors.get_or_create(&labels).clone(),
            labels,
        }
    }
}

impl EndpointMetrics {
    /// The responses counter of `status`'s class.
    pub fn responses(&self, status: u16) -> &Counter {
        let class = crate::metrics::code_class(status);
        let index = match class {
            "1xx" => 0,
            "2xx" => 1,
            "3xx" => 2,
            "4xx" => 3,
            _ => 4,
        };
        self.response_classes[index].get_or_init(|| {
            self.responses
                .get_or_create(&crate::metrics::ResponseLabels::new(&self.labels, class))
                .clone()
        })
    }
}

/// What a listener serves right now; replaced whole by `apply`.
pub(crate) struct PortConfig {
    pub session_affinity: Option<Duration>,
    pub endpoints: Vec<Arc<EndpointState>>,
}

impl PortConfig {
    pub fn find(&self, addr: SocketAddr) -> Option<&Arc<EndpointState>> {
        self.endpoints.iter().find(|e| e.endpoint.addr == addr)
    }
}

/// The state one listener shares with its connection tasks.
pub(crate) struct PortState {
    pub key: ServicePortKey,
    pub app: AppProtocol,
    config: RwLock<Arc<PortConfig>>,
    /// sessionAffinity ClientIP: client IP -> (endpoint, last used).
    affinity: Mutex<HashMap<IpAddr, (SocketAddr, Instant)>>,
}

impl PortState {
    pub fn config(&self) -> Arc<PortConfig> {
        self.config.read().expect("port config lock").clone()
    }

    /// The endpoint a client IP is pinned to, if affinity is on, the pin is fresh, and the endpoint is still there.
    pub fn affinity_endpoint(
        &self,
        config: &PortConfig,
        client: IpAddr,
    ) -> Option<Arc<EndpointState>> {
        let timeout = config.session_affinity?;
        let mut affinity = self.affinity.lock().expect("affinity lock");
        let now = Instant::now();
        let (addr, last) = affinity.get_mut(&client)?;
        if now.duration_since(*last) > timeout {
            affinity.remove(&client);
            return None;
        }
        let endpoint = config.find(*addr)?.clone();
        *last = now;
        Some(endpoint)
    }

    pub fn pin(&self, config: &PortConfig, client: IpAddr, endpoint: SocketAddr) {
        let Some(timeout) = config.session_affinity else {
            return;
        };
        let mut affinity = self.affinity.lock().expect("affinity lock");
        let now = Instant::now();
        // Bound the map: drop expired pins once it is large.
        if affinity.len() > 4096 {
            affinity.retain(|_, (_, last)| now.duration_since(*last) <= timeout);
        }
        affinity.insert(client, (endpoint, now));
    }
}

/// Accepts the connections of a port's listener for as long as the task runs, handing each to
/// `handle` (on the worker's runtime); a failed accept (EMFILE and the like) is logged and retried
/// after 50 ms instead of spinning.
pub(crate) async fn accept_each(
    listener: std::net::TcpListener,
    port: &PortState,
    mut handle: impl FnMut(tokio::net::TcpStream, SocketAddr),
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, service = %port.key.service, "listener");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => handle(stream, peer),
            Err(error) => {
                tracing::warn!(%error, service = %port.key.service, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Power of two choices over open connections, skipping `exclude` (endpoints that just failed).
/// Allocates nothing: it runs for every HTTP/1.1 request.
pub(crate) fn pick_least_open(
    config: &PortConfig,
    exclude: &[SocketAddr],
) -> Option<Arc<EndpointState>> {
    let candidates = || {
        config
            .endpoints
            .iter()
            .filter(|e| !exclude.contains(&e.endpoint.addr))
    };
    let n = if exclude.is_empty() {
        config.endpoints.len()
    } else {
        candidates().count()
    };
    match n {
        0 => None,
        1 => candidates().next().cloned(),
        n => {
            let mut rng = rand::rng();
            let a = rng.random_range(0..n);
            let mut b = rng.random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (candidates().nth(a)?, candidates().nth(b)?);
            let chosen = if b.open.load(Ordering::Relaxed) < a.open.load(Ordering::Relaxed) {
                b
            } else {
                a
            };
            Some(chosen.clone())
        }
    }
}

/// A frontend being served: one accept loop per worker. Dropping it closes the listening
/// sockets; connections already accepted go on.
struct Listener {
    port: Arc<PortState>,
    tasks: Vec<JoinHandle<()>>,
    /// The HTTP balancers, one per worker.
    http: Vec<crate::http::Balancer>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A thread running a current-thread tokio runtime. Each TCP/HTTP frontend has a SO_REUSEPORT
/// socket in every worker, so the kernel spreads connections over them and a connection and its
/// upstream requests stay on one thread (as haproxy's threads do): a multi-thread runtime woke
/// the tasks of one request on different threads and lost half the throughput to wake-ups.
struct Worker {
    handle: tokio::runtime::Handle,
    /// Dropping it ends the worker thread (and the connections it serves).
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Worker {
    fn start(index: usize) -> Worker {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("proxy-{index}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy worker runtime");
                let _ = handle_tx.send(runtime.handle().clone());
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .expect("spawn proxy worker thread");
        let handle = handle_rx.recv().expect("proxy worker started");
        Worker {
            handle,
            _stop: stop,
        }
    }
}

pub struct Proxy {
    metrics: Arc<Metrics>,
    workers: Vec<Worker>,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    listeners: HashMap<(SocketAddr, Protocol), Listener>,
    /// Every endpoint series in use, so series of removed endpoints can be dropped.
    labels: HashSet<EndpointLabels>,
}

impl Proxy {
    /// A proxy with one worker thread per CPU.
    pub fn new() -> Arc<Proxy> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_workers(cpus)
    }

    /// A proxy with `workers` threads (at least one).
    pub fn with_workers(workers: usize) -> Arc<Proxy> {
        Arc::new(Proxy {
            metrics: Arc::new(Metrics::new()),
            workers: (0..workers.max(1)).map(Worker::start).collect(),
            state: tokio::sync::Mutex::new(State::default()),
        })
    }

    /// Opens/closes listeners so exactly the table's frontends are served, and swaps endpoint sets atomically.
    /// Returns the frontends that failed to bind (and why) instead of failing the whole table.
    pub async fn apply(&self, table: &ProxyTable) -> Vec<(SocketAddr, io::Error)> {
        let mut state = self.state.lock().await;
        let mut wanted: HashMap<(SocketAddr, Protocol), &ServicePort> = HashMap::new();
        for port in &table.ports {
            for frontend in &port.frontends {
                wanted.entry((*frontend, port.key.protocol)).or_insert(port);
            }
        }
        // A listener whose frontend now belongs to another service port or speaks another protocol is reopened.
        state.listeners.retain(|frontend, listener| {
            wanted
                .get(frontend)
                .is_some_and(|p| p.key == listener.port.key && p.app == listener.port.app)
        });

        let mut failures = Vec::new();
        let mut labels = HashSet::new();
        for (frontend, port) in wanted {
            for endpoint in &port.endpoints {
                labels.insert(EndpointLabels::new(&port.key, endpoint));
            }
            if let Some(listener) = state.listeners.get(&frontend) {
                let config = self.config_for(port, Some(&listener.port.config()));
                for http in &listener.http {
                    http.update(&listener.port.config(), &config);
                }
                *listener.port.config.write().expect("port config lock") = Arc::new(config);
                continue;
            }
            match self.open(frontend.0, port) {
                Ok(listener) => {
                    state.listeners.insert(frontend, listener);
                }
                Err(error) => failures.push((frontend.0, error)),
            }
        }
        for gone in state.labels.difference(&labels) {
            self.metrics.forget(gone);
        }
        state.labels = labels;
        failures
    }

    /// Prometheus text exposition of the proxy's metrics.
    pub fn encode_metrics(&self, out: &mut String) {
        self.metrics.encode(out);
    }

    /// The new endpoint set for a port, keeping the live state of endpoints that stay.
    fn config_for(&self, port: &ServicePort, old: Option<&PortConfig>) -> PortConfig {
        let endpoints = port
            .endpoints
            .iter()
            .map(|endpoint| {
                if let Some(kept) = old
                    .and_then(|o| o.find(endpoint.addr))
                    .filter(|e| &e.endpoint == endpoint)
                {
                    return kept.clone();
                }
                Arc::new(EndpointState {
                    endpoint: endpoint.clone(),
                    open: AtomicUsize::new(0),
                    labels: EndpointLabels::new(&port.key, endpoint),
                    families: self.metrics.clone(),
                    metrics: std::sync::OnceLock::new(),
                })
            })
            .collect();
        PortConfig {
            session_affinity: port.session_affinity,
            endpoints,
        }
    }

    fn open(&self, frontend: SocketAddr, port: &ServicePort) -> io::Result<Listener> {
        let config = Arc::new(self.config_for(port, None));
        let state = Arc::new(PortState {
            key: port.key.clone(),
            app: port.app,
            config: RwLock::new(config.clone()),
            affinity: Mutex::new(HashMap::new()),
        });
        let mut listener = Listener {
            port: state.clone(),
            tasks: Vec::new(),
            http: Vec::new(),
        };
        if port.app == AppProtocol::Udp {
            // One socket: the sessions of a client address must stay on one worker.
            let socket = crate::socket::udp_socket(frontend)?;
            let task = self.workers[0]
                .handle
                .spawn(crate::udp::serve(socket, state.clone()));
            listener.tasks.push(task);
            return Ok(listener);
        }
        for worker in &self.workers {
            // On an error the listener is dropped, which closes the sockets already opened.
            let socket = crate::socket::tcp_listener(frontend)?;
            let task = match port.app {
                AppProtocol::Http1 | AppProtocol::H2c => {
                    let balancer = crate::http::Balancer::new(state.clone());
                    let empty = PortConfig {
                        session_affinity: None,
                        endpoints: Vec::new(),
                    };
                    balancer.update(&empty, &config);
                    listener.http.push(balancer.clone());
                    if port.app == AppProtocol::Http1 {
                        // The balancer serves only clients that speak HTTP/2 with prior knowledge.
                        worker
                            .handle
                            .spawn(crate::h1::serve(socket, state.clone(), balancer))
                    } else {
                        worker
                            .handle
                            .spawn(crate::http::serve(socket, state.clone(), balancer))
                    }
                }
                _ => worker
                    .handle
                    .spawn(crate::tcp::serve(socket, state.clone())),
            };
            listener.tasks.push(task);
        }
        Ok(listener)
    }
}
