//! Validation of objects before they are stored: the body must decode as the
//! kind's type (wrong JSON types are a 400 naming the field), and the object
//! must pass the kind's rules (a 422 with field paths), as kube-apiserver does.

use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use serde_json::Value;

use apimachinery::names::{self, FieldError};
use serde_json::json;

use crate::status::{ApiError, Cause};

/// Checks that `obj` decodes as the typed Kubernetes struct of `group/version/kind`
/// (unknown kinds — custom resources — pass). The error names the field whose
/// JSON type is wrong, e.g. `spec.replicas: invalid type: string "3", expected i32`.
pub fn check_types(group: &str, version: &str, kind: &str, obj: &Value) -> Result<(), ApiError> {
    macro_rules! decode {
        ($ty:ty) => {{
            let mut track = serde_path_to_error::Track::new();
            let de = serde_path_to_error::Deserializer::new(obj, &mut track);
            match <$ty as serde::Deserialize>::deserialize(de) {
                Ok(_) => Ok(()),
                Err(e) => {
                    let path = track.path().to_string();
                    let api_version = crate::registry::group_version(group, version);
                    Err(ApiError::bad_request(format!(
                        "{kind} in version \"{}\" cannot be handled as a {kind}: {}{}",
                        api_version,
                        if path == "." || path.is_empty() {
                            String::new()
                        } else {
                            format!("{path}: ")
                        },
                        e
                    )))
                }
            }
        }};
    }
    match (group, version, kind) {
        ("", "v1", "Pod") => decode!(api::core::v1::Pod),
        ("", "v1", "Service") => decode!(api::core::v1::Service),
        ("", "v1", "ConfigMap") => decode!(api::core::v1::ConfigMap),
        ("", "v1", "Secret") => decode!(api::core::v1::Secret),
        ("", "v1", "Namespace") => decode!(api::core::v1::Namespace),
        ("", "v1", "Node") => decode!(api::core::v1::Node),
        ("", "v1", "ServiceAccount") => decode!(api::core::v1::ServiceAccount),
        ("", "v1", "Event") => decode!(api::core::v1::Event),
        ("", "v1", "Endpoints") => decode!(api::core::v1::Endpoints),
        ("", "v1", "PersistentVolume") => decode!(api::core::v1::PersistentVolume),
        ("", "v1", "PersistentVolumeClaim") => decode!(api::core::v1::PersistentVolumeClaim),
        ("", "v1", "PodTemplate") => decode!(api::core::v1::PodTemplate),
        ("", "v1", "ReplicationController") => decode!(api::core::v1::ReplicationController),
        ("", "v1", "LimitRange") => decode!(api::core::v1::LimitRange),
        ("", "v1", "ResourceQuota") => decode!(api::core::v1::ResourceQuota),
        ("apps", "v1", "Deployment") => decode!(api::apps::v1::Deployment),
        ("apps", "v1", "ReplicaSet") => decode!(api::apps::v1::ReplicaSet),
        ("apps", "v1", "StatefulSet") => decode!(api::apps::v1::StatefulSet),
        ("apps", "v1", "DaemonSet") => decode!(api::apps::v1::DaemonSet),
        ("apps", "v1", "ControllerRevision") => decode!(api::apps::v1::ControllerRevision),
        ("batch", "v1", "Job") => decode!(api::batch::v1::Job),
        ("batch", "v1", "CronJob") => decode!(api::batch::v1::CronJob),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => {
            decode!(api::autoscaling::v1::HorizontalPodAutoscaler)
        }
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => {
            decode!(api::autoscaling::v2::HorizontalPodAutoscaler)
        }
        ("coordination.k8s.io", "v1", "Lease") => decode!(api::coordination::v1::Lease),
        ("discovery.k8s.io", "v1", "EndpointSlice") => decode!(api::discovery::v1::EndpointSlice),
        ("events.k8s.io", "v1", "Event") => decode!(api::events::v1::Event),
        ("node.k8s.io", "v1", "RuntimeClass") => decode!(api::node::v1::RuntimeClass),
        ("scheduling.k8s.io", "v1", "PriorityClass") => decode!(api::scheduling::v1::PriorityClass),
        ("storage.k8s.io", "v1", "StorageClass") => decode!(api::storage::v1::StorageClass),
        ("policy", "v1", "PodDisruptionBudget") => decode!(api::policy::v1::PodDisruptionBudget),
        // The body of `pods/eviction`.
        ("policy", "v1", "Eviction") => decode!(api::policy::v1::Eviction),
        ("networking.k8s.io", "v1", "Ingress") => decode!(api::networking::v1::Ingress),
        ("networking.k8s.io", "v1", "NetworkPolicy") => decode!(api::networking::v1::NetworkPolicy),
        ("networking.k8s.io", "v1", "IngressClass") => decode!(api::networking::v1::IngressClass),
        ("networking.k8s.io", "v1", "IPAddress") => decode!(api::networking::v1::IPAddress),
        ("rbac.authorization.k8s.io", "v1", "Role") => decode!(api::rbac::v1::Role),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => decode!(api::rbac::v1::ClusterRole),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => decode!(api::rbac::v1::RoleBinding),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => {
            decode!(api::rbac::v1::ClusterRoleBinding)
        }
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => {
            decode!(apiextensions::CustomResourceDefinition)
        }
        _ => Ok(()),
    }
}

impl From<FieldError> for Cause {
    fn from(e: FieldError) -> Cause {
        Cause {
            reason: e.kind.cause_reason().to_string(),
            message: e.body(),
            field: e.field,
        }
    }
}

/// Validates an object of a built-in kind (after defaulting), and an update
/// against the stored `old` object (immutable fields). Returns the causes of a
/// 422, empty when valid.
pub fn validate(
    group: &str,
    kind: &str,
    obj: &Value,
    old: Option<&Value>,
    namespaced: bool,
) -> Vec<Cause> {
    let mut errs = Vec::new();
    validate_metadata(group, kind, obj, namespaced, &mut errs);
    let spec = obj.get("spec");
    match (group, kind) {
        ("", "Pod") => match spec {
            Some(s) => validate_pod_spec(s, "spec", &mut errs),
            None => errs.push(FieldError::required("spec.containers", "")),
        },
        ("", "PodTemplate") => validate_template(obj.get("template"), "template", None, &mut errs),
        ("apps", "Deployment")
        | ("apps", "ReplicaSet")
        | ("apps", "StatefulSet")
        | ("apps", "DaemonSet")
        | ("", "ReplicationController") => validate_workload(
            group,
            kind,
            spec,
            old.and_then(|o| o.get("spec")),
            &mut errs,
        ),
        ("batch", "Job") => validate_job_spec(spec, "spec", &mut errs),
        ("batch", "CronJob") => validate_cronjob(spec, &mut errs),
        ("", "Service") => validate_service(spec, old.and_then(|o| o.get("spec")), &mut errs),
        ("networking.k8s.io", "IPAddress") => validate_ip_address(obj, old, &mut errs),
        ("", "ConfigMap") => validate_data_keys(obj, &["data", "binaryData"], &mut errs),
        ("", "Secret") => validate_data_keys(obj, &["data", "stringData"], &mut errs),
        ("autoscaling", "HorizontalPodAutoscaler") => validate_hpa(spec, &mut errs),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            errs.extend(crate::crd::validate_crd(obj))
        }
        ("", "PersistentVolumeClaim") => validate_pvc_spec(spec, "spec", &mut errs),
        ("policy", "PodDisruptionBudget") => validate_pdb(obj, &mut errs),
        ("", "PersistentVolume") => validate_pv(spec, &mut errs),
        ("discovery.k8s.io", "EndpointSlice") => validate_endpoint_slice(obj, &mut errs),
        ("scheduling.k8s.io", "PriorityClass") => {
            if obj.get("value").and_then(Value::as_i64).is_none() {
                errs.push(FieldError::required("value", ""));
            }
            immutable(obj, old, "value", &mut errs);
        }
        ("node.k8s.io", "RuntimeClass") => {
            match obj.get("handler").and_then(Value::as_str) {
                None | Some("") => errs.push(FieldError::required("handler", "")),
                Some(h) => {
                    for m in names::is_dns1123_label(h) {
                        errs.push(FieldError::invalid("handler", h, m));
                    }
                }
            }
            immutable(obj, old, "handler", &mut errs);
        }
        ("rbac.authorization.k8s.io", "Role") | ("rbac.authorization.k8s.io", "ClusterRole") => {
            for (i, rule) in obj
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if rule
                    .get("verbs")
                    .and_then(Value::as_array)
                    .is_none_or(|v| v.is_empty())
                {
                    errs.push(FieldError::required(
                        format!("rules[{i}].verbs"),
                        "verbs must contain at least one value",
                    ));
                }
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding")
        | ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            let role_ref = obj.get("roleRef");
            for f in ["kind", "name"] {
                if role_ref
                    .and_then(|r| r.get(f))
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    errs.push(FieldError::required(format!("roleRef.{f}"), ""));
                }
            }
            if let Some(k) = role_ref.and_then(|r| r.get("kind")).and_then(Value::as_str) {
                let allowed: &[&str] = if kind == "RoleBinding" {
                    &["Role", "ClusterRole"]
                } else {
                    &["ClusterRole"]
                };
                if !k.is_empty() && !allowed.contains(&k) {
                    errs.push(FieldError::not_supported("roleRef.kind", k, allowed));
                }
            }
            if let (Some(new), Some(old)) = (role_ref, old.and_then(|o| o.get("roleRef"))) {
                if new != old {
                    errs.push(FieldError::invalid(
                        "roleRef",
                        new.to_string(),
                        "cannot change roleRef",
                    ));
                }
            }
        }
        _ => {}
    }
    errs.into_iter().map(Cause::from).collect()
}

fn immutable(obj: &Value, old: Option<&Value>, field: &str, errs: &mut Vec<FieldError>) {
    if let Some(old) = old {
        if obj.get(field) != old.get(field) {
            let shown = obj.get(field).map(|v| v.to_string()).unwrap_or_default();
            errs.push(FieldError::invalid(field, shown, "field is immutable"));
        }
    }
}

const ACCESS_MODES: &[&str] = &[
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

fn validate_access_modes(spec: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let modes = spec
        .and_then(|s| s.get("accessModes"))
        .and_then(Value::as_array);
    if modes.is_none_or(|m| m.is_empty()) {
        errs.push(FieldError::required(
            format!("{path}.accessModes"),
            "at least 1 access mode is required",
        ));
    }
    for m in modes.into_iter().flatten() {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            errs.push(FieldError::not_supported(
                format!("{path}.accessModes"),
                m,
                ACCESS_MODES,
            ));
        }
    }
}

fn validate_pvc_spec(spec: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    validate_access_modes(spec, path, errs);
    if spec
        .and_then(|s| s.pointer("/resources/requests/storage"))
        .is_none()
    {
        errs.push(FieldError::required(
            format!("{path}.resources[storage]"),
            "",
        ));
    }
}

fn validate_pv(spec: Option<&Value>, errs: &mut Vec<FieldError>) {
    validate_access_modes(spec, "spec", errs);
    if spec.and_then(|s| s.pointer("/capacity/storage")).is_none() {
        errs.push(FieldError::required("spec.capacity", ""));
    }
}

fn validate_endpoint_slice(obj: &Value, errs: &mut Vec<FieldError>) {
    match obj.get("addressType").and_then(Value::as_str) {
        None => errs.push(FieldError::required("addressType", "")),
        Some("IPv4" | "IPv6" | "FQDN") => {}
        Some(other) => errs.push(FieldError::not_supported(
            "addressType",
            other,
            &["IPv4", "IPv6", "FQDN"],
        )),
    }
    for (i, e) in obj
        .get("endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if e.get("addresses")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty())
        {
            errs.push(FieldError::required(
                format!("endpoints[{i}].addresses"),
                "must contain at least 1 address",
            ));
        }
    }
    for (i, p) in obj
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(n) = p.get("port").and_then(Value::as_i64) {
            if !(1..=65535).contains(&n) {
                errs.push(FieldError::invalid_unquoted(
                    format!("ports[{i}].port"),
                    n,
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
    }
}

fn name_rule(group: &str, kind: &str) -> fn(&str, bool) -> Vec<String> {
    match (group, kind) {
        ("", "Namespace") => names::validate_object_meta_name_dns_label,
        ("", "Service") => names::validate_object_meta_name_dns1035_label,
        // Checked as an IP address by `validate_ip_address`.
        ("networking.k8s.io", "IPAddress") => |_, _| Vec::new(),
        ("rbac.authorization.k8s.io", _) | ("", "Event") | ("events.k8s.io", _) => {
            names::validate_path_segment_name
        }
        _ => names::validate_object_meta_name,
    }
}

fn validate_metadata(
    group: &str,
    kind: &str,
    obj: &Value,
    namespaced: bool,
    errs: &mut Vec<FieldError>,
) {
    let meta = obj.get("metadata");
    let s = |f: &str| {
        meta.and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    errs.extend(names::validate_name_and_generate_name(
        s("name"),
        s("generateName"),
        "metadata",
        name_rule(group, kind),
    ));
    if namespaced {
        let ns = s("namespace");
        if ns.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            for m in names::is_dns1123_label(ns) {
                errs.push(FieldError::invalid("metadata.namespace", ns, m));
            }
        }
    }
    match names::string_map_from_json(meta.and_then(|m| m.get("labels")), "metadata.labels") {
        Ok(labels) => errs.extend(names::validate_labels(&labels, "metadata.labels")),
        Err(e) => errs.extend(e),
    }
    match names::string_map_from_json(
        meta.and_then(|m| m.get("annotations")),
        "metadata.annotations",
    ) {
        Ok(a) => errs.extend(names::validate_annotations(&a, "metadata.annotations")),
        Err(e) => errs.extend(e),
    }
    if let Some(fins) = meta
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
    {
        for (i, f) in fins.iter().enumerate() {
            let f = f.as_str().unwrap_or("");
            // Finalizers are qualified names; the short built-in ones are allowed.
            if !matches!(f, "kubernetes" | "orphan" | "foregroundDeletion") {
                for m in names::is_qualified_name(f) {
                    errs.push(FieldError::invalid(
                        format!("metadata.finalizers[{i}]"),
                        f,
                        m,
                    ));
                }
            }
        }
    }
}

fn s<'a>(v: Option<&'a Value>, f: &str) -> Option<&'a str> {
    v.and_then(|v| v.get(f)).and_then(Value::as_str)
}

fn validate_pod_spec(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let volumes: Vec<&str> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let mut seen_volumes = std::collections::BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = format!("{path}.volumes[{i}].name");
        for m in names::is_dns1123_label(v) {
            errs.push(FieldError::invalid(&p, *v, m));
        }
        if !seen_volumes.insert(*v) {
            errs.push(FieldError::duplicate(&p, *v));
        }
    }
    for (i, v) in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        validate_volume_source(v, &format!("{path}.volumes[{i}]"), errs);
    }
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(|c| c.is_empty()) {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names_seen = std::collections::BTreeSet::new();
    for field in ["initContainers", "containers"] {
        for (i, c) in spec
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let cp = format!("{path}.{field}[{i}]");
            match s(Some(c), "name") {
                None | Some("") => errs.push(FieldError::required(format!("{cp}.name"), "")),
                Some(n) => {
                    for m in names::is_dns1123_label(n) {
                        errs.push(FieldError::invalid(format!("{cp}.name"), n, m));
                    }
                    if !names_seen.insert(n.to_string()) {
                        errs.push(FieldError::duplicate(format!("{cp}.name"), n));
                    }
                }
            }
            if s(Some(c), "image").is_none_or(|i| i.trim().is_empty()) {
                errs.push(FieldError::required(format!("{cp}.image"), ""));
            }
            for (j, p) in c
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let pp = format!("{cp}.ports[{j}]");
                match p.get("containerPort").and_then(Value::as_i64) {
                    Some(n) if (1..=65535).contains(&n) => {}
                    Some(n) => errs.push(FieldError::invalid_unquoted(
                        format!("{pp}.containerPort"),
                        n,
                        "must be between 1 and 65535, inclusive",
                    )),
                    None => errs.push(FieldError::required(format!("{pp}.containerPort"), "")),
                }
                if let Some(proto) = s(Some(p), "protocol") {
                    if !matches!(proto, "TCP" | "UDP" | "SCTP") {
                        errs.push(FieldError::not_supported(
                            format!("{pp}.protocol"),
                            proto,
                            &["SCTP", "TCP", "UDP"],
                        ));
                    }
                }
            }
            for (j, m) in c
                .get("volumeMounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let mp = format!("{cp}.volumeMounts[{j}]");
                let name = s(Some(m), "name").unwrap_or("");
                if name.is_empty() {
                    errs.push(FieldError::required(format!("{mp}.name"), ""));
                } else if !volumes.contains(&name) {
                    errs.push(FieldError::not_found(format!("{mp}.name"), name));
                }
                if s(Some(m), "mountPath").is_none_or(str::is_empty) {
                    errs.push(FieldError::required(format!("{mp}.mountPath"), ""));
                }
                for sub_field in ["subPath", "subPathExpr"] {
                    if let Some(sp) = s(Some(m), sub_field) {
                        if sp.starts_with('/') {
                            errs.push(FieldError::invalid(
                                format!("{mp}.{sub_field}"),
                                sp,
                                "must be a relative path",
                            ));
                        } else if sp.split('/').any(|seg| seg == "..") {
                            errs.push(FieldError::invalid(
                                format!("{mp}.{sub_field}"),
                                sp,
                                "must not contain '..'",
                            ));
                        }
                    }
                }
            }
            for (j, e) in c
                .get("env")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if s(Some(e), "name").is_none_or(str::is_empty) {
                    errs.push(FieldError::required(format!("{cp}.env[{j}].name"), ""));
                }
            }
            if let Some(policy) = s(Some(c), "imagePullPolicy") {
                if !matches!(policy, "Always" | "IfNotPresent" | "Never") {
                    errs.push(FieldError::not_supported(
                        format!("{cp}.imagePullPolicy"),
                        policy,
                        &["Always", "IfNotPresent", "Never"],
                    ));
                }
            }
        }
    }
    if let Some(rp) = s(Some(spec), "restartPolicy") {
        if !matches!(rp, "Always" | "OnFailure" | "Never") {
            errs.push(FieldError::not_supported(
                format!("{path}.restartPolicy"),
                rp,
                &["Always", "OnFailure", "Never"],
            ));
        }
    }
    if let Some(dp) = s(Some(spec), "dnsPolicy") {
        if !matches!(
            dp,
            "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None"
        ) {
            errs.push(FieldError::not_supported(
                format!("{path}.dnsPolicy"),
                dp,
                &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
            ));
        }
    }
    if let Some(g) = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
    {
        if g < 0 {
            errs.push(FieldError::invalid_unquoted(
                format!("{path}.terminationGracePeriodSeconds"),
                g,
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// The file paths a volume writes into its directory (configMap, secret,
/// downwardAPI and projected items, a projected service account token)
/// must stay inside it, as kube-apiserver's `validateLocalNonReservedPath`
/// requires; a projected token lives between 10 minutes and 2^32 seconds.
fn validate_volume_source(volume: &Value, path: &str, errs: &mut Vec<FieldError>) {
    fn items(source: &Value, path: &str, errs: &mut Vec<FieldError>) {
        for (k, item) in source
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            file_path(item, &format!("{path}.items[{k}]"), errs);
        }
    }
    fn file_path(item: &Value, path: &str, errs: &mut Vec<FieldError>) {
        let field = format!("{path}.path");
        match s(Some(item), "path") {
            None | Some("") => errs.push(FieldError::required(field, "")),
            Some(p) => {
                for message in local_descending_path_problems(p) {
                    errs.push(FieldError::invalid(&field, p, message));
                }
            }
        }
    }
    for plugin in ["configMap", "secret", "downwardAPI"] {
        if let Some(source) = volume.get(plugin) {
            items(source, &format!("{path}.{plugin}"), errs);
        }
    }
    for (j, source) in volume
        .pointer("/projected/sources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let sp = format!("{path}.projected.sources[{j}]");
        for plugin in ["configMap", "secret", "downwardAPI"] {
            if let Some(source) = source.get(plugin) {
                items(source, &format!("{sp}.{plugin}"), errs);
            }
        }
        if let Some(token) = source.get("serviceAccountToken") {
            let tp = format!("{sp}.serviceAccountToken");
            file_path(token, &tp, errs);
            if let Some(seconds) = token.get("expirationSeconds").and_then(Value::as_i64) {
                if seconds < 600 {
                    errs.push(FieldError::invalid_unquoted(
                        format!("{tp}.expirationSeconds"),
                        seconds,
                        "may not specify a duration less than 10 minutes",
                    ));
                } else if seconds > 1 << 32 {
                    errs.push(FieldError::invalid_unquoted(
                        format!("{tp}.expirationSeconds"),
                        seconds,
                        "may not specify a duration larger than 2^32 seconds",
                    ));
                }
            }
        }
    }
}

/// What is wrong with a file path a volume writes below its directory
/// (empty when it stays inside): kube-apiserver's messages.
pub fn local_descending_path_problems(p: &str) -> Vec<&'static str> {
    let mut problems = Vec::new();
    if p.starts_with('/') {
        problems.push("must be a relative path");
    }
    if p.split('/').any(|seg| seg == "..") {
        problems.push("must not contain '..'");
    }
    if p.starts_with("..") {
        problems.push("must not start with '..'");
    }
    problems
}

fn validate_selector(
    sel: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Option<apimachinery::selector::LabelSelector> {
    let Some(sel) = sel.filter(|v| !v.is_null()) else {
        errs.push(FieldError::required(path, ""));
        return None;
    };
    match apimachinery::selector::LabelSelector::from_json(Some(sel), path) {
        Ok(s) => {
            if s.is_everything() {
                errs.push(FieldError::invalid(
                    path,
                    "{}",
                    "empty selector is invalid for deployment",
                ));
            }
            Some(s)
        }
        Err(e) => {
            errs.extend(e);
            None
        }
    }
}

fn validate_template(
    template: Option<&Value>,
    path: &str,
    selector: Option<&apimachinery::selector::LabelSelector>,
    errs: &mut Vec<FieldError>,
) {
    let Some(t) = template else {
        errs.push(FieldError::required(path, ""));
        return;
    };
    let labels = names::string_map_from_json(
        t.pointer("/metadata/labels"),
        &format!("{path}.metadata.labels"),
    )
    .unwrap_or_default();
    errs.extend(names::validate_labels(
        &labels,
        &format!("{path}.metadata.labels"),
    ));
    if let Some(sel) = selector {
        if !sel.matches(&labels) {
            let shown = labels
                .iter()
                .map(|(k, v)| format!("{k:?}:{v:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            errs.push(FieldError::invalid(
                format!("{path}.metadata.labels"),
                format!("map[string]string{{{shown}}}"),
                "`selector` does not match template `labels`",
            ));
        }
    }
    match t.get("spec") {
        Some(spec) => validate_pod_spec(spec, &format!("{path}.spec"), errs),
        None => errs.push(FieldError::required(format!("{path}.spec.containers"), "")),
    }
}

fn non_negative(spec: Option<&Value>, field: &str, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(n) = spec.and_then(|s| s.get(field)).and_then(Value::as_i64) {
        if n < 0 {
            errs.push(FieldError::invalid_unquoted(
                format!("{path}.{field}"),
                n,
                "must be greater than or equal to 0",
            ));
        }
    }
}

fn validate_workload(
    group: &str,
    kind: &str,
    spec: Option<&Value>,
    old_spec: Option<&Value>,
    errs: &mut Vec<FieldError>,
) {
    non_negative(spec, "replicas", "spec", errs);
    non_negative(spec, "minReadySeconds", "spec", errs);
    non_negative(spec, "revisionHistoryLimit", "spec", errs);
    let selector = if kind == "ReplicationController" {
        // An RC's selector is a plain map.
        spec.and_then(|s| s.get("selector"))
            .map(|m| json!({"matchLabels": m}))
    } else {
        spec.and_then(|s| s.get("selector")).cloned()
    };
    let sel = validate_selector(selector.as_ref(), "spec.selector", errs);
    // A StatefulSet's containers may mount its volumeClaimTemplates: they
    // become volumes of each pod.
    let mut template = spec.and_then(|s| s.get("template")).cloned();
    if let (Some(t), Some(claims)) = (
        template.as_mut(),
        spec.and_then(|s| s.get("volumeClaimTemplates"))
            .and_then(Value::as_array),
    ) {
        let extra: Vec<Value> = claims
            .iter()
            .filter_map(|c| c.pointer("/metadata/name").and_then(Value::as_str))
            .map(|n| json!({"name": n, "persistentVolumeClaim": {"claimName": n}}))
            .collect();
        if let Some(pod_spec) = t.get_mut("spec").and_then(Value::as_object_mut) {
            let volumes = pod_spec.entry("volumes").or_insert_with(|| json!([]));
            if let Some(list) = volumes.as_array_mut() {
                let have: Vec<String> = list
                    .iter()
                    .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect();
                list.extend(
                    extra
                        .into_iter()
                        .filter(|v| !have.iter().any(|h| Some(h.as_str()) == v["name"].as_str())),
                );
            }
        }
    }
    validate_template(template.as_ref(), "spec.template", sel.as_ref(), errs);
    if let Some(rp) = spec
        .and_then(|s| s.pointer("/template/spec/restartPolicy"))
        .and_then(Value::as_str)
    {
        if rp != "Always" {
            errs.push(FieldError::not_supported(
                "spec.template.spec.restartPolicy",
                rp,
                &["Always"],
            ));
        }
    }
    if group == "apps" && kind == "Deployment" {
        if let Some(t) = spec
            .and_then(|s| s.pointer("/strategy/type"))
            .and_then(Value::as_str)
        {
            if !matches!(t, "Recreate" | "RollingUpdate") {
                errs.push(FieldError::not_supported(
                    "spec.strategy.type",
                    t,
                    &["Recreate", "RollingUpdate"],
                ));
            } else if t == "Recreate"
                && spec
                    .and_then(|s| s.pointer("/strategy/rollingUpdate"))
                    .is_some_and(|v| !v.is_null())
            {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        if let Some(ru) = spec.and_then(|s| s.pointer("/strategy/rollingUpdate")) {
            let replicas = spec
                .and_then(|s| s.get("replicas"))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let surge = int_or_percent(
                ru.get("maxSurge"),
                "spec.strategy.rollingUpdate.maxSurge",
                errs,
            );
            let unavailable = int_or_percent(
                ru.get("maxUnavailable"),
                "spec.strategy.rollingUpdate.maxUnavailable",
                errs,
            );
            if let (Some(s0), Some(u0)) = (surge, unavailable) {
                if s0.is_zero(replicas) && u0.is_zero(replicas) {
                    errs.push(FieldError::invalid(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        u0.shown(),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
            }
        }
        non_negative(spec, "progressDeadlineSeconds", "spec", errs);
    }
    if group == "apps" && kind == "StatefulSet" {
        if let Some(t) = spec
            .and_then(|s| s.pointer("/updateStrategy/type"))
            .and_then(Value::as_str)
        {
            if !matches!(t, "OnDelete" | "RollingUpdate") {
                errs.push(FieldError::not_supported(
                    "spec.updateStrategy.type",
                    t,
                    &["OnDelete", "RollingUpdate"],
                ));
            }
        }
        if let Some(p) = spec
            .and_then(|s| s.get("podManagementPolicy"))
            .and_then(Value::as_str)
        {
            if !matches!(p, "OrderedReady" | "Parallel") {
                errs.push(FieldError::not_supported(
                    "spec.podManagementPolicy",
                    p,
                    &["OrderedReady", "Parallel"],
                ));
            }
        }
    }
    if group == "apps" && kind == "DaemonSet" {
        if let Some(t) = spec
            .and_then(|s| s.pointer("/updateStrategy/type"))
            .and_then(Value::as_str)
        {
            if !matches!(t, "OnDelete" | "RollingUpdate") {
                errs.push(FieldError::not_supported(
                    "spec.updateStrategy.type",
                    t,
                    &["OnDelete", "RollingUpdate"],
                ));
            }
        }
    }
    // The selector of an apps/v1 workload is immutable.
    if let (Some(new), Some(old)) = (
        spec.and_then(|s| s.get("selector")),
        old_spec.and_then(|s| s.get("selector")),
    ) {
        if group == "apps" && new != old {
            errs.push(FieldError::invalid(
                "spec.selector",
                new.to_string(),
                "field is immutable",
            ));
        }
    }
}

/// Kubernetes' IsValidPortName (IANA service names).
fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.is_empty() || port.len() > 15 {
        errs.push("must be no more than 15 characters".to_string());
    }
    if !port
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !port.chars().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

enum IntOrPercent {
    Int(i64),
    Percent(i64),
}

impl IntOrPercent {
    fn is_zero(&self, replicas: i64) -> bool {
        match self {
            IntOrPercent::Int(n) => *n == 0,
            IntOrPercent::Percent(p) => p * replicas == 0,
        }
    }
    fn shown(&self) -> String {
        match self {
            IntOrPercent::Int(n) => n.to_string(),
            IntOrPercent::Percent(p) => format!("{p}%"),
        }
    }
}

fn int_or_percent(
    v: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Option<IntOrPercent> {
    match v? {
        Value::Number(n) => match n.as_i64() {
            Some(i) if i >= 0 => Some(IntOrPercent::Int(i)),
            _ => {
                errs.push(FieldError::invalid_unquoted(
                    path,
                    n,
                    "must be greater than or equal to 0",
                ));
                None
            }
        },
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) if (0..=100).contains(&p) => Some(IntOrPercent::Percent(p)),
            Some(_) => {
                errs.push(FieldError::invalid(
                    path,
                    s.as_str(),
                    "must not be greater than 100%",
                ));
                None
            }
            None => {
                errs.push(FieldError::invalid(path, s.as_str(), "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"));
                None
            }
        },
        _ => None,
    }
}

/// `ValidatePodDisruptionBudgetSpec` and the non-negative status counts.
fn validate_pdb(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec");
    let field = |f: &str| spec.and_then(|s| s.get(f)).filter(|v| !v.is_null());
    if let (Some(_), Some(_)) = (field("minAvailable"), field("maxUnavailable")) {
        errs.push(FieldError::invalid(
            "spec",
            spec.map(Value::to_string).unwrap_or_default(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    int_or_percent(field("minAvailable"), "spec.minAvailable", errs);
    int_or_percent(field("maxUnavailable"), "spec.maxUnavailable", errs);
    if let Some(selector) = field("selector") {
        errs.extend(apimachinery::selector::validate_label_selector(
            selector,
            "spec.selector",
        ));
    }
    if let Some(policy) = field("unhealthyPodEvictionPolicy").and_then(Value::as_str) {
        const POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];
        if !POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(
                "spec.unhealthyPodEvictionPolicy",
                policy,
                POLICIES,
            ));
        }
    }
    let status = obj.get("status");
    for f in [
        "disruptionsAllowed",
        "currentHealthy",
        "desiredHealthy",
        "expectedPods",
    ] {
        non_negative(status, f, "status", errs);
    }
}

fn validate_job_spec(spec: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    for f in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        non_negative(spec, f, path, errs);
    }
    let sel = spec.and_then(|s| s.get("selector")).and_then(|v| {
        apimachinery::selector::LabelSelector::from_json(Some(v), &format!("{path}.selector"))
            .map_err(|e| errs.extend(e))
            .ok()
    });
    validate_template(
        spec.and_then(|s| s.get("template")),
        &format!("{path}.template"),
        sel.as_ref(),
        errs,
    );
    match spec
        .and_then(|s| s.pointer("/template/spec/restartPolicy"))
        .and_then(Value::as_str)
    {
        Some("OnFailure") | Some("Never") => {}
        Some(other) => errs.push(FieldError::not_supported(
            format!("{path}.template.spec.restartPolicy"),
            other,
            &["OnFailure", "Never"],
        )),
        None => errs.push(FieldError::required(
            format!("{path}.template.spec.restartPolicy"),
            "",
        )),
    }
    if let Some(m) = spec
        .and_then(|s| s.get("completionMode"))
        .and_then(Value::as_str)
    {
        if !matches!(m, "NonIndexed" | "Indexed") {
            errs.push(FieldError::not_supported(
                format!("{path}.completionMode"),
                m,
                &["NonIndexed", "Indexed"],
            ));
        }
    }
}

fn validate_cronjob(spec: Option<&Value>, errs: &mut Vec<FieldError>) {
    match spec.and_then(|s| s.get("schedule")).and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required("spec.schedule", "")),
        Some(schedule) => {
            if let Err(e) = crate::cron::Schedule::parse(schedule) {
                errs.push(FieldError::invalid("spec.schedule", schedule, e));
            }
        }
    }
    if let Some(p) = spec
        .and_then(|s| s.get("concurrencyPolicy"))
        .and_then(Value::as_str)
    {
        if !matches!(p, "Allow" | "Forbid" | "Replace") {
            errs.push(FieldError::not_supported(
                "spec.concurrencyPolicy",
                p,
                &["Allow", "Forbid", "Replace"],
            ));
        }
    }
    non_negative(spec, "startingDeadlineSeconds", "spec", errs);
    validate_job_spec(
        spec.and_then(|s| s.pointer("/jobTemplate/spec")),
        "spec.jobTemplate.spec",
        errs,
    );
}

/// kube-apiserver's IP address message (`ValidateIP`'s detail).
const IP_ADDRESS_DETAIL: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

fn validate_service(spec: Option<&Value>, old_spec: Option<&Value>, errs: &mut Vec<FieldError>) {
    let ty = s(spec, "type").unwrap_or("ClusterIP");
    if !matches!(
        ty,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        errs.push(FieldError::not_supported(
            "spec.type",
            ty,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let ports = spec.and_then(|s| s.get("ports")).and_then(Value::as_array);
    let cluster_ip = s(spec, "clusterIP").unwrap_or("");
    if ty == "ExternalName" {
        match s(spec, "externalName") {
            None | Some("") => errs.push(FieldError::required("spec.externalName", "")),
            Some(name) => {
                // A fully qualified name may end in a dot.
                let bare = name.strip_suffix('.').unwrap_or(name);
                for m in names::is_dns1123_subdomain(bare) {
                    errs.push(FieldError::invalid("spec.externalName", name, m));
                }
            }
        }
        if !cluster_ip.is_empty() {
            errs.push(FieldError::forbidden(
                "spec.clusterIP",
                "may not be set for ExternalName services",
            ));
        }
    } else if ports.is_none_or(|p| p.is_empty()) && cluster_ip != "None" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    validate_cluster_ips(spec, old_spec, ty, errs);
    let ports = ports.cloned().unwrap_or_default();
    let mut seen_names = std::collections::BTreeSet::new();
    let mut seen_ports = std::collections::BTreeSet::new();
    let mut seen_node_ports = std::collections::BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        let name = s(Some(p), "name").unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(format!("{pp}.name"), ""));
        }
        if !name.is_empty() {
            for m in names::is_dns1123_label(name) {
                errs.push(FieldError::invalid(format!("{pp}.name"), name, m));
            }
            if !seen_names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{pp}.name"), name));
            }
        }
        let proto = s(Some(p), "protocol").unwrap_or("TCP");
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            errs.push(FieldError::not_supported(
                format!("{pp}.protocol"),
                proto,
                &["SCTP", "TCP", "UDP"],
            ));
        }
        match p.get("port").and_then(Value::as_i64) {
            Some(n) if (1..=65535).contains(&n) => {
                if !seen_ports.insert((n, proto.to_string())) {
                    errs.push(FieldError::duplicate(
                        pp.clone(),
                        format!("{{{n} {proto}}}"),
                    ));
                }
            }
            Some(n) => errs.push(FieldError::invalid_unquoted(
                format!("{pp}.port"),
                n,
                "must be between 1 and 65535, inclusive",
            )),
            None => errs.push(FieldError::required(format!("{pp}.port"), "")),
        }
        match p.get("targetPort") {
            Some(Value::Number(n)) if !n.as_i64().is_some_and(|n| (1..=65535).contains(&n)) => {
                errs.push(FieldError::invalid_unquoted(
                    format!("{pp}.targetPort"),
                    n,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            Some(Value::String(t)) => {
                for m in is_valid_port_name(t) {
                    errs.push(FieldError::invalid(
                        format!("{pp}.targetPort"),
                        t.as_str(),
                        m,
                    ));
                }
            }
            _ => {}
        }
        if let Some(np) = p
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|&n| n != 0)
        {
            if ty != "NodePort" && ty != "LoadBalancer" {
                errs.push(FieldError::forbidden(
                    format!("{pp}.nodePort"),
                    format!("may not be used when `type` is '{ty}'"),
                ));
            } else if !(1..=65535).contains(&np) {
                errs.push(FieldError::invalid_unquoted(
                    format!("{pp}.nodePort"),
                    np,
                    "must be between 1 and 65535, inclusive",
                ));
            } else if !seen_node_ports.insert((np, proto.to_string())) {
                // The same node port may serve TCP and UDP, not twice one protocol.
                errs.push(FieldError::duplicate(
                    format!("{pp}.nodePort"),
                    np.to_string(),
                ));
            }
        }
    }
    let affinity = s(spec, "sessionAffinity").unwrap_or("None");
    if !matches!(affinity, "None" | "ClientIP") {
        errs.push(FieldError::not_supported(
            "spec.sessionAffinity",
            affinity,
            &["ClientIP", "None"],
        ));
    }
    let affinity_config = spec
        .and_then(|s| s.get("sessionAffinityConfig"))
        .filter(|v| !v.is_null());
    match (affinity, affinity_config) {
        ("ClientIP", config) => match config.and_then(|c| c.pointer("/clientIP/timeoutSeconds")) {
            Some(Value::Number(n)) if n.as_i64().is_some_and(|t| (1..=86400).contains(&t)) => {}
            Some(Value::Number(n)) => errs.push(FieldError::invalid_unquoted(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                n,
                "must be greater than 0 and less than 86400",
            )),
            _ => errs.push(FieldError::required(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                "",
            )),
        },
        ("None", Some(config)) => errs.push(FieldError::invalid(
            "spec.sessionAffinityConfig",
            config.to_string(),
            "must not be set when session affinity is None",
        )),
        _ => {}
    }
    if let Some(p) = s(spec, "internalTrafficPolicy") {
        if !matches!(p, "Cluster" | "Local") {
            errs.push(FieldError::not_supported(
                "spec.internalTrafficPolicy",
                p,
                &["Cluster", "Local"],
            ));
        }
    }
    if let Some(p) = s(spec, "externalTrafficPolicy").filter(|p| !p.is_empty()) {
        if ty != "NodePort" && ty != "LoadBalancer" {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                p,
                "may only be set for externally-accessible services",
            ));
        } else if !matches!(p, "Cluster" | "Local") {
            errs.push(FieldError::not_supported(
                "spec.externalTrafficPolicy",
                p,
                &["Cluster", "Local"],
            ));
        }
    }
}

/// `spec.clusterIP` and `spec.clusterIPs`: well-formed, consistent, and
/// (on update) unchanged unless the type moves to or from ExternalName.
/// Whether an address is free and in range is the allocator's check.
fn validate_cluster_ips(
    spec: Option<&Value>,
    old_spec: Option<&Value>,
    ty: &str,
    errs: &mut Vec<FieldError>,
) {
    let cluster_ip = s(spec, "clusterIP").unwrap_or("");
    let cluster_ips: Vec<&str> = spec
        .and_then(|s| s.get("clusterIPs"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(first) = cluster_ips.first() {
        if *first != cluster_ip {
            errs.push(FieldError::invalid(
                "spec.clusterIPs",
                format!("{cluster_ips:?}"),
                "first value must match `clusterIP`",
            ));
        }
    }
    if ty != "ExternalName" {
        for (i, ip) in cluster_ips.iter().enumerate() {
            if *ip == "None" && i == 0 {
                continue;
            }
            if ip.parse::<std::net::IpAddr>().is_err() {
                errs.push(FieldError::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    *ip,
                    IP_ADDRESS_DETAIL,
                ));
            }
        }
        if cluster_ips.is_empty()
            && !cluster_ip.is_empty()
            && cluster_ip != "None"
            && cluster_ip.parse::<std::net::IpAddr>().is_err()
        {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                cluster_ip,
                IP_ADDRESS_DETAIL,
            ));
        }
        if cluster_ips.len() > 1 {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                s(spec, "ipFamilyPolicy").unwrap_or("SingleStack"),
                "this cluster is not configured for dual-stack services",
            ));
        }
    }
    // Immutable once set, except across a change to or from ExternalName.
    if let Some(old) = old_spec {
        let old_ty = s(Some(old), "type").unwrap_or("ClusterIP");
        let old_ip = s(Some(old), "clusterIP").unwrap_or("");
        if old_ty != "ExternalName" && ty != "ExternalName" && !old_ip.is_empty() {
            if cluster_ip.is_empty() {
                errs.push(FieldError::required(
                    "spec.clusterIPs[0]",
                    "primary clusterIP can not be unset",
                ));
            } else if cluster_ip != old_ip {
                errs.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    cluster_ip,
                    "may not change once set",
                ));
            }
        }
    }
}

/// `networking.k8s.io/v1` IPAddress: named by an IP in canonical form,
/// pointing at its parent; nothing of it changes after creation.
fn validate_ip_address(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.to_string() == name => {}
        Ok(ip) => errs.push(FieldError::invalid(
            "metadata.name",
            name,
            format!("must be in canonical form (\"{ip}\")"),
        )),
        Err(_) => errs.push(FieldError::invalid(
            "metadata.name",
            name,
            IP_ADDRESS_DETAIL,
        )),
    }
    match obj.pointer("/spec/parentRef") {
        None | Some(Value::Null) => errs.push(FieldError::required("spec.parentRef", "")),
        Some(r) => {
            for f in ["resource", "name"] {
                if s(Some(r), f).is_none_or(str::is_empty) {
                    errs.push(FieldError::required(format!("spec.parentRef.{f}"), ""));
                }
            }
        }
    }
    if let Some(old) = old {
        if obj.get("spec") != old.get("spec") {
            errs.push(FieldError::invalid(
                "spec.parentRef",
                obj.pointer("/spec/parentRef")
                    .map(Value::to_string)
                    .unwrap_or_default(),
                "field is immutable",
            ));
        }
    }
}

fn validate_data_keys(obj: &Value, fields: &[&str], errs: &mut Vec<FieldError>) {
    let mut total = 0usize;
    for f in fields {
        if let Some(m) = obj.get(*f).and_then(Value::as_object) {
            for (k, v) in m {
                let valid = !k.is_empty()
                    && k.len() <= 253
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    && k != "."
                    && k != "..";
                if !valid {
                    errs.push(FieldError::invalid(
                        f.to_string(),
                        k.as_str(),
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                    ));
                }
                total += k.len() + v.as_str().map(str::len).unwrap_or(0);
            }
        }
    }
    if total > 1024 * 1024 {
        errs.push(FieldError::too_long("data", 1024 * 1024));
    }
}

fn validate_hpa(spec: Option<&Value>, errs: &mut Vec<FieldError>) {
    let min = spec
        .and_then(|s| s.get("minReplicas"))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    match spec
        .and_then(|s| s.get("maxReplicas"))
        .and_then(Value::as_i64)
    {
        None => errs.push(FieldError::required("spec.maxReplicas", "")),
        Some(max) if max < min => errs.push(FieldError::invalid_unquoted(
            "spec.maxReplicas",
            max,
            "must be greater than or equal to `minReplicas`",
        )),
        _ => {}
    }
    if min < 1 {
        errs.push(FieldError::invalid_unquoted(
            "spec.minReplicas",
            min,
            "must be greater than or equal to 1",
        ));
    }
    if spec.and_then(|s| s.get("scaleTargetRef")).is_none() {
        errs.push(FieldError::required("spec.scaleTargetRef", ""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(group: &str, kind: &str, obj: Value) -> Vec<String> {
        validate(group, kind, &obj, None, true)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn services_are_validated_like_kube_apiserver() {
        let svc = |spec: Value| json!({"metadata": {"name": "s", "namespace": "d"}, "spec": spec});
        let check = |spec: Value, want: &[&str]| {
            let got = fields("", "Service", svc(spec.clone()));
            if want.is_empty() {
                assert!(got.is_empty(), "{spec}: {got:?}");
            }
            for w in want {
                assert!(
                    got.iter().any(|g| g.starts_with(w)),
                    "{spec}: {w:?} not in {got:?}"
                );
            }
        };
        let ok_port = json!([{"port": 80}]);
        check(json!({"ports": ok_port}), &[]);
        check(
            json!({"clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"], "ports": ok_port}),
            &[],
        );
        check(json!({"clusterIP": "None", "clusterIPs": ["None"]}), &[]);
        check(
            json!({"clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.6"], "ports": ok_port}),
            &["spec.clusterIPs: Invalid value"],
        );
        check(
            json!({"clusterIP": "ten", "ports": ok_port}),
            &["spec.clusterIPs[0]: Invalid value: \"ten\": must be a valid IP address"],
        );
        check(
            json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}),
            &["spec.ports[1]: Duplicate value"],
        );
        // The same port on two protocols is fine.
        check(
            json!({"ports": [{"name": "a", "port": 53, "protocol": "UDP"}, {"name": "b", "port": 53, "protocol": "TCP"}]}),
            &[],
        );
        check(
            json!({"ports": [{"port": 80}, {"port": 81}]}),
            &[
                "spec.ports[0].name: Required value",
                "spec.ports[1].name: Required value",
            ],
        );
        for bad in ["-web", "web-", "we--b", "123", "abcdefghijklmnop", "Web"] {
            check(
                json!({"ports": [{"port": 80, "targetPort": bad}]}),
                &[&format!(
                    "spec.ports[0].targetPort: Invalid value: \"{bad}\""
                )],
            );
        }
        check(
            json!({"ports": [{"port": 80, "targetPort": "http-alt"}]}),
            &[],
        );
        check(
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30001}, {"name": "b", "port": 81, "nodePort": 30001}]}),
            &["spec.ports[1].nodePort: Duplicate value"],
        );
        check(
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 53, "protocol": "UDP", "nodePort": 30053}, {"name": "b", "port": 53, "nodePort": 30053}]}),
            &[],
        );
        check(
            json!({"ports": [{"port": 80, "nodePort": 30001}]}),
            &["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
        );
        check(
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}, "ports": ok_port}),
            &["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0"],
        );
        check(
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86400}}, "ports": ok_port}),
            &[],
        );
        check(
            json!({"sessionAffinity": "None", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}}, "ports": ok_port}),
            &["spec.sessionAffinityConfig: Invalid value"],
        );
        check(
            json!({"internalTrafficPolicy": "Nearby", "ports": ok_port}),
            &["spec.internalTrafficPolicy: Unsupported value: \"Nearby\""],
        );
        check(
            json!({"externalTrafficPolicy": "Cluster", "ports": ok_port}),
            &["spec.externalTrafficPolicy: Invalid value"],
        );
        check(
            json!({"type": "NodePort", "externalTrafficPolicy": "Far", "ports": ok_port}),
            &["spec.externalTrafficPolicy: Unsupported value"],
        );
        check(
            json!({"type": "ExternalName", "externalName": "db.example.com."}),
            &[],
        );
        check(
            json!({"type": "ExternalName", "externalName": "Not_Valid"}),
            &["spec.externalName: Invalid value: \"Not_Valid\""],
        );
        check(
            json!({"type": "ExternalName", "externalName": "a.b", "clusterIP": "10.43.0.5"}),
            &["spec.clusterIP: Forbidden"],
        );
        // Immutable once set, except to or from ExternalName.
        let old = svc(json!({"clusterIP": "10.43.0.5", "ports": ok_port}));
        let changed = svc(json!({"clusterIP": "10.43.0.6", "ports": ok_port}));
        let got: Vec<String> = validate("", "Service", &changed, Some(&old), true)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            got,
            ["spec.clusterIPs[0]: Invalid value: \"10.43.0.6\": may not change once set"]
        );
        let ext = svc(json!({"type": "ExternalName", "externalName": "a.b", "ports": ok_port}));
        assert!(validate("", "Service", &ext, Some(&old), true).is_empty());
        assert!(validate("", "Service", &changed, Some(&ext), true).is_empty());
    }

    #[test]
    fn ip_addresses_are_named_by_canonical_ips_and_immutable() {
        let ip = |name: &str, parent: Value| json!({"metadata": {"name": name}, "spec": {"parentRef": parent}});
        let cluster_fields = |obj: Value| -> Vec<String> {
            validate("networking.k8s.io", "IPAddress", &obj, None, false)
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect()
        };
        let parent = json!({"resource": "services", "namespace": "d", "name": "s"});
        assert!(cluster_fields(ip("10.43.0.5", parent.clone())).is_empty());
        let got = cluster_fields(ip("10.43.0.05", parent.clone()));
        assert!(
            got[0].starts_with("metadata.name: Invalid value"),
            "{got:?}"
        );
        let got = cluster_fields(ip("10.43.0.5", Value::Null));
        assert_eq!(got, ["spec.parentRef: Required value"]);
        let old = ip("10.43.0.5", parent);
        let new = ip(
            "10.43.0.5",
            json!({"resource": "services", "namespace": "d", "name": "t"}),
        );
        let got = validate("networking.k8s.io", "IPAddress", &new, Some(&old), false);
        assert_eq!(got[0].field, "spec.parentRef");
    }

    #[test]
    fn invalid_objects_name_their_fields() {
        let cases: &[(&str, &str, Value, &str)] = &[
            (
                "",
                "ConfigMap",
                json!({"metadata":{"name":"Bad_Name","namespace":"d"}}),
                "metadata.name: Invalid value: \"Bad_Name\"",
            ),
            (
                "",
                "Pod",
                json!({"metadata":{"name":"p","namespace":"d"},"spec":{"containers":[]}}),
                "spec.containers: Required value",
            ),
            (
                "",
                "Pod",
                json!({"metadata":{"name":"p","namespace":"d"},"spec":{"containers":[{"name":"c"}]}}),
                "spec.containers[0].image: Required value",
            ),
            (
                "apps",
                "Deployment",
                json!({"metadata":{"name":"d","namespace":"d"},"spec":{"replicas":-1,"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}),
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                "apps",
                "Deployment",
                json!({"metadata":{"name":"d","namespace":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"c"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}),
                "spec.template.metadata.labels: Invalid value",
            ),
            (
                "apps",
                "Deployment",
                json!({"metadata":{"name":"d","namespace":"d"},"spec":{"strategy":{"type":"Blue"},"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}),
                "spec.strategy.type: Unsupported value: \"Blue\"",
            ),
            (
                "",
                "Service",
                json!({"metadata":{"name":"s","namespace":"d"},"spec":{"ports":[{"port":80,"targetPort":"Bad_Name"}]}}),
                "spec.ports[0].targetPort: Invalid value",
            ),
            (
                "batch",
                "CronJob",
                json!({"metadata":{"name":"c","namespace":"d"},"spec":{"schedule":"61 * * * *","jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"i"}]}}}}}}),
                "spec.schedule: Invalid value",
            ),
        ];
        for (group, kind, obj, want) in cases {
            let got = fields(group, kind, obj.clone());
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "{kind}: want {want:?} in {got:?}"
            );
        }
    }

    #[test]
    fn volume_file_paths_stay_inside_the_volume() {
        let pod = |volumes: Value| json!({"metadata":{"name":"p","namespace":"d"},"spec":{"volumes": volumes,"containers":[{"name":"c","image":"i"}]}});
        let cases: &[(Value, &[&str])] = &[
            (
                json!([{"name":"v","configMap":{"name":"c","items":[{"key":"k","path":"a/b"}]}}]),
                &[],
            ),
            (
                json!([{"name":"v","configMap":{"name":"c","items":[{"key":"k","path":"/etc/passwd"}]}}]),
                &["spec.volumes[0].configMap.items[0].path: Invalid value: \"/etc/passwd\": must be a relative path"],
            ),
            (
                json!([{"name":"v","secret":{"secretName":"s","items":[{"key":"k","path":"a/../../x"}]}}]),
                &["spec.volumes[0].secret.items[0].path: Invalid value: \"a/../../x\": must not contain '..'"],
            ),
            (
                json!([{"name":"v","downwardAPI":{"items":[{"path":"..x","fieldRef":{"fieldPath":"metadata.name"}}]}}]),
                &["spec.volumes[0].downwardAPI.items[0].path: Invalid value: \"..x\": must not start with '..'"],
            ),
            (
                json!([{"name":"v","projected":{"sources":[
                    {"serviceAccountToken":{"path":"../../token","expirationSeconds":60}},
                    {"configMap":{"name":"c","items":[{"key":"k","path":""}]}}]}}]),
                &[
                    "spec.volumes[0].projected.sources[0].serviceAccountToken.path: Invalid value: \"../../token\": must not contain '..'",
                    "spec.volumes[0].projected.sources[0].serviceAccountToken.path: Invalid value: \"../../token\": must not start with '..'",
                    "spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes",
                    "spec.volumes[0].projected.sources[1].configMap.items[0].path: Required value",
                ],
            ),
            (
                json!([{"name":"v","projected":{"sources":[{"serviceAccountToken":{"path":"t","expirationSeconds":8589934592_i64}}]}}]),
                &["spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 8589934592: may not specify a duration larger than 2^32 seconds"],
            ),
            (
                json!([{"name":"v","projected":{"sources":[{"serviceAccountToken":{"path":"token","expirationSeconds":3607}}]}}]),
                &[],
            ),
        ];
        for (volumes, want) in cases {
            let got = fields("", "Pod", pod(volumes.clone()));
            assert_eq!(
                got.len(),
                want.len(),
                "{volumes}: got {got:?}, want {want:?}"
            );
            for (g, w) in got.iter().zip(want.iter()) {
                assert!(g.starts_with(w), "{volumes}: got {g:?}, want {w:?}");
            }
        }
    }

    #[test]
    fn more_kinds() {
        let cases: &[(&str, &str, Value, &str)] = &[
            (
                "",
                "PersistentVolumeClaim",
                json!({"metadata":{"name":"c","namespace":"d"},"spec":{}}),
                "spec.accessModes: Required value",
            ),
            (
                "node.k8s.io",
                "RuntimeClass",
                json!({"metadata":{"name":"r"}}),
                "handler: Required value",
            ),
            (
                "scheduling.k8s.io",
                "PriorityClass",
                json!({"metadata":{"name":"p"}}),
                "value: Required value",
            ),
            (
                "rbac.authorization.k8s.io",
                "RoleBinding",
                json!({"metadata":{"name":"b","namespace":"d"},"roleRef":{"kind":"Pod","name":"x"}}),
                "roleRef.kind: Unsupported value",
            ),
            (
                "policy",
                "PodDisruptionBudget",
                json!({"metadata":{"name":"b","namespace":"d"},"spec":{"minAvailable":1,"maxUnavailable":1,"selector":{"matchLabels":{"a":"b"}}}}),
                "spec: Invalid value",
            ),
            (
                "policy",
                "PodDisruptionBudget",
                json!({"metadata":{"name":"b","namespace":"d"},"spec":{"minAvailable":"150%"}}),
                "spec.minAvailable: Invalid value: \"150%\": must not be greater than 100%",
            ),
            (
                "policy",
                "PodDisruptionBudget",
                json!({"metadata":{"name":"b","namespace":"d"},"spec":{"maxUnavailable":-1}}),
                "spec.maxUnavailable: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                "policy",
                "PodDisruptionBudget",
                json!({"metadata":{"name":"b","namespace":"d"},"spec":{"unhealthyPodEvictionPolicy":"Never"}}),
                "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Never\"",
            ),
            (
                "discovery.k8s.io",
                "EndpointSlice",
                json!({"metadata":{"name":"s","namespace":"d"},"addressType":"IPv5"}),
                "addressType: Unsupported value",
            ),
        ];
        for (group, kind, obj, want) in cases {
            let namespaced = obj.pointer("/metadata/namespace").is_some();
            let got: Vec<String> = validate(group, kind, obj, None, namespaced)
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect();
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "{kind}: want {want:?} in {got:?}"
            );
        }
    }

    #[test]
    fn valid_deployment_passes() {
        let d = json!({"metadata":{"name":"web","namespace":"default","labels":{"app":"web"}},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx:1","ports":[{"containerPort":80}]}]}}}});
        assert_eq!(fields("apps", "Deployment", d), Vec::<String>::new());
    }

    #[test]
    fn wrong_type_names_the_field() {
        let d = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"replicas":"three","selector":{},"template":{}}});
        let e = check_types("apps", "v1", "Deployment", &d).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("spec.replicas"), "{}", e.message);
    }

    #[test]
    fn right_types_pass() {
        let p = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"containers":[{"name":"c","image":"i"}]}});
        check_types("", "v1", "Pod", &p).unwrap();
    }
}
