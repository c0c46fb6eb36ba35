//! Printers for the remaining built-in groups (discovery, coordination,
//! autoscaling, scheduling, node, RBAC, storage, networking, policy,
//! apiextensions) and the CRD `additionalPrinterColumns` columns.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::core_group::{discovery_endpoints, discovery_ports};
use crate::duration;
use crate::jsonpath::JsonPath;
use crate::value::{
    age, array_at, bool_at, get, i64_at, name, opt_i64, opt_str, str_at, timestamp_at,
};
use crate::{col, column_definition, wide, CellsFn, Column, CustomColumn, Printer, AGE, NAME};

pub(crate) fn printer(group: &str, kind: &str) -> Option<Printer> {
    let (columns, cells): (&'static [Column], CellsFn) = match (group, kind) {
        ("discovery.k8s.io", "EndpointSlice") => (ENDPOINT_SLICE_COLUMNS, endpoint_slice_cells),
        ("coordination.k8s.io", "Lease") => (LEASE_COLUMNS, lease_cells),
        ("autoscaling", "HorizontalPodAutoscaler") => (HPA_COLUMNS, hpa_cells),
        ("scheduling.k8s.io", "PriorityClass") => (PRIORITY_CLASS_COLUMNS, priority_class_cells),
        ("node.k8s.io", "RuntimeClass") => (RUNTIME_CLASS_COLUMNS, runtime_class_cells),
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            (CREATED_AT_COLUMNS, created_at_cells)
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            (ROLE_BINDING_COLUMNS, role_binding_cells)
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            (CREATED_AT_COLUMNS, created_at_cells)
        }
        ("storage.k8s.io", "StorageClass") => (STORAGE_CLASS_COLUMNS, storage_class_cells),
        ("networking.k8s.io", "Ingress") => (INGRESS_COLUMNS, ingress_cells),
        ("networking.k8s.io", "IPAddress") => (IP_ADDRESS_COLUMNS, ip_address_cells),
        ("policy", "PodDisruptionBudget") => (PDB_COLUMNS, pdb_cells),
        _ => return None,
    };
    Some(Printer {
        columns,
        cells,
        conditions: None,
    })
}

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

fn endpoint_slice_cells(slice: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(slice)),
        json!(str_at(slice, "addressType")),
        json!(discovery_ports(array_at(slice, "ports"))),
        json!(discovery_endpoints(array_at(slice, "endpoints"))),
        json!(age(slice, now)),
    ]
}

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

fn lease_cells(lease: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(lease)),
        json!(str_at(lease, "spec.holderIdentity")),
        json!(age(lease, now)),
    ]
}

const HPA_COLUMNS: &[Column] = &[
    NAME,
    col("Reference", "string", "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource."),
    col("Targets", "string", "metrics contains the specifications for which to use to calculate the desired replica count."),
    col("MinPods", "string", "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down."),
    col("MaxPods", "integer", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up."),
    col("Replicas", "integer", "currentReplicas is current number of replicas of pods managed by this autoscaler."),
    AGE,
];

/// A quantity as stored, or `<unknown>` when the current value is not known yet.
fn quantity_or_unknown(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "<unknown>".to_string(),
    }
}

fn quantity(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".to_string(),
    }
}

/// Kubernetes' `formatHPAMetrics`: `current/target` per metric, at most two,
/// then `+ N more...`. Status entries are matched to spec entries by index,
/// as Kubernetes does. autoscaling/v1 objects carry a CPU target instead.
pub(crate) fn hpa_targets(hpa: &Value) -> String {
    let specs = array_at(hpa, "spec.metrics");
    if specs.is_empty() {
        return match opt_i64(hpa, "spec.targetCPUUtilizationPercentage") {
            Some(target) => {
                let current = opt_i64(hpa, "status.currentCPUUtilizationPercentage")
                    .map(|c| format!("{c}%"))
                    .unwrap_or_else(|| "<unknown>".to_string());
                format!("cpu: {current}/{target}%")
            }
            None => "<none>".to_string(),
        };
    }
    let statuses = array_at(hpa, "status.currentMetrics");
    let mut list = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        let entry = match str_at(spec, "type") {
            source @ ("External" | "Object") => {
                let key = if source == "External" {
                    "external"
                } else {
                    "object"
                };
                let target = get(spec, &format!("{key}.target")).unwrap_or(&Value::Null);
                let current = status.and_then(|s| get(s, &format!("{key}.current")));
                if let Some(average) = target.get("averageValue") {
                    format!(
                        "{}/{} (avg)",
                        quantity_or_unknown(current.and_then(|c| c.get("averageValue"))),
                        quantity(Some(average))
                    )
                } else {
                    let current = match current {
                        Some(c) => quantity(c.get("value")),
                        None => "<unknown>".to_string(),
                    };
                    format!("{current}/{}", quantity(target.get("value")))
                }
            }
            "Pods" => {
                let current = match status.and_then(|s| get(s, "pods.current")) {
                    Some(c) => quantity(c.get("averageValue")),
                    None => "<unknown>".to_string(),
                };
                format!(
                    "{current}/{}",
                    quantity(get(spec, "pods.target.averageValue"))
                )
            }
            source @ ("Resource" | "ContainerResource") => {
                let key = if source == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let resource = str_at(spec, &format!("{key}.name"));
                let target = get(spec, &format!("{key}.target")).unwrap_or(&Value::Null);
                let current = status.and_then(|s| get(s, &format!("{key}.current")));
                if let Some(average) = target.get("averageValue") {
                    let current = match current {
                        Some(c) => quantity(c.get("averageValue")),
                        None => "<unknown>".to_string(),
                    };
                    format!("{resource}: {current}/{}", quantity(Some(average)))
                } else {
                    let current = current
                        .and_then(|c| c.get("averageUtilization"))
                        .and_then(Value::as_i64)
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(|| "<unknown>".to_string());
                    let target = target
                        .get("averageUtilization")
                        .and_then(Value::as_i64)
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(|| "<auto>".to_string());
                    format!("{resource}: {current}/{target}")
                }
            }
            _ => "<unknown type>".to_string(),
        };
        list.push(entry);
    }
    const MAX: usize = 2;
    if list.len() > MAX {
        let more = list.len() - MAX;
        return format!("{} + {more} more...", list[..MAX].join(", "));
    }
    list.join(", ")
}

fn hpa_cells(hpa: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        str_at(hpa, "spec.scaleTargetRef.kind"),
        str_at(hpa, "spec.scaleTargetRef.name")
    );
    let min_pods = opt_i64(hpa, "spec.minReplicas")
        .map(|m| m.to_string())
        .unwrap_or_else(|| "<unset>".to_string());
    vec![
        json!(name(hpa)),
        json!(reference),
        json!(hpa_targets(hpa)),
        json!(min_pods),
        json!(i64_at(hpa, "spec.maxReplicas")),
        json!(i64_at(hpa, "status.currentReplicas")),
        json!(age(hpa, now)),
    ]
}

const PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col("Value", "integer", "value represents the integer value of this priority class."),
    col("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
    col("Preemption Policy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority."),
    AGE,
];

fn priority_class_cells(class: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(class)),
        json!(i64_at(class, "value")),
        json!(bool_at(class, "globalDefault")),
        json!(opt_str(class, "preemptionPolicy").unwrap_or("<unset>")),
        json!(age(class, now)),
    ]
}

const RUNTIME_CLASS_COLUMNS: &[Column] = &[NAME, col("Handler", "string", "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class."), AGE];

fn runtime_class_cells(class: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(class)),
        json!(str_at(class, "handler")),
        json!(age(class, now)),
    ]
}

const IP_ADDRESS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "ParentRef",
        "string",
        "ParentRef references the resource that an IPAddress is attached to. An IPAddress must reference a parent object.",
    ),
];

/// `resource[.group]/[namespace/]name` of the parent, as kubectl shows it.
fn ip_address_cells(ip: &Value, _now: DateTime<Utc>) -> Vec<Value> {
    let parent = match get(ip, "spec.parentRef") {
        Some(r) if r.is_object() => {
            let mut resource = str_at(r, "resource").to_string();
            let group = str_at(r, "group");
            if !group.is_empty() {
                resource = format!("{resource}.{group}");
            }
            let ns = str_at(r, "namespace");
            let name = str_at(r, "name");
            if ns.is_empty() {
                format!("{resource}/{name}")
            } else {
                format!("{resource}/{ns}/{name}")
            }
        }
        _ => String::new(),
    };
    vec![json!(name(ip)), json!(parent)]
}

/// Kubernetes' default table convertor, which RBAC roles and CRDs use.
const CREATED_AT_COLUMNS: &[Column] = &[NAME, col("Created At", "date", crate::AGE_DESCRIPTION)];

fn created_at_cells(object: &Value, _now: DateTime<Utc>) -> Vec<Value> {
    let created = timestamp_at(object, "metadata.creationTimestamp")
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
    vec![json!(name(object)), json!(created)]
}

const ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace."),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
];

fn role_binding_cells(binding: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut service_accounts = Vec::new();
    for subject in array_at(binding, "subjects") {
        match str_at(subject, "kind") {
            "User" => users.push(str_at(subject, "name").to_string()),
            "Group" => groups.push(str_at(subject, "name").to_string()),
            "ServiceAccount" => service_accounts.push(format!(
                "{}/{}",
                str_at(subject, "namespace"),
                str_at(subject, "name")
            )),
            _ => {}
        }
    }
    vec![
        json!(name(binding)),
        json!(format!(
            "{}/{}",
            str_at(binding, "roleRef.kind"),
            str_at(binding, "roleRef.name")
        )),
        json!(age(binding, now)),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(service_accounts.join(", ")),
    ]
}

const STORAGE_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col("Provisioner", "string", "provisioner indicates the type of the provisioner."),
    col("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
    col("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
    col("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
    AGE,
];

fn storage_class_cells(class: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let annotations = get(class, "metadata.annotations");
    let is_default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|key| {
        annotations
            .and_then(|a| a.get(*key))
            .and_then(Value::as_str)
            == Some("true")
    });
    let display_name = if is_default {
        format!("{} (default)", name(class))
    } else {
        name(class).to_string()
    };
    vec![
        json!(display_name),
        json!(str_at(class, "provisioner")),
        json!(opt_str(class, "reclaimPolicy").unwrap_or("Delete")),
        json!(opt_str(class, "volumeBindingMode").unwrap_or("Immediate")),
        json!(bool_at(class, "allowVolumeExpansion")),
        json!(age(class, now)),
    ]
}

const INGRESS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Class",
        "string",
        "ingressClassName is the name of an IngressClass cluster resource.",
    ),
    col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

fn ingress_cells(ingress: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let rules = array_at(ingress, "spec.rules");
    const MAX: usize = 3;
    let hosts: Vec<&str> = rules
        .iter()
        .take(MAX)
        .map(|r| str_at(r, "host"))
        .filter(|h| !h.is_empty())
        .collect();
    let hosts = match (hosts.is_empty(), rules.len() > MAX) {
        (true, _) => "*".to_string(),
        (false, true) => format!("{} + {} more...", hosts.join(","), rules.len() - MAX),
        (false, false) => hosts.join(","),
    };
    let address: Vec<&str> = array_at(ingress, "status.loadBalancer.ingress")
        .iter()
        .filter_map(|i| {
            opt_str(i, "ip")
                .filter(|s| !s.is_empty())
                .or_else(|| opt_str(i, "hostname").filter(|s| !s.is_empty()))
        })
        .collect();
    let ports = if array_at(ingress, "spec.tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        json!(name(ingress)),
        json!(opt_str(ingress, "spec.ingressClassName").unwrap_or("<none>")),
        json!(hosts),
        json!(address.join(",")),
        json!(ports),
        json!(age(ingress, now)),
    ]
}

const PDB_COLUMNS: &[Column] = &[
    NAME,
    col("Min Available", "string", "An eviction is allowed if at least \"minAvailable\" pods selected by \"selector\" will still be available after the eviction."),
    col("Max Unavailable", "string", "An eviction is allowed if at most \"maxUnavailable\" pods selected by \"selector\" are unavailable after the eviction."),
    col("Allowed Disruptions", "integer", "Number of pod disruptions that are currently allowed."),
    AGE,
];

fn int_or_string(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".to_string(),
    }
}

fn pdb_cells(pdb: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        json!(name(pdb)),
        json!(int_or_string(get(pdb, "spec.minAvailable"))),
        json!(int_or_string(get(pdb, "spec.maxUnavailable"))),
        json!(i64_at(pdb, "status.disruptionsAllowed")),
        json!(age(pdb, now)),
    ]
}

/// A CRD without printer columns gets an Age column, as the apiextensions server adds.
pub(crate) fn custom_columns_or_default(columns: &[CustomColumn]) -> Vec<CustomColumn> {
    if !columns.is_empty() {
        return columns.to_vec();
    }
    vec![CustomColumn {
        name: "Age".to_string(),
        column_type: "date".to_string(),
        format: String::new(),
        description: crate::AGE_DESCRIPTION.to_string(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".to_string(),
    }]
}

pub(crate) fn custom_column_definitions(columns: &[CustomColumn]) -> Vec<Value> {
    let mut definitions = vec![column_definition(&NAME)];
    for column in columns {
        let description = if column.description.is_empty() {
            format!(
                "Custom resource definition column (in JSONPath format): {}",
                column.json_path
            )
        } else {
            column.description.clone()
        };
        definitions.push(json!({
            "name": column.name,
            "type": column.column_type,
            "format": column.format,
            "description": description,
            "priority": column.priority,
        }));
    }
    definitions
}

/// Name, then each column's first JSONPath result converted for its type;
/// no result (or an unparsable path) is a null cell, which kubectl prints
/// as `<none>`.
pub(crate) fn custom_cells(
    columns: &[CustomColumn],
    object: &Value,
    now: DateTime<Utc>,
) -> Vec<Value> {
    let mut cells = vec![json!(name(object))];
    for column in columns {
        let first = JsonPath::parse(&column.json_path)
            .ok()
            .and_then(|p| p.find(object).first().copied());
        cells.push(match first {
            None | Some(Value::Null) => Value::Null,
            Some(value) => custom_cell(&column.column_type, value, now),
        });
    }
    cells
}

/// Kubernetes' `cellForJSONValue`, plus the text printing of `string` columns.
pub(crate) fn custom_cell(column_type: &str, value: &Value, now: DateTime<Utc>) -> Value {
    match (column_type, value) {
        ("string", Value::String(s)) => json!(s),
        ("string", other) => json!(other.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_f64().map(|f| json!(f as i64)))
            .unwrap_or(Value::Null),
        ("number", Value::Number(n)) => n.as_f64().map(Value::from).unwrap_or(Value::Null),
        ("boolean", Value::Bool(b)) => json!(b),
        ("date", Value::String(s)) => match duration::parse_timestamp(s) {
            Some(t) => json!(duration::human_duration(now - t)),
            None => json!("<invalid>"),
        },
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HPA Targets cell for a compact spec/status literal.
    fn check(hpa: Value, expect: &str) {
        assert_eq!(hpa_targets(&hpa), expect, "{hpa}");
    }

    #[test]
    fn hpa_targets_cells() {
        check(json!({}), "<none>");
        check(
            json!({"spec": {"targetCPUUtilizationPercentage": 80}}),
            "cpu: <unknown>/80%",
        );
        check(
            json!({"spec": {"targetCPUUtilizationPercentage": 80}, "status": {"currentCPUUtilizationPercentage": 12}}),
            "cpu: 12%/80%",
        );
        let cpu = json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}});
        check(json!({"spec": {"metrics": [cpu]}}), "cpu: <unknown>/50%");
        check(
            json!({"spec": {"metrics": [cpu]}, "status": {"currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 7, "averageValue": "7m"}}}]}}),
            "cpu: 7%/50%",
        );
        let memory = json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}});
        check(
            json!({"spec": {"metrics": [memory]}, "status": {"currentMetrics": [{"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "20Mi"}}}]}}),
            "memory: 20Mi/100Mi",
        );
        let pods = json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}});
        check(json!({"spec": {"metrics": [pods]}}), "<unknown>/1k");
        let external = json!({"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "AverageValue", "averageValue": "30"}}});
        check(
            json!({"spec": {"metrics": [external]}}),
            "<unknown>/30 (avg)",
        );
        check(
            json!({"spec": {"metrics": [cpu, memory, pods]}}),
            "cpu: <unknown>/50%, memory: <unknown>/100Mi + 1 more...",
        );
        check(
            json!({"spec": {"metrics": [{"type": "Weird"}]}}),
            "<unknown type>",
        );
    }

    /// A CRD column of `column_type` renders `value` as `expect`.
    fn check_cell(column_type: &str, value: Value, expect: Value) {
        let now = duration::parse_timestamp("2024-01-01T00:00:00Z").unwrap();
        assert_eq!(
            custom_cell(column_type, &value, now),
            expect,
            "{column_type} {value}"
        );
    }

    #[test]
    fn custom_cell_types() {
        check_cell("string", json!("x"), json!("x"));
        check_cell("string", json!(3), json!("3"));
        check_cell("string", json!(true), json!("true"));
        check_cell("string", json!({"a": 1}), json!(r#"{"a":1}"#));
        check_cell("integer", json!(3), json!(3));
        check_cell("integer", json!(3.7), json!(3));
        check_cell("integer", json!("3"), Value::Null);
        check_cell("number", json!(2), json!(2.0));
        check_cell("boolean", json!(false), json!(false));
        check_cell("boolean", json!("false"), Value::Null);
        check_cell("date", json!("2023-12-31T23:00:00Z"), json!("60m"));
        check_cell("date", json!("yesterday"), json!("<invalid>"));
        check_cell("date", json!(5), Value::Null);
    }
}
