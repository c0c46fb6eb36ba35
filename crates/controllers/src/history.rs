//! ControllerRevisions: the snapshots of a pod template that DaemonSets and
//! StatefulSets keep so rollouts know which pods are current and rollbacks
//! can restore an earlier template (kube's `controller/history`).
//!
//! A revision stores a patch that replaces `spec.template`
//! (`{"spec":{"template":{..., "$patch":"replace"}}}`), is named
//! `<parent>-<hash>`, and carries an increasing `revision` number; the
//! current template's revision always has the highest number.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{json, Value};

use crate::plan::{Action, Resource};
use crate::pods;

/// The label naming a pod's (and a DaemonSet revision's) revision.
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// The hash label Kubernetes puts on StatefulSet revisions.
pub const CONTROLLER_HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// Names are `<parent>-<hash>`; the parent part is cut so the whole stays a
/// valid object name.
const MAX_PARENT_PREFIX: usize = 223;

/// The data a revision stores for `template`.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut template_json = json!({"$patch": "replace"});
    if let (Some(out), Value::Object(fields)) =
        (template_json.as_object_mut(), pods::to_value(template))
    {
        out.extend(fields);
    }
    json!({"spec": {"template": template_json}})
}

/// The pod template a revision recorded, if its data has one.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision
        .data
        .as_ref()?
        .0
        .get("spec")?
        .get("template")?
        .clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

pub fn revision_name(parent: &str, hash: &str) -> String {
    let prefix = if parent.len() > MAX_PARENT_PREFIX {
        let mut end = MAX_PARENT_PREFIX;
        while !parent.is_char_boundary(end) {
            end -= 1;
        }
        &parent[..end]
    } else {
        parent
    };
    format!("{prefix}-{hash}")
}

/// Whether a revision recorded exactly `data` (JSON equality, so field
/// order does not matter).
pub fn has_data(revision: &ControllerRevision, data: &Value) -> bool {
    revision.data.as_ref().is_some_and(|d| &d.0 == data)
}

/// The revisions `owner_uid` controls, oldest first (by revision number,
/// then name, so the order is total).
pub fn controlled_sorted<'a>(
    revisions: &[&'a ControllerRevision],
    owner_uid: &str,
) -> Vec<&'a ControllerRevision> {
    let mut controlled: Vec<&ControllerRevision> = revisions
        .iter()
        .copied()
        .filter(|r| pods::is_controlled_by(&r.metadata, owner_uid))
        .collect();
    controlled.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then(a.metadata.name.cmp(&b.metadata.name))
    });
    controlled
}

pub fn max_revision(revisions: &[&ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0)
}

/// The name (and hash) for a new revision of `data`. A name held by a
/// revision with other data, or of another owner, is a hash collision: the
/// collision count goes up until the name is free, as Kubernetes does when
/// its create fails with AlreadyExists. `all` are every revision in the
/// namespace; `hash` computes the hash for a collision count.
pub fn free_name(
    parent: &str,
    owner_uid: &str,
    all: &[&ControllerRevision],
    data: &Value,
    mut collision_count: Option<i32>,
    hash: impl Fn(Option<i32>) -> String,
) -> (String, String, Option<i32>) {
    // Each step changes the hash; a handful of rounds is already absurdly
    // unlikely, the bound only keeps a corrupt input from looping.
    for _ in 0..1000 {
        let h = hash(collision_count);
        let name = revision_name(parent, &h);
        match all
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name.as_str()))
        {
            Some(r) if !(has_data(r, data) && pods::is_controlled_by(&r.metadata, owner_uid)) => {
                collision_count = Some(collision_count.unwrap_or(0) + 1);
            }
            _ => return (name, h, collision_count),
        }
    }
    let h = hash(collision_count);
    (revision_name(parent, &h), h, collision_count)
}

/// A new revision object owned (as controller) by the parent.
pub fn new_revision(
    parent_api_version: &str,
    parent_kind: &str,
    parent: &ObjectMeta,
    name: &str,
    labels: BTreeMap<String, String>,
    data: Value,
    revision: i64,
) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: parent.namespace.clone(),
            labels: Some(labels),
            annotations: parent.annotations.clone(),
            owner_references: Some(vec![pods::controller_reference(
                parent_api_version,
                parent_kind,
                parent,
            )]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

pub fn create(revision: &ControllerRevision) -> Action {
    Action::Create {
        resource: Resource::ControllerRevisions,
        namespace: revision.metadata.namespace.clone(),
        object: pods::to_value(revision),
    }
}

/// Moves an existing revision to the top (a rollback to its template).
pub fn renumber(revision: &ControllerRevision, number: i64) -> Action {
    let mut updated = revision.clone();
    updated.revision = number;
    Action::Update {
        resource: Resource::ControllerRevisions,
        namespace: revision.metadata.namespace.clone(),
        name: revision.metadata.name.clone().unwrap_or_default(),
        object: pods::to_value(&updated),
    }
}

pub fn delete(revision: &ControllerRevision) -> Action {
    Action::Delete {
        resource: Resource::ControllerRevisions,
        namespace: revision.metadata.namespace.clone(),
        name: revision.metadata.name.clone().unwrap_or_default(),
        uid: revision.metadata.uid.clone(),
        propagation: None,
    }
}

/// DaemonSet history truncation: of the old revisions (oldest first), delete
/// the oldest so at most `limit` remain, never one a pod still runs.
pub fn excess_skipping_live<'a>(
    old: &[&'a ControllerRevision],
    limit: usize,
    live: impl Fn(&ControllerRevision) -> bool,
) -> Vec<&'a ControllerRevision> {
    let mut to_kill = old.len().saturating_sub(limit);
    let mut out = Vec::new();
    for revision in old {
        if to_kill == 0 {
            break;
        }
        if live(revision) {
            continue;
        }
        out.push(*revision);
        to_kill -= 1;
    }
    out
}

/// StatefulSet history truncation: of the revisions no pod (nor the
/// current or update revision) uses, delete the oldest beyond `limit`.
pub fn excess_not_live<'a>(
    revisions: &[&'a ControllerRevision],
    limit: usize,
    live: impl Fn(&ControllerRevision) -> bool,
) -> Vec<&'a ControllerRevision> {
    let history: Vec<&ControllerRevision> =
        revisions.iter().copied().filter(|r| !live(r)).collect();
    let excess = history.len().saturating_sub(limit);
    history.into_iter().take(excess).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .unwrap()
    }

    fn revision(name: &str, number: i64, owner: &str, data: Value) -> ControllerRevision {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "web", "uid": owner, "controller": true}]},
            "data": data,
            "revision": number
        }))
        .unwrap()
    }

    #[test]
    fn patch_round_trips_the_template() {
        let data = template_patch(&template("nginx:1"));
        assert_eq!(
            data,
            json!({"spec": {"template": {"$patch": "replace", "metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}})
        );
        let r = revision("web-1", 1, "ds", data.clone());
        assert_eq!(template_of(&r), Some(template("nginx:1")));
        assert!(has_data(&r, &data));
        assert!(!has_data(&r, &template_patch(&template("nginx:2"))));
    }

    #[test]
    fn names_are_cut_to_a_valid_length() {
        assert_eq!(revision_name("web", "abc"), "web-abc");
        let long = "x".repeat(300);
        assert_eq!(revision_name(&long, "abc").len(), 223 + 4);
    }

    #[test]
    fn collisions_bump_the_count_until_the_name_is_free() {
        let data = template_patch(&template("nginx:1"));
        let hash = |c: Option<i32>| format!("h{}", c.map_or("none".to_string(), |c| c.to_string()));
        // Free: no bump.
        assert_eq!(
            free_name("web", "ds", &[], &data, None, hash),
            ("web-hnone".into(), "hnone".into(), None)
        );
        // Taken by other data, then by another owner's equal revision.
        let other = revision("web-hnone", 1, "ds", template_patch(&template("nginx:0")));
        let foreign = revision("web-h1", 1, "someone", data.clone());
        assert_eq!(
            free_name("web", "ds", &[&other, &foreign], &data, None, hash),
            ("web-h2".into(), "h2".into(), Some(2))
        );
        // Our own equal revision is not a collision.
        let ours = revision("web-hnone", 1, "ds", data.clone());
        assert_eq!(free_name("web", "ds", &[&ours], &data, None, hash).2, None);
    }

    #[test]
    fn sorting_and_truncation() {
        let d = json!({});
        let (a, b, c) = (
            revision("web-a", 3, "ds", d.clone()),
            revision("web-b", 1, "ds", d.clone()),
            revision("web-c", 2, "other", d.clone()),
        );
        let sorted = controlled_sorted(&[&a, &b, &c], "ds");
        let names: Vec<_> = sorted
            .iter()
            .map(|r| r.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(names, ["web-b", "web-a"]);
        assert_eq!(max_revision(&sorted), 3);

        let (r1, r2, r3) = (
            revision("r1", 1, "ds", d.clone()),
            revision("r2", 2, "ds", d.clone()),
            revision("r3", 3, "ds", d.clone()),
        );
        let live = |r: &ControllerRevision| r.metadata.name.as_deref() == Some("r1");
        let names = |v: Vec<&ControllerRevision>| {
            v.iter()
                .map(|r| r.metadata.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        // DaemonSet: two too many, r1 is live so r2 and r3 go.
        assert_eq!(
            names(excess_skipping_live(&[&r1, &r2, &r3], 1, live)),
            ["r2", "r3"]
        );
        // StatefulSet: live ones do not count against the limit.
        assert_eq!(names(excess_not_live(&[&r1, &r2, &r3], 1, live)), ["r2"]);
        assert!(excess_not_live(&[&r1, &r2], 5, live).is_empty());
    }
}
