//! `unknown_fields`: one line per case, object in, unknown paths out.

use openapi::{unknown_fields, unknown_fields_in_schema};
use serde_json::{json, Value};

fn check(group: &str, version: &str, kind: &str, object: Value, expected: &[&str]) {
    assert_eq!(
        unknown_fields(&object, group, version, kind),
        expected,
        "{kind}: {object}"
    );
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

#[test]
fn built_in_kinds() {
    check(
        "",
        "v1",
        "Pod",
        pod(json!({"containers": [{"name": "c", "image": "nginx"}]})),
        &[],
    );
    check(
        "",
        "v1",
        "Pod",
        pod(json!({"containers": [{"name": "c", "imagee": "nginx"}]})),
        &[".spec.containers[0].imagee"],
    );
    check(
        "",
        "v1",
        "Pod",
        pod(json!({"containers": [{"name": "a"}, {"name": "b", "portz": []}]})),
        &[".spec.containers[1].portz"],
    );
    check(
        "",
        "v1",
        "Pod",
        json!({"apiVersion": "v1", "kind": "Pod", "spek": {}, "metadata": {"nam": "x"}}),
        &[".spek", ".metadata.nam"],
    );
    // Nested lists of objects.
    check(
        "",
        "v1",
        "Pod",
        pod(json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostt": 1}]}]})),
        &[".spec.containers[0].ports[0].hostt"],
    );
    // Maps: labels, annotations, resources limits (Quantity values), nodeSelector.
    check(
        "",
        "v1",
        "Pod",
        json!({"metadata": {"labels": {"app": "x", "any.key/name": "y"}, "annotations": {"a": "b"}}}),
        &[],
    );
    check(
        "",
        "v1",
        "Pod",
        pod(
            json!({"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": 1024}}}]}),
        ),
        &[],
    );
    // int-or-string accepts both forms and is not an object.
    check(
        "",
        "v1",
        "Service",
        json!({"spec": {"ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8081, "nodePortt": 1}]}}),
        &[".spec.ports[1].nodePortt"],
    );
    check(
        "apps",
        "v1",
        "Deployment",
        json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}}, "template": {"spec": {"containers": [{"name": "c", "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x", "bogus": 1}}}]}]}}}}),
        &[".spec.template.spec.containers[0].env[0].valueFrom.fieldRef.bogus"],
    );
    // Opaque values (RawExtension, FieldsV1) keep whatever they hold.
    check(
        "",
        "v1",
        "Pod",
        json!({"metadata": {"managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {"f:x": {}}}}]}}),
        &[],
    );
    check(
        "apps",
        "v1",
        "ControllerRevision",
        json!({"data": {"anything": {"goes": 1}}, "revision": 1}),
        &[],
    );
    // Secrets: byte-string maps.
    check(
        "",
        "v1",
        "Secret",
        json!({"data": {"k": "dg=="}, "stringData": {"a": "b"}, "typ": "Opaque"}),
        &[".typ"],
    );
    // List kinds.
    check(
        "",
        "v1",
        "PodList",
        json!({"items": [{"metadata": {"name": "a"}, "spek": 1}]}),
        &[".items[0].spek"],
    );
    // Scalars where objects are expected are a type error, not an unknown field.
    check("", "v1", "Pod", json!({"spec": "nonsense"}), &[]);
    // No built-in schema: nothing to say.
    check("example.com", "v1", "Widget", json!({"anything": 1}), &[]);
    // CRD schemas inside CustomResourceDefinition are JSONSchemaProps, including "$ref"-named fields.
    check(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        json!({"spec": {"group": "g", "versions": [{"name": "v1", "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {"type": "string", "$ref": "x"}}, "typo": 1}}}]}}),
        &[".spec.versions[0].schema.openAPIV3Schema.typo"],
    );
}

fn check_schema(schema: Value, object: Value, expected: &[&str]) {
    assert_eq!(
        unknown_fields_in_schema(&object, &schema),
        expected,
        "{schema} / {object}"
    );
}

#[test]
fn custom_resource_schemas() {
    let crontab = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "cronSpec": {"type": "string"},
                    "template": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                    "tags": {"type": "object", "additionalProperties": {"type": "object", "properties": {"value": {"type": "string"}}}},
                    "free": {"type": "object", "additionalProperties": true},
                    "port": {"x-kubernetes-int-or-string": true},
                    "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                    "empty": {"type": "object"},
                    "embedded": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
                }
            }
        }
    });
    let base = |spec: Value| json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "x", "labels": {"a": "b"}}, "spec": spec});
    check_schema(crontab.clone(), base(json!({"cronSpec": "* * * * *"})), &[]);
    check_schema(
        crontab.clone(),
        base(json!({"cronSpecc": "x"})),
        &[".spec.cronSpecc"],
    );
    check_schema(
        crontab.clone(),
        json!({"metadata": {"nme": "x"}, "status": {}}),
        &[".metadata.nme", ".status"],
    );
    // preserve-unknown-fields keeps unknown fields but still checks the known ones below it.
    check_schema(
        crontab.clone(),
        base(json!({"template": {"whatever": {"x": 1}, "known": {"a": "s", "b": 1}}})),
        &[".spec.template.known.b"],
    );
    // additionalProperties with a schema checks each value; `true` allows anything.
    check_schema(
        crontab.clone(),
        base(
            json!({"tags": {"one": {"value": "v"}, "two": {"valu": "v"}}, "free": {"x": {"y": 1}}}),
        ),
        &[".spec.tags.two.valu"],
    );
    check_schema(
        crontab.clone(),
        base(json!({"port": 80, "items": [{"name": "a"}, {"nam": "b"}]})),
        &[".spec.items[1].nam"],
    );
    check_schema(crontab.clone(), base(json!({"port": "http"})), &[]);
    // An object schema without properties prunes everything, as the API server does.
    check_schema(
        crontab.clone(),
        base(json!({"empty": {"x": 1}})),
        &[".spec.empty.x"],
    );
    // Embedded resources implicitly declare apiVersion, kind and metadata.
    check_schema(
        crontab.clone(),
        base(
            json!({"embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "n", "bogus": 1}, "spec": {"x": 1}, "other": 1}}),
        ),
        &[".spec.embedded.metadata.bogus", ".spec.embedded.other"],
    );
    // A schema that describes nothing accepts anything.
    check_schema(json!({}), json!({"spec": {"anything": 1}}), &[]);
    check_schema(
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        json!({"spec": {"anything": 1}, "metadata": {"x": 1}}),
        &[".metadata.x"],
    );
}
