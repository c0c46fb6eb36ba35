//! Pod garbage collection, as kube-controller-manager's podgc does it for
//! orphaned pods: a pod bound to a node that no longer exists can never be
//! finished by a kubelet, so it is deleted at once (grace period 0), which
//! lets its owner replace it elsewhere.

use k8s_openapi::api::core::v1::Pod;

use crate::plan::{Action, EventType, Plan, Resource};

/// The plan for one pod given whether the node it is bound to exists.
pub fn reconcile_pod_gc(pod: &Pod, node_exists: bool) -> Plan {
    let mut plan = Plan::default();
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("");
    if node.is_empty() || node_exists {
        return plan;
    }
    let meta = &pod.metadata;
    plan.push(Action::Event {
        involved: serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": meta.namespace,
            "name": meta.name,
            "uid": meta.uid,
        }),
        event_type: EventType::Normal,
        reason: "PodGCOrphaned".into(),
        message: format!("Deleting orphaned pod: node {node} no longer exists"),
    });
    plan.push(Action::DeleteNow {
        resource: Resource::Pods,
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone(),
    });
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(node: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(str::to_string),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn only_pods_on_vanished_nodes_are_deleted() {
        assert!(
            reconcile_pod_gc(&pod(None), false).is_empty(),
            "unscheduled"
        );
        assert!(
            reconcile_pod_gc(&pod(Some("n1")), true).is_empty(),
            "node exists"
        );
        let plan = reconcile_pod_gc(&pod(Some("n1")), false);
        assert_eq!(
            plan.actions.last(),
            Some(&Action::DeleteNow {
                resource: Resource::Pods,
                namespace: Some("default".into()),
                name: "p".into(),
                uid: Some("u1".into()),
            })
        );
    }
}
