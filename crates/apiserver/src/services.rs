//! Service ClusterIP and NodePort allocation, as kube-apiserver's service
//! registry does it: an address from the service CIDR and node ports from
//! the node-port range, held by create-only records in the store so that
//! several servers on one etcd never hand out one value twice, and a crash
//! never loses an allocation.
//!
//! - A ClusterIP is held by a `networking.k8s.io/v1` IPAddress named by the
//!   IP whose `spec.parentRef` is the Service (Kubernetes 1.33's
//!   MultiCIDRServiceAllocator keeps exactly these objects).
//! - A NodePort is held by the key `/registry/servicenodeports/<port>`
//!   holding the owning Service's namespace and name (Kubernetes keeps one
//!   bitmap under `/registry/services/nodeports`; one key per port needs no
//!   read-modify-write of a shared value).
//!
//! The record is created before the Service is written and deleted again if
//! that write fails; it is released after the Service is deleted or stops
//! needing it. A crash in between leaves an orphan, which the repair pass
//! (at start and every few minutes) frees once it is older than
//! [`REPAIR_GRACE`] — younger ones may belong to a create still in flight
//! on another server.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use api::{ApiError, Cause};
use bytes::Bytes;
use serde_json::{json, Value};
use store::{RangeRequest, StoreError};

use crate::objects::{self, meta_str, RequestCtx};
use crate::ApiServer;

/// Key prefix of node port records.
pub const NODE_PORT_PREFIX: &str = "/registry/servicenodeports/";

/// Records younger than this are never freed by the repair pass.
pub const REPAIR_GRACE: Duration = Duration::from_secs(60);

/// How often the repair pass runs after the one at start.
pub const REPAIR_INTERVAL: Duration = Duration::from_secs(180);

/// How many times an allocation is retried when another writer took the
/// value it picked between the read and the create.
const ALLOCATION_ATTEMPTS: usize = 16;

/// An IPv4 service CIDR (`--service-cidr`). Its network and broadcast
/// addresses are never handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceCidr {
    network: u32,
    prefix: u8,
}

impl ServiceCidr {
    pub fn parse(text: &str) -> Result<ServiceCidr, String> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("service CIDR {text:?}: expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("service CIDR {text:?}: only IPv4 ranges are supported"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("service CIDR {text:?}: bad prefix length"))?;
        if !(12..=30).contains(&prefix) {
            return Err(format!(
                "service CIDR {text:?}: the prefix length must be between 12 and 30"
            ));
        }
        let mask = u32::MAX << (32 - prefix);
        let network = u32::from(addr) & mask;
        Ok(ServiceCidr { network, prefix })
    }

    /// How many addresses can be handed out.
    pub fn size(&self) -> u64 {
        (1u64 << (32 - self.prefix)) - 2
    }

    /// The `i`-th address that can be handed out (0 is the first after the
    /// network address: the `kubernetes` Service's).
    pub fn nth(&self, i: u64) -> Option<Ipv4Addr> {
        (i < self.size()).then(|| Ipv4Addr::from(self.network + 1 + i as u32))
    }

    /// The index of `ip` among the addresses that can be handed out.
    pub fn index_of(&self, ip: Ipv4Addr) -> Option<u64> {
        let ip = u32::from(ip);
        let offset = ip.wrapping_sub(self.network);
        (ip >= self.network && offset >= 1 && (offset as u64) <= self.size())
            .then(|| offset as u64 - 1)
    }

    pub fn contains(&self, ip: &str) -> bool {
        ip.parse::<Ipv4Addr>()
            .ok()
            .and_then(|ip| self.index_of(ip))
            .is_some()
    }
}

impl std::fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

/// `--service-node-port-range`: inclusive, `FIRST-LAST`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodePortRange {
    pub first: u16,
    pub last: u16,
}

impl NodePortRange {
    pub fn parse(text: &str) -> Result<NodePortRange, String> {
        let bad = || format!("node port range {text:?}: expected FIRST-LAST, e.g. 30000-32767");
        let (a, b) = text.split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(NodePortRange { first, last })
    }

    pub fn size(&self) -> u64 {
        (self.last - self.first) as u64 + 1
    }

    pub fn contains(&self, port: i64) -> bool {
        (self.first as i64..=self.last as i64).contains(&port)
    }
}

impl std::fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// How Services are addressed in this cluster (`drover server` flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    pub service_cidr: ServiceCidr,
    pub node_port_range: NodePortRange,
    /// The `kube-system/kube-dns` Service's ClusterIP (`--cluster-dns`).
    pub cluster_dns: Ipv4Addr,
    /// `--cluster-domain`, e.g. `cluster.local`.
    pub cluster_domain: String,
    /// The address and port this API server is reached at: the endpoint of
    /// the `default/kubernetes` Service. `None` writes no endpoints.
    pub advertise: Option<(std::net::IpAddr, u16)>,
}

impl ServiceConfig {
    /// `cluster_dns` defaults to the 10th address of the range (k3s: 10.43.0.10).
    pub fn new(
        service_cidr: &str,
        node_port_range: &str,
        cluster_dns: Option<Ipv4Addr>,
        cluster_domain: &str,
    ) -> Result<ServiceConfig, String> {
        let service_cidr = ServiceCidr::parse(service_cidr)?;
        let node_port_range = NodePortRange::parse(node_port_range)?;
        let cluster_dns = match cluster_dns {
            Some(ip) => ip,
            None => service_cidr
                .nth(9)
                .ok_or_else(|| format!("service CIDR {service_cidr} is too small"))?,
        };
        let dns_index = service_cidr.index_of(cluster_dns);
        if dns_index.is_none() || dns_index == Some(0) {
            return Err(format!(
                "cluster DNS address {cluster_dns} must be inside the service CIDR {service_cidr} and not its first address"
            ));
        }
        if cluster_domain.is_empty()
            || !apimachinery::names::is_dns1123_subdomain(cluster_domain).is_empty()
        {
            return Err(format!(
                "cluster domain {cluster_domain:?} is not a DNS name"
            ));
        }
        Ok(ServiceConfig {
            service_cidr,
            node_port_range,
            cluster_dns,
            cluster_domain: cluster_domain.to_string(),
            advertise: None,
        })
    }

    /// The `kubernetes` Service's ClusterIP: the first address of the range.
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        self.service_cidr
            .nth(0)
            .expect("a range has a first address")
    }
}

impl Default for ServiceConfig {
    /// k3s's defaults: 10.43.0.0/16, 30000-32767, DNS at 10.43.0.10.
    fn default() -> Self {
        ServiceConfig::new("10.43.0.0/16", "30000-32767", None, "cluster.local")
            .expect("the defaults are valid")
    }
}

// ------------------------------------------------------------ pure decisions

/// What to do about a Service's ClusterIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpPlan {
    /// Headless, ExternalName, or not an IP this allocator manages.
    Nothing,
    /// Already held (an update that keeps it).
    Keep(String),
    /// Any free address.
    Any,
    /// The address the client asked for.
    Specific(String),
}

/// What to do about one port's node port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortPlan {
    Keep(i64),
    Any,
    Specific(i64),
}

/// Everything a create or update allocates and releases (pure: decided from
/// the old and new objects alone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllocationPlan {
    pub cluster_ip: Option<IpPlan>,
    /// (index into spec.ports, plan)
    pub node_ports: Vec<(usize, PortPlan)>,
    /// Held by the old object and no longer needed once the write succeeds.
    pub release_ip: Option<String>,
    pub release_ports: Vec<i64>,
}

fn spec_str<'a>(svc: &'a Value, field: &str) -> &'a str {
    svc.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn service_type(svc: &Value) -> &str {
    match spec_str(svc, "type") {
        "" => "ClusterIP",
        t => t,
    }
}

fn needs_cluster_ip(svc: &Value) -> bool {
    service_type(svc) != "ExternalName"
}

fn needs_node_ports(svc: &Value) -> bool {
    matches!(service_type(svc), "NodePort" | "LoadBalancer")
}

/// The ClusterIP a Service holds a record for (not headless, not ExternalName).
pub fn held_ip(svc: &Value) -> Option<&str> {
    let ip = spec_str(svc, "clusterIP");
    (needs_cluster_ip(svc) && ip.parse::<Ipv4Addr>().is_ok()).then_some(ip)
}

fn ports(svc: &Value) -> Vec<&Value> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn node_port(port: &Value) -> i64 {
    port.get("nodePort").and_then(Value::as_i64).unwrap_or(0)
}

/// The node ports a Service holds records for.
pub fn held_node_ports(svc: &Value) -> BTreeSet<i64> {
    if !needs_node_ports(svc) {
        return BTreeSet::new();
    }
    ports(svc)
        .into_iter()
        .map(node_port)
        .filter(|&p| p != 0)
        .collect()
}

/// kube-apiserver's `patchAllocatedValues` and `dropTypeDependentFields` for
/// an update: a PUT that omits the allocated ClusterIP or node ports keeps
/// them; a type change that no longer needs them (and did not touch them)
/// clears them, so they can be released.
pub fn prepare_update(old: &Value, new: &mut Value) {
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let new_ty = match spec.get("type").and_then(Value::as_str) {
        None | Some("") => "ClusterIP".to_string(),
        Some(t) => t.to_string(),
    };
    let old_spec = old.get("spec").cloned().unwrap_or(json!({}));
    let old_needs_ip = needs_cluster_ip(old);
    let new_needs_ip = new_ty != "ExternalName";
    let old_needs_ports = needs_node_ports(old);
    let new_needs_ports = matches!(new_ty.as_str(), "NodePort" | "LoadBalancer");
    if old_needs_ip && new_needs_ip {
        if spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            if let Some(ip) = old_spec.get("clusterIP").filter(|v| !v.is_null()) {
                spec.insert("clusterIP".into(), ip.clone());
            }
        }
        if spec
            .get("clusterIPs")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty())
        {
            if let Some(ips) = old_spec.get("clusterIPs").filter(|v| !v.is_null()) {
                spec.insert("clusterIPs".into(), ips.clone());
            }
        }
    }
    if old_needs_ports && new_needs_ports {
        let old_ports: Vec<(String, i64)> = ports(old)
            .into_iter()
            .map(|p| {
                let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                (name.to_string(), node_port(p))
            })
            .collect();
        let new_used: BTreeSet<i64> = spec
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(node_port)
            .collect();
        if let Some(Value::Array(ps)) = spec.get_mut("ports") {
            for p in ps.iter_mut() {
                if node_port(p) != 0 {
                    continue;
                }
                let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                let old_value = old_ports
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, np)| *np)
                    .unwrap_or(0);
                if old_value != 0 && !new_used.contains(&old_value) {
                    if let Some(m) = p.as_object_mut() {
                        m.insert("nodePort".into(), json!(old_value));
                    }
                }
            }
        }
    }
    if old_needs_ip && !new_needs_ip {
        let same = |spec: &serde_json::Map<String, Value>, f: &str| spec.get(f) == old_spec.get(f);
        if same(spec, "clusterIP") && same(spec, "clusterIPs") {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        for f in ["ipFamilies", "ipFamilyPolicy"] {
            if same(spec, f) {
                spec.remove(f);
            }
        }
    }
    if old_needs_ports && !new_needs_ports {
        let new_ports: Vec<i64> = spec
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(node_port)
            .collect();
        let old_ports: Vec<i64> = ports(old).into_iter().map(node_port).collect();
        if new_ports == old_ports || new_ports.iter().all(|&p| p == 0) {
            if let Some(Value::Array(ps)) = spec.get_mut("ports") {
                for p in ps.iter_mut().filter_map(Value::as_object_mut) {
                    p.remove("nodePort");
                }
            }
        }
        if spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy") {
            spec.remove("externalTrafficPolicy");
        }
    }
}

/// Decides what a create (`old` = None) or update needs allocated and
/// released. Ranges are not checked here: the allocator does that.
pub fn plan(old: Option<&Value>, new: &Value) -> AllocationPlan {
    let mut out = AllocationPlan::default();
    let old_ip = old.and_then(held_ip);
    let new_ip = spec_str(new, "clusterIP");
    if needs_cluster_ip(new) && new_ip != "None" {
        out.cluster_ip = Some(match (old_ip, new_ip) {
            (Some(o), n) if o == n => IpPlan::Keep(n.to_string()),
            (_, "") => IpPlan::Any,
            (_, n) if n.parse::<Ipv4Addr>().is_ok() => IpPlan::Specific(n.to_string()),
            _ => IpPlan::Nothing,
        });
    }
    let kept_ip = match &out.cluster_ip {
        Some(IpPlan::Keep(ip)) => Some(ip.as_str()),
        _ => None,
    };
    if let Some(o) = old_ip {
        if kept_ip != Some(o) {
            out.release_ip = Some(o.to_string());
        }
    }
    let old_ports = old.map(held_node_ports).unwrap_or_default();
    let mut wanted = BTreeSet::new();
    if needs_node_ports(new) {
        // A LoadBalancer may opt out of automatic node ports.
        let allocate_any = service_type(new) == "NodePort"
            || new
                .pointer("/spec/allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                .unwrap_or(true);
        let mut planned = BTreeSet::new();
        for (i, p) in ports(new).into_iter().enumerate() {
            let np = node_port(p);
            if np == 0 {
                if allocate_any {
                    out.node_ports.push((i, PortPlan::Any));
                }
                continue;
            }
            wanted.insert(np);
            // TCP and UDP of one Service may share a node port: one record.
            if !planned.insert(np) {
                continue;
            }
            if old_ports.contains(&np) {
                out.node_ports.push((i, PortPlan::Keep(np)));
            } else {
                out.node_ports.push((i, PortPlan::Specific(np)));
            }
        }
    }
    out.release_ports = old_ports.difference(&wanted).copied().collect();
    out
}

/// A free index in `0..size` (`taken` holds the used ones). Dynamic
/// allocation starts at a random point of the upper band `lower_band..size`
/// and only then looks in the lower band, which is left for addresses
/// clients choose (Kubernetes' split of the service range).
pub fn pick_free(size: u64, lower_band: u64, taken: &BTreeSet<u64>, random: u64) -> Option<u64> {
    let lower_band = lower_band.min(size);
    for (start, len) in [(lower_band, size - lower_band), (0, lower_band)] {
        if len == 0 {
            continue;
        }
        let offset = random % len;
        for k in 0..len {
            let i = start + (offset + k) % len;
            if !taken.contains(&i) {
                return Some(i);
            }
        }
    }
    None
}

/// Kubernetes' size of the lower band of a service range: size/16, at
/// least 16, at most 256.
pub fn lower_band(size: u64) -> u64 {
    (size / 16).clamp(16, 256).min(size)
}

/// Go's rendering of a `[]string`, which Kubernetes prints in the
/// `spec.clusterIPs` cause.
fn go_string_slice(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// The 422 cause for a ClusterIP the client asked for that cannot be had.
pub fn cluster_ip_cause(svc: &Value, ip: &str, why: &str) -> Cause {
    let ips: Vec<&str> = svc
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_else(|| vec![ip]);
    Cause::invalid_raw(
        "spec.clusterIPs",
        go_string_slice(&ips),
        format!("failed to allocate IP {ip}: {why}"),
    )
}

pub fn not_in_range_message(ip: &str, cidr: &ServiceCidr) -> String {
    format!("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {cidr}")
}

pub const IP_ALLOCATED: &str = "provided IP is already allocated";
pub const PORT_ALLOCATED: &str = "provided port is already allocated";

pub fn port_not_in_range_message(range: &NodePortRange) -> String {
    format!("provided port is not in the valid range. The range of valid ports is {range}")
}

// ------------------------------------------------------------------- records

/// The records one operation created (released again if its write fails).
#[derive(Debug, Default)]
pub(crate) struct Allocated {
    ip: Option<String>,
    ports: Vec<i64>,
}

/// What a successful write lets go of.
#[derive(Debug, Default)]
pub(crate) struct ToRelease {
    namespace: String,
    name: String,
    ip: Option<String>,
    ports: Vec<i64>,
}

fn ip_address_type(server: &ApiServer) -> std::sync::Arc<api::registry::ResourceType> {
    server
        .registry()
        .get("networking.k8s.io", "v1", "ipaddresses")
        .expect("IPAddress is built in")
}

fn ip_address_object(ip: &str, namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IPAddress",
        "metadata": {
            "name": ip,
            "labels": {
                "ipaddress.kubernetes.io/ip-family": "IPv4",
                "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
            },
        },
        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": namespace, "name": name}},
    })
}

fn node_port_key(port: i64) -> String {
    format!("{NODE_PORT_PREFIX}{port}")
}

fn node_port_record(namespace: &str, name: &str, now: &str) -> Bytes {
    Bytes::from(json!({"namespace": namespace, "name": name, "createdAt": now}).to_string())
}

async fn taken_ips(server: &ApiServer, cidr: &ServiceCidr) -> Result<BTreeSet<u64>, ApiError> {
    let rt = ip_address_type(server);
    let resp = server
        .store
        .range(RangeRequest {
            prefix: rt.list_prefix(None),
            start_after: None,
            limit: None,
            revision: None,
        })
        .await
        .map_err(|e| objects::store_error(e, &rt, ""))?;
    Ok(resp
        .kvs
        .iter()
        .filter_map(|kv| kv.key.rsplit('/').next()?.parse::<Ipv4Addr>().ok())
        .filter_map(|ip| cidr.index_of(ip))
        .collect())
}

async fn taken_node_ports(server: &ApiServer) -> Result<BTreeSet<i64>, ApiError> {
    let resp = server
        .store
        .range(RangeRequest {
            prefix: NODE_PORT_PREFIX.into(),
            start_after: None,
            limit: None,
            revision: None,
        })
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(resp
        .kvs
        .iter()
        .filter_map(|kv| kv.key.rsplit('/').next()?.parse().ok())
        .collect())
}

/// Creates the IPAddress for `ip`; `Ok(false)` when it is taken. Written
/// straight to the store (it is the server's own, well-formed object):
/// going through `objects::create` would make creating a Service recurse.
async fn claim_ip(server: &ApiServer, ip: &str, ns: &str, name: &str) -> Result<bool, ApiError> {
    let rt = ip_address_type(server);
    let mut obj = ip_address_object(ip, ns, name);
    obj["metadata"]["uid"] = json!(objects::new_uid(server));
    obj["metadata"]["creationTimestamp"] = json!(server.now_rfc3339());
    let bytes = Bytes::from(serde_json::to_vec(&obj).expect("serializing a Value cannot fail"));
    match server.store.create(&rt.key(None, ip), bytes).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(objects::store_error(e, &rt, ip)),
    }
}

/// Creates the node port record; `Ok(false)` when it is taken.
async fn claim_port(server: &ApiServer, port: i64, ns: &str, name: &str) -> Result<bool, ApiError> {
    let value = node_port_record(ns, name, &server.now_rfc3339());
    match server.store.create(&node_port_key(port), value).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    }
}

/// Deletes the IPAddress of `ip` if `ns/name` still holds it.
async fn release_ip(server: &ApiServer, ip: &str, ns: &str, name: &str) {
    let rt = ip_address_type(server);
    let key = rt.key(None, ip);
    let Ok((Some(kv), _)) = server.store.get(&key).await else {
        return;
    };
    let owner: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
    let parent = owner.pointer("/spec/parentRef");
    let ours = parent
        .and_then(|p| p.get("namespace"))
        .and_then(Value::as_str)
        == Some(ns)
        && parent.and_then(|p| p.get("name")).and_then(Value::as_str) == Some(name);
    if ours {
        if let Err(e) = server.store.delete(&key, Some(kv.mod_revision)).await {
            tracing::warn!("releasing ClusterIP {ip} of service {ns}/{name}: {e}");
        }
    }
}

/// Deletes the record of node port `port` if `ns/name` still holds it.
async fn release_port(server: &ApiServer, port: i64, ns: &str, name: &str) {
    let key = node_port_key(port);
    let Ok((Some(kv), _)) = server.store.get(&key).await else {
        return;
    };
    let owner: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
    if owner["namespace"] == ns && owner["name"] == name {
        if let Err(e) = server.store.delete(&key, Some(kv.mod_revision)).await {
            tracing::warn!("releasing node port {port} of service {ns}/{name}: {e}");
        }
    }
}

fn invalid(svc: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid("", "Service", meta_str(svc, "name").unwrap_or(""), causes)
}

/// Allocates what `svc` (being created, or updated from `old`) needs and
/// writes it into `svc`. On error nothing stays allocated. With `dry_run`
/// nothing is written to the store, but the answer is the same.
pub(crate) async fn allocate(
    server: &ApiServer,
    old: Option<&Value>,
    svc: &mut Value,
    dry_run: bool,
) -> Result<(Allocated, ToRelease), ApiError> {
    let config = server.service_config();
    let decided = plan(old, svc);
    let ns = meta_str(svc, "namespace").unwrap_or("").to_string();
    let name = meta_str(svc, "name").unwrap_or("").to_string();
    let mut allocated = Allocated::default();
    let result = allocate_planned(
        server,
        &config,
        &decided,
        svc,
        &ns,
        &name,
        dry_run,
        &mut allocated,
    )
    .await;
    if let Err(e) = result {
        revert(server, svc, allocated).await;
        return Err(e);
    }
    let release = ToRelease {
        namespace: ns,
        name,
        ip: decided.release_ip,
        ports: decided.release_ports,
    };
    Ok((allocated, release))
}

#[allow(clippy::too_many_arguments)]
async fn allocate_planned(
    server: &ApiServer,
    config: &ServiceConfig,
    decided: &AllocationPlan,
    svc: &mut Value,
    ns: &str,
    name: &str,
    dry_run: bool,
    allocated: &mut Allocated,
) -> Result<(), ApiError> {
    let cidr = config.service_cidr;
    match &decided.cluster_ip {
        Some(IpPlan::Specific(ip)) => {
            if !cidr.contains(ip) {
                let cause = cluster_ip_cause(svc, ip, &not_in_range_message(ip, &cidr));
                return Err(invalid(svc, vec![cause]));
            }
            let free = if dry_run {
                let index = cidr
                    .index_of(ip.parse().expect("checked"))
                    .expect("in range");
                !taken_ips(server, &cidr).await?.contains(&index)
            } else {
                claim_ip(server, ip, ns, name).await?
            };
            if !free {
                return Err(invalid(svc, vec![cluster_ip_cause(svc, ip, IP_ALLOCATED)]));
            }
            if !dry_run {
                allocated.ip = Some(ip.clone());
            }
        }
        Some(IpPlan::Any) => {
            let mut got = None;
            for _ in 0..ALLOCATION_ATTEMPTS {
                let taken = taken_ips(server, &cidr).await?;
                let Some(i) = pick_free(
                    cidr.size(),
                    lower_band(cidr.size()),
                    &taken,
                    server.random_u64(),
                ) else {
                    return Err(ApiError::internal(
                        "failed to allocate a serviceIP: range is full",
                    ));
                };
                let ip = cidr.nth(i).expect("picked in range").to_string();
                if dry_run || claim_ip(server, &ip, ns, name).await? {
                    got = Some(ip);
                    break;
                }
            }
            let ip = got.ok_or_else(|| {
                ApiError::internal(
                    "failed to allocate a serviceIP: too many concurrent allocations",
                )
            })?;
            if !dry_run {
                allocated.ip = Some(ip.clone());
            }
            let spec = svc["spec"].as_object_mut().expect("a service has a spec");
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
        }
        Some(IpPlan::Keep(_)) | Some(IpPlan::Nothing) | None => {}
    }
    let range = config.node_port_range;
    let mut assigned: Vec<(usize, i64)> = Vec::new();
    for (i, p) in &decided.node_ports {
        match p {
            PortPlan::Keep(_) => {}
            PortPlan::Specific(np) => {
                let field = format!("spec.ports[{i}].nodePort");
                if !range.contains(*np) {
                    let cause = Cause::invalid_raw(field, np, port_not_in_range_message(&range));
                    return Err(invalid(svc, vec![cause]));
                }
                let free = if dry_run {
                    !taken_node_ports(server).await?.contains(np)
                } else {
                    claim_port(server, *np, ns, name).await?
                };
                if !free {
                    return Err(invalid(
                        svc,
                        vec![Cause::invalid_raw(field, np, PORT_ALLOCATED)],
                    ));
                }
                if !dry_run {
                    allocated.ports.push(*np);
                }
            }
            PortPlan::Any => {
                let mut got = None;
                for _ in 0..ALLOCATION_ATTEMPTS {
                    let mut taken: BTreeSet<u64> = taken_node_ports(server)
                        .await?
                        .into_iter()
                        .filter(|&p| range.contains(p))
                        .map(|p| (p - range.first as i64) as u64)
                        .collect();
                    // Ports this service is about to use are taken too.
                    for (_, np) in &assigned {
                        taken.insert((np - range.first as i64) as u64);
                    }
                    for (_, plan) in &decided.node_ports {
                        if let PortPlan::Keep(np) | PortPlan::Specific(np) = plan {
                            if range.contains(*np) {
                                taken.insert((np - range.first as i64) as u64);
                            }
                        }
                    }
                    let Some(k) = pick_free(range.size(), 0, &taken, server.random_u64()) else {
                        return Err(ApiError::internal(
                            "failed to allocate a nodePort: range is full",
                        ));
                    };
                    let np = range.first as i64 + k as i64;
                    if dry_run || claim_port(server, np, ns, name).await? {
                        got = Some(np);
                        break;
                    }
                }
                let np = got.ok_or_else(|| {
                    ApiError::internal(
                        "failed to allocate a nodePort: too many concurrent allocations",
                    )
                })?;
                if !dry_run {
                    allocated.ports.push(np);
                }
                assigned.push((*i, np));
            }
        }
    }
    if let Some(Value::Array(ps)) = svc.pointer_mut("/spec/ports") {
        for (i, np) in assigned {
            if let Some(p) = ps.get_mut(i).and_then(Value::as_object_mut) {
                p.insert("nodePort".into(), json!(np));
            }
        }
    }
    Ok(())
}

/// Gives back what `allocate` took for `svc` (its write failed).
pub(crate) async fn revert(server: &ApiServer, svc: &Value, allocated: Allocated) {
    let ns = meta_str(svc, "namespace").unwrap_or("");
    let name = meta_str(svc, "name").unwrap_or("");
    if let Some(ip) = &allocated.ip {
        release_ip(server, ip, ns, name).await;
    }
    for p in allocated.ports {
        release_port(server, p, ns, name).await;
    }
}

/// After a successful update: lets go of what the old object held and the
/// new one does not.
pub(crate) async fn release(server: &ApiServer, r: ToRelease) {
    if let Some(ip) = &r.ip {
        release_ip(server, ip, &r.namespace, &r.name).await;
    }
    for p in r.ports {
        release_port(server, p, &r.namespace, &r.name).await;
    }
}

/// After a Service is deleted: everything it held.
pub(crate) async fn release_all(server: &ApiServer, svc: &Value) {
    let ns = meta_str(svc, "namespace").unwrap_or("");
    let name = meta_str(svc, "name").unwrap_or("");
    if let Some(ip) = held_ip(svc) {
        release_ip(server, ip, ns, name).await;
    }
    for p in held_node_ports(svc) {
        release_port(server, p, ns, name).await;
    }
}

// ------------------------------------------------------- built-in services

/// The `default/kubernetes` Service (the API server) as desired: the first
/// address of the range, `https` 443 → the API server's port.
pub fn kubernetes_service(config: &ServiceConfig) -> Value {
    let target = config.advertise.map(|(_, port)| port).unwrap_or(6443);
    let ip = config.kubernetes_service_ip().to_string();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": target}],
        },
    })
}

/// The `kube-system/kube-dns` Service: no selector, the node agents serve
/// DNS on its address themselves.
pub fn kube_dns_service(config: &ServiceConfig) -> Value {
    let ip = config.cluster_dns.to_string();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                                "kubernetes.io/name": "CoreDNS"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        },
    })
}

fn https_port(port: u16) -> Value {
    json!({"name": "https", "port": port, "protocol": "TCP"})
}

/// The `default/kubernetes` Endpoints with this server's address added:
/// servers sharing a port share the subset; a changed port starts afresh
/// (kube-apiserver assumes every server listens on one port too).
pub fn kubernetes_endpoints(current: Option<&Value>, ip: &str, port: u16) -> Value {
    let mut addresses: Vec<String> = Vec::new();
    if let Some(subset) = current.and_then(|c| c.pointer("/subsets/0")) {
        if subset.get("ports") == Some(&json!([https_port(port)])) {
            addresses = subset
                .get("addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.get("ip").and_then(Value::as_str).map(String::from))
                .collect();
        }
    }
    if !addresses.iter().any(|a| a == ip) {
        addresses.push(ip.to_string());
    }
    addresses.sort();
    let mut obj = current.cloned().unwrap_or_else(|| {
        json!({"apiVersion": "v1", "kind": "Endpoints",
               "metadata": {"name": "kubernetes", "namespace": "default"}})
    });
    obj["metadata"]["labels"] = json!({"endpointslice.kubernetes.io/skip-mirror": "true"});
    obj["subsets"] = json!([{
        "addresses": addresses.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
        "ports": [https_port(port)],
    }]);
    obj
}

/// The `default/kubernetes` EndpointSlice from the Endpoints' addresses.
pub fn kubernetes_endpoint_slice(current: Option<&Value>, endpoints: &Value) -> Value {
    let addresses: Vec<&str> = endpoints
        .pointer("/subsets/0/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.get("ip").and_then(Value::as_str))
        .collect();
    let family = if addresses.iter().any(|a| a.contains(':')) {
        "IPv6"
    } else {
        "IPv4"
    };
    let mut obj = current.cloned().unwrap_or_else(|| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "kubernetes", "namespace": "default"}})
    });
    obj["metadata"]["labels"] = json!({
        "kubernetes.io/service-name": "kubernetes",
        "endpointslice.kubernetes.io/managed-by": "kube-apiserver",
    });
    obj["addressType"] = json!(family);
    obj["endpoints"] = json!(addresses
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect::<Vec<_>>());
    obj["ports"] = endpoints
        .pointer("/subsets/0/ports")
        .cloned()
        .unwrap_or(json!([]));
    obj
}

/// Creates `ns/name` as `desired(None)`, or updates it to `desired(Some(current))`
/// when that differs.
async fn upsert(
    server: &ApiServer,
    rt: &api::registry::ResourceType,
    ns: &str,
    name: &str,
    desired: impl Fn(Option<&Value>) -> Value,
) -> Result<Value, ApiError> {
    let ctx = RequestCtx::internal("kube-apiserver");
    for _ in 0..5 {
        match objects::get(server, rt, Some(ns), name).await {
            Ok((current, _)) => {
                let want = desired(Some(&current));
                if want == current {
                    return Ok(current);
                }
                return objects::update_with(
                    server,
                    rt,
                    Some(ns),
                    name,
                    None,
                    &ctx,
                    "Update",
                    |cur| Ok(desired(Some(cur))),
                )
                .await;
            }
            Err(e) if e.code == 404 => {
                match objects::create(server, rt, Some(ns), desired(None), &ctx).await {
                    Err(e) if e.code == 409 => continue,
                    other => return other,
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        &rt.group,
        &rt.plural,
        name,
        "too many concurrent writers",
    ))
}

/// The built-in Services (every start; idempotent): `default/kubernetes`
/// with this server's endpoint, `kube-system/kube-dns`.
pub(crate) async fn bootstrap(server: &ApiServer) -> Result<(), ApiError> {
    let config = server.service_config();
    let registry = server.registry();
    let svc_rt = registry.get("", "v1", "services").expect("built in");
    for want in [kubernetes_service(&config), kube_dns_service(&config)] {
        let ns = meta_str(&want, "namespace").unwrap_or("").to_string();
        let name = meta_str(&want, "name").unwrap_or("").to_string();
        let result = upsert(server, &svc_rt, &ns, &name, |current| match current {
            None => want.clone(),
            // Kept as found but for the ports (the API server's port may
            // have changed since the last start).
            Some(cur) => {
                let mut cur = cur.clone();
                cur["spec"]["ports"] = want["spec"]["ports"].clone();
                cur
            }
        })
        .await;
        match result {
            Ok(svc) if svc["spec"]["clusterIP"] != want["spec"]["clusterIP"] => tracing::warn!(
                "service {ns}/{name} has ClusterIP {} instead of {}; delete it to have it recreated",
                svc["spec"]["clusterIP"],
                want["spec"]["clusterIP"]
            ),
            Ok(_) => {}
            // Another server on the same store may be creating it right now.
            Err(e) => tracing::warn!("creating service {ns}/{name}: {}", e.message),
        }
    }
    if let Some((ip, port)) = config.advertise {
        let ep_rt = registry.get("", "v1", "endpoints").expect("built in");
        let slice_rt = registry
            .get("discovery.k8s.io", "v1", "endpointslices")
            .expect("built in");
        let ip = ip.to_string();
        let endpoints = upsert(server, &ep_rt, "default", "kubernetes", |cur| {
            kubernetes_endpoints(cur, &ip, port)
        })
        .await?;
        upsert(server, &slice_rt, "default", "kubernetes", |cur| {
            kubernetes_endpoint_slice(cur, &endpoints)
        })
        .await?;
    }
    Ok(())
}

// -------------------------------------------------------------------- repair

/// One allocation record as the repair pass sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The IP (IPAddress name) or the node port.
    pub value: String,
    pub namespace: String,
    pub name: String,
    pub age: Duration,
}

/// What the repair pass does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepairAction {
    /// An IPAddress whose Service is gone or no longer has that IP.
    FreeIp(String),
    FreePort(i64),
    /// A Service holding an IP with no record (e.g. created before records
    /// existed): record it.
    RecordIp {
        ip: String,
        namespace: String,
        name: String,
    },
    RecordPort {
        port: i64,
        namespace: String,
        name: String,
    },
    /// A Service that needs an IP or node ports and has none: an update
    /// allocates them.
    Allocate {
        namespace: String,
        name: String,
    },
}

/// Pure: compares the Services with the records. Orphans younger than
/// `grace` are left alone (their Service may be being written right now).
pub fn repair_plan(
    services: &[Value],
    ips: &[Record],
    ports: &[Record],
    grace: Duration,
) -> Vec<RepairAction> {
    use std::collections::BTreeMap;
    let mut actions = Vec::new();
    let mut want_ips: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut want_ports: BTreeMap<i64, (String, String)> = BTreeMap::new();
    for svc in services {
        let ns = meta_str(svc, "namespace").unwrap_or("").to_string();
        let name = meta_str(svc, "name").unwrap_or("").to_string();
        if let Some(ip) = held_ip(svc) {
            want_ips.insert(ip.to_string(), (ns.clone(), name.clone()));
        }
        for p in held_node_ports(svc) {
            want_ports.insert(p, (ns.clone(), name.clone()));
        }
        let lacks_ip = needs_cluster_ip(svc) && spec_str(svc, "clusterIP").is_empty();
        let lacks_port =
            service_type(svc) == "NodePort" && ports_of(svc).iter().any(|p| node_port(p) == 0);
        if lacks_ip || lacks_port {
            actions.push(RepairAction::Allocate {
                namespace: ns,
                name,
            });
        }
    }
    for r in ips {
        match want_ips.remove(&r.value) {
            Some((ns, name)) if ns == r.namespace && name == r.name => {}
            Some((ns, name)) => {
                // Held by another service than recorded: a conflict a
                // human must resolve; keep the record as it is.
                tracing::warn!(
                    "ClusterIP {} is used by service {ns}/{name} but recorded for {}/{}",
                    r.value,
                    r.namespace,
                    r.name
                );
            }
            None if r.age >= grace => actions.push(RepairAction::FreeIp(r.value.clone())),
            None => {}
        }
    }
    for r in ports {
        let Ok(port) = r.value.parse::<i64>() else {
            continue;
        };
        match want_ports.remove(&port) {
            Some(_) => {}
            None if r.age >= grace => actions.push(RepairAction::FreePort(port)),
            None => {}
        }
    }
    for (ip, (namespace, name)) in want_ips {
        actions.push(RepairAction::RecordIp {
            ip,
            namespace,
            name,
        });
    }
    for (port, (namespace, name)) in want_ports {
        actions.push(RepairAction::RecordPort {
            port,
            namespace,
            name,
        });
    }
    actions
}

fn ports_of(svc: &Value) -> Vec<&Value> {
    ports(svc)
}

fn age_since(now: chrono::DateTime<chrono::Utc>, stamp: Option<&str>) -> Duration {
    stamp
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| {
            (now - t.with_timezone(&chrono::Utc))
                .to_std()
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// Runs the repair pass once: frees orphans, records unrecorded holdings,
/// allocates for Services lacking an IP or node port.
pub(crate) async fn repair(server: &ApiServer) -> Result<(), ApiError> {
    let registry = server.registry();
    let svc_rt = registry.get("", "v1", "services").expect("built in");
    let ip_rt = ip_address_type(server);
    let range = |prefix: String| {
        server.store.range(RangeRequest {
            prefix,
            start_after: None,
            limit: None,
            revision: None,
        })
    };
    let services: Vec<Value> = range(svc_rt.list_prefix(None))
        .await
        .map_err(|e| objects::store_error(e, &svc_rt, ""))?
        .kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    let now = server.now();
    let ips: Vec<Record> = range(ip_rt.list_prefix(None))
        .await
        .map_err(|e| objects::store_error(e, &ip_rt, ""))?
        .kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
        .filter(|o| o.pointer("/spec/parentRef/resource") == Some(&json!("services")))
        .map(|o| Record {
            value: meta_str(&o, "name").unwrap_or("").to_string(),
            namespace: o["spec"]["parentRef"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            name: o["spec"]["parentRef"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            age: age_since(now, meta_str(&o, "creationTimestamp")),
        })
        .collect();
    let ports: Vec<Record> = range(NODE_PORT_PREFIX.to_string())
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .kvs
        .iter()
        .filter_map(|kv| {
            let o: Value = serde_json::from_slice(&kv.value).ok()?;
            Some(Record {
                value: kv.key.rsplit('/').next()?.to_string(),
                namespace: o["namespace"].as_str().unwrap_or("").to_string(),
                name: o["name"].as_str().unwrap_or("").to_string(),
                age: age_since(now, o["createdAt"].as_str()),
            })
        })
        .collect();
    let config = server.service_config();
    for action in repair_plan(&services, &ips, &ports, REPAIR_GRACE) {
        tracing::info!("service allocation repair: {action:?}");
        match action {
            RepairAction::FreeIp(ip) => {
                if let Some(r) = ips.iter().find(|r| r.value == ip) {
                    release_ip(server, &ip, &r.namespace, &r.name).await;
                }
            }
            RepairAction::FreePort(port) => {
                if let Some(r) = ports.iter().find(|r| r.value == port.to_string()) {
                    release_port(server, port, &r.namespace, &r.name).await;
                }
            }
            RepairAction::RecordIp {
                ip,
                namespace,
                name,
            } => {
                if !config.service_cidr.contains(&ip) {
                    tracing::warn!(
                        "ClusterIP {ip} of service {namespace}/{name} is outside the service CIDR {}; recreate the service",
                        config.service_cidr
                    );
                } else if !claim_ip(server, &ip, &namespace, &name).await? {
                    tracing::warn!("ClusterIP {ip} of service {namespace}/{name} is recorded for another service");
                }
            }
            RepairAction::RecordPort {
                port,
                namespace,
                name,
            } => {
                if !claim_port(server, port, &namespace, &name).await? {
                    tracing::warn!("node port {port} of service {namespace}/{name} is recorded for another service");
                }
            }
            RepairAction::Allocate { namespace, name } => {
                let ctx = RequestCtx::internal("ipallocator");
                let result = objects::update_with(
                    server,
                    &svc_rt,
                    Some(&namespace),
                    &name,
                    None,
                    &ctx,
                    "Update",
                    |old| Ok(old.clone()),
                )
                .await;
                if let Err(e) = result {
                    tracing::warn!("allocating for service {namespace}/{name}: {}", e.message);
                }
            }
        }
    }
    Ok(())
}

/// The repair pass every [`REPAIR_INTERVAL`] (the one at start runs in
/// bootstrap).
pub(crate) async fn repair_loop(server: std::sync::Arc<ApiServer>) {
    loop {
        tokio::time::sleep(REPAIR_INTERVAL).await;
        if let Err(e) = repair(&server).await {
            tracing::warn!("service allocation repair failed: {}", e.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing_and_addresses() {
        let c = ServiceCidr::parse("10.43.7.9/16").unwrap();
        assert_eq!(c.to_string(), "10.43.0.0/16");
        assert_eq!(c.size(), 65534);
        assert_eq!(c.nth(0), Some(Ipv4Addr::new(10, 43, 0, 1)));
        assert_eq!(c.nth(9), Some(Ipv4Addr::new(10, 43, 0, 10)));
        assert_eq!(c.nth(65533), Some(Ipv4Addr::new(10, 43, 255, 254)));
        assert_eq!(c.nth(65534), None);
        assert_eq!(c.index_of(Ipv4Addr::new(10, 43, 0, 0)), None, "network");
        assert_eq!(
            c.index_of(Ipv4Addr::new(10, 43, 255, 255)),
            None,
            "broadcast"
        );
        assert_eq!(c.index_of(Ipv4Addr::new(10, 44, 0, 1)), None);
        assert_eq!(c.index_of(Ipv4Addr::new(10, 42, 255, 254)), None);
        assert_eq!(c.index_of(Ipv4Addr::new(10, 43, 1, 0)), Some(255));
        assert!(c.contains("10.43.0.1"));
        assert!(!c.contains("1.2.3.4"));
        assert!(!c.contains("nonsense"));
        let small = ServiceCidr::parse("10.150.3.0/24").unwrap();
        assert_eq!(small.size(), 254);
        for bad in [
            "10.43.0.0",
            "10.43.0.0/8",
            "10.43.0.0/31",
            "fd00::/108",
            "x/16",
            "10.43.0.0/x",
        ] {
            assert!(ServiceCidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_port_range_parsing() {
        let r = NodePortRange::parse("30000-32767").unwrap();
        assert_eq!((r.first, r.last, r.size()), (30000, 32767, 2768));
        assert!(r.contains(30000) && r.contains(32767) && !r.contains(29999) && !r.contains(32768));
        assert_eq!(r.to_string(), "30000-32767");
        for bad in ["30000", "32767-30000", "0-10", "a-b", "1-70000"] {
            assert!(NodePortRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_defaults_and_cluster_dns() {
        let c = ServiceConfig::default();
        assert_eq!(c.service_cidr.to_string(), "10.43.0.0/16");
        assert_eq!(c.cluster_dns, Ipv4Addr::new(10, 43, 0, 10));
        assert_eq!(c.kubernetes_service_ip(), Ipv4Addr::new(10, 43, 0, 1));
        let c = ServiceConfig::new("10.151.4.0/24", "30000-30100", None, "cluster.local").unwrap();
        assert_eq!(c.cluster_dns, Ipv4Addr::new(10, 151, 4, 10));
        for dns in [Ipv4Addr::new(10, 43, 0, 1), Ipv4Addr::new(10, 44, 0, 10)] {
            assert!(
                ServiceConfig::new("10.43.0.0/16", "30000-32767", Some(dns), "cluster.local")
                    .is_err()
            );
        }
        assert!(ServiceConfig::new("10.43.0.0/16", "30000-32767", None, "Bad_Domain").is_err());
    }

    #[test]
    fn pick_free_prefers_the_upper_band_and_wraps() {
        let none = BTreeSet::new();
        for r in 0..50 {
            let i = pick_free(254, 16, &none, r).unwrap();
            assert!((16..254).contains(&i), "{i}");
        }
        // Upper band full: the lower band is used.
        let upper: BTreeSet<u64> = (16..254).collect();
        assert!(pick_free(254, 16, &upper, 7).unwrap() < 16);
        // Everything taken but one.
        let mut all: BTreeSet<u64> = (0..254).collect();
        all.remove(&3);
        assert_eq!(pick_free(254, 16, &all, 12345), Some(3));
        all.insert(3);
        assert_eq!(pick_free(254, 16, &all, 1), None);
        // Wraps from the random start to find the one free slot.
        let taken: BTreeSet<u64> = (0..10).filter(|&i| i != 2).collect();
        assert_eq!(pick_free(10, 0, &taken, 7), Some(2));
        assert_eq!(lower_band(254), 16);
        assert_eq!(lower_band(65534), 256);
        assert_eq!(lower_band(8), 8);
    }

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn plan_cluster_ips() {
        use IpPlan::*;
        let check = |old: Option<Value>, new: Value, ip: Option<IpPlan>, release: Option<&str>| {
            let p = plan(old.as_ref(), &new);
            assert_eq!(p.cluster_ip, ip, "{old:?} -> {new}");
            assert_eq!(p.release_ip.as_deref(), release, "{old:?} -> {new}");
        };
        check(None, svc(json!({})), Some(Any), None);
        check(
            None,
            svc(json!({"clusterIP": "10.43.0.7"})),
            Some(Specific("10.43.0.7".into())),
            None,
        );
        check(None, svc(json!({"clusterIP": "None"})), None, None);
        check(
            None,
            svc(json!({"type": "ExternalName", "externalName": "a.b"})),
            None,
            None,
        );
        let held = svc(json!({"clusterIP": "10.43.0.7"}));
        check(
            Some(held.clone()),
            held.clone(),
            Some(Keep("10.43.0.7".into())),
            None,
        );
        check(
            Some(held.clone()),
            svc(json!({"type": "ExternalName", "externalName": "a.b"})),
            None,
            Some("10.43.0.7"),
        );
        check(
            Some(svc(json!({"type": "ExternalName", "externalName": "a.b"}))),
            svc(json!({"type": "ClusterIP"})),
            Some(Any),
            None,
        );
        check(
            Some(svc(json!({"clusterIP": "None"}))),
            svc(json!({"clusterIP": "None"})),
            None,
            None,
        );
    }

    #[test]
    fn plan_node_ports() {
        use PortPlan::*;
        let np = |ports: Value, ty: &str| {
            svc(json!({"type": ty, "clusterIP": "10.43.0.7", "ports": ports}))
        };
        let p = plan(
            None,
            &np(
                json!([{"port": 80}, {"port": 81, "nodePort": 30001}]),
                "NodePort",
            ),
        );
        assert_eq!(p.node_ports, vec![(0, Any), (1, Specific(30001))]);
        // TCP and UDP sharing one node port: one record.
        let p = plan(
            None,
            &np(
                json!([{"port": 53, "protocol": "UDP", "nodePort": 30053}, {"port": 53, "protocol": "TCP", "nodePort": 30053}]),
                "NodePort",
            ),
        );
        assert_eq!(p.node_ports, vec![(0, Specific(30053))]);
        // Kept on update, the dropped one released.
        let old = np(
            json!([{"name": "a", "port": 80, "nodePort": 30001}, {"name": "b", "port": 81, "nodePort": 30002}]),
            "NodePort",
        );
        let new = np(
            json!([{"name": "a", "port": 80, "nodePort": 30001}]),
            "NodePort",
        );
        let p = plan(Some(&old), &new);
        assert_eq!(p.node_ports, vec![(0, Keep(30001))]);
        assert_eq!(p.release_ports, vec![30002]);
        // To ClusterIP: everything released.
        let p = plan(
            Some(&old),
            &np(json!([{"name": "a", "port": 80}]), "ClusterIP"),
        );
        assert!(p.node_ports.is_empty());
        assert_eq!(p.release_ports, vec![30001, 30002]);
        // A LoadBalancer without automatic node ports.
        let mut lb = np(json!([{"port": 80}]), "LoadBalancer");
        lb["spec"]["allocateLoadBalancerNodePorts"] = json!(false);
        assert!(plan(None, &lb).node_ports.is_empty());
    }

    #[test]
    fn prepare_update_keeps_allocations_and_drops_them_on_type_change() {
        let old = svc(
            json!({"type": "NodePort", "clusterIP": "10.43.0.7", "clusterIPs": ["10.43.0.7"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "externalTrafficPolicy": "Cluster",
            "ports": [{"name": "a", "port": 80, "nodePort": 30001}]}),
        );
        // A PUT without the allocated values keeps them.
        let mut new = svc(json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}]}));
        prepare_update(&old, &mut new);
        assert_eq!(new["spec"]["clusterIP"], "10.43.0.7");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.43.0.7"]));
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30001);
        // To ExternalName with the old values still in: they are cleared.
        let mut new = old.clone();
        new["spec"]["type"] = json!("ExternalName");
        new["spec"]["externalName"] = json!("a.example");
        prepare_update(&old, &mut new);
        for f in [
            "clusterIP",
            "clusterIPs",
            "ipFamilies",
            "ipFamilyPolicy",
            "externalTrafficPolicy",
        ] {
            assert!(new["spec"].get(f).is_none(), "{f}: {new}");
        }
        assert!(new["spec"]["ports"][0].get("nodePort").is_none());
        // To ClusterIP: node ports go, the IP stays.
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        prepare_update(&old, &mut new);
        assert!(new["spec"]["ports"][0].get("nodePort").is_none());
        assert!(new["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(new["spec"]["clusterIP"], "10.43.0.7");
    }

    #[test]
    fn repair_frees_old_orphans_and_records_unrecorded() {
        let record = |value: &str, name: &str, age_s: u64| Record {
            value: value.into(),
            namespace: "default".into(),
            name: name.into(),
            age: Duration::from_secs(age_s),
        };
        let services = vec![
            svc(
                json!({"type": "NodePort", "clusterIP": "10.43.0.7", "ports": [{"port": 80, "nodePort": 30001}]}),
            ),
            json!({"metadata": {"name": "legacy", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}),
            json!({"metadata": {"name": "headless", "namespace": "default"}, "spec": {"clusterIP": "None"}}),
        ];
        let ips = vec![
            record("10.43.0.8", "gone", 600),
            record("10.43.0.9", "young", 5),
            // A record of a service that now has another IP.
            record("10.43.0.11", "web", 600),
        ];
        let ports = vec![record("30002", "gone", 600), record("30001", "web", 600)];
        let actions = repair_plan(&services, &ips, &ports, REPAIR_GRACE);
        assert_eq!(
            actions,
            vec![
                RepairAction::Allocate {
                    namespace: "default".into(),
                    name: "legacy".into()
                },
                RepairAction::FreeIp("10.43.0.8".into()),
                RepairAction::FreeIp("10.43.0.11".into()),
                RepairAction::FreePort(30002),
                RepairAction::RecordIp {
                    ip: "10.43.0.7".into(),
                    namespace: "default".into(),
                    name: "web".into()
                },
            ]
        );
    }

    #[test]
    fn error_messages_are_kubernetes() {
        let cidr = ServiceCidr::parse("10.43.0.0/16").unwrap();
        let s = svc(json!({"clusterIP": "1.2.3.4", "clusterIPs": ["1.2.3.4"]}));
        let cause = cluster_ip_cause(&s, "1.2.3.4", &not_in_range_message("1.2.3.4", &cidr));
        assert_eq!(cause.field, "spec.clusterIPs");
        assert_eq!(
            cause.message,
            "Invalid value: []string{\"1.2.3.4\"}: failed to allocate IP 1.2.3.4: the provided IP (1.2.3.4) is not in the valid range. The range of valid IPs is 10.43.0.0/16"
        );
        assert_eq!(
            port_not_in_range_message(&NodePortRange::parse("30000-32767").unwrap()),
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
    }

    #[test]
    fn kubernetes_endpoints_add_this_server() {
        let first = kubernetes_endpoints(None, "10.0.0.1", 6443);
        assert_eq!(
            first["subsets"],
            json!([{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}])
        );
        let both = kubernetes_endpoints(Some(&first), "10.0.0.2", 6443);
        assert_eq!(
            both["subsets"][0]["addresses"],
            json!([{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}])
        );
        assert_eq!(
            kubernetes_endpoints(Some(&both), "10.0.0.2", 6443),
            both,
            "idempotent"
        );
        // This server now on another port: it starts the subset afresh.
        let moved = kubernetes_endpoints(Some(&both), "10.0.0.2", 7443);
        assert_eq!(
            moved["subsets"][0]["addresses"],
            json!([{"ip": "10.0.0.2"}])
        );
        let slice = kubernetes_endpoint_slice(None, &both);
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "kubernetes"
        );
        assert_eq!(
            slice["endpoints"][1],
            json!({"addresses": ["10.0.0.2"], "conditions": {"ready": true}})
        );
        assert_eq!(slice["ports"], both["subsets"][0]["ports"]);
    }
}
