//! Lenient readers over API objects as JSON: a printer must render whatever
//! is stored, so missing or mistyped fields read as the Go zero value
//! rather than failing the whole list.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::duration;

/// Follows a dotted path of object keys.
pub(crate) fn get<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(object, |v, key| v.get(key))
}

pub(crate) fn str_at<'a>(object: &'a Value, path: &str) -> &'a str {
    get(object, path)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub(crate) fn opt_str<'a>(object: &'a Value, path: &str) -> Option<&'a str> {
    get(object, path).and_then(Value::as_str)
}

pub(crate) fn i64_at(object: &Value, path: &str) -> i64 {
    opt_i64(object, path).unwrap_or(0)
}

pub(crate) fn opt_i64(object: &Value, path: &str) -> Option<i64> {
    get(object, path).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

pub(crate) fn bool_at(object: &Value, path: &str) -> bool {
    get(object, path).and_then(Value::as_bool).unwrap_or(false)
}

pub(crate) fn array_at<'a>(object: &'a Value, path: &str) -> &'a [Value] {
    get(object, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Number of entries of a map (`data`) or list; zero if absent.
pub(crate) fn len_at(object: &Value, path: &str) -> usize {
    match get(object, path) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

pub(crate) fn timestamp_at(object: &Value, path: &str) -> Option<DateTime<Utc>> {
    opt_str(object, path).and_then(duration::parse_timestamp)
}

pub(crate) fn name(object: &Value) -> &str {
    str_at(object, "metadata.name")
}

pub(crate) fn age(object: &Value, now: DateTime<Utc>) -> String {
    duration::since(timestamp_at(object, "metadata.creationTimestamp"), now)
}

pub(crate) fn is_deleting(object: &Value) -> bool {
    get(object, "metadata.deletionTimestamp").is_some_and(|v| !v.is_null())
}

/// Kubernetes' `labels.FormatLabels`: sorted `k=v` pairs, `<none>` when empty.
pub(crate) fn format_labels(map: Option<&Value>) -> String {
    let mut pairs: Vec<String> = match map {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect(),
        _ => Vec::new(),
    };
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort();
    pairs.join(",")
}

/// The string form of a structured label selector, as `LabelSelectorAsSelector(...).String()`
/// prints it: requirements sorted by key, set values sorted.
pub(crate) fn format_label_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return String::new();
    };
    let mut terms: Vec<(String, String)> = Vec::new();
    if let Some(Value::Object(labels)) = selector.get("matchLabels") {
        for (k, v) in labels {
            terms.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    for expression in array_at(selector, "matchExpressions") {
        let key = str_at(expression, "key");
        let mut values: Vec<&str> = array_at(expression, "values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        values.dedup();
        let term = match str_at(expression, "operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<invalid>".to_string(),
        };
        terms.push((key.to_string(), term));
    }
    terms.sort_by(|a, b| a.0.cmp(&b.0));
    terms
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// Kubernetes' `layoutContainerCells`: container names and images, comma-joined.
pub(crate) fn container_cells(pod_spec: Option<&Value>) -> (String, String) {
    let containers = pod_spec
        .map(|s| array_at(s, "containers"))
        .unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "image")).collect();
    (names.join(","), images.join(","))
}

/// Whether a `conditions` list has `type` with status `True`.
pub(crate) fn has_true_condition(conditions: &[Value], condition_type: &str) -> bool {
    conditions
        .iter()
        .any(|c| str_at(c, "type") == condition_type && str_at(c, "status") == "True")
}

/// Kubernetes' `listWithMoreString`: at most `max` entries then `+ N more...`.
pub(crate) fn list_with_more(items: &[String], max: usize, empty: &str) -> String {
    let shown = items
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if items.len() > max {
        return format!("{shown} + {} more...", items.len() - max);
    }
    if shown.is_empty() {
        return empty.to_string();
    }
    shown
}
