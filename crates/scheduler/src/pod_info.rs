//! A pod with everything the scheduler derives from it computed once: requests,
//! host ports, priority, owner and compiled pod (anti-)affinity terms. Existing pods
//! are parsed when they enter the snapshot, not on every scheduling decision.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, Toleration, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::labels::{Selector, NO_LABELS};
use crate::ports::HostPort;
use crate::resources::{PodRequests, Resources};

/// Owner kinds whose selector kube-scheduler uses for its default spreading.
const SPREAD_OWNER_KINDS: [&str; 3] = ["ReplicaSet", "StatefulSet", "ReplicationController"];

#[derive(Clone, Debug)]
pub(crate) struct PodInfo {
    /// Shared with the informer cache the pod came from, not copied.
    pub(crate) pod: Arc<Pod>,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) requests: Resources,
    pub(crate) non_zero_milli_cpu: i64,
    pub(crate) non_zero_memory: i64,
    pub(crate) host_ports: Vec<HostPort>,
    pub(crate) priority: i32,
    /// `metadata.deletionTimestamp` is set.
    pub(crate) terminating: bool,
    /// The uid of the controlling ReplicaSet, StatefulSet or ReplicationController.
    pub(crate) spread_owner_uid: Option<String>,
    pub(crate) required_affinity: Vec<AffinityTerm>,
    pub(crate) required_anti_affinity: Vec<AffinityTerm>,
    pub(crate) preferred_affinity: Vec<WeightedAffinityTerm>,
    pub(crate) preferred_anti_affinity: Vec<WeightedAffinityTerm>,
}

impl PodInfo {
    pub(crate) fn new(pod: impl Into<Arc<Pod>>) -> PodInfo {
        let pod: Arc<Pod> = pod.into();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let requests = PodRequests::of(spec);
        let host_ports = HostPort::of(spec);
        let priority = spec.and_then(|s| s.priority).unwrap_or(0);
        let spread_owner_uid = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|owner| {
                owner.controller == Some(true) && SPREAD_OWNER_KINDS.contains(&owner.kind.as_str())
            })
            .map(|owner| owner.uid.clone());
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let pod_anti_affinity = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|term| AffinityTerm::new(&namespace, term))
                .collect()
        };
        let preferred =
            |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<WeightedAffinityTerm> {
                terms
                    .into_iter()
                    .flatten()
                    .map(|term| WeightedAffinityTerm {
                        term: AffinityTerm::new(&namespace, &term.pod_affinity_term),
                        weight: i64::from(term.weight),
                    })
                    .collect()
            };
        let required_affinity = required(pod_affinity.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let required_anti_affinity = required(pod_anti_affinity.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let preferred_affinity = preferred(pod_affinity.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let preferred_anti_affinity = preferred(pod_anti_affinity.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        PodInfo {
            terminating: pod.metadata.deletion_timestamp.is_some(),
            namespace,
            name,
            requests: requests.requests,
            non_zero_milli_cpu: requests.non_zero_milli_cpu,
            non_zero_memory: requests.non_zero_memory,
            host_ports,
            priority,
            spread_owner_uid,
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            pod,
        }
    }

    pub(crate) fn labels(&self) -> &BTreeMap<String, String> {
        self.pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    pub(crate) fn tolerations(&self) -> &[Toleration] {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default()
    }

    pub(crate) fn start_time(&self) -> Option<&Time> {
        self.pod.status.as_ref().and_then(|s| s.start_time.as_ref())
    }

    /// Whether the pod has any pod affinity or anti-affinity term (kube-scheduler's
    /// `PodsWithAffinity`), which makes it relevant to every InterPodAffinity score.
    pub(crate) fn has_pod_affinity_terms(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.required_anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }
}

/// Labels of the namespaces known to the snapshot, for `namespaceSelector`.
#[derive(Clone, Debug, Default)]
pub(crate) struct NamespaceLabels {
    labels: HashMap<String, BTreeMap<String, String>>,
}

impl NamespaceLabels {
    pub(crate) fn get(&self, namespace: &str) -> &BTreeMap<String, String> {
        self.labels.get(namespace).unwrap_or(&NO_LABELS)
    }

    pub(crate) fn insert(&mut self, namespace: String, labels: BTreeMap<String, String>) {
        self.labels.insert(namespace, labels);
    }

    pub(crate) fn remove(&mut self, namespace: &str) -> bool {
        self.labels.remove(namespace).is_some()
    }
}

/// A compiled `PodAffinityTerm`.
#[derive(Clone, Debug)]
pub(crate) struct AffinityTerm {
    /// Namespaces named by the term, or the owning pod's namespace when the term
    /// names none and has no namespace selector.
    pub(crate) namespaces: BTreeSet<String>,
    pub(crate) namespace_selector: Selector,
    pub(crate) selector: Selector,
    pub(crate) topology_key: String,
}

impl AffinityTerm {
    pub(crate) fn new(owner_namespace: &str, term: &PodAffinityTerm) -> AffinityTerm {
        let listed = term.namespaces.clone().unwrap_or_default();
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            BTreeSet::from([owner_namespace.to_string()])
        } else {
            listed.into_iter().collect()
        };
        AffinityTerm {
            namespaces,
            namespace_selector: Selector::from_api(term.namespace_selector.as_ref()),
            selector: Selector::from_api(term.label_selector.as_ref()),
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether this term's namespaces and selector select the pod.
    pub(crate) fn matches(&self, pod: &PodInfo, namespaces: &NamespaceLabels) -> bool {
        self.covers_namespace(&pod.namespace, namespaces) && self.selector.matches(pod.labels())
    }

    pub(crate) fn covers_namespace(&self, namespace: &str, namespaces: &NamespaceLabels) -> bool {
        self.namespaces.contains(namespace)
            || (self.namespace_selector != Selector::Nothing
                && self.namespace_selector.matches(namespaces.get(namespace)))
    }
}

/// A preferred term with its weight.
#[derive(Clone, Debug)]
pub(crate) struct WeightedAffinityTerm {
    pub(crate) term: AffinityTerm,
    pub(crate) weight: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{term, PodBuilder};

    #[test]
    fn derived_fields() {
        let pod = PodBuilder::new("web-1")
            .namespace("shop")
            .requests("500m", "1Gi")
            .host_port(8080, "", "")
            .priority(1000)
            .owner("ReplicaSet", "web-abc", "uid-1")
            .pod_anti_affinity(term(&[("app", "web")], "kubernetes.io/hostname"))
            .build();
        let info = PodInfo::new(pod);
        assert_eq!(info.namespace, "shop");
        assert_eq!(info.requests.milli_cpu, 500);
        assert_eq!(info.priority, 1000);
        assert_eq!(info.spread_owner_uid.as_deref(), Some("uid-1"));
        assert_eq!(
            info.host_ports,
            vec![HostPort {
                protocol: "TCP".into(),
                host_ip: "0.0.0.0".into(),
                port: 8080
            }]
        );
        assert_eq!(info.required_anti_affinity.len(), 1);
        assert!(info.has_pod_affinity_terms());
        assert_eq!(
            info.required_anti_affinity[0].namespaces,
            BTreeSet::from(["shop".to_string()])
        );

        let job_pod = PodInfo::new(PodBuilder::new("j").owner("Job", "j", "uid-2").build());
        assert_eq!(job_pod.spread_owner_uid, None);
        assert!(!job_pod.has_pod_affinity_terms());
    }

    #[test]
    fn term_namespaces() {
        let mut namespaces = NamespaceLabels::default();
        namespaces.insert(
            "prod".into(),
            BTreeMap::from([("env".to_string(), "prod".to_string())]),
        );
        let check = |term: PodAffinityTerm, pod_namespace: &str, expected: bool| {
            let compiled = AffinityTerm::new("default", &term);
            let pod = PodInfo::new(
                PodBuilder::new("p")
                    .namespace(pod_namespace)
                    .label("app", "web")
                    .build(),
            );
            assert_eq!(
                compiled.matches(&pod, &namespaces),
                expected,
                "{term:?} vs pod in {pod_namespace}"
            );
        };
        let base = term(&[("app", "web")], "zone");
        check(base.clone(), "default", true);
        check(base.clone(), "prod", false);
        let listed = PodAffinityTerm {
            namespaces: Some(vec!["prod".into()]),
            ..base.clone()
        };
        check(listed.clone(), "prod", true);
        check(listed, "default", false);
        let everything = PodAffinityTerm {
            namespace_selector: Some(Default::default()),
            ..base.clone()
        };
        check(everything.clone(), "prod", true);
        check(everything, "elsewhere", true);
        let by_label = PodAffinityTerm {
            namespace_selector: Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(BTreeMap::from([("env".to_string(), "prod".to_string())])),
                    ..Default::default()
                },
            ),
            ..base
        };
        check(by_label.clone(), "prod", true);
        check(by_label, "default", false);
    }
}
