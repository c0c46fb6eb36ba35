//! The local-path provisioner (k3s' local-path-provisioner, done as a
//! controller): a claim of the `drover.dev/local-path` class that the
//! scheduler has given a node (`volume.kubernetes.io/selected-node`, the
//! WaitForFirstConsumer handshake) gets a `hostPath` PersistentVolume under
//! the storage root, pinned to that node by node affinity, and both sides
//! are bound. When the claim goes, a `Delete` volume is marked `Released`;
//! the node agent that holds its directory deletes the directory and then
//! the PersistentVolume (the controller cannot reach other nodes' disks).

use std::path::Path;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{json, Value};

use crate::plan::{Action, EventType, Plan, Resource};

pub const PROVISIONER: &str = api::admission::LOCAL_PATH_PROVISIONER;
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";

/// The name of the volume provisioned for a claim (as external
/// provisioners name them).
pub fn volume_name(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}

/// `<root>/pvc-<uid>_<namespace>_<name>` (local-path-provisioner's layout).
pub fn volume_path(root: &Path, claim: &PersistentVolumeClaim) -> String {
    let m = &claim.metadata;
    root.join(format!(
        "pvc-{}_{}_{}",
        m.uid.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default()
    ))
    .display()
    .to_string()
}

/// The plan for one claim key: `claim` is `None` once it is gone (then
/// `volumes` still holds what was provisioned for it, to release).
pub fn reconcile_local_path(
    namespace: &str,
    name: &str,
    claim: Option<&PersistentVolumeClaim>,
    class: Option<&StorageClass>,
    volumes: &[&PersistentVolume],
    root: &Path,
) -> Plan {
    let mut plan = Plan::default();
    // A claim being deleted still owns its volume: the pvc-protection
    // finalizer holds it while a pod uses it, and the volume (with its
    // data) is released only once the claim object is really gone.
    let claim_uid = claim.and_then(|c| c.metadata.uid.clone());
    // Volumes of ours whose claim (this name, any incarnation) is gone.
    for pv in volumes {
        let ours = pv
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROVISIONED_BY))
            .is_some_and(|p| p == PROVISIONER);
        let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
            continue;
        };
        if !ours
            || claim_ref.namespace.as_deref() != Some(namespace)
            || claim_ref.name.as_deref() != Some(name)
        {
            continue;
        }
        let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
        if claim_ref.uid != claim_uid && phase != Some("Released") {
            plan.push(Action::Patch {
                resource: Resource::PersistentVolumes,
                namespace: None,
                name: pv.metadata.name.clone().unwrap_or_default(),
                subresource: Some("status"),
                patch: json!({"status": {"phase": "Released"}}),
            });
        }
    }
    // Nothing is provisioned or bound for a claim being deleted.
    let Some(claim) = claim.filter(|c| c.metadata.deletion_timestamp.is_none()) else {
        return plan;
    };
    let Some(class) = class.filter(|c| c.provisioner == PROVISIONER) else {
        return plan;
    };
    let uid = claim_uid.unwrap_or_default();
    let spec = claim.spec.clone().unwrap_or_default();
    let annotations = claim.metadata.annotations.clone().unwrap_or_default();
    let pv_name = volume_name(&uid);
    let claim_reference = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "namespace": namespace, "name": name, "uid": uid});
    let bound_volume = spec.volume_name.clone().filter(|v| !v.is_empty());
    if bound_volume.is_none() {
        let Some(node) = annotations.get(SELECTED_NODE) else {
            // WaitForFirstConsumer: nothing until a pod using it is scheduled.
            return plan;
        };
        let existing = volumes
            .iter()
            .find(|pv| pv.metadata.name.as_deref() == Some(&pv_name));
        if existing.is_none() {
            let storage = spec
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map(|q| q.0.clone())
                .unwrap_or_else(|| "1Gi".into());
            plan.push(Action::Create {
                resource: Resource::PersistentVolumes,
                namespace: None,
                object: json!({
                    "apiVersion": "v1", "kind": "PersistentVolume",
                    "metadata": {"name": pv_name, "annotations": {PROVISIONED_BY: PROVISIONER}},
                    "spec": {
                        "capacity": {"storage": storage},
                        "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
                        "persistentVolumeReclaimPolicy": class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
                        "storageClassName": class.metadata.name,
                        "volumeMode": "Filesystem",
                        "hostPath": {"path": volume_path(root, claim), "type": "DirectoryOrCreate"},
                        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
                        "claimRef": claim_reference,
                    }
                }),
            });
            plan.push(Action::Event {
                involved: crate::plan::object_reference(
                    "v1",
                    "PersistentVolumeClaim",
                    &claim.metadata,
                ),
                event_type: EventType::Normal,
                reason: "ProvisioningSucceeded".into(),
                message: format!("Successfully provisioned volume {pv_name}"),
            });
        }
        plan.push(Action::Patch {
            resource: Resource::PersistentVolumeClaims,
            namespace: Some(namespace.into()),
            name: name.into(),
            subresource: None,
            patch: json!({
                "metadata": {"annotations": {BIND_COMPLETED: "yes", BOUND_BY_CONTROLLER: "yes",
                                             STORAGE_PROVISIONER: PROVISIONER}},
                "spec": {"volumeName": pv_name},
            }),
        });
        // Requeued by the claim's own change; the status follows then.
        return plan;
    }
    let volume = bound_volume.unwrap_or_default();
    let Some(pv) = volumes
        .iter()
        .find(|pv| pv.metadata.name.as_deref() == Some(volume.as_str()))
    else {
        return plan;
    };
    if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        plan.push(Action::Patch {
            resource: Resource::PersistentVolumes,
            namespace: None,
            name: volume.clone(),
            subresource: Some("status"),
            patch: json!({"status": {"phase": "Bound"}}),
        });
    }
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase != Some("Bound") {
        let pv_spec = pv.spec.clone().unwrap_or_default();
        plan.push(Action::Patch {
            resource: Resource::PersistentVolumeClaims,
            namespace: Some(namespace.into()),
            name: name.into(),
            subresource: Some("status"),
            patch: json!({"status": {"phase": "Bound",
                "accessModes": pv_spec.access_modes,
                "capacity": serde_json::to_value(&pv_spec.capacity).unwrap_or(Value::Null)}}),
        });
    }
    plan
}

/// The pvc-protection controller's decision for one claim: once it is
/// being deleted and no running pod of its namespace uses it (pods that
/// finished do not count), its protection finalizer goes.
pub fn reconcile_pvc_protection(claim: &PersistentVolumeClaim, pods: &[&Pod]) -> Plan {
    let mut plan = Plan::default();
    let finalizer = api::admission::PVC_PROTECTION_FINALIZER;
    let finalizers = claim.metadata.finalizers.clone().unwrap_or_default();
    if claim.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == finalizer) {
        return plan;
    }
    let name = claim.metadata.name.clone().unwrap_or_default();
    let in_use = pods.iter().any(|p| {
        let finished = matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        !finished
            && p.spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .any(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name == name)
                })
    });
    if in_use {
        return plan;
    }
    let mut object = claim.clone();
    object.metadata.finalizers = Some(finalizers.into_iter().filter(|f| f != finalizer).collect());
    plan.push(Action::Update {
        resource: Resource::PersistentVolumeClaims,
        namespace: claim.metadata.namespace.clone(),
        name,
        object: serde_json::to_value(&object).unwrap_or_default(),
    });
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_in_use_keeps_its_protection() {
        let claim = |deleting: bool| -> PersistentVolumeClaim {
            serde_json::from_value(json!({"metadata": {"name": "c", "namespace": "default",
                "finalizers": ["kubernetes.io/pvc-protection", "other"],
                "deletionTimestamp": if deleting { json!("2026-01-01T00:00:00Z") } else { Value::Null }}}))
            .unwrap()
        };
        let pod = |claim: &str, phase: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"},
                "spec": {"containers": [], "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]},
                "status": {"phase": phase}}))
            .unwrap()
        };
        let removes = |claim: &PersistentVolumeClaim, pods: &[&Pod]| -> Option<Value> {
            match reconcile_pvc_protection(claim, pods).actions.as_slice() {
                [] => None,
                [Action::Update { object, .. }] => Some(object["metadata"]["finalizers"].clone()),
                other => panic!("{other:?}"),
            }
        };
        let running = pod("c", "Running");
        assert_eq!(removes(&claim(false), &[]), None, "not being deleted");
        assert_eq!(removes(&claim(true), &[&running]), None, "in use");
        assert_eq!(
            removes(&claim(true), &[&pod("c", "Succeeded")]),
            Some(json!(["other"]))
        );
        assert_eq!(
            removes(&claim(true), &[&pod("d", "Running")]),
            Some(json!(["other"]))
        );
    }

    fn claim(
        annotations: Value,
        volume: Option<&str>,
        phase: Option<&str>,
    ) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "www-web-0", "namespace": "default", "uid": "u1", "annotations": annotations},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                     "resources": {"requests": {"storage": "1Mi"}}, "volumeName": volume},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    fn class(provisioner: &str) -> StorageClass {
        serde_json::from_value(
            json!({"metadata": {"name": "local-path"}, "provisioner": provisioner,
            "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}),
        )
        .unwrap()
    }

    fn pv(claim_uid: &str, phase: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": "pvc-u1", "annotations": {PROVISIONED_BY: PROVISIONER}},
            "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"],
                     "claimRef": {"namespace": "default", "name": "www-web-0", "uid": claim_uid}},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    /// One line per action: `verb resource name [detail]`.
    fn check(
        claim: Option<&PersistentVolumeClaim>,
        class: Option<&StorageClass>,
        volumes: &[&PersistentVolume],
        expect: &[&str],
    ) {
        let plan = reconcile_local_path(
            "default",
            "www-web-0",
            claim,
            class,
            volumes,
            Path::new("/data/storage"),
        );
        let got: Vec<String> = plan
            .actions
            .iter()
            .map(|a| match a {
                Action::Create {
                    resource, object, ..
                } => format!(
                    "create {resource:?} {} {} node={}",
                    object["metadata"]["name"].as_str().unwrap(),
                    object["spec"]["hostPath"]["path"].as_str().unwrap(),
                    object["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
                        ["matchExpressions"][0]["values"][0]
                        .as_str()
                        .unwrap()
                ),
                Action::Patch {
                    resource,
                    name,
                    subresource,
                    patch,
                    ..
                } => {
                    format!(
                        "patch {resource:?} {name} {} {patch}",
                        subresource.unwrap_or("-")
                    )
                }
                Action::Event { reason, .. } => format!("event {reason}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn provisions_binds_and_releases() {
        let ours = class(PROVISIONER);
        let other = class("example.com/nfs");
        let selected = json!({SELECTED_NODE: "node-a"});
        check(
            Some(&claim(json!({}), None, Some("Pending"))),
            Some(&ours),
            &[],
            &[],
        );
        check(
            Some(&claim(selected.clone(), None, Some("Pending"))),
            Some(&other),
            &[],
            &[],
        );
        check(
            Some(&claim(selected.clone(), None, Some("Pending"))),
            Some(&ours),
            &[],
            &[
                "create PersistentVolumes pvc-u1 /data/storage/pvc-u1_default_www-web-0 node=node-a",
                "event ProvisioningSucceeded",
                "patch PersistentVolumeClaims www-web-0 - {\"metadata\":{\"annotations\":{\"pv.kubernetes.io/bind-completed\":\"yes\",\"pv.kubernetes.io/bound-by-controller\":\"yes\",\"volume.kubernetes.io/storage-provisioner\":\"drover.dev/local-path\"}},\"spec\":{\"volumeName\":\"pvc-u1\"}}",
            ],
        );
        let made = pv("u1", "Pending");
        check(
            Some(&claim(selected.clone(), Some("pvc-u1"), Some("Pending"))),
            Some(&ours),
            &[&made],
            &[
                "patch PersistentVolumes pvc-u1 status {\"status\":{\"phase\":\"Bound\"}}",
                "patch PersistentVolumeClaims www-web-0 status {\"status\":{\"phase\":\"Bound\",\"accessModes\":[\"ReadWriteOnce\"],\"capacity\":{\"storage\":\"1Mi\"}}}",
            ],
        );
        let bound = pv("u1", "Bound");
        check(
            Some(&claim(selected.clone(), Some("pvc-u1"), Some("Bound"))),
            Some(&ours),
            &[&bound],
            &[],
        );
        // The claim is gone: its volume is released (once), for the node
        // agent to delete with its directory.
        check(
            None,
            Some(&ours),
            &[&bound],
            &["patch PersistentVolumes pvc-u1 status {\"status\":{\"phase\":\"Released\"}}"],
        );
        // A claim being deleted (its pvc-protection finalizer still on,
        // a pod still using it) keeps its volume: releasing it now would
        // let the node delete the data under the running pod.
        let mut deleting = claim(selected, Some("pvc-u1"), Some("Bound"));
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        check(Some(&deleting), Some(&ours), &[&bound], &[]);
        let released = pv("u1", "Released");
        check(None, Some(&ours), &[&released], &[]);
        // A new claim of the same name does not adopt the old volume.
        let newer: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "www-web-0", "namespace": "default", "uid": "u2"},
            "spec": {"storageClassName": "local-path"}}))
        .unwrap();
        check(
            Some(&newer),
            Some(&ours),
            &[&bound],
            &["patch PersistentVolumes pvc-u1 status {\"status\":{\"phase\":\"Released\"}}"],
        );
    }
}
