//! The plan a reconcile function returns: what to write, as plain data, so
//! that reconcile functions are tested by comparing plans, with no server.

use std::time::Duration;

use serde_json::Value;

/// The kinds controllers write, with their REST coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Pods,
    Services,
    Events,
    Endpoints,
    EndpointSlices,
    ReplicaSets,
    ReplicationControllers,
    Deployments,
    StatefulSets,
    DaemonSets,
    ControllerRevisions,
    Jobs,
    CronJobs,
    PersistentVolumeClaims,
    Nodes,
    Leases,
    HorizontalPodAutoscalers,
    ServiceAccounts,
    PersistentVolumes,
    StorageClasses,
}

impl Resource {
    /// `(group, version, plural)`; the core group is `""`.
    pub fn gvr(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Resource::Pods => ("", "v1", "pods"),
            Resource::Services => ("", "v1", "services"),
            Resource::Events => ("", "v1", "events"),
            Resource::Endpoints => ("", "v1", "endpoints"),
            Resource::EndpointSlices => ("discovery.k8s.io", "v1", "endpointslices"),
            Resource::ReplicaSets => ("apps", "v1", "replicasets"),
            Resource::ReplicationControllers => ("", "v1", "replicationcontrollers"),
            Resource::Deployments => ("apps", "v1", "deployments"),
            Resource::StatefulSets => ("apps", "v1", "statefulsets"),
            Resource::DaemonSets => ("apps", "v1", "daemonsets"),
            Resource::ControllerRevisions => ("apps", "v1", "controllerrevisions"),
            Resource::Jobs => ("batch", "v1", "jobs"),
            Resource::CronJobs => ("batch", "v1", "cronjobs"),
            Resource::PersistentVolumeClaims => ("", "v1", "persistentvolumeclaims"),
            Resource::Nodes => ("", "v1", "nodes"),
            Resource::Leases => ("coordination.k8s.io", "v1", "leases"),
            Resource::HorizontalPodAutoscalers => ("autoscaling", "v2", "horizontalpodautoscalers"),
            Resource::ServiceAccounts => ("", "v1", "serviceaccounts"),
            Resource::PersistentVolumes => ("", "v1", "persistentvolumes"),
            Resource::StorageClasses => ("storage.k8s.io", "v1", "storageclasses"),
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Resource::Nodes | Resource::PersistentVolumes | Resource::StorageClasses
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// One write. Objects are JSON so that plans compare and print simply.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// POST; `object.metadata.name` or `generateName` names it.
    Create {
        resource: Resource,
        namespace: Option<String>,
        object: Value,
    },
    /// PUT of the whole object; it carries the `resourceVersion` it was read
    /// at, so a concurrent change makes it fail with 409 and the controller
    /// reconciles again from fresh state.
    Update {
        resource: Resource,
        namespace: Option<String>,
        name: String,
        object: Value,
    },
    /// PUT to the `status` subresource, with the same optimistic concurrency.
    UpdateStatus {
        resource: Resource,
        namespace: Option<String>,
        name: String,
        object: Value,
    },
    /// JSON merge patch (RFC 7386) on the object (`subresource: None`) or a
    /// subresource such as `status`.
    Patch {
        resource: Resource,
        namespace: Option<String>,
        name: String,
        subresource: Option<&'static str>,
        patch: Value,
    },
    /// DELETE, with a uid precondition where the controller decided on a
    /// specific incarnation of the object.
    Delete {
        resource: Resource,
        namespace: Option<String>,
        name: String,
        uid: Option<String>,
        /// `Background`, `Foreground` or `Orphan`; `None` is the server default.
        propagation: Option<&'static str>,
    },
    /// DELETE with `gracePeriodSeconds=0` and a uid precondition: what the
    /// kubelet sends once a terminating pod's containers are gone, and what
    /// pod garbage collection sends for pods on nodes that no longer exist.
    DeleteNow {
        resource: Resource,
        namespace: Option<String>,
        name: String,
        uid: Option<String>,
    },
    /// POST to a subresource, e.g. `pods/NAME/binding`.
    CreateSubresource {
        resource: Resource,
        namespace: Option<String>,
        name: String,
        subresource: &'static str,
        object: Value,
    },
    /// A core/v1 Event about `involved` (an object reference as JSON:
    /// apiVersion, kind, namespace, name, uid).
    Event {
        involved: Value,
        event_type: EventType,
        reason: String,
        message: String,
    },
}

/// What one reconcile decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Reconcile again after this long even if nothing changes (deadlines,
    /// back-off, minReadySeconds).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    pub fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// Keeps the earliest requested requeue.
    pub fn requeue(&mut self, after: Duration) {
        self.requeue_after = Some(match self.requeue_after {
            Some(d) => d.min(after),
            None => after,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.requeue_after.is_none()
    }
}

/// An object reference for [`Action::Event`] from an object's JSON form.
pub fn object_reference(
    api_version: &str,
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Value {
    serde_json::json!({
        "apiVersion": api_version,
        "kind": kind,
        "namespace": meta.namespace,
        "name": meta.name,
        "uid": meta.uid,
        "resourceVersion": meta.resource_version,
    })
}
