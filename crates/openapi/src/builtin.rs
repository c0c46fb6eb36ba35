//! The built-in schemas: every Kubernetes kind drover knows, generated once from k8s-openapi's
//! `JsonSchema` impls and rewritten into the OpenAPI 3.0 shape the real API server publishes.
//!
//! k8s-openapi already names each schema the Kubernetes way (`schema_name()` is
//! `io.k8s.api.core.v1.Pod`), so the generator's definitions map is keyed by the right names;
//! with the definitions path set to `/components/schemas` every `$ref` already has its final form.
//! What is left is one pass over the tree (see [`to_openapi_v3`]) and the List types, which
//! k8s-openapi models as a generic `List<T>` without a schema.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::schemars::JsonSchema;
use k8s_openapi::{ListableResource, Resource};
use serde_json::{json, Map, Value};

pub(crate) const REF_PREFIX: &str = "#/components/schemas/";
pub(crate) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub(crate) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(crate) const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// One built-in kind: where its schema lives and whether it has a List type.
#[derive(Debug, Clone)]
pub(crate) struct BuiltinKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub definition: String,
    /// `Some("PodList")` for kinds that are listed; the List schema is named `<definition>List`.
    pub list_kind: Option<&'static str>,
}

pub(crate) struct Builtins {
    pub definitions: BTreeMap<String, Value>,
    pub kinds: Vec<BuiltinKind>,
}

impl Builtins {
    pub fn kind(&self, group: &str, version: &str, kind: &str) -> Option<&BuiltinKind> {
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.kind == kind)
    }

    /// The definition name for a GVK, including List kinds (`PodList` → `io.k8s.api.core.v1.PodList`).
    pub fn definition_name(&self, group: &str, version: &str, kind: &str) -> Option<String> {
        if let Some(k) = self.kind(group, version, kind) {
            return Some(k.definition.clone());
        }
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.list_kind == Some(kind))
            .map(|k| list_definition_name(&k.definition))
    }
}

pub(crate) fn list_definition_name(definition: &str) -> String {
    format!("{definition}List")
}

static BUILTINS: OnceLock<Builtins> = OnceLock::new();

/// Built on first use, never at start-up: generation walks ~700 schemas.
pub(crate) fn builtins() -> &'static Builtins {
    BUILTINS.get_or_init(generate)
}

fn listable<T: ListableResource + JsonSchema>(generator: &mut SchemaGenerator) -> BuiltinKind {
    generator.subschema_for::<T>();
    BuiltinKind {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        definition: T::schema_name().into_owned(),
        list_kind: Some(T::LIST_KIND),
    }
}

fn single<T: Resource + JsonSchema>(generator: &mut SchemaGenerator) -> BuiltinKind {
    generator.subschema_for::<T>();
    BuiltinKind {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        definition: T::schema_name().into_owned(),
        list_kind: None,
    }
}

macro_rules! builtin_kinds {
    (listable: [$($listable:path),* $(,)?], single: [$($single:path),* $(,)?] $(,)?) => {
        fn register_kinds(generator: &mut SchemaGenerator) -> Vec<BuiltinKind> {
            vec![
                $(listable::<$listable>(generator),)*
                $(single::<$single>(generator),)*
            ]
        }
    };
}

// Only GA group-versions: drover serves no alpha/beta APIs.
builtin_kinds! {
    listable: [
        k8s_openapi::api::core::v1::ComponentStatus,
        k8s_openapi::api::core::v1::ConfigMap,
        k8s_openapi::api::core::v1::Endpoints,
        k8s_openapi::api::core::v1::Event,
        k8s_openapi::api::core::v1::LimitRange,
        k8s_openapi::api::core::v1::Namespace,
        k8s_openapi::api::core::v1::Node,
        k8s_openapi::api::core::v1::PersistentVolume,
        k8s_openapi::api::core::v1::PersistentVolumeClaim,
        k8s_openapi::api::core::v1::Pod,
        k8s_openapi::api::core::v1::PodTemplate,
        k8s_openapi::api::core::v1::ReplicationController,
        k8s_openapi::api::core::v1::ResourceQuota,
        k8s_openapi::api::core::v1::Secret,
        k8s_openapi::api::core::v1::Service,
        k8s_openapi::api::core::v1::ServiceAccount,
        k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
        k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
        k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy,
        k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
        k8s_openapi::api::apps::v1::ControllerRevision,
        k8s_openapi::api::apps::v1::DaemonSet,
        k8s_openapi::api::apps::v1::Deployment,
        k8s_openapi::api::apps::v1::ReplicaSet,
        k8s_openapi::api::apps::v1::StatefulSet,
        k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler,
        k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler,
        k8s_openapi::api::batch::v1::CronJob,
        k8s_openapi::api::batch::v1::Job,
        k8s_openapi::api::certificates::v1::CertificateSigningRequest,
        k8s_openapi::api::coordination::v1::Lease,
        k8s_openapi::api::discovery::v1::EndpointSlice,
        k8s_openapi::api::events::v1::Event,
        k8s_openapi::api::flowcontrol::v1::FlowSchema,
        k8s_openapi::api::flowcontrol::v1::PriorityLevelConfiguration,
        k8s_openapi::api::networking::v1::Ingress,
        k8s_openapi::api::networking::v1::IngressClass,
        k8s_openapi::api::networking::v1::IPAddress,
        k8s_openapi::api::networking::v1::NetworkPolicy,
        k8s_openapi::api::networking::v1::ServiceCIDR,
        k8s_openapi::api::node::v1::RuntimeClass,
        k8s_openapi::api::policy::v1::PodDisruptionBudget,
        k8s_openapi::api::rbac::v1::ClusterRole,
        k8s_openapi::api::rbac::v1::ClusterRoleBinding,
        k8s_openapi::api::rbac::v1::Role,
        k8s_openapi::api::rbac::v1::RoleBinding,
        k8s_openapi::api::scheduling::v1::PriorityClass,
        k8s_openapi::api::storage::v1::CSIDriver,
        k8s_openapi::api::storage::v1::CSINode,
        k8s_openapi::api::storage::v1::CSIStorageCapacity,
        k8s_openapi::api::storage::v1::StorageClass,
        k8s_openapi::api::storage::v1::VolumeAttachment,
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService,
    ],
    single: [
        k8s_openapi::api::core::v1::Binding,
        k8s_openapi::api::authentication::v1::SelfSubjectReview,
        k8s_openapi::api::authentication::v1::TokenRequest,
        k8s_openapi::api::authentication::v1::TokenReview,
        k8s_openapi::api::authorization::v1::LocalSubjectAccessReview,
        k8s_openapi::api::authorization::v1::SelfSubjectAccessReview,
        k8s_openapi::api::authorization::v1::SelfSubjectRulesReview,
        k8s_openapi::api::authorization::v1::SubjectAccessReview,
        k8s_openapi::api::autoscaling::v1::Scale,
        k8s_openapi::api::policy::v1::Eviction,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Status,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroup,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroupList,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::APIVersions,
    ],
}

fn generate() -> Builtins {
    let settings = SchemaSettings::openapi3().with(|s| {
        s.meta_schema = None;
        // One pass of our own (to_openapi_v3) replaces schemars' OpenAPI transforms: k8s-openapi
        // never emits the constructs those rewrite except `$ref` siblings, and a single walk is
        // cheaper than seven.
        s.transforms = Vec::new();
    });
    let mut generator = settings.into_generator();
    let kinds = register_kinds(&mut generator);
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta>();
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>();
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Patch>();
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent<
        k8s_openapi::api::core::v1::Pod,
    >>();

    let mut definitions: BTreeMap<String, Value> = BTreeMap::new();
    for (name, mut schema) in generator.take_definitions(false) {
        to_openapi_v3(&mut schema);
        definitions.insert(name, schema);
    }
    if let Some(Value::Object(quantity)) = definitions.get_mut(QUANTITY) {
        // Not int-or-string (k8s-openapi's marking): the API server publishes Quantity as a
        // string or a number, and without a top-level `type` kubectl explain prints the
        // familiar `<Quantity>` / `map[string]Quantity` instead of `string`.
        quantity.remove("x-kubernetes-int-or-string");
        quantity.insert(
            "oneOf".into(),
            json!([{"type": "string"}, {"type": "number"}]),
        );
    }

    for kind in &kinds {
        if let Some(Value::Object(schema)) = definitions.get_mut(&kind.definition) {
            insert_group_version_kind(schema, kind.group, kind.version, kind.kind);
        }
        if let Some(list_kind) = kind.list_kind {
            let list = list_schema(
                kind.group,
                kind.version,
                kind.kind,
                list_kind,
                &kind.definition,
            );
            definitions.insert(list_definition_name(&kind.definition), list);
        }
    }
    Builtins { definitions, kinds }
}

/// Appends `{group, kind, version}` to the schema's `x-kubernetes-group-version-kind` list.
pub(crate) fn insert_group_version_kind(
    schema: &mut Map<String, Value>,
    group: &str,
    version: &str,
    kind: &str,
) {
    let gvk = json!({"group": group, "kind": kind, "version": version});
    match schema.get_mut("x-kubernetes-group-version-kind") {
        Some(Value::Array(list)) => {
            if !list.contains(&gvk) {
                list.push(gvk);
            }
        }
        _ => {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                Value::Array(vec![gvk]),
            );
        }
    }
}

/// The `<Kind>List` schema the real API server publishes for every listable kind.
pub(crate) fn list_schema(
    group: &str,
    version: &str,
    kind: &str,
    list_kind: &str,
    item_definition: &str,
) -> Value {
    let mut schema = json!({
        "description": format!("{list_kind} is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string"
            },
            "items": {
                "description": format!("List of {kind} objects."),
                "type": "array",
                "items": {"$ref": format!("{REF_PREFIX}{item_definition}")}
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string"
            },
            "metadata": {
                "allOf": [{"$ref": format!("{REF_PREFIX}{LIST_META}")}],
                "default": {},
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
            }
        },
        "required": ["items"]
    });
    if let Value::Object(map) = &mut schema {
        insert_group_version_kind(map, group, version, list_kind);
    }
    schema
}

/// Rewrites a schemars schema (JSON Schema dialect) into the OpenAPI 3.0 form Kubernetes uses:
/// - a `$ref` with siblings (k8s-openapi attaches the field's description) becomes
///   `allOf: [{$ref}]` beside them, because OpenAPI 3.0 ignores `$ref` siblings;
/// - `type: [T, "null"]` becomes `type: T, nullable: true`;
/// - objects with neither `properties` nor `additionalProperties` (RawExtension, FieldsV1,
///   apiextensions JSON, …) hold arbitrary JSON, which is what
///   `x-kubernetes-preserve-unknown-fields` says, so unknown-field checks leave them alone;
/// - `$schema` and `const` (not OpenAPI 3.0) are dropped / turned into `enum`.
pub(crate) fn to_openapi_v3(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    map.remove("$schema");
    if let Some(value) = map.remove("const") {
        map.insert("enum".into(), Value::Array(vec![value]));
    }
    if let Some(Value::Array(types)) = map.get("type") {
        let non_null: Vec<Value> = types
            .iter()
            .filter(|t| t.as_str() != Some("null"))
            .cloned()
            .collect();
        let nullable = non_null.len() != types.len();
        if non_null.len() == 1 {
            map.insert("type".into(), non_null[0].clone());
        }
        if nullable {
            map.insert("nullable".into(), Value::Bool(true));
        }
    }
    if map.len() > 1 {
        if let Some(reference) = map.remove("$ref") {
            let all_of = map
                .entry("allOf")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(all_of) = all_of {
                all_of.push(json!({ "$ref": reference }));
            }
        }
    }
    if map.get("type").and_then(Value::as_str) == Some("object")
        && !map.contains_key("properties")
        && !map.contains_key("additionalProperties")
    {
        map.insert(
            "x-kubernetes-preserve-unknown-fields".into(),
            Value::Bool(true),
        );
    }
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            "properties" => {
                if let Value::Object(properties) = child {
                    properties.values_mut().for_each(to_openapi_v3);
                }
            }
            "items" | "additionalProperties" | "not" => to_openapi_v3(child),
            "allOf" | "anyOf" | "oneOf" => {
                if let Value::Array(list) = child {
                    list.iter_mut().for_each(to_openapi_v3);
                }
            }
            _ => {}
        }
    }
}

/// Every `#/components/schemas/<name>` referenced anywhere inside `value`.
pub(crate) fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref" {
                    if let Some(name) = child.as_str().and_then(|r| r.strip_prefix(REF_PREFIX)) {
                        out.push(name);
                    }
                } else {
                    collect_refs(child, out);
                }
            }
        }
        Value::Array(list) => list.iter().for_each(|child| collect_refs(child, out)),
        _ => {}
    }
}
