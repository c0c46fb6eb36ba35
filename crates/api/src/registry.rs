//! The resource registry: every kind the API server serves, built-in or from a
//! CustomResourceDefinition, with the names, scope, verbs and subresources that
//! discovery advertises and the router resolves.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// One resource (a plural name in one group-version) as the API serves it.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceType {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub scope: Scope,
    pub has_status: bool,
    /// For the `scale` subresource: JSON paths (dotted) of spec replicas,
    /// status replicas and the label selector.
    pub scale: Option<ScaleSpec>,
    /// The group-version whose objects are kept in the store for this
    /// resource (several versions of one resource share one storage version).
    pub storage_version: String,
    /// Where objects live in the store: `/registry/<group>/<plural>/`.
    pub storage_prefix: String,
    /// Set for resources defined by a CustomResourceDefinition.
    pub custom: Option<Arc<CustomResource>>,
    /// A review (access or identity): only `create`, answered, never stored.
    pub create_only: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScaleSpec {
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

/// What a CRD version contributes beyond names: its schema and printer columns.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomResource {
    pub crd_name: String,
    pub schema: Option<Value>,
    pub printer_columns: Vec<Value>,
    pub served: bool,
}

impl ResourceType {
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    pub fn api_version(&self) -> String {
        group_version(&self.group, &self.version)
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced() => format!("{}{}/{}", self.storage_prefix, ns, name),
            _ => format!("{}{}", self.storage_prefix, name),
        }
    }

    /// The store prefix of a list: all namespaces, or one.
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced() => format!("{}{}/", self.storage_prefix, ns),
            _ => self.storage_prefix.clone(),
        }
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        if self.create_only {
            return vec!["create"];
        }
        if self.group == METRICS_GROUP {
            return vec!["get", "list"];
        }
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

/// The resource metrics API: served from the node agents' samples, never
/// stored (see apiserver's `nodes` module).
pub const METRICS_GROUP: &str = "metrics.k8s.io";

pub fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Splits an apiVersion into (group, version).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

struct Builtin {
    group: &'static str,
    versions: &'static [&'static str],
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    scope: Scope,
    status: bool,
    scale: bool,
    categories: &'static [&'static str],
}

#[allow(clippy::too_many_arguments)] // a table row, read positionally
const fn b(
    group: &'static str,
    versions: &'static [&'static str],
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    scope: Scope,
    status: bool,
    scale: bool,
    categories: &'static [&'static str],
) -> Builtin {
    Builtin {
        group,
        versions,
        kind,
        plural,
        short,
        scope,
        status,
        scale,
        categories,
    }
}

use Scope::{Cluster, Namespaced};
const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

const BUILTINS: &[Builtin] = &[
    b(
        "",
        &["v1"],
        "Namespace",
        "namespaces",
        &["ns"],
        Cluster,
        true,
        false,
        NONE,
    ),
    b(
        "",
        &["v1"],
        "ConfigMap",
        "configmaps",
        &["cm"],
        Namespaced,
        false,
        false,
        NONE,
    ),
    b(
        "",
        &["v1"],
        "Secret",
        "secrets",
        NONE,
        Namespaced,
        false,
        false,
        NONE,
    ),
    b(
        "",
        &["v1"],
        "ServiceAccount",
        "serviceaccounts",
        &["sa"],
        Namespaced,
        false,
        false,
        NONE,
    ),
    b(
        "",
        &["v1"],
        "Event",
        "events",
        &["ev"],
        Namespaced,
        false,
        false,
        NONE,
    ),
    b(
        "",
        &["v1"],
        "Node",
        "nodes",
        &["no"],
        Cluster,
        true,
        false,
        NONE,
    ),
    b(
        "",
        &["v1"],
        "Pod",
        "pods",
        &["po"],
        Namespaced,
        true,
        false,
        ALL,
    ),
    b(
        "",
        &["v1"],
        "PodTemplate",
        "podtemplates",
        NONE,
        Namespaced,
        false,
        false,
        NONE,
    ),
    b(
        "",
        &["v1"],
        "ReplicationController",
        "replicationcontrollers",
        &["rc"],
        Namespaced,
        true,
        true,
        ALL,
    ),
    b(
        "",
        &["v1"],
        "Service",
        "services",
        &["svc"],
        Namespaced,
        true,
        false,
        ALL,
    ),
    b(
        "",
        &["v1"],
        "Endpoints",
        "endpoints",
        &["ep"],
        Namespaced,
        false,
        false,
        NONE,
    ),
    b(
        "",
        &["v1"],
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        &["pvc"],
        Namespaced,
        true,
        false,
        NONE,
    ),
    b(
        "",
        &["v1"],
        "PersistentVolume",
        "persistentvolumes",
        &["pv"],
        Cluster,
        true,
        false,
        NONE,
    ),
    b(
        "",
        &["v1"],
        "LimitRange",
        "limitranges",
        &["limits"],
        Namespaced,
        false,
        false,
        NONE,
    ),
    b(
        "",
        &["v1"],
        "ResourceQuota",
        "resourcequotas",
        &["quota"],
        Namespaced,
        true,
        false,
        NONE,
    ),
    b(
        "apps",
        &["v1"],
        "Deployment",
        "deployments",
        &["deploy"],
        Namespaced,
        true,
        true,
        ALL,
    ),
    b(
        "apps",
        &["v1"],
        "ReplicaSet",
        "replicasets",
        &["rs"],
        Namespaced,
        true,
        true,
        ALL,
    ),
    b(
        "apps",
        &["v1"],
        "StatefulSet",
        "statefulsets",
        &["sts"],
        Namespaced,
        true,
        true,
        ALL,
    ),
    b(
        "apps",
        &["v1"],
        "DaemonSet",
        "daemonsets",
        &["ds"],
        Namespaced,
        true,
        false,
        ALL,
    ),
    b(
        "apps",
        &["v1"],
        "ControllerRevision",
        "controllerrevisions",
        NONE,
        Namespaced,
        false,
        false,
        NONE,
    ),
    b(
        "batch",
        &["v1"],
        "Job",
        "jobs",
        NONE,
        Namespaced,
        true,
        false,
        ALL,
    ),
    b(
        "batch",
        &["v1"],
        "CronJob",
        "cronjobs",
        &["cj"],
        Namespaced,
        true,
        false,
        ALL,
    ),
    b(
        "autoscaling",
        &["v2", "v1"],
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        &["hpa"],
        Namespaced,
        true,
        false,
        ALL,
    ),
    b(
        "coordination.k8s.io",
        &["v1"],
        "Lease",
        "leases",
        NONE,
        Namespaced,
        false,
        false,
        NONE,
    ),
    b(
        "discovery.k8s.io",
        &["v1"],
        "EndpointSlice",
        "endpointslices",
        NONE,
        Namespaced,
        false,
        false,
        NONE,
    ),
    b(
        "events.k8s.io",
        &["v1"],
        "Event",
        "events",
        &["ev"],
        Namespaced,
        false,
        false,
        NONE,
    ),
    b(
        "node.k8s.io",
        &["v1"],
        "RuntimeClass",
        "runtimeclasses",
        NONE,
        Cluster,
        false,
        false,
        NONE,
    ),
    b(
        "scheduling.k8s.io",
        &["v1"],
        "PriorityClass",
        "priorityclasses",
        &["pc"],
        Cluster,
        false,
        false,
        NONE,
    ),
    b(
        "storage.k8s.io",
        &["v1"],
        "StorageClass",
        "storageclasses",
        &["sc"],
        Cluster,
        false,
        false,
        NONE,
    ),
    b(
        "policy",
        &["v1"],
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        &["pdb"],
        Namespaced,
        true,
        false,
        NONE,
    ),
    b(
        "networking.k8s.io",
        &["v1"],
        "Ingress",
        "ingresses",
        &["ing"],
        Namespaced,
        true,
        false,
        NONE,
    ),
    b(
        "networking.k8s.io",
        &["v1"],
        "NetworkPolicy",
        "networkpolicies",
        &["netpol"],
        Namespaced,
        false,
        false,
        NONE,
    ),
    // Service ClusterIP allocations (see crates/apiserver/src/services.rs).
    b(
        "networking.k8s.io",
        &["v1"],
        "IPAddress",
        "ipaddresses",
        &["ip"],
        Cluster,
        false,
        false,
        NONE,
    ),
    b(
        "networking.k8s.io",
        &["v1"],
        "IngressClass",
        "ingressclasses",
        NONE,
        Cluster,
        false,
        false,
        NONE,
    ),
    b(
        "rbac.authorization.k8s.io",
        &["v1"],
        "Role",
        "roles",
        NONE,
        Namespaced,
        false,
        false,
        NONE,
    ),
    b(
        "rbac.authorization.k8s.io",
        &["v1"],
        "ClusterRole",
        "clusterroles",
        NONE,
        Cluster,
        false,
        false,
        NONE,
    ),
    b(
        "rbac.authorization.k8s.io",
        &["v1"],
        "RoleBinding",
        "rolebindings",
        NONE,
        Namespaced,
        false,
        false,
        NONE,
    ),
    b(
        "rbac.authorization.k8s.io",
        &["v1"],
        "ClusterRoleBinding",
        "clusterrolebindings",
        NONE,
        Cluster,
        false,
        false,
        NONE,
    ),
    b(
        "apiextensions.k8s.io",
        &["v1"],
        "CustomResourceDefinition",
        "customresourcedefinitions",
        &["crd", "crds"],
        Cluster,
        true,
        false,
        NONE,
    ),
];

/// The group order discovery advertises (core first, then like kube-apiserver).
pub const GROUP_ORDER: &[&str] = &[
    "",
    "apps",
    "events.k8s.io",
    "autoscaling",
    "batch",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
];

fn builtin_types() -> Vec<ResourceType> {
    let mut out = Vec::new();
    for bt in BUILTINS {
        // Storage in the first (preferred) version. events.k8s.io/v1 Events are
        // core/v1 Events in another shape: one storage, converted on the way
        // in and out (see `conversion`), as kube-apiserver does.
        let storage_version = if bt.group == "events.k8s.io" {
            "v1".to_string()
        } else {
            group_version(bt.group, bt.versions[0])
        };
        let group_dir = if bt.group.is_empty() {
            "core"
        } else {
            bt.group
        };
        let storage_group_dir = if bt.group == "events.k8s.io" {
            "core"
        } else {
            group_dir
        };
        for v in bt.versions {
            out.push(ResourceType {
                group: bt.group.to_string(),
                version: v.to_string(),
                kind: bt.kind.to_string(),
                plural: bt.plural.to_string(),
                singular: bt.kind.to_lowercase(),
                short_names: bt.short.iter().map(|s| s.to_string()).collect(),
                categories: bt.categories.iter().map(|s| s.to_string()).collect(),
                scope: bt.scope,
                has_status: bt.status,
                scale: bt.scale.then(|| ScaleSpec {
                    spec_replicas_path: ".spec.replicas".into(),
                    status_replicas_path: ".status.replicas".into(),
                    label_selector_path: Some(".status.selector".into()),
                }),
                storage_version: storage_version.clone(),
                storage_prefix: format!("/registry/{}/{}/", storage_group_dir, bt.plural),
                custom: None,
                create_only: false,
            });
        }
    }
    // Reviews kubectl uses (`auth can-i`, `auth whoami`) and TokenReview:
    // created, answered, never stored.
    for (group, kind, plural) in [
        (
            "authorization.k8s.io",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
        ),
        (
            "authorization.k8s.io",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
        ),
        (
            "authentication.k8s.io",
            "SelfSubjectReview",
            "selfsubjectreviews",
        ),
        ("authentication.k8s.io", "TokenReview", "tokenreviews"),
    ] {
        out.push(ResourceType {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            short_names: Vec::new(),
            categories: Vec::new(),
            scope: Scope::Cluster,
            has_status: false,
            scale: None,
            storage_version: format!("{group}/v1"),
            storage_prefix: format!("/registry/{group}/{plural}/"),
            custom: None,
            create_only: true,
        });
    }
    for (kind, plural, scope) in [
        ("NodeMetrics", "nodes", Scope::Cluster),
        ("PodMetrics", "pods", Scope::Namespaced),
    ] {
        out.push(ResourceType {
            group: METRICS_GROUP.into(),
            version: "v1beta1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            short_names: Vec::new(),
            categories: Vec::new(),
            scope,
            has_status: false,
            scale: None,
            storage_version: format!("{METRICS_GROUP}/v1beta1"),
            storage_prefix: format!("/registry/{METRICS_GROUP}/{plural}/"),
            custom: None,
            create_only: false,
        });
    }
    out
}

/// All resources being served. Cheap to clone (the API server swaps in a new
/// one when a CRD changes).
#[derive(Clone, Debug)]
pub struct Registry {
    types: Vec<Arc<ResourceType>>,
    /// (group, version, plural) → index
    by_plural: BTreeMap<(String, String, String), usize>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    pub fn builtin() -> Self {
        Self::from_types(builtin_types())
    }

    pub fn from_types(types: Vec<ResourceType>) -> Self {
        let types: Vec<Arc<ResourceType>> = types.into_iter().map(Arc::new).collect();
        let by_plural = types
            .iter()
            .enumerate()
            .map(|(i, t)| ((t.group.clone(), t.version.clone(), t.plural.clone()), i))
            .collect();
        Registry { types, by_plural }
    }

    /// The built-ins plus the given custom resources (replacing none of the built-ins).
    pub fn with_custom(custom: Vec<ResourceType>) -> Self {
        let mut types = builtin_types();
        for c in custom {
            if !types
                .iter()
                .any(|t| t.group == c.group && t.version == c.version && t.plural == c.plural)
            {
                types.push(c);
            }
        }
        Self::from_types(types)
    }

    pub fn all(&self) -> &[Arc<ResourceType>] {
        &self.types
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.by_plural
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .map(|&i| self.types[i].clone())
    }

    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
            .cloned()
    }

    /// Served group-versions, groups in discovery order, preferred version first.
    pub fn group_versions(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.types {
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, vs)) => {
                    if !vs.contains(&t.version) {
                        vs.push(t.version.clone())
                    }
                }
                None => out.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        out.sort_by_key(|(g, _)| {
            GROUP_ORDER
                .iter()
                .position(|o| o == g)
                .unwrap_or(GROUP_ORDER.len())
        });
        out
    }

    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ResourceType>> + 'a {
        self.types
            .iter()
            .filter(move |t| t.group == group && t.version == version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefixes() {
        let r = Registry::builtin();
        let pods = r.get("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/core/pods/default/web"
        );
        assert_eq!(pods.list_prefix(None), "/registry/core/pods/");
        assert_eq!(
            pods.list_prefix(Some("kube-system")),
            "/registry/core/pods/kube-system/"
        );
        let nodes = r.get("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(None, "n1"), "/registry/core/nodes/n1");
        let hpa1 = r
            .get("autoscaling", "v1", "horizontalpodautoscalers")
            .unwrap();
        assert_eq!(hpa1.storage_version, "autoscaling/v2");
        let ev = r.get("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(ev.storage_prefix, "/registry/core/events/");
    }

    #[test]
    fn group_versions_core_first_preferred_first() {
        let gvs = Registry::builtin().group_versions();
        assert_eq!(gvs[0], ("".to_string(), vec!["v1".to_string()]));
        let autoscaling = gvs.iter().find(|(g, _)| g == "autoscaling").unwrap();
        assert_eq!(autoscaling.1, vec!["v2".to_string(), "v1".to_string()]);
    }
}
