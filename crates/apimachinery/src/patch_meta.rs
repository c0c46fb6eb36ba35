//! Patch metadata of the Kubernetes built-in types (`patchStrategy`, `patchMergeKey`, `listType`, `listMapKeys`) as a small static type graph.
//!
//! Only fields that carry a tag, and the struct fields on the way to them, are
//! listed: a field that is not listed behaves like an untagged field in
//! Kubernetes (strategic merge patch replaces it, server-side apply treats a
//! list as atomic and an object as a granular map). The tags mirror the
//! upstream `types.go` comments for the API versions kubectl 1.32 uses.

/// How a strategic merge patch combines a field (the `patchStrategy` tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchStrategy {
    /// No tag: the patch value replaces the live value.
    Replace,
    /// `merge`: lists are merged by `patchMergeKey` (or unioned for primitives).
    Merge,
    /// `retainKeys`: honour a `$retainKeys` directive, otherwise replace.
    RetainKeys,
    /// `merge,retainKeys`: both of the above.
    MergeRetainKeys,
}

impl PatchStrategy {
    pub fn merges(self) -> bool {
        matches!(self, PatchStrategy::Merge | PatchStrategy::MergeRetainKeys)
    }
    pub fn retains_keys(self) -> bool {
        matches!(
            self,
            PatchStrategy::RetainKeys | PatchStrategy::MergeRetainKeys
        )
    }
}

/// The `x-kubernetes-list-type` of a list, which server-side apply uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    Map,
}

/// The patch metadata of one field of a struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldMeta {
    /// The struct type of the field, or of the list's elements; `None` for
    /// scalars, maps of scalars and structs without tagged descendants.
    pub ty: Option<&'static TypeMeta>,
    pub strategy: PatchStrategy,
    /// `patchMergeKey`, for lists with the merge strategy whose elements are objects.
    pub merge_key: Option<&'static str>,
    /// `None` for fields that are not lists.
    pub list_type: Option<ListType>,
    /// `x-kubernetes-list-map-keys`, for `ListType::Map`.
    pub map_keys: &'static [&'static str],
}

/// A struct type: its name (for error messages) and its tagged fields.
#[derive(Debug, PartialEq, Eq)]
pub struct TypeMeta {
    pub name: &'static str,
    pub fields: &'static [(&'static str, FieldMeta)],
    /// `+structType=atomic`: server-side apply owns it as a whole.
    pub atomic: bool,
}

impl TypeMeta {
    /// The metadata of the named JSON field, if the field carries any.
    pub fn field(&'static self, name: &str) -> Option<&'static FieldMeta> {
        self.fields
            .iter()
            .find(|(field, _)| *field == name)
            .map(|(_, meta)| meta)
    }
}

/// The metadata of `name` in `ty`, with the untagged default when the type or
/// field is unknown, so callers can walk without special cases.
pub fn field_meta(ty: Option<&'static TypeMeta>, name: &str) -> FieldMeta {
    ty.and_then(|t| t.field(name)).copied().unwrap_or(UNTAGGED)
}

/// The type metadata of a top-level kind; `group` is `""` for the core group.
pub fn root_type(group: &str, kind: &str) -> Option<&'static TypeMeta> {
    let ty: &'static TypeMeta = match (group, kind) {
        ("", "Pod") => &POD,
        ("", "PodTemplate") => &POD_TEMPLATE,
        ("", "Service") => &SERVICE,
        ("", "Endpoints") => &ENDPOINTS,
        ("", "ConfigMap") | ("", "Secret") => &PLAIN_OBJECT,
        ("", "Namespace") => &NAMESPACE,
        ("", "Node") => &NODE,
        ("", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("", "Event") | ("events.k8s.io", "Event") => &PLAIN_OBJECT,
        ("", "PersistentVolume") => &PERSISTENT_VOLUME,
        ("", "PersistentVolumeClaim") => &PERSISTENT_VOLUME_CLAIM,
        ("apps", "Deployment") => &DEPLOYMENT,
        ("apps", "ReplicaSet") => &REPLICA_SET,
        ("apps", "StatefulSet") => &STATEFUL_SET,
        ("apps", "DaemonSet") => &DAEMON_SET,
        ("batch", "Job") => &JOB,
        ("batch", "CronJob") => &CRON_JOB,
        ("discovery.k8s.io", "EndpointSlice") => &ENDPOINT_SLICE,
        ("autoscaling", "HorizontalPodAutoscaler") => &HORIZONTAL_POD_AUTOSCALER,
        ("rbac.authorization.k8s.io", "Role") => &ROLE,
        ("rbac.authorization.k8s.io", "ClusterRole") => &CLUSTER_ROLE,
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => &ROLE_BINDING,
        _ => return None,
    };
    Some(ty)
}

/// The type metadata for an `apiVersion` (`apps/v1`, `v1`) and kind.
pub fn root_type_for_api_version(api_version: &str, kind: &str) -> Option<&'static TypeMeta> {
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    root_type(group, kind)
}

// Constructors keep the tables below one line per field.

const UNTAGGED: FieldMeta = FieldMeta {
    ty: None,
    strategy: PatchStrategy::Replace,
    merge_key: None,
    list_type: None,
    map_keys: &[],
};

/// A struct-typed field without tags of its own.
const fn object(ty: &'static TypeMeta) -> FieldMeta {
    FieldMeta {
        ty: Some(ty),
        ..UNTAGGED
    }
}

/// A struct-typed field with `patchStrategy=retainKeys`.
const fn retain_keys(ty: &'static TypeMeta) -> FieldMeta {
    FieldMeta {
        ty: Some(ty),
        strategy: PatchStrategy::RetainKeys,
        ..UNTAGGED
    }
}

/// `+listType=atomic` without a patch strategy.
const fn atomic(ty: Option<&'static TypeMeta>) -> FieldMeta {
    FieldMeta {
        ty,
        list_type: Some(ListType::Atomic),
        ..UNTAGGED
    }
}

/// `patchStrategy=merge` on a list of primitives, `+listType=set`.
const fn merge_set() -> FieldMeta {
    FieldMeta {
        strategy: PatchStrategy::Merge,
        list_type: Some(ListType::Set),
        ..UNTAGGED
    }
}

/// `+listType=set` without a patch strategy.
const fn set() -> FieldMeta {
    FieldMeta {
        list_type: Some(ListType::Set),
        ..UNTAGGED
    }
}

/// `patchStrategy=merge,patchMergeKey=key` with `+listType=map,+listMapKey=keys...`.
const fn merge_map(
    ty: Option<&'static TypeMeta>,
    key: &'static str,
    keys: &'static [&'static str],
) -> FieldMeta {
    FieldMeta {
        ty,
        strategy: PatchStrategy::Merge,
        merge_key: Some(key),
        list_type: Some(ListType::Map),
        map_keys: keys,
    }
}

/// `patchStrategy=merge,patchMergeKey=key` with `+listType=atomic` (strategic
/// merge patch merges, server-side apply replaces).
const fn merge_atomic(ty: Option<&'static TypeMeta>, key: &'static str) -> FieldMeta {
    FieldMeta {
        ty,
        strategy: PatchStrategy::Merge,
        merge_key: Some(key),
        list_type: Some(ListType::Atomic),
        map_keys: &[],
    }
}

/// `+listType=map,+listMapKey=keys...` without a patch strategy.
const fn list_map(ty: Option<&'static TypeMeta>, keys: &'static [&'static str]) -> FieldMeta {
    FieldMeta {
        ty,
        list_type: Some(ListType::Map),
        map_keys: keys,
        ..UNTAGGED
    }
}

const fn struct_type(name: &'static str, fields: &'static [(&'static str, FieldMeta)]) -> TypeMeta {
    TypeMeta {
        name,
        fields,
        atomic: false,
    }
}

const fn atomic_struct(name: &'static str) -> TypeMeta {
    TypeMeta {
        name,
        fields: &[],
        atomic: true,
    }
}

const NAME: &[&str] = &["name"];
const TYPE: &[&str] = &["type"];
const IP: &[&str] = &["ip"];

/// Condition lists of status types: `patchStrategy=merge,patchMergeKey=type`, `listType=map` on `type`.
const CONDITIONS: FieldMeta = merge_map(None, "type", TYPE);

// ---- meta/v1 ----

pub static OBJECT_META: TypeMeta = struct_type(
    "ObjectMeta",
    &[
        ("finalizers", merge_set()),
        (
            "ownerReferences",
            merge_map(Some(&OWNER_REFERENCE), "uid", &["uid"]),
        ),
        ("managedFields", atomic(None)),
    ],
);
static OWNER_REFERENCE: TypeMeta = struct_type("OwnerReference", &[]);
static LABEL_SELECTOR: TypeMeta = TypeMeta {
    name: "LabelSelector",
    fields: &[(
        "matchExpressions",
        atomic(Some(&LABEL_SELECTOR_REQUIREMENT)),
    )],
    atomic: true,
};
static LABEL_SELECTOR_REQUIREMENT: TypeMeta =
    struct_type("LabelSelectorRequirement", &[("values", atomic(None))]);

/// Kinds whose only tagged field is `metadata` (ConfigMap, Secret, Event).
static PLAIN_OBJECT: TypeMeta = struct_type("Object", &[("metadata", object(&OBJECT_META))]);

// ---- core/v1: pods ----

static POD: TypeMeta = struct_type(
    "Pod",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&POD_SPEC)),
        ("status", object(&POD_STATUS)),
    ],
);
static POD_TEMPLATE: TypeMeta = struct_type(
    "PodTemplate",
    &[
        ("metadata", object(&OBJECT_META)),
        ("template", object(&POD_TEMPLATE_SPEC)),
    ],
);
pub static POD_TEMPLATE_SPEC: TypeMeta = struct_type(
    "PodTemplateSpec",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&POD_SPEC)),
    ],
);

pub static POD_SPEC: TypeMeta = struct_type(
    "PodSpec",
    &[
        (
            "volumes",
            FieldMeta {
                ty: Some(&VOLUME),
                strategy: PatchStrategy::MergeRetainKeys,
                merge_key: Some("name"),
                list_type: Some(ListType::Map),
                map_keys: NAME,
            },
        ),
        ("initContainers", merge_map(Some(&CONTAINER), "name", NAME)),
        ("containers", merge_map(Some(&CONTAINER), "name", NAME)),
        (
            "ephemeralContainers",
            merge_map(Some(&CONTAINER), "name", NAME),
        ),
        (
            "imagePullSecrets",
            merge_map(Some(&LOCAL_OBJECT_REFERENCE), "name", NAME),
        ),
        ("hostAliases", merge_map(Some(&HOST_ALIAS), "ip", IP)),
        ("tolerations", atomic(None)),
        ("readinessGates", atomic(None)),
        (
            "topologySpreadConstraints",
            merge_map(
                Some(&TOPOLOGY_SPREAD_CONSTRAINT),
                "topologyKey",
                &["topologyKey", "whenUnsatisfiable"],
            ),
        ),
        (
            "resourceClaims",
            FieldMeta {
                ty: None,
                strategy: PatchStrategy::MergeRetainKeys,
                merge_key: Some("name"),
                list_type: Some(ListType::Map),
                map_keys: NAME,
            },
        ),
        ("schedulingGates", merge_map(None, "name", NAME)),
        ("securityContext", object(&POD_SECURITY_CONTEXT)),
        ("affinity", object(&AFFINITY)),
        ("dnsConfig", object(&POD_DNS_CONFIG)),
    ],
);
static LOCAL_OBJECT_REFERENCE: TypeMeta = atomic_struct("LocalObjectReference");
static HOST_ALIAS: TypeMeta = struct_type("HostAlias", &[("hostnames", atomic(None))]);
static TOPOLOGY_SPREAD_CONSTRAINT: TypeMeta = struct_type(
    "TopologySpreadConstraint",
    &[
        ("labelSelector", object(&LABEL_SELECTOR)),
        ("matchLabelKeys", atomic(None)),
    ],
);
static POD_SECURITY_CONTEXT: TypeMeta = struct_type(
    "PodSecurityContext",
    &[
        ("supplementalGroups", atomic(None)),
        ("sysctls", atomic(None)),
    ],
);
static POD_DNS_CONFIG: TypeMeta = struct_type(
    "PodDNSConfig",
    &[
        ("nameservers", atomic(None)),
        ("searches", atomic(None)),
        ("options", atomic(None)),
    ],
);
static AFFINITY: TypeMeta = struct_type(
    "Affinity",
    &[
        ("nodeAffinity", object(&NODE_AFFINITY)),
        ("podAffinity", object(&POD_AFFINITY)),
        ("podAntiAffinity", object(&POD_AFFINITY)),
    ],
);
static NODE_AFFINITY: TypeMeta = struct_type(
    "NodeAffinity",
    &[
        (
            "requiredDuringSchedulingIgnoredDuringExecution",
            object(&NODE_SELECTOR),
        ),
        (
            "preferredDuringSchedulingIgnoredDuringExecution",
            atomic(None),
        ),
    ],
);
static NODE_SELECTOR: TypeMeta = TypeMeta {
    name: "NodeSelector",
    fields: &[("nodeSelectorTerms", atomic(None))],
    atomic: true,
};
static POD_AFFINITY: TypeMeta = struct_type(
    "PodAffinity",
    &[
        (
            "requiredDuringSchedulingIgnoredDuringExecution",
            atomic(None),
        ),
        (
            "preferredDuringSchedulingIgnoredDuringExecution",
            atomic(None),
        ),
    ],
);

pub static CONTAINER: TypeMeta = struct_type(
    "Container",
    &[
        ("command", atomic(None)),
        ("args", atomic(None)),
        (
            "ports",
            merge_map(None, "containerPort", &["containerPort", "protocol"]),
        ),
        ("envFrom", atomic(None)),
        ("env", merge_map(Some(&ENV_VAR), "name", NAME)),
        ("resources", object(&RESOURCE_REQUIREMENTS)),
        ("resizePolicy", atomic(None)),
        ("volumeMounts", merge_map(None, "mountPath", &["mountPath"])),
        (
            "volumeDevices",
            merge_map(None, "devicePath", &["devicePath"]),
        ),
        ("livenessProbe", object(&PROBE)),
        ("readinessProbe", object(&PROBE)),
        ("startupProbe", object(&PROBE)),
        ("lifecycle", object(&LIFECYCLE)),
        ("securityContext", object(&SECURITY_CONTEXT)),
    ],
);
static ENV_VAR: TypeMeta = struct_type("EnvVar", &[]);
static RESOURCE_REQUIREMENTS: TypeMeta =
    struct_type("ResourceRequirements", &[("claims", list_map(None, NAME))]);
static PROBE: TypeMeta = struct_type(
    "Probe",
    &[
        ("exec", object(&EXEC_ACTION)),
        ("httpGet", object(&HTTP_GET_ACTION)),
    ],
);
static LIFECYCLE: TypeMeta = struct_type(
    "Lifecycle",
    &[
        ("postStart", object(&LIFECYCLE_HANDLER)),
        ("preStop", object(&LIFECYCLE_HANDLER)),
    ],
);
static LIFECYCLE_HANDLER: TypeMeta = struct_type(
    "LifecycleHandler",
    &[
        ("exec", object(&EXEC_ACTION)),
        ("httpGet", object(&HTTP_GET_ACTION)),
    ],
);
static EXEC_ACTION: TypeMeta = struct_type("ExecAction", &[("command", atomic(None))]);
static HTTP_GET_ACTION: TypeMeta = struct_type("HTTPGetAction", &[("httpHeaders", atomic(None))]);
static SECURITY_CONTEXT: TypeMeta = struct_type(
    "SecurityContext",
    &[("capabilities", object(&CAPABILITIES))],
);
static CAPABILITIES: TypeMeta = struct_type(
    "Capabilities",
    &[("add", atomic(None)), ("drop", atomic(None))],
);

pub static VOLUME: TypeMeta = struct_type(
    "Volume",
    &[
        ("secret", object(&ITEMS_VOLUME_SOURCE)),
        ("configMap", object(&ITEMS_VOLUME_SOURCE)),
        ("downwardAPI", object(&ITEMS_VOLUME_SOURCE)),
        ("projected", object(&PROJECTED_VOLUME_SOURCE)),
        ("persistentVolumeClaim", object(&EMPTY_STRUCT)),
    ],
);
static ITEMS_VOLUME_SOURCE: TypeMeta =
    struct_type("KeyToPathVolumeSource", &[("items", atomic(None))]);
static PROJECTED_VOLUME_SOURCE: TypeMeta =
    struct_type("ProjectedVolumeSource", &[("sources", atomic(None))]);
static EMPTY_STRUCT: TypeMeta = struct_type("Struct", &[]);

pub static POD_STATUS: TypeMeta = struct_type(
    "PodStatus",
    &[
        ("conditions", CONDITIONS),
        ("podIPs", merge_map(None, "ip", IP)),
        ("hostIPs", merge_atomic(None, "ip")),
        ("initContainerStatuses", atomic(None)),
        ("containerStatuses", atomic(None)),
        ("ephemeralContainerStatuses", atomic(None)),
        (
            "resourceClaimStatuses",
            FieldMeta {
                ty: None,
                strategy: PatchStrategy::MergeRetainKeys,
                merge_key: Some("name"),
                list_type: Some(ListType::Map),
                map_keys: NAME,
            },
        ),
    ],
);

// ---- core/v1: everything else ----

static SERVICE: TypeMeta = struct_type(
    "Service",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&SERVICE_SPEC)),
        ("status", object(&SERVICE_STATUS)),
    ],
);
pub static SERVICE_SPEC: TypeMeta = struct_type(
    "ServiceSpec",
    &[
        ("ports", merge_map(None, "port", &["port", "protocol"])),
        ("clusterIPs", atomic(None)),
        ("externalIPs", atomic(None)),
        ("loadBalancerSourceRanges", atomic(None)),
        ("ipFamilies", atomic(None)),
    ],
);
static SERVICE_STATUS: TypeMeta = struct_type(
    "ServiceStatus",
    &[
        ("loadBalancer", object(&LOAD_BALANCER_STATUS)),
        ("conditions", CONDITIONS),
    ],
);
static LOAD_BALANCER_STATUS: TypeMeta =
    struct_type("LoadBalancerStatus", &[("ingress", atomic(None))]);

static ENDPOINTS: TypeMeta = struct_type(
    "Endpoints",
    &[
        ("metadata", object(&OBJECT_META)),
        ("subsets", atomic(Some(&ENDPOINT_SUBSET))),
    ],
);
static ENDPOINT_SUBSET: TypeMeta = struct_type(
    "EndpointSubset",
    &[
        ("addresses", atomic(None)),
        ("notReadyAddresses", atomic(None)),
        ("ports", atomic(None)),
    ],
);

static NAMESPACE: TypeMeta = struct_type(
    "Namespace",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&NAMESPACE_SPEC)),
        ("status", object(&CONDITIONS_STATUS)),
    ],
);
static NAMESPACE_SPEC: TypeMeta = struct_type("NamespaceSpec", &[("finalizers", atomic(None))]);
/// A status whose only tagged field is the usual condition list.
static CONDITIONS_STATUS: TypeMeta = struct_type("Status", &[("conditions", CONDITIONS)]);

static NODE: TypeMeta = struct_type(
    "Node",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&NODE_SPEC)),
        ("status", object(&NODE_STATUS)),
    ],
);
pub static NODE_SPEC: TypeMeta = struct_type(
    "NodeSpec",
    &[("podCIDRs", merge_set()), ("taints", atomic(None))],
);
pub static NODE_STATUS: TypeMeta = struct_type(
    "NodeStatus",
    &[
        ("conditions", CONDITIONS),
        ("addresses", merge_map(None, "type", TYPE)),
        ("images", atomic(None)),
        ("volumesInUse", atomic(None)),
        ("volumesAttached", atomic(None)),
    ],
);

static SERVICE_ACCOUNT: TypeMeta = struct_type(
    "ServiceAccount",
    &[
        ("metadata", object(&OBJECT_META)),
        ("secrets", merge_atomic(None, "name")),
        ("imagePullSecrets", atomic(Some(&LOCAL_OBJECT_REFERENCE))),
    ],
);

static PERSISTENT_VOLUME: TypeMeta = struct_type(
    "PersistentVolume",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&PERSISTENT_VOLUME_SPEC)),
    ],
);
static PERSISTENT_VOLUME_SPEC: TypeMeta = struct_type(
    "PersistentVolumeSpec",
    &[
        ("accessModes", atomic(None)),
        ("mountOptions", atomic(None)),
        ("nodeAffinity", object(&VOLUME_NODE_AFFINITY)),
    ],
);
static VOLUME_NODE_AFFINITY: TypeMeta = struct_type(
    "VolumeNodeAffinity",
    &[("required", object(&NODE_SELECTOR))],
);
static PERSISTENT_VOLUME_CLAIM: TypeMeta = struct_type(
    "PersistentVolumeClaim",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&PERSISTENT_VOLUME_CLAIM_SPEC)),
        ("status", object(&PERSISTENT_VOLUME_CLAIM_STATUS)),
    ],
);
static PERSISTENT_VOLUME_CLAIM_SPEC: TypeMeta = struct_type(
    "PersistentVolumeClaimSpec",
    &[
        ("accessModes", atomic(None)),
        ("selector", object(&LABEL_SELECTOR)),
    ],
);
static PERSISTENT_VOLUME_CLAIM_STATUS: TypeMeta = struct_type(
    "PersistentVolumeClaimStatus",
    &[("accessModes", atomic(None)), ("conditions", CONDITIONS)],
);

// ---- apps/v1 ----

static DEPLOYMENT: TypeMeta = struct_type(
    "Deployment",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&DEPLOYMENT_SPEC)),
        ("status", object(&CONDITIONS_STATUS)),
    ],
);
pub static DEPLOYMENT_SPEC: TypeMeta = struct_type(
    "DeploymentSpec",
    &[
        ("selector", object(&LABEL_SELECTOR)),
        ("template", object(&POD_TEMPLATE_SPEC)),
        ("strategy", retain_keys(&DEPLOYMENT_STRATEGY)),
    ],
);
static DEPLOYMENT_STRATEGY: TypeMeta = struct_type("DeploymentStrategy", &[]);
/// ReplicaSet and DaemonSet share the same tagged fields.
static WORKLOAD_SPEC: TypeMeta = struct_type(
    "WorkloadSpec",
    &[
        ("selector", object(&LABEL_SELECTOR)),
        ("template", object(&POD_TEMPLATE_SPEC)),
    ],
);
static REPLICA_SET: TypeMeta = struct_type(
    "ReplicaSet",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&WORKLOAD_SPEC)),
        ("status", object(&CONDITIONS_STATUS)),
    ],
);
static DAEMON_SET: TypeMeta = struct_type(
    "DaemonSet",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&WORKLOAD_SPEC)),
        ("status", object(&CONDITIONS_STATUS)),
    ],
);
static STATEFUL_SET: TypeMeta = struct_type(
    "StatefulSet",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&STATEFUL_SET_SPEC)),
        ("status", object(&CONDITIONS_STATUS)),
    ],
);
static STATEFUL_SET_SPEC: TypeMeta = struct_type(
    "StatefulSetSpec",
    &[
        ("selector", object(&LABEL_SELECTOR)),
        ("template", object(&POD_TEMPLATE_SPEC)),
        (
            "volumeClaimTemplates",
            atomic(Some(&PERSISTENT_VOLUME_CLAIM)),
        ),
    ],
);

// ---- batch/v1 ----

static JOB: TypeMeta = struct_type(
    "Job",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&JOB_SPEC)),
        ("status", object(&JOB_STATUS)),
    ],
);
static JOB_SPEC: TypeMeta = struct_type(
    "JobSpec",
    &[
        ("selector", object(&LABEL_SELECTOR)),
        ("template", object(&POD_TEMPLATE_SPEC)),
        ("podFailurePolicy", object(&RULES)),
        ("successPolicy", object(&RULES)),
    ],
);
static RULES: TypeMeta = struct_type("Policy", &[("rules", atomic(None))]);
static JOB_STATUS: TypeMeta =
    struct_type("JobStatus", &[("conditions", merge_atomic(None, "type"))]);
static CRON_JOB: TypeMeta = struct_type(
    "CronJob",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&CRON_JOB_SPEC)),
        ("status", object(&CRON_JOB_STATUS)),
    ],
);
static CRON_JOB_SPEC: TypeMeta = struct_type(
    "CronJobSpec",
    &[("jobTemplate", object(&JOB_TEMPLATE_SPEC))],
);
static JOB_TEMPLATE_SPEC: TypeMeta = struct_type(
    "JobTemplateSpec",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&JOB_SPEC)),
    ],
);
static CRON_JOB_STATUS: TypeMeta = struct_type("CronJobStatus", &[("active", atomic(None))]);

// ---- discovery.k8s.io/v1 ----

static ENDPOINT_SLICE: TypeMeta = struct_type(
    "EndpointSlice",
    &[
        ("metadata", object(&OBJECT_META)),
        ("endpoints", atomic(Some(&ENDPOINT))),
        ("ports", atomic(None)),
    ],
);
static ENDPOINT: TypeMeta = struct_type(
    "Endpoint",
    &[("addresses", set()), ("hints", object(&ENDPOINT_HINTS))],
);
static ENDPOINT_HINTS: TypeMeta = struct_type(
    "EndpointHints",
    &[("forZones", atomic(None)), ("forNodes", atomic(None))],
);

// ---- autoscaling/v2 ----

static HORIZONTAL_POD_AUTOSCALER: TypeMeta = struct_type(
    "HorizontalPodAutoscaler",
    &[
        ("metadata", object(&OBJECT_META)),
        ("spec", object(&HPA_SPEC)),
        ("status", object(&HPA_STATUS)),
    ],
);
static HPA_SPEC: TypeMeta = struct_type(
    "HorizontalPodAutoscalerSpec",
    &[
        ("metrics", atomic(None)),
        ("behavior", object(&HPA_BEHAVIOR)),
    ],
);
static HPA_BEHAVIOR: TypeMeta = struct_type(
    "HorizontalPodAutoscalerBehavior",
    &[
        ("scaleUp", object(&HPA_SCALING_RULES)),
        ("scaleDown", object(&HPA_SCALING_RULES)),
    ],
);
static HPA_SCALING_RULES: TypeMeta = struct_type("HPAScalingRules", &[("policies", atomic(None))]);
static HPA_STATUS: TypeMeta = struct_type(
    "HorizontalPodAutoscalerStatus",
    &[("currentMetrics", atomic(None)), ("conditions", CONDITIONS)],
);

// ---- rbac.authorization.k8s.io/v1 ----

static ROLE: TypeMeta = struct_type(
    "Role",
    &[
        ("metadata", object(&OBJECT_META)),
        ("rules", atomic(Some(&POLICY_RULE))),
    ],
);
static CLUSTER_ROLE: TypeMeta = struct_type(
    "ClusterRole",
    &[
        ("metadata", object(&OBJECT_META)),
        ("rules", atomic(Some(&POLICY_RULE))),
        ("aggregationRule", object(&AGGREGATION_RULE)),
    ],
);
static POLICY_RULE: TypeMeta = struct_type(
    "PolicyRule",
    &[
        ("verbs", atomic(None)),
        ("apiGroups", atomic(None)),
        ("resources", atomic(None)),
        ("resourceNames", atomic(None)),
        ("nonResourceURLs", atomic(None)),
    ],
);
static AGGREGATION_RULE: TypeMeta = struct_type(
    "AggregationRule",
    &[("clusterRoleSelectors", atomic(Some(&LABEL_SELECTOR)))],
);
static ROLE_BINDING: TypeMeta = struct_type(
    "RoleBinding",
    &[
        ("metadata", object(&OBJECT_META)),
        ("subjects", atomic(None)),
        ("roleRef", object(&ROLE_REF)),
    ],
);
static ROLE_REF: TypeMeta = atomic_struct("RoleRef");

#[cfg(test)]
#[rustfmt::skip]
mod tests {
    use super::*;

    /// Walks `path` (field names; list element types are entered implicitly)
    /// from the root type of `group`/`kind` and renders the final field's tags.
    fn check(group: &str, kind: &str, path: &str, expect: &str) {
        let mut ty = root_type(group, kind);
        let mut meta = UNTAGGED;
        for name in path.split('.') {
            meta = field_meta(ty, name);
            ty = meta.ty;
        }
        let actual = format!(
            "{:?} key={:?} list={:?} keys={:?}",
            meta.strategy, meta.merge_key, meta.list_type, meta.map_keys
        );
        assert_eq!(actual, expect, "{group}/{kind} {path}");
    }

    #[test]
    fn tags_of_built_in_types() {
        check("", "Pod", "spec.containers", "Merge key=Some(\"name\") list=Some(Map) keys=[\"name\"]");
        check("", "Pod", "spec.initContainers", "Merge key=Some(\"name\") list=Some(Map) keys=[\"name\"]");
        check("", "Pod", "spec.ephemeralContainers", "Merge key=Some(\"name\") list=Some(Map) keys=[\"name\"]");
        check("", "Pod", "spec.volumes", "MergeRetainKeys key=Some(\"name\") list=Some(Map) keys=[\"name\"]");
        check("", "Pod", "spec.imagePullSecrets", "Merge key=Some(\"name\") list=Some(Map) keys=[\"name\"]");
        check("", "Pod", "spec.hostAliases", "Merge key=Some(\"ip\") list=Some(Map) keys=[\"ip\"]");
        check("", "Pod", "spec.tolerations", "Replace key=None list=Some(Atomic) keys=[]");
        check("", "Pod", "spec.containers.ports", "Merge key=Some(\"containerPort\") list=Some(Map) keys=[\"containerPort\", \"protocol\"]");
        check("", "Pod", "spec.containers.env", "Merge key=Some(\"name\") list=Some(Map) keys=[\"name\"]");
        check("", "Pod", "spec.containers.volumeMounts", "Merge key=Some(\"mountPath\") list=Some(Map) keys=[\"mountPath\"]");
        check("", "Pod", "spec.containers.volumeDevices", "Merge key=Some(\"devicePath\") list=Some(Map) keys=[\"devicePath\"]");
        check("", "Pod", "spec.containers.args", "Replace key=None list=Some(Atomic) keys=[]");
        check("", "Pod", "spec.containers.image", "Replace key=None list=None keys=[]");
        check("", "Pod", "status.conditions", "Merge key=Some(\"type\") list=Some(Map) keys=[\"type\"]");
        check("", "Pod", "metadata.finalizers", "Merge key=None list=Some(Set) keys=[]");
        check("", "Pod", "metadata.ownerReferences", "Merge key=Some(\"uid\") list=Some(Map) keys=[\"uid\"]");
        check("", "Pod", "metadata.managedFields", "Replace key=None list=Some(Atomic) keys=[]");
        check("", "Pod", "metadata.labels", "Replace key=None list=None keys=[]");
        check("apps", "Deployment", "spec.strategy", "RetainKeys key=None list=None keys=[]");
        check("apps", "Deployment", "spec.template.spec.containers.env", "Merge key=Some(\"name\") list=Some(Map) keys=[\"name\"]");
        check("apps", "Deployment", "status.conditions", "Merge key=Some(\"type\") list=Some(Map) keys=[\"type\"]");
        check("apps", "StatefulSet", "spec.volumeClaimTemplates", "Replace key=None list=Some(Atomic) keys=[]");
        check("apps", "DaemonSet", "spec.template.spec.volumes", "MergeRetainKeys key=Some(\"name\") list=Some(Map) keys=[\"name\"]");
        check("batch", "CronJob", "spec.jobTemplate.spec.template.spec.containers", "Merge key=Some(\"name\") list=Some(Map) keys=[\"name\"]");
        check("batch", "Job", "status.conditions", "Merge key=Some(\"type\") list=Some(Atomic) keys=[]");
        check("", "Service", "spec.ports", "Merge key=Some(\"port\") list=Some(Map) keys=[\"port\", \"protocol\"]");
        check("", "Node", "spec.taints", "Replace key=None list=Some(Atomic) keys=[]");
        check("", "Node", "spec.podCIDRs", "Merge key=None list=Some(Set) keys=[]");
        check("", "Node", "status.addresses", "Merge key=Some(\"type\") list=Some(Map) keys=[\"type\"]");
        check("", "Node", "status.conditions", "Merge key=Some(\"type\") list=Some(Map) keys=[\"type\"]");
        check("", "Endpoints", "subsets.addresses", "Replace key=None list=Some(Atomic) keys=[]");
        check("discovery.k8s.io", "EndpointSlice", "endpoints.addresses", "Replace key=None list=Some(Set) keys=[]");
        check("autoscaling", "HorizontalPodAutoscaler", "status.conditions", "Merge key=Some(\"type\") list=Some(Map) keys=[\"type\"]");
        check("rbac.authorization.k8s.io", "ClusterRole", "rules.verbs", "Replace key=None list=Some(Atomic) keys=[]");
        check("", "ConfigMap", "data", "Replace key=None list=None keys=[]");
        check("", "Widget", "spec.items", "Replace key=None list=None keys=[]");
    }

    #[test]
    fn root_types() {
        assert!(root_type("", "Pod").is_some());
        assert!(root_type("apps", "Pod").is_none());
        assert_eq!(root_type_for_api_version("apps/v1", "Deployment").map(|t| t.name), Some("Deployment"));
        assert_eq!(root_type_for_api_version("v1", "Service").map(|t| t.name), Some("Service"));
        assert_eq!(root_type_for_api_version("autoscaling/v2", "HorizontalPodAutoscaler").map(|t| t.name), Some("HorizontalPodAutoscaler"));
    }
}
