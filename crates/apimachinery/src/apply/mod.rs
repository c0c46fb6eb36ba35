//! Server-side apply (`application/apply-patch+yaml`) and `metadata.managedFields` tracking, with structured-merge-diff semantics.
//!
//! Every write records which manager owns which fields. An apply merges the
//! applied configuration into the live object, removes fields the manager
//! applied before but no longer does (unless someone else owns them), and
//! fails with conflicts when it would change a field another manager owns.
//! Any other write (`update_managed_fields`) just moves the changed fields to
//! the writer.

mod fieldset;
mod walk;

pub use fieldset::{canonical_json, FieldPath, FieldSet, PathElement};
pub use walk::Schema;

use crate::patch_meta::{field_meta, TypeMeta};
use serde_json::{Map, Value};
use std::fmt;
use thiserror::Error;
use walk::{compare, compare_values, flatten, merge, remove_path, to_field_set};

/// A field another manager owns that an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// The field, spelled like `.spec.replicas` or `.spec.containers[name="nginx"].image`.
    pub field: String,
    /// `Apply` or `Update`: together with `api_version`, how Kubernetes names the manager.
    pub operation: String,
    pub api_version: String,
}

impl Conflict {
    /// The manager as Kubernetes prints it: `"kubectl-client-side-apply" using apps/v1`
    /// for an updater, just the quoted name for an applier.
    pub fn manager_description(&self) -> String {
        if self.operation == "Update" {
            format!("{:?} using {}", self.manager, self.api_version)
        } else {
            format!("{:?}", self.manager)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApplyError {
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    #[error("invalid object: {0}")]
    InvalidObject(String),
}

/// Kubernetes' wording, which kubectl shows verbatim.
fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [conflict] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflict.manager_description(),
            conflict.field
        );
    }
    let mut managers: Vec<String> = conflicts
        .iter()
        .map(Conflict::manager_description)
        .collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for manager in managers {
        lines.push(format!("conflicts with {manager}:"));
        for conflict in conflicts
            .iter()
            .filter(|c| c.manager_description() == manager)
        {
            lines.push(format!("- {}", conflict.field));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// The manager that owns the fields of an object that had no managedFields when it was first applied.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Fields no manager owns: identity and bookkeeping set by the server, and
/// the status, which the main resource's writers do not manage.
fn ignored_paths() -> Vec<FieldPath> {
    let mut ignored = vec![
        FieldPath::fields(&["apiVersion"]),
        FieldPath::fields(&["kind"]),
        FieldPath::fields(&["status"]),
    ];
    for field in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        ignored.push(FieldPath::fields(&["metadata", field]));
    }
    ignored
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
struct ManagerEntry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    set: FieldSet,
}

impl ManagerEntry {
    /// Appliers are one manager across API versions; updaters are one per version.
    fn same_manager(&self, manager: &str, operation: &str, api_version: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.is_none()
            && (operation == "Apply" || self.api_version == api_version)
    }

    fn to_json(&self) -> Value {
        let mut entry = Map::new();
        entry.insert("manager".into(), Value::String(self.manager.clone()));
        entry.insert("operation".into(), Value::String(self.operation.clone()));
        entry.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(time) = &self.time {
            entry.insert("time".into(), Value::String(time.clone()));
        }
        entry.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        entry.insert("fieldsV1".into(), self.set.to_fields_v1());
        if let Some(subresource) = &self.subresource {
            entry.insert("subresource".into(), Value::String(subresource.clone()));
        }
        Value::Object(entry)
    }

    fn from_json(value: &Value) -> Option<ManagerEntry> {
        let string = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
        if value
            .get("fieldsType")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "FieldsV1")
        {
            return None;
        }
        Some(ManagerEntry {
            manager: string("manager").unwrap_or_default(),
            operation: string("operation")?,
            api_version: string("apiVersion").unwrap_or_default(),
            time: string("time"),
            subresource: string("subresource").filter(|s| !s.is_empty()),
            set: FieldSet::from_fields_v1(
                value.get("fieldsV1").unwrap_or(&Value::Object(Map::new())),
            )
            .ok()?,
        })
    }
}

/// Decodes `metadata.managedFields`. Like the API server, entries it cannot
/// decode are dropped rather than failing the write.
fn decode_managers(object: &Value) -> Vec<ManagerEntry> {
    match object.pointer("/metadata/managedFields") {
        Some(Value::Array(entries)) => entries.iter().filter_map(ManagerEntry::from_json).collect(),
        _ => Vec::new(),
    }
}

/// Writes the entries back sorted the way the API server sorts them:
/// appliers before updaters, then by time, manager and version.
fn encode_managers(object: &mut Value, mut managers: Vec<ManagerEntry>) {
    managers.retain(|entry| !entry.set.is_empty());
    managers.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Some(object) = object.as_object_mut() else {
        return;
    };
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    if managers.is_empty() {
        metadata.shift_remove("managedFields");
    } else {
        metadata.insert(
            "managedFields".into(),
            Value::Array(managers.iter().map(ManagerEntry::to_json).collect()),
        );
    }
}

/// Removes `null`s from an applied configuration: applying `null` means the
/// applier does not set the field.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn api_version_of(object: &Value) -> String {
    object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Server-side apply of `applied` by `manager` onto `live` (`None` when the
/// apply creates the object). Returns the new object with
/// `metadata.managedFields` updated, or the conflicts with other managers;
/// `force` takes the conflicting fields over instead.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    ty: Option<&'static TypeMeta>,
    now_rfc3339: &str,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::InvalidObject(
            "the applied configuration must be an object".into(),
        ));
    }
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApplyError::InvalidObject(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let api_version = api_version_of(applied);
    if api_version.is_empty()
        || applied
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(ApplyError::InvalidObject(
            "apiVersion and kind must be set".into(),
        ));
    }
    let empty = Value::Object(Map::new());
    let live = live.unwrap_or(&empty);
    if !live.is_object() {
        return Err(ApplyError::InvalidObject(
            "the live object must be an object".into(),
        ));
    }
    let applied = without_nulls(applied);
    let schema = Schema::for_root(ty);
    let ignored = ignored_paths();
    let mut managers = decode_managers(live);
    if managers.is_empty() && live.as_object().is_some_and(|m| !m.is_empty()) {
        // An object written before fields were tracked: Kubernetes gives its
        // fields to a stand-in manager so an apply cannot silently take them.
        let existing = compare(&Default::default(), &flatten(live, schema, &ignored)).added;
        managers.push(ManagerEntry {
            manager: BEFORE_FIRST_APPLY.into(),
            operation: "Update".into(),
            api_version: api_version_of(live),
            time: Some(now_rfc3339.to_string()),
            subresource: None,
            set: existing,
        });
    }

    let mut merged = merge(live, &applied, schema, &field_meta(None, ""));
    let applied_set = to_field_set(&applied, schema, &ignored);
    let previous = managers
        .iter()
        .position(|m| m.same_manager(manager, "Apply", &api_version));
    let last_applied_set = previous
        .map(|i| managers[i].set.clone())
        .unwrap_or_default();
    let applier_index = match previous {
        Some(index) => index,
        None => {
            managers.push(ManagerEntry {
                manager: manager.to_string(),
                operation: "Apply".into(),
                api_version: api_version.clone(),
                time: None,
                subresource: None,
                set: FieldSet::new(),
            });
            managers.len() - 1
        }
    };
    managers[applier_index].set = applied_set.clone();
    managers[applier_index].api_version = api_version.clone();

    // Prune what this manager stopped applying, unless anyone still owns it
    // or something below it. Ancestors go first: a list element must still
    // carry its key fields to be found.
    let owned = managers
        .iter()
        .fold(FieldSet::new(), |all, m| all.union(&m.set));
    for path in last_applied_set.difference(&owned).iter() {
        if !owned.has_path_at_or_below(path) {
            remove_path(&mut merged, path);
        }
    }

    let comparison = compare(
        &flatten(live, schema, &ignored),
        &flatten(&merged, schema, &ignored),
    );
    let changed = comparison.added.union(&comparison.modified);
    let mut conflicts = Vec::new();
    for (index, entry) in managers.iter_mut().enumerate() {
        if index == applier_index {
            continue;
        }
        let conflicting = entry.set.intersection(&changed);
        if !force {
            conflicts.extend(conflicting.iter().map(|path| Conflict {
                manager: entry.manager.clone(),
                field: path.to_string(),
                operation: entry.operation.clone(),
                api_version: entry.api_version.clone(),
            }));
        }
        entry.set = entry
            .set
            .difference(&conflicting)
            .difference(&comparison.removed);
    }
    if !conflicts.is_empty() {
        return Err(ApplyError::Conflicts(conflicts));
    }
    let applier = &mut managers[applier_index];
    if previous.is_none()
        || applier.set != last_applied_set
        || !comparison.added.is_empty()
        || !comparison.modified.is_empty()
    {
        applier.time = Some(now_rfc3339.to_string());
    }
    encode_managers(&mut merged, managers);
    Ok(merged)
}

/// What the API server records for a create, update or patch that is not an
/// apply: `manager` takes ownership of every field it added or changed, other
/// managers lose those fields, and fields that were removed are owned by no
/// one. `operation` is `"Update"` for these writes.
pub fn update_managed_fields(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    operation: &str,
    now_rfc3339: &str,
    ty: Option<&'static TypeMeta>,
) -> Value {
    let mut result = new.clone();
    track_update(old, &mut result, manager, operation, now_rfc3339, ty);
    result
}

/// [`update_managed_fields`] in place: `object` is the new object.
pub fn track_update(
    old: Option<&Value>,
    object: &mut Value,
    manager: &str,
    operation: &str,
    now_rfc3339: &str,
    ty: Option<&'static TypeMeta>,
) {
    track(old, object, manager, operation, now_rfc3339, ty, true)
}

fn track(
    old: Option<&Value>,
    object: &mut Value,
    manager: &str,
    operation: &str,
    now_rfc3339: &str,
    ty: Option<&'static TypeMeta>,
    shortcut: bool,
) {
    let new = &*object;
    // A client resets managedFields by writing a single empty entry.
    if let Some(Value::Array(entries)) = new.pointer("/metadata/managedFields") {
        if entries.len() == 1 && entries[0].as_object().is_some_and(Map::is_empty) {
            encode_managers(object, Vec::new());
            return;
        }
    }
    let empty = Value::Object(Map::new());
    let old = old.unwrap_or(&empty);
    let schema = Schema::for_root(ty);
    let ignored = ignored_paths();
    let comparison = compare_values(old, new, schema, &ignored);
    if shortcut
        && comparison.added.is_empty()
        && comparison.modified.is_empty()
        && comparison.removed.is_empty()
    {
        // Nothing any manager owns changed (a status write, a touched
        // resourceVersion): every entry stays as it is, so the stored ones are
        // carried over without decoding and re-encoding them. Only when the
        // client sent none or sent them back unchanged, and every entry has
        // its time (the updater's would otherwise be stamped now): the entries
        // were written by `encode_managers`, which this would reproduce.
        let stored = old.pointer("/metadata/managedFields");
        let sent = new.pointer("/metadata/managedFields");
        let timed = |entries: Option<&Value>| match entries {
            None => true,
            Some(Value::Array(entries)) => entries
                .iter()
                .all(|e| e.get("time").is_some_and(Value::is_string)),
            Some(_) => false,
        };
        if (sent.is_none() || sent == stored) && timed(stored) {
            let stored = stored
                .filter(|e| e.as_array().is_some_and(|a| !a.is_empty()))
                .cloned();
            if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                match stored {
                    Some(entries) => {
                        metadata.insert("managedFields".into(), entries);
                    }
                    None => {
                        metadata.shift_remove("managedFields");
                    }
                }
            } else if let (Some(entries), Some(object)) = (stored, object.as_object_mut()) {
                object.insert(
                    "metadata".into(),
                    serde_json::json!({"managedFields": entries}),
                );
            }
            return;
        }
    }
    // Entries a client sent along are taken as given; otherwise the stored ones carry over.
    let mut managers = decode_managers(new);
    if managers.is_empty() {
        managers = decode_managers(old);
    }
    let api_version = Some(api_version_of(new))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| api_version_of(old));
    // Moved, not cloned: the comparison is not needed after this.
    let removed = comparison.removed;
    let mut changed = comparison.added;
    changed.0.extend(comparison.modified.0);

    let position = managers
        .iter()
        .position(|m| m.same_manager(manager, operation, &api_version));
    for (index, entry) in managers.iter_mut().enumerate() {
        if Some(index) != position {
            // What changed is no longer anyone else's; most entries own
            // none of it and are left as they are.
            entry.set.remove_all(&changed);
            entry.set.remove_all(&removed);
        }
    }
    let index = position.unwrap_or_else(|| {
        managers.push(ManagerEntry {
            manager: manager.to_string(),
            operation: operation.to_string(),
            api_version: api_version.clone(),
            time: None,
            subresource: None,
            set: FieldSet::new(),
        });
        managers.len() - 1
    });
    let entry = &mut managers[index];
    let mut set_changed = entry.set.remove_all(&removed);
    for path in changed.0 {
        set_changed |= entry.set.0.insert(path);
    }
    if set_changed || entry.time.is_none() {
        entry.time = Some(now_rfc3339.to_string());
    }
    encode_managers(object, managers);
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conflict with {}: {}",
            self.manager_description(),
            self.field
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch_meta::root_type;
    use serde_json::json;

    /// Carrying unchanged entries over gives exactly what decoding,
    /// updating and re-encoding them gives.
    #[test]
    fn unchanged_entries_are_carried_over_exactly() {
        let ty = root_type("", "Pod");
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "d", "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        });
        type Edit = Box<dyn Fn(&mut Value)>;
        let mut steps: Vec<(&str, Edit)> = vec![
            ("creator", Box::new(|_| {})),
            (
                "scheduler",
                Box::new(|v| v["spec"]["nodeName"] = json!("n1")),
            ),
            (
                "kubelet",
                Box::new(|v| v["status"] = json!({"phase": "Running"})),
            ),
            (
                "kubelet",
                Box::new(|v| v["status"]["phase"] = json!("Succeeded")),
            ),
            (
                "other",
                Box::new(|v| v["metadata"]["resourceVersion"] = json!("9")),
            ),
            (
                "creator",
                Box::new(|v| v["metadata"]["labels"]["b"] = json!("2")),
            ),
            (
                "creator",
                Box::new(|v| v["metadata"]["managedFields"] = json!([])),
            ),
            (
                "other",
                Box::new(|v| {
                    v["metadata"]
                        .as_object_mut()
                        .unwrap()
                        .remove("managedFields");
                }),
            ),
            (
                "other",
                Box::new(|v| {
                    v["metadata"]["managedFields"][0]["time"] = json!("2020-01-01T00:00:00Z")
                }),
            ),
            (
                "other",
                Box::new(|v| {
                    v["metadata"]["managedFields"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("time");
                }),
            ),
            (
                "other",
                Box::new(|v| {
                    v["metadata"]["managedFields"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("time");
                }),
            ),
        ];
        let mut live: Option<Value> = None;
        for (i, (manager, edit)) in steps.drain(..).enumerate() {
            let mut new = live.clone().unwrap_or_else(|| pod.clone());
            edit(&mut new);
            let now = format!("2026-01-01T00:00:{i:02}Z");
            let mut fast = new.clone();
            track(live.as_ref(), &mut fast, manager, "Update", &now, ty, true);
            let mut slow = new.clone();
            track(live.as_ref(), &mut slow, manager, "Update", &now, ty, false);
            assert_eq!(fast, slow, "step {i} by {manager}");
            live = Some(slow);
        }
        let live = live.unwrap();
        assert!(live.pointer("/metadata/managedFields").is_some());
    }
}
