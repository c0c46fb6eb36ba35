//! Unknown-field detection for `fieldValidation=Strict|Warn`: walks an object beside its schema
//! and reports every field the schema does not declare.
//!
//! The rules follow the API server's decoder and pruning:
//! - a field not in `properties` is unknown unless `additionalProperties` allows it or the schema
//!   carries `x-kubernetes-preserve-unknown-fields: true` (known fields below are still checked);
//! - a schema that says nothing about its shape (no `type`, no `properties`, e.g. IntOrString or
//!   `{}`) accepts anything;
//! - `x-kubernetes-embedded-resource` objects, and the object itself, implicitly declare
//!   `apiVersion`, `kind` and `metadata` (checked against ObjectMeta).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::builtin::{builtins, OBJECT_META, REF_PREFIX};

/// Paths (`.spec.containers[0].imagee`) of the fields in `value` that the built-in schema of
/// `group/version, Kind=kind` does not declare. Empty when the kind has no built-in schema.
pub fn unknown_fields(value: &Value, group: &str, version: &str, kind: &str) -> Vec<String> {
    match crate::schema_for(group, version, kind) {
        Some(schema) => unknown_fields_in_schema(value, schema),
        None => Vec::new(),
    }
}

/// Like [`unknown_fields`] for an explicit schema, e.g. a CustomResourceDefinition's
/// `openAPIV3Schema`. `$ref`s resolve against the built-in [`crate::definitions`].
pub fn unknown_fields_in_schema(value: &Value, schema: &Value) -> Vec<String> {
    let walker = Walker {
        definitions: &builtins().definitions,
    };
    let mut unknown = Vec::new();
    walker.walk(value, schema, true, &mut String::new(), &mut unknown);
    unknown
}

struct Walker<'a> {
    definitions: &'a BTreeMap<String, Value>,
}

/// Bounds `$ref` chains so a cyclic definition cannot loop forever.
const MAX_REF_HOPS: usize = 32;

impl<'a> Walker<'a> {
    /// Follows `$ref` and single-element `allOf` wrappers to the schema that describes the shape.
    fn resolve(&self, mut schema: &'a Value) -> &'a Value
    where
        Self: 'a,
    {
        for _ in 0..MAX_REF_HOPS {
            if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
                match reference
                    .strip_prefix(REF_PREFIX)
                    .and_then(|name| self.definitions.get(name))
                {
                    Some(target) => schema = target,
                    None => return schema,
                }
                continue;
            }
            match schema.get("allOf").and_then(Value::as_array) {
                Some(all_of) if all_of.len() == 1 && schema.get("properties").is_none() => {
                    schema = &all_of[0]
                }
                _ => return schema,
            }
        }
        schema
    }

    fn walk(
        &self,
        value: &Value,
        schema: &'a Value,
        resource_root: bool,
        path: &mut String,
        out: &mut Vec<String>,
    ) {
        let schema = self.resolve(schema);
        match value {
            Value::Object(fields) => {
                let properties = schema.get("properties").and_then(Value::as_object);
                let additional = schema.get("additionalProperties");
                let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
                let resource = resource_root || flag(schema, "x-kubernetes-embedded-resource");
                let typed = properties.is_some()
                    || additional.is_some()
                    || schema.get("type").and_then(Value::as_str) == Some("object");
                if !typed {
                    return;
                }
                for (name, child) in fields {
                    let length = path.len();
                    path.push('.');
                    path.push_str(name);
                    if resource && name == "metadata" {
                        if let Some(object_meta) = self.definitions.get(OBJECT_META) {
                            self.walk(child, object_meta, false, path, out);
                        }
                    } else if let Some(property) = properties.and_then(|p| p.get(name)) {
                        self.walk(child, property, false, path, out);
                    } else if resource && (name == "apiVersion" || name == "kind") {
                    } else {
                        match additional {
                            Some(item @ Value::Object(map)) if !map.is_empty() => {
                                self.walk(child, item, false, path, out)
                            }
                            Some(Value::Object(_)) | Some(Value::Bool(true)) => {}
                            _ if preserve => {}
                            _ => out.push(path.clone()),
                        }
                    }
                    path.truncate(length);
                }
            }
            Value::Array(items) => {
                let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) else {
                    return;
                };
                for (index, item) in items.iter().enumerate() {
                    let length = path.len();
                    path.push_str(&format!("[{index}]"));
                    self.walk(item, item_schema, false, path, out);
                    path.truncate(length);
                }
            }
            _ => {}
        }
    }
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool) == Some(true)
}
