//! Pure planning: observed Services and EndpointSlices -> the table of frontends and endpoints the proxy serves.
//!
//! Follows kube-proxy's rules (pkg/proxy/topology.go, servicechangetracker): only ready endpoints
//! take new traffic, serving-and-terminating ones are the fallback when none is ready, and the
//! Local traffic policies keep only this node's endpoints. No I/O, so every rule has a table test.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort as ApiServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label an EndpointSlice carries to name the Service it belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// kube-apiserver's default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: i32 = 10800;

/// What the proxy reads: the API objects it watches plus facts about this node.
pub struct TableInputs<'a> {
    pub services: &'a [Service],
    pub slices: &'a [EndpointSlice],
    /// pod-template-hash label of a pod (namespace, name), for metrics labels.
    pub pod_template_hash: &'a dyn Fn(&str, &str) -> Option<String>,
    pub node_name: &'a str,
    /// Addresses NodePorts listen on (e.g. [0.0.0.0]).
    pub node_port_addresses: &'a [IpAddr],
    /// ClusterIPs the proxy must not serve (the node's own DNS server has the cluster DNS IP).
    pub skip_cluster_ips: &'a [IpAddr],
}

/// Everything the proxy serves. Sorted, so equal inputs give equal tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyTable {
    pub ports: Vec<ServicePort>,
}

impl ProxyTable {
    /// The cluster IPs with at least one frontend: the node agent adds them as local addresses.
    pub fn cluster_ips(&self) -> BTreeSet<IpAddr> {
        self.ports
            .iter()
            .filter(|p| p.scope == Scope::Cluster)
            .flat_map(|p| p.frontends.iter().map(|f| f.ip()))
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A Service port: (namespace, service, port name or number, protocol).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortKey {
    pub namespace: String,
    pub service: String,
    /// The port's name, or its number when it has no name.
    pub port: String,
    pub protocol: Protocol,
}

/// Which frontends an entry holds: cluster IPs follow `internalTrafficPolicy`,
/// NodePorts `externalTrafficPolicy`, so the two may see different endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Cluster,
    NodePort,
}

/// How the proxy speaks on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AppProtocol {
    /// Opaque TCP: one endpoint per connection, bytes spliced.
    Tcp,
    Udp,
    /// HTTP/1.1 (and HTTP/2 when the client negotiates it): balanced per request.
    Http1,
    /// HTTP/2 with prior knowledge (gRPC): balanced per request (per stream).
    H2c,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServicePort {
    pub key: ServicePortKey,
    pub scope: Scope,
    /// Sorted, deduplicated.
    pub frontends: Vec<SocketAddr>,
    pub app: AppProtocol,
    /// sessionAffinity ClientIP with this idle timeout.
    pub session_affinity: Option<Duration>,
    /// Sorted by address, deduplicated: the endpoints that take new traffic.
    pub endpoints: Vec<Endpoint>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub pod: Option<String>,
    pub pod_template_hash: Option<String>,
    pub node: Option<String>,
}

/// One endpoint as read from a slice, with its conditions.
struct Candidate {
    endpoint: Endpoint,
    ready: bool,
    serving_terminating: bool,
}

pub fn build_table(inputs: &TableInputs) -> ProxyTable {
    let mut ports = Vec::new();
    for service in inputs.services {
        ports.extend(service_ports(inputs, service));
    }
    ports.sort();
    ProxyTable { ports }
}

fn service_ports(inputs: &TableInputs, service: &Service) -> Vec<ServicePort> {
    let (Some(namespace), Some(name), Some(spec)) = (
        service.metadata.namespace.as_deref(),
        service.metadata.name.as_deref(),
        service.spec.as_ref(),
    ) else {
        return Vec::new();
    };
    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    if service_type == "ExternalName" {
        return Vec::new();
    }
    let cluster_ips: Vec<IpAddr> = cluster_ips_of(spec)
        .filter(|ip| !inputs.skip_cluster_ips.contains(ip))
        .collect();
    let with_node_ports = service_type == "NodePort" || service_type == "LoadBalancer";
    let session_affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        let seconds = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS);
        Duration::from_secs(seconds.max(0) as u64)
    });
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let slices: Vec<&EndpointSlice> = inputs
        .slices
        .iter()
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(namespace)
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .map(String::as_str)
                    == Some(name)
        })
        .collect();

    let mut out = Vec::new();
    for port in spec.ports.iter().flatten() {
        let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            _ => continue, // SCTP is not proxied
        };
        let Ok(service_port) = u16::try_from(port.port) else {
            continue;
        };
        let port_name = port.name.clone().unwrap_or_default();
        let key = ServicePortKey {
            namespace: namespace.to_string(),
            service: name.to_string(),
            port: if port_name.is_empty() {
                port.port.to_string()
            } else {
                port_name.clone()
            },
            protocol,
        };
        let app = match protocol {
            Protocol::Udp => AppProtocol::Udp,
            Protocol::Tcp => app_protocol(port),
        };
        let candidates = candidates(inputs, namespace, &slices, &port_name, protocol);

        let cluster_frontends: BTreeSet<SocketAddr> = cluster_ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, service_port))
            .collect();
        if !cluster_frontends.is_empty() {
            out.push(ServicePort {
                key: key.clone(),
                scope: Scope::Cluster,
                frontends: cluster_frontends.into_iter().collect(),
                app,
                session_affinity,
                endpoints: select(&candidates, internal_local.then_some(inputs.node_name)),
            });
        }
        let node_port = port.node_port.and_then(|p| u16::try_from(p).ok());
        if let (true, Some(node_port)) = (with_node_ports, node_port) {
            let frontends: BTreeSet<SocketAddr> = inputs
                .node_port_addresses
                .iter()
                .map(|ip| SocketAddr::new(*ip, node_port))
                .collect();
            if !frontends.is_empty() {
                out.push(ServicePort {
                    key,
                    scope: Scope::NodePort,
                    frontends: frontends.into_iter().collect(),
                    app,
                    session_affinity,
                    endpoints: select(&candidates, external_local.then_some(inputs.node_name)),
                });
            }
        }
    }
    out
}

/// `spec.clusterIPs` (falling back to `spec.clusterIP`), without headless `None` and unparsable values.
fn cluster_ips_of(
    spec: &k8s_openapi::api::core::v1::ServiceSpec,
) -> impl Iterator<Item = IpAddr> + '_ {
    let ips: Vec<&String> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().collect(),
        _ => spec.cluster_ip.iter().collect(),
    };
    ips.into_iter().filter_map(|ip| ip.parse().ok())
}

/// Kubernetes' appProtocol values and the port-name conventions (Istio/linkerd style) for HTTP.
pub fn app_protocol(port: &ApiServicePort) -> AppProtocol {
    let app = port
        .app_protocol
        .as_deref()
        .unwrap_or("")
        .to_ascii_lowercase();
    match app.as_str() {
        "http" | "kubernetes.io/http" => return AppProtocol::Http1,
        "kubernetes.io/h2c" | "h2c" | "grpc" | "http2" => return AppProtocol::H2c,
        "" => {}
        _ => return AppProtocol::Tcp, // an explicit other protocol wins over the name
    }
    let name = port.name.as_deref().unwrap_or("").to_ascii_lowercase();
    if name == "grpc" || name.starts_with("grpc-") || name == "h2c" || name == "http2" {
        AppProtocol::H2c
    } else if name == "http" || name.starts_with("http-") {
        AppProtocol::Http1
    } else {
        AppProtocol::Tcp
    }
}

/// Every endpoint of the matching slices for one Service port, deduplicated by address.
fn candidates(
    inputs: &TableInputs,
    namespace: &str,
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Protocol,
) -> Vec<Candidate> {
    let protocol_name = match protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    };
    let mut by_addr: BTreeMap<SocketAddr, Candidate> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            continue; // FQDN slices are not proxied (as kube-proxy)
        }
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && p.protocol.as_deref().unwrap_or("TCP") == protocol_name
        }) else {
            continue;
        };
        let Some(number) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            // kube-proxy uses the first address of an endpoint.
            let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let conditions = endpoint.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            let pod = endpoint
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone());
            let pod_template_hash = pod
                .as_deref()
                .and_then(|p| (inputs.pod_template_hash)(namespace, p));
            let addr = SocketAddr::new(ip, number);
            by_addr.entry(addr).or_insert(Candidate {
                endpoint: Endpoint {
                    addr,
                    pod,
                    pod_template_hash,
                    node: endpoint.node_name.clone(),
                },
                ready,
                serving_terminating: serving && terminating,
            });
        }
    }
    by_addr.into_values().collect()
}

/// kube-proxy's CategorizeEndpoints for one policy: ready ones, else serving-and-terminating ones,
/// restricted to `local_node` when the traffic policy is Local.
fn select(candidates: &[Candidate], local_node: Option<&str>) -> Vec<Endpoint> {
    let eligible: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| local_node.is_none_or(|n| c.endpoint.node.as_deref() == Some(n)))
        .collect();
    let ready: Vec<Endpoint> = eligible
        .iter()
        .filter(|c| c.ready)
        .map(|c| c.endpoint.clone())
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    eligible
        .iter()
        .filter(|c| c.serving_terminating)
        .map(|c| c.endpoint.clone())
        .collect()
}
