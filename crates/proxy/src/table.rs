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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).expect("test service")
    }

    fn slice(
        service: &str,
        ports: serde_json::Value,
        endpoints: serde_json::Value,
    ) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": format!("{service}-abc"),
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        }))
        .expect("test slice")
    }

    fn web(spec: serde_json::Value) -> Service {
        let mut spec = spec;
        let object = spec.as_object_mut().expect("spec object");
        object.entry("clusterIP").or_insert(json!("10.96.0.10"));
        object
            .entry("ports")
            .or_insert(json!([{"name": "web", "port": 80, "protocol": "TCP"}]));
        service(json!({"metadata": {"namespace": "default", "name": "web"}, "spec": spec}))
    }

    fn ep(ip: &str, node: &str, conditions: serde_json::Value) -> serde_json::Value {
        json!({"addresses": [ip], "nodeName": node, "conditions": conditions,
               "targetRef": {"kind": "Pod", "namespace": "default", "name": format!("pod-{ip}")}})
    }

    fn table(services: &[Service], slices: &[EndpointSlice]) -> ProxyTable {
        let hash = |_: &str, pod: &str| Some(format!("hash-of-{pod}"));
        build_table(&TableInputs {
            services,
            slices,
            pod_template_hash: &hash,
            node_name: "node-a",
            node_port_addresses: &["0.0.0.0".parse().unwrap()],
            skip_cluster_ips: &["10.96.0.53".parse().unwrap()],
        })
    }

    /// The endpoint addresses of each entry, as "scope frontends -> endpoints".
    fn summary(table: &ProxyTable) -> Vec<String> {
        table
            .ports
            .iter()
            .map(|p| {
                let frontends: Vec<String> = p.frontends.iter().map(|f| f.to_string()).collect();
                let endpoints: Vec<String> =
                    p.endpoints.iter().map(|e| e.addr.to_string()).collect();
                format!(
                    "{:?} {} {:?} -> {}",
                    p.scope,
                    frontends.join(","),
                    p.app,
                    endpoints.join(",")
                )
            })
            .collect()
    }

    fn web_slice(endpoints: serde_json::Value) -> EndpointSlice {
        slice(
            "web",
            json!([{"name": "web", "port": 8080, "protocol": "TCP"}]),
            endpoints,
        )
    }

    #[test]
    fn ready_endpoints_only_and_nil_ready_counts_as_ready() {
        let slices = [web_slice(json!([
            ep("10.0.0.1", "node-a", json!({"ready": true})),
            ep(
                "10.0.0.2",
                "node-a",
                json!({"ready": false, "serving": false})
            ),
            ep("10.0.0.3", "node-b", json!({})),
            ep(
                "10.0.0.4",
                "node-b",
                json!({"ready": false, "serving": true, "terminating": true})
            ),
        ]))];
        let t = table(&[web(json!({}))], &slices);
        assert_eq!(
            summary(&t),
            ["Cluster 10.96.0.10:80 Tcp -> 10.0.0.1:8080,10.0.0.3:8080"]
        );
        let first = &t.ports[0].endpoints[0];
        assert_eq!(first.pod.as_deref(), Some("pod-10.0.0.1"));
        assert_eq!(
            first.pod_template_hash.as_deref(),
            Some("hash-of-pod-10.0.0.1")
        );
        assert_eq!(first.node.as_deref(), Some("node-a"));
        assert_eq!(t.ports[0].key.port, "web");
        assert_eq!(
            t.cluster_ips(),
            ["10.96.0.10".parse::<IpAddr>().unwrap()].into()
        );
    }

    #[test]
    fn serving_terminating_endpoints_are_the_fallback_when_none_is_ready() {
        let slices = [web_slice(json!([
            ep(
                "10.0.0.2",
                "node-a",
                json!({"ready": false, "serving": false, "terminating": true})
            ),
            ep(
                "10.0.0.4",
                "node-b",
                json!({"ready": false, "serving": true, "terminating": true})
            ),
            ep(
                "10.0.0.5",
                "node-b",
                json!({"ready": false, "serving": true, "terminating": false})
            ),
        ]))];
        let t = table(&[web(json!({}))], &slices);
        assert_eq!(summary(&t), ["Cluster 10.96.0.10:80 Tcp -> 10.0.0.4:8080"]);
    }

    #[test]
    fn no_endpoints_still_serves_the_frontend() {
        let t = table(&[web(json!({}))], &[]);
        assert_eq!(summary(&t), ["Cluster 10.96.0.10:80 Tcp -> "]);
    }

    #[test]
    fn ports_match_slices_by_name_and_protocol() {
        let svc = web(json!({"ports": [
            {"name": "web", "port": 80, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "sctp", "port": 99, "protocol": "SCTP"},
        ]}));
        let slices = [slice(
            "web",
            json!([{"name": "web", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}]),
            json!([ep("10.0.0.1", "node-a", json!({}))]),
        )];
        let t = table(&[svc], &slices);
        assert_eq!(
            summary(&t),
            [
                "Cluster 10.96.0.10:53 Udp -> 10.0.0.1:5353",
                "Cluster 10.96.0.10:80 Tcp -> 10.0.0.1:8080"
            ]
        );
    }

    #[test]
    fn unnamed_port_is_keyed_by_number_and_matches_the_unnamed_slice_port() {
        let svc = web(json!({"ports": [{"port": 80}]}));
        let slices = [slice(
            "web",
            json!([{"port": 8080}]),
            json!([ep("10.0.0.1", "node-a", json!({}))]),
        )];
        let t = table(&[svc], &slices);
        assert_eq!(t.ports[0].key.port, "80");
        assert_eq!(summary(&t), ["Cluster 10.96.0.10:80 Tcp -> 10.0.0.1:8080"]);
    }

    #[test]
    fn slices_of_other_services_or_namespaces_are_ignored() {
        let mut other_ns = web_slice(json!([ep("10.0.0.9", "node-a", json!({}))]));
        other_ns.metadata.namespace = Some("other".into());
        let other_service = slice(
            "api",
            json!([{"name": "web", "port": 8080}]),
            json!([ep("10.0.0.8", "node-a", json!({}))]),
        );
        let t = table(&[web(json!({}))], &[other_ns, other_service]);
        assert_eq!(summary(&t), ["Cluster 10.96.0.10:80 Tcp -> "]);
    }

    #[test]
    fn internal_traffic_policy_local_keeps_this_nodes_endpoints() {
        let slices = [web_slice(json!([
            ep("10.0.0.1", "node-a", json!({})),
            ep("10.0.0.2", "node-b", json!({})),
        ]))];
        let t = table(&[web(json!({"internalTrafficPolicy": "Local"}))], &slices);
        assert_eq!(summary(&t), ["Cluster 10.96.0.10:80 Tcp -> 10.0.0.1:8080"]);
    }

    #[test]
    fn node_port_frontends_follow_external_traffic_policy() {
        let svc = web(json!({
            "type": "NodePort", "externalTrafficPolicy": "Local",
            "ports": [{"name": "web", "port": 80, "nodePort": 30080}],
        }));
        let slices = [web_slice(json!([
            ep("10.0.0.1", "node-a", json!({})),
            ep("10.0.0.2", "node-b", json!({})),
        ]))];
        let t = table(&[svc], &slices);
        assert_eq!(
            summary(&t),
            [
                "Cluster 10.96.0.10:80 Tcp -> 10.0.0.1:8080,10.0.0.2:8080",
                "NodePort 0.0.0.0:30080 Tcp -> 10.0.0.1:8080"
            ]
        );
        assert_eq!(
            t.cluster_ips().len(),
            1,
            "node port addresses are not cluster IPs"
        );
    }

    #[test]
    fn headless_external_name_and_skipped_cluster_ips_are_not_served() {
        let headless = service(json!({"metadata": {"namespace": "default", "name": "db"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5432}]}}));
        let external = service(json!({"metadata": {"namespace": "default", "name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "example.org", "ports": [{"port": 80}]}}));
        let dns = service(
            json!({"metadata": {"namespace": "kube-system", "name": "kube-dns"},
            "spec": {"clusterIP": "10.96.0.53", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}),
        );
        assert_eq!(
            summary(&table(&[headless, external, dns], &[])),
            Vec::<String>::new()
        );
    }

    #[test]
    fn dual_stack_cluster_ips_are_all_frontends() {
        let svc = web(json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00::10"]}));
        let t = table(&[svc], &[]);
        assert_eq!(summary(&t), ["Cluster 10.96.0.10:80,[fd00::10]:80 Tcp -> "]);
    }

    #[test]
    fn app_protocol_detection() {
        let cases = [
            (
                json!({"port": 80, "appProtocol": "http"}),
                AppProtocol::Http1,
            ),
            (
                json!({"port": 80, "appProtocol": "kubernetes.io/http"}),
                AppProtocol::Http1,
            ),
            (
                json!({"port": 80, "appProtocol": "kubernetes.io/h2c"}),
                AppProtocol::H2c,
            ),
            (json!({"port": 80, "appProtocol": "grpc"}), AppProtocol::H2c),
            (json!({"port": 80, "appProtocol": "h2c"}), AppProtocol::H2c),
            (json!({"port": 80, "name": "http"}), AppProtocol::Http1),
            (
                json!({"port": 80, "name": "http-metrics"}),
                AppProtocol::Http1,
            ),
            (json!({"port": 80, "name": "grpc"}), AppProtocol::H2c),
            (json!({"port": 80, "name": "grpc-api"}), AppProtocol::H2c),
            (json!({"port": 80, "name": "h2c"}), AppProtocol::H2c),
            (json!({"port": 80, "name": "http2"}), AppProtocol::H2c),
            (json!({"port": 80, "name": "httpx"}), AppProtocol::Tcp),
            (json!({"port": 80, "name": "web"}), AppProtocol::Tcp),
            (
                json!({"port": 80, "name": "http", "appProtocol": "kubernetes.io/ws"}),
                AppProtocol::Tcp,
            ),
            (json!({"port": 80}), AppProtocol::Tcp),
        ];
        for (port, want) in cases {
            let parsed: ApiServicePort = serde_json::from_value(port.clone()).unwrap();
            assert_eq!(app_protocol(&parsed), want, "port {port}");
        }
        let udp = web(json!({"ports": [{"name": "http", "port": 80, "protocol": "UDP"}]}));
        assert_eq!(
            table(&[udp], &[]).ports[0].app,
            AppProtocol::Udp,
            "UDP ports are never HTTP"
        );
    }

    #[test]
    fn session_affinity_client_ip_with_default_and_explicit_timeout() {
        let default = web(json!({"sessionAffinity": "ClientIP"}));
        assert_eq!(
            table(&[default], &[]).ports[0].session_affinity,
            Some(Duration::from_secs(10800))
        );
        let explicit = web(json!({"sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}));
        assert_eq!(
            table(&[explicit], &[]).ports[0].session_affinity,
            Some(Duration::from_secs(60))
        );
        let none = web(json!({"sessionAffinity": "None"}));
        assert_eq!(table(&[none], &[]).ports[0].session_affinity, None);
    }

    #[test]
    fn duplicate_addresses_across_slices_count_once_and_output_is_sorted() {
        let slices = [
            web_slice(json!([
                ep("10.0.0.3", "node-a", json!({})),
                ep("10.0.0.1", "node-a", json!({}))
            ])),
            web_slice(json!([
                ep("10.0.0.1", "node-a", json!({})),
                ep("10.0.0.2", "node-a", json!({}))
            ])),
        ];
        let t = table(&[web(json!({}))], &slices);
        assert_eq!(
            summary(&t),
            ["Cluster 10.96.0.10:80 Tcp -> 10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080"]
        );
        let reversed = [slices[1].clone(), slices[0].clone()];
        assert_eq!(table(&[web(json!({}))], &reversed), t);
    }
}
