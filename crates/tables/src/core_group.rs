//! Printers for the core (`""`) group and events.k8s.io: the kinds users
//! look at most, so their cells follow kube-apiserver's logic line by line.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::duration;
use crate::value::{
    age, array_at, bool_at, format_labels, get, has_true_condition, i64_at, is_deleting, len_at,
    list_with_more, name, opt_i64, opt_str, str_at, timestamp_at,
};
use crate::{col, wide, CellsFn, Column, Printer, AGE, NAME};

pub(crate) fn printer(group: &str, kind: &str) -> Option<Printer> {
    let (columns, cells): (&'static [Column], CellsFn) = match (group, kind) {
        ("", "Pod") => {
            return Some(Printer {
                columns: POD_COLUMNS,
                cells: pod_cells,
                conditions: Some(pod_conditions),
            })
        }
        ("", "Service") => (SERVICE_COLUMNS, service_cells),
        ("", "Endpoints") => (ENDPOINTS_COLUMNS, endpoints_cells),
        ("", "Namespace") => (NAMESPACE_COLUMNS, namespace_cells),
        ("", "Node") => (NODE_COLUMNS, node_cells),
        ("", "ConfigMap") => (CONFIG_MAP_COLUMNS, config_map_cells),
        ("", "Secret") => (SECRET_COLUMNS, secret_cells),
        ("", "ServiceAccount") => (SERVICE_ACCOUNT_COLUMNS, service_account_cells),
        ("", "Event") => (EVENT_COLUMNS, core_event_cells),
        ("events.k8s.io", "Event") => (EVENT_COLUMNS, events_event_cells),
        ("", "PersistentVolumeClaim") => (PVC_COLUMNS, pvc_cells),
        ("", "PersistentVolume") => (PV_COLUMNS, pv_cells),
        ("", "ReplicationController") => {
            (REPLICATION_CONTROLLER_COLUMNS, replication_controller_cells)
        }
        ("", "ResourceQuota") => (RESOURCE_QUOTA_COLUMNS, resource_quota_cells),
        _ => return None,
    };
    Some(Printer {
        columns,
        cells,
        conditions: None,
    })
}

const POD_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    AGE,
    wide("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
    wide("Node", "string", "NodeName indicates in which node this pod is scheduled."),
    wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods."),
    wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness."),
];

fn pod_conditions(pod: &Value) -> Option<Value> {
    match str_at(pod, "status.phase") {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
        ),
        _ => None,
    }
}

/// Ready, Status and Restarts of a pod, as `kubectl get pods` shows them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PodSummary {
    pub ready: String,
    pub status: String,
    pub restarts: String,
}

/// Later of two optional times; a missing time never wins.
fn latest(
    current: Option<DateTime<Utc>>,
    candidate: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match (current, candidate) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Kubernetes' pod status reason logic from `printPod`: init container
/// progress first, then the last container with a waiting or terminated
/// reason, then deletion.
pub(crate) fn pod_summary(pod: &Value, now: DateTime<Utc>) -> PodSummary {
    let spec_init = array_at(pod, "spec.initContainers");
    // Sidecars (init containers with restartPolicy Always) count as containers.
    let is_sidecar = |container_name: &str| {
        spec_init
            .iter()
            .any(|c| str_at(c, "name") == container_name && str_at(c, "restartPolicy") == "Always")
    };
    let total = array_at(pod, "spec.containers").len()
        + spec_init
            .iter()
            .filter(|c| str_at(c, "restartPolicy") == "Always")
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;

    let phase = str_at(pod, "status.phase");
    let mut reason = opt_str(pod, "status.reason")
        .filter(|r| !r.is_empty())
        .unwrap_or(phase)
        .to_string();
    let conditions = array_at(pod, "status.conditions");
    if conditions
        .iter()
        .any(|c| str_at(c, "type") == "PodScheduled" && str_at(c, "reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let mut initializing = false;
    for (i, container) in array_at(pod, "status.initContainerStatuses")
        .iter()
        .enumerate()
    {
        let container_name = str_at(container, "name");
        let restart_count = i64_at(container, "restartCount");
        let finished = timestamp_at(container, "lastState.terminated.finishedAt");
        restarts += restart_count;
        last_restart = latest(last_restart, finished);
        let sidecar = is_sidecar(container_name);
        if sidecar {
            sidecar_restarts += restart_count;
            last_sidecar_restart = latest(last_sidecar_restart, finished);
        }
        let terminated = get(container, "state.terminated").filter(|t| t.is_object());
        let waiting_reason = str_at(container, "state.waiting.reason");
        if terminated.is_some_and(|t| i64_at(t, "exitCode") == 0) {
            continue;
        }
        if sidecar && bool_at(container, "started") {
            if bool_at(container, "ready") {
                ready += 1;
            }
            continue;
        }
        if let Some(terminated) = terminated {
            reason = match str_at(terminated, "reason") {
                "" if i64_at(terminated, "signal") != 0 => {
                    format!("Init:Signal:{}", i64_at(terminated, "signal"))
                }
                "" => format!("Init:ExitCode:{}", i64_at(terminated, "exitCode")),
                r => format!("Init:{r}"),
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", spec_init.len());
        }
        initializing = true;
        break;
    }

    if !initializing || has_true_condition(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        // Walk backwards so the first container's reason wins, as Kubernetes does.
        for container in array_at(pod, "status.containerStatuses").iter().rev() {
            restarts += i64_at(container, "restartCount");
            last_restart = latest(
                last_restart,
                timestamp_at(container, "lastState.terminated.finishedAt"),
            );
            let waiting_reason = str_at(container, "state.waiting.reason");
            let terminated = get(container, "state.terminated").filter(|t| t.is_object());
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(terminated) = terminated {
                reason = match str_at(terminated, "reason") {
                    "" if i64_at(terminated, "signal") != 0 => {
                        format!("Signal:{}", i64_at(terminated, "signal"))
                    }
                    "" => format!("ExitCode:{}", i64_at(terminated, "exitCode")),
                    r => r.to_string(),
                };
            } else if bool_at(container, "ready")
                && get(container, "state.running").is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed but another still runs is not done.
        if reason == "Completed" && has_running {
            reason = if has_true_condition(conditions, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    if is_deleting(pod) && str_at(pod, "status.reason") == "NodeLost" {
        reason = "Unknown".to_string();
    } else if is_deleting(pod) && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", duration::since(Some(t), now)),
        _ => restarts.to_string(),
    };
    PodSummary {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
    }
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    }
}

fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let summary = pod_summary(pod, now);
    let pod_ip = array_at(pod, "status.podIPs")
        .first()
        .map(|ip| str_at(ip, "ip"))
        .filter(|ip| !ip.is_empty())
        .unwrap_or(str_at(pod, "status.podIP"));
    let gates = array_at(pod, "spec.readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = array_at(pod, "status.conditions");
        let passing = gates
            .iter()
            .filter(|gate| {
                let wanted = str_at(gate, "conditionType");
                conditions
                    .iter()
                    .find(|c| str_at(c, "type") == wanted)
                    .is_some_and(|c| str_at(c, "status") == "True")
            })
            .count();
        format!("{passing}/{}", gates.len())
    };
    vec![
        json!(name(pod)),
        json!(summary.ready),
        json!(summary.status),
        json!(summary.restarts),
        json!(age(pod, now)),
        json!(or_none(pod_ip)),
        json!(or_none(str_at(pod, "spec.nodeName"))),
        json!(or_none(str_at(pod, "status.nominatedNodeName"))),
        json!(readiness_gates),
    ]
}

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", "type determines how the Service is exposed."),
    col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    col("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
];

/// Kubernetes' `makePortString`: `80/TCP`, or `80:30080/TCP` with a node port.
pub(crate) fn service_ports(ports: &[Value]) -> String {
    ports
        .iter()
        .map(|p| {
            let protocol = opt_str(p, "protocol").unwrap_or("TCP");
            match i64_at(p, "nodePort") {
                node_port if node_port > 0 => {
                    format!("{}:{node_port}/{protocol}", i64_at(p, "port"))
                }
                _ => format!("{}/{protocol}", i64_at(p, "port")),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Kubernetes' `getServiceExternalIP`.
pub(crate) fn service_external_ip(service: &Value) -> String {
    let external_ips: Vec<&str> = array_at(service, "spec.externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match opt_str(service, "spec.type").unwrap_or("ClusterIP") {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = array_at(service, "status.loadBalancer.ingress")
                .iter()
                .filter_map(|i| {
                    opt_str(i, "ip")
                        .filter(|s| !s.is_empty())
                        .or_else(|| opt_str(i, "hostname").filter(|s| !s.is_empty()))
                })
                .collect();
            let mut all: Vec<&str> = ingress.into_iter().collect();
            all.extend(external_ips);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(service, "spec.externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

fn service_cells(service: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let cluster_ip = array_at(service, "spec.clusterIPs")
        .first()
        .and_then(Value::as_str)
        .or_else(|| opt_str(service, "spec.clusterIP").filter(|s| !s.is_empty()))
        .unwrap_or("<none>");
    let ports = service_ports(array_at(service, "spec.ports"));
    vec![
        json!(name(service)),
        json!(opt_str(service, "spec.type").unwrap_or("ClusterIP")),
        json!(cluster_ip),
        json!(service_external_ip(service)),
        json!(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports
        }),
        json!(age(service, now)),
        json!(format_labels(get(service, "spec.selector"))),
    ]
}

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    col("Endpoints", "string", "Endpoints of the service."),
    AGE,
];

/// Kubernetes' `formatEndpoints`: up to three `ip:port`, then `+ N more...`.
pub(crate) fn format_endpoints(endpoints: &Value) -> String {
    let subsets = array_at(endpoints, "subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut count = 0usize;
    for subset in subsets {
        let addresses = array_at(subset, "addresses");
        let ports = array_at(subset, "ports");
        if ports.is_empty() {
            // Headless services may have addresses without ports.
            count += addresses.len();
            list.extend(addresses.iter().map(|a| str_at(a, "ip").to_string()));
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                let ip = str_at(address, "ip");
                let port = i64_at(port, "port");
                list.push(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                });
            }
        }
    }
    let shown = list.iter().take(MAX).cloned().collect::<Vec<_>>().join(",");
    if count > MAX {
        format!("{shown} + {} more...", count - MAX)
    } else {
        shown
    }
}

fn endpoints_cells(endpoints: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(endpoints)),
        json!(format_endpoints(endpoints)),
        json!(age(endpoints, now)),
    ]
}

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

fn namespace_cells(namespace: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(namespace)),
        json!(str_at(namespace, "status.phase")),
        json!(age(namespace, now)),
    ]
}

const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available."),
    wide("External-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available."),
    wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
    wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
    wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
];

/// Kubernetes' node Status column: Ready/NotReady/Unknown plus SchedulingDisabled.
pub(crate) fn node_status(node: &Value) -> String {
    let mut status: Vec<&str> = Vec::new();
    // Kubernetes keeps the last condition of a type when there are duplicates.
    if let Some(ready) = array_at(node, "status.conditions")
        .iter()
        .rev()
        .find(|c| str_at(c, "type") == "Ready")
    {
        status.push(if str_at(ready, "status") == "True" {
            "Ready"
        } else {
            "NotReady"
        });
    }
    if status.is_empty() {
        status.push("Unknown");
    }
    if bool_at(node, "spec.unschedulable") {
        status.push("SchedulingDisabled");
    }
    status.join(",")
}

/// Kubernetes' `findNodeRoles`: `node-role.kubernetes.io/<role>` keys and the
/// legacy `kubernetes.io/role` value, sorted.
pub(crate) fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    if let Some(Value::Object(labels)) = get(node, "metadata.labels") {
        for (key, value) in labels {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if key == "kubernetes.io/role" {
                if let Some(v) = value.as_str().filter(|v| !v.is_empty()) {
                    roles.insert(v.to_string());
                }
            }
        }
    }
    if roles.is_empty() {
        return "<none>".to_string();
    }
    roles.into_iter().collect::<Vec<_>>().join(",")
}

fn node_address(node: &Value, address_type: &str) -> String {
    array_at(node, "status.addresses")
        .iter()
        .find(|a| str_at(a, "type") == address_type)
        .map(|a| str_at(a, "address").to_string())
        .unwrap_or_else(|| "<none>".to_string())
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "<unknown>"
    } else {
        s
    }
}

fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(node)),
        json!(node_status(node)),
        json!(node_roles(node)),
        json!(age(node, now)),
        json!(str_at(node, "status.nodeInfo.kubeletVersion")),
        json!(node_address(node, "InternalIP")),
        json!(node_address(node, "ExternalIP")),
        json!(or_unknown(str_at(node, "status.nodeInfo.osImage"))),
        json!(or_unknown(str_at(node, "status.nodeInfo.kernelVersion"))),
        json!(or_unknown(str_at(
            node,
            "status.nodeInfo.containerRuntimeVersion"
        ))),
    ]
}

const CONFIG_MAP_COLUMNS: &[Column] = &[
    NAME,
    col("Data", "string", "Data contains the configuration data."),
    AGE,
];

fn config_map_cells(config_map: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let entries = len_at(config_map, "data") + len_at(config_map, "binaryData");
    vec![
        json!(name(config_map)),
        json!(entries),
        json!(age(config_map, now)),
    ]
}

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    col("Data", "string", "Data contains the secret data."),
    AGE,
];

fn secret_cells(secret: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let entries = len_at(secret, "data");
    vec![
        json!(name(secret)),
        json!(opt_str(secret, "type").unwrap_or("Opaque")),
        json!(entries),
        json!(age(secret, now)),
    ]
}

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[NAME, col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."), AGE];

fn service_account_cells(service_account: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(service_account)),
        json!(len_at(service_account, "secrets")),
        json!(age(service_account, now)),
    ]
}

const EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    col("Object", "string", "The object that this event is about."),
    wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]."),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    wide("Count", "string", "The number of times this event has occurred."),
    crate::Column { name: "Name", column_type: "string", format: "name", description: crate::NAME_DESCRIPTION, priority: 1 },
];

/// The fields of an Event the printer needs, under their core/v1 and
/// events.k8s.io/v1 names.
struct EventFields<'a> {
    involved: Option<&'a Value>,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    count: i64,
    source_component: &'a str,
    source_host: &'a str,
    reporting_controller: &'a str,
    message: &'a str,
}

fn core_event_cells(event: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let fields = EventFields {
        involved: get(event, "involvedObject"),
        first: timestamp_at(event, "firstTimestamp"),
        last: timestamp_at(event, "lastTimestamp"),
        count: i64_at(event, "count"),
        source_component: str_at(event, "source.component"),
        source_host: str_at(event, "source.host"),
        reporting_controller: str_at(event, "reportingComponent"),
        message: str_at(event, "message"),
    };
    event_cells(event, fields, now)
}

fn events_event_cells(event: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let fields = EventFields {
        involved: get(event, "regarding"),
        first: timestamp_at(event, "deprecatedFirstTimestamp"),
        last: timestamp_at(event, "deprecatedLastTimestamp"),
        count: i64_at(event, "deprecatedCount"),
        source_component: str_at(event, "deprecatedSource.component"),
        source_host: str_at(event, "deprecatedSource.host"),
        reporting_controller: str_at(event, "reportingController"),
        message: str_at(event, "note"),
    };
    event_cells(event, fields, now)
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

fn event_cells(event: &Value, fields: EventFields<'_>, now: DateTime<Utc>) -> Vec<Value> {
    let first_seen = match fields.first {
        Some(t) => duration::since(Some(t), now),
        None => duration::since(timestamp_at(event, "eventTime"), now),
    };
    let mut last_seen = match fields.last {
        Some(t) => duration::since(Some(t), now),
        None => first_seen.clone(),
    };
    let mut count = fields.count;
    if let Some(series) = get(event, "series").filter(|s| s.is_object()) {
        last_seen = duration::since(timestamp_at(series, "lastObservedTime"), now);
        count = i64_at(series, "count");
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }
    let involved = fields.involved.unwrap_or(&Value::Null);
    let kind = str_at(involved, "kind").to_lowercase();
    let target = match str_at(involved, "name") {
        "" => kind,
        involved_name => format!("{kind}/{involved_name}"),
    };
    let component = first_non_empty(fields.source_component, fields.reporting_controller);
    let instance = first_non_empty(fields.source_host, str_at(event, "reportingInstance"));
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last_seen),
        json!(str_at(event, "type")),
        json!(str_at(event, "reason")),
        json!(target),
        json!(str_at(involved, "fieldPath")),
        json!(source),
        json!(fields.message.trim()),
        json!(first_seen),
        json!(count),
        json!(name(event)),
    ]
}

const PVC_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Phase represents the current phase of PersistentVolumeClaim."),
    col("Volume", "string", "VolumeName is the binding reference to the PersistentVolume backing this claim."),
    col("Capacity", "string", "Capacity represents the actual resources of the underlying volume."),
    col("Access Modes", "string", "AccessModes contains the desired access modes the volume should have."),
    col("StorageClass", "string", "StorageClassName is the name of the StorageClass required by the claim."),
    col("VolumeAttributesClass", "string", "VolumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim."),
    AGE,
    wide("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim."),
];

/// Kubernetes' `GetAccessModesAsString`: short names in a fixed order.
pub(crate) fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(long, _)| has(long))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// Storage class of a claim or volume: the beta annotation wins over the field.
fn storage_class(object: &Value) -> String {
    let class = get(object, "metadata.annotations")
        .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
        .and_then(Value::as_str)
        .unwrap_or(str_at(object, "spec.storageClassName"));
    if class.is_empty() {
        "<unset>".to_string()
    } else {
        class.to_string()
    }
}

fn unset_if_empty(s: Option<&str>) -> &str {
    s.filter(|s| !s.is_empty()).unwrap_or("<unset>")
}

fn pvc_cells(claim: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = if is_deleting(claim) {
        "Terminating"
    } else {
        str_at(claim, "status.phase")
    };
    let volume_name = str_at(claim, "spec.volumeName");
    // Capacity and access modes are only meaningful once bound.
    let (capacity, modes) = if volume_name.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity_text(get(claim, "status.capacity.storage")),
            access_modes(array_at(claim, "status.accessModes")),
        )
    };
    vec![
        json!(name(claim)),
        json!(phase),
        json!(volume_name),
        json!(capacity),
        json!(modes),
        json!(storage_class(claim)),
        json!(unset_if_empty(opt_str(
            claim,
            "spec.volumeAttributesClassName"
        ))),
        json!(age(claim, now)),
        json!(unset_if_empty(opt_str(claim, "spec.volumeMode"))),
    ]
}

/// A quantity as stored (`"1Gi"`); Kubernetes prints a missing one as `0`.
fn quantity_text(quantity: Option<&Value>) -> String {
    match quantity {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".to_string(),
    }
}

const PV_COLUMNS: &[Column] = &[
    NAME,
    col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
    col("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
    col("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
    col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
    col("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
    col("StorageClass", "string", "storageClassName is the name of StorageClass to which this persistent volume belongs."),
    col("VolumeAttributesClass", "string", "Name of VolumeAttributesClass to which this persistent volume belongs."),
    col("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
    AGE,
    wide("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
];

fn pv_cells(volume: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let claim = match get(volume, "spec.claimRef").filter(|c| c.is_object()) {
        Some(claim) => format!("{}/{}", str_at(claim, "namespace"), str_at(claim, "name")),
        None => String::new(),
    };
    let phase = if is_deleting(volume) {
        "Terminating"
    } else {
        str_at(volume, "status.phase")
    };
    vec![
        json!(name(volume)),
        json!(quantity_text(get(volume, "spec.capacity.storage"))),
        json!(access_modes(array_at(volume, "spec.accessModes"))),
        json!(str_at(volume, "spec.persistentVolumeReclaimPolicy")),
        json!(phase),
        json!(claim),
        json!(storage_class(volume)),
        json!(unset_if_empty(opt_str(
            volume,
            "spec.volumeAttributesClassName"
        ))),
        json!(str_at(volume, "status.reason")),
        json!(age(volume, now)),
        json!(unset_if_empty(opt_str(volume, "spec.volumeMode"))),
    ]
}

const REPLICATION_CONTROLLER_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replication controller.",
    ),
    AGE,
    wide(
        "Containers",
        "string",
        "Names of each container in the template.",
    ),
    wide(
        "Images",
        "string",
        "Images referenced by each container in the template.",
    ),
    wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the Replicas count.",
    ),
];

fn replication_controller_cells(controller: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = crate::value::container_cells(get(controller, "spec.template.spec"));
    vec![
        json!(name(controller)),
        json!(opt_i64(controller, "spec.replicas").unwrap_or(1)),
        json!(i64_at(controller, "status.replicas")),
        json!(i64_at(controller, "status.readyReplicas")),
        json!(age(controller, now)),
        json!(containers),
        json!(images),
        json!(format_labels(get(controller, "spec.selector"))),
    ]
}

const RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    NAME,
    AGE,
    col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
    col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
];

/// `used/hard` pairs sorted by resource name, split into requests and limits.
fn resource_quota_cells(quota: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut request = Vec::new();
    let mut limit = Vec::new();
    if let Some(Value::Object(hard)) = get(quota, "status.hard") {
        let mut resources: Vec<&String> = hard.keys().collect();
        resources.sort();
        for resource in resources {
            let used =
                quantity_text(get(quota, "status.used").and_then(|u| u.get(resource.as_str())));
            let entry = format!(
                "{resource}: {used}/{}",
                quantity_text(hard.get(resource.as_str()))
            );
            if resource.starts_with("limits.") {
                limit.push(entry);
            } else {
                request.push(entry);
            }
        }
    }
    vec![
        json!(name(quota)),
        json!(age(quota, now)),
        json!(request.join(", ")),
        json!(limit.join(", ")),
    ]
}

/// Kubernetes' `formatDiscoveryPorts` for EndpointSlices.
pub(crate) fn discovery_ports(ports: &[Value]) -> String {
    let items: Vec<String> = ports
        .iter()
        .map(|p| match (opt_i64(p, "port"), opt_str(p, "name")) {
            (Some(port), _) => port.to_string(),
            (None, Some(port_name)) => port_name.to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    list_with_more(&items, 3, "<unset>")
}

/// Kubernetes' `formatDiscoveryEndpoints` for EndpointSlices.
pub(crate) fn discovery_endpoints(endpoints: &[Value]) -> String {
    let items: Vec<String> = endpoints
        .iter()
        .flat_map(|e| {
            array_at(e, "addresses")
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    list_with_more(&items, 3, "<unset>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::parse_timestamp;

    fn now() -> DateTime<Utc> {
        parse_timestamp("2024-01-01T12:00:00Z").unwrap()
    }

    /// A pod built from a compact JSON literal summarizes as `ready | status | restarts`.
    fn check(pod: Value, expect: &str) {
        let s = pod_summary(&pod, now());
        assert_eq!(
            format!("{} | {} | {}", s.ready, s.status, s.restarts),
            expect,
            "{pod}"
        );
    }

    fn running(name: &str, ready: bool, restarts: i64) -> Value {
        json!({"name": name, "ready": ready, "restartCount": restarts, "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}})
    }

    #[test]
    fn pod_status() {
        check(
            json!({"spec": {"containers": [{}]}, "status": {"phase": "Pending"}}),
            "0/1 | Pending | 0",
        );
        check(
            json!({"spec": {"containers": [{}]}, "status": {"phase": "Running", "containerStatuses": [running("a", true, 0)]}}),
            "1/1 | Running | 0",
        );
        check(
            json!({"spec": {"containers": [{}, {}]}, "status": {"phase": "Running", "containerStatuses": [running("a", true, 0), running("b", false, 0)]}}),
            "1/2 | Running | 0",
        );
        check(
            json!({"spec": {"containers": [{}]}, "status": {"phase": "Running", "containerStatuses": [{"restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T11:55:00Z"}}}]}}),
            "0/1 | CrashLoopBackOff | 4 (5m ago)",
        );
        check(
            json!({"spec": {"containers": [{}]}, "status": {"phase": "Running", "containerStatuses": [{"restartCount": 2, "ready": true, "state": {"running": {}}}]}}),
            "1/1 | Running | 2",
        );
        check(
            json!({"spec": {"containers": [{}]}, "status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}}),
            "0/1 | ContainerCreating | 0",
        );
        check(
            json!({"spec": {"containers": [{}]}, "status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}),
            "0/1 | ImagePullBackOff | 0",
        );
        check(
            json!({"spec": {"containers": [{}]}, "status": {"phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}),
            "0/1 | Completed | 0",
        );
        check(
            json!({"spec": {"containers": [{}]}, "status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}),
            "0/1 | OOMKilled | 0",
        );
        check(
            json!({"spec": {"containers": [{}]}, "status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"exitCode": 3}}}]}}),
            "0/1 | ExitCode:3 | 0",
        );
        check(
            json!({"spec": {"containers": [{}]}, "status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "signal": 9}}}]}}),
            "0/1 | Signal:9 | 0",
        );
        check(
            json!({"spec": {"containers": [{}, {}]}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}], "containerStatuses": [running("a", true, 0), {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}),
            "1/2 | NotReady | 0",
        );
        check(
            json!({"spec": {"containers": [{}, {}]}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [running("a", true, 0), {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}),
            "1/2 | Running | 0",
        );
        check(
            json!({"metadata": {"deletionTimestamp": "2024-01-01T11:59:00Z"}, "spec": {"containers": [{}]}, "status": {"phase": "Running", "containerStatuses": [running("a", true, 0)]}}),
            "1/1 | Terminating | 0",
        );
        check(
            json!({"metadata": {"deletionTimestamp": "2024-01-01T11:59:00Z"}, "spec": {"containers": [{}]}, "status": {"phase": "Succeeded"}}),
            "0/1 | Succeeded | 0",
        );
        check(
            json!({"metadata": {"deletionTimestamp": "2024-01-01T11:59:00Z"}, "spec": {"containers": [{}]}, "status": {"phase": "Running", "reason": "NodeLost"}}),
            "0/1 | Unknown | 0",
        );
        check(
            json!({"spec": {"containers": [{}]}, "status": {"phase": "Failed", "reason": "Evicted"}}),
            "0/1 | Evicted | 0",
        );
        check(
            json!({"spec": {"containers": [{}]}, "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}}),
            "0/1 | SchedulingGated | 0",
        );
    }

    #[test]
    fn pod_init_status() {
        let two_init = json!([{"name": "i1"}, {"name": "i2"}]);
        check(
            json!({"spec": {"initContainers": two_init, "containers": [{}]}, "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": {"running": {}}}, {"name": "i2", "state": {"waiting": {"reason": "PodInitializing"}}}]}}),
            "0/1 | Init:0/2 | 0",
        );
        check(
            json!({"spec": {"initContainers": two_init, "containers": [{}]}, "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": {"terminated": {"exitCode": 0}}}, {"name": "i2", "state": {"running": {}}}]}}),
            "0/1 | Init:1/2 | 0",
        );
        check(
            json!({"spec": {"initContainers": two_init, "containers": [{}]}, "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i1", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T11:59:30Z"}}}]}}),
            "0/1 | Init:CrashLoopBackOff | 3 (30s ago)",
        );
        check(
            json!({"spec": {"initContainers": two_init, "containers": [{}]}, "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": {"terminated": {"exitCode": 2}}}]}}),
            "0/1 | Init:ExitCode:2 | 0",
        );
        check(
            json!({"spec": {"initContainers": two_init, "containers": [{}]}, "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": {"terminated": {"exitCode": 2, "signal": 15}}}]}}),
            "0/1 | Init:Signal:15 | 0",
        );
        check(
            json!({"spec": {"initContainers": two_init, "containers": [{}]}, "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}}),
            "0/1 | Init:Error | 0",
        );
        // A started sidecar counts as a ready container and does not block the status.
        check(
            json!({"spec": {"initContainers": [{"name": "s", "restartPolicy": "Always"}], "containers": [{}]}, "status": {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}], "initContainerStatuses": [{"name": "s", "started": true, "ready": true, "restartCount": 1, "state": {"running": {}}}], "containerStatuses": [running("a", true, 0)]}}),
            "2/2 | Running | 1",
        );
    }

    /// Runs a string-producing printer helper over a JSON value.
    fn check_text(f: fn(&Value) -> String, input: Value, expect: &str) {
        assert_eq!(f(&input), expect, "{input}");
    }

    #[test]
    fn service_ports_and_external_ips() {
        let ports = |v: &Value| service_ports(v.as_array().unwrap());
        check_text(ports, json!([]), "");
        check_text(ports, json!([{"port": 80, "protocol": "TCP"}]), "80/TCP");
        check_text(
            ports,
            json!([{"port": 80}, {"port": 443, "nodePort": 30443, "protocol": "TCP"}]),
            "80/TCP,443:30443/TCP",
        );
        check_text(ports, json!([{"port": 53, "protocol": "UDP"}]), "53/UDP");
        check_text(
            service_external_ip,
            json!({"spec": {"type": "ClusterIP"}}),
            "<none>",
        );
        check_text(
            service_external_ip,
            json!({"spec": {"type": "NodePort", "externalIPs": ["1.1.1.1", "2.2.2.2"]}}),
            "1.1.1.1,2.2.2.2",
        );
        check_text(
            service_external_ip,
            json!({"spec": {"type": "LoadBalancer"}}),
            "<pending>",
        );
        check_text(
            service_external_ip,
            json!({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "9.9.9.9"}, {"hostname": "lb.example.com"}]}}}),
            "9.9.9.9,lb.example.com",
        );
        check_text(
            service_external_ip,
            json!({"spec": {"type": "LoadBalancer", "externalIPs": ["1.1.1.1"]}, "status": {"loadBalancer": {"ingress": [{"ip": "9.9.9.9"}]}}}),
            "9.9.9.9,1.1.1.1",
        );
        check_text(
            service_external_ip,
            json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
            "db.example.com",
        );
    }

    #[test]
    fn endpoints_and_slices() {
        check_text(format_endpoints, json!({}), "<none>");
        check_text(
            format_endpoints,
            json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}),
            "10.0.0.1:80",
        );
        check_text(
            format_endpoints,
            json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]}),
            "[fd00::1]:80",
        );
        check_text(
            format_endpoints,
            json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}]}),
            "10.0.0.1,10.0.0.2",
        );
        check_text(
            format_endpoints,
            json!({"subsets": [{"addresses": [{"ip": "a"}, {"ip": "b"}], "ports": [{"port": 1}, {"port": 2}]}]}),
            "a:1,b:1,a:2 + 1 more...",
        );
        check_text(
            |v| discovery_ports(v.as_array().unwrap()),
            json!([]),
            "<unset>",
        );
        check_text(
            |v| discovery_ports(v.as_array().unwrap()),
            json!([{"port": 80}, {"name": "http"}, {}]),
            "80,http,*",
        );
        check_text(
            |v| discovery_endpoints(v.as_array().unwrap()),
            json!([{"addresses": ["a", "b"]}, {"addresses": ["c", "d", "e"]}]),
            "a,b,c + 2 more...",
        );
    }

    #[test]
    fn node_status_and_roles() {
        check_text(node_status, json!({}), "Unknown");
        check_text(
            node_status,
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            "Ready",
        );
        check_text(
            node_status,
            json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
            "NotReady",
        );
        check_text(
            node_status,
            json!({"spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            "Ready,SchedulingDisabled",
        );
        check_text(
            node_status,
            json!({"spec": {"unschedulable": true}}),
            "Unknown,SchedulingDisabled",
        );
        check_text(node_roles, json!({"metadata": {"labels": {}}}), "<none>");
        check_text(
            node_roles,
            json!({"metadata": {"labels": {"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "x"}}}),
            "control-plane,worker",
        );
        check_text(
            node_roles,
            json!({"metadata": {"labels": {"kubernetes.io/role": "master"}}}),
            "master",
        );
    }

    #[test]
    fn access_mode_names() {
        check_text(
            |v| access_modes(v.as_array().unwrap()),
            json!(["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"]),
            "RWO,RWX",
        );
        check_text(
            |v| access_modes(v.as_array().unwrap()),
            json!(["ReadWriteOncePod"]),
            "RWOP",
        );
    }

    #[test]
    fn event_cells_old_and_new_api() {
        let core = json!({"metadata": {"name": "e1"}, "type": "Warning", "reason": "BackOff", "message": " Back-off restarting \n", "involvedObject": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{web}"}, "source": {"component": "kubelet", "host": "n1"}, "firstTimestamp": "2024-01-01T11:00:00Z", "lastTimestamp": "2024-01-01T11:58:00Z", "count": 7});
        assert_eq!(
            core_event_cells(&core, now()),
            vec![
                json!("2m"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web-0"),
                json!("spec.containers{web}"),
                json!("kubelet, n1"),
                json!("Back-off restarting"),
                json!("60m"),
                json!(7),
                json!("e1")
            ]
        );
        let new = json!({"metadata": {"name": "e2"}, "type": "Normal", "reason": "Scheduled", "note": "assigned", "regarding": {"kind": "Pod", "name": "p"}, "reportingController": "default-scheduler", "eventTime": "2024-01-01T11:59:50.000000Z"});
        assert_eq!(
            events_event_cells(&new, now()),
            vec![
                json!("10s"),
                json!("Normal"),
                json!("Scheduled"),
                json!("pod/p"),
                json!(""),
                json!("default-scheduler"),
                json!("assigned"),
                json!("10s"),
                json!(1),
                json!("e2")
            ]
        );
    }
}
