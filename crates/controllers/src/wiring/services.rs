//! The Endpoints and EndpointSlice controllers as the runtime runs them:
//! keyed by Service; a pod change concerns every Service in its namespace
//! whose selector matches the pod (before or after the change), an
//! Endpoints or EndpointSlice change concerns the Service it belongs to (so
//! hand edits are reverted and leftovers of deleted Services removed).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};

use super::keys_of;
use crate::endpoints::{self, SERVICE_NAME_LABEL};
use crate::runtime::{AnyObject, Caches, Controller, ObjectKey};
use crate::{Plan, Resource};

/// Whether `service` has a non-empty selector that matches `labels`.
fn selects(service: &Service, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The Services of the pod's namespace that select it.
fn services_of(caches: &Caches, pod: &Pod) -> Vec<ObjectKey> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    caches
        .services
        .list_namespace(namespace)
        .iter()
        .filter(|s| selects(s, pod.metadata.labels.as_ref()))
        .map(|s| ObjectKey::of(&s.metadata))
        .collect()
}

pub struct EndpointsController;

impl Controller for EndpointsController {
    fn name(&self) -> &'static str {
        "endpoint"
    }
    fn reads(&self) -> &'static [Resource] {
        &[Resource::Services, Resource::Pods, Resource::Endpoints]
    }
    fn keys_for(&self, caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::Services(s) => vec![ObjectKey::of(&s.metadata)],
            AnyObject::Endpoints(e) => vec![ObjectKey::of(&e.metadata)],
            AnyObject::Pods(p) => services_of(caches, p),
            _ => Vec::new(),
        }
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        let mut keys = keys_of(&caches.services);
        keys.extend(keys_of(&caches.endpoints));
        keys.sort();
        keys.dedup();
        keys
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, now: jiff::Timestamp) -> Plan {
        let current = caches.endpoints.get(key);
        match caches.services.get(key) {
            Some(service) => {
                let pods = caches.pods.list_namespace(&key.namespace);
                let pods: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
                endpoints::reconcile_endpoints(&service, &pods, current.as_deref(), now)
            }
            None => current
                .map(|c| endpoints::reconcile_endpoints_without_service(&c))
                .unwrap_or_default(),
        }
    }
}

pub struct EndpointSliceController;

impl Controller for EndpointSliceController {
    fn name(&self) -> &'static str {
        "endpointslice"
    }
    fn reads(&self) -> &'static [Resource] {
        &[
            Resource::Services,
            Resource::Pods,
            Resource::EndpointSlices,
            Resource::Nodes,
        ]
    }
    fn keys_for(&self, caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::Services(s) => vec![ObjectKey::of(&s.metadata)],
            AnyObject::EndpointSlices(e) => e
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(|service| {
                    vec![ObjectKey::new(
                        e.metadata.namespace.as_deref().unwrap_or_default(),
                        service,
                    )]
                })
                .unwrap_or_default(),
            AnyObject::Pods(p) => services_of(caches, p),
            // Node changes (heartbeats) are frequent and only the zone label
            // matters; a pod on a node not yet cached is retried by the plan.
            _ => Vec::new(),
        }
    }
    fn keys_for_change(
        &self,
        caches: &Caches,
        old: Option<&AnyObject>,
        new: Option<&AnyObject>,
    ) -> Vec<ObjectKey> {
        if let (Some(AnyObject::Nodes(a)), Some(AnyObject::Nodes(b))) = (old, new) {
            let zone = |n: &k8s_openapi::api::core::v1::Node| {
                n.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(endpoints::ZONE_LABEL))
                    .cloned()
            };
            if zone(a) != zone(b) {
                return keys_of(&caches.services);
            }
            return Vec::new();
        }
        let mut keys = Vec::new();
        for object in [old, new].into_iter().flatten() {
            keys.extend(self.keys_for(caches, object));
        }
        keys
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        keys_of(&caches.services)
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, now: jiff::Timestamp) -> Plan {
        let Some(service) = caches.services.get(key) else {
            // Slices of a deleted Service go with it through their owner
            // reference (garbage collector).
            return Plan::default();
        };
        let pods = caches.pods.list_namespace(&key.namespace);
        let pods: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let nodes = caches.nodes.list();
        let nodes: Vec<_> = nodes.iter().map(|n| n.as_ref()).collect();
        let slices = caches.endpoint_slices.list_namespace(&key.namespace);
        let slices: Vec<_> = slices.iter().map(|s| s.as_ref()).collect();
        endpoints::reconcile_endpoint_slices(&service, &pods, &nodes, &slices, now)
    }
}
