//! RFC 6902 JSON patch and RFC 7386 JSON merge patch over `serde_json::Value`, with errors that name the operation and path that failed.
//!
//! Written here rather than delegated to the `json-patch` crate so that error
//! messages read like the API server's ("path /spec/x does not exist") and so
//! the strategic merge patch in `strategic.rs` can share one error type.

use serde_json::{Map, Value};
use thiserror::Error;

/// Why a JSON patch, merge patch or strategic merge patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatchError {
    #[error("json patch must be an array of operations, got {got}")]
    JsonPatchNotAnArray { got: &'static str },
    #[error("json patch operation {index} is invalid: {reason}")]
    InvalidOperation { index: usize, reason: String },
    #[error("invalid json pointer {pointer:?}: {reason}")]
    InvalidPointer { pointer: String, reason: String },
    #[error("{op} operation failed: path {path} does not exist")]
    PathNotFound { op: &'static str, path: String },
    #[error("test operation failed at {path}")]
    TestFailed { path: String },
    #[error("move operation failed: cannot move {from} into its own child {path}")]
    MoveIntoChild { from: String, path: String },
    #[error("merge patch must be a JSON object, got {got}")]
    MergePatchNotAnObject { got: &'static str },
    #[error("strategic merge patch must be a JSON object, got {got}")]
    StrategicPatchNotAnObject { got: &'static str },
    #[error("strategic merge patch can only be applied to a JSON object, got {got}")]
    StrategicOriginalNotAnObject { got: &'static str },
    #[error("invalid strategic merge patch at {path}: {reason}")]
    InvalidStrategicPatch { path: String, reason: String },
    #[error("unknown $patch directive {value} at {path}")]
    UnknownPatchDirective { path: String, value: String },
    #[error("list element at {path} does not have the merge key {merge_key:?}")]
    MissingMergeKey { path: String, merge_key: String },
}

/// The JSON type name used in error messages.
pub(crate) fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Applies an RFC 6902 JSON patch (`application/json-patch+json`). The
/// operations are applied in order to a copy; on error nothing is returned,
/// matching the API server's all-or-nothing semantics.
pub fn apply_json_patch(document: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations = patch.as_array().ok_or(PatchError::JsonPatchNotAnArray {
        got: json_type_name(patch),
    })?;
    let mut document = document.clone();
    for (index, operation) in operations.iter().enumerate() {
        apply_operation(&mut document, index, operation)?;
    }
    Ok(document)
}

fn apply_operation(
    document: &mut Value,
    index: usize,
    operation: &Value,
) -> Result<(), PatchError> {
    let invalid = |reason: String| PatchError::InvalidOperation { index, reason };
    let object = operation.as_object().ok_or_else(|| {
        invalid(format!(
            "expected an object, got {}",
            json_type_name(operation)
        ))
    })?;
    let string_member = |name: &str| -> Result<&str, PatchError> {
        match object.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(invalid(format!(
                "{name:?} must be a string, got {}",
                json_type_name(other)
            ))),
            None => Err(invalid(format!("missing {name:?}"))),
        }
    };
    let value_member = || {
        object
            .get("value")
            .cloned()
            .ok_or_else(|| invalid("missing \"value\"".to_string()))
    };
    let op = string_member("op")?;
    let path = string_member("path")?;
    let tokens = parse_pointer(path)?;
    match op {
        "add" => add(document, path, &tokens, value_member()?, "add"),
        "remove" => remove(document, path, &tokens, "remove").map(drop),
        "replace" => {
            let value = value_member()?;
            let target =
                resolve_mut(document, &tokens).ok_or_else(|| not_found("replace", path))?;
            *target = value;
            Ok(())
        }
        "move" => {
            let from = string_member("from")?;
            let from_tokens = parse_pointer(from)?;
            if from_tokens.len() < tokens.len() && tokens.starts_with(&from_tokens) {
                return Err(PatchError::MoveIntoChild {
                    from: from.to_string(),
                    path: path.to_string(),
                });
            }
            let value = remove(document, from, &from_tokens, "move")?;
            add(document, path, &tokens, value, "move")
        }
        "copy" => {
            let from = string_member("from")?;
            let from_tokens = parse_pointer(from)?;
            let value = resolve_mut(document, &from_tokens)
                .ok_or_else(|| not_found("copy", from))?
                .clone();
            add(document, path, &tokens, value, "copy")
        }
        "test" => {
            let expected = value_member()?;
            match resolve_mut(document, &tokens) {
                Some(actual) if *actual == expected => Ok(()),
                _ => Err(PatchError::TestFailed {
                    path: path.to_string(),
                }),
            }
        }
        other => Err(invalid(format!("unknown op {other:?}"))),
    }
}

fn not_found(op: &'static str, path: &str) -> PatchError {
    PatchError::PathNotFound {
        op,
        path: path.to_string(),
    }
}

/// Splits a JSON pointer into unescaped reference tokens (`~1` is `/`, `~0` is `~`).
fn parse_pointer(pointer: &str) -> Result<Vec<String>, PatchError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(PatchError::InvalidPointer {
            pointer: pointer.to_string(),
            reason: "must start with /".to_string(),
        });
    };
    rest.split('/')
        .map(|token| {
            if token.replace("~0", "").replace("~1", "").contains('~') {
                return Err(PatchError::InvalidPointer {
                    pointer: pointer.to_string(),
                    reason: format!("invalid escape in {token:?}"),
                });
            }
            Ok(token.replace("~1", "/").replace("~0", "~"))
        })
        .collect()
}

/// An array index per RFC 6901: digits only, no leading zeros.
fn array_index(token: &str) -> Option<usize> {
    if token.is_empty()
        || (token.len() > 1 && token.starts_with('0'))
        || !token.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    token.parse().ok()
}

fn resolve_mut<'a>(document: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    tokens
        .iter()
        .try_fold(document, |current, token| match current {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => array_index(token).and_then(|i| items.get_mut(i)),
            _ => None,
        })
}

fn add(
    document: &mut Value,
    path: &str,
    tokens: &[String],
    value: Value,
    op: &'static str,
) -> Result<(), PatchError> {
    let Some((last, parent_tokens)) = tokens.split_last() else {
        *document = value;
        return Ok(());
    };
    let parent = resolve_mut(document, parent_tokens).ok_or_else(|| not_found(op, path))?;
    match parent {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let position = if last == "-" {
                Some(items.len())
            } else {
                array_index(last)
            };
            match position {
                Some(i) if i <= items.len() => {
                    items.insert(i, value);
                    Ok(())
                }
                _ => Err(not_found(op, path)),
            }
        }
        _ => Err(not_found(op, path)),
    }
}

fn remove(
    document: &mut Value,
    path: &str,
    tokens: &[String],
    op: &'static str,
) -> Result<Value, PatchError> {
    let Some((last, parent_tokens)) = tokens.split_last() else {
        // Removing the whole document is allowed by RFC 6902 and leaves null.
        return Ok(std::mem::take(document));
    };
    let parent = resolve_mut(document, parent_tokens).ok_or_else(|| not_found(op, path))?;
    match parent {
        Value::Object(map) => map.shift_remove(last).ok_or_else(|| not_found(op, path)),
        Value::Array(items) => match array_index(last) {
            Some(i) if i < items.len() => Ok(items.remove(i)),
            _ => Err(not_found(op, path)),
        },
        _ => Err(not_found(op, path)),
    }
}

/// Applies an RFC 7386 JSON merge patch (`application/merge-patch+json`).
/// The patch must be an object: a bare scalar or list would replace the whole
/// resource, which the API server never accepts.
pub fn apply_merge_patch(document: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::MergePatchNotAnObject {
            got: json_type_name(patch),
        });
    }
    Ok(merge_patch_value(document, patch))
}

fn merge_patch_value(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch_map) = patch else {
        return patch.clone();
    };
    let mut result = match target {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    for (key, patch_value) in patch_map {
        if patch_value.is_null() {
            result.shift_remove(key);
        } else {
            let merged = merge_patch_value(result.get(key).unwrap_or(&Value::Null), patch_value);
            result.insert(key.clone(), merged);
        }
    }
    Value::Object(result)
}

#[cfg(test)]
#[rustfmt::skip]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(kind: &str, document: Value, patch: Value, expect: Result<Value, &str>) {
        let actual = match kind {
            "json" => apply_json_patch(&document, &patch),
            "merge" => apply_merge_patch(&document, &patch),
            _ => unreachable!(),
        };
        let actual = actual.map_err(|e| e.to_string());
        assert_eq!(actual, expect.map_err(str::to_string), "{kind} patch {patch} on {document}");
    }

    #[test]
    fn json_patch() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2, 3]}});
        check("json", doc.clone(), json!([{"op": "add", "path": "/metadata/labels/b", "value": "2"}]), Ok(json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"list": [1, 2, 3]}})));
        check("json", doc.clone(), json!([{"op": "add", "path": "/spec/list/-", "value": 4}]), Ok(json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2, 3, 4]}})));
        check("json", doc.clone(), json!([{"op": "add", "path": "/spec/list/0", "value": 0}]), Ok(json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [0, 1, 2, 3]}})));
        check("json", doc.clone(), json!([{"op": "add", "path": "/spec/list/3", "value": 4}]), Ok(json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2, 3, 4]}})));
        check("json", doc.clone(), json!([{"op": "add", "path": "/spec/list/5", "value": 4}]), Err("add operation failed: path /spec/list/5 does not exist"));
        check("json", doc.clone(), json!([{"op": "add", "path": "/spec/x/y", "value": 1}]), Err("add operation failed: path /spec/x/y does not exist"));
        check("json", doc.clone(), json!([{"op": "add", "path": "", "value": {"a": 1}}]), Ok(json!({"a": 1})));
        check("json", doc.clone(), json!([{"op": "remove", "path": "/metadata/labels/a"}]), Ok(json!({"metadata": {"labels": {}}, "spec": {"list": [1, 2, 3]}})));
        check("json", doc.clone(), json!([{"op": "remove", "path": "/spec/list/1"}]), Ok(json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 3]}})));
        check("json", doc.clone(), json!([{"op": "remove", "path": "/spec/x"}]), Err("remove operation failed: path /spec/x does not exist"));
        check("json", doc.clone(), json!([{"op": "replace", "path": "/spec/list", "value": []}]), Ok(json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": []}})));
        check("json", doc.clone(), json!([{"op": "replace", "path": "/spec/x", "value": 1}]), Err("replace operation failed: path /spec/x does not exist"));
        check("json", doc.clone(), json!([{"op": "move", "from": "/metadata/labels", "path": "/spec/labels"}]), Ok(json!({"metadata": {}, "spec": {"list": [1, 2, 3], "labels": {"a": "1"}}})));
        check("json", doc.clone(), json!([{"op": "move", "from": "/spec", "path": "/spec/inner"}]), Err("move operation failed: cannot move /spec into its own child /spec/inner"));
        check("json", doc.clone(), json!([{"op": "copy", "from": "/spec/list/0", "path": "/spec/first"}]), Ok(json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2, 3], "first": 1}})));
        check("json", doc.clone(), json!([{"op": "copy", "from": "/spec/nope", "path": "/spec/first"}]), Err("copy operation failed: path /spec/nope does not exist"));
        check("json", doc.clone(), json!([{"op": "test", "path": "/metadata/labels/a", "value": "1"}]), Ok(doc.clone()));
        check("json", doc.clone(), json!([{"op": "test", "path": "/metadata/labels/a", "value": "2"}]), Err("test operation failed at /metadata/labels/a"));
        check("json", doc.clone(), json!([{"op": "test", "path": "/metadata/labels/z", "value": "2"}]), Err("test operation failed at /metadata/labels/z"));
        check("json", json!({"a/b": {"~c": 1}}), json!([{"op": "replace", "path": "/a~1b/~0c", "value": 2}]), Ok(json!({"a/b": {"~c": 2}})));
        check("json", doc.clone(), json!([{"op": "remove", "path": "/spec/list/01"}]), Err("remove operation failed: path /spec/list/01 does not exist"));
        check("json", doc.clone(), json!([{"op": "remove", "path": "spec"}]), Err("invalid json pointer \"spec\": must start with /"));
        check("json", doc.clone(), json!([{"op": "remove", "path": "/a~2"}]), Err("invalid json pointer \"/a~2\": invalid escape in \"a~2\""));
        check("json", doc.clone(), json!([{"op": "frobnicate", "path": "/a"}]), Err("json patch operation 0 is invalid: unknown op \"frobnicate\""));
        check("json", doc.clone(), json!([{"path": "/a"}]), Err("json patch operation 0 is invalid: missing \"op\""));
        check("json", doc.clone(), json!([{"op": "add", "path": "/a"}]), Err("json patch operation 0 is invalid: missing \"value\""));
        check("json", doc.clone(), json!(["add"]), Err("json patch operation 0 is invalid: expected an object, got string"));
        check("json", doc.clone(), json!({"op": "add"}), Err("json patch must be an array of operations, got object"));
        // A failing later operation discards the earlier ones.
        check("json", doc.clone(), json!([{"op": "remove", "path": "/spec"}, {"op": "remove", "path": "/spec"}]), Err("remove operation failed: path /spec does not exist"));
        check("json", doc.clone(), json!([]), Ok(doc.clone()));
    }

    #[test]
    fn merge_patch() {
        check("merge", json!({"a": 1, "b": {"c": 2, "d": 3}}), json!({"b": {"c": null, "e": 4}}), Ok(json!({"a": 1, "b": {"d": 3, "e": 4}})));
        check("merge", json!({"a": [1, 2]}), json!({"a": [3]}), Ok(json!({"a": [3]})));
        check("merge", json!({"a": "x"}), json!({"a": {"b": null, "c": 1}}), Ok(json!({"a": {"c": 1}})));
        check("merge", json!({"a": {"b": 1}}), json!({"a": "x"}), Ok(json!({"a": "x"})));
        check("merge", json!({"a": 1}), json!({"z": null}), Ok(json!({"a": 1})));
        check("merge", json!({"a": 1}), json!({}), Ok(json!({"a": 1})));
        check("merge", json!({"a": 1}), json!([1]), Err("merge patch must be a JSON object, got array"));
        check("merge", json!({"a": 1}), json!("x"), Err("merge patch must be a JSON object, got string"));
        check("merge", json!({"a": 1}), json!(null), Err("merge patch must be a JSON object, got null"));
    }
}
