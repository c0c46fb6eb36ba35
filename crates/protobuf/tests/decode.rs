//! Round trips: objects built with k8s-pb's typed messages, encoded as a real client would, must
//! decode to the JSON a JSON client would have sent.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{json, Value};

/// The body kubectl sends: magic + runtime.Unknown around the encoded object.
fn envelope(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_owned()),
            kind: Some(kind.to_owned()),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\x00".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn check(api_version: &str, kind: &str, object: &impl Message, want: Value) {
    let body = envelope(api_version, kind, object);
    let got = protobuf::decode_object(&body).unwrap_or_else(|e| panic!("{kind}: {e}"));
    assert_eq!(got, want, "{kind}:\n{got:#}");
}

fn s(value: &str) -> Option<String> {
    Some(value.to_owned())
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity { string: s(v) }))
        .collect()
}

fn int_or_string_int(value: i32) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(0),
        int_val: Some(value),
        str_val: s(""),
    })
}

fn int_or_string_str(value: &str) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: s(value),
    })
}

/// 2026-01-02T03:04:05Z
const SECONDS: i64 = 1_767_323_045;

fn metadata(name: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: s(name),
        namespace: s("default"),
        // Go always writes the non-pointer creationTimestamp, as an empty message when unset.
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    })
}

fn meta_json(name: &str) -> Value {
    json!({"name": name, "namespace": "default"})
}

#[test]
fn config_map_with_data_and_binary_data() {
    let config_map = core::ConfigMap {
        metadata: metadata("settings"),
        data: map(&[("a", "1"), ("b", "two")]),
        binary_data: [("blob".to_owned(), vec![0u8, 1, 2, 255])].into(),
        immutable: Some(true),
    };
    check(
        "v1",
        "ConfigMap",
        &config_map,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta_json("settings"),
            "data": {"a": "1", "b": "two"},
            "binaryData": {"blob": "AAEC/w=="},
            "immutable": true,
        }),
    );
}

#[test]
fn secret_bytes_become_base64() {
    let secret = core::Secret {
        metadata: metadata("token"),
        data: [("password".to_owned(), b"hunter2".to_vec())].into(),
        string_data: map(&[("user", "admin")]),
        r#type: s("Opaque"),
        immutable: None,
    };
    check(
        "v1",
        "Secret",
        &secret,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta_json("token"),
            "data": {"password": "aHVudGVyMg=="},
            "stringData": {"user": "admin"},
            "type": "Opaque",
        }),
    );
}

#[test]
fn namespace_with_labels_and_creation_timestamp() {
    let namespace = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            name: s("team-a"),
            labels: map(&[("team", "a")]),
            annotations: map(&[("note", "x")]),
            creation_timestamp: Some(meta::Time {
                seconds: Some(SECONDS),
                nanos: Some(0),
            }),
            generation: Some(3),
            finalizers: vec!["kubernetes".to_owned()],
            ..Default::default()
        }),
        spec: Some(core::NamespaceSpec::default()),
        status: None,
    };
    check(
        "v1",
        "Namespace",
        &namespace,
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "team-a",
                "labels": {"team": "a"},
                "annotations": {"note": "x"},
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "generation": 3,
                "finalizers": ["kubernetes"],
            },
            "spec": {},
        }),
    );
}

#[test]
fn deployment_with_containers_resources_strategy_and_owner() {
    let container = core::Container {
        name: s("web"),
        image: s("nginx:1.27"),
        args: vec!["--port".to_owned(), "8080".to_owned()],
        ports: vec![core::ContainerPort {
            name: s("http"),
            container_port: Some(8080),
            protocol: s("TCP"),
            ..Default::default()
        }],
        resources: Some(core::ResourceRequirements {
            limits: quantities(&[("cpu", "500m"), ("memory", "128Mi")]),
            requests: quantities(&[("cpu", "250m")]),
            claims: Vec::new(),
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: s("/healthz"),
                    port: int_or_string_str("http"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    };
    let deployment = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: s("web"),
            namespace: s("default"),
            labels: map(&[("app", "web")]),
            owner_references: vec![meta::OwnerReference {
                api_version: s("example.com/v1"),
                kind: s("App"),
                name: s("web"),
                uid: s("0b5f7b2e-1111-2222-3333-444455556666"),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }],
            creation_timestamp: Some(meta::Time {
                seconds: Some(SECONDS),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: map(&[("app", "web")]),
                match_expressions: Vec::new(),
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: map(&[("app", "web")]),
                    creation_timestamp: Some(meta::Time::default()),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: int_or_string_int(1),
                    max_surge: int_or_string_str("25%"),
                }),
            }),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    check(
        "apps/v1",
        "Deployment",
        &deployment,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "labels": {"app": "web"},
                "ownerReferences": [{
                    "apiVersion": "example.com/v1",
                    "kind": "App",
                    "name": "web",
                    "uid": "0b5f7b2e-1111-2222-3333-444455556666",
                    "controller": true,
                    "blockOwnerDeletion": true,
                }],
                "creationTimestamp": "2026-01-02T03:04:05Z",
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "web",
                            "image": "nginx:1.27",
                            "args": ["--port", "8080"],
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "resources": {
                                "limits": {"cpu": "500m", "memory": "128Mi"},
                                "requests": {"cpu": "250m"},
                            },
                            // ProbeHandler is embedded in Probe in Go, so httpGet sits on the probe.
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 5,
                            },
                        }],
                    },
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"},
                },
            },
            "status": {},
        }),
    );
}

#[test]
fn service_with_target_ports() {
    let service = core::Service {
        metadata: metadata("web"),
        spec: Some(core::ServiceSpec {
            r#type: s("ClusterIP"),
            selector: map(&[("app", "web")]),
            ports: vec![
                core::ServicePort {
                    name: s("http"),
                    port: Some(80),
                    target_port: int_or_string_int(8080),
                    protocol: s("TCP"),
                    ..Default::default()
                },
                core::ServicePort {
                    name: s("https"),
                    port: Some(443),
                    target_port: int_or_string_str("https"),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        status: None,
    };
    check(
        "v1",
        "Service",
        &service,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta_json("web"),
            "spec": {
                "type": "ClusterIP",
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                    {"name": "https", "port": 443, "targetPort": "https"},
                ],
            },
        }),
    );
}

#[test]
fn job_with_embedded_volume_source() {
    let job = batch::Job {
        metadata: metadata("migrate"),
        spec: Some(batch::JobSpec {
            backoff_limit: Some(4),
            completions: Some(1),
            active_deadline_seconds: Some(600),
            template: Some(core::PodTemplateSpec {
                metadata: None,
                spec: Some(core::PodSpec {
                    restart_policy: s("Never"),
                    containers: vec![core::Container {
                        name: s("migrate"),
                        image: s("busybox"),
                        command: vec!["sh".to_owned(), "-c".to_owned(), "true".to_owned()],
                        env: vec![core::EnvVar {
                            name: s("PASSWORD"),
                            value_from: Some(core::EnvVarSource {
                                secret_key_ref: Some(core::SecretKeySelector {
                                    local_object_reference: Some(core::LocalObjectReference {
                                        name: s("db"),
                                    }),
                                    key: s("password"),
                                    optional: None,
                                }),
                                ..Default::default()
                            }),
                            value: None,
                        }],
                        ..Default::default()
                    }],
                    volumes: vec![core::Volume {
                        name: s("config"),
                        volume_source: Some(core::VolumeSource {
                            config_map: Some(core::ConfigMapVolumeSource {
                                local_object_reference: Some(core::LocalObjectReference {
                                    name: s("settings"),
                                }),
                                default_mode: Some(0o644),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    check(
        "batch/v1",
        "Job",
        &job,
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta_json("migrate"),
            "spec": {
                "backoffLimit": 4,
                "completions": 1,
                "activeDeadlineSeconds": 600,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "migrate",
                            "image": "busybox",
                            "command": ["sh", "-c", "true"],
                            "env": [{
                                "name": "PASSWORD",
                                "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
                            }],
                        }],
                        "volumes": [{
                            "name": "config",
                            "configMap": {"name": "settings", "defaultMode": 420},
                        }],
                    },
                },
            },
        }),
    );
}

#[test]
fn eviction_and_delete_options_under_any_group_version() {
    let eviction = policy::Eviction {
        metadata: metadata("web-0"),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(30),
            propagation_policy: s("Background"),
            dry_run: vec!["All".to_owned()],
            ..Default::default()
        }),
    };
    check(
        "policy/v1",
        "Eviction",
        &eviction,
        json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": meta_json("web-0"),
            "deleteOptions": {
                "gracePeriodSeconds": 30,
                "propagationPolicy": "Background",
                "dryRun": ["All"],
            },
        }),
    );
    let options = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    check(
        "apps/v1",
        "DeleteOptions",
        &options,
        json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}),
    );
}

#[test]
fn controller_revision_raw_extension_holds_json() {
    let revision = apps::ControllerRevision {
        metadata: metadata("web-1"),
        data: Some(RawExtension {
            raw: Some(br#"{"spec":{"replicas":2}}"#.to_vec()),
        }),
        revision: Some(1),
    };
    check(
        "apps/v1",
        "ControllerRevision",
        &revision,
        json!({
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": meta_json("web-1"),
            "data": {"spec": {"replicas": 2}},
            "revision": 1,
        }),
    );
}

#[test]
fn events_v1_micro_time() {
    let event = k8s_pb::api::events::v1::Event {
        metadata: metadata("web.1"),
        event_time: Some(meta::MicroTime {
            seconds: Some(SECONDS),
            nanos: Some(123_456_789),
        }),
        reason: s("Started"),
        ..Default::default()
    };
    check(
        "events.k8s.io/v1",
        "Event",
        &event,
        json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": meta_json("web.1"),
            "eventTime": "2026-01-02T03:04:05.123456Z",
            "reason": "Started",
        }),
    );
}

#[test]
fn custom_resource_definition_schema() {
    let string_schema = apiextensions::JsonSchemaProps {
        r#type: s("string"),
        default: Some(apiextensions::Json {
            raw: Some(br#""small""#.to_vec()),
        }),
        r#enum: vec![
            apiextensions::Json {
                raw: Some(br#""small""#.to_vec()),
            },
            apiextensions::Json {
                raw: Some(br#""large""#.to_vec()),
            },
        ],
        ..Default::default()
    };
    let spec_schema = apiextensions::JsonSchemaProps {
        r#type: s("object"),
        properties: [
            ("size".to_owned(), string_schema),
            (
                "tags".to_owned(),
                apiextensions::JsonSchemaProps {
                    r#type: s("array"),
                    items: Some(Box::new(apiextensions::JsonSchemaPropsOrArray {
                        schema: Some(Box::new(apiextensions::JsonSchemaProps {
                            r#type: s("string"),
                            ..Default::default()
                        })),
                        j_son_schemas: Vec::new(),
                    })),
                    ..Default::default()
                },
            ),
            (
                "extra".to_owned(),
                apiextensions::JsonSchemaProps {
                    r#type: s("object"),
                    additional_properties: Some(Box::new(apiextensions::JsonSchemaPropsOrBool {
                        allows: Some(true),
                        schema: None,
                    })),
                    x_kubernetes_preserve_unknown_fields: Some(true),
                    ..Default::default()
                },
            ),
        ]
        .into(),
        required: vec!["size".to_owned()],
        ..Default::default()
    };
    let crd = apiextensions::CustomResourceDefinition {
        metadata: Some(meta::ObjectMeta {
            name: s("widgets.example.com"),
            ..Default::default()
        }),
        spec: Some(apiextensions::CustomResourceDefinitionSpec {
            group: s("example.com"),
            names: Some(apiextensions::CustomResourceDefinitionNames {
                plural: s("widgets"),
                kind: s("Widget"),
                ..Default::default()
            }),
            scope: s("Namespaced"),
            versions: vec![apiextensions::CustomResourceDefinitionVersion {
                name: s("v1"),
                served: Some(true),
                storage: Some(true),
                schema: Some(apiextensions::CustomResourceValidation {
                    open_apiv3_schema: Some(apiextensions::JsonSchemaProps {
                        r#type: s("object"),
                        properties: [("spec".to_owned(), spec_schema)].into(),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    check(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        &crd,
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"plural": "widgets", "kind": "Widget"},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1",
                    "served": true,
                    "storage": true,
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "properties": {"spec": {
                            "type": "object",
                            "required": ["size"],
                            "properties": {
                                "size": {"type": "string", "default": "small", "enum": ["small", "large"]},
                                "tags": {"type": "array", "items": {"type": "string"}},
                                "extra": {
                                    "type": "object",
                                    "additionalProperties": true,
                                    "x-kubernetes-preserve-unknown-fields": true,
                                },
                            },
                        }},
                    }},
                }],
            },
        }),
    );
}

#[test]
fn unknown_fields_are_skipped_and_packed_scalars_accepted() {
    let mut raw = core::ConfigMap {
        metadata: metadata("x"),
        ..Default::default()
    }
    .encode_to_vec();
    // Field 99, varint 7: a field from a newer Kubernetes.
    raw.extend([0x98, 0x06, 0x07]);
    let body = raw_envelope("v1", "ConfigMap", &raw);
    assert_eq!(
        protobuf::decode_object(&body).unwrap(),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta_json("x")})
    );

    // Kubernetes writes repeated scalars unpacked; protobuf says a decoder must take both forms.
    // ContainerRestartRuleOnExitCodes.values is a repeated int32 inside a Pod.
    let on_exit = core::ContainerRestartRuleOnExitCodes {
        operator: s("In"),
        values: vec![1, 2, 300],
    };
    let unpacked = on_exit.encode_to_vec();
    // Same field (tag 2) packed: one length-delimited run of varints.
    let mut packed = core::ContainerRestartRuleOnExitCodes {
        operator: s("In"),
        values: Vec::new(),
    }
    .encode_to_vec();
    packed.extend([0x12, 0x04, 0x01, 0x02, 0xac, 0x02]);
    let pod = |exit_codes: &[u8]| {
        // Container.restartPolicyRules (tag 25) → ContainerRestartRule.exitCodes (tag 2).
        let mut rule = core::ContainerRestartRule {
            action: s("Restart"),
            exit_codes: None,
        }
        .encode_to_vec();
        rule.push(0x12);
        rule.push(exit_codes.len() as u8);
        rule.extend(exit_codes);
        let mut container = core::Container {
            name: s("c"),
            ..Default::default()
        }
        .encode_to_vec();
        container.extend([0xca, 0x01, rule.len() as u8]);
        container.extend(rule);
        let mut spec = Vec::new();
        spec.extend([0x12, container.len() as u8]);
        spec.extend(container);
        let mut pod = vec![0x12, spec.len() as u8];
        pod.extend(spec);
        protobuf::decode_object(&raw_envelope("v1", "Pod", &pod)).unwrap()
    };
    let want = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{
        "name": "c",
        "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "In", "values": [1, 2, 300]}}],
    }]}});
    assert_eq!(pod(&unpacked), want);
    assert_eq!(pod(&packed), want);
}

fn raw_envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s(api_version),
            kind: s(kind),
        }),
        raw: Some(raw.to_vec()),
        content_encoding: None,
        content_type: None,
    };
    let mut body = b"k8s\x00".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

#[test]
fn envelope_errors() {
    let config_map = core::ConfigMap::default().encode_to_vec();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"{\"kind\":\"ConfigMap\"}".to_vec(),
            "missing k8s protobuf magic",
        ),
        (Vec::new(), "missing k8s protobuf magic"),
        (
            raw_envelope("apps/v1", "Foo", &config_map),
            "unknown kind apps/v1 Foo",
        ),
        (
            raw_envelope("", "", &config_map),
            "runtime.Unknown envelope has no typeMeta kind",
        ),
        (b"k8s\x00\x12\x80".to_vec(), "truncated varint at byte 5"),
        (
            {
                let mut body = raw_envelope("v1", "ConfigMap", &config_map);
                body.extend([0x1a, 0x04]);
                body.extend(b"gzip");
                body
            },
            "unsupported content encoding \"gzip\"",
        ),
        (
            // metadata (tag 1) sent as a varint.
            raw_envelope("v1", "ConfigMap", &[0x08, 0x01]),
            "io.k8s.api.core.v1.ConfigMap field 1: expected length-delimited, got varint",
        ),
        (
            // data entry whose value claims 9 bytes but has 1.
            raw_envelope(
                "v1",
                "ConfigMap",
                &[0x12, 0x05, 0x0a, 0x01, b'k', 0x12, 0x09],
            ),
            "truncated length-delimited field at byte 30: needs 9 bytes, 0 left",
        ),
    ];
    for (body, want) in cases {
        let err = protobuf::decode_object(&body).expect_err(want);
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn every_truncation_of_a_valid_body_fails_cleanly() {
    let secret = core::Secret {
        metadata: metadata("token"),
        data: [("password".to_owned(), b"hunter2".to_vec())].into(),
        r#type: s("Opaque"),
        ..Default::default()
    };
    // Without the trailing contentEncoding/contentType fields, so raw ends the body.
    let body = raw_envelope("v1", "Secret", &secret.encode_to_vec());
    protobuf::decode_object(&body).unwrap();
    for len in 0..body.len() {
        // A cut can land on a field boundary and still parse; it must never panic.
        let _ = protobuf::decode_object(&body[..len]);
    }
    // Cutting inside the envelope's raw field always leaves a length that overruns the input.
    let raw_start = body.len() - secret.encode_to_vec().len();
    for len in raw_start..body.len() {
        assert!(protobuf::decode_object(&body[..len]).is_err(), "len {len}");
    }
}

#[test]
fn garbage_never_panics() {
    let deployment = apps::Deployment {
        metadata: metadata("web"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(2),
            ..Default::default()
        }),
        status: None,
    };
    let valid = envelope("apps/v1", "Deployment", &deployment);
    // A fixed xorshift sequence: reproducible without a rand dependency.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut body = valid.clone();
        for _ in 0..(next() % 4 + 1) {
            let at = 4 + (next() as usize) % (body.len() - 4);
            body[at] = next() as u8;
        }
        let _ = protobuf::decode_object(&body);
        let random: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
        let mut body = b"k8s\x00".to_vec();
        body.extend(random);
        let _ = protobuf::decode_object(&body);
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    // JSONSchemaProps.not (tag 28) nested 1 000 times inside a CRD's openAPIV3Schema.
    let mut schema: Vec<u8> = Vec::new();
    for _ in 0..1_000 {
        let mut outer = vec![0xe2, 0x01]; // tag 28, length-delimited
        let mut len = schema.len();
        while len >= 0x80 {
            outer.push((len as u8) | 0x80);
            len >>= 7;
        }
        outer.push(len as u8);
        outer.extend(&schema);
        schema = outer;
    }
    let validation = {
        let mut v = vec![0x0a];
        let mut len = schema.len();
        while len >= 0x80 {
            v.push((len as u8) | 0x80);
            len >>= 7;
        }
        v.push(len as u8);
        v.extend(&schema);
        v
    };
    // CustomResourceValidation is reached through spec.versions[].schema; decode it via a
    // version: CRD(2: spec) → spec(7: versions) → version(4: schema) → validation.
    fn wrap(tag: u8, inner: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3) | 2];
        let mut len = inner.len();
        while len >= 0x80 {
            out.push((len as u8) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend(inner);
        out
    }
    let crd = wrap(2, &wrap(7, &wrap(4, &validation)));
    let body = raw_envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd);
    // A quarter of the 2 MiB a tokio worker or test thread gets: the limit leaves headroom even
    // in a debug build.
    let err = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || protobuf::decode_object(&body).unwrap_err())
        .unwrap()
        .join()
        .unwrap();
    assert!(
        err.to_string()
            .starts_with("messages nested deeper than 100"),
        "{err}"
    );
}

#[test]
fn json_content_type_is_accepted() {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("ConfigMap"),
        }),
        raw: Some(br#"{"data":{"a":"b"}}"#.to_vec()),
        content_encoding: None,
        content_type: s("application/json"),
    };
    let mut body = b"k8s\x00".to_vec();
    body.extend(unknown.encode_to_vec());
    assert_eq!(
        protobuf::decode_object(&body).unwrap(),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}})
    );
}
