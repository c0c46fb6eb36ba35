//! The built-in controllers as the runtime runs them: for each, which keys
//! an object change concerns (its own objects, the owner named by a
//! controller reference, or — for orphans — every owner whose selector
//! matches, so it can adopt), and how its reconcile function is fed from the
//! caches.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::Metadata;

use crate::pods::{controller_of, selector_matches};
use crate::replicaset::replication_controller_selector;
use crate::runtime::{AnyObject, Cache, Caches, Controller, ObjectKey};
use crate::{Plan, Resource};

pub mod autoscaling;
pub mod nodes;
pub mod services;

pub use autoscaling::{ApiMetrics, HpaController, MetricsSource, NoMetrics};
pub use nodes::{NodeLifecycleController, TaintEvictionController, NODE_LEASE_NAMESPACE};
pub use services::{EndpointSliceController, EndpointsController};

/// What the built-in controllers are configured with.
#[derive(Clone)]
pub struct Wiring {
    pub node_lifecycle: crate::nodelifecycle::NodeLifecycleConfig,
    /// Where the HPA reads pod usage.
    pub metrics: Arc<dyn MetricsSource>,
    /// Where the local-path provisioner puts volumes on the nodes
    /// (`DATA/storage` of the server).
    pub local_path_root: std::path::PathBuf,
}

impl Default for Wiring {
    fn default() -> Self {
        Wiring {
            node_lifecycle: Default::default(),
            metrics: Arc::new(NoMetrics),
            local_path_root: "/var/lib/drover/storage".into(),
        }
    }
}

/// Every built-in controller, with default configuration.
pub fn all() -> Vec<Arc<dyn Controller>> {
    all_with(&Wiring::default())
}

/// Every built-in controller.
pub fn all_with(wiring: &Wiring) -> Vec<Arc<dyn Controller>> {
    vec![
        Arc::new(ReplicaSetController),
        Arc::new(ReplicationControllerController),
        Arc::new(DeploymentController),
        Arc::new(JobController),
        Arc::new(CronJobController),
        Arc::new(DaemonSetController),
        Arc::new(StatefulSetController),
        Arc::new(PodGcController),
        Arc::new(EndpointsController),
        Arc::new(EndpointSliceController),
        Arc::new(NodeLifecycleController::new(wiring.node_lifecycle)),
        Arc::new(TaintEvictionController),
        Arc::new(HpaController::new(wiring.metrics.clone())),
        Arc::new(LocalPathController {
            root: wiring.local_path_root.clone(),
        }),
        Arc::new(PvcProtectionController),
    ]
}

/// The keys of owners of kind `owner_kind` (in `cache`) that `meta`
/// concerns: its controller if it has one, else every owner in its
/// namespace whose selector matches its labels.
fn owner_keys<K: Metadata<Ty = ObjectMeta>>(
    meta: &ObjectMeta,
    owner_kind: &str,
    cache: &Cache<K>,
    selector: impl Fn(&K) -> Option<&LabelSelector>,
) -> Vec<ObjectKey> {
    let namespace = meta.namespace.clone().unwrap_or_default();
    if let Some(owner) = controller_of(meta) {
        return if owner.kind == owner_kind {
            vec![ObjectKey::new(&namespace, &owner.name)]
        } else {
            Vec::new()
        };
    }
    cache
        .list_namespace(&namespace)
        .iter()
        .filter(|o| {
            selector(o).is_some_and(|s| {
                !crate::pods::selector_is_empty(s) && selector_matches(s, meta.labels.as_ref())
            })
        })
        .map(|o| ObjectKey::of(o.metadata()))
        .collect()
}

fn keys_of<K: Metadata<Ty = ObjectMeta>>(cache: &Cache<K>) -> Vec<ObjectKey> {
    cache
        .list()
        .iter()
        .map(|o| ObjectKey::of(o.metadata()))
        .collect()
}

/// Objects of `cache` in `namespace` that `owner_uid` controls or that
/// `selector` matches (candidates for adoption).
fn owned_or_matching<'a, K: Metadata<Ty = ObjectMeta>>(
    objects: &'a [Arc<K>],
    owner_uid: &str,
    selector: Option<&LabelSelector>,
) -> Vec<&'a K> {
    objects
        .iter()
        .filter(|o| {
            let meta = o.metadata();
            match controller_of(meta) {
                Some(r) => r.uid == owner_uid,
                None => selector.is_some_and(|s| {
                    !crate::pods::selector_is_empty(s) && selector_matches(s, meta.labels.as_ref())
                }),
            }
        })
        .map(|o| o.as_ref())
        .collect()
}

/// The objects of `cache` in `namespace` that `owner_uid` controls, and
/// those without a controller (candidates for adoption), in namespace/name
/// order: what [`owned_or_matching`] chooses from, found through the cache's
/// controller index instead of a scan of the whole namespace.
fn controlled_or_orphaned<K: Metadata<Ty = ObjectMeta>>(
    cache: &Cache<K>,
    namespace: &str,
    owner_uid: &str,
) -> Vec<Arc<K>> {
    let mut objects: Vec<Arc<K>> = cache
        .controlled_by(owner_uid)
        .into_iter()
        .filter(|o| o.metadata().namespace.as_deref().unwrap_or("") == namespace)
        .collect();
    objects.extend(cache.orphans(namespace));
    sort_by_key(&mut objects);
    objects
}

fn sort_by_key<K: Metadata<Ty = ObjectMeta>>(objects: &mut [Arc<K>]) {
    objects.sort_by(|a, b| {
        let (a, b) = (a.metadata(), b.metadata());
        (a.namespace.as_deref(), a.name.as_deref())
            .cmp(&(b.namespace.as_deref(), b.name.as_deref()))
    });
}

fn uid(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or("")
}

pub struct ReplicaSetController;

impl Controller for ReplicaSetController {
    fn name(&self) -> &'static str {
        "replicaset"
    }
    fn reads(&self) -> &'static [Resource] {
        &[Resource::ReplicaSets, Resource::Pods]
    }
    fn keys_for(&self, caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::ReplicaSets(rs) => vec![ObjectKey::of(&rs.metadata)],
            AnyObject::Pods(pod) => {
                owner_keys(&pod.metadata, "ReplicaSet", &caches.replica_sets, |rs| {
                    rs.spec.as_ref().map(|s| &s.selector)
                })
            }
            _ => Vec::new(),
        }
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        keys_of(&caches.replica_sets)
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, now: jiff::Timestamp) -> Plan {
        let Some(rs) = caches.replica_sets.get(key) else {
            return Plan::default();
        };
        let pods = controlled_or_orphaned(&caches.pods, &key.namespace, uid(&rs.metadata));
        let selector = rs.spec.as_ref().map(|s| &s.selector);
        let pods: Vec<&Pod> = owned_or_matching(&pods, uid(&rs.metadata), selector);
        crate::replicaset::reconcile_replicaset(&rs, &pods, now)
    }
}

pub struct ReplicationControllerController;

impl Controller for ReplicationControllerController {
    fn name(&self) -> &'static str {
        "replicationcontroller"
    }
    fn reads(&self) -> &'static [Resource] {
        &[Resource::ReplicationControllers, Resource::Pods]
    }
    fn keys_for(&self, caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::ReplicationControllers(rc) => vec![ObjectKey::of(&rc.metadata)],
            AnyObject::Pods(pod) => {
                let meta = &pod.metadata;
                let namespace = meta.namespace.clone().unwrap_or_default();
                if let Some(owner) = controller_of(meta) {
                    return if owner.kind == "ReplicationController" {
                        vec![ObjectKey::new(&namespace, &owner.name)]
                    } else {
                        Vec::new()
                    };
                }
                caches
                    .replication_controllers
                    .list_namespace(&namespace)
                    .iter()
                    .filter(|rc| {
                        let s = replication_controller_selector(rc);
                        !crate::pods::selector_is_empty(&s)
                            && selector_matches(&s, meta.labels.as_ref())
                    })
                    .map(|rc| ObjectKey::of(&rc.metadata))
                    .collect()
            }
            _ => Vec::new(),
        }
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        keys_of(&caches.replication_controllers)
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, now: jiff::Timestamp) -> Plan {
        let Some(rc) = caches.replication_controllers.get(key) else {
            return Plan::default();
        };
        let selector = replication_controller_selector(&rc);
        let pods = controlled_or_orphaned(&caches.pods, &key.namespace, uid(&rc.metadata));
        let pods: Vec<&Pod> = owned_or_matching(&pods, uid(&rc.metadata), Some(&selector));
        crate::replicaset::reconcile_replication_controller(&rc, &pods, now)
    }
}

pub struct DeploymentController;

impl Controller for DeploymentController {
    fn name(&self) -> &'static str {
        "deployment"
    }
    fn reads(&self) -> &'static [Resource] {
        &[Resource::Deployments, Resource::ReplicaSets, Resource::Pods]
    }
    fn keys_for(&self, caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::Deployments(d) => vec![ObjectKey::of(&d.metadata)],
            AnyObject::ReplicaSets(rs) => {
                owner_keys(&rs.metadata, "Deployment", &caches.deployments, |d| {
                    d.spec.as_ref().map(|s| &s.selector)
                })
            }
            // Recreate waits for old pods to be gone: a pod's deletion concerns
            // the deployment that owns its ReplicaSet.
            AnyObject::Pods(pod) => {
                let Some(owner) = controller_of(&pod.metadata) else {
                    return Vec::new();
                };
                if owner.kind != "ReplicaSet" {
                    return Vec::new();
                }
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                caches
                    .replica_sets
                    .get(&ObjectKey::new(&namespace, &owner.name))
                    .and_then(|rs| controller_of(&rs.metadata).cloned())
                    .filter(|o| o.kind == "Deployment")
                    .map(|o| vec![ObjectKey::new(&namespace, &o.name)])
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        keys_of(&caches.deployments)
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, now: jiff::Timestamp) -> Plan {
        let Some(d) = caches.deployments.get(key) else {
            return Plan::default();
        };
        let selector = d.spec.as_ref().map(|s| &s.selector);
        let all_rs = caches.replica_sets.list_namespace(&key.namespace);
        let rs = owned_or_matching(&all_rs, uid(&d.metadata), selector);
        // The pods of its ReplicaSets (Recreate waits for the old ones to be
        // gone), through the controller index rather than a scan of every
        // pod in the namespace.
        let mut all_pods: Vec<Arc<Pod>> = rs
            .iter()
            .flat_map(|r| caches.pods.controlled_by(uid(&r.metadata)))
            .filter(|p| p.metadata.namespace.as_deref().unwrap_or("") == key.namespace)
            .collect();
        sort_by_key(&mut all_pods);
        let pods: Vec<&Pod> = all_pods
            .iter()
            .filter(|p| selector.is_some_and(|s| selector_matches(s, p.metadata.labels.as_ref())))
            .map(|p| p.as_ref())
            .collect();
        crate::deployment::reconcile_deployment(&d, &rs, &pods, now)
    }
}

pub struct JobController;

impl Controller for JobController {
    fn name(&self) -> &'static str {
        "job"
    }
    fn reads(&self) -> &'static [Resource] {
        &[Resource::Jobs, Resource::Pods]
    }
    fn keys_for(&self, caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::Jobs(j) => vec![ObjectKey::of(&j.metadata)],
            AnyObject::Pods(pod) => owner_keys(&pod.metadata, "Job", &caches.jobs, |j| {
                j.spec.as_ref().and_then(|s| s.selector.as_ref())
            }),
            _ => Vec::new(),
        }
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        keys_of(&caches.jobs)
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, now: jiff::Timestamp) -> Plan {
        let Some(job) = caches.jobs.get(key) else {
            return Plan::default();
        };
        let selector = job.spec.as_ref().and_then(|s| s.selector.as_ref());
        let all_pods = controlled_or_orphaned(&caches.pods, &key.namespace, uid(&job.metadata));
        let pods = owned_or_matching(&all_pods, uid(&job.metadata), selector);
        crate::job::reconcile_job(&job, &pods, now)
    }
}

pub struct CronJobController;

impl Controller for CronJobController {
    fn name(&self) -> &'static str {
        "cronjob"
    }
    fn reads(&self) -> &'static [Resource] {
        &[Resource::CronJobs, Resource::Jobs]
    }
    fn keys_for(&self, _caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::CronJobs(c) => vec![ObjectKey::of(&c.metadata)],
            AnyObject::Jobs(j) => controller_of(&j.metadata)
                .filter(|o| o.kind == "CronJob")
                .map(|o| {
                    vec![ObjectKey::new(
                        j.metadata.namespace.as_deref().unwrap_or(""),
                        &o.name,
                    )]
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        keys_of(&caches.cron_jobs)
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, now: jiff::Timestamp) -> Plan {
        let Some(cronjob) = caches.cron_jobs.get(key) else {
            return Plan::default();
        };
        let all_jobs = caches.jobs.list_namespace(&key.namespace);
        let jobs = owned_or_matching(&all_jobs, uid(&cronjob.metadata), None);
        crate::cronjob::reconcile_cronjob(&cronjob, &jobs, now)
    }
}

pub struct DaemonSetController;

impl Controller for DaemonSetController {
    fn name(&self) -> &'static str {
        "daemonset"
    }
    fn reads(&self) -> &'static [Resource] {
        &[
            Resource::DaemonSets,
            Resource::Pods,
            Resource::Nodes,
            Resource::ControllerRevisions,
        ]
    }
    fn keys_for(&self, caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::DaemonSets(ds) => vec![ObjectKey::of(&ds.metadata)],
            AnyObject::Pods(pod) => {
                owner_keys(&pod.metadata, "DaemonSet", &caches.daemon_sets, |ds| {
                    ds.spec.as_ref().map(|s| &s.selector)
                })
            }
            AnyObject::ControllerRevisions(r) => controller_of(&r.metadata)
                .filter(|o| o.kind == "DaemonSet")
                .map(|o| {
                    vec![ObjectKey::new(
                        r.metadata.namespace.as_deref().unwrap_or(""),
                        &o.name,
                    )]
                })
                .unwrap_or_default(),
            // A node's labels, taints or existence decide eligibility everywhere.
            AnyObject::Nodes(_) => keys_of(&caches.daemon_sets),
            _ => Vec::new(),
        }
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        keys_of(&caches.daemon_sets)
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, now: jiff::Timestamp) -> Plan {
        let Some(ds) = caches.daemon_sets.get(key) else {
            return Plan::default();
        };
        let nodes = caches.nodes.list();
        let nodes: Vec<_> = nodes.iter().map(|n| n.as_ref()).collect();
        let selector = ds.spec.as_ref().map(|s| &s.selector);
        let all_pods = controlled_or_orphaned(&caches.pods, &key.namespace, uid(&ds.metadata));
        let pods = owned_or_matching(&all_pods, uid(&ds.metadata), selector);
        let all_revisions = caches.controller_revisions.list_namespace(&key.namespace);
        let revisions = owned_or_matching(&all_revisions, uid(&ds.metadata), None);
        crate::daemonset::reconcile_daemonset(&ds, &nodes, &pods, &revisions, now)
    }
}

pub struct StatefulSetController;

impl Controller for StatefulSetController {
    fn name(&self) -> &'static str {
        "statefulset"
    }
    fn reads(&self) -> &'static [Resource] {
        &[
            Resource::StatefulSets,
            Resource::Pods,
            Resource::PersistentVolumeClaims,
            Resource::ControllerRevisions,
        ]
    }
    fn keys_for(&self, caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::StatefulSets(s) => vec![ObjectKey::of(&s.metadata)],
            AnyObject::Pods(pod) => {
                owner_keys(&pod.metadata, "StatefulSet", &caches.stateful_sets, |s| {
                    s.spec.as_ref().map(|s| &s.selector)
                })
            }
            AnyObject::ControllerRevisions(r) => controller_of(&r.metadata)
                .filter(|o| o.kind == "StatefulSet")
                .map(|o| {
                    vec![ObjectKey::new(
                        r.metadata.namespace.as_deref().unwrap_or(""),
                        &o.name,
                    )]
                })
                .unwrap_or_default(),
            AnyObject::PersistentVolumeClaims(pvc) => {
                // Claims are named <template>-<set>-<ordinal>; any set in the
                // namespace whose name appears in the claim's name may own it.
                let namespace = pvc.metadata.namespace.clone().unwrap_or_default();
                let name = pvc.metadata.name.clone().unwrap_or_default();
                caches
                    .stateful_sets
                    .list_namespace(&namespace)
                    .iter()
                    .filter(|s| {
                        s.metadata
                            .name
                            .as_deref()
                            .is_some_and(|n| name.contains(&format!("-{n}-")))
                    })
                    .map(|s| ObjectKey::of(&s.metadata))
                    .collect()
            }
            _ => Vec::new(),
        }
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        keys_of(&caches.stateful_sets)
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, now: jiff::Timestamp) -> Plan {
        let Some(sts) = caches.stateful_sets.get(key) else {
            return Plan::default();
        };
        let selector = sts.spec.as_ref().map(|s| &s.selector);
        let all_pods = controlled_or_orphaned(&caches.pods, &key.namespace, uid(&sts.metadata));
        let pods = owned_or_matching(&all_pods, uid(&sts.metadata), selector);
        let all_pvcs = caches
            .persistent_volume_claims
            .list_namespace(&key.namespace);
        let pvcs: Vec<_> = all_pvcs.iter().map(|p| p.as_ref()).collect();
        let all_revisions = caches.controller_revisions.list_namespace(&key.namespace);
        let revisions = owned_or_matching(&all_revisions, uid(&sts.metadata), None);
        crate::statefulset::reconcile_statefulset(&sts, &pods, &pvcs, &revisions, now)
    }
}

/// The local-path provisioner, keyed by claim (a PersistentVolume's
/// changes concern the claim its `claimRef` names).
pub struct LocalPathController {
    pub root: std::path::PathBuf,
}

impl Controller for LocalPathController {
    fn name(&self) -> &'static str {
        "local-path-provisioner"
    }
    fn reads(&self) -> &'static [Resource] {
        &[
            Resource::PersistentVolumeClaims,
            Resource::PersistentVolumes,
            Resource::StorageClasses,
        ]
    }
    fn keys_for(&self, _caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::PersistentVolumeClaims(c) => vec![ObjectKey::of(&c.metadata)],
            AnyObject::PersistentVolumes(pv) => pv
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .map(|r| {
                    vec![ObjectKey::new(
                        r.namespace.as_deref().unwrap_or_default(),
                        r.name.as_deref().unwrap_or_default(),
                    )]
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        let mut keys = keys_of(&caches.persistent_volume_claims);
        for pv in caches.persistent_volumes.list() {
            if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                keys.push(ObjectKey::new(
                    r.namespace.as_deref().unwrap_or_default(),
                    r.name.as_deref().unwrap_or_default(),
                ));
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, _now: jiff::Timestamp) -> Plan {
        let claim = caches.persistent_volume_claims.get(key);
        let class = claim
            .as_ref()
            .and_then(|c| c.spec.as_ref()?.storage_class_name.clone())
            .and_then(|name| caches.storage_classes.get(&ObjectKey::new("", &name)));
        let all = caches.persistent_volumes.list();
        let volumes: Vec<_> = all.iter().map(|p| p.as_ref()).collect();
        crate::localpath::reconcile_local_path(
            &key.namespace,
            &key.name,
            claim.as_deref(),
            class.as_deref(),
            &volumes,
            &self.root,
        )
    }
}

/// pvc-protection: a claim's finalizer goes once no pod uses it.
pub struct PvcProtectionController;

impl Controller for PvcProtectionController {
    fn name(&self) -> &'static str {
        "pvc-protection"
    }
    fn reads(&self) -> &'static [Resource] {
        &[Resource::PersistentVolumeClaims, Resource::Pods]
    }
    fn keys_for(&self, _caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::PersistentVolumeClaims(c) => vec![ObjectKey::of(&c.metadata)],
            AnyObject::Pods(pod) => {
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                pod.spec
                    .iter()
                    .flat_map(|s| s.volumes.iter().flatten())
                    .filter_map(|v| v.persistent_volume_claim.as_ref())
                    .map(|c| ObjectKey::new(&namespace, &c.claim_name))
                    .collect()
            }
            _ => Vec::new(),
        }
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        keys_of(&caches.persistent_volume_claims)
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, _now: jiff::Timestamp) -> Plan {
        let Some(claim) = caches.persistent_volume_claims.get(key) else {
            return Plan::default();
        };
        let all = caches.pods.list_namespace(&key.namespace);
        let pods: Vec<&Pod> = all.iter().map(|p| p.as_ref()).collect();
        crate::localpath::reconcile_pvc_protection(&claim, &pods)
    }
}

pub struct PodGcController;

impl Controller for PodGcController {
    fn name(&self) -> &'static str {
        "podgc"
    }
    fn reads(&self) -> &'static [Resource] {
        &[Resource::Pods, Resource::Nodes]
    }
    fn keys_for(&self, caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::Pods(p) if p.spec.as_ref().is_some_and(|s| s.node_name.is_some()) => {
                vec![ObjectKey::of(&p.metadata)]
            }
            // A node that disappears orphans every pod bound to it.
            AnyObject::Nodes(n) if caches.nodes.get(&ObjectKey::of(&n.metadata)).is_none() => {
                let node = n.metadata.name.as_deref().unwrap_or("");
                caches
                    .pods
                    .list()
                    .iter()
                    .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
                    .map(|p| ObjectKey::of(&p.metadata))
                    .collect()
            }
            _ => Vec::new(),
        }
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        caches
            .pods
            .list()
            .iter()
            .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
            .map(|p| ObjectKey::of(&p.metadata))
            .collect()
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, _now: jiff::Timestamp) -> Plan {
        let Some(pod) = caches.pods.get(key) else {
            return Plan::default();
        };
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let exists = caches.nodes.get(&ObjectKey::new("", &node)).is_some();
        crate::podgc::reconcile_pod_gc(&pod, exists)
    }
}
