//! Decoding only what the checker and the progress view read.
//!
//! The recorder sees every committed change on the writer's task, so its
//! decode is part of what the simulation measures. A stored pod is mostly
//! managedFields, its pod template's image and env, and annotations; none of
//! that is checked. [`decode_checked`] builds a `Value` holding just the
//! fields listed in [`CHECKED`] (at the same JSON pointers) and skips the
//! rest of the text without allocating.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Which part of a JSON value to keep.
#[derive(Clone, Copy)]
pub enum Keep {
    /// The whole value.
    All,
    /// Of an object, only these fields (each kept as given).
    Fields(&'static [(&'static str, Keep)]),
    /// Of an array, every item, each kept as given.
    Items(&'static Keep),
}

/// What [`crate::checker::Checker`] and [`crate::progress::Progress`] read
/// of pods, nodes and Deployments.
pub const CHECKED: Keep = Keep::Fields(&[
    ("kind", Keep::All),
    (
        "metadata",
        Keep::Fields(&[
            ("name", Keep::All),
            ("namespace", Keep::All),
            ("uid", Keep::All),
            ("labels", Keep::All),
            ("deletionTimestamp", Keep::All),
            ("generation", Keep::All),
        ]),
    ),
    (
        "spec",
        Keep::Fields(&[
            (
                "containers",
                Keep::Items(&Keep::Fields(&[("resources", Keep::All)])),
            ),
            ("nodeName", Keep::All),
            ("replicas", Keep::All),
            ("paused", Keep::All),
            ("strategy", Keep::All),
            ("selector", Keep::All),
            ("taints", Keep::All),
        ]),
    ),
    (
        "status",
        Keep::Fields(&[
            ("phase", Keep::All),
            ("conditions", Keep::All),
            ("allocatable", Keep::All),
            ("observedGeneration", Keep::All),
            ("replicas", Keep::All),
            ("updatedReplicas", Keep::All),
            ("availableReplicas", Keep::All),
        ]),
    ),
]);

/// The checked fields of a stored object, or `None` if it is not JSON.
pub fn decode_checked(bytes: &[u8]) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = CHECKED.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}

impl<'de> DeserializeSeed<'de> for Keep {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self {
            Keep::All => serde::Deserialize::deserialize(deserializer),
            _ => deserializer.deserialize_any(Pruned(self)),
        }
    }
}

/// A value of the wrong shape for its [`Keep`] (a scalar where an object
/// was expected) is kept whole, so pointers see what a full decode sees.
struct Pruned(Keep);

impl<'de> Visitor<'de> for Pruned {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let item = match self.0 {
            Keep::Items(item) => *item,
            _ => Keep::All,
        };
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(item)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let fields: &[(&str, Keep)] = match self.0 {
            Keep::Fields(fields) => fields,
            _ => &[],
        };
        let keep_all = !matches!(self.0, Keep::Fields(_));
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match fields.iter().find(|(name, _)| *name == key) {
                Some((_, keep)) => {
                    out.insert(key, map.next_value_seed(*keep)?);
                }
                None if keep_all => {
                    out.insert(key, map.next_value::<Value>()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every pointer the checker and the progress view read.
    const POINTERS: &[&str] = &[
        "/kind",
        "/metadata/name",
        "/metadata/namespace",
        "/metadata/uid",
        "/metadata/labels",
        "/metadata/labels/app",
        "/metadata/deletionTimestamp",
        "/metadata/generation",
        "/spec/containers/0/resources/requests/cpu",
        "/spec/containers/1/resources/requests/memory",
        "/spec/nodeName",
        "/spec/replicas",
        "/spec/paused",
        "/spec/strategy/type",
        "/spec/strategy/rollingUpdate/maxSurge",
        "/spec/strategy/rollingUpdate/maxUnavailable",
        "/spec/selector/matchLabels",
        "/spec/taints",
        "/status/phase",
        "/status/conditions",
        "/status/allocatable/cpu",
        "/status/allocatable/memory",
        "/status/allocatable/pods",
        "/status/observedGeneration",
        "/status/replicas",
        "/status/updatedReplicas",
        "/status/availableReplicas",
    ];

    fn same_at_every_checked_pointer(full: Value) -> Value {
        let pruned = decode_checked(full.to_string().as_bytes()).expect("valid JSON decodes");
        for pointer in POINTERS {
            assert_eq!(
                pruned.pointer(pointer),
                full.pointer(pointer),
                "{pointer} differs between the full and the checked decode"
            );
        }
        pruned
    }

    #[test]
    fn a_pod_keeps_what_is_checked_and_drops_the_rest() {
        let pruned = same_at_every_checked_pointer(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-1", "namespace": "sim", "uid": "u1",
                "labels": {"app": "web", "managedFields": "a label, kept"},
                "annotations": {"a": "b"},
                "deletionTimestamp": "2026-01-01T00:00:00Z", "generation": 1,
                "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}}],
                "ownerReferences": [{"uid": "rs"}]
            },
            "spec": {
                "nodeName": "node-00001",
                "containers": [
                    {"name": "c", "image": "i", "env": [{"name": "X", "value": "1"}],
                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                    {"name": "d", "resources": {"requests": {"memory": "1Gi"}}}
                ],
                "tolerations": [{"key": "k"}]
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "podIP": "10.0.0.1"
            }
        }));
        assert_eq!(pruned.pointer("/metadata/managedFields"), None);
        assert_eq!(pruned.pointer("/metadata/annotations"), None);
        assert_eq!(pruned.pointer("/spec/containers/0/image"), None);
        assert_eq!(pruned.pointer("/spec/tolerations"), None);
        assert_eq!(pruned.pointer("/status/podIP"), None);
        assert_eq!(pruned.pointer("/apiVersion"), None);
    }

    #[test]
    fn deployments_nodes_and_odd_shapes_read_the_same() {
        same_at_every_checked_pointer(json!({
            "kind": "Deployment",
            "metadata": {"name": "app", "generation": 3},
            "spec": {
                "replicas": 10, "paused": false,
                "selector": {"matchLabels": {"app": "a"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                "template": {"spec": {"containers": [{"name": "c"}]}}
            },
            "status": {"observedGeneration": 3, "replicas": 10, "updatedReplicas": 10, "availableReplicas": 9.5}
        }));
        same_at_every_checked_pointer(json!({
            "kind": "Node",
            "metadata": {"name": "node-00001"},
            "spec": {"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]},
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "Unknown"}],
                       "images": [{"names": ["x"]}], "nodeInfo": {"kernelVersion": "6"}}
        }));
        // Wrong shapes are kept as they are, not turned into objects.
        same_at_every_checked_pointer(
            json!({"metadata": "odd", "spec": [1, {"nodeName": "n"}], "status": null}),
        );
        same_at_every_checked_pointer(json!({"spec": {"containers": {"resources": 1}}}));
        assert_eq!(decode_checked(b"{\"kind\": "), None);
        assert_eq!(decode_checked(b"{} {}"), None);
    }
}
