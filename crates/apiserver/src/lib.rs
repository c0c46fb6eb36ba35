//! drover's Kubernetes API server: HTTPS with bearer-token authentication,
//! discovery and OpenAPI, the generic REST verbs over every registered kind
//! (objects are `serde_json::Value`s checked against k8s-openapi types), watch,
//! the patch formats, subresources, and the built-in garbage collector and
//! namespace finalizer. It talks to state only through the `store::Store` trait.

pub mod body;
pub mod discovery;
pub mod eviction;
pub mod gc;
pub mod metrics;
pub mod nodes;
pub mod objects;
pub mod pki;
pub mod request;
pub mod serviceaccounts;
pub mod services;
pub mod spdy;
pub mod streams;
pub mod tokens;
pub mod tunnel;
pub mod watch;

use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use api::{ApiError, Registry};
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use serde_json::{json, Value};
use store::Store;
use tokio::net::TcpListener;

use crate::request::{parse_path, Query, Target};

pub type ResponseBody = BoxBody<Bytes, Infallible>;

/// The Kubernetes version drover reports on `/version`. The k8s-openapi
/// types it serves are those of this minor.
pub const KUBERNETES_MAJOR: &str = "1";
pub const KUBERNETES_MINOR: &str = "33";
pub const KUBERNETES_GIT_VERSION: &str = "v1.33.0+drover";

/// Largest request body accepted (kube-apiserver's limit for JSON bodies is 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

pub struct Config {
    /// Bearer tokens with full (admin) access.
    pub admin_tokens: Vec<String>,
    /// Where timestamps (creationTimestamp, deletionTimestamp, managedFields)
    /// come from. The simulation passes a virtual clock.
    pub clock: Arc<dyn Clock>,
    /// Where uids and generated name suffixes come from. The simulation
    /// passes a seeded generator so that a seed replays exactly.
    pub random: Arc<dyn Random>,
}

impl Config {
    /// Wall clock and OS randomness.
    pub fn new(admin_tokens: Vec<String>) -> Config {
        Config {
            admin_tokens,
            clock: Arc::new(SystemClock),
            random: Arc::new(SystemRandom),
        }
    }
}

/// kube-apiserver's default `tolerationSeconds` of the not-ready and
/// unreachable tolerations (the `drover server` flags' default).
pub use api::admission::DEFAULT_TOLERATION_SECONDS;

/// Settings of the admission plugins drover runs, with kube-apiserver's
/// defaults. Kept apart from `Config` so that callers building a `Config`
/// literal (the simulation) need not change; `ApiServer::with_admission`
/// takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// `--default-not-ready-toleration-seconds`: the `tolerationSeconds` of
    /// the `node.kubernetes.io/not-ready:NoExecute` toleration
    /// DefaultTolerationSeconds adds to every pod that has none.
    pub default_not_ready_toleration_seconds: i64,
    /// `--default-unreachable-toleration-seconds`: the same for
    /// `node.kubernetes.io/unreachable:NoExecute`.
    pub default_unreachable_toleration_seconds: i64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            default_not_ready_toleration_seconds: api::admission::DEFAULT_TOLERATION_SECONDS,
            default_unreachable_toleration_seconds: api::admission::DEFAULT_TOLERATION_SECONDS,
        }
    }
}

/// The time source of the API server.
pub trait Clock: Send + Sync {
    fn now(&self) -> chrono::DateTime<chrono::Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

/// The source of randomness of the API server (uids, generateName suffixes).
pub trait Random: Send + Sync {
    fn next_u64(&self) -> u64;
}

pub struct SystemRandom;

impl Random for SystemRandom {
    fn next_u64(&self) -> u64 {
        rand::random()
    }
}

pub struct ApiServer {
    pub(crate) store: Arc<dyn Store>,
    registry: RwLock<Arc<Registry>>,
    config: Config,
    pub(crate) admission: AdmissionConfig,
    pub(crate) metrics: metrics::Metrics,
    ready: std::sync::atomic::AtomicBool,
    openapi_cache: discovery::OpenApiCache,
    /// Node agents by node name (for `pods/log`).
    nodes: RwLock<std::collections::BTreeMap<String, Arc<dyn nodes::NodeConnection>>>,
    /// The cluster CA (PEM), served on `/cacerts`.
    ca_certificate: std::sync::OnceLock<String>,
    bootstrap_tokens: tokens::BootstrapTokens,
    /// Signs and checks service account tokens (none: no TokenRequest, no
    /// ServiceAccount admission of pods, no `kube-root-ca.crt`).
    token_signer: std::sync::OnceLock<serviceaccounts::TokenSigner>,
    /// Service CIDR, node port range, cluster DNS (`set_service_config`).
    service_config: RwLock<services::ServiceConfig>,
}

impl ApiServer {
    /// An API server with the default admission settings.
    pub fn new(store: Arc<dyn Store>, config: Config) -> Arc<ApiServer> {
        ApiServer::with_admission(store, config, AdmissionConfig::default())
    }

    pub fn with_admission(
        store: Arc<dyn Store>,
        config: Config,
        admission: AdmissionConfig,
    ) -> Arc<ApiServer> {
        Arc::new(ApiServer {
            store,
            registry: RwLock::new(Arc::new(Registry::builtin())),
            config,
            admission,
            metrics: metrics::Metrics::default(),
            ready: std::sync::atomic::AtomicBool::new(false),
            openapi_cache: discovery::OpenApiCache::default(),
            nodes: RwLock::new(Default::default()),
            ca_certificate: std::sync::OnceLock::new(),
            bootstrap_tokens: tokens::BootstrapTokens::default(),
            token_signer: std::sync::OnceLock::new(),
            service_config: RwLock::new(services::ServiceConfig::default()),
        })
    }

    /// How Services get addresses (`--service-cidr`, `--service-node-port-range`,
    /// `--cluster-dns`, `--cluster-domain`) and where the `kubernetes`
    /// Service points. Set before `start`; the defaults are k3s's.
    pub fn set_service_config(&self, config: services::ServiceConfig) {
        *self
            .service_config
            .write()
            .unwrap_or_else(|p| p.into_inner()) = config;
    }

    pub fn service_config(&self) -> services::ServiceConfig {
        self.service_config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The CA certificate (PEM) served on `/cacerts`, which agents joining
    /// with a token check against the hash in the token.
    pub fn set_ca_certificate(&self, pem: &str) {
        let _ = self.ca_certificate.set(pem.to_string());
    }

    /// Turns on service account tokens: TokenRequest, their
    /// authentication, and the ServiceAccount admission of pods. Set before
    /// `start`, after [`Self::set_ca_certificate`] (the CA goes into every
    /// namespace's `kube-root-ca.crt`).
    pub fn set_token_signer(&self, signer: serviceaccounts::TokenSigner) {
        let _ = self.token_signer.set(signer);
    }

    pub(crate) fn token_signer(&self) -> Option<&serviceaccounts::TokenSigner> {
        self.token_signer.get()
    }

    pub(crate) fn ca_certificate(&self) -> Option<&str> {
        self.ca_certificate.get().map(String::as_str)
    }

    /// Forgets node `name`'s connection if it is still `connection`.
    pub fn disconnect_node(&self, name: &str, connection: &Arc<dyn nodes::NodeConnection>) {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        if nodes.get(name).is_some_and(|c| Arc::ptr_eq(c, connection)) {
            nodes.remove(name);
        }
    }

    /// Makes node `name`'s agent reachable for `pods/log`.
    pub fn connect_node(&self, name: &str, connection: Arc<dyn nodes::NodeConnection>) {
        self.nodes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), connection);
    }

    pub(crate) fn node_connection(&self, name: &str) -> Option<Arc<dyn nodes::NodeConnection>> {
        self.nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.read().unwrap().clone()
    }

    pub(crate) fn set_registry(&self, r: Registry) {
        *self.registry.write().unwrap() = Arc::new(r);
    }

    /// The request counters and latencies in Prometheus text form.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode(None)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.config.clock.now()
    }

    /// Now as Kubernetes writes timestamps (RFC 3339, whole seconds, `Z`).
    pub(crate) fn now_rfc3339(&self) -> String {
        self.now()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    pub(crate) fn random_u64(&self) -> u64 {
        self.config.random.next_u64()
    }

    /// Creates what every cluster has (namespaces default, kube-system,
    /// kube-public, kube-node-lease; their default ServiceAccounts; the
    /// RuntimeClasses; the `kubernetes` and `kube-dns` Services), repairs
    /// Service allocations, loads CRDs, and starts the background loops (GC,
    /// namespace finalizer, CRD watcher, compactor). Then `/readyz` answers 200.
    pub async fn start(self: &Arc<Self>) -> Result<(), ApiError> {
        objects::bootstrap(self).await?;
        // Crash leftovers of Service allocations, before the first request.
        services::repair(self).await?;
        tokio::spawn(services::repair_loop(self.clone()));
        gc::spawn_background(self.clone());
        self.ready.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Serve HTTPS on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let server = self.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!("tls handshake from {peer} failed: {e}");
                        return;
                    }
                };
                let io = hyper_util::rt::TokioIo::new(tls);
                let svc = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                if let Err(e) = builder.serve_connection_with_upgrades(io, svc).await {
                    tracing::debug!("connection from {peer} ended: {e}");
                }
            });
        }
    }

    /// Answers one request. The HTTPS server calls this; in-process tests call
    /// it directly with any body type.
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let started = Instant::now();
        let path = req.uri().path().to_string();
        let target = parse_path(&path);
        let (verb, resource) = match &target {
            Target::Resource(rp) => {
                let watch = Query::parse(req.uri().query()).flag("watch");
                let resource = match &rp.subresource {
                    Some(sub) => format!("{}/{sub}", rp.plural),
                    None => rp.plural.clone(),
                };
                (
                    metrics::verb(req.method(), rp.name.is_some(), watch),
                    resource,
                )
            }
            _ => (metrics::verb(req.method(), true, false), String::new()),
        };
        let method = req.method().clone();
        let resp = self.route(req, target, &path).await;
        let took = started.elapsed();
        self.metrics
            .observe(verb, &resource, resp.status().as_u16(), took.as_secs_f64());
        // kube-apiserver's httplog: one line per request (a watch's when
        // its response starts), with `DROVER_LOG=apiserver::requests=debug`.
        tracing::debug!(
            target: "apiserver::requests",
            "{method} {path} {} in {:.2} ms",
            resp.status().as_u16(),
            took.as_secs_f64() * 1e3
        );
        resp
    }

    async fn route<B>(
        self: &Arc<Self>,
        req: Request<B>,
        target: Target,
        path: &str,
    ) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        // Health endpoints answer without credentials, as on Kubernetes
        // (system:public-info-viewer); everything else needs a valid token.
        match target {
            Target::Healthz | Target::Livez => return text(StatusCode::OK, "ok"),
            Target::Readyz => {
                return if self.ready.load(std::sync::atomic::Ordering::SeqCst) {
                    text(StatusCode::OK, "ok")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready: bootstrapping")
                }
            }
            Target::Version => return json_response(StatusCode::OK, &version_info()),
            Target::CaCerts => {
                return match self.ca_certificate.get() {
                    Some(pem) => text(StatusCode::OK, pem),
                    None => text(StatusCode::NOT_FOUND, "no CA certificate configured"),
                }
            }
            _ => {}
        }
        let Some(user) = self.requester(&req).await else {
            return error_response(&ApiError::unauthorized());
        };
        if let Target::NodeTunnel(node) = &target {
            // Only a node's own credential (or the admin's) may stand in
            // for a node: a pod's service account token must not be able
            // to receive the exec, logs and port-forward streams meant for
            // one.
            let groups = api::string_list(user.get("groups"));
            if !groups
                .iter()
                .any(|g| g == "system:masters" || g == "system:bootstrappers")
            {
                let name = user.get("username").and_then(Value::as_str).unwrap_or("");
                return error_response(&ApiError::forbidden(format!(
                    "User \"{name}\" cannot open the tunnel of node \"{node}\": only node credentials can"
                )));
            }
            return tunnel::accept(self, req, node);
        }
        let query = Query::parse(req.uri().query());
        let result = match target {
            Target::Metrics => {
                let revision = self
                    .store
                    .revisions()
                    .await
                    .ok()
                    .map(|(current, _)| current);
                Ok(Response::builder()
                    .status(StatusCode::OK)
                    .header(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )
                    .body(full({
                        // The nodes' resource metrics go before the
                        // OpenMetrics terminator.
                        let mut text = self.metrics.encode(revision);
                        let nodes = nodes::resource_metrics(self).await;
                        match text.rfind("# EOF") {
                            Some(at) => text.insert_str(at, &nodes),
                            None => text.push_str(&nodes),
                        }
                        text
                    }))
                    .unwrap())
            }
            Target::CoreVersions => Ok(discovery::core_versions(&self.registry(), &req)),
            Target::Groups => Ok(discovery::groups(&self.registry(), &req)),
            Target::Group(g) => discovery::group(&self.registry(), &g),
            Target::ResourceList { group, version } => {
                discovery::resource_list(&self.registry(), &group, &version)
            }
            Target::OpenApiV3Root => Ok(discovery::openapi_root(&self.registry())),
            Target::OpenApiV3 { group, version } => discovery::openapi_group_version(
                &self.registry(),
                &self.openapi_cache,
                &group,
                &version,
            ),
            Target::OpenApiV2 => Ok(discovery::openapi_v2(&req)),
            Target::OpenIdConfiguration => match self.token_signer() {
                Some(signer) => Ok(json_response(
                    StatusCode::OK,
                    &signer.openid_configuration(),
                )),
                None => Err(ApiError::new(404, "NotFound", "no service account issuer")),
            },
            Target::Jwks => match self.token_signer() {
                Some(signer) => Ok(json_response(StatusCode::OK, &signer.jwks())),
                None => Err(ApiError::new(404, "NotFound", "no service account issuer")),
            },
            Target::Resource(rp) => objects::handle(self, req, rp, query).await,
            Target::NotFound => Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
            Target::Healthz
            | Target::Livez
            | Target::Readyz
            | Target::Version
            | Target::CaCerts
            | Target::NodeTunnel(_) => unreachable!(),
        };
        match result {
            Ok(r) => r,
            Err(e) => {
                if e.code >= 500 {
                    tracing::warn!("{path}: {}", e.message);
                }
                error_response(&e)
            }
        }
    }

    /// Who sent `req` (its bearer token's user), if anyone we know.
    pub(crate) async fn requester<B>(&self, req: &Request<B>) -> Option<Value> {
        let value = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())?;
        // The scheme is case-insensitive (RFC 9110): the Python client
        // sends "bearer".
        let token = bearer_token(value)?;
        self.identify(token, None).await.ok()
    }

    /// The user a bearer token stands for (a TokenReview's `status.user`):
    /// the admin (and the in-process components), a bootstrap token
    /// (`system:bootstrap:<id>`), or a service account. `audiences`: the
    /// audiences the token must name one of (a TokenReview's; `None`: this
    /// API server's).
    pub(crate) async fn identify(
        &self,
        token: &str,
        audiences: Option<&[String]>,
    ) -> Result<Value, String> {
        // Tokens other than service account tokens carry no audience: they
        // are good for this API server's audiences only, so a review asking
        // for others must not name their user (kube-apiserver's
        // audience-agnostic wrapping of its other authenticators).
        let for_api = audiences.is_none_or(|a| {
            self.token_signer()
                .map(|s| s.audiences().iter().any(|x| a.contains(x)))
                .unwrap_or(a.is_empty())
        });
        if for_api
            && self
                .config
                .admin_tokens
                .iter()
                .any(|t| pki::constant_time_eq(t.as_bytes(), token.as_bytes()))
        {
            return Ok(json!({
                "username": "admin",
                "groups": ["system:masters", "system:authenticated"],
            }));
        }
        // A JWT (three dot-separated parts) is a service account token;
        // a bootstrap token has one dot.
        if token.matches('.').count() == 2 {
            return match serviceaccounts::authenticate(self, token, audiences).await {
                Ok(claims) => Ok(serviceaccounts::user_info(&claims)),
                Err(why) => {
                    tracing::debug!("service account token refused: {why}");
                    Err(why)
                }
            };
        }
        if for_api
            && self
                .bootstrap_tokens
                .valid(&self.store, &self.registry(), &self.config.clock, token)
                .await
        {
            let id = tokens::BootstrapToken::parse(token)
                .map(|t| t.id)
                .unwrap_or_default();
            return Ok(json!({
                "username": format!("system:bootstrap:{id}"),
                "groups": ["system:bootstrappers", "system:authenticated"],
            }));
        }
        Err("invalid bearer token".into())
    }
}

/// The token of an `Authorization: Bearer TOKEN` header value.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub fn version_info() -> Value {
    json!({
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "gitVersion": KUBERNETES_GIT_VERSION,
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).boxed()
}

pub(crate) fn text(code: StatusCode, s: &str) -> Response<ResponseBody> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(s.to_string()))
        .unwrap()
}

pub(crate) fn json_response(code: StatusCode, v: &Value) -> Response<ResponseBody> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(
            serde_json::to_vec(v).expect("serializing a Value cannot fail"),
        ))
        .unwrap()
}

pub(crate) fn error_response(e: &ApiError) -> Response<ResponseBody> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &e.to_status())
}

#[cfg(test)]
mod tests {
    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(super::bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(super::bearer_token("bearer abc "), Some("abc"));
        assert_eq!(super::bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(super::bearer_token("Basic abc"), None);
        assert_eq!(super::bearer_token("Bearer "), None);
        assert_eq!(super::bearer_token("Bearerabc"), None);
    }
}
