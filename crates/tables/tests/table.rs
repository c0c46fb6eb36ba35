//! The Table document as kubectl receives it: column names per kind,
//! row objects, and CRD printer columns.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tables::{column_names, table, CustomColumn, IncludeObject};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// The column names kubectl shows for `group`/`kind`, `|`-joined (wide ones included).
fn check(group: &str, kind: &str, expect: &str) {
    let t = table(group, kind, &[], now(), IncludeObject::None, None);
    let names: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.join("|"), expect, "{group}/{kind}");
}

#[test]
fn column_names_per_kind() {
    check(
        "",
        "Pod",
        "Name|Ready|Status|Restarts|Age|IP|Node|Nominated Node|Readiness Gates",
    );
    check(
        "apps",
        "Deployment",
        "Name|Ready|Up-to-date|Available|Age|Containers|Images|Selector",
    );
    check(
        "apps",
        "ReplicaSet",
        "Name|Desired|Current|Ready|Age|Containers|Images|Selector",
    );
    check("apps", "StatefulSet", "Name|Ready|Age|Containers|Images");
    check("apps", "DaemonSet", "Name|Desired|Current|Ready|Up-to-date|Available|Node Selector|Age|Containers|Images|Selector");
    check("apps", "ControllerRevision", "Name|Controller|Revision|Age");
    check(
        "batch",
        "Job",
        "Name|Status|Completions|Duration|Age|Containers|Images|Selector",
    );
    check(
        "batch",
        "CronJob",
        "Name|Schedule|Timezone|Suspend|Active|Last Schedule|Age|Containers|Images|Selector",
    );
    check(
        "",
        "Service",
        "Name|Type|Cluster-IP|External-IP|Port(s)|Age|Selector",
    );
    check("", "Endpoints", "Name|Endpoints|Age");
    check(
        "discovery.k8s.io",
        "EndpointSlice",
        "Name|AddressType|Ports|Endpoints|Age",
    );
    check("", "Namespace", "Name|Status|Age");
    check("", "Node", "Name|Status|Roles|Age|Version|Internal-IP|External-IP|OS-Image|Kernel-Version|Container-Runtime");
    check("", "ConfigMap", "Name|Data|Age");
    check("", "Secret", "Name|Type|Data|Age");
    check("", "ServiceAccount", "Name|Secrets|Age");
    check(
        "",
        "Event",
        "Last Seen|Type|Reason|Object|Subobject|Source|Message|First Seen|Count|Name",
    );
    check(
        "events.k8s.io",
        "Event",
        "Last Seen|Type|Reason|Object|Subobject|Source|Message|First Seen|Count|Name",
    );
    check("coordination.k8s.io", "Lease", "Name|Holder|Age");
    check("", "PersistentVolumeClaim", "Name|Status|Volume|Capacity|Access Modes|StorageClass|VolumeAttributesClass|Age|VolumeMode");
    check("", "PersistentVolume", "Name|Capacity|Access Modes|Reclaim Policy|Status|Claim|StorageClass|VolumeAttributesClass|Reason|Age|VolumeMode");
    check(
        "",
        "ReplicationController",
        "Name|Desired|Current|Ready|Age|Containers|Images|Selector",
    );
    check("", "ResourceQuota", "Name|Age|Request|Limit");
    check(
        "autoscaling",
        "HorizontalPodAutoscaler",
        "Name|Reference|Targets|MinPods|MaxPods|Replicas|Age",
    );
    check(
        "scheduling.k8s.io",
        "PriorityClass",
        "Name|Value|Global-Default|Preemption Policy|Age",
    );
    check("node.k8s.io", "RuntimeClass", "Name|Handler|Age");
    check("rbac.authorization.k8s.io", "Role", "Name|Created At");
    check(
        "rbac.authorization.k8s.io",
        "ClusterRole",
        "Name|Created At",
    );
    check(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        "Name|Role|Age|Users|Groups|ServiceAccounts",
    );
    check(
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        "Name|Role|Age|Users|Groups|ServiceAccounts",
    );
    check(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        "Name|Created At",
    );
    check(
        "storage.k8s.io",
        "StorageClass",
        "Name|Provisioner|ReclaimPolicy|VolumeBindingMode|AllowVolumeExpansion|Age",
    );
    check(
        "networking.k8s.io",
        "Ingress",
        "Name|Class|Hosts|Address|Ports|Age",
    );
    check(
        "policy",
        "PodDisruptionBudget",
        "Name|Min Available|Max Unavailable|Allowed Disruptions|Age",
    );
    check("example.com", "Widget", "Name|Age");
    // A custom resource that reuses a built-in kind name is not printed as the built-in.
    check("example.com", "Pod", "Name|Age");
    assert_eq!(
        column_names("", "Namespace"),
        Some(vec!["Name", "Status", "Age"])
    );
    assert_eq!(column_names("example.com", "Widget"), None);
}

fn rows(t: &Value) -> &Vec<Value> {
    t["rows"].as_array().unwrap()
}

#[test]
fn table_shape_and_included_object() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-01-01T11:57:00Z"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "n1"},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}], "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]}});
    let t = table(
        "",
        "Pod",
        std::slice::from_ref(&pod),
        now(),
        IncludeObject::Metadata,
        None,
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"], json!({}));
    assert_eq!(
        t["columnDefinitions"][0],
        json!({"name": "Name", "type": "string", "format": "name", "description": t["columnDefinitions"][0]["description"], "priority": 0})
    );
    assert_eq!(t["columnDefinitions"][5]["priority"], 1);
    assert_eq!(
        rows(&t)[0]["cells"],
        json!(["web", "1/1", "Running", "0", "3m", "10.0.0.5", "n1", "<none>", "<none>"])
    );
    assert_eq!(
        rows(&t)[0]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": pod["metadata"]})
    );

    let t = table(
        "",
        "Pod",
        std::slice::from_ref(&pod),
        now(),
        IncludeObject::Object,
        None,
    );
    assert_eq!(rows(&t)[0]["object"], pod);
    let t = table(
        "",
        "Pod",
        std::slice::from_ref(&pod),
        now(),
        IncludeObject::None,
        None,
    );
    assert!(rows(&t)[0].get("object").is_none());
}

#[test]
fn completed_pods_carry_a_row_condition() {
    let pod = json!({"metadata": {"name": "done"}, "spec": {"containers": [{}]}, "status": {"phase": "Succeeded"}});
    let t = table("", "Pod", &[pod], now(), IncludeObject::None, None);
    assert_eq!(rows(&t)[0]["conditions"][0]["type"], "Completed");
    assert_eq!(rows(&t)[0]["conditions"][0]["reason"], "Succeeded");
}

/// The cells of the single row printed for `object`.
fn cells(group: &str, kind: &str, object: Value) -> Value {
    rows(&table(
        group,
        kind,
        &[object],
        now(),
        IncludeObject::None,
        None,
    ))[0]["cells"]
        .clone()
}

#[test]
fn cells_per_kind() {
    let created = "2024-01-01T10:00:00Z";
    assert_eq!(
        cells(
            "apps",
            "Deployment",
            json!({"metadata": {"name": "d", "creationTimestamp": created}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "d"}}, "template": {"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y"}]}}}, "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}})
        ),
        json!(["d", "2/3", 3, 2, "120m", "a,b", "x:1,y", "app=d"])
    );
    assert_eq!(
        cells(
            "apps",
            "DaemonSet",
            json!({"metadata": {"name": "ds"}, "spec": {"selector": {"matchExpressions": [{"key": "k", "operator": "In", "values": ["b", "a"]}]}, "template": {"spec": {"nodeSelector": {"os": "linux"}, "containers": []}}}, "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}})
        ),
        json!([
            "ds",
            2,
            2,
            1,
            2,
            1,
            "os=linux",
            "<unknown>",
            "",
            "",
            "k in (a,b)"
        ])
    );
    assert_eq!(
        cells(
            "batch",
            "CronJob",
            json!({"metadata": {"name": "cj", "creationTimestamp": created}, "spec": {"schedule": "*/5 * * * *", "suspend": false}, "status": {"active": [{}], "lastScheduleTime": "2024-01-01T11:55:00Z"}})
        ),
        json!([
            "cj",
            "*/5 * * * *",
            "<none>",
            "False",
            1,
            "5m",
            "120m",
            "",
            "",
            ""
        ])
    );
    assert_eq!(
        cells(
            "",
            "Service",
            json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}], "selector": {"app": "web"}}})
        ),
        json!([
            "s",
            "NodePort",
            "10.96.0.10",
            "<none>",
            "80:30080/TCP",
            "<unknown>",
            "app=web"
        ])
    );
    assert_eq!(
        cells(
            "",
            "Service",
            json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}})
        ),
        json!([
            "h",
            "ClusterIP",
            "None",
            "<none>",
            "<none>",
            "<unknown>",
            "<none>"
        ])
    );
    assert_eq!(
        cells(
            "",
            "Node",
            json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}}, "spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.32.0"}, "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}]}})
        ),
        json!([
            "n1",
            "Ready,SchedulingDisabled",
            "control-plane",
            "<unknown>",
            "v1.32.0",
            "192.168.1.2",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ])
    );
    assert_eq!(
        cells(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": ""}})
        ),
        json!(["c", 2, "<unknown>"])
    );
    assert_eq!(
        cells(
            "",
            "Secret",
            json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})
        ),
        json!(["s", "kubernetes.io/tls", 2, "<unknown>"])
    );
    assert_eq!(
        cells(
            "",
            "Namespace",
            json!({"metadata": {"name": "ns"}, "status": {"phase": "Terminating"}})
        ),
        json!(["ns", "Terminating", "<unknown>"])
    );
    assert_eq!(
        cells(
            "coordination.k8s.io",
            "Lease",
            json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "node-1"}})
        ),
        json!(["l", "node-1", "<unknown>"])
    );
    assert_eq!(
        cells(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "namespace": "ns", "name": "sa"}, {"kind": "User", "name": "bob"}]})
        ),
        json!([
            "rb",
            "ClusterRole/view",
            "<unknown>",
            "alice, bob",
            "",
            "ns/sa"
        ])
    );
    assert_eq!(
        cells(
            "rbac.authorization.k8s.io",
            "ClusterRole",
            json!({"metadata": {"name": "view", "creationTimestamp": "2024-01-01T10:00:00.000+02:00"}})
        ),
        json!(["view", "2024-01-01T08:00:00Z"])
    );
    assert_eq!(
        cells(
            "",
            "PersistentVolumeClaim",
            json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv1", "storageClassName": "local"}, "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}})
        ),
        json!([
            "data",
            "Bound",
            "pv1",
            "1Gi",
            "RWO",
            "local",
            "<unset>",
            "<unknown>",
            "<unset>"
        ])
    );
    assert_eq!(
        cells(
            "",
            "PersistentVolume",
            json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "ns", "name": "data"}, "volumeMode": "Filesystem"}, "status": {"phase": "Bound"}})
        ),
        json!([
            "pv1",
            "1Gi",
            "RWO",
            "Retain",
            "Bound",
            "ns/data",
            "<unset>",
            "<unset>",
            "",
            "<unknown>",
            "Filesystem"
        ])
    );
    assert_eq!(
        cells(
            "scheduling.k8s.io",
            "PriorityClass",
            json!({"metadata": {"name": "high"}, "value": 1000, "globalDefault": true})
        ),
        json!(["high", 1000, true, "<unset>", "<unknown>"])
    );
    assert_eq!(
        cells(
            "node.k8s.io",
            "RuntimeClass",
            json!({"metadata": {"name": "gvisor"}, "handler": "runsc"})
        ),
        json!(["gvisor", "runsc", "<unknown>"])
    );
    assert_eq!(
        cells(
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 80}, "status": {"currentReplicas": 2}})
        ),
        json!([
            "h",
            "Deployment/web",
            "cpu: <unknown>/80%",
            "1",
            5,
            2,
            "<unknown>"
        ])
    );
    assert_eq!(
        cells(
            "storage.k8s.io",
            "StorageClass",
            json!({"metadata": {"name": "local", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "drover.dev/local"})
        ),
        json!([
            "local (default)",
            "drover.dev/local",
            "Delete",
            "Immediate",
            false,
            "<unknown>"
        ])
    );
    assert_eq!(
        cells(
            "example.com",
            "Widget",
            json!({"metadata": {"name": "w", "creationTimestamp": "2024-01-01T11:59:58Z"}})
        ),
        json!(["w", "2s"])
    );
}

fn column(name: &str, column_type: &str, json_path: &str) -> CustomColumn {
    CustomColumn {
        name: name.into(),
        column_type: column_type.into(),
        json_path: json_path.into(),
        ..CustomColumn::default()
    }
}

#[test]
fn custom_resource_columns() {
    let widget = json!({"metadata": {"name": "w1", "creationTimestamp": "2024-01-01T11:00:00Z"}, "spec": {"size": 3}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let columns = [
        column("Size", "integer", ".spec.size"),
        column(
            "Ready",
            "string",
            r#".status.conditions[?(@.type=="Ready")].status"#,
        ),
        column("Missing", "string", ".spec.nothing"),
        column("Age", "date", ".metadata.creationTimestamp"),
    ];
    let t = table(
        "example.com",
        "Widget",
        std::slice::from_ref(&widget),
        now(),
        IncludeObject::None,
        Some(&columns),
    );
    let names: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Name", "Size", "Ready", "Missing", "Age"]);
    assert_eq!(
        t["columnDefinitions"][1]["description"],
        "Custom resource definition column (in JSONPath format): .spec.size"
    );
    assert_eq!(rows(&t)[0]["cells"], json!(["w1", 3, "True", null, "60m"]));

    // Without printer columns a custom resource gets Name and a date-typed Age.
    let t = table(
        "example.com",
        "Widget",
        &[widget],
        now(),
        IncludeObject::None,
        Some(&[]),
    );
    assert_eq!(t["columnDefinitions"][1]["name"], "Age");
    assert_eq!(t["columnDefinitions"][1]["type"], "date");
    assert_eq!(rows(&t)[0]["cells"], json!(["w1", "60m"]));
}

#[test]
fn custom_columns_from_crd_json() {
    let columns = CustomColumn::list_from_json(Some(&json!([
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "priority": 1, "description": "phase"},
        {"name": "NoPath", "type": "string"}
    ])));
    assert_eq!(
        columns,
        vec![CustomColumn {
            name: "Phase".into(),
            column_type: "string".into(),
            format: String::new(),
            description: "phase".into(),
            priority: 1,
            json_path: ".status.phase".into()
        }]
    );
    assert_eq!(IncludeObject::parse("Object"), Some(IncludeObject::Object));
    assert_eq!(IncludeObject::parse(""), Some(IncludeObject::Metadata));
    assert_eq!(IncludeObject::parse("All"), None);
}
