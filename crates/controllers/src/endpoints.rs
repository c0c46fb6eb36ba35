//! The Endpoints controller and the EndpointSlice controller: publish the
//! addresses of the pods a Service selects, as kube-controller-manager's
//! `pkg/controller/endpoint` and `pkg/controller/endpointslice` (with the
//! reconciler of `k8s.io/endpointslice`) do.
//!
//! Differences from Kubernetes, all deliberate:
//! - No `endpoints.kubernetes.io/last-change-trigger-time` annotation: it
//!   needs a tracker of pod change times across syncs, which a pure
//!   function does not keep. An annotation already present is left as is.
//! - Switching a Service to `ExternalName` deletes what these controllers
//!   wrote for it (the Endpoints only if it carries our
//!   `endpoints.kubernetes.io/managed-by` label, the EndpointSlices only if
//!   labeled as ours); Kubernetes just stops updating them and leaves them
//!   stale.
//! - A Service being deleted plans nothing at all (Kubernetes still updates
//!   and deletes slices then, but never creates); the garbage collector
//!   removes the slices through their owner reference.
//! - A Service whose selector is an empty map is treated like one without a
//!   selector (Kubernetes' protobuf storage turns `{}` into nil anyway).
//! - Writes are decided by comparing the whole desired content (labels,
//!   subsets or endpoints, with `targetRef.resourceVersion` ignored) with
//!   what is stored, so the Endpoints over capacity are written once, not
//!   on every sync, and a stale headless label is corrected on slices too.
//! - Order is deterministic where Kubernetes uses hash or map order:
//!   addresses by IP then pod uid, ports by name/port/protocol, subsets by
//!   port set, new slice endpoints by address, existing slices by name.
//! - No topology hints and no `trafficDistribution`; hints found on
//!   endpoints are removed (as Kubernetes does when neither is configured).
//! - A pod whose node is not in the cache is left out (unless
//!   `publishNotReadyAddresses`) and the plan asks to be requeued after
//!   [`MISSING_NODE_REQUEUE`], where Kubernetes returns an error and
//!   retries with back-off.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Node, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::plan::{Action, Plan, Resource};
use crate::pods;

/// The label the Endpoints controller puts on the Endpoints it writes
/// (Kubernetes 1.33+), so they can be told from hand-made ones.
pub const ENDPOINTS_MANAGED_BY_LABEL: &str = "endpoints.kubernetes.io/managed-by";
/// The value of [`ENDPOINTS_MANAGED_BY_LABEL`].
pub const ENDPOINTS_CONTROLLER_NAME: &str = "endpoint-controller";
/// Set (empty) on Endpoints and EndpointSlices of services without a
/// cluster IP.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Set to `truncated` when an Endpoints would hold more than
/// [`MAX_ENDPOINTS_CAPACITY`] addresses.
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// At most this many addresses (ready and not ready) in one Endpoints.
pub const MAX_ENDPOINTS_CAPACITY: usize = 1000;

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages an EndpointSlice.
pub const SLICE_MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The value of [`SLICE_MANAGED_BY_LABEL`] for this controller.
pub const SLICE_CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// kube-controller-manager's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// The node label an endpoint's zone comes from.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// How soon to retry when a pod's node is not (yet) in the cache.
pub const MISSING_NODE_REQUEUE: Duration = Duration::from_secs(5);

const IPV4: &str = "IPv4";
const IPV6: &str = "IPv6";

// ---------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------

/// Endpoints reconcile for `service`. `pods` may be any pods; only those of
/// the service's namespace that its selector matches are used. `current`
/// is the Endpoints named like the service, if it exists.
pub fn reconcile_endpoints(
    service: &Service,
    pods: &[&Pod],
    current: Option<&Endpoints>,
    now: jiff::Timestamp,
) -> Plan {
    // `now` would date the last-change-trigger-time annotation (not written).
    let _ = now;
    let mut plan = Plan::default();
    if service.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    if is_external_name(service) {
        if let Some(ep) = current.filter(|ep| endpoints_managed_by_us(ep)) {
            plan.push(delete_endpoints(ep));
        }
        return plan;
    }
    let Some(selected) = selected_pods(service, pods) else {
        return plan;
    };

    let mut subsets = desired_subsets(service, &selected);
    let truncated = truncate_subsets(&mut subsets);
    let subsets = non_empty(subsets.into_iter().map(Subset::into_typed).collect());
    let labels = endpoints_labels(service);
    let mut annotations = current
        .and_then(|c| c.metadata.annotations.clone())
        .unwrap_or_default();
    if truncated {
        annotations.insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY_ANNOTATION);
    }

    match current {
        None => {
            let object = Endpoints {
                metadata: ObjectMeta {
                    name: service.metadata.name.clone(),
                    namespace: service.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: non_empty_map(annotations),
                    ..Default::default()
                },
                subsets,
            };
            plan.push(Action::Create {
                resource: Resource::Endpoints,
                namespace: service.metadata.namespace.clone(),
                object: pods::to_value(&object),
            });
        }
        Some(cur) => {
            let unchanged = normalized_subsets(cur.subsets.as_deref())
                == normalized_subsets(subsets.as_deref())
                && cur.metadata.labels.clone().unwrap_or_default() == labels
                && cur.metadata.annotations.clone().unwrap_or_default() == annotations;
            if !unchanged {
                let mut object = cur.clone();
                object.metadata.labels = Some(labels);
                object.metadata.annotations = non_empty_map(annotations);
                object.subsets = subsets;
                plan.push(Action::Update {
                    resource: Resource::Endpoints,
                    namespace: cur.metadata.namespace.clone(),
                    name: cur.metadata.name.clone().unwrap_or_default(),
                    object: pods::to_value(&object),
                });
            }
        }
    }
    plan
}

/// For an Endpoints whose Service no longer exists: delete it if this
/// controller wrote it (Kubernetes deletes it on "service not found"; the
/// label spares Endpoints that people made by hand).
pub fn reconcile_endpoints_without_service(current: &Endpoints) -> Plan {
    let mut plan = Plan::default();
    if endpoints_managed_by_us(current) && current.metadata.deletion_timestamp.is_none() {
        plan.push(delete_endpoints(current));
    }
    plan
}

fn endpoints_managed_by_us(ep: &Endpoints) -> bool {
    label(&ep.metadata, ENDPOINTS_MANAGED_BY_LABEL) == Some(ENDPOINTS_CONTROLLER_NAME)
}

fn delete_endpoints(ep: &Endpoints) -> Action {
    Action::Delete {
        resource: Resource::Endpoints,
        namespace: ep.metadata.namespace.clone(),
        name: ep.metadata.name.clone().unwrap_or_default(),
        uid: ep.metadata.uid.clone(),
        propagation: None,
    }
}

/// The service's labels, plus the managed-by label, plus the headless
/// label when the service has no cluster IP.
fn endpoints_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        ENDPOINTS_MANAGED_BY_LABEL.into(),
        ENDPOINTS_CONTROLLER_NAME.into(),
    );
    if service_ip_set(service) {
        labels.remove(HEADLESS_LABEL);
    } else {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// An endpoint port as an orderable tuple: name, port, protocol,
/// appProtocol.
type PortTuple = (String, i32, String, Option<String>);

/// One subset while it is built: the addresses offering exactly `ports`.
struct Subset {
    ports: Vec<PortTuple>,
    ready: Vec<EndpointAddress>,
    not_ready: Vec<EndpointAddress>,
}

impl Subset {
    fn into_typed(self) -> EndpointSubset {
        let ports = self
            .ports
            .into_iter()
            .map(|(name, port, protocol, app_protocol)| EndpointPort {
                name: (!name.is_empty()).then_some(name),
                port,
                protocol: Some(protocol),
                app_protocol,
            })
            .collect();
        EndpointSubset {
            addresses: non_empty(self.ready),
            not_ready_addresses: non_empty(self.not_ready),
            ports: non_empty(ports),
        }
    }
}

/// Every selected pod's address with the set of ports it offers, grouped
/// into one subset per distinct port set (Kubernetes' `RepackSubsets`).
fn desired_subsets(service: &Service, selected: &[&Pod]) -> Vec<Subset> {
    let spec = service.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let service_ports = spec.ports.clone().unwrap_or_default();
    let headless = spec.cluster_ip.as_deref() == Some("None");

    // (ip, pod uid) -> (address, ready, ports)
    type Entry = (EndpointAddress, bool, BTreeSet<PortTuple>);
    let mut by_address: BTreeMap<(String, String), Entry> = BTreeMap::new();
    for pod in selected {
        if !should_pod_be_in_endpoints(pod, publish_not_ready) {
            continue;
        }
        let Some(ip) = endpoint_ip_for_service(service, pod) else {
            continue;
        };
        let address = EndpointAddress {
            ip: ip.clone(),
            hostname: should_set_hostname(pod, service).then(|| pod_hostname(pod)),
            node_name: pod_node_name(pod).map(str::to_string),
            target_ref: Some(pod_reference(pod)),
        };
        let ready = publish_not_ready || pods::is_pod_ready(pod);
        let ports: BTreeSet<PortTuple> = if service_ports.is_empty() {
            // Headless services may have no ports; others publish nothing.
            if !headless {
                continue;
            }
            BTreeSet::new()
        } else {
            let found: BTreeSet<PortTuple> = service_ports
                .iter()
                .filter_map(|sp| {
                    let port = find_port(pod, sp)?;
                    Some((
                        sp.name.clone().unwrap_or_default(),
                        port,
                        service_port_protocol(sp).to_string(),
                        sp.app_protocol.clone(),
                    ))
                })
                .collect();
            if found.is_empty() {
                continue;
            }
            found
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        by_address.insert((ip, uid), (address, ready, ports));
    }

    let mut by_ports: BTreeMap<Vec<PortTuple>, Subset> = BTreeMap::new();
    for (address, ready, ports) in by_address.into_values() {
        let ports: Vec<PortTuple> = ports.into_iter().collect();
        let subset = by_ports.entry(ports.clone()).or_insert_with(|| Subset {
            ports,
            ready: Vec::new(),
            not_ready: Vec::new(),
        });
        if ready {
            subset.ready.push(address);
        } else {
            subset.not_ready.push(address);
        }
    }
    by_ports.into_values().collect()
}

/// Keeps at most [`MAX_ENDPOINTS_CAPACITY`] addresses, ready ones first,
/// shared among subsets in proportion to their size (Kubernetes'
/// `truncateEndpoints`). Returns whether anything was cut.
fn truncate_subsets(subsets: &mut [Subset]) -> bool {
    let total_ready: usize = subsets.iter().map(|s| s.ready.len()).sum();
    let total_not_ready: usize = subsets.iter().map(|s| s.not_ready.len()).sum();
    if total_ready + total_not_ready <= MAX_ENDPOINTS_CAPACITY {
        return false;
    }
    let truncate_ready = total_ready > MAX_ENDPOINTS_CAPACITY;
    let (max, num_total) = if truncate_ready {
        (MAX_ENDPOINTS_CAPACITY, total_ready)
    } else {
        (MAX_ENDPOINTS_CAPACITY - total_ready, total_not_ready)
    };
    let mut can_be_added = max;
    for subset in subsets.iter_mut() {
        let in_subset = if truncate_ready {
            subset.ready.len()
        } else {
            subset.not_ready.len()
        };
        // The proportional share, rounded up; the last subsets get less.
        let to_be_added = (in_subset * max).div_ceil(num_total).min(can_be_added);
        if truncate_ready {
            subset.ready.truncate(to_be_added);
            subset.not_ready.clear();
            can_be_added -= subset.ready.len();
        } else {
            subset.not_ready.truncate(to_be_added);
            can_be_added -= subset.not_ready.len();
        }
    }
    true
}

/// Subsets as the API server would store them, for comparison: empty lists
/// absent, empty strings absent, `targetRef.resourceVersion` ignored.
fn normalized_subsets(subsets: Option<&[EndpointSubset]>) -> Vec<EndpointSubset> {
    let addresses = |list: &Option<Vec<EndpointAddress>>| {
        non_empty(
            list.iter()
                .flatten()
                .map(|a| EndpointAddress {
                    ip: a.ip.clone(),
                    hostname: a.hostname.clone().filter(|s| !s.is_empty()),
                    node_name: a.node_name.clone().filter(|s| !s.is_empty()),
                    target_ref: a.target_ref.as_ref().map(without_resource_version),
                })
                .collect(),
        )
    };
    subsets
        .unwrap_or_default()
        .iter()
        .map(|s| EndpointSubset {
            addresses: addresses(&s.addresses),
            not_ready_addresses: addresses(&s.not_ready_addresses),
            ports: non_empty(
                s.ports
                    .iter()
                    .flatten()
                    .map(|p| EndpointPort {
                        name: p.name.clone().filter(|s| !s.is_empty()),
                        port: p.port,
                        protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                        app_protocol: p.app_protocol.clone(),
                    })
                    .collect(),
            ),
        })
        .collect()
}

/// The pod IP of the service's (primary) IP family, as Kubernetes'
/// `podToEndpointAddressForService` picks it.
fn endpoint_ip_for_service(service: &Service, pod: &Pod) -> Option<String> {
    let spec = service.spec.as_ref();
    let family = spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first());
    let cluster_ip = spec.and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
    let want_v6 = match family {
        Some(f) => f == IPV6,
        None if !cluster_ip.is_empty() && cluster_ip != "None" => is_ipv6(cluster_ip),
        // Headless without families: guess from the pod's primary IP.
        None => pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .is_some_and(is_ipv6),
    };
    pod_ips(pod)
        .into_iter()
        .find(|ip| is_ipv6(ip) == want_v6)
        .map(str::to_string)
}

// ---------------------------------------------------------------------------
// EndpointSlices
// ---------------------------------------------------------------------------

/// EndpointSlice reconcile for `service`. `pods` may be any pods (only those
/// the service selects are used), `nodes` give endpoint zones, `current`
/// may hold any slices: only those labeled as this controller's for this
/// service are considered, others are left alone.
pub fn reconcile_endpoint_slices(
    service: &Service,
    pods: &[&Pod],
    nodes: &[&Node],
    current: &[&EndpointSlice],
    now: jiff::Timestamp,
) -> Plan {
    // `now` would date the last-change-trigger-time annotation (not written).
    let _ = now;
    let mut plan = Plan::default();
    if service.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let service_name = service.metadata.name.as_deref().unwrap_or_default();
    let mut managed: Vec<&EndpointSlice> = current
        .iter()
        .copied()
        .filter(|s| {
            s.metadata.namespace == service.metadata.namespace
                && label(&s.metadata, SERVICE_NAME_LABEL) == Some(service_name)
                && label(&s.metadata, SLICE_MANAGED_BY_LABEL) == Some(SLICE_CONTROLLER_NAME)
        })
        .collect();
    managed.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    if is_external_name(service) {
        for slice in managed {
            plan.push(delete_slice(slice));
        }
        return plan;
    }
    let Some(selected) = selected_pods(service, pods) else {
        return plan;
    };

    let address_types = address_types_for_service(service);
    let mut unsupported = Vec::new();
    let mut by_type: BTreeMap<&str, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in managed {
        if address_types.contains(slice.address_type.as_str()) {
            by_type
                .entry(slice.address_type.as_str())
                .or_default()
                .push(slice);
        } else {
            unsupported.push(slice);
        }
    }

    let labels = slice_labels(service);
    let mut missing_node = false;
    for address_type in &address_types {
        let existing = by_type.remove(address_type).unwrap_or_default();
        let changes = reconcile_address_type(
            service,
            &selected,
            nodes,
            &existing,
            address_type,
            &labels,
            &mut missing_node,
        );
        for slice in changes.create {
            plan.push(Action::Create {
                resource: Resource::EndpointSlices,
                namespace: service.metadata.namespace.clone(),
                object: pods::to_value(&slice),
            });
        }
        for slice in changes.update {
            plan.push(Action::Update {
                resource: Resource::EndpointSlices,
                namespace: slice.metadata.namespace.clone(),
                name: slice.metadata.name.clone().unwrap_or_default(),
                object: pods::to_value(&slice),
            });
        }
        for slice in changes.delete {
            plan.push(delete_slice(slice));
        }
    }
    for slice in unsupported {
        plan.push(delete_slice(slice));
    }
    if missing_node {
        plan.requeue(MISSING_NODE_REQUEUE);
    }
    plan
}

fn delete_slice(slice: &EndpointSlice) -> Action {
    Action::Delete {
        resource: Resource::EndpointSlices,
        namespace: slice.metadata.namespace.clone(),
        name: slice.metadata.name.clone().unwrap_or_default(),
        uid: slice.metadata.uid.clone(),
        propagation: None,
    }
}

/// The writes for one address type.
#[derive(Default)]
struct SliceChanges<'a> {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<&'a EndpointSlice>,
}

/// A port set as an orderable key (order-independent, like Kubernetes'
/// `PortMapKey`).
type PortsKey = Vec<PortTuple>;

/// An endpoint's identity (Kubernetes' `hashEndpoint`): its addresses, its
/// hostname and the pod it stands for.
type EndpointKey = (Vec<String>, String, String, String);

fn reconcile_address_type<'a>(
    service: &Service,
    selected: &[&Pod],
    nodes: &[&Node],
    existing: &[&'a EndpointSlice],
    address_type: &str,
    labels: &BTreeMap<String, String>,
    missing_node: &mut bool,
) -> SliceChanges<'a> {
    let mut changes = SliceChanges::default();
    let publish_not_ready = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);

    let mut existing_by_ports: BTreeMap<PortsKey, Vec<&'a EndpointSlice>> = BTreeMap::new();
    for &slice in existing {
        if owned_by(slice, service) {
            existing_by_ports
                .entry(ports_key(slice.ports.as_deref().unwrap_or_default()))
                .or_default()
                .push(slice);
        } else {
            // Left over from an earlier Service of the same name.
            changes.delete.push(slice);
        }
    }

    type Desired = (Vec<SlicePort>, BTreeMap<EndpointKey, Endpoint>);
    let mut desired: BTreeMap<PortsKey, Desired> = BTreeMap::new();
    for pod in selected {
        if !should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        let ports = slice_ports(service, pod);
        let (_, endpoints) = desired
            .entry(ports_key(&ports))
            .or_insert_with(|| (ports, BTreeMap::new()));
        let node_name = pod_node_name(pod).unwrap_or_default();
        let node = nodes
            .iter()
            .copied()
            .find(|n| n.metadata.name.as_deref() == Some(node_name));
        if node.is_none() && !publish_not_ready {
            *missing_node = true;
            continue;
        }
        let endpoint = pod_to_endpoint(pod, node, service, address_type);
        if !endpoint.addresses.is_empty() {
            endpoints.insert(endpoint_key(&endpoint), endpoint);
        }
    }

    for (key, (ports, endpoints)) in desired.iter_mut() {
        let slices = existing_by_ports.get(key).map(Vec::as_slice).unwrap_or(&[]);
        reconcile_port_mapping(
            service,
            slices,
            std::mem::take(endpoints),
            ports,
            address_type,
            labels,
            &mut changes,
        );
    }
    for (key, slices) in &existing_by_ports {
        if !desired.contains_key(key) {
            changes.delete.extend(slices.iter().copied());
        }
    }

    // A service always has at least one slice per address type, even empty.
    if existing.len() == changes.delete.len() && changes.create.is_empty() {
        let placeholder = new_slice(service, Vec::new(), address_type, labels);
        if changes.delete.len() == 1 && is_placeholder_like(changes.delete[0], &placeholder) {
            changes.delete.clear();
        } else {
            changes.create.push(placeholder);
        }
    }

    // Rather than create one slice and delete another, rewrite the one that
    // would be deleted.
    let mut i = 0;
    while i < changes.delete.len() && !changes.create.is_empty() {
        let old = changes.delete[i];
        if owned_by(old, service) && old.address_type == address_type {
            let new = changes.create.pop().expect("checked non-empty");
            changes.delete.remove(i);
            let mut reused = old.clone();
            reused.metadata.labels = new.metadata.labels;
            reused.ports = new.ports;
            reused.endpoints = new.endpoints;
            changes.update.push(reused);
        } else {
            i += 1;
        }
    }
    changes
}

/// Kubernetes' `reconcileByPortMapping`: keep wanted endpoints where they
/// are (updating the changed ones), drop unwanted ones, then place the new
/// ones into slices already being written, then into the unchanged slice
/// they fill best, then into new slices.
fn reconcile_port_mapping<'a>(
    service: &Service,
    existing: &[&'a EndpointSlice],
    mut wanted: BTreeMap<EndpointKey, Endpoint>,
    ports: &[SlicePort],
    address_type: &str,
    labels: &BTreeMap<String, String>,
    changes: &mut SliceChanges<'a>,
) {
    let mut to_update: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<&EndpointSlice> = Vec::new();
    for &slice in existing {
        let mut kept = Vec::new();
        let mut endpoint_changed = false;
        for endpoint in &slice.endpoints {
            if let Some(want) = wanted.remove(&endpoint_key(endpoint)) {
                if !endpoints_equal(&want, endpoint) {
                    endpoint_changed = true;
                }
                kept.push(want);
            }
        }
        let labels_changed = slice.metadata.labels.as_ref() != Some(labels);
        if endpoint_changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                changes.delete.push(slice);
            } else {
                let mut updated = slice.clone();
                updated.endpoints = kept;
                updated.metadata.labels = Some(labels.clone());
                to_update.push(updated);
            }
        } else if labels_changed {
            let mut updated = slice.clone();
            updated.metadata.labels = Some(labels.clone());
            to_update.push(updated);
        } else {
            unchanged.push(slice);
        }
    }

    // Fill the slices being written anyway, fullest first.
    if !wanted.is_empty() {
        to_update.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
        for slice in &mut to_update {
            fill(slice, &mut wanted);
        }
    }

    while !wanted.is_empty() {
        let reuse = if wanted.len() < MAX_ENDPOINTS_PER_SLICE {
            slice_to_fill(&unchanged, wanted.len())
        } else {
            None
        };
        let mut slice = match reuse {
            Some(i) => unchanged.remove(i).clone(),
            None => new_slice(service, ports.to_vec(), address_type, labels),
        };
        fill(&mut slice, &mut wanted);
        if slice.metadata.name.is_some() {
            to_update.push(slice);
        } else {
            changes.create.push(slice);
        }
    }
    changes.update.extend(to_update);
}

fn fill(slice: &mut EndpointSlice, wanted: &mut BTreeMap<EndpointKey, Endpoint>) {
    while slice.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
        let Some((_, endpoint)) = wanted.pop_first() else {
            return;
        };
        slice.endpoints.push(endpoint);
    }
}

/// The unchanged slice that ends up closest to full with `count` more
/// endpoints (Kubernetes' `getSliceToFill`).
fn slice_to_fill(slices: &[&EndpointSlice], count: usize) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, slice) in slices.iter().enumerate() {
        let Some(room) = MAX_ENDPOINTS_PER_SLICE.checked_sub(count + slice.endpoints.len()) else {
            continue;
        };
        if best.is_none_or(|(_, r)| room < r) {
            best = Some((i, room));
            if room == 0 {
                break;
            }
        }
    }
    best.map(|(i, _)| i)
}

fn new_slice(
    service: &Service,
    ports: Vec<SlicePort>,
    address_type: &str,
    labels: &BTreeMap<String, String>,
) -> EndpointSlice {
    let name = service.metadata.name.as_deref().unwrap_or_default();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![pods::controller_reference(
                "v1",
                "Service",
                &service.metadata,
            )]),
            ..Default::default()
        },
        address_type: address_type.to_string(),
        endpoints: Vec::new(),
        ports: non_empty(ports),
    }
}

/// Whether an existing slice is an empty placeholder like `placeholder`
/// (Kubernetes compares namespace, labels and content, not names).
fn is_placeholder_like(slice: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    slice.metadata.namespace == placeholder.metadata.namespace
        && slice.metadata.labels.clone().unwrap_or_default()
            == placeholder.metadata.labels.clone().unwrap_or_default()
        && slice.address_type == placeholder.address_type
        && slice.endpoints.is_empty()
        && slice.ports.as_ref().is_none_or(Vec::is_empty)
}

fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    let uid = service.metadata.uid.as_deref().unwrap_or_default();
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.kind == "Service" && r.api_version == "v1")
}

/// The service's labels without the reserved ones, plus the headless label
/// when it has no cluster IP, plus the service name and manager.
fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                SERVICE_NAME_LABEL | SLICE_MANAGED_BY_LABEL | HEADLESS_LABEL
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !service_ip_set(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(SLICE_MANAGED_BY_LABEL.into(), SLICE_CONTROLLER_NAME.into());
    labels
}

/// The address types a service gets slices for: its IP families; for
/// services without families (not defaulted), the cluster IP's family, or
/// both for headless services.
fn address_types_for_service(service: &Service) -> BTreeSet<&'static str> {
    let spec = service.spec.as_ref();
    let mut types: BTreeSet<&'static str> = spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| match f.as_str() {
            IPV4 => Some(IPV4),
            IPV6 => Some(IPV6),
            _ => None,
        })
        .collect();
    if !types.is_empty() {
        return types;
    }
    let cluster_ip = spec.and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
    if !cluster_ip.is_empty() && cluster_ip != "None" {
        types.insert(if is_ipv6(cluster_ip) { IPV6 } else { IPV4 });
    } else {
        types.insert(IPV4);
        types.insert(IPV6);
    }
    types
}

/// The ports a pod offers for the service, in a canonical order; a service
/// port whose named target the pod lacks is left out.
fn slice_ports(service: &Service, pod: &Pod) -> Vec<SlicePort> {
    let mut ports: Vec<SlicePort> = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            let port = find_port(pod, sp)?;
            Some(SlicePort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(service_port_protocol(sp).to_string()),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect();
    ports.sort_by_key(slice_port_tuple);
    ports
}

fn slice_port_tuple(p: &SlicePort) -> PortTuple {
    (
        p.name.clone().unwrap_or_default(),
        p.port.unwrap_or_default(),
        p.protocol.clone().unwrap_or_else(|| "TCP".into()),
        p.app_protocol.clone(),
    )
}

fn ports_key(ports: &[SlicePort]) -> PortsKey {
    let mut key: PortsKey = ports.iter().map(slice_port_tuple).collect();
    key.sort();
    key
}

/// Kubernetes' `podToEndpoint`.
fn pod_to_endpoint(
    pod: &Pod,
    node: Option<&Node>,
    service: &Service,
    address_type: &str,
) -> Endpoint {
    let publish_not_ready = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let serving = pods::is_pod_ready(pod);
    let terminating = pods::is_terminating(&pod.metadata);
    // A terminating endpoint is never ready, unless everything is published.
    let ready = publish_not_ready || (serving && !terminating);
    let want_v6 = address_type == IPV6;
    let addresses = pod_ips(pod)
        .into_iter()
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .filter(|ip| ip.is_ipv6() == want_v6)
        .map(|ip| ip.to_string())
        .collect();
    Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: should_set_hostname(pod, service).then(|| pod_hostname(pod)),
        node_name: pod_node_name(pod).map(str::to_string),
        target_ref: Some(pod_reference(pod)),
        zone: node
            .and_then(|n| label(&n.metadata, ZONE_LABEL))
            .filter(|z| !z.is_empty())
            .map(str::to_string),
        deprecated_topology: None,
        hints: None,
    }
}

fn endpoint_key(endpoint: &Endpoint) -> EndpointKey {
    let mut addresses = endpoint.addresses.clone();
    addresses.sort();
    let target = endpoint.target_ref.as_ref();
    (
        addresses,
        endpoint.hostname.clone().unwrap_or_default(),
        target.and_then(|t| t.namespace.clone()).unwrap_or_default(),
        target.and_then(|t| t.name.clone()).unwrap_or_default(),
    )
}

/// Equal content, ignoring address order and `targetRef.resourceVersion`.
fn endpoints_equal(a: &Endpoint, b: &Endpoint) -> bool {
    let normalize = |e: &Endpoint| {
        let mut e = e.clone();
        e.addresses.sort();
        e.target_ref = e.target_ref.as_ref().map(without_resource_version);
        e
    };
    normalize(a) == normalize(b)
}

// ---------------------------------------------------------------------------
// Shared
// ---------------------------------------------------------------------------

fn is_external_name(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

/// The pods of the service's namespace its selector matches; `None` when
/// the service has no selector (its endpoints are managed by hand).
fn selected_pods<'a>(service: &Service, pods: &[&'a Pod]) -> Option<Vec<&'a Pod>> {
    let selector = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())?;
    Some(
        pods.iter()
            .copied()
            .filter(|p| p.metadata.namespace == service.metadata.namespace)
            .filter(|p| {
                let labels = p.metadata.labels.as_ref();
                selector
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            })
            .collect(),
    )
}

/// Kubernetes' `ShouldPodBeInEndpoints`: not finished, has an IP, and not
/// terminating unless terminating pods are wanted.
fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pods::pod_phase(pod);
    if phase == "Succeeded" || phase == "Failed" {
        return false;
    }
    if pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || !pods::is_terminating(&pod.metadata)
}

/// `status.podIPs`, or `status.podIP` when the list is absent.
fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    match status.pod_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().map(|p| p.ip.as_str()).collect(),
        _ => status
            .pod_ip
            .as_deref()
            .filter(|ip| !ip.is_empty())
            .into_iter()
            .collect(),
    }
}

fn is_ipv6(ip: &str) -> bool {
    ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6())
}

/// A cluster IP is allocated (not headless, not ExternalName).
fn service_ip_set(service: &Service) -> bool {
    let ip = service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap_or("");
    !ip.is_empty() && ip != "None"
}

/// Kubernetes' `ShouldSetHostname`: the pod asked for a hostname under this
/// service's subdomain.
fn should_set_hostname(pod: &Pod, service: &Service) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.hostname.as_deref().is_some_and(|h| !h.is_empty())
        && spec.subdomain.is_some()
        && spec.subdomain == service.metadata.name
        && pod.metadata.namespace == service.metadata.namespace
}

fn pod_hostname(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .unwrap_or_default()
}

fn pod_node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

fn without_resource_version(r: &ObjectReference) -> ObjectReference {
    ObjectReference {
        resource_version: None,
        ..r.clone()
    }
}

fn service_port_protocol(sp: &ServicePort) -> &str {
    sp.protocol.as_deref().unwrap_or("TCP")
}

/// Kubernetes' `FindPort`: a numeric target port as is; a named one is the
/// container port of that name and the service port's protocol, in the
/// containers or the sidecars (restartable init containers).
fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let protocol = service_port_protocol(sp);
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn non_empty_map(m: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!m.is_empty()).then_some(m)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    /// Ready IPs, not-ready IPs, (port name, port) of one subset.
    type SubsetSummary<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<(String, i64)>);
    /// Case name, publishNotReadyAddresses, pod patch, expected
    /// (ready, serving, terminating) or None when left out.
    type ConditionCase = (&'static str, bool, Value, Option<(bool, bool, bool)>);
    /// (port name, port)s and endpoint addresses of one slice.
    type SliceSummary = (Vec<(String, i32)>, Vec<String>);

    fn ts() -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000).unwrap()
    }

    /// RFC 7386 merge of `patch` into `base` (null removes).
    fn merge(base: &mut Value, patch: Value) {
        match (base, patch) {
            (Value::Object(b), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        b.remove(&k);
                    } else {
                        merge(b.entry(k).or_insert(Value::Null), v);
                    }
                }
            }
            (b, p) => *b = p,
        }
    }

    /// Service `web` in `default` selecting `app=web`, port http 80 →
    /// targetPort 8080, cluster IP 10.0.0.10, IPv4; `patch` merged in.
    fn service(patch: Value) -> Service {
        let mut v = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "web", "namespace": "default", "uid": "svc-uid",
                "labels": {"app": "web", "team": "a"},
                "resourceVersion": "5"
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "10.0.0.10",
                "ipFamilies": ["IPv4"],
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
            }
        });
        merge(&mut v, patch);
        serde_json::from_value(v).unwrap()
    }

    /// Pod `name` labeled `app=web`, Running and Ready on node n1 with `ip`,
    /// a container port `http` 8080/TCP; `patch` merged in.
    fn pod(name: &str, ip: &str, patch: Value) -> Pod {
        let mut v = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "labels": {"app": "web"}, "resourceVersion": "7"
            },
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "c", "image": "nginx",
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]
            },
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        });
        merge(&mut v, patch);
        serde_json::from_value(v).unwrap()
    }

    fn not_ready() -> Value {
        json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    }

    fn terminating() -> Value {
        json!({"metadata": {"deletionTimestamp": "2023-11-14T22:00:00Z"}})
    }

    fn node(name: &str, zone: Option<&str>) -> Node {
        let labels = match zone {
            Some(z) => json!({ ZONE_LABEL: z }),
            None => json!({}),
        };
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    }

    fn refs<T>(v: &[T]) -> Vec<&T> {
        v.iter().collect()
    }

    /// The API server's side of the test: stores what plans write, assigns
    /// names, uids and resourceVersions, and checks optimistic concurrency.
    #[derive(Default)]
    struct Cluster {
        endpoints: Option<Endpoints>,
        slices: Vec<EndpointSlice>,
        revision: u64,
        writes: usize,
    }

    impl Cluster {
        fn next_rv(&mut self) -> String {
            self.revision += 1;
            (100 + self.revision).to_string()
        }

        fn apply(&mut self, plan: &Plan) {
            for action in &plan.actions {
                self.writes += 1;
                match action {
                    Action::Create {
                        resource: Resource::Endpoints,
                        object,
                        ..
                    } => {
                        assert!(self.endpoints.is_none(), "create of existing endpoints");
                        let mut ep: Endpoints = serde_json::from_value(object.clone()).unwrap();
                        ep.metadata.uid = Some("ep-uid".into());
                        ep.metadata.resource_version = Some(self.next_rv());
                        self.endpoints = Some(ep);
                    }
                    Action::Update {
                        resource: Resource::Endpoints,
                        object,
                        ..
                    } => {
                        let mut ep: Endpoints = serde_json::from_value(object.clone()).unwrap();
                        let cur = self
                            .endpoints
                            .as_ref()
                            .expect("update of missing endpoints");
                        assert_eq!(ep.metadata.resource_version, cur.metadata.resource_version);
                        ep.metadata.resource_version = Some(self.next_rv());
                        self.endpoints = Some(ep);
                    }
                    Action::Delete {
                        resource: Resource::Endpoints,
                        uid,
                        ..
                    } => {
                        let cur = self.endpoints.take().expect("delete of missing endpoints");
                        assert_eq!(uid, &cur.metadata.uid);
                    }
                    Action::Create {
                        resource: Resource::EndpointSlices,
                        object,
                        ..
                    } => {
                        let mut s: EndpointSlice = serde_json::from_value(object.clone()).unwrap();
                        let rv = self.next_rv();
                        let prefix = s.metadata.generate_name.clone().unwrap();
                        s.metadata.name = Some(format!("{prefix}{rv}"));
                        s.metadata.uid = Some(format!("slice-uid-{rv}"));
                        s.metadata.resource_version = Some(rv);
                        self.slices.push(s);
                    }
                    Action::Update {
                        resource: Resource::EndpointSlices,
                        name,
                        object,
                        ..
                    } => {
                        let mut s: EndpointSlice = serde_json::from_value(object.clone()).unwrap();
                        let rv = self.next_rv();
                        let cur = self
                            .slices
                            .iter_mut()
                            .find(|c| c.metadata.name.as_ref() == Some(name))
                            .expect("update of missing slice");
                        assert_eq!(s.metadata.resource_version, cur.metadata.resource_version);
                        assert_eq!(s.address_type, cur.address_type, "addressType is immutable");
                        s.metadata.resource_version = Some(rv);
                        *cur = s;
                    }
                    Action::Delete {
                        resource: Resource::EndpointSlices,
                        name,
                        uid,
                        ..
                    } => {
                        let i = self
                            .slices
                            .iter()
                            .position(|c| c.metadata.name.as_ref() == Some(name))
                            .expect("delete of missing slice");
                        assert_eq!(uid, &self.slices[i].metadata.uid);
                        self.slices.remove(i);
                    }
                    other => panic!("unexpected action {other:?}"),
                }
            }
        }

        /// Endpoints reconcile → apply, then the same again must plan nothing.
        fn sync_endpoints(&mut self, svc: &Service, pods: &[Pod]) -> Plan {
            let plan = reconcile_endpoints(svc, &refs(pods), self.endpoints.as_ref(), ts());
            self.apply(&plan);
            let again = reconcile_endpoints(svc, &refs(pods), self.endpoints.as_ref(), ts());
            assert_eq!(
                again,
                Plan::default(),
                "endpoints reconcile is not idempotent"
            );
            plan
        }

        /// Slice reconcile → apply, then the same again must write nothing.
        fn sync_slices(&mut self, svc: &Service, pods: &[Pod], nodes: &[Node]) -> Plan {
            let current = self.slices.clone();
            let plan =
                reconcile_endpoint_slices(svc, &refs(pods), &refs(nodes), &refs(&current), ts());
            self.apply(&plan);
            let current = self.slices.clone();
            let again =
                reconcile_endpoint_slices(svc, &refs(pods), &refs(nodes), &refs(&current), ts());
            assert!(
                again.actions.is_empty(),
                "slice reconcile is not idempotent: {again:?}"
            );
            plan
        }

        fn slice_sizes(&self) -> Vec<usize> {
            let mut sizes: Vec<usize> = self.slices.iter().map(|s| s.endpoints.len()).collect();
            sizes.sort();
            sizes
        }
    }

    fn kinds(plan: &Plan) -> Vec<&'static str> {
        plan.actions
            .iter()
            .map(|a| match a {
                Action::Create { .. } => "create",
                Action::Update { .. } => "update",
                Action::Delete { .. } => "delete",
                _ => "other",
            })
            .collect()
    }

    fn only_object(plan: &Plan) -> &Value {
        assert_eq!(plan.actions.len(), 1, "{plan:?}");
        match &plan.actions[0] {
            Action::Create { object, .. } | Action::Update { object, .. } => object,
            other => panic!("not a write: {other:?}"),
        }
    }

    fn ips(list: &Value) -> Vec<&str> {
        list.as_array()
            .map(|l| l.iter().map(|a| a["ip"].as_str().unwrap()).collect())
            .unwrap_or_default()
    }

    // -- Endpoints ----------------------------------------------------------

    #[test]
    fn endpoints_created_for_ready_pods_sorted_by_ip() {
        let svc = service(json!({}));
        let pods = [
            pod("b", "10.1.0.9", json!({})),
            pod("a", "10.1.0.10", json!({})),
        ];
        let plan = reconcile_endpoints(&svc, &refs(&pods), None, ts());
        assert_eq!(
            plan.actions,
            vec![Action::Create {
                resource: Resource::Endpoints,
                namespace: Some("default".into()),
                object: json!({
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {
                        "name": "web",
                        "namespace": "default",
                        "labels": {
                            "app": "web", "team": "a",
                            "endpoints.kubernetes.io/managed-by": "endpoint-controller"
                        }
                    },
                    "subsets": [{
                        "addresses": [
                            {"ip": "10.1.0.10", "nodeName": "n1",
                             "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}},
                            {"ip": "10.1.0.9", "nodeName": "n1",
                             "targetRef": {"kind": "Pod", "namespace": "default", "name": "b", "uid": "uid-b"}}
                        ],
                        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
                    }]
                }),
            }]
        );
    }

    #[test]
    fn endpoints_are_byte_equal_whatever_the_pod_order() {
        let svc = service(json!({}));
        let mut pods: Vec<Pod> = (0..20)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.1.{}.{}", i % 3, i),
                    json!({}),
                )
            })
            .collect();
        let a = reconcile_endpoints(&svc, &refs(&pods), None, ts());
        pods.reverse();
        let b = reconcile_endpoints(&svc, &refs(&pods), None, ts());
        assert_eq!(
            serde_json::to_string(only_object(&a)).unwrap(),
            serde_json::to_string(only_object(&b)).unwrap()
        );
    }

    #[test]
    fn endpoints_pod_selection_and_readiness() {
        // (case, publishNotReadyAddresses, pod patch, expected: Some(ready?) or None = left out)
        let cases: Vec<(&str, bool, Value, Option<bool>)> = vec![
            ("ready", false, json!({}), Some(true)),
            ("not ready", false, not_ready(), Some(false)),
            (
                "no ready condition",
                false,
                json!({"status": {"conditions": null}}),
                Some(false),
            ),
            ("terminating", false, terminating(), None),
            (
                "succeeded",
                false,
                json!({"status": {"phase": "Succeeded"}}),
                None,
            ),
            (
                "failed",
                false,
                json!({"status": {"phase": "Failed"}}),
                None,
            ),
            (
                "no IP",
                false,
                json!({"status": {"podIP": null, "podIPs": null}}),
                None,
            ),
            (
                "other labels",
                false,
                json!({"metadata": {"labels": {"app": "db"}}}),
                None,
            ),
            (
                "other namespace",
                false,
                json!({"metadata": {"namespace": "other"}}),
                None,
            ),
            ("publish: not ready", true, not_ready(), Some(true)),
            ("publish: terminating", true, terminating(), Some(true)),
            (
                "publish: failed",
                true,
                json!({"status": {"phase": "Failed"}}),
                None,
            ),
        ];
        for (name, publish, patch, want) in cases {
            let svc = service(json!({"spec": {"publishNotReadyAddresses": publish}}));
            let pods = [pod("p", "10.1.0.1", patch)];
            let plan = reconcile_endpoints(&svc, &refs(&pods), None, ts());
            let obj = only_object(&plan);
            let subset = &obj["subsets"][0];
            let got = if subset.is_null() {
                None
            } else if ips(&subset["addresses"]) == ["10.1.0.1"] {
                assert!(subset["notReadyAddresses"].is_null(), "{name}");
                Some(true)
            } else {
                assert_eq!(ips(&subset["notReadyAddresses"]), ["10.1.0.1"], "{name}");
                Some(false)
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn endpoints_group_addresses_by_port_set_with_named_target_ports() {
        let svc = service(json!({"spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"},
            {"name": "dns", "port": 53, "targetPort": "web", "protocol": "UDP"}
        ]}}));
        let with_web = |name: &str, ip: &str, port: i32| {
            pod(
                name,
                ip,
                json!({"spec": {"containers": [{"name": "c", "image": "x", "ports": [
                    {"name": "web", "containerPort": port, "protocol": "TCP"}
                ]}]}}),
            )
        };
        let pods = [
            with_web("a", "10.1.0.1", 8080),
            with_web("b", "10.1.0.2", 8080),
            with_web("c", "10.1.0.3", 8081),
            // No port named "web": only in the metrics subset.
            pod("d", "10.1.0.4", json!({})),
            // A not-ready pod of the first port set.
            pod("e", "10.1.0.5", not_ready()),
        ];
        let mut pods = pods.to_vec();
        pods[4] = {
            let mut p = with_web("e", "10.1.0.5", 8080);
            p.status = pod("e", "10.1.0.5", not_ready()).status;
            p
        };
        let plan = reconcile_endpoints(&svc, &refs(&pods), None, ts());
        let subsets = only_object(&plan)["subsets"].as_array().unwrap().clone();
        let summary: Vec<SubsetSummary> = subsets
            .iter()
            .map(|s| {
                (
                    ips(&s["addresses"]),
                    ips(&s["notReadyAddresses"]),
                    s["ports"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| {
                            (
                                p["name"].as_str().unwrap().to_string(),
                                p["port"].as_i64().unwrap(),
                            )
                        })
                        .collect(),
                )
            })
            .collect();
        // The UDP "dns" port finds no UDP port named "web": never published.
        assert_eq!(
            summary,
            vec![
                (
                    vec!["10.1.0.1", "10.1.0.2"],
                    vec!["10.1.0.5"],
                    vec![("http".to_string(), 8080), ("metrics".to_string(), 9090)]
                ),
                (
                    vec!["10.1.0.3"],
                    vec![],
                    vec![("http".to_string(), 8081), ("metrics".to_string(), 9090)]
                ),
                (
                    vec!["10.1.0.4"],
                    vec![],
                    vec![("metrics".to_string(), 9090)]
                ),
            ]
        );
        let mut cluster = Cluster::default();
        cluster.sync_endpoints(&svc, &pods);
    }

    #[test]
    fn endpoints_named_port_in_sidecar_and_protocol_must_match() {
        let svc = service(json!({"spec": {"ports": [
            {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}
        ]}}));
        let pods = [
            pod(
                "sidecar",
                "10.1.0.1",
                json!({"spec": {"initContainers": [{"name": "s", "image": "x", "restartPolicy": "Always",
                    "ports": [{"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}]}}),
            ),
            pod(
                "tcp-only",
                "10.1.0.2",
                json!({"spec": {"containers": [{"name": "c", "image": "x",
                    "ports": [{"name": "dns", "containerPort": 5353}]}]}}),
            ),
        ];
        let plan = reconcile_endpoints(&svc, &refs(&pods), None, ts());
        let obj = only_object(&plan);
        assert_eq!(ips(&obj["subsets"][0]["addresses"]), ["10.1.0.1"]);
        assert_eq!(
            obj["subsets"][0]["ports"],
            json!([{"name": "dns", "port": 5353, "protocol": "UDP"}])
        );
        assert!(obj["subsets"][1].is_null());
    }

    #[test]
    fn endpoints_headless_without_ports_and_hostnames() {
        let svc = service(json!({"spec": {"clusterIP": "None", "ports": null}}));
        let pods = [
            pod(
                "a",
                "10.1.0.1",
                json!({"spec": {"hostname": "a", "subdomain": "web"}}),
            ),
            pod(
                "b",
                "10.1.0.2",
                json!({"spec": {"hostname": "b", "subdomain": "other"}}),
            ),
        ];
        let plan = reconcile_endpoints(&svc, &refs(&pods), None, ts());
        let obj = only_object(&plan);
        assert_eq!(obj["metadata"]["labels"][HEADLESS_LABEL], "");
        assert_eq!(obj["subsets"].as_array().unwrap().len(), 1);
        let subset = &obj["subsets"][0];
        assert!(subset["ports"].is_null());
        assert_eq!(subset["addresses"][0]["hostname"], "a");
        assert!(subset["addresses"][1].get("hostname").is_none());

        // A service with a cluster IP and no ports publishes no addresses.
        let svc = service(json!({"spec": {"ports": null}}));
        let plan = reconcile_endpoints(&svc, &refs(&pods), None, ts());
        assert!(only_object(&plan).get("subsets").is_none());
    }

    #[test]
    fn endpoints_pick_the_service_ip_family() {
        let dual = json!({"status": {"podIP": "10.1.0.1", "podIPs": [{"ip": "10.1.0.1"}, {"ip": "fd00::1"}]}});
        let pods = [pod("a", "10.1.0.1", dual)];
        for (families, want) in [
            (json!(["IPv4"]), "10.1.0.1"),
            (json!(["IPv6", "IPv4"]), "fd00::1"),
        ] {
            let svc = service(json!({"spec": {"ipFamilies": families}}));
            let plan = reconcile_endpoints(&svc, &refs(&pods), None, ts());
            assert_eq!(ips(&only_object(&plan)["subsets"][0]["addresses"]), [want]);
        }
        // A v4-only pod has no address for an IPv6 service.
        let svc = service(json!({"spec": {"ipFamilies": ["IPv6"]}}));
        let pods = [pod("a", "10.1.0.1", json!({}))];
        let plan = reconcile_endpoints(&svc, &refs(&pods), None, ts());
        assert!(only_object(&plan).get("subsets").is_none());
    }

    #[test]
    fn endpoints_skipped_without_selector_or_while_deleting() {
        let pods = [pod("a", "10.1.0.1", json!({}))];
        for patch in [
            json!({"spec": {"selector": null}}),
            json!({"spec": {"selector": {}}}),
            json!({"metadata": {"deletionTimestamp": "2023-11-14T22:00:00Z"}}),
        ] {
            let mut svc = service(patch.clone());
            if patch["spec"]["selector"] == json!({}) {
                // A merge patch cannot empty a map; set it directly.
                svc.spec.as_mut().unwrap().selector = Some(BTreeMap::new());
            }
            assert_eq!(
                reconcile_endpoints(&svc, &refs(&pods), None, ts()),
                Plan::default(),
                "{patch}"
            );
        }
    }

    #[test]
    fn the_api_servers_own_endpoints_are_left_alone() {
        // `default/kubernetes` as the API server writes it: no selector, its
        // Endpoints and EndpointSlice not labeled as this controller's.
        let svc = service(json!({"metadata": {"name": "kubernetes"}, "spec": {"selector": null}}));
        let endpoints: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "kubernetes", "namespace": "default", "uid": "u",
                         "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}],
                         "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "kubernetes", "namespace": "default", "uid": "v",
                         "labels": {"kubernetes.io/service-name": "kubernetes",
                                    "endpointslice.kubernetes.io/managed-by": "kube-apiserver"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]
        }))
        .unwrap();
        let pods = [pod("a", "10.1.0.1", json!({}))];
        assert_eq!(
            reconcile_endpoints(&svc, &refs(&pods), Some(&endpoints), ts()),
            Plan::default()
        );
        assert_eq!(
            reconcile_endpoint_slices(&svc, &refs(&pods), &refs(&nodes()), &[&slice], ts()),
            Plan::default()
        );
    }

    #[test]
    fn endpoints_of_external_name_services_are_deleted_only_if_ours() {
        let svc = service(json!({}));
        let pods = [pod("a", "10.1.0.1", json!({}))];
        let mut cluster = Cluster::default();
        cluster.sync_endpoints(&svc, &pods);

        let ext = service(
            json!({"spec": {"type": "ExternalName", "externalName": "example.com", "clusterIP": null}}),
        );
        let plan = reconcile_endpoints(&ext, &refs(&pods), cluster.endpoints.as_ref(), ts());
        assert_eq!(
            plan.actions,
            vec![Action::Delete {
                resource: Resource::Endpoints,
                namespace: Some("default".into()),
                name: "web".into(),
                uid: Some("ep-uid".into()),
                propagation: None,
            }]
        );
        cluster.apply(&plan);
        assert_eq!(
            reconcile_endpoints(&ext, &refs(&pods), None, ts()),
            Plan::default()
        );

        let hand_made: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u"},
            "subsets": [{"addresses": [{"ip": "192.168.0.1"}], "ports": [{"port": 80}]}]
        }))
        .unwrap();
        assert_eq!(
            reconcile_endpoints(&ext, &refs(&pods), Some(&hand_made), ts()),
            Plan::default()
        );
        assert_eq!(
            reconcile_endpoints_without_service(&hand_made),
            Plan::default()
        );
    }

    #[test]
    fn endpoints_without_service_deleted_when_ours() {
        let svc = service(json!({}));
        let mut cluster = Cluster::default();
        cluster.sync_endpoints(&svc, &[]);
        let ep = cluster.endpoints.clone().unwrap();
        let plan = reconcile_endpoints_without_service(&ep);
        assert_eq!(kinds(&plan), ["delete"]);
    }

    #[test]
    fn endpoints_updates_carry_resource_version_and_keep_annotations() {
        let svc = service(json!({}));
        let mut pods = vec![pod("a", "10.1.0.1", json!({}))];
        let mut cluster = Cluster::default();
        assert_eq!(kinds(&cluster.sync_endpoints(&svc, &pods)), ["create"]);
        // Someone else's annotation and a stale pod resourceVersion in targetRef.
        let ep = cluster.endpoints.as_mut().unwrap();
        ep.metadata.annotations = Some(BTreeMap::from([("note".to_string(), "keep".to_string())]));
        ep.subsets.as_mut().unwrap()[0].addresses.as_mut().unwrap()[0]
            .target_ref
            .as_mut()
            .unwrap()
            .resource_version = Some("3".into());
        assert_eq!(
            reconcile_endpoints(&svc, &refs(&pods), cluster.endpoints.as_ref(), ts()),
            Plan::default()
        );

        pods.push(pod("b", "10.1.0.2", not_ready()));
        let plan = cluster.sync_endpoints(&svc, &pods);
        let obj = only_object(&plan);
        assert_eq!(kinds(&plan), ["update"]);
        assert_eq!(obj["metadata"]["resourceVersion"], "101");
        assert_eq!(obj["metadata"]["uid"], "ep-uid");
        assert_eq!(obj["metadata"]["annotations"], json!({"note": "keep"}));
        assert_eq!(ips(&obj["subsets"][0]["notReadyAddresses"]), ["10.1.0.2"]);

        // Labels follow the service's.
        let relabeled = service(json!({"metadata": {"labels": {"team": "b"}}}));
        let plan = cluster.sync_endpoints(&relabeled, &pods);
        assert_eq!(only_object(&plan)["metadata"]["labels"]["team"], "b");

        // Pods going away empty the subsets but keep the object.
        let plan = cluster.sync_endpoints(&relabeled, &[]);
        assert!(only_object(&plan).get("subsets").is_none());
    }

    #[test]
    fn endpoints_headless_label_follows_cluster_ip() {
        let mut cluster = Cluster::default();
        let headless = service(json!({"spec": {"clusterIP": "None"}}));
        cluster.sync_endpoints(&headless, &[]);
        let labels = cluster
            .endpoints
            .as_ref()
            .unwrap()
            .metadata
            .labels
            .clone()
            .unwrap();
        assert_eq!(labels.get(HEADLESS_LABEL).map(String::as_str), Some(""));
        let plan = cluster.sync_endpoints(&service(json!({})), &[]);
        assert!(only_object(&plan)["metadata"]["labels"]
            .get(HEADLESS_LABEL)
            .is_none());
    }

    #[test]
    fn endpoints_over_capacity_are_truncated_ready_first() {
        let svc = service(json!({}));
        let mut pods: Vec<Pod> = (0..990)
            .map(|i| {
                pod(
                    &format!("r{i}"),
                    &format!("10.1.{}.{}", i / 250, i % 250),
                    json!({}),
                )
            })
            .collect();
        pods.extend((0..30).map(|i| pod(&format!("n{i}"), &format!("10.2.0.{i}"), not_ready())));
        let mut cluster = Cluster::default();
        let plan = cluster.sync_endpoints(&svc, &pods);
        let obj = only_object(&plan);
        assert_eq!(
            obj["metadata"]["annotations"][OVER_CAPACITY_ANNOTATION],
            "truncated"
        );
        assert_eq!(
            obj["subsets"][0]["addresses"].as_array().unwrap().len(),
            990
        );
        assert_eq!(
            obj["subsets"][0]["notReadyAddresses"]
                .as_array()
                .unwrap()
                .len(),
            10
        );

        // Back under capacity: everything, and the annotation goes.
        pods.truncate(995);
        let plan = cluster.sync_endpoints(&svc, &pods);
        let obj = only_object(&plan);
        assert!(obj["metadata"].get("annotations").is_none());
        assert_eq!(
            obj["subsets"][0]["notReadyAddresses"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
    }

    #[test]
    fn endpoints_converge_through_changes() {
        let svc = service(json!({}));
        let mut cluster = Cluster::default();
        let steps: Vec<Vec<Pod>> = vec![
            vec![],
            vec![pod("a", "10.1.0.1", not_ready())],
            vec![
                pod("a", "10.1.0.1", json!({})),
                pod("b", "10.1.0.2", json!({})),
            ],
            vec![
                pod("a", "10.1.0.1", terminating()),
                pod("b", "10.1.0.2", json!({})),
            ],
            vec![pod(
                "b",
                "10.1.0.2",
                json!({"status": {"phase": "Succeeded"}}),
            )],
        ];
        let expected_writes = [1, 1, 1, 1, 1];
        for (pods, writes) in steps.iter().zip(expected_writes) {
            let plan = cluster.sync_endpoints(&svc, pods);
            assert_eq!(plan.actions.len(), writes);
        }
        assert!(cluster.endpoints.unwrap().subsets.is_none());
    }

    // -- EndpointSlices -----------------------------------------------------

    fn nodes() -> Vec<Node> {
        vec![node("n1", Some("zone-a")), node("n2", None)]
    }

    #[test]
    fn slice_created_with_owner_labels_and_endpoint_details() {
        let svc = service(json!({"spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "appProtocol": "http"}
        ]}}));
        let pods = [
            pod(
                "a",
                "10.1.0.1",
                json!({"spec": {"hostname": "a", "subdomain": "web"}}),
            ),
            pod("b", "10.1.0.2", json!({"spec": {"nodeName": "n2"}})),
        ];
        let plan = reconcile_endpoint_slices(&svc, &refs(&pods), &refs(&nodes()), &[], ts());
        let target = |n: &str| json!({"kind": "Pod", "namespace": "default", "name": n, "uid": format!("uid-{n}")});
        assert_eq!(
            plan.actions,
            vec![Action::Create {
                resource: Resource::EndpointSlices,
                namespace: Some("default".into()),
                object: json!({
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "generateName": "web-",
                        "namespace": "default",
                        "labels": {
                            "app": "web", "team": "a",
                            "kubernetes.io/service-name": "web",
                            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"
                        },
                        "ownerReferences": [{
                            "apiVersion": "v1", "kind": "Service", "name": "web", "uid": "svc-uid",
                            "controller": true, "blockOwnerDeletion": true
                        }]
                    },
                    "addressType": "IPv4",
                    "endpoints": [
                        {"addresses": ["10.1.0.1"],
                         "conditions": {"ready": true, "serving": true, "terminating": false},
                         "hostname": "a", "nodeName": "n1", "zone": "zone-a", "targetRef": target("a")},
                        {"addresses": ["10.1.0.2"],
                         "conditions": {"ready": true, "serving": true, "terminating": false},
                         "nodeName": "n2", "targetRef": target("b")}
                    ],
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]
                }),
            }]
        );
        let mut cluster = Cluster::default();
        cluster.sync_slices(&svc, &pods, &nodes());
    }

    #[test]
    fn slice_endpoint_conditions() {
        // (case, publishNotReadyAddresses, pod patch, expected (ready, serving, terminating) or None)
        let cases: Vec<ConditionCase> = vec![
            ("ready", false, json!({}), Some((true, true, false))),
            ("not ready", false, not_ready(), Some((false, false, false))),
            (
                "terminating ready",
                false,
                terminating(),
                Some((false, true, true)),
            ),
            (
                "terminating not ready",
                false,
                merged(terminating(), not_ready()),
                Some((false, false, true)),
            ),
            (
                "publish: not ready",
                true,
                not_ready(),
                Some((true, false, false)),
            ),
            (
                "publish: terminating",
                true,
                terminating(),
                Some((true, true, true)),
            ),
            (
                "succeeded",
                false,
                json!({"status": {"phase": "Succeeded"}}),
                None,
            ),
            (
                "no IP",
                false,
                json!({"status": {"podIP": null, "podIPs": null}}),
                None,
            ),
            (
                "not selected",
                false,
                json!({"metadata": {"labels": null}}),
                None,
            ),
        ];
        for (name, publish, patch, want) in cases {
            let svc = service(json!({"spec": {"publishNotReadyAddresses": publish}}));
            let pods = [pod("p", "10.1.0.1", patch)];
            let plan = reconcile_endpoint_slices(&svc, &refs(&pods), &refs(&nodes()), &[], ts());
            let obj = only_object(&plan);
            let got = obj["endpoints"].as_array().unwrap().first().map(|e| {
                let c = &e["conditions"];
                (
                    c["ready"].as_bool().unwrap(),
                    c["serving"].as_bool().unwrap(),
                    c["terminating"].as_bool().unwrap(),
                )
            });
            assert_eq!(got, want, "{name}");
        }
    }

    fn merged(mut a: Value, b: Value) -> Value {
        merge(&mut a, b);
        a
    }

    #[test]
    fn slice_per_port_set() {
        let svc = service(json!({"spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}
        ]}}));
        let with_web = |name: &str, ip: &str, port: i32| {
            pod(
                name,
                ip,
                json!({"spec": {"containers": [{"name": "c", "image": "x", "ports": [
                    {"name": "web", "containerPort": port, "protocol": "TCP"}
                ]}]}}),
            )
        };
        let pods = [
            with_web("a", "10.1.0.1", 8080),
            with_web("b", "10.1.0.2", 8081),
            pod("c", "10.1.0.3", json!({})),
            with_web("d", "10.1.0.4", 8080),
        ];
        let mut cluster = Cluster::default();
        let plan = cluster.sync_slices(&svc, &pods, &nodes());
        assert_eq!(kinds(&plan), ["create", "create", "create"]);
        let mut summary: Vec<SliceSummary> = cluster
            .slices
            .iter()
            .map(|s| {
                (
                    s.ports
                        .iter()
                        .flatten()
                        .map(|p| (p.name.clone().unwrap(), p.port.unwrap()))
                        .collect(),
                    s.endpoints.iter().map(|e| e.addresses[0].clone()).collect(),
                )
            })
            .collect();
        summary.sort();
        let p = |n: &str, port: i32| (n.to_string(), port);
        assert_eq!(
            summary,
            vec![
                (
                    vec![p("http", 8080), p("metrics", 9090)],
                    vec!["10.1.0.1".to_string(), "10.1.0.4".to_string()]
                ),
                (
                    vec![p("http", 8081), p("metrics", 9090)],
                    vec!["10.1.0.2".to_string()]
                ),
                (vec![p("metrics", 9090)], vec!["10.1.0.3".to_string()]),
            ]
        );

        // Pod b goes: its slice is reused for nothing and deleted.
        let pods = [pods[0].clone(), pods[2].clone(), pods[3].clone()];
        let plan = cluster.sync_slices(&svc, &pods, &nodes());
        assert_eq!(kinds(&plan), ["delete"]);
    }

    #[test]
    fn slices_split_at_one_hundred_and_change_minimally() {
        let svc = service(json!({}));
        let make = |range: std::ops::Range<usize>| -> Vec<Pod> {
            range
                .map(|i| {
                    pod(
                        &format!("p{i:03}"),
                        &format!("10.1.{}.{}", i / 200, i % 200),
                        json!({}),
                    )
                })
                .collect()
        };
        let mut cluster = Cluster::default();
        let plan = cluster.sync_slices(&svc, &make(0..250), &nodes());
        assert_eq!(kinds(&plan), ["create", "create", "create"]);
        assert_eq!(cluster.slice_sizes(), [50, 100, 100]);

        // Ten more fit into the slice with room: one update, no create.
        let plan = cluster.sync_slices(&svc, &make(0..260), &nodes());
        assert_eq!(kinds(&plan), ["update"]);
        assert_eq!(cluster.slice_sizes(), [60, 100, 100]);

        // Twenty pods go from one full slice: only that slice is written.
        let mut pods = make(0..260);
        let full = cluster
            .slices
            .iter()
            .find(|s| s.endpoints.len() == 100)
            .unwrap()
            .clone();
        let gone: BTreeSet<String> = full.endpoints[..20]
            .iter()
            .map(|e| e.target_ref.clone().unwrap().name.unwrap())
            .collect();
        pods.retain(|p| !gone.contains(p.metadata.name.as_ref().unwrap()));
        let plan = cluster.sync_slices(&svc, &pods, &nodes());
        assert_eq!(kinds(&plan), ["update"]);
        assert_eq!(
            plan.actions[0],
            Action::Update {
                resource: Resource::EndpointSlices,
                namespace: Some("default".into()),
                name: full.metadata.name.clone().unwrap(),
                object: only_object(&plan).clone(),
            }
        );
        assert_eq!(cluster.slice_sizes(), [60, 80, 100]);

        // One pod turning not ready rewrites only the slice holding it.
        let name = pods[0].metadata.name.clone().unwrap();
        let ip = pod_ips(&pods[0])[0].to_owned();
        pods[0] = pod(&name, &ip, not_ready());
        let plan = cluster.sync_slices(&svc, &pods, &nodes());
        assert_eq!(kinds(&plan), ["update"]);
        assert_eq!(cluster.slice_sizes(), [60, 80, 100]);

        // Every pod gone: one slice stays as the empty placeholder.
        let plan = cluster.sync_slices(&svc, &[], &nodes());
        assert_eq!(kinds(&plan), ["update", "delete", "delete"]);
        assert_eq!(cluster.slice_sizes(), [0]);
    }

    #[test]
    fn placeholder_slice_for_a_service_without_endpoints_is_reused() {
        let svc = service(json!({}));
        let mut cluster = Cluster::default();
        let plan = cluster.sync_slices(&svc, &[], &nodes());
        assert_eq!(kinds(&plan), ["create"]);
        let placeholder = only_object(&plan);
        assert_eq!(placeholder["endpoints"], json!([]));
        assert!(placeholder.get("ports").is_none());
        let name = cluster.slices[0].metadata.name.clone();

        // The first pod turns the placeholder into its slice.
        let pods = [pod("a", "10.1.0.1", json!({}))];
        let plan = cluster.sync_slices(&svc, &pods, &nodes());
        assert_eq!(kinds(&plan), ["update"]);
        assert_eq!(cluster.slices.len(), 1);
        assert_eq!(cluster.slices[0].metadata.name, name);
        assert_eq!(cluster.slices[0].endpoints.len(), 1);
        assert_eq!(
            cluster.slices[0].ports.as_ref().unwrap()[0].port,
            Some(8080)
        );
    }

    #[test]
    fn slices_of_other_managers_are_left_alone_and_stale_owners_replaced() {
        let svc = service(json!({}));
        let foreign: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-custom", "namespace": "default", "uid": "f",
                "labels": {SERVICE_NAME_LABEL: "web", SLICE_MANAGED_BY_LABEL: "someone-else"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["192.168.0.1"]}]
        }))
        .unwrap();
        let stale: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-old", "namespace": "default", "uid": "s", "resourceVersion": "3",
                "labels": {SERVICE_NAME_LABEL: "web", SLICE_MANAGED_BY_LABEL: SLICE_CONTROLLER_NAME},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "old-uid", "controller": true}]},
            "addressType": "IPv4",
            "endpoints": []
        }))
        .unwrap();
        let pods = [pod("a", "10.1.0.1", json!({}))];
        let mut cluster = Cluster {
            slices: vec![foreign.clone(), stale],
            ..Default::default()
        };
        let plan = cluster.sync_slices(&svc, &pods, &nodes());
        assert_eq!(kinds(&plan), ["create", "delete"]);
        assert!(matches!(&plan.actions[1], Action::Delete { name, uid, .. }
            if name == "web-old" && uid.as_deref() == Some("s")));
        assert!(cluster.slices.contains(&foreign));
        assert_eq!(cluster.slices.len(), 2);
    }

    #[test]
    fn slice_labels_follow_the_service() {
        let mut cluster = Cluster::default();
        let pods = [pod("a", "10.1.0.1", json!({}))];
        cluster.sync_slices(&service(json!({})), &pods, &nodes());
        let svc =
            service(json!({"metadata": {"labels": {"team": "b", SERVICE_NAME_LABEL: "evil"}}}));
        let plan = cluster.sync_slices(&svc, &pods, &nodes());
        assert_eq!(kinds(&plan), ["update"]);
        let labels = &only_object(&plan)["metadata"]["labels"];
        assert_eq!(labels["team"], "b");
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        // Headless services get the headless label.
        let headless = service(json!({"spec": {"clusterIP": "None"}}));
        let plan = cluster.sync_slices(&headless, &pods, &nodes());
        assert_eq!(only_object(&plan)["metadata"]["labels"][HEADLESS_LABEL], "");
    }

    #[test]
    fn slices_per_address_type() {
        let dual_pod = |name: &str, v4: &str, v6: &str| {
            pod(
                name,
                v4,
                json!({"status": {"podIPs": [{"ip": v4}, {"ip": v6}]}}),
            )
        };
        let pods = [
            dual_pod("a", "10.1.0.1", "fd00::1"),
            pod("b", "10.1.0.2", json!({})),
        ];
        let svc = service(
            json!({"spec": {"ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack"}}),
        );
        let mut cluster = Cluster::default();
        cluster.sync_slices(&svc, &pods, &nodes());
        let mut got: Vec<(String, Vec<Vec<String>>)> = cluster
            .slices
            .iter()
            .map(|s| {
                (
                    s.address_type.clone(),
                    s.endpoints.iter().map(|e| e.addresses.clone()).collect(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (
                    "IPv4".to_string(),
                    vec![vec!["10.1.0.1".to_string()], vec!["10.1.0.2".to_string()]]
                ),
                ("IPv6".to_string(), vec![vec!["fd00::1".to_string()]]),
            ]
        );

        // Back to single stack: the IPv6 slice is deleted, never rewritten.
        let plan = cluster.sync_slices(&service(json!({})), &pods, &nodes());
        assert_eq!(kinds(&plan), ["delete"]);
        assert_eq!(cluster.slices.len(), 1);
        assert_eq!(cluster.slices[0].address_type, "IPv4");

        // Legacy headless service without families: both types.
        let legacy = service(json!({"spec": {"ipFamilies": null, "clusterIP": "None"}}));
        let plan = reconcile_endpoint_slices(&legacy, &refs(&pods), &refs(&nodes()), &[], ts());
        assert_eq!(kinds(&plan), ["create", "create"]);
    }

    #[test]
    fn pods_on_unknown_nodes_wait_unless_published() {
        let pods = [
            pod("a", "10.1.0.1", json!({})),
            pod("b", "10.1.0.2", json!({"spec": {"nodeName": "gone"}})),
        ];
        let svc = service(json!({}));
        let plan = reconcile_endpoint_slices(&svc, &refs(&pods), &refs(&nodes()), &[], ts());
        assert_eq!(plan.requeue_after, Some(MISSING_NODE_REQUEUE));
        assert_eq!(only_object(&plan)["endpoints"].as_array().unwrap().len(), 1);

        let svc = service(json!({"spec": {"publishNotReadyAddresses": true}}));
        let plan = reconcile_endpoint_slices(&svc, &refs(&pods), &refs(&nodes()), &[], ts());
        assert_eq!(plan.requeue_after, None);
        let endpoints = only_object(&plan)["endpoints"].as_array().unwrap().clone();
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[1]["nodeName"], "gone");
        assert!(endpoints[1].get("zone").is_none());
    }

    #[test]
    fn slices_skipped_without_selector_or_while_deleting_and_removed_for_external_name() {
        let pods = [pod("a", "10.1.0.1", json!({}))];
        for patch in [
            json!({"spec": {"selector": null}}),
            json!({"metadata": {"deletionTimestamp": "2023-11-14T22:00:00Z"}}),
        ] {
            let svc = service(patch.clone());
            let plan = reconcile_endpoint_slices(&svc, &refs(&pods), &refs(&nodes()), &[], ts());
            assert_eq!(plan, Plan::default(), "{patch}");
        }
        let mut cluster = Cluster::default();
        cluster.sync_slices(&service(json!({})), &pods, &nodes());
        let ext = service(
            json!({"spec": {"type": "ExternalName", "externalName": "example.com", "clusterIP": null}}),
        );
        let plan = cluster.sync_slices(&ext, &pods, &nodes());
        assert_eq!(kinds(&plan), ["delete"]);
        assert!(cluster.slices.is_empty());
    }

    #[test]
    fn slice_endpoints_keep_their_slice_and_ignore_pod_resource_versions() {
        let svc = service(json!({}));
        let pods: Vec<Pod> = (0..5)
            .map(|i| pod(&format!("p{i}"), &format!("10.1.0.{i}"), json!({})))
            .collect();
        let mut cluster = Cluster::default();
        cluster.sync_slices(&svc, &pods, &nodes());
        // Stored endpoints in another order, with targetRef resourceVersions.
        let slice = &mut cluster.slices[0];
        slice.endpoints.reverse();
        for e in &mut slice.endpoints {
            e.target_ref.as_mut().unwrap().resource_version = Some("9".into());
        }
        let current = cluster.slices.clone();
        let plan =
            reconcile_endpoint_slices(&svc, &refs(&pods), &refs(&nodes()), &refs(&current), ts());
        assert_eq!(plan, Plan::default());
        // A zone appearing on the node is written.
        let zoned = vec![node("n1", Some("zone-b"))];
        let plan = cluster.sync_slices(&svc, &pods, &zoned);
        assert_eq!(kinds(&plan), ["update"]);
        assert!(cluster.slices[0]
            .endpoints
            .iter()
            .all(|e| e.zone.as_deref() == Some("zone-b")));
    }
}
