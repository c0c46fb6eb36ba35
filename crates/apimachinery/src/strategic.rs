//! Strategic merge patch (`application/strategic-merge-patch+json`), as kube-apiserver applies the patches kubectl sends.
//!
//! Maps merge recursively and `null` deletes. Lists follow the field's
//! `patchStrategy` from `patch_meta`: merged by `patchMergeKey`, unioned for
//! primitives, or replaced when untagged. The directives are `$patch`
//! (`replace`, `merge`, `delete`), `$retainKeys`, `$setElementOrder/<field>`
//! and `$deleteFromPrimitiveList/<field>`.

use crate::patch::{json_type_name, PatchError};
use crate::patch_meta::{field_meta, TypeMeta};
use serde_json::{Map, Value};

const PATCH_DIRECTIVE: &str = "$patch";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList/";

/// Applies `patch` to `original` using the patch metadata of `ty` (the root
/// type from `patch_meta::root_type`; `None` treats every list as untagged,
/// which is what the API server does for custom resources).
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    ty: Option<&'static TypeMeta>,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::StrategicPatchNotAnObject {
            got: json_type_name(patch),
        });
    };
    let Value::Object(original) = original else {
        return Err(PatchError::StrategicOriginalNotAnObject {
            got: json_type_name(original),
        });
    };
    Ok(merge_map(Some(original.clone()), patch, ty, "")?
        .map_or_else(|| Value::Object(Map::new()), Value::Object))
}

fn invalid(path: &str, reason: impl Into<String>) -> PatchError {
    PatchError::InvalidStrategicPatch {
        path: display_path(path),
        reason: reason.into(),
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    }
}

/// Merges a patch map into an original map. `None` as the result means the
/// map was deleted with `$patch: delete`.
fn merge_map(
    original: Option<Map<String, Value>>,
    patch: &Map<String, Value>,
    ty: Option<&'static TypeMeta>,
    path: &str,
) -> Result<Option<Map<String, Value>>, PatchError> {
    let mut original = original.unwrap_or_default();
    if let Some(directive) = patch.get(PATCH_DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => {
                let mut replacement = patch.clone();
                replacement.shift_remove(PATCH_DIRECTIVE);
                // The replacement may itself carry directives further down.
                return merge_map(None, &replacement, ty, path);
            }
            Some("delete") => return Ok(None),
            Some("merge") => {}
            _ => {
                return Err(PatchError::UnknownPatchDirective {
                    path: display_path(path),
                    value: directive.to_string(),
                })
            }
        }
    }
    if let Some(retain) = patch.get(RETAIN_KEYS_DIRECTIVE) {
        let keys = retain
            .as_array()
            .filter(|keys| keys.iter().all(Value::is_string))
            .ok_or_else(|| invalid(path, "$retainKeys must be a list of strings"))?;
        // Keys the patch sets must be retained, or the patch would contradict itself.
        for key in patch.keys().filter(|k| !k.starts_with('$')) {
            if !patch[key].is_null() && !keys.iter().any(|k| k == key) {
                return Err(invalid(
                    path,
                    format!("$retainKeys does not contain {key:?}, which the patch sets"),
                ));
            }
        }
        original.retain(|key, _| keys.iter().any(|k| k == key));
    }

    for (key, patch_value) in patch {
        if key == PATCH_DIRECTIVE || key == RETAIN_KEYS_DIRECTIVE {
            continue;
        }
        let child_path = format!("{path}/{key}");
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER_PREFIX) {
            if !patch_value.is_array() {
                return Err(invalid(&child_path, "$setElementOrder must be a list"));
            }
            // With the list itself in the patch, the order is applied when that list is merged.
            if !patch.contains_key(field) {
                if let Some(Value::Array(live)) = original.get(field) {
                    let meta = field_meta(ty, field);
                    let ordered = apply_element_order(
                        live.clone(),
                        patch_value,
                        live,
                        meta.merge_key,
                        &format!("{path}/{field}"),
                    )?;
                    original.insert(field.to_string(), Value::Array(ordered));
                }
            }
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            let Value::Array(to_delete) = patch_value else {
                return Err(invalid(
                    &child_path,
                    "$deleteFromPrimitiveList must be a list",
                ));
            };
            if let Some(Value::Array(live)) = original.get_mut(field) {
                live.retain(|item| !to_delete.contains(item));
            }
            continue;
        }
        if key.starts_with('$') {
            return Err(invalid(&child_path, format!("unknown directive {key:?}")));
        }
        if patch_value.is_null() {
            original.shift_remove(key);
            continue;
        }
        let meta = field_meta(ty, key);
        let merged = match (original.get_mut(key).map(std::mem::take), patch_value) {
            (Some(Value::Object(live)), Value::Object(patch_map)) => {
                merge_map(Some(live), patch_map, meta.ty, &child_path)?.map(Value::Object)
            }
            (Some(Value::Array(live)), Value::Array(patch_list)) if meta.strategy.merges() => {
                let mut merged =
                    merge_list(&live, patch_list, meta.ty, meta.merge_key, &child_path)?;
                if let Some(order) = patch.get(&format!("{SET_ELEMENT_ORDER_PREFIX}{key}")) {
                    merged =
                        apply_element_order(merged, order, &live, meta.merge_key, &child_path)?;
                }
                Some(Value::Array(merged))
            }
            // Absent or of a different type: take the patch value, minus its directives and nulls.
            (_, value) => new_value(
                value,
                meta.ty,
                meta.merge_key,
                meta.strategy.merges(),
                &child_path,
            )?,
        };
        match merged {
            // Inserting over an existing key keeps its position in the object.
            Some(merged) => original.insert(key.clone(), merged),
            None => original.shift_remove(key),
        };
    }
    Ok(Some(original))
}

/// A value the live object does not have yet: directives inside it are
/// processed against an empty original so they never leak into the object.
fn new_value(
    value: &Value,
    ty: Option<&'static TypeMeta>,
    merge_key: Option<&'static str>,
    merges: bool,
    path: &str,
) -> Result<Option<Value>, PatchError> {
    match value {
        Value::Object(map) => Ok(merge_map(None, map, ty, path)?.map(Value::Object)),
        Value::Array(list) if merges => Ok(Some(Value::Array(merge_list(
            &[],
            list,
            ty,
            merge_key,
            path,
        )?))),
        other => Ok(Some(other.clone())),
    }
}

/// Merges a list field whose strategy is `merge`.
fn merge_list(
    live: &[Value],
    patch: &[Value],
    ty: Option<&'static TypeMeta>,
    merge_key: Option<&'static str>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let Some(merge_key) = merge_key else {
        return union_primitives(live, patch, path);
    };
    // Directive elements first: `{"$patch": "replace"}` discards the live
    // list, `{key: v, "$patch": "delete"}` removes one element.
    let mut replace = false;
    let mut deletions = Vec::new();
    let mut elements = Vec::new();
    for (index, element) in patch.iter().enumerate() {
        let element_path = format!("{path}/{index}");
        let Value::Object(map) = element else {
            return Err(invalid(
                &element_path,
                format!(
                    "list with merge key {merge_key:?} must contain objects, got {}",
                    json_type_name(element)
                ),
            ));
        };
        let missing_key = || PatchError::MissingMergeKey {
            path: element_path.clone(),
            merge_key: merge_key.to_string(),
        };
        match map.get(PATCH_DIRECTIVE).map(|d| (d, d.as_str())) {
            None | Some((_, Some("merge"))) => {
                let key = map.get(merge_key).ok_or_else(missing_key)?;
                elements.push((key.clone(), map, element_path.clone()));
            }
            Some((_, Some("replace"))) => replace = true,
            Some((_, Some("delete"))) => {
                deletions.push(map.get(merge_key).ok_or_else(missing_key)?.clone())
            }
            Some((directive, _)) => {
                return Err(PatchError::UnknownPatchDirective {
                    path: element_path,
                    value: directive.to_string(),
                });
            }
        }
    }
    let (mut merged, patch_keys): (Vec<Value>, Vec<Value>) = if replace {
        // The patch elements become the list, in patch order.
        (Vec::new(), Vec::new())
    } else {
        (
            live.to_vec(),
            elements.iter().map(|(key, _, _)| key.clone()).collect(),
        )
    };
    merged.retain(|item| item.get(merge_key).is_none_or(|k| !deletions.contains(k)));
    let server_order = merged.clone();
    for (key, element, element_path) in elements {
        let mut element = element.clone();
        element.shift_remove(PATCH_DIRECTIVE);
        let position = merged
            .iter()
            .position(|item| item.get(merge_key) == Some(&key));
        let live_element = position.and_then(|i| match std::mem::take(&mut merged[i]) {
            Value::Object(map) => Some(map),
            _ => None,
        });
        let element = merge_map(live_element, &element, ty, &element_path)?
            .map(Value::Object)
            .unwrap_or_default();
        match position {
            Some(i) => merged[i] = element,
            None => merged.push(element),
        }
    }
    let identity = |item: &Value| item.get(merge_key).cloned();
    Ok(normalize_order(
        merged,
        &patch_keys,
        &server_order,
        identity,
    ))
}

fn union_primitives(live: &[Value], patch: &[Value], path: &str) -> Result<Vec<Value>, PatchError> {
    let mut merged = live.to_vec();
    for item in patch {
        if item.is_object() || item.is_array() {
            return Err(invalid(
                path,
                "a list without a merge key can only merge primitive elements",
            ));
        }
        if !merged.contains(item) {
            merged.push(item.clone());
        }
    }
    Ok(normalize_order(merged, patch, live, |item| {
        Some(item.clone())
    }))
}

/// Orders a merged list the way kube-apiserver does: the elements named by
/// the patch (or its `$setElementOrder`) in that order, and the elements only
/// the server has in their live order, each server-only element placed before
/// the first patch element that came after it in the live list. A patch
/// element the live list did not have is placed as soon as it is reached, so
/// new elements land before the remaining server-only elements.
fn normalize_order(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    identity: impl Fn(&Value) -> Option<Value>,
) -> Vec<Value> {
    let index_in = |list: &[Value], item: &Value| -> Option<usize> {
        let id = identity(item)?;
        list.iter()
            .position(|other| identity(other).as_ref() == Some(&id))
    };
    let (mut from_patch, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| identity(item).is_some_and(|id| patch_order.contains(&id)));
    from_patch.sort_by_key(|item| {
        identity(item).and_then(|id| patch_order.iter().position(|p| *p == id))
    });
    server_only.sort_by_key(|item| index_in(server_order, item));
    let mut result = Vec::with_capacity(from_patch.len() + server_only.len());
    let mut server_only = server_only.into_iter().peekable();
    for item in from_patch {
        let item_position = index_in(server_order, &item);
        while let Some(next) = server_only.peek() {
            match (index_in(server_order, next), item_position) {
                (Some(next_position), Some(item_position)) if next_position < item_position => {
                    result.push(server_only.next().expect("peeked"));
                }
                _ => break,
            }
        }
        result.push(item);
    }
    result.extend(server_only);
    result
}

/// Reorders a merged list by a `$setElementOrder` directive.
fn apply_element_order(
    merged: Vec<Value>,
    order: &Value,
    server_order: &[Value],
    merge_key: Option<&str>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let Value::Array(order) = order else {
        return Err(invalid(path, "$setElementOrder must be a list"));
    };
    let mut order_keys = Vec::with_capacity(order.len());
    for entry in order {
        let key = match merge_key {
            Some(key) => entry
                .get(key)
                .cloned()
                .ok_or_else(|| PatchError::MissingMergeKey {
                    path: format!("{path} $setElementOrder"),
                    merge_key: key.to_string(),
                })?,
            None => entry.clone(),
        };
        order_keys.push(key);
    }
    let identity = |item: &Value| match merge_key {
        Some(key) => item.get(key).cloned(),
        None => Some(item.clone()),
    };
    Ok(normalize_order(merged, &order_keys, server_order, identity))
}

/// Computes a strategic merge patch that turns `original` into `modified`,
/// the way kubectl builds the patches it sends: changed fields are set,
/// removed fields are `null`, merging lists send only changed elements plus
/// `$patch: delete` elements, `$deleteFromPrimitiveList` and
/// `$setElementOrder`, and `retainKeys` fields carry `$retainKeys`.
pub fn create_two_way_merge_patch(
    original: &Value,
    modified: &Value,
    ty: Option<&'static TypeMeta>,
) -> Result<Value, PatchError> {
    let (Value::Object(original), Value::Object(modified)) = (original, modified) else {
        return Err(PatchError::StrategicOriginalNotAnObject {
            got: json_type_name(if original.is_object() {
                modified
            } else {
                original
            }),
        });
    };
    Ok(Value::Object(diff_maps(original, modified, ty, false)))
}

fn diff_maps(
    original: &Map<String, Value>,
    modified: &Map<String, Value>,
    ty: Option<&'static TypeMeta>,
    retain_keys: bool,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, modified_value) in modified {
        let meta = field_meta(ty, key);
        match (original.get(key), modified_value) {
            (Some(before), after) if before == after => {}
            (Some(Value::Object(before)), Value::Object(after)) => {
                let nested = diff_maps(before, after, meta.ty, meta.strategy.retains_keys());
                if !nested.is_empty() {
                    patch.insert(key.clone(), Value::Object(nested));
                }
            }
            (Some(Value::Array(before)), Value::Array(after)) if meta.strategy.merges() => {
                diff_lists(key, before, after, meta.ty, meta.merge_key, &mut patch);
            }
            _ => {
                patch.insert(key.clone(), modified_value.clone());
            }
        }
    }
    for key in original.keys() {
        if !modified.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    // `$retainKeys` lists every key kept, so fields dropped by the change
    // (say `rollingUpdate` when switching to `Recreate`) are cleared.
    if retain_keys && (!patch.is_empty() || original.keys().any(|k| !modified.contains_key(k))) {
        let mut keys: Vec<&String> = modified
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        patch.insert(
            RETAIN_KEYS_DIRECTIVE.to_string(),
            Value::Array(keys.into_iter().map(|k| Value::String(k.clone())).collect()),
        );
    }
    patch
}

fn diff_lists(
    key: &str,
    original: &[Value],
    modified: &[Value],
    ty: Option<&'static TypeMeta>,
    merge_key: Option<&'static str>,
    patch: &mut Map<String, Value>,
) {
    let all_objects = |list: &[Value]| {
        list.iter()
            .all(|item| item.get(merge_key.unwrap_or_default()).is_some())
    };
    let (additions, deletions, order): (Vec<Value>, Vec<Value>, Vec<Value>) = match merge_key {
        Some(merge_key) if all_objects(original) && all_objects(modified) => {
            let find = |list: &[Value], id: &Value| {
                list.iter()
                    .find(|item| item.get(merge_key) == Some(id))
                    .cloned()
            };
            let mut additions = Vec::new();
            for after in modified {
                let id = &after[merge_key];
                match (find(original, id), after) {
                    (Some(before), after) if before == *after => {}
                    (Some(Value::Object(before)), Value::Object(after_map)) => {
                        let mut element = diff_maps(&before, after_map, ty, false);
                        element.insert(merge_key.to_string(), id.clone());
                        additions.push(Value::Object(element));
                    }
                    _ => additions.push(after.clone()),
                }
            }
            let deletions = original
                .iter()
                .filter(|before| find(modified, &before[merge_key]).is_none())
                .map(|before| {
                    let mut element = Map::new();
                    element.insert(merge_key.to_string(), before[merge_key].clone());
                    element.insert(PATCH_DIRECTIVE.to_string(), Value::String("delete".into()));
                    Value::Object(element)
                })
                .collect();
            let order = modified
                .iter()
                .map(|after| {
                    let mut element = Map::new();
                    element.insert(merge_key.to_string(), after[merge_key].clone());
                    Value::Object(element)
                })
                .collect();
            (additions, deletions, order)
        }
        Some(_) => {
            // Elements without their merge key cannot be addressed: send the whole list.
            let mut list = modified.to_vec();
            list.push(serde_json::json!({PATCH_DIRECTIVE: "replace"}));
            patch.insert(key.to_string(), Value::Array(list));
            return;
        }
        None => {
            let additions = modified
                .iter()
                .filter(|item| !original.contains(item))
                .cloned()
                .collect();
            let deletions: Vec<Value> = original
                .iter()
                .filter(|item| !modified.contains(item))
                .cloned()
                .collect();
            if !deletions.is_empty() {
                patch.insert(
                    format!("{DELETE_FROM_PRIMITIVE_LIST_PREFIX}{key}"),
                    Value::Array(deletions),
                );
            }
            (additions, Vec::new(), modified.to_vec())
        }
    };
    let changed = !additions.is_empty()
        || !deletions.is_empty()
        || patch.contains_key(&format!("{DELETE_FROM_PRIMITIVE_LIST_PREFIX}{key}"));
    let list: Vec<Value> = additions.into_iter().chain(deletions).collect();
    if !list.is_empty() {
        patch.insert(key.to_string(), Value::Array(list));
    }
    // The order is sent whenever the list differs, which includes a pure reordering.
    if changed || original != modified {
        patch.insert(
            format!("{SET_ELEMENT_ORDER_PREFIX}{key}"),
            Value::Array(order),
        );
    }
}

#[cfg(test)]
#[rustfmt::skip]
mod tests {
    use super::*;
    use crate::patch_meta::root_type;
    use serde_json::json;

    /// `kind` is a core kind name, `"apps/Deployment"`, or `"-"` for no type information.
    fn check(kind: &str, original: Value, patch: Value, expect: Result<Value, &str>) {
        let ty = match kind.split_once('/') {
            _ if kind == "-" => None,
            Some((group, kind)) => root_type(group, kind),
            None => root_type("", kind),
        };
        let actual = strategic_merge_patch(&original, &patch, ty).map_err(|e| e.to_string());
        assert_eq!(actual, expect.map_err(str::to_string), "patch {patch} on {original}");
    }

    fn pod(containers: Value) -> Value {
        json!({"spec": {"containers": containers}})
    }

    #[test]
    fn maps() {
        check("Pod", json!({"metadata": {"labels": {"a": "1"}}}), json!({"metadata": {"labels": {"b": "2"}}}), Ok(json!({"metadata": {"labels": {"a": "1", "b": "2"}}})));
        check("Pod", json!({"metadata": {"labels": {"a": "1", "b": "2"}}}), json!({"metadata": {"labels": {"a": null}}}), Ok(json!({"metadata": {"labels": {"b": "2"}}})));
        check("Pod", json!({"metadata": {"labels": {"a": "1"}}}), json!({"metadata": {"labels": {"z": null}}}), Ok(json!({"metadata": {"labels": {"a": "1"}}})));
        check("Pod", json!({"metadata": {}}), json!({"metadata": {"labels": {"a": "1", "z": null}}}), Ok(json!({"metadata": {"labels": {"a": "1"}}})));
        check("Pod", json!({"spec": {"x": {"a": 1}}}), json!({"spec": {"x": 3}}), Ok(json!({"spec": {"x": 3}})));
        check("Pod", json!({"spec": {"x": 3}}), json!({"spec": {"x": {"a": 1}}}), Ok(json!({"spec": {"x": {"a": 1}}})));
        check("-", json!({"a": 1}), json!({}), Ok(json!({"a": 1})));
        check("-", json!({"a": 1}), json!([]), Err("strategic merge patch must be a JSON object, got array"));
        check("-", json!([1]), json!({}), Err("strategic merge patch can only be applied to a JSON object, got array"));
    }

    #[test]
    fn patch_directive_on_maps() {
        check("Pod", json!({"metadata": {"labels": {"a": "1"}}}), json!({"metadata": {"labels": {"$patch": "replace", "b": "2"}}}), Ok(json!({"metadata": {"labels": {"b": "2"}}})));
        check("Pod", json!({"metadata": {"labels": {"a": "1"}, "name": "x"}}), json!({"metadata": {"labels": {"$patch": "delete"}}}), Ok(json!({"metadata": {"name": "x"}})));
        check("Pod", json!({"metadata": {"labels": {"a": "1"}}}), json!({"metadata": {"labels": {"$patch": "merge", "b": "2"}}}), Ok(json!({"metadata": {"labels": {"a": "1", "b": "2"}}})));
        check("Pod", json!({"a": 1}), json!({"$patch": "replace", "b": 2}), Ok(json!({"b": 2})));
        check("Pod", json!({"a": 1}), json!({"$patch": "delete"}), Ok(json!({})));
        check("Pod", json!({"metadata": {}}), json!({"metadata": {"$patch": "frobnicate"}}), Err("unknown $patch directive \"frobnicate\" at /metadata"));
        check("Pod", json!({}), json!({"metadata": {"labels": {"$patch": "replace", "a": "1"}}}), Ok(json!({"metadata": {"labels": {"a": "1"}}})));
        check("Pod", json!({}), json!({"$bogus": 1}), Err("invalid strategic merge patch at /$bogus: unknown directive \"$bogus\""));
    }

    #[test]
    fn lists_merged_by_key() {
        let live = pod(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]));
        check("Pod", live.clone(), pod(json!([{"name": "b", "image": "b:2"}])), Ok(pod(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]))));
        check("Pod", live.clone(), pod(json!([{"name": "c", "image": "c:1"}, {"name": "d"}])), Ok(pod(json!([{"name": "c", "image": "c:1"}, {"name": "d"}, {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]))));
        check("Pod", live.clone(), pod(json!([{"name": "a", "image": null}])), Ok(pod(json!([{"name": "a"}, {"name": "b", "image": "b:1"}]))));
        check("Pod", live.clone(), pod(json!([{"name": "a", "$patch": "delete"}])), Ok(pod(json!([{"name": "b", "image": "b:1"}]))));
        check("Pod", live.clone(), pod(json!([{"name": "z", "$patch": "delete"}])), Ok(live.clone()));
        check("Pod", live.clone(), pod(json!([{"name": "c"}, {"$patch": "replace"}])), Ok(pod(json!([{"name": "c"}]))));
        check("Pod", live.clone(), pod(json!([{"$patch": "replace"}])), Ok(pod(json!([]))));
        check("Pod", live.clone(), pod(json!([{"name": "a", "image": "a:2", "$patch": "merge"}])), Ok(pod(json!([{"name": "a", "image": "a:2"}, {"name": "b", "image": "b:1"}]))));
        check("Pod", live.clone(), pod(json!([{"image": "x"}])), Err("list element at /spec/containers/0 does not have the merge key \"name\""));
        check("Pod", live.clone(), pod(json!([{"$patch": "delete"}])), Err("list element at /spec/containers/0 does not have the merge key \"name\""));
        check("Pod", live.clone(), pod(json!([{"name": "a", "$patch": "oops"}])), Err("unknown $patch directive \"oops\" at /spec/containers/0"));
        check("Pod", live.clone(), pod(json!(["a"])), Err("invalid strategic merge patch at /spec/containers/0: list with merge key \"name\" must contain objects, got string"));
        check("Pod", json!({"spec": {}}), pod(json!([{"name": "a", "env": [{"name": "X", "value": "1"}]}])), Ok(pod(json!([{"name": "a", "env": [{"name": "X", "value": "1"}]}]))));
        // Nested lists merge by their own key: env by name, ports by containerPort.
        let with_env = pod(
            json!([{"name": "a", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 80}]}]),
        );
        check("Pod", with_env.clone(), pod(json!([{"name": "a", "env": [{"name": "Y", "value": "2"}]}])), Ok(pod(json!([{"name": "a", "env": [{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}], "ports": [{"containerPort": 80}]}]))));
        check("Pod", with_env.clone(), pod(json!([{"name": "a", "ports": [{"containerPort": 443}]}])), Ok(pod(json!([{"name": "a", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 443}, {"containerPort": 80}]}]))));
        check("Pod", with_env.clone(), pod(json!([{"name": "a", "args": ["x"]}])), Ok(pod(json!([{"name": "a", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 80}], "args": ["x"]}]))));
        check("Pod", json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}), json!({"spec": {"volumes": [{"name": "w", "hostPath": {"path": "/x"}}]}}), Ok(json!({"spec": {"volumes": [{"name": "w", "hostPath": {"path": "/x"}}, {"name": "v", "emptyDir": {}}]}})));
        check("Service", json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}), json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}), Ok(json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}})));
        check("Node", json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}]}}), json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}), Ok(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]}})));
        check("Pod", json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}}), json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}}), Ok(json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}, {"uid": "1", "name": "a"}]}})));
    }

    #[test]
    fn lists_replaced_or_unioned() {
        check("Pod", json!({"spec": {"tolerations": [{"key": "a"}]}}), json!({"spec": {"tolerations": [{"key": "b"}]}}), Ok(json!({"spec": {"tolerations": [{"key": "b"}]}})));
        check("Pod", pod(json!([{"name": "a", "args": ["1", "2"]}])), pod(json!([{"name": "a", "args": ["3"]}])), Ok(pod(json!([{"name": "a", "args": ["3"]}]))));
        check("-", json!({"spec": {"items": [{"name": "a"}]}}), json!({"spec": {"items": [{"name": "b"}]}}), Ok(json!({"spec": {"items": [{"name": "b"}]}})));
        check("Pod", json!({"metadata": {"finalizers": ["a", "b"]}}), json!({"metadata": {"finalizers": ["b", "c"]}}), Ok(json!({"metadata": {"finalizers": ["a", "b", "c"]}})));
        check("Pod", json!({"metadata": {}}), json!({"metadata": {"finalizers": ["a"]}}), Ok(json!({"metadata": {"finalizers": ["a"]}})));
        check("Pod", json!({"metadata": {"finalizers": ["a"]}}), json!({"metadata": {"finalizers": [{"x": 1}]}}), Err("invalid strategic merge patch at /metadata/finalizers: a list without a merge key can only merge primitive elements"));
        check("Pod", json!({"metadata": {"finalizers": ["a", "b"]}}), json!({"metadata": {"finalizers": null}}), Ok(json!({"metadata": {}})));
        check("batch/Job", json!({"status": {"conditions": [{"type": "Complete"}]}}), json!({"status": {"conditions": [{"type": "Failed"}]}}), Ok(json!({"status": {"conditions": [{"type": "Failed"}, {"type": "Complete"}]}})));
    }

    #[test]
    fn delete_from_primitive_list() {
        check("Pod", json!({"metadata": {"finalizers": ["a", "b", "c"]}}), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}), Ok(json!({"metadata": {"finalizers": ["a", "c"]}})));
        check("Pod", json!({"metadata": {"finalizers": ["a", "b"]}}), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["d"]}}), Ok(json!({"metadata": {"finalizers": ["d", "b"]}})));
        check("Pod", json!({"metadata": {}}), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}), Ok(json!({"metadata": {}})));
        check("Pod", json!({"metadata": {}}), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}), Err("invalid strategic merge patch at /metadata/$deleteFromPrimitiveList/finalizers: $deleteFromPrimitiveList must be a list"));
    }

    #[test]
    fn retain_keys() {
        let live = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        check("apps/Deployment", live.clone(), json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}), Ok(json!({"spec": {"strategy": {"type": "Recreate"}}})));
        check("apps/Deployment", live.clone(), json!({"spec": {"strategy": {"$retainKeys": ["type", "rollingUpdate"], "rollingUpdate": {"maxSurge": 2}}}}), Ok(json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2}}}})));
        check("apps/Deployment", live.clone(), json!({"spec": {"strategy": {"$retainKeys": "type"}}}), Err("invalid strategic merge patch at /spec/strategy: $retainKeys must be a list of strings"));
        check("apps/Deployment", live.clone(), json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}), Err("invalid strategic merge patch at /spec/strategy: $retainKeys does not contain \"rollingUpdate\", which the patch sets"));
        check("Pod", json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}), json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}}), Ok(json!({"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x"}}]}})));
    }

    #[test]
    fn set_element_order() {
        let live = pod(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]));
        check("Pod", live.clone(), json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}]}}), Ok(pod(json!([{"name": "c"}, {"name": "b"}, {"name": "a"}]))));
        check("Pod", live.clone(), json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]}}), Ok(pod(json!([{"name": "b"}, {"name": "c"}, {"name": "a"}]))));
        check("Pod", live.clone(), json!({"spec": {"$setElementOrder/containers": [{"name": "d"}, {"name": "a"}], "containers": [{"name": "d"}]}}), Ok(pod(json!([{"name": "d"}, {"name": "a"}, {"name": "b"}, {"name": "c"}]))));
        check("Pod", live.clone(), json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "c"}], "containers": [{"name": "b", "$patch": "delete"}]}}), Ok(pod(json!([{"name": "a"}, {"name": "c"}]))));
        check("Pod", json!({"metadata": {"finalizers": ["a", "b"]}}), json!({"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"], "finalizers": ["c"]}}), Ok(json!({"metadata": {"finalizers": ["c", "b", "a"]}})));
        check("Pod", json!({"spec": {}}), json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "a"}]}}), Ok(pod(json!([{"name": "a"}]))));
        check("Pod", json!({"spec": {}}), json!({"spec": {"$setElementOrder/containers": [{"name": "a"}]}}), Ok(json!({"spec": {}})));
        check("Pod", live.clone(), json!({"spec": {"$setElementOrder/containers": {"name": "a"}}}), Err("invalid strategic merge patch at /spec/$setElementOrder/containers: $setElementOrder must be a list"));
        check("Pod", live.clone(), json!({"spec": {"$setElementOrder/containers": [{"image": "a"}]}}), Err("list element at /spec/containers $setElementOrder does not have the merge key \"name\""));
    }

    #[test]
    fn kubectl_apply_shapes() {
        let live = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{old}", "deployment.kubernetes.io/revision": "1"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.24", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                {"name": "sidecar", "image": "busybox"}
            ]}}}
        });
        // Image bump of one container, as `kubectl apply` computes it.
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{new}"}},
            "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}], "containers": [{"image": "nginx:1.25", "name": "nginx"}]}}}
        });
        let mut expect = live.clone();
        expect["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
            json!("{new}");
        expect["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.25");
        check("apps/Deployment", live.clone(), patch, Ok(expect));
        // Removing a container the last-applied configuration had, and adding one.
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "logger"}, {"name": "nginx"}],
            "containers": [{"name": "logger", "image": "fluentd"}, {"$patch": "delete", "name": "sidecar"}]
        }}}});
        let mut expect = live.clone();
        expect["spec"]["template"]["spec"]["containers"] = json!([{"name": "logger", "image": "fluentd"}, {"name": "nginx", "image": "nginx:1.24", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]);
        check("apps/Deployment", live.clone(), patch, Ok(expect));
        // Removing a field the last-applied configuration had, and replicas.
        let patch = json!({"spec": {"replicas": null, "template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}], "containers": [{"name": "nginx", "ports": null}]}}}});
        let mut expect = live.clone();
        expect["spec"]
            .as_object_mut()
            .unwrap()
            .shift_remove("replicas");
        expect["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .shift_remove("ports");
        check("apps/Deployment", live.clone(), patch, Ok(expect));
        // Switching the rollout strategy uses $retainKeys.
        let live = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}});
        check("apps/Deployment", live, json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}}), Ok(json!({"spec": {"strategy": {"type": "Recreate"}}})));
    }

    /// The two-way patch, and that applying it to `original` gives `modified`.
    fn check_diff(kind: &str, original: Value, modified: Value, expect: Value) {
        let ty = match kind.split_once('/') {
            Some((group, kind)) => root_type(group, kind),
            None => root_type("", kind),
        };
        let patch = create_two_way_merge_patch(&original, &modified, ty).unwrap();
        assert_eq!(patch, expect, "diff of {original} -> {modified}");
        assert_eq!(strategic_merge_patch(&original, &patch, ty).unwrap(), modified, "applying {patch} to {original}");
    }

    #[test]
    fn two_way_merge_patch() {
        check_diff("Pod", json!({"a": 1}), json!({"a": 1}), json!({}));
        check_diff("Pod", json!({"a": 1, "b": 2}), json!({"a": 3}), json!({"a": 3, "b": null}));
        check_diff("Pod", json!({"metadata": {"labels": {"a": "1"}}}), json!({"metadata": {"labels": {"a": "2", "b": "3"}}}), json!({"metadata": {"labels": {"a": "2", "b": "3"}}}));
        check_diff("Pod", pod(json!([{"name": "a", "image": "1"}, {"name": "b"}])), pod(json!([{"name": "a", "image": "2"}, {"name": "b"}])), json!({"spec": {"containers": [{"image": "2", "name": "a"}], "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}]}}));
        check_diff("Pod", pod(json!([{"name": "a"}, {"name": "b"}])), pod(json!([{"name": "c"}, {"name": "a"}])), json!({"spec": {"containers": [{"name": "c"}, {"name": "b", "$patch": "delete"}], "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]}}));
        check_diff("Pod", pod(json!([{"name": "a"}, {"name": "b"}])), pod(json!([{"name": "b"}, {"name": "a"}])), json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}));
        check_diff("Pod", json!({"metadata": {"finalizers": ["a", "b"]}}), json!({"metadata": {"finalizers": ["b", "c"]}}), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"], "$setElementOrder/finalizers": ["b", "c"]}}));
        check_diff("Pod", json!({"spec": {"tolerations": [{"key": "a"}]}}), json!({"spec": {"tolerations": [{"key": "b"}]}}), json!({"spec": {"tolerations": [{"key": "b"}]}}));
        check_diff("apps/Deployment", json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}), json!({"spec": {"strategy": {"type": "Recreate"}}}), json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null, "$retainKeys": ["type"]}}}));
    }
}
