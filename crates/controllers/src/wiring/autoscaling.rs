//! The HorizontalPodAutoscaler controller as the runtime runs it: keyed by
//! HPA, reconciled when its spec changes and every [`hpa::SYNC_PERIOD`]
//! (the plan's requeue), with the target's scale read from the caches and
//! pod usage from a [`MetricsSource`]. It keeps each HPA's
//! [`HpaHistory`] between reconciles, and keeps a reconcile's new history
//! only once its plan was applied (Kubernetes records scale events only
//! after the scale update succeeded).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::{Client, Gvr};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::hpa::{self, HpaHistory, PodMetrics, PodUsage, Scale};
use crate::pods::format_label_selector;
use crate::runtime::{AnyObject, Caches, Controller, ObjectKey};
use crate::{Plan, Resource};

/// Per-pod resource usage of one namespace, as the resource metrics API
/// (`metrics.k8s.io`) serves it. Empty when nothing is known, which the
/// HPA reports as "no metrics returned from resource metrics API".
pub trait MetricsSource: Send + Sync {
    fn pod_metrics(&self, namespace: &str) -> PodMetrics;
}

/// No metrics at all.
pub struct NoMetrics;

impl MetricsSource for NoMetrics {
    fn pod_metrics(&self, _namespace: &str) -> PodMetrics {
        PodMetrics::default()
    }
}

/// Reads `metrics.k8s.io/v1beta1` PodMetrics through the API, as
/// kube-controller-manager does: [`ApiMetrics::run`] polls the namespaces
/// that were asked for, every sync period; [`MetricsSource::pod_metrics`]
/// answers from the last poll.
pub struct ApiMetrics {
    latest: Mutex<BTreeMap<String, PodMetrics>>,
    period: Duration,
}

impl ApiMetrics {
    pub fn new() -> Arc<ApiMetrics> {
        Arc::new(ApiMetrics {
            latest: Mutex::new(BTreeMap::new()),
            period: hpa::SYNC_PERIOD,
        })
    }

    fn namespaces(&self) -> Vec<String> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Polls until dropped (run it with the controllers, under leadership).
    pub async fn run(self: Arc<Self>, client: Client) {
        let gvr = Gvr::new("metrics.k8s.io", "v1beta1", "pods");
        loop {
            for namespace in self.namespaces() {
                let metrics = match client.list(gvr, Some(&namespace), None, None).await {
                    Ok(list) => parse_pod_metrics(&list.items),
                    Err(e) => {
                        tracing::debug!("metrics for {namespace}: {e}");
                        PodMetrics::default()
                    }
                };
                self.latest
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(namespace, metrics);
            }
            tokio::time::sleep(self.period.min(Duration::from_secs(5))).await;
        }
    }
}

impl MetricsSource for ApiMetrics {
    fn pod_metrics(&self, namespace: &str) -> PodMetrics {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(namespace.to_string())
            .or_default()
            .clone()
    }
}

/// `PodMetrics` items (metrics.k8s.io/v1beta1) → usage per pod, summed
/// over containers.
pub fn parse_pod_metrics(items: &[Value]) -> PodMetrics {
    let mut out = PodMetrics::default();
    for item in items {
        let Some(name) = item.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        let Some(timestamp) = item
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        else {
            continue;
        };
        let window = item
            .get("window")
            .and_then(Value::as_str)
            .and_then(|w| w.parse::<jiff::SignedDuration>().ok())
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or(Duration::from_secs(30));
        let mut cpu = None;
        let mut memory = None;
        for container in item
            .get("containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let usage = |r: &str, milli: bool| {
                container
                    .pointer(&format!("/usage/{r}"))
                    .and_then(Value::as_str)
                    .and_then(|q| {
                        if milli {
                            scheduler::quantity::parse_milli_value(q).ok()
                        } else {
                            scheduler::quantity::parse_value(q).ok()
                        }
                    })
            };
            if let Some(c) = usage("cpu", true) {
                cpu = Some(cpu.unwrap_or(0) + c);
            }
            if let Some(m) = usage("memory", false) {
                memory = Some(memory.unwrap_or(0) + m);
            }
        }
        out.pods.insert(
            name.to_string(),
            PodUsage {
                cpu_milli: cpu,
                memory_bytes: memory,
                timestamp,
                window,
            },
        );
    }
    out
}

pub struct HpaController {
    metrics: Arc<dyn MetricsSource>,
    history: Mutex<BTreeMap<ObjectKey, HpaHistory>>,
    /// The history of the last reconcile, kept once its plan is applied.
    pending: Mutex<BTreeMap<ObjectKey, HpaHistory>>,
}

impl HpaController {
    pub fn new(metrics: Arc<dyn MetricsSource>) -> HpaController {
        HpaController {
            metrics,
            history: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(BTreeMap::new()),
        }
    }
}

/// The `scale` subresource of the HPA's target, from the caches.
fn target_scale(caches: &Caches, namespace: &str, hpa: &HorizontalPodAutoscaler) -> Option<Scale> {
    let target = &hpa.spec.as_ref()?.scale_target_ref;
    let group = target
        .api_version
        .as_deref()
        .and_then(|v| v.rsplit_once('/'))
        .map(|(g, _)| g)
        .unwrap_or("");
    let key = ObjectKey::new(namespace, &target.name);
    let (replicas, selector) = match (group, target.kind.as_str()) {
        ("apps", "Deployment") => {
            let d = caches.deployments.get(&key)?;
            let spec = d.spec.as_ref()?;
            (spec.replicas, format_label_selector(&spec.selector))
        }
        ("apps", "ReplicaSet") => {
            let rs = caches.replica_sets.get(&key)?;
            let spec = rs.spec.as_ref()?;
            (spec.replicas, format_label_selector(&spec.selector))
        }
        ("apps", "StatefulSet") => {
            let s = caches.stateful_sets.get(&key)?;
            let spec = s.spec.as_ref()?;
            (spec.replicas, format_label_selector(&spec.selector))
        }
        ("", "ReplicationController") => {
            let rc = caches.replication_controllers.get(&key)?;
            let selector = crate::replicaset::replication_controller_selector(&rc);
            (
                rc.spec.as_ref().and_then(|s| s.replicas),
                format_label_selector(&selector),
            )
        }
        _ => return None,
    };
    Some(Scale {
        replicas: replicas.unwrap_or(1),
        selector,
    })
}

impl Controller for HpaController {
    fn name(&self) -> &'static str {
        "horizontal-pod-autoscaler"
    }
    fn reads(&self) -> &'static [Resource] {
        &[
            Resource::HorizontalPodAutoscalers,
            Resource::Pods,
            Resource::Deployments,
            Resource::ReplicaSets,
            Resource::StatefulSets,
            Resource::ReplicationControllers,
        ]
    }
    fn keys_for(&self, _caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            AnyObject::HorizontalPodAutoscalers(h) => vec![ObjectKey::of(&h.metadata)],
            _ => Vec::new(),
        }
    }
    fn keys_for_change(
        &self,
        caches: &Caches,
        old: Option<&AnyObject>,
        new: Option<&AnyObject>,
    ) -> Vec<ObjectKey> {
        match (old, new) {
            // Its own status writes do not make an HPA sync again before
            // its period (Kubernetes rate-limits HPA keys to the period).
            (
                Some(AnyObject::HorizontalPodAutoscalers(a)),
                Some(AnyObject::HorizontalPodAutoscalers(b)),
            ) if a.spec == b.spec && a.metadata.labels == b.metadata.labels => Vec::new(),
            (_, Some(object)) | (Some(object), None) => self.keys_for(caches, object),
            (None, None) => Vec::new(),
        }
    }
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey> {
        super::keys_of(&caches.horizontal_pod_autoscalers)
    }
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, now: jiff::Timestamp) -> Plan {
        let Some(hpa) = caches.horizontal_pod_autoscalers.get(key) else {
            self.history
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key);
            return Plan::default();
        };
        let scale = target_scale(caches, &key.namespace, &hpa);
        let pods = caches.pods.list_namespace(&key.namespace);
        let pods: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let metrics = self.metrics.pod_metrics(&key.namespace);
        let history = self
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
            .unwrap_or_default();
        let (plan, next) = hpa::reconcile_hpa(&hpa, scale.as_ref(), &pods, &metrics, &history, now);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), next);
        plan
    }
    fn applied(&self, key: &ObjectKey, ok: bool) {
        let next = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        if let (true, Some(next)) = (ok, next) {
            self.history
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_metrics_sum_containers() {
        let items = vec![
            json!({
                "metadata": {"name": "web-1", "namespace": "default"},
                "timestamp": "2026-12-03T10:00:00Z",
                "window": "15s",
                "containers": [
                    {"name": "a", "usage": {"cpu": "250m", "memory": "64Mi"}},
                    {"name": "b", "usage": {"cpu": "500000000n", "memory": "1Mi"}},
                ],
            }),
            json!({"metadata": {"name": "no-timestamp"}, "containers": []}),
        ];
        let metrics = parse_pod_metrics(&items);
        assert_eq!(metrics.pods.len(), 1, "{metrics:?}");
        let usage = &metrics.pods["web-1"];
        assert_eq!(usage.cpu_milli, Some(750));
        assert_eq!(usage.memory_bytes, Some(65 * 1024 * 1024));
        assert_eq!(usage.window, Duration::from_secs(15));
    }
}
