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
        to_update.sort_by(|a, b| b.endpoints.len().cmp(&a.endpoints.len()));
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
fn pod_to_endpoint(pod: &Pod, node: Option<&Node>, service: &Service, address_type: &str) -> Endpoint {
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
