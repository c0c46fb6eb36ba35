//! The `/openapi/v3` root and the per-group-version documents.
//!
//! Two kubectl code paths read these and shape them:
//! - apply/create's field-validation probe looks for a PATCH operation whose
//!   `x-kubernetes-group-version-kind` is the object's GVK and whose parameters name
//!   `fieldValidation`; without it kubectl falls back to client-side validation.
//! - explain finds the schema whose `x-kubernetes-group-version-kind` list holds the GVK in
//!   `components.schemas` and follows `$ref`s from there, so every reachable schema is included.
//!
//! The PATCH request body deliberately omits `application/strategic-merge-patch+json`: when it is
//! absent kubectl computes apply patches from its compiled-in Go types, which is exactly the
//! strategic-merge behaviour drover implements.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::builtin::{
    builtins, collect_refs, insert_group_version_kind, list_definition_name, list_schema,
    to_openapi_v3, API_RESOURCE_LIST, DELETE_OPTIONS, OBJECT_META, PATCH, REF_PREFIX, STATUS,
    WATCH_EVENT,
};
use crate::ResourceInfo;

/// `api/v1` for the core group, `apis/<group>/<version>` otherwise: the key in the root
/// document's `paths` and the tail of the document's URL.
pub fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The inverse of [`group_version_path`]: `apis/apps/v1` → `("apps", "v1")`.
/// Accepts the path with or without a leading `/openapi/v3/` or `/`.
pub fn parse_group_version_path(path: &str) -> Option<(String, String)> {
    let path = path.trim_start_matches('/');
    let path = path.strip_prefix("openapi/v3/").unwrap_or(path);
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["api", version] if !version.is_empty() => Some((String::new(), version.to_string())),
        ["apis", group, version] if !group.is_empty() && !version.is_empty() => {
            Some((group.to_string(), version.to_string()))
        }
        _ => None,
    }
}

/// A stable content hash for a document (hex FNV-1a over its serialization), for the `hash`
/// query of the root document's `serverRelativeURL`s. kubectl caches documents by that URL, so
/// the hash must change whenever the document does (e.g. a CRD appears).
pub fn document_hash(document: &Value) -> String {
    let bytes = serde_json::to_vec(document).unwrap_or_default();
    let mut low: u64 = 0xcbf2_9ce4_8422_2325;
    let mut high: u64 = 0x8422_2325_cbf2_9ce4;
    for byte in bytes {
        low = (low ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        high = (high ^ u64::from(byte))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(5);
    }
    format!("{high:016X}{low:016X}")
}

/// `/openapi/v3`: one entry per group-version, each pointing at its document with a hash.
pub fn root_document(
    group_versions: &[(String, String)],
    hash: impl Fn(&str, &str) -> String,
) -> Value {
    let mut paths = Map::new();
    for (group, version) in group_versions {
        let path = group_version_path(group, version);
        let url = format!("/openapi/v3/{path}?hash={}", hash(group, version));
        paths.insert(path, json!({ "serverRelativeURL": url }));
    }
    json!({ "paths": paths })
}

/// The definition name Kubernetes gives a custom resource's schema: the group reversed
/// (`stable.example.com` → `com.example.stable`), then version and kind.
pub fn custom_definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`, `StableExampleComV1`: the infix of operation ids.
fn operation_infix(group: &str, version: &str) -> String {
    let group = if group.is_empty() {
        "core"
    } else {
        group.strip_suffix(".k8s.io").unwrap_or(group)
    };
    let mut out = String::new();
    for word in group.split(['.', '-']).chain(std::iter::once(version)) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn schema_ref(definition: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{definition}") })
}

fn parameter_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/parameters/{name}") })
}

fn query_parameter(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "description": description, "schema": schema })
}

fn path_parameter(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "description": description, "required": true, "schema": {"type": "string"} })
}

/// Inline rather than a `$ref`: the field-validation probe of every kubectl version handles it.
fn field_validation_parameter() -> Value {
    query_parameter(
        "fieldValidation",
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
        json!({"type": "string", "enum": ["Ignore", "Warn", "Strict"]}),
    )
}

fn components_parameters() -> Value {
    let string = || json!({"type": "string"});
    let boolean = || json!({"type": "boolean"});
    let integer = || json!({"type": "integer"});
    json!({
        "allowWatchBookmarks": query_parameter("allowWatchBookmarks", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion.", boolean()),
        "continue": query_parameter("continue", "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue).", string()),
        "dryRun": query_parameter("dryRun", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed", string()),
        "fieldManager": query_parameter("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.", string()),
        "fieldSelector": query_parameter("fieldSelector", "A selector to restrict the list of returned objects by their fields. Defaults to everything.", string()),
        "force": query_parameter("force", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.", boolean()),
        "gracePeriodSeconds": query_parameter("gracePeriodSeconds", "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately.", integer()),
        "labelSelector": query_parameter("labelSelector", "A selector to restrict the list of returned objects by their labels. Defaults to everything.", string()),
        "limit": query_parameter("limit", "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results.", integer()),
        "orphanDependents": query_parameter("orphanDependents", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned.", boolean()),
        "pretty": query_parameter("pretty", "If 'true', then the output is pretty printed.", string()),
        "propagationPolicy": query_parameter("propagationPolicy", "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'.", string()),
        "resourceVersion": query_parameter("resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served from. Defaults to unset.", string()),
        "resourceVersionMatch": query_parameter("resourceVersionMatch", "resourceVersionMatch determines how resourceVersion is applied to list calls. Defaults to unset.", string()),
        "sendInitialEvents": query_parameter("sendInitialEvents", "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection.", boolean()),
        "timeoutSeconds": query_parameter("timeoutSeconds", "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.", integer()),
        "watch": query_parameter("watch", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.", boolean()),
    })
}

const LIST_PARAMETERS: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const DELETE_PARAMETERS: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "orphanDependents",
    "propagationPolicy",
];

fn content(definition: &str, media_types: &[&str]) -> Value {
    let mut map = Map::new();
    for media_type in media_types {
        map.insert(
            media_type.to_string(),
            json!({ "schema": schema_ref(definition) }),
        );
    }
    Value::Object(map)
}

const READ_MEDIA: &[&str] = &["application/json", "application/yaml"];
const LIST_MEDIA: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/json;stream=watch",
];

fn responses(codes: &[(&str, &str)], definition: &str, media: &[&str]) -> Value {
    let mut map = Map::new();
    for (code, description) in codes {
        map.insert(
            code.to_string(),
            json!({ "description": description, "content": content(definition, media) }),
        );
    }
    map.insert("401".into(), json!({ "description": "Unauthorized" }));
    Value::Object(map)
}

/// Everything an operation on one path needs to know about its resource.
struct Target<'a> {
    tag: String,
    infix: String,
    /// `NamespacedPod`, `Node`, `NamespacedDeploymentScale`.
    noun: String,
    /// `{group, kind, version}` of the body this path reads and writes.
    gvk: Value,
    definition: &'a str,
    description: String,
}

impl Target<'_> {
    fn operation(
        &self,
        verb: &str,
        action: &str,
        summary: &str,
        parameters: Vec<Value>,
        responses: Value,
    ) -> Value {
        let mut operation = json!({
            "tags": [self.tag],
            "description": format!("{summary} {}", self.description),
            "operationId": format!("{verb}{}{}", self.infix, self.noun),
            "parameters": parameters,
            "responses": responses,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": self.gvk,
        });
        if parameters_empty(&operation) {
            if let Value::Object(map) = &mut operation {
                map.remove("parameters");
            }
        }
        operation
    }

    fn body(&self, media: &[&str], definition: &str) -> Value {
        json!({ "content": content(definition, media), "required": true })
    }

    fn read(&self) -> Value {
        self.operation(
            "read",
            "get",
            "read the specified",
            vec![],
            responses(&[("200", "OK")], self.definition, READ_MEDIA),
        )
    }

    fn replace(&self) -> Value {
        let mut operation = self.operation(
            "replace",
            "put",
            "replace the specified",
            vec![
                parameter_ref("dryRun"),
                parameter_ref("fieldManager"),
                field_validation_parameter(),
            ],
            responses(
                &[("200", "OK"), ("201", "Created")],
                self.definition,
                READ_MEDIA,
            ),
        );
        operation["requestBody"] = self.body(&["*/*"], self.definition);
        operation
    }

    fn patch(&self) -> Value {
        let mut operation = self.operation(
            "patch",
            "patch",
            "partially update the specified",
            vec![
                parameter_ref("dryRun"),
                parameter_ref("fieldManager"),
                field_validation_parameter(),
                parameter_ref("force"),
            ],
            responses(
                &[("200", "OK"), ("201", "Created")],
                self.definition,
                READ_MEDIA,
            ),
        );
        operation["requestBody"] = self.body(
            &[
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ],
            PATCH,
        );
        operation
    }

    fn create(&self) -> Value {
        let mut operation = self.operation(
            "create",
            "post",
            "create",
            vec![
                parameter_ref("dryRun"),
                parameter_ref("fieldManager"),
                field_validation_parameter(),
            ],
            responses(
                &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
                self.definition,
                READ_MEDIA,
            ),
        );
        operation["requestBody"] = self.body(&["*/*"], self.definition);
        operation
    }
}

fn parameters_empty(operation: &Value) -> bool {
    operation["parameters"]
        .as_array()
        .is_some_and(Vec::is_empty)
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

/// How the document refers to one resource's schemas, and the schemas it contributes itself.
struct KindSchemas {
    definition: String,
    list_definition: String,
}

/// One group-version document. See the crate docs for what `resources` and `extra_schemas` mean.
pub fn group_version_document(
    group: &str,
    version: &str,
    resources: &[ResourceInfo],
    extra_schemas: &BTreeMap<String, Value>,
) -> Value {
    let builtins = builtins();
    let infix = operation_infix(group, version);
    let tag = format!(
        "{}_{}",
        if group.is_empty() { "core" } else { group },
        version
    )
    .replace(['.', '-'], "_");
    let prefix = format!("/{}", group_version_path(group, version));

    // Schemas this document defines beyond the built-in ones (custom resources and their Lists).
    let mut own_schemas: BTreeMap<String, Value> = BTreeMap::new();
    let mut roots: BTreeSet<String> = [
        STATUS,
        DELETE_OPTIONS,
        WATCH_EVENT,
        API_RESOURCE_LIST,
        PATCH,
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let mut paths = Map::new();

    for resource in resources {
        if resource.plural.contains('/') {
            // Subresources arrive through `ResourceInfo::subresources`.
            continue;
        }
        let schemas = kind_schemas(group, version, resource, extra_schemas, &mut own_schemas);
        roots.insert(schemas.definition.clone());
        roots.insert(schemas.list_definition.clone());
        resource_paths(
            &prefix, &tag, &infix, group, version, resource, &schemas, &mut paths, &mut roots,
        );
    }

    let mut schemas = Map::new();
    let mut pending: Vec<String> = roots.into_iter().collect();
    let mut seen: BTreeSet<String> = pending.iter().cloned().collect();
    let mut included: BTreeMap<String, &Value> = BTreeMap::new();
    while let Some(name) = pending.pop() {
        let Some(schema) = own_schemas
            .get(&name)
            .or_else(|| builtins.definitions.get(&name))
        else {
            continue;
        };
        included.insert(name, schema);
        let mut refs = Vec::new();
        collect_refs(schema, &mut refs);
        for reference in refs {
            if seen.insert(reference.to_string()) {
                pending.push(reference.to_string());
            }
        }
    }
    for (name, schema) in included {
        schemas.insert(name, schema.clone());
    }

    let (responses, request_bodies) = share_responses_and_bodies(&mut paths);
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": components_parameters(),
            "responses": responses,
            "requestBodies": request_bodies,
        },
    })
}

/// Moves every operation's responses and request body into `components`
/// (`responses`, `requestBodies`; each distinct one once), leaving `$ref`s
/// in the operations.
///
/// The document says the same either way, but kubectl (1.27–1.33) parses
/// the whole group-version document again for every object it applies, to
/// find out whether the server takes `fieldValidation`; the parse cost is
/// in the number of JSON nodes, and the ≈150 operations of `api/v1`
/// repeated the same few response and body shapes, each a tree of media
/// types and schema references: ≈ 2,400 of the document's 13,500 nodes.
/// Without them `kubectl apply` of 100 pods validates ≈ 10 % sooner
/// (BENCHMARKS.md). Parameters were shared this way already, except the
/// PATCH operations' `fieldValidation`, which kubectl looks for inline.
fn share_responses_and_bodies(
    paths: &mut Map<String, Value>,
) -> (Map<String, Value>, Map<String, Value>) {
    #[derive(Default)]
    struct Shared {
        components: Map<String, Value>,
        /// A component's JSON text → its name.
        names: BTreeMap<String, String>,
    }
    impl Shared {
        /// The `$ref` of `value` among the components, added under `base`
        /// (or `base.2`, `base.3`, … when `base` names another value).
        fn reference(&mut self, kind: &str, base: String, value: Value) -> Value {
            let text = value.to_string();
            let name = match self.names.get(&text) {
                Some(name) => name.clone(),
                None => {
                    let mut name = base.clone();
                    let mut n = 1;
                    while self.components.contains_key(&name) {
                        n += 1;
                        name = format!("{base}.{n}");
                    }
                    self.names.insert(text, name.clone());
                    self.components.insert(name.clone(), value);
                    name
                }
            };
            json!({ "$ref": format!("#/components/{kind}/{name}") })
        }
    }
    /// The schema definition the first media type of `content` refers to.
    fn definition_of(value: &Value) -> Option<String> {
        let (_, media) = value.get("content")?.as_object()?.iter().next()?;
        let reference = media.get("schema")?.get("$ref")?.as_str()?;
        Some(
            reference
                .strip_prefix(REF_PREFIX)
                .unwrap_or(reference)
                .to_string(),
        )
    }
    let mut responses = Shared::default();
    let mut bodies = Shared::default();
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if method == "parameters" {
                continue;
            }
            if let Some(Value::Object(codes)) = operation.get_mut("responses") {
                for (code, response) in codes.iter_mut() {
                    let base = match definition_of(response) {
                        Some(definition) => format!("{definition}.{code}"),
                        None => code.clone(),
                    };
                    *response = responses.reference("responses", base, response.take());
                }
            }
            if let Some(body) = operation.get_mut("requestBody") {
                let base = definition_of(body).unwrap_or_else(|| "body".into());
                *body = bodies.reference("requestBodies", base, body.take());
            }
        }
    }
    (responses.components, bodies.components)
}

fn kind_schemas(
    group: &str,
    version: &str,
    resource: &ResourceInfo,
    extra_schemas: &BTreeMap<String, Value>,
    own_schemas: &mut BTreeMap<String, Value>,
) -> KindSchemas {
    let builtins = builtins();
    let list_kind = format!("{}List", resource.kind);
    if let Some(builtin) = builtins.kind(group, version, &resource.kind) {
        let list_definition = list_definition_name(&builtin.definition);
        if !builtins.definitions.contains_key(&list_definition) {
            let list = list_schema(
                group,
                version,
                &resource.kind,
                &list_kind,
                &builtin.definition,
            );
            own_schemas.insert(list_definition.clone(), list);
        }
        return KindSchemas {
            definition: builtin.definition.clone(),
            list_definition,
        };
    }
    let definition = custom_definition_name(group, version, &resource.kind);
    let schema = custom_kind_schema(
        group,
        version,
        &resource.kind,
        extra_schemas.get(&resource.kind),
    );
    own_schemas.insert(definition.clone(), schema);
    let list_definition = list_definition_name(&definition);
    own_schemas.insert(
        list_definition.clone(),
        list_schema(group, version, &resource.kind, &list_kind, &definition),
    );
    KindSchemas {
        definition,
        list_definition,
    }
}

/// A custom resource's schema as the API server publishes it: the CRD's `openAPIV3Schema` with
/// `apiVersion`, `kind` and `metadata` (a `$ref` to ObjectMeta) filled in and the GVK attached.
/// Without a schema the kind accepts any fields.
pub(crate) fn custom_kind_schema(
    group: &str,
    version: &str,
    kind: &str,
    schema: Option<&Value>,
) -> Value {
    let mut schema = match schema {
        Some(Value::Object(map)) if !map.is_empty() => Value::Object(map.clone()),
        _ => json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true }),
    };
    to_openapi_v3(&mut schema);
    let Value::Object(map) = &mut schema else {
        unreachable!("built as an object above")
    };
    map.entry("type").or_insert_with(|| "object".into());
    let properties = map
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(properties) = properties {
        properties.insert(
            "apiVersion".into(),
            json!({"description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources", "type": "string"}),
        );
        properties.insert(
            "kind".into(),
            json!({"description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds", "type": "string"}),
        );
        properties.insert(
            "metadata".into(),
            json!({"allOf": [schema_ref(OBJECT_META)], "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}),
        );
    }
    insert_group_version_kind(map, group, version, kind);
    schema
}

#[allow(clippy::too_many_arguments)]
fn resource_paths(
    prefix: &str,
    tag: &str,
    infix: &str,
    group: &str,
    version: &str,
    resource: &ResourceInfo,
    schemas: &KindSchemas,
    paths: &mut Map<String, Value>,
    roots: &mut BTreeSet<String>,
) {
    let verbs: BTreeSet<&str> = if resource.verbs.is_empty() {
        [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
        .into()
    } else {
        resource.verbs.iter().map(String::as_str).collect()
    };
    let kind = &resource.kind;
    let scope = if resource.namespaced {
        "Namespaced"
    } else {
        ""
    };
    let (collection, namespace_parameter) = if resource.namespaced {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", resource.plural),
            vec![path_parameter(
                "namespace",
                "object name and auth scope, such as for teams and projects",
            )],
        )
    } else {
        (format!("{prefix}/{}", resource.plural), vec![])
    };
    let item = format!("{collection}/{{name}}");
    let name_parameter = path_parameter("name", &format!("name of the {kind}"));
    let target = Target {
        tag: tag.to_string(),
        infix: infix.to_string(),
        noun: format!("{scope}{kind}"),
        gvk: gvk(group, version, kind),
        definition: &schemas.definition,
        description: kind.clone(),
    };

    // Collection: list (+ watch through ?watch=true), create, deletecollection.
    let mut collection_item = Map::new();
    if verbs.contains("list") {
        let mut parameters: Vec<Value> = LIST_PARAMETERS
            .iter()
            .filter(|name| **name != "watch" || verbs.contains("watch"))
            .map(|name| parameter_ref(name))
            .collect();
        parameters.sort_by_key(|p| p["$ref"].as_str().map(str::to_owned));
        let list = target.operation(
            "list",
            "list",
            "list or watch objects of kind",
            parameters,
            responses(&[("200", "OK")], &schemas.list_definition, LIST_MEDIA),
        );
        collection_item.insert("get".into(), list);
    }
    if verbs.contains("create") {
        collection_item.insert("post".into(), target.create());
    }
    if verbs.contains("deletecollection") {
        let mut parameters: Vec<Value> = Vec::new();
        for name in DELETE_PARAMETERS
            .iter()
            .chain(LIST_PARAMETERS)
            .filter(|n| **n != "watch")
        {
            parameters.push(parameter_ref(name));
        }
        let mut operation = target.operation(
            "delete",
            "deletecollection",
            "delete collection of",
            parameters,
            responses(&[("200", "OK")], STATUS, READ_MEDIA),
        );
        operation["operationId"] = format!("delete{infix}Collection{scope}{kind}").into();
        operation["requestBody"] = json!({ "content": content(DELETE_OPTIONS, &["*/*"]) });
        collection_item.insert("delete".into(), operation);
    }
    if !collection_item.is_empty() {
        let mut parameters = namespace_parameter.clone();
        parameters.push(parameter_ref("pretty"));
        collection_item.insert("parameters".into(), Value::Array(parameters));
        paths.insert(collection.clone(), Value::Object(collection_item));
    }

    // List across all namespaces.
    if resource.namespaced && verbs.contains("list") {
        let mut parameters: Vec<Value> = LIST_PARAMETERS
            .iter()
            .filter(|name| **name != "watch" || verbs.contains("watch"))
            .map(|name| parameter_ref(name))
            .collect();
        parameters.push(parameter_ref("pretty"));
        let mut list = target.operation(
            "list",
            "list",
            "list or watch objects of kind",
            vec![],
            responses(&[("200", "OK")], &schemas.list_definition, LIST_MEDIA),
        );
        list["operationId"] = format!("list{infix}{kind}ForAllNamespaces").into();
        paths.insert(
            format!("{prefix}/{}", resource.plural),
            json!({ "get": list, "parameters": parameters }),
        );
    }

    // Item: read, replace, patch, delete. PATCH is always published: it is how kubectl learns
    // that the server validates fields, even for kinds whose only verb is create.
    let mut item_path = Map::new();
    if verbs.contains("get") {
        item_path.insert("get".into(), target.read());
    }
    if verbs.contains("update") {
        item_path.insert("put".into(), target.replace());
    }
    item_path.insert("patch".into(), target.patch());
    if verbs.contains("delete") {
        let parameters = DELETE_PARAMETERS
            .iter()
            .map(|name| parameter_ref(name))
            .collect();
        let mut operation = target.operation(
            "delete",
            "delete",
            "delete a",
            parameters,
            responses(&[("200", "OK"), ("202", "Accepted")], STATUS, READ_MEDIA),
        );
        operation["requestBody"] = json!({ "content": content(DELETE_OPTIONS, &["*/*"]) });
        item_path.insert("delete".into(), operation);
    }
    let mut item_parameters = vec![name_parameter.clone()];
    item_parameters.extend(namespace_parameter.iter().cloned());
    item_parameters.push(parameter_ref("pretty"));
    item_path.insert("parameters".into(), Value::Array(item_parameters.clone()));
    paths.insert(item.clone(), Value::Object(item_path));

    for subresource in &resource.subresources {
        let Some((path_item, definition)) =
            subresource_path(&target, subresource, scope, kind, group, version, schemas)
        else {
            continue;
        };
        roots.insert(definition);
        let mut path_item = path_item;
        path_item["parameters"] = Value::Array(item_parameters.clone());
        paths.insert(format!("{item}/{subresource}"), path_item);
    }
}

/// The path item for `<item>/<subresource>` and the schema its body uses; `None` for
/// subresources this crate does not describe.
fn subresource_path(
    parent: &Target<'_>,
    subresource: &str,
    scope: &str,
    kind: &str,
    group: &str,
    version: &str,
    schemas: &KindSchemas,
) -> Option<(Value, String)> {
    let noun = format!("{scope}{kind}{}", capitalize(subresource));
    match subresource {
        // Subresources whose body is the parent object itself.
        "status" | "ephemeralcontainers" | "resize" | "approval" => {
            let target = Target {
                tag: parent.tag.clone(),
                infix: parent.infix.clone(),
                noun,
                gvk: gvk(group, version, kind),
                definition: &schemas.definition,
                description: format!("{subresource} of the specified {kind}"),
            };
            Some((
                json!({ "get": target.read(), "put": target.replace(), "patch": target.patch() }),
                schemas.definition.clone(),
            ))
        }
        "finalize" => {
            let target = Target {
                tag: parent.tag.clone(),
                infix: parent.infix.clone(),
                noun,
                gvk: gvk(group, version, kind),
                definition: &schemas.definition,
                description: format!("finalize of the specified {kind}"),
            };
            Some((
                json!({ "put": target.replace() }),
                schemas.definition.clone(),
            ))
        }
        "scale" => {
            let scale = builtins().kind("autoscaling", "v1", "Scale")?;
            let target = Target {
                tag: parent.tag.clone(),
                infix: parent.infix.clone(),
                noun,
                gvk: gvk("autoscaling", "v1", "Scale"),
                definition: &scale.definition,
                description: format!("scale of the specified {kind}"),
            };
            Some((
                json!({ "get": target.read(), "put": target.replace(), "patch": target.patch() }),
                scale.definition.clone(),
            ))
        }
        "binding" | "eviction" | "token" => {
            let (group, version, body_kind) = match subresource {
                "binding" => ("", "v1", "Binding"),
                "eviction" => ("policy", "v1", "Eviction"),
                _ => ("authentication.k8s.io", "v1", "TokenRequest"),
            };
            let body = builtins().kind(group, version, body_kind)?;
            let target = Target {
                tag: parent.tag.clone(),
                infix: parent.infix.clone(),
                noun,
                gvk: self::gvk(group, version, body_kind),
                definition: &body.definition,
                description: format!("{body_kind} of the specified {kind}"),
            };
            Some((json!({ "post": target.create() }), body.definition.clone()))
        }
        "log" => {
            let mut read = parent.operation(
                "read",
                "get",
                "read log of the specified",
                ["container", "follow", "previous", "sinceSeconds", "tailLines", "timestamps"]
                    .iter()
                    .map(|name| query_parameter(name, name, json!({"type": "string"})))
                    .collect(),
                json!({ "200": { "description": "OK", "content": { "text/plain": { "schema": { "type": "string" } } } }, "401": { "description": "Unauthorized" } }),
            );
            read["operationId"] = format!("read{}{noun}", parent.infix).into();
            Some((json!({ "get": read }), STATUS.to_string()))
        }
        "exec" | "attach" | "portforward" | "proxy" => {
            let mut connect = parent.operation(
                "connect",
                "connect",
                &format!("connect {subresource} requests to"),
                vec![],
                json!({ "200": { "description": "OK", "content": { "*/*": { "schema": { "type": "string" } } } }, "401": { "description": "Unauthorized" } }),
            );
            connect["operationId"] = format!("connectGet{}{noun}", parent.infix).into();
            let mut post = connect.clone();
            post["operationId"] = format!("connectPost{}{noun}", parent.infix).into();
            Some((json!({ "get": connect, "post": post }), STATUS.to_string()))
        }
        _ => None,
    }
}
