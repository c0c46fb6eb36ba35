//! CustomResourceDefinitions: the resources a CRD serves, and the structural
//! schema semantics its custom resources get — pruning of unknown fields,
//! defaults, and validation (types, required, enum, bounds, lengths) with
//! Kubernetes-style messages and field paths.

use std::sync::Arc;

use apimachinery::names::{self, FieldError};
use serde_json::{Map, Value};

use crate::registry::{CustomResource, ResourceType, ScaleSpec, Scope};
use crate::status::Cause;

/// One ResourceType per served version of the CRD.
pub fn resource_types(crd: &Value) -> Vec<ResourceType> {
    let spec = match crd.get("spec") {
        Some(s) => s,
        None => return Vec::new(),
    };
    let str_of = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let group = str_of(spec, "/group");
    let kind = str_of(spec, "/names/kind");
    let plural = str_of(spec, "/names/plural");
    if group.is_empty() || kind.is_empty() || plural.is_empty() {
        return Vec::new();
    }
    let singular = Some(str_of(spec, "/names/singular"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| kind.to_lowercase());
    let list = |p: &str| crate::string_list(spec.pointer(p));
    let scope = if str_of(spec, "/scope") == "Cluster" {
        Scope::Cluster
    } else {
        Scope::Namespaced
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage = versions
        .iter()
        .find(|v| v.get("storage") == Some(&Value::Bool(true)))
        .or(versions.first())
        .map(|v| str_of(v, "/name"))
        .unwrap_or_default();
    let crd_name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    versions
        .iter()
        .filter(|v| v.get("served") != Some(&Value::Bool(false)))
        .map(|v| {
            let version = str_of(v, "/name");
            let scale = v.pointer("/subresources/scale").map(|s| ScaleSpec {
                spec_replicas_path: str_of(s, "/specReplicasPath"),
                status_replicas_path: str_of(s, "/statusReplicasPath"),
                label_selector_path: s
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .map(String::from),
            });
            ResourceType {
                group: group.clone(),
                version: version.clone(),
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                short_names: list("/names/shortNames"),
                categories: list("/names/categories"),
                scope,
                has_status: v.pointer("/subresources/status").is_some(),
                scale,
                storage_version: format!("{group}/{storage}"),
                storage_prefix: format!("/registry/{group}/{plural}/"),
                custom: Some(Arc::new(CustomResource {
                    crd_name: crd_name.clone(),
                    schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                    printer_columns: v
                        .get("additionalPrinterColumns")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    served: true,
                })),
                create_only: false,
            }
        })
        .collect()
}

/// Validates a CRD object itself (beyond its types).
pub fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = crd.get("spec");
    let get = |p: &str| {
        spec.and_then(|s| s.pointer(p))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let group = get("/group");
    let plural = get("/names/plural");
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    }
    if get("/names/kind").is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match get("/scope") {
        "Namespaced" | "Cluster" => {}
        "" => errs.push(FieldError::required("spec.scope", "")),
        other => errs.push(FieldError::not_supported(
            "spec.scope",
            other,
            &["Cluster", "Namespaced"],
        )),
    }
    let versions = spec
        .and_then(|s| s.get("versions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            "null",
            "must have exactly one version marked as storage version",
        ));
    } else {
        let storage = versions
            .iter()
            .filter(|v| v.get("storage") == Some(&Value::Bool(true)))
            .count();
        if storage != 1 {
            errs.push(FieldError::invalid(
                "spec.versions",
                format!("{storage} storage versions"),
                "must have exactly one version marked as storage version",
            ));
        }
        for (i, v) in versions.iter().enumerate() {
            let vname = v.get("name").and_then(Value::as_str).unwrap_or("");
            for m in names::is_dns1035_label(vname) {
                errs.push(FieldError::invalid(
                    format!("spec.versions[{i}].name"),
                    vname,
                    m,
                ));
            }
            match v.pointer("/schema/openAPIV3Schema") {
                None => errs.push(FieldError::required(
                    format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "schemas are required",
                )),
                Some(s) => {
                    if s.get("type").and_then(Value::as_str) != Some("object") {
                        errs.push(FieldError::invalid(
                            format!("spec.versions[{i}].schema.openAPIV3Schema.type"),
                            s.get("type").and_then(Value::as_str).unwrap_or(""),
                            "must be object at the root",
                        ));
                    }
                }
            }
        }
    }
    errs
}

/// Fields of `obj` that the schema does not know, as `.spec.foo` paths.
pub fn unknown_fields(obj: &Value, schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_unknown(obj, schema, "", true, &mut out);
    out
}

fn walk_unknown(v: &Value, schema: &Value, path: &str, root: bool, out: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        && schema.get("properties").is_none()
    {
        return;
    }
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (k, child) in m {
                let child_path = format!("{path}.{k}");
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    walk_unknown(child, s, &child_path, false, out);
                } else if let Some(a) = additional.filter(|a| a.is_object()) {
                    walk_unknown(child, a, &child_path, false, out);
                } else if additional == Some(&Value::Bool(true))
                    || schema.get("x-kubernetes-preserve-unknown-fields")
                        == Some(&Value::Bool(true))
                {
                } else {
                    out.push(child_path);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk_unknown(item, s, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

/// Drops unknown fields (pruning) and fills in `default`s, in place.
pub fn apply_schema_defaults(obj: &mut Value, schema: &Value) {
    prune_and_default(obj, schema, true);
}

fn prune_and_default(v: &mut Value, schema: &Value, root: bool) {
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if let Some(props) = props {
                for (k, s) in props {
                    if !m.contains_key(k) {
                        if let Some(d) = s.get("default") {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                }
            }
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(s) = props.and_then(|p| p.get(&k)) {
                    prune_and_default(m.get_mut(&k).unwrap(), s, false);
                } else if let Some(a) = additional {
                    prune_and_default(m.get_mut(&k).unwrap(), a, false);
                } else if !preserve
                    && schema.get("additionalProperties") != Some(&Value::Bool(true))
                {
                    m.remove(&k);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for item in items {
                    prune_and_default(item, s, false);
                }
            }
        }
        _ => {}
    }
}

/// Validates a custom resource: metadata, then the schema.
pub fn validate_custom(obj: &Value, schema: Option<&Value>, namespaced: bool) -> Vec<Cause> {
    let mut errs = Vec::new();
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
        names::validate_object_meta_name,
    ));
    if namespaced && s("namespace").is_empty() {
        errs.push(FieldError::required("metadata.namespace", ""));
    }
    if let Some(schema) = schema {
        if let Value::Object(m) = obj {
            let mut body = Map::new();
            for (k, v) in m {
                if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    body.insert(k.clone(), v.clone());
                }
            }
            let mut root = schema.clone();
            if let Some(req) = root.get_mut("required").and_then(Value::as_array_mut) {
                req.retain(|r| !matches!(r.as_str(), Some("apiVersion" | "kind" | "metadata")));
            }
            check_schema(&Value::Object(body), &root, "", &mut errs);
        }
    }
    errs.into_iter().map(Cause::from).collect()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn check_schema(v: &Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let field = path.trim_start_matches('.');
    let display = if field.is_empty() {
        "<root>".to_string()
    } else {
        field.to_string()
    };
    if v.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !matches!(type_name(v), "integer" | "string") {
            errs.push(FieldError::invalid(
                field,
                shown(v),
                format!(
                    "{display} in body must be of type integer or string: \"{}\"",
                    type_name(v)
                ),
            ));
        }
        return;
    }
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let got = type_name(v);
        let ok = got == want || (want == "number" && got == "integer");
        if !ok {
            errs.push(FieldError {
                field: field.to_string(),
                kind: names::FieldErrorKind::Invalid,
                value: Some(shown(v)),
                message: format!("{display} in body must be of type {want}: \"{got}\""),
                value_unquoted: false,
            });
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(v) {
            let list: Vec<String> = options.iter().map(shown).collect();
            let refs: Vec<&str> = list.iter().map(String::as_str).collect();
            errs.push(FieldError::not_supported(field, shown(v), &refs));
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                errs.push(FieldError::invalid(
                    field,
                    shown(v),
                    format!("{display} in body should be greater than or equal to {min}"),
                ));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                errs.push(FieldError::invalid(
                    field,
                    shown(v),
                    format!("{display} in body should be less than or equal to {max}"),
                ));
            }
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if len < min {
                errs.push(FieldError::invalid(
                    field,
                    s,
                    format!("{display} in body should be at least {min} chars long"),
                ));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                errs.push(FieldError::too_long(field, max as usize));
            }
        }
    }
    match v {
        Value::Object(m) => {
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !m.contains_key(r) {
                    errs.push(FieldError::required(
                        format!("{path}.{r}").trim_start_matches('.').to_string(),
                        "",
                    ));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, child) in m {
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    check_schema(child, s, &format!("{path}.{k}"), errs);
                } else if let Some(a) = schema.get("additionalProperties").filter(|a| a.is_object())
                {
                    check_schema(child, a, &format!("{path}.{k}"), errs);
                }
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    errs.push(FieldError::invalid(
                        field,
                        format!("{} items", items.len()),
                        format!("{display} in body should have at least {min} items"),
                    ));
                }
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if items.len() as u64 > max {
                    errs.push(FieldError::too_long(field, max as usize));
                }
            }
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_schema(item, s, &format!("{path}[{i}]"), errs);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type":"object","properties":{"spec":{"type":"object","required":["size"],"properties":{
            "size":{"type":"integer","minimum":1,"maximum":10},
            "color":{"type":"string","enum":["red","blue"],"default":"red"},
            "tags":{"type":"array","items":{"type":"string"}},
            "extra":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}},
            "status":{"type":"object","properties":{"ready":{"type":"boolean"}}}}})
    }

    fn check(obj: Value, want: &[&str]) {
        let got: Vec<String> = validate_custom(&obj, Some(&schema()), true)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert!(g.starts_with(w), "{g:?} should start with {w:?}");
        }
    }

    #[test]
    fn schema_validation() {
        let m = json!({"name":"a","namespace":"d"});
        check(json!({"metadata": m, "spec": {"size": 3}}), &[]);
        check(
            json!({"metadata": m, "spec": {}}),
            &["spec.size: Required value"],
        );
        check(
            json!({"metadata": m, "spec": {"size": "big"}}),
            &["spec.size: Invalid value: \"big\": spec.size in body must be of type integer"],
        );
        check(json!({"metadata": m, "spec": {"size": 11}}), &["spec.size: Invalid value: \"11\": spec.size in body should be less than or equal to 10"]);
        check(
            json!({"metadata": m, "spec": {"size": 1, "color": "green"}}),
            &["spec.color: Unsupported value: \"green\""],
        );
        check(
            json!({"metadata": m, "spec": {"size": 1, "tags": [1]}}),
            &["spec.tags[0]: Invalid value"],
        );
    }

    #[test]
    fn pruning_defaults_and_unknown_fields() {
        let mut obj = json!({"apiVersion":"x/v1","kind":"K","metadata":{"name":"a"},"spec":{"size":1,"bogus":true,"extra":{"anything":1}}});
        assert_eq!(
            unknown_fields(&obj, &schema()),
            vec![".spec.bogus".to_string()]
        );
        apply_schema_defaults(&mut obj, &schema());
        assert_eq!(
            obj["spec"],
            json!({"size":1,"extra":{"anything":1},"color":"red"})
        );
    }

    #[test]
    fn resource_types_per_served_version() {
        let crd = json!({"metadata":{"name":"widgets.example.com"},"spec":{"group":"example.com","scope":"Namespaced",
            "names":{"kind":"Widget","plural":"widgets","shortNames":["wd"]},
            "versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object"}},"subresources":{"status":{},"scale":{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.replicas"}}},
                        {"name":"v1beta1","served":false,"storage":false,"schema":{"openAPIV3Schema":{"type":"object"}}}]}});
        let rts = resource_types(&crd);
        assert_eq!(rts.len(), 1);
        assert_eq!(rts[0].storage_prefix, "/registry/example.com/widgets/");
        assert!(rts[0].has_status && rts[0].scale.is_some());
        assert!(validate_crd(&crd).is_empty(), "{:?}", validate_crd(&crd));
    }
}
