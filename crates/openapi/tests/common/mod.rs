//! The resources the tests publish: roughly what drover's API server serves.

use openapi::ResourceInfo;

/// (group, version, kind, plural, namespaced, subresources)
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
);

const RESOURCES: &[Row] = &[
    ("", "v1", "Binding", "bindings", true, &[]),
    ("", "v1", "ConfigMap", "configmaps", true, &[]),
    ("", "v1", "Endpoints", "endpoints", true, &[]),
    ("", "v1", "Event", "events", true, &[]),
    ("", "v1", "LimitRange", "limitranges", true, &[]),
    (
        "",
        "v1",
        "Namespace",
        "namespaces",
        false,
        &["status", "finalize"],
    ),
    ("", "v1", "Node", "nodes", false, &["status", "proxy"]),
    (
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        false,
        &["status"],
    ),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["status"],
    ),
    (
        "",
        "v1",
        "Pod",
        "pods",
        true,
        &[
            "status",
            "binding",
            "eviction",
            "log",
            "exec",
            "attach",
            "portforward",
            "ephemeralcontainers",
            "resize",
        ],
    ),
    ("", "v1", "PodTemplate", "podtemplates", true, &[]),
    (
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        true,
        &["status", "scale"],
    ),
    (
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        true,
        &["status"],
    ),
    ("", "v1", "Secret", "secrets", true, &[]),
    ("", "v1", "Service", "services", true, &["status", "proxy"]),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["token"],
    ),
    (
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
        &[],
    ),
    ("apps", "v1", "DaemonSet", "daemonsets", true, &["status"]),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &["status", "scale"],
    ),
    (
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        &["status", "scale"],
    ),
    (
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        &["status", "scale"],
    ),
    ("batch", "v1", "CronJob", "cronjobs", true, &["status"]),
    ("batch", "v1", "Job", "jobs", true, &["status"]),
    (
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
        &["status"],
    ),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
        &["status"],
    ),
    ("coordination.k8s.io", "v1", "Lease", "leases", true, &[]),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        &[],
    ),
    ("events.k8s.io", "v1", "Event", "events", true, &[]),
    (
        "node.k8s.io",
        "v1",
        "RuntimeClass",
        "runtimeclasses",
        false,
        &[],
    ),
    (
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        &[],
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["status"],
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["status"],
    ),
    (
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
        &[],
    ),
    (
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        &["status"],
    ),
    (
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        false,
        &[],
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        &[],
    ),
];

pub fn resources() -> Vec<ResourceInfo> {
    RESOURCES
        .iter()
        .map(
            |(group, version, kind, plural, namespaced, subresources)| ResourceInfo {
                group: group.to_string(),
                version: version.to_string(),
                kind: kind.to_string(),
                plural: plural.to_string(),
                namespaced: *namespaced,
                subresources: subresources.iter().map(|s| s.to_string()).collect(),
                verbs: if *kind == "Binding" {
                    vec!["create".into()]
                } else {
                    vec![]
                },
            },
        )
        .collect()
}

/// Every group-version with its resources, in first-seen order.
pub fn group_versions() -> Vec<((String, String), Vec<ResourceInfo>)> {
    let mut out: Vec<((String, String), Vec<ResourceInfo>)> = Vec::new();
    for resource in resources() {
        let key = (resource.group.clone(), resource.version.clone());
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(resource),
            None => out.push((key, vec![resource])),
        }
    }
    out
}
