//! Field sets of server-side apply: sets of paths into an object, and their `FieldsV1` JSON form used in `metadata.managedFields`.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One step of a path. The variant order is the order `FieldsV1` lists
/// children in: fields, then list-map keys, then set values, then indexes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// `f:<name>`: a field of a struct or a key of a map.
    Field(String),
    /// `k:<json>`: an element of a list-map, by its key fields, as canonical JSON (keys sorted).
    Key(String),
    /// `v:<json>`: an element of a set, by its value, as canonical JSON.
    Value(String),
    /// `i:<n>`: an element of a granular list that has no keys.
    Index(usize),
}

impl PathElement {
    pub fn field(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    /// The list-map key of an element, from the key fields of `element`.
    pub fn key(fields: &Map<String, Value>) -> PathElement {
        PathElement::Key(canonical_json(&Value::Object(fields.clone())))
    }

    pub fn value(value: &Value) -> PathElement {
        PathElement::Value(canonical_json(value))
    }

    /// The `FieldsV1` spelling: `f:name`, `k:{"name":"nginx"}`, `v:"a"`, `i:0`.
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(json) => format!("k:{json}"),
            PathElement::Value(json) => format!("v:{json}"),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    fn from_fields_v1_key(key: &str) -> Result<PathElement, String> {
        let (prefix, rest) = key
            .split_at_checked(2)
            .ok_or_else(|| format!("invalid fieldsV1 key {key:?}"))?;
        let parse_json = || {
            serde_json::from_str::<Value>(rest)
                .map_err(|e| format!("invalid fieldsV1 key {key:?}: {e}"))
        };
        match prefix {
            "f:" => Ok(PathElement::Field(rest.to_string())),
            "k:" => match parse_json()? {
                value @ Value::Object(_) => Ok(PathElement::Key(canonical_json(&value))),
                _ => Err(format!(
                    "invalid fieldsV1 key {key:?}: k: must be followed by a JSON object"
                )),
            },
            "v:" => Ok(PathElement::Value(canonical_json(&parse_json()?))),
            "i:" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|_| format!("invalid fieldsV1 key {key:?}")),
            _ => Err(format!("invalid fieldsV1 key {key:?}")),
        }
    }
}

impl fmt::Display for PathElement {
    /// The spelling in conflict messages: `.image`, `[name="nginx"]`, `[="a"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(json) => {
                let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(json) else {
                    return write!(f, "[{json}]");
                };
                let rendered: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", canonical_json(v)))
                    .collect();
                write!(f, "[{}]", rendered.join(","))
            }
            PathElement::Value(json) => write!(f, "[={json}]"),
            PathElement::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// A path from the root of an object, e.g. `.spec.containers[name="nginx"].image`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FieldPath(pub Vec<PathElement>);

impl FieldPath {
    pub fn child(&self, element: PathElement) -> FieldPath {
        let mut elements = self.0.clone();
        elements.push(element);
        FieldPath(elements)
    }

    pub fn is_prefix_of(&self, other: &FieldPath) -> bool {
        other.0.starts_with(&self.0)
    }

    /// Field names only, for building paths in code and tests: `FieldPath::fields(&["spec", "replicas"])`.
    pub fn fields(names: &[&str]) -> FieldPath {
        FieldPath(names.iter().map(|name| PathElement::field(name)).collect())
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for element in &self.0 {
            write!(f, "{element}")?;
        }
        Ok(())
    }
}

/// A set of field paths. A path in the set means its manager owns the value
/// at that path; ancestors of an owned path are only owned if listed too.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSet(pub BTreeSet<FieldPath>);

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    pub fn from_paths(paths: impl IntoIterator<Item = FieldPath>) -> FieldSet {
        FieldSet(paths.into_iter().collect())
    }

    pub fn insert(&mut self, path: FieldPath) {
        self.0.insert(path);
    }

    pub fn contains(&self, path: &FieldPath) -> bool {
        self.0.contains(path)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldPath> {
        self.0.iter()
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.union(&other.0).cloned().collect())
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.difference(&other.0).cloned().collect())
    }

    /// Removes every path of `other` in place; whether any was there.
    pub fn remove_all(&mut self, other: &FieldSet) -> bool {
        if self.0.is_empty() || other.0.is_empty() {
            return false;
        }
        let before = self.0.len();
        if other.0.len() < self.0.len() {
            for path in &other.0 {
                self.0.remove(path);
            }
        } else {
            self.0.retain(|path| !other.0.contains(path));
        }
        self.0.len() != before
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.intersection(&other.0).cloned().collect())
    }

    /// Whether some path in the set is `path` or lies below it.
    pub fn has_path_at_or_below(&self, path: &FieldPath) -> bool {
        self.0
            .range(path.clone()..)
            .next()
            .is_some_and(|first| path.is_prefix_of(first))
    }

    /// The `FieldsV1` JSON form: nested objects keyed by `f:`/`k:`/`v:`/`i:`,
    /// `{}` for an owned leaf, and `".": {}` for an owned node that also has
    /// owned children.
    pub fn to_fields_v1(&self) -> Value {
        #[derive(Default)]
        struct Node {
            member: bool,
            children: BTreeMap<PathElement, Node>,
        }
        fn render(node: &Node) -> Value {
            let mut map = Map::new();
            if node.member && !node.children.is_empty() {
                map.insert(".".to_string(), Value::Object(Map::new()));
            }
            for (element, child) in &node.children {
                map.insert(element.to_fields_v1_key(), render(child));
            }
            Value::Object(map)
        }
        let mut root = Node::default();
        for path in &self.0 {
            let mut node = &mut root;
            for element in &path.0 {
                // Paths share their prefixes: clone an element only when
                // its node is new.
                if !node.children.contains_key(element) {
                    node.children.insert(element.clone(), Node::default());
                }
                node = node.children.get_mut(element).expect("just inserted");
            }
            node.member = true;
        }
        render(&root)
    }

    /// Parses the `FieldsV1` JSON form.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, String> {
        fn walk(value: &Value, path: &FieldPath, set: &mut FieldSet) -> Result<(), String> {
            let Value::Object(map) = value else {
                return Err(format!("fieldsV1 at {path} must be an object"));
            };
            if map.is_empty() && !path.0.is_empty() {
                set.insert(path.clone());
            }
            for (key, child) in map {
                if key == "." {
                    set.insert(path.clone());
                    continue;
                }
                walk(
                    child,
                    &path.child(PathElement::from_fields_v1_key(key)?),
                    set,
                )?;
            }
            Ok(())
        }
        let mut set = FieldSet::new();
        walk(value, &FieldPath::default(), &mut set)?;
        Ok(set)
    }
}

/// JSON with object keys sorted and no whitespace, so equal values always
/// produce the same `k:`/`v:` key.
pub fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

#[cfg(test)]
#[rustfmt::skip]
mod tests {
    use super::*;
    use serde_json::json;

    /// Round-trips `fields_v1` through a field set and renders the set's paths.
    fn check(fields_v1: Value, expect_paths: &[&str]) {
        let set = FieldSet::from_fields_v1(&fields_v1).expect("valid fieldsV1");
        let paths: Vec<String> = set.iter().map(ToString::to_string).collect();
        assert_eq!(paths, expect_paths, "{fields_v1}");
        assert_eq!(set.to_fields_v1(), fields_v1, "round trip of {fields_v1}");
    }

    #[test]
    fn fields_v1_round_trip() {
        check(json!({}), &[]);
        check(json!({"f:spec": {"f:replicas": {}}}), &[".spec.replicas"]);
        check(json!({"f:metadata": {"f:labels": {"f:app": {}}}}), &[".metadata.labels.app"]);
        check(json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}), &[".metadata.labels", ".metadata.labels.app"]);
        check(json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}}), &[ ".metadata.labels.app", ".spec.containers[name=\"nginx\"]", ".spec.containers[name=\"nginx\"].image", ".spec.containers[name=\"nginx\"].name", ]);
        check(json!({"f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}), &[ ".ports[containerPort=80,protocol=\"TCP\"]", ".ports[containerPort=80,protocol=\"TCP\"].containerPort", ]);
        check(json!({"f:metadata": {"f:finalizers": {".": {}, "v:\"a\"": {}, "v:\"b\"": {}}}}), &[ ".metadata.finalizers", ".metadata.finalizers[=\"a\"]", ".metadata.finalizers[=\"b\"]", ]);
        check(json!({"f:items": {"i:0": {}}}), &[".items[0]"]);
    }

    #[test]
    fn fields_v1_errors_and_canonical_keys() {
        assert_eq!(FieldSet::from_fields_v1(&json!({"x:a": {}})), Err("invalid fieldsV1 key \"x:a\"".to_string()));
        assert_eq!(FieldSet::from_fields_v1(&json!({"f:a": 1})), Err("fieldsV1 at .a must be an object".to_string()));
        assert_eq!(FieldSet::from_fields_v1(&json!({"k:[1]": {}})), Err("invalid fieldsV1 key \"k:[1]\": k: must be followed by a JSON object".to_string()));
        let set = FieldSet::from_fields_v1(&json!({"k:{\"protocol\":\"TCP\", \"port\":80}": {}}))
            .unwrap();
        assert_eq!(set.to_fields_v1(), json!({"k:{\"port\":80,\"protocol\":\"TCP\"}": {}}));
    }

    #[test]
    fn set_operations() {
        let a = FieldSet::from_paths([
            FieldPath::fields(&["spec", "replicas"]),
            FieldPath::fields(&["spec", "paused"]),
        ]);
        let b = FieldSet::from_paths([
            FieldPath::fields(&["spec", "replicas"]),
            FieldPath::fields(&["metadata", "labels", "app"]),
        ]);
        let render = |s: FieldSet| {
            s.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(render(a.union(&b)), ".metadata.labels.app .spec.paused .spec.replicas");
        assert_eq!(render(a.difference(&b)), ".spec.paused");
        assert_eq!(render(a.intersection(&b)), ".spec.replicas");
        assert!(b.has_path_at_or_below(&FieldPath::fields(&["metadata"])));
        assert!(!b.has_path_at_or_below(&FieldPath::fields(&["status"])));
        assert!(!a.has_path_at_or_below(&FieldPath::fields(&["spec", "replicas", "x"])));
    }
}
