//! Walks objects along the patch metadata type graph: the paths of an object, the merge of an applied configuration into a live object, and removal of paths.

use super::fieldset::{FieldPath, FieldSet, PathElement};
use crate::patch_meta::{field_meta, FieldMeta, ListType, TypeMeta};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// How the type of a value is known. Custom resources have no built-in type
/// metadata; like Kubernetes' deduced schema, every object key of theirs is
/// owned on its own and every list is atomic.
#[derive(Debug, Clone, Copy)]
pub enum Schema {
    Typed(Option<&'static TypeMeta>),
    Deduced,
}

impl Schema {
    pub fn for_root(ty: Option<&'static TypeMeta>) -> Schema {
        match ty {
            Some(_) => Schema::Typed(ty),
            None => Schema::Deduced,
        }
    }

    fn field(self, name: &str) -> (Schema, FieldMeta) {
        match self {
            Schema::Typed(ty) => {
                let meta = field_meta(ty, name);
                (Schema::Typed(meta.ty), meta)
            }
            Schema::Deduced => (Schema::Deduced, field_meta(None, name)),
        }
    }

    fn is_atomic_struct(self) -> bool {
        matches!(self, Schema::Typed(Some(ty)) if ty.atomic)
    }
}

/// How a list field is owned by server-side apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    Atomic,
    Set,
    Map(Vec<&'static str>),
}

/// The list kind of a field; lists that only have the legacy strategic merge
/// patch tags are associative by their merge key, as in Kubernetes' OpenAPI.
pub fn list_kind(meta: &FieldMeta) -> ListKind {
    match (meta.list_type, meta.merge_key) {
        (Some(ListType::Map), _) if !meta.map_keys.is_empty() => {
            ListKind::Map(meta.map_keys.to_vec())
        }
        (Some(ListType::Map), Some(key)) | (None, Some(key)) => ListKind::Map(vec![key]),
        (Some(ListType::Set), _) => ListKind::Set,
        (None, None) if meta.strategy.merges() => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// The path element of a list element, or `None` when it cannot have one.
pub fn element_path_element(kind: &ListKind, element: &Value, index: usize) -> Option<PathElement> {
    match kind {
        ListKind::Atomic => None,
        ListKind::Set => Some(PathElement::value(element)),
        ListKind::Map(keys) => {
            let Value::Object(fields) = element else {
                return Some(PathElement::Index(index));
            };
            let mut key = Map::new();
            for name in keys {
                match fields.get(*name) {
                    Some(value) => {
                        key.insert((*name).to_string(), value.clone());
                    }
                    // `protocol` is the one defaulted list-map key of the built-in types.
                    None if *name == "protocol" => {
                        key.insert("protocol".to_string(), Value::String("TCP".to_string()));
                    }
                    None => {}
                }
            }
            if key.is_empty() {
                Some(PathElement::Index(index))
            } else {
                Some(PathElement::key(&key))
            }
        }
    }
}

/// What an object holds at one path.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Owned on its own when the object is applied (a leaf, list element, or empty object).
    pub member: bool,
    /// The value, for leaves, whose changes are modifications.
    pub leaf: Option<Value>,
    /// An untyped map (labels, annotations, ...): an update that creates it
    /// owns the map itself as well, as Kubernetes records with `"."`.
    pub map: bool,
}

/// Every path of `value` with what it holds. `ignored` paths and everything
/// below them are left out.
pub fn flatten(value: &Value, schema: Schema, ignored: &[FieldPath]) -> BTreeMap<FieldPath, Node> {
    let mut out = BTreeMap::new();
    if let Value::Object(map) = value {
        walk_object(map, schema, &FieldPath::default(), true, &mut out);
    }
    out.retain(|path, _| !ignored.iter().any(|ignored| ignored.is_prefix_of(path)));
    out
}

/// `leaves`: whether leaf nodes carry their value (only needed to tell a
/// modification when both sides have the path).
fn walk_object(
    map: &Map<String, Value>,
    schema: Schema,
    path: &FieldPath,
    leaves: bool,
    out: &mut BTreeMap<FieldPath, Node>,
) {
    for (key, value) in map {
        let (child_schema, meta) = schema.field(key);
        let child_path = path.child(PathElement::field(key));
        walk_value(value, child_schema, &meta, &child_path, leaves, out);
        if matches!(schema, Schema::Deduced) {
            if let Some(node) = out.get_mut(&child_path) {
                node.member = true;
            }
        }
    }
}

fn walk_value(
    value: &Value,
    schema: Schema,
    meta: &FieldMeta,
    path: &FieldPath,
    leaves: bool,
    out: &mut BTreeMap<FieldPath, Node>,
) {
    let leaf = |out: &mut BTreeMap<FieldPath, Node>| {
        out.insert(
            path.clone(),
            Node {
                member: true,
                leaf: Some(if leaves { value.clone() } else { Value::Null }),
                map: false,
            },
        );
    };
    match value {
        Value::Object(map) if map.is_empty() || schema.is_atomic_struct() => leaf(out),
        Value::Object(map) => {
            let untyped_map = matches!(schema, Schema::Typed(None));
            out.insert(
                path.clone(),
                Node {
                    member: matches!(schema, Schema::Deduced),
                    leaf: None,
                    map: untyped_map,
                },
            );
            walk_object(map, schema, path, leaves, out);
        }
        Value::Array(items) => {
            let kind = if matches!(schema, Schema::Deduced) {
                ListKind::Atomic
            } else {
                list_kind(meta)
            };
            if kind == ListKind::Atomic {
                return leaf(out);
            }
            out.insert(
                path.clone(),
                Node {
                    member: false,
                    leaf: None,
                    map: false,
                },
            );
            for (index, item) in items.iter().enumerate() {
                let Some(element) = element_path_element(&kind, item, index) else {
                    continue;
                };
                let element_path = path.child(element);
                match (&kind, item) {
                    (ListKind::Map(_), Value::Object(fields)) => {
                        out.insert(
                            element_path.clone(),
                            Node {
                                member: true,
                                leaf: None,
                                map: false,
                            },
                        );
                        walk_object(fields, schema, &element_path, leaves, out);
                    }
                    _ => {
                        out.insert(
                            element_path,
                            Node {
                                member: true,
                                leaf: Some(if leaves { item.clone() } else { Value::Null }),
                                map: false,
                            },
                        );
                    }
                }
            }
        }
        _ => leaf(out),
    }
}

/// The paths an applier of `value` owns.
pub fn to_field_set(value: &Value, schema: Schema, ignored: &[FieldPath]) -> FieldSet {
    FieldSet::from_paths(
        flatten(value, schema, ignored)
            .into_iter()
            .filter(|(_, node)| node.member)
            .map(|(path, _)| path),
    )
}

/// What changed from `old` to `new`, as Kubernetes' field manager sees it.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

pub fn compare(old: &BTreeMap<FieldPath, Node>, new: &BTreeMap<FieldPath, Node>) -> Comparison {
    let mut comparison = Comparison::default();
    for (path, node) in new {
        match old.get(path) {
            None if node.member || node.map => comparison.added.insert(path.clone()),
            Some(before) if node.leaf.is_some() && before.leaf != node.leaf => {
                comparison.modified.insert(path.clone())
            }
            _ => {}
        }
    }
    for (path, node) in old {
        if !new.contains_key(path) && (node.member || node.map) {
            comparison.removed.insert(path.clone());
        }
    }
    comparison
}

/// `compare(&flatten(old), &flatten(new))`, without flattening what did not
/// change: the paths under a field depend only on its value and its place in
/// the type graph, so a field whose value is equal on both sides adds nothing
/// to the comparison and is skipped after a deep equality check (no
/// allocation), and ignored fields are not walked at all. Objects that are
/// non-empty on both sides are compared field by field; everything else that
/// differs (lists, leaves, an object that appeared or emptied) is flattened
/// on both sides and compared as `compare` would. An update usually changes a
/// few fields of a large object (a pod's status, one annotation), so this is
/// proportional to what changed rather than to the object.
pub fn compare_values(
    old: &Value,
    new: &Value,
    schema: Schema,
    ignored: &[FieldPath],
) -> Comparison {
    let mut comparison = Comparison::default();
    let empty = Map::new();
    diff_objects(
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
        schema,
        &FieldPath::default(),
        ignored,
        &mut comparison,
    );
    comparison
}

fn diff_objects(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    schema: Schema,
    path: &FieldPath,
    ignored: &[FieldPath],
    out: &mut Comparison,
) {
    for (key, new_value) in new {
        let old_value = old.get(key);
        if old_value != Some(new_value) {
            diff_field(key, old_value, Some(new_value), schema, path, ignored, out);
        }
    }
    for (key, old_value) in old {
        if !new.contains_key(key) {
            diff_field(key, Some(old_value), None, schema, path, ignored, out);
        }
    }
}

/// One field of an object whose value differs (or exists on one side only).
fn diff_field(
    key: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    schema: Schema,
    path: &FieldPath,
    ignored: &[FieldPath],
    out: &mut Comparison,
) {
    let (child_schema, meta) = schema.field(key);
    let child_path = path.child(PathElement::field(key));
    if ignored.iter().any(|i| i.is_prefix_of(&child_path)) {
        return;
    }
    if let (Some(Value::Object(o)), Some(Value::Object(n))) = (old, new) {
        // Both sides hold the same node for the object itself (it is
        // neither a leaf nor empty), so only its fields can differ.
        if !o.is_empty() && !n.is_empty() && !child_schema.is_atomic_struct() {
            diff_objects(o, n, child_schema, &child_path, ignored, out);
            return;
        }
    }
    // What `walk_object` records for this one field.
    let flatten_field = |value: Option<&Value>, leaves: bool| {
        let mut paths = BTreeMap::new();
        if let Some(value) = value {
            walk_value(value, child_schema, &meta, &child_path, leaves, &mut paths);
            if matches!(schema, Schema::Deduced) {
                if let Some(node) = paths.get_mut(&child_path) {
                    node.member = true;
                }
            }
        }
        paths.retain(|p, _| !ignored.iter().any(|i| i.is_prefix_of(p)));
        paths
    };
    if old.is_none() || new.is_none() {
        // On one side only (every field of a create): all its owned paths
        // were added or removed, whatever their values, so `compare` with an
        // empty side, without copying leaf values or paths.
        let out = if new.is_some() {
            &mut out.added
        } else {
            &mut out.removed
        };
        for (path, node) in flatten_field(old.or(new), false) {
            if node.member || node.map {
                out.insert(path);
            }
        }
        return;
    }
    let comparison = compare(&flatten_field(old, true), &flatten_field(new, true));
    for (from, to) in [
        (comparison.added, &mut out.added),
        (comparison.modified, &mut out.modified),
        (comparison.removed, &mut out.removed),
    ] {
        for p in from.0 {
            to.insert(p);
        }
    }
}

/// Merges an applied configuration into the live object: objects merge,
/// granular lists merge by key or value, everything else is replaced.
pub fn merge(live: &Value, applied: &Value, schema: Schema, meta: &FieldMeta) -> Value {
    match (live, applied) {
        (Value::Object(live_map), Value::Object(applied_map)) if !schema.is_atomic_struct() => {
            let mut merged = live_map.clone();
            for (key, applied_value) in applied_map {
                let (child_schema, child_meta) = schema.field(key);
                let value = match live_map.get(key) {
                    Some(live_value) => merge(live_value, applied_value, child_schema, &child_meta),
                    None => applied_value.clone(),
                };
                merged.insert(key.clone(), value);
            }
            Value::Object(merged)
        }
        (Value::Array(live_items), Value::Array(applied_items))
            if !matches!(schema, Schema::Deduced) =>
        {
            match list_kind(meta) {
                ListKind::Atomic => applied.clone(),
                kind => Value::Array(merge_list(live_items, applied_items, kind, schema, meta)),
            }
        }
        _ => applied.clone(),
    }
}

/// Live-only elements keep their place; applied elements come in applied
/// order, each shared element emitted where the live list had it, and new
/// elements after the last shared one before them.
fn merge_list(
    live: &[Value],
    applied: &[Value],
    kind: ListKind,
    schema: Schema,
    meta: &FieldMeta,
) -> Vec<Value> {
    let key_of = |item: &Value, index: usize| element_path_element(&kind, item, index);
    let live_keys: Vec<Option<PathElement>> =
        live.iter().enumerate().map(|(i, v)| key_of(v, i)).collect();
    let applied_keys: Vec<Option<PathElement>> = applied
        .iter()
        .enumerate()
        .map(|(i, v)| key_of(v, i))
        .collect();
    let mut result = Vec::with_capacity(live.len() + applied.len());
    let mut next_applied = 0;
    let take_applied = |index: usize, result: &mut Vec<Value>| {
        let applied_item = &applied[index];
        let merged = match live_keys
            .iter()
            .position(|k| k.is_some() && *k == applied_keys[index])
        {
            Some(live_index) if matches!(kind, ListKind::Map(_)) => {
                merge(&live[live_index], applied_item, schema, meta)
            }
            _ => applied_item.clone(),
        };
        result.push(merged);
    };
    for (live_index, live_key) in live_keys.iter().enumerate() {
        match applied_keys
            .iter()
            .position(|k| k.is_some() && k == live_key)
        {
            Some(applied_index) => {
                while next_applied <= applied_index {
                    take_applied(next_applied, &mut result);
                    next_applied += 1;
                }
            }
            None => result.push(live[live_index].clone()),
        }
    }
    while next_applied < applied.len() {
        take_applied(next_applied, &mut result);
        next_applied += 1;
    }
    result
}

/// Removes the value at `path`; missing paths are ignored.
pub fn remove_path(value: &mut Value, path: &FieldPath) {
    let Some((last, parents)) = path.0.split_last() else {
        return;
    };
    let mut current = value;
    for element in parents {
        let next = match (current, element) {
            (Value::Object(map), PathElement::Field(name)) => map.get_mut(name),
            (Value::Array(items), element) => items
                .iter_mut()
                .enumerate()
                .find(|(i, item)| element_matches(element, item, *i))
                .map(|(_, item)| item),
            _ => None,
        };
        let Some(next) = next else { return };
        current = next;
    }
    match (current, last) {
        (Value::Object(map), PathElement::Field(name)) => {
            map.shift_remove(name);
        }
        (Value::Array(items), element) => {
            let mut index = 0;
            items.retain(|item| {
                let keep = !element_matches(element, item, index);
                index += 1;
                keep
            });
        }
        _ => {}
    }
}

fn element_matches(element: &PathElement, item: &Value, index: usize) -> bool {
    match element {
        PathElement::Field(_) => false,
        PathElement::Index(i) => *i == index,
        PathElement::Value(json) => super::fieldset::canonical_json(item) == *json,
        PathElement::Key(json) => {
            let Ok(Value::Object(key)) = serde_json::from_str::<Value>(json) else {
                return false;
            };
            key.iter().all(|(name, value)| match item.get(name) {
                Some(actual) => actual == value,
                None => name == "protocol" && value == "TCP",
            })
        }
    }
}

#[cfg(test)]
#[rustfmt::skip]
mod tests {
    use super::*;
    use crate::patch_meta::root_type;
    use serde_json::json;

    /// The applier's field set of `value` as FieldsV1.
    fn check(kind: &str, value: Value, expect: Value) {
        let ty = match kind.split_once('/') {
            Some((group, kind)) => root_type(group, kind),
            None => root_type("", kind),
        };
        let set = to_field_set(&value, Schema::for_root(ty), &[]);
        assert_eq!(set.to_fields_v1(), expect, "{kind} {value}");
    }

    #[test]
    fn field_sets_of_objects() {
        check("Pod", json!({"spec": {"nodeName": "a"}}), json!({"f:spec": {"f:nodeName": {}}}));
        check("Pod", json!({"metadata": {"labels": {"app": "x"}}}), json!({"f:metadata": {"f:labels": {"f:app": {}}}}));
        check("Pod", json!({"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}), json!({"f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}}));
        check("Pod", json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}}), json!({"f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:name": {}, "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}}));
        check("Pod", json!({"spec": {"tolerations": [{"key": "a"}]}}), json!({"f:spec": {"f:tolerations": {}}}));
        check("Pod", json!({"metadata": {"finalizers": ["a", "b"]}}), json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}}}));
        check("Pod", json!({"spec": {"securityContext": {}}}), json!({"f:spec": {"f:securityContext": {}}}));
        check("apps/Deployment", json!({"spec": {"selector": {"matchLabels": {"app": "x"}}}}), json!({"f:spec": {"f:selector": {}}}));
        check("Widget", json!({"spec": {"size": 1, "tags": ["a"]}}), json!({"f:spec": {".": {}, "f:size": {}, "f:tags": {}}}));
    }

    fn check_merge(live: Value, applied: Value, expect: Value) {
        let ty = root_type("", "Pod");
        assert_eq!(merge(&live, &applied, Schema::for_root(ty), &field_meta(None, "")), expect, "{applied} into {live}");
    }

    #[test]
    fn merging_applied_configuration() {
        let pod = |containers: Value| json!({"spec": {"containers": containers}});
        check_merge(pod(json!([{"name": "a"}, {"name": "b"}])), pod(json!([{"name": "b", "image": "x"}])), pod(json!([{"name": "a"}, {"name": "b", "image": "x"}])));
        check_merge(pod(json!([{"name": "a"}, {"name": "b"}])), pod(json!([{"name": "c"}])), pod(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])));
        check_merge(pod(json!([{"name": "a"}, {"name": "b"}])), pod(json!([{"name": "c"}, {"name": "b"}])), pod(json!([{"name": "a"}, {"name": "c"}, {"name": "b"}])));
        check_merge(json!({"spec": {"tolerations": [{"key": "a"}]}}), json!({"spec": {"tolerations": [{"key": "b"}]}}), json!({"spec": {"tolerations": [{"key": "b"}]}}));
        check_merge(json!({"metadata": {"finalizers": ["a"]}}), json!({"metadata": {"finalizers": ["b", "a"]}}), json!({"metadata": {"finalizers": ["b", "a"]}}));
        check_merge(json!({"metadata": {"labels": {"a": "1"}}}), json!({"metadata": {"labels": {"b": "2"}}}), json!({"metadata": {"labels": {"a": "1", "b": "2"}}}));
    }

    #[test]
    fn removing_paths() {
        let mut value = json!({"spec": {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80}]}, {"name": "b"}]}, "metadata": {"finalizers": ["f", "g"]}});
        let containers = FieldPath::fields(&["spec", "containers"]);
        remove_path(
            &mut value,
            &containers
                .child(PathElement::Key(r#"{"name":"a"}"#.into()))
                .child(PathElement::field("ports"))
                .child(PathElement::Key(
                    r#"{"containerPort":80,"protocol":"TCP"}"#.into(),
                )),
        );
        remove_path(
            &mut value,
            &containers
                .child(PathElement::Key(r#"{"name":"a"}"#.into()))
                .child(PathElement::field("image")),
        );
        remove_path(
            &mut value,
            &containers.child(PathElement::Key(r#"{"name":"b"}"#.into())),
        );
        remove_path(
            &mut value,
            &FieldPath::fields(&["metadata", "finalizers"])
                .child(PathElement::Value("\"f\"".into())),
        );
        remove_path(
            &mut value,
            &FieldPath::fields(&["metadata", "nothing", "here"]),
        );
        assert_eq!(value, json!({"spec": {"containers": [{"name": "a", "ports": []}]}, "metadata": {"finalizers": ["g"]}}));
    }

    fn same_as_flattening(kind: &str, old: &Value, new: &Value, ignored: &[FieldPath]) {
        let ty = match kind.split_once('/') {
            Some((group, kind)) => root_type(group, kind),
            None => root_type("", kind),
        };
        let schema = Schema::for_root(ty);
        let fast = compare_values(old, new, schema, ignored);
        let slow = compare(&flatten(old, schema, ignored), &flatten(new, schema, ignored));
        assert_eq!(fast.added, slow.added, "added: {kind} {old} -> {new}");
        assert_eq!(fast.modified, slow.modified, "modified: {kind} {old} -> {new}");
        assert_eq!(fast.removed, slow.removed, "removed: {kind} {old} -> {new}");
    }

    #[test]
    fn comparing_values_equals_comparing_flattened_paths() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "a", "tier": "web"}, "annotations": {"x": "1"},
                         "finalizers": ["f"], "managedFields": [{"manager": "m"}], "resourceVersion": "5"},
            "spec": {"nodeName": "n1", "securityContext": {}, "tolerations": [{"key": "t"}],
                     "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}],
                                     "resources": {"requests": {"cpu": "100m"}}}]},
            "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]},
        });
        let ignored = vec![FieldPath::fields(&["status"]), FieldPath::fields(&["metadata", "managedFields"]),
                           FieldPath::fields(&["metadata", "resourceVersion"])];
        let edits: Vec<fn(&mut Value)> = vec![
            |_| {},
            |v| v["status"]["phase"] = json!("Running"),
            |v| v["metadata"]["resourceVersion"] = json!("6"),
            |v| v["metadata"]["labels"]["tier"] = json!("db"),
            |v| { v["metadata"]["labels"].as_object_mut().unwrap().remove("tier"); },
            |v| v["metadata"]["labels"] = json!({}),
            |v| { v["metadata"].as_object_mut().unwrap().remove("labels"); },
            |v| v["metadata"]["annotations"]["y"] = json!("2"),
            |v| v["metadata"]["finalizers"] = json!(["g", "f"]),
            |v| v["metadata"]["finalizers"] = json!([]),
            |v| v["spec"]["nodeName"] = json!("n2"),
            |v| v["spec"]["securityContext"] = json!({"runAsUser": 1}),
            |v| v["spec"]["securityContext"] = json!("not an object"),
            |v| v["spec"]["tolerations"] = json!([{"key": "u"}]),
            |v| v["spec"]["containers"][0]["image"] = json!("j"),
            |v| v["spec"]["containers"][0]["ports"][0]["protocol"] = json!("UDP"),
            |v| v["spec"]["containers"][0]["resources"] = json!({}),
            |v| { let c = v["spec"]["containers"][0].clone(); let mut d = c.clone(); d["name"] = json!("d");
                  v["spec"]["containers"] = json!([d, c]); },
            |v| v["spec"]["containers"] = json!([]),
            |v| v["spec"] = json!({}),
            |v| { v.as_object_mut().unwrap().remove("spec"); },
            |v| v["newTopLevel"] = json!({"a": [1, 2]}),
        ];
        for (i, first) in edits.iter().enumerate() {
            for second in &edits[i..] {
                let mut old = pod.clone();
                first(&mut old);
                let mut new = pod.clone();
                second(&mut new);
                for ignored in [&ignored[..], &[]] {
                    same_as_flattening("Pod", &old, &new, ignored);
                    same_as_flattening("Pod", &new, &old, ignored);
                    // A custom resource: deduced schema, every key owned on its own.
                    same_as_flattening("Widget", &old, &new, ignored);
                    same_as_flattening("Widget", &new, &old, ignored);
                }
            }
        }
        same_as_flattening("Pod", &json!({}), &pod, &ignored);
        same_as_flattening("Pod", &pod, &json!({}), &ignored);
        same_as_flattening("Pod", &json!("not an object"), &pod, &[]);
    }
}
