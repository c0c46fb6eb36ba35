//! The `/openapi/v3` documents, checked the way kubectl reads them.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use openapi::{group_version_document, group_version_path, root_document, ResourceInfo};
use serde_json::{json, Value};

fn all_documents() -> Vec<((String, String), Value)> {
    common::group_versions()
        .into_iter()
        .map(|((group, version), resources)| {
            let document = group_version_document(&group, &version, &resources, &BTreeMap::new());
            ((group, version), document)
        })
        .collect()
}

/// kubectl's field-validation probe: the PATCH operation tagged with the GVK, and whether it
/// lists `fieldValidation` (inline or through `#/components/parameters`).
fn patch_supports_field_validation(
    document: &Value,
    group: &str,
    version: &str,
    kind: &str,
) -> Option<bool> {
    let wanted = json!({"group": group, "version": version, "kind": kind});
    for path_item in document["paths"].as_object()?.values() {
        let Some(patch) = path_item.get("patch") else {
            continue;
        };
        if patch["x-kubernetes-group-version-kind"] != wanted {
            continue;
        }
        let parameters = patch["parameters"].as_array()?;
        return Some(parameters.iter().any(|parameter| {
            let parameter = match parameter["$ref"].as_str() {
                Some(reference) => {
                    let name = reference.strip_prefix("#/components/parameters/").unwrap();
                    &document["components"]["parameters"][name]
                }
                None => parameter,
            };
            parameter["name"] == "fieldValidation" && parameter["in"] == "query"
        }));
    }
    None
}

#[test]
fn every_resource_has_a_patch_operation_accepting_field_validation() {
    for ((group, version), document) in all_documents() {
        for resource in common::resources()
            .iter()
            .filter(|r| r.group == group && r.version == version)
        {
            assert_eq!(
                patch_supports_field_validation(&document, &group, &version, &resource.kind),
                Some(true),
                "{group}/{version} {}",
                resource.kind
            );
        }
    }
}

#[test]
fn patch_request_bodies_leave_strategic_merge_to_kubectl() {
    for (_, document) in all_documents() {
        for (path, item) in document["paths"].as_object().unwrap() {
            let Some(patch) = item.get("patch") else {
                continue;
            };
            let body = resolve(&document, &patch["requestBody"]);
            let media: Vec<&str> = body["content"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                media,
                [
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml"
                ],
                "{path}"
            );
        }
    }
}

/// `value`, or what its `$ref` points at.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => document
            .pointer(reference.strip_prefix('#').expect("a local $ref"))
            .unwrap_or_else(|| panic!("dangling ref {reference}")),
        None => value,
    }
}

#[test]
fn operations_share_their_responses_and_bodies() {
    let documents = all_documents();
    let (_, core) = documents
        .iter()
        .find(|((group, version), _)| group.is_empty() && version == "v1")
        .expect("the core v1 document");
    let pods = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
    // Every response and body is a reference; they resolve to what the
    // operation says.
    let ok = resolve(core, &pods["get"]["responses"]["200"]);
    assert_eq!(ok["description"], "OK");
    assert_eq!(
        ok["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Pod"
    );
    let body = resolve(core, &pods["put"]["requestBody"]);
    assert_eq!(
        body["content"]["*/*"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Pod"
    );
    assert_eq!(body["required"], true);
    for (path, item) in core["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (code, response) in operation["responses"].as_object().into_iter().flatten() {
                assert!(
                    response.get("$ref").is_some(),
                    "{method} {path} {code}: response inline"
                );
            }
            if let Some(body) = operation.get("requestBody") {
                assert!(body.get("$ref").is_some(), "{method} {path}: body inline");
            }
        }
    }
    // Each distinct response is there once.
    let shared = core["components"]["responses"].as_object().unwrap();
    let distinct: std::collections::BTreeSet<String> =
        shared.values().map(Value::to_string).collect();
    assert_eq!(distinct.len(), shared.len(), "a response is there twice");
}

fn check_refs(value: &Value, document: &Value, at: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                let pointer = reference
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("{at}: non-local ref {reference}"));
                assert!(
                    document.pointer(pointer).is_some(),
                    "{at}: dangling ref {reference}"
                );
                assert_eq!(
                    map.len(),
                    1,
                    "{at}: $ref with siblings is ignored by OpenAPI 3.0: {value}"
                );
            }
            for (key, child) in map {
                check_refs(child, document, &format!("{at}/{key}"));
            }
        }
        Value::Array(list) => list
            .iter()
            .for_each(|child| check_refs(child, document, at)),
        _ => {}
    }
}

#[test]
fn every_ref_resolves_inside_its_document() {
    for ((group, version), document) in all_documents() {
        check_refs(&document, &document, &group_version_path(&group, &version));
    }
}

#[test]
fn every_definition_ref_resolves_inside_definitions() {
    let document = json!({"components": {"schemas": openapi::definitions()}});
    check_refs(&document, &document, "definitions");
}

#[test]
fn documents_are_openapi_3_0() {
    fn walk(value: &Value, at: &str) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    // "$schema" is a legitimate property *name* inside JSONSchemaProps.
                    if !at.ends_with("/properties") {
                        assert_ne!(key, "$schema", "{at}");
                        assert_ne!(key, "const", "{at}");
                        if key == "type" {
                            assert!(child.is_string(), "{at}: type must be a string: {child}");
                        }
                    }
                    walk(child, &format!("{at}/{key}"));
                }
            }
            Value::Array(list) => list.iter().for_each(|child| walk(child, at)),
            _ => {}
        }
    }
    for (_, document) in all_documents() {
        assert_eq!(document["openapi"], "3.0.0");
        walk(&document["components"]["schemas"], "#/components/schemas");
    }
}

#[test]
fn documents_round_trip_through_json() {
    for (_, document) in all_documents() {
        let text = serde_json::to_string(&document).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, document);
        assert_eq!(serde_json::to_string(&parsed).unwrap(), text);
    }
}

#[test]
fn pod_schema_has_description_spec_status_and_its_gvk() {
    let pod = openapi::schema_for("", "v1", "Pod").unwrap();
    assert!(pod["description"]
        .as_str()
        .unwrap()
        .starts_with("Pod is a collection of containers"));
    assert!(
        pod["properties"]["spec"]["allOf"][0]["$ref"]
            == "#/components/schemas/io.k8s.api.core.v1.PodSpec"
    );
    assert!(pod["properties"]["status"]["description"].is_string());
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );
    let list = openapi::schema_for("", "v1", "PodList").unwrap();
    assert_eq!(
        list["properties"]["items"]["items"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Pod"
    );
    assert_eq!(
        list["x-kubernetes-group-version-kind"][0]["kind"],
        "PodList"
    );
}

#[test]
fn definitions_use_kubernetes_names_and_shapes() {
    let definitions = openapi::definitions();
    for name in [
        "io.k8s.api.core.v1.Pod",
        "io.k8s.api.apps.v1.Deployment",
        "io.k8s.api.events.v1.Event",
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
    ] {
        assert!(definitions.contains_key(name), "{name}");
    }
    let quantity = &definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"];
    assert_eq!(
        quantity["oneOf"],
        json!([{"type": "string"}, {"type": "number"}])
    );
    assert!(
        quantity.get("x-kubernetes-int-or-string").is_none() && quantity["description"].is_string()
    );
    assert_eq!(
        definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
            ["x-kubernetes-int-or-string"],
        true
    );
    assert_eq!(
        definitions["io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"]
            ["x-kubernetes-preserve-unknown-fields"],
        true
    );
    for name in definitions.keys() {
        assert!(name.starts_with("io.k8s."), "{name}");
        // schemars appends a counter when two types share a name; none may.
        let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
        assert!(stem == name || !definitions.contains_key(stem), "{name}");
    }
}

/// kubectl explain: find the schema by GVK, then follow properties through `$ref`/`allOf`/`items`.
fn explain<'a>(
    document: &'a Value,
    group: &str,
    version: &str,
    kind: &str,
    fields: &[&str],
) -> &'a Value {
    let wanted = json!({"group": group, "version": version, "kind": kind});
    let schemas = document["components"]["schemas"].as_object().unwrap();
    let resolve = |mut schema: &'a Value| loop {
        if let Some(reference) = schema["$ref"].as_str() {
            schema = &schemas[reference.strip_prefix("#/components/schemas/").unwrap()];
        } else if schema["allOf"].as_array().is_some_and(|a| a.len() == 1) {
            schema = &schema["allOf"][0];
        } else if schema["items"].is_object() {
            schema = &schema["items"];
        } else {
            return schema;
        }
    };
    let mut schema = schemas
        .values()
        .find(|s| {
            s["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|l| l.contains(&wanted))
        })
        .unwrap_or_else(|| panic!("no schema for {wanted}"));
    for field in fields {
        schema = resolve(&schema["properties"][*field]);
    }
    schema
}

#[test]
fn explain_walks_from_the_kind_into_nested_fields() {
    let documents = all_documents();
    let core = &documents.iter().find(|((g, _), _)| g.is_empty()).unwrap().1;
    let container = explain(core, "", "v1", "Pod", &["spec", "containers"]);
    assert!(container["description"]
        .as_str()
        .unwrap()
        .starts_with("A single application container"));
    assert_eq!(container["required"], json!(["name"]));
    assert!(container["properties"]["image"]["description"].is_string());
    let port = explain(core, "", "v1", "Service", &["spec", "ports", "targetPort"]);
    assert_eq!(port["x-kubernetes-int-or-string"], true);
    let apps = &documents.iter().find(|((g, _), _)| g == "apps").unwrap().1;
    let strategy = explain(
        apps,
        "apps",
        "v1",
        "Deployment",
        &["spec", "strategy", "rollingUpdate"],
    );
    assert!(strategy["properties"]["maxSurge"].is_object());
}

#[test]
fn subresources_are_published_with_the_right_gvk() {
    let apps = common::group_versions()
        .into_iter()
        .find(|((g, _), _)| g == "apps")
        .unwrap()
        .1;
    let document = group_version_document("apps", "v1", &apps, &BTreeMap::new());
    let scale = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["patch"]["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
    );
    assert_eq!(
        scale["patch"]["operationId"],
        "patchAppsV1NamespacedDeploymentScale"
    );
    assert!(document["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());
    let status =
        &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"];
    assert_eq!(status["get"]["x-kubernetes-action"], "get");
    assert_eq!(
        status["put"]["operationId"],
        "replaceAppsV1NamespacedDeploymentStatus"
    );
    let collection = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"];
    assert_eq!(
        collection["get"]["operationId"],
        "listAppsV1NamespacedDeployment"
    );
    assert_eq!(collection["post"]["x-kubernetes-action"], "post");
    assert_eq!(
        collection["delete"]["operationId"],
        "deleteAppsV1CollectionNamespacedDeployment"
    );
    assert!(
        document["paths"]["/apis/apps/v1/deployments"]["get"]["operationId"]
            == "listAppsV1DeploymentForAllNamespaces"
    );
}

#[test]
fn verbs_limit_operations_but_patch_is_always_there() {
    let binding = ResourceInfo {
        group: String::new(),
        version: "v1".into(),
        kind: "Binding".into(),
        plural: "bindings".into(),
        namespaced: true,
        subresources: vec![],
        verbs: vec!["create".into()],
    };
    let document = group_version_document("", "v1", &[binding], &BTreeMap::new());
    let paths = document["paths"].as_object().unwrap();
    let collection = &paths["/api/v1/namespaces/{namespace}/bindings"];
    assert!(collection["post"].is_object());
    assert!(collection.get("get").is_none() && collection.get("delete").is_none());
    assert!(!paths.contains_key("/api/v1/bindings"));
    let item = &paths["/api/v1/namespaces/{namespace}/bindings/{name}"];
    assert!(item["patch"].is_object() && item.get("get").is_none() && item.get("delete").is_none());
}

#[test]
fn custom_resources_get_their_crd_schema_with_object_meta() {
    let crontab = ResourceInfo {
        group: "stable.example.com".into(),
        version: "v1".into(),
        kind: "CronTab".into(),
        plural: "crontabs".into(),
        namespaced: true,
        subresources: vec!["status".into(), "scale".into()],
        verbs: vec![],
    };
    let schema = json!({
        "type": "object",
        "description": "A cron table.",
        "properties": {"spec": {"type": "object", "properties": {"cronSpec": {"type": "string"}, "replicas": {"type": "integer"}}}}
    });
    let extra = BTreeMap::from([("CronTab".to_string(), schema)]);
    let document = group_version_document("stable.example.com", "v1", &[crontab], &extra);
    check_refs(&document, &document, "crd");
    assert_eq!(
        patch_supports_field_validation(&document, "stable.example.com", "v1", "CronTab"),
        Some(true)
    );
    let spec = explain(&document, "stable.example.com", "v1", "CronTab", &["spec"]);
    assert_eq!(spec["properties"]["cronSpec"]["type"], "string");
    let metadata = explain(
        &document,
        "stable.example.com",
        "v1",
        "CronTab",
        &["metadata"],
    );
    assert!(metadata["properties"]["labels"].is_object());
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["com.example.stable.v1.CronTab"]["description"],
        "A cron table."
    );
    assert_eq!(
        schemas["com.example.stable.v1.CronTabList"]["x-kubernetes-group-version-kind"][0]["kind"],
        "CronTabList"
    );
    assert!(document["paths"]
        ["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]
        .is_object());

    // Without a schema the kind still has a document entry that accepts anything.
    let widget = ResourceInfo {
        kind: "Widget".into(),
        plural: "widgets".into(),
        ..ResourceInfo::default()
    };
    let document = group_version_document("stable.example.com", "v1", &[widget], &BTreeMap::new());
    assert_eq!(
        document["components"]["schemas"]["com.example.stable.v1.Widget"]
            ["x-kubernetes-preserve-unknown-fields"],
        true
    );
}

#[test]
fn root_document_points_at_each_group_version_with_its_hash() {
    let group_versions = vec![
        (String::new(), "v1".to_string()),
        ("apps".to_string(), "v1".to_string()),
    ];
    let root = root_document(&group_versions, |group, version| {
        format!("{group}-{version}")
    });
    assert_eq!(
        root,
        json!({"paths": {
            "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=-v1"},
            "apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=apps-v1"},
        }})
    );
    assert_eq!(
        openapi::parse_group_version_path("/openapi/v3/api/v1"),
        Some((String::new(), "v1".into()))
    );
    assert_eq!(
        openapi::parse_group_version_path("apis/apps/v1"),
        Some(("apps".into(), "v1".into()))
    );
    assert_eq!(openapi::parse_group_version_path("apis/apps"), None);
}

#[test]
fn document_hash_changes_with_content() {
    let a = openapi::document_hash(&json!({"a": 1}));
    assert_eq!(a, openapi::document_hash(&json!({"a": 1})));
    assert_ne!(a, openapi::document_hash(&json!({"a": 2})));
    assert_eq!(a.len(), 32);
}

#[test]
fn building_every_document_is_fast() {
    let started = Instant::now();
    let definitions = openapi::definitions().len();
    let definitions_took = started.elapsed();
    let mut bytes = 0;
    let mut report = Vec::new();
    for ((group, version), document) in all_documents() {
        let text = serde_json::to_string(&document).unwrap();
        bytes += text.len();
        report.push(format!(
            "{} {}B",
            group_version_path(&group, &version),
            text.len()
        ));
    }
    let total = started.elapsed();
    eprintln!("{definitions} definitions in {definitions_took:?}; all documents + serialization in {total:?}; {bytes} bytes");
    eprintln!("{}", report.join(", "));
    // Generous: debug builds are several times slower than release.
    assert!(total.as_secs() < 5, "{total:?}");
}
