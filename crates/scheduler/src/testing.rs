//! Builders for the pods, nodes and volumes the table tests are written with.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, NodeSpec, NodeStatus, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, Pod,
    PodAffinity, PodAffinityTerm, PodAntiAffinity, PodCondition, PodSpec, PodStatus,
    PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration, TopologySpreadConstraint,
    Volume, VolumeNodeAffinity, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};

/// Builds a pod in namespace `default` with one container requesting nothing.
#[derive(Clone, Debug)]
pub(crate) struct PodBuilder(Pod);

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

fn container(name: &str, cpu: &str, memory: &str) -> Container {
    Container {
        name: name.to_string(),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", cpu), ("memory", memory)])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl PodBuilder {
    pub(crate) fn new(name: &str) -> PodBuilder {
        PodBuilder(Pod {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some("default".to_string()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "main".to_string(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus::default()),
        })
    }

    fn spec(&mut self) -> &mut PodSpec {
        self.0.spec.get_or_insert_with(Default::default)
    }

    fn affinity(&mut self) -> &mut Affinity {
        self.spec().affinity.get_or_insert_with(Default::default)
    }

    pub(crate) fn build(self) -> Pod {
        self.0
    }

    pub(crate) fn named(mut self, name: &str) -> Self {
        self.0.metadata.name = Some(name.to_string());
        self.0.metadata.uid = Some(format!("uid-{name}"));
        self
    }

    pub(crate) fn namespace(mut self, namespace: &str) -> Self {
        self.0.metadata.namespace = Some(namespace.to_string());
        self
    }

    pub(crate) fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value.to_string());
        self
    }

    /// Sets the first container's cpu and memory requests ("" leaves one out).
    pub(crate) fn requests(mut self, cpu: &str, memory: &str) -> Self {
        self.spec().containers[0] = container("main", cpu, memory);
        self
    }

    /// Adds any request to the first container.
    pub(crate) fn request(mut self, name: &str, amount: &str) -> Self {
        self.spec().containers[0]
            .resources
            .get_or_insert_with(Default::default)
            .requests
            .get_or_insert_with(Default::default)
            .insert(name.to_string(), Quantity(amount.to_string()));
        self
    }

    pub(crate) fn container(mut self, cpu: &str, memory: &str) -> Self {
        let name = format!("c{}", self.spec().containers.len());
        self.spec().containers.push(container(&name, cpu, memory));
        self
    }

    pub(crate) fn init_container(mut self, cpu: &str, memory: &str) -> Self {
        self.spec()
            .init_containers
            .get_or_insert_with(Vec::new)
            .push(container("init", cpu, memory));
        self
    }

    pub(crate) fn sidecar(mut self, cpu: &str, memory: &str) -> Self {
        let mut sidecar = container("sidecar", cpu, memory);
        sidecar.restart_policy = Some("Always".to_string());
        self.spec()
            .init_containers
            .get_or_insert_with(Vec::new)
            .push(sidecar);
        self
    }

    pub(crate) fn overhead(mut self, cpu: &str, memory: &str) -> Self {
        self.spec().overhead = Some(quantities(&[("cpu", cpu), ("memory", memory)]));
        self
    }

    pub(crate) fn host_port(mut self, port: i32, protocol: &str, host_ip: &str) -> Self {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        self.spec().containers[0]
            .ports
            .get_or_insert_with(Vec::new)
            .push(ContainerPort {
                container_port: port,
                host_port: Some(port),
                protocol: some(protocol),
                host_ip: some(host_ip),
                ..Default::default()
            });
        self
    }

    pub(crate) fn node(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.to_string());
        self
    }

    pub(crate) fn nominated(mut self, node: &str) -> Self {
        self.0
            .status
            .get_or_insert_with(Default::default)
            .nominated_node_name = Some(node.to_string());
        self
    }

    pub(crate) fn phase(mut self, phase: &str) -> Self {
        self.0.status.get_or_insert_with(Default::default).phase = Some(phase.to_string());
        self
    }

    pub(crate) fn priority(mut self, priority: i32) -> Self {
        self.spec().priority = Some(priority);
        self
    }

    pub(crate) fn preemption_never(mut self) -> Self {
        self.spec().preemption_policy = Some("Never".to_string());
        self
    }

    /// Marks the pod as started `seconds` after the Unix epoch.
    pub(crate) fn started(mut self, seconds: i64) -> Self {
        let timestamp = k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap_or_default();
        self.0
            .status
            .get_or_insert_with(Default::default)
            .start_time = Some(Time(timestamp));
        self
    }

    pub(crate) fn terminating(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        self
    }

    /// Marks the pod as being deleted by a scheduler preemption.
    pub(crate) fn preempted(self) -> Self {
        let mut builder = self.terminating();
        builder
            .0
            .status
            .get_or_insert_with(Default::default)
            .conditions
            .get_or_insert_with(Vec::new)
            .push(PodCondition {
                type_: "DisruptionTarget".to_string(),
                status: "True".to_string(),
                reason: Some("PreemptionByScheduler".to_string()),
                ..Default::default()
            });
        builder
    }

    pub(crate) fn owner(mut self, kind: &str, name: &str, uid: &str) -> Self {
        self.0
            .metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(OwnerReference {
                api_version: "apps/v1".to_string(),
                kind: kind.to_string(),
                name: name.to_string(),
                uid: uid.to_string(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            });
        self
    }

    pub(crate) fn toleration(
        mut self,
        key: &str,
        operator: &str,
        value: &str,
        effect: &str,
    ) -> Self {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        self.spec()
            .tolerations
            .get_or_insert_with(Vec::new)
            .push(Toleration {
                key: some(key),
                operator: some(operator),
                value: some(value),
                effect: some(effect),
                toleration_seconds: None,
            });
        self
    }

    pub(crate) fn node_selector(mut self, key: &str, value: &str) -> Self {
        self.spec()
            .node_selector
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value.to_string());
        self
    }

    pub(crate) fn required_node_affinity(mut self, terms: Vec<NodeSelectorTerm>) -> Self {
        self.affinity()
            .node_affinity
            .get_or_insert_with(NodeAffinity::default)
            .required_during_scheduling_ignored_during_execution = Some(NodeSelector {
            node_selector_terms: terms,
        });
        self
    }

    pub(crate) fn preferred_node_affinity(
        mut self,
        weight: i32,
        preference: NodeSelectorTerm,
    ) -> Self {
        self.affinity()
            .node_affinity
            .get_or_insert_with(NodeAffinity::default)
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(PreferredSchedulingTerm { weight, preference });
        self
    }

    pub(crate) fn pod_affinity(mut self, term: PodAffinityTerm) -> Self {
        self.affinity()
            .pod_affinity
            .get_or_insert_with(PodAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }

    pub(crate) fn pod_anti_affinity(mut self, term: PodAffinityTerm) -> Self {
        self.affinity()
            .pod_anti_affinity
            .get_or_insert_with(PodAntiAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }

    pub(crate) fn preferred_pod_affinity(mut self, weight: i32, term: PodAffinityTerm) -> Self {
        self.affinity()
            .pod_affinity
            .get_or_insert_with(PodAffinity::default)
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                weight,
                pod_affinity_term: term,
            });
        self
    }

    pub(crate) fn preferred_pod_anti_affinity(
        mut self,
        weight: i32,
        term: PodAffinityTerm,
    ) -> Self {
        self.affinity()
            .pod_anti_affinity
            .get_or_insert_with(PodAntiAffinity::default)
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                weight,
                pod_affinity_term: term,
            });
        self
    }

    /// Adds a topology spread constraint selecting pods with the given labels.
    pub(crate) fn spread(
        mut self,
        max_skew: i32,
        topology_key: &str,
        when: &str,
        selector: &[(&str, &str)],
    ) -> Self {
        self.spec()
            .topology_spread_constraints
            .get_or_insert_with(Vec::new)
            .push(TopologySpreadConstraint {
                max_skew,
                topology_key: topology_key.to_string(),
                when_unsatisfiable: when.to_string(),
                label_selector: Some(label_selector(selector)),
                ..Default::default()
            });
        self
    }

    /// Adds a topology spread constraint given in full.
    pub(crate) fn spread_constraint(mut self, constraint: TopologySpreadConstraint) -> Self {
        self.spec()
            .topology_spread_constraints
            .get_or_insert_with(Vec::new)
            .push(constraint);
        self
    }

    pub(crate) fn pvc(mut self, claim: &str) -> Self {
        self.spec()
            .volumes
            .get_or_insert_with(Vec::new)
            .push(Volume {
                name: claim.to_string(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.to_string(),
                    read_only: None,
                }),
                ..Default::default()
            });
        self
    }

    pub(crate) fn scheduling_gate(mut self, gate: &str) -> Self {
        self.spec()
            .scheduling_gates
            .get_or_insert_with(Vec::new)
            .push(k8s_openapi::api::core::v1::PodSchedulingGate {
                name: gate.to_string(),
            });
        self
    }
}

pub(crate) fn label_selector(labels: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        match_expressions: None,
    }
}

/// A pod affinity term selecting pods with the given labels in the pod's namespace.
pub(crate) fn term(labels: &[(&str, &str)], topology_key: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(label_selector(labels)),
        topology_key: topology_key.to_string(),
        ..Default::default()
    }
}

/// A node selector term with one requirement on a label.
pub(crate) fn node_term(key: &str, operator: &str, values: &[&str]) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: Some(vec![NodeSelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }]),
        match_fields: None,
    }
}

/// A node selector term on `metadata.name`.
pub(crate) fn node_name_term(operator: &str, names: &[&str]) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".to_string(),
            operator: operator.to_string(),
            values: Some(names.iter().map(|v| v.to_string()).collect()),
        }]),
    }
}

/// Builds a node with 4 cpus, 32Gi of memory, 100Gi of ephemeral storage and room for 110 pods,
/// labelled `kubernetes.io/hostname=<name>`.
#[derive(Clone, Debug)]
pub(crate) struct NodeBuilder(Node);

impl NodeBuilder {
    pub(crate) fn new(name: &str) -> NodeBuilder {
        NodeBuilder(Node {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(BTreeMap::from([(
                    "kubernetes.io/hostname".to_string(),
                    name.to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(quantities(&[
                    ("cpu", "4"),
                    ("memory", "32Gi"),
                    ("ephemeral-storage", "100Gi"),
                    ("pods", "110"),
                ])),
                ..Default::default()
            }),
        })
    }

    pub(crate) fn build(self) -> Node {
        self.0
    }

    pub(crate) fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value.to_string());
        self
    }

    pub(crate) fn zone(self, zone: &str) -> Self {
        self.label("topology.kubernetes.io/zone", zone)
    }

    pub(crate) fn allocatable(mut self, name: &str, amount: &str) -> Self {
        self.0
            .status
            .get_or_insert_with(Default::default)
            .allocatable
            .get_or_insert_with(Default::default)
            .insert(name.to_string(), Quantity(amount.to_string()));
        self
    }

    pub(crate) fn cpu(self, amount: &str) -> Self {
        self.allocatable("cpu", amount)
    }

    pub(crate) fn memory(self, amount: &str) -> Self {
        self.allocatable("memory", amount)
    }

    pub(crate) fn pods(self, count: &str) -> Self {
        self.allocatable("pods", count)
    }

    pub(crate) fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.0
            .spec
            .get_or_insert_with(Default::default)
            .taints
            .get_or_insert_with(Vec::new)
            .push(Taint {
                key: key.to_string(),
                value: (!value.is_empty()).then(|| value.to_string()),
                effect: effect.to_string(),
                time_added: None,
            });
        self
    }

    pub(crate) fn unschedulable(mut self) -> Self {
        self.0
            .spec
            .get_or_insert_with(Default::default)
            .unschedulable = Some(true);
        self
    }
}

/// A claim in namespace `default`, bound to `volume` unless that is empty.
pub(crate) fn pvc(name: &str, volume: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("default".to_string()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            volume_name: (!volume.is_empty()).then(|| volume.to_string()),
            ..Default::default()
        }),
        status: None,
    }
}

/// A volume usable only on nodes matching the term (no node affinity when `None`).
pub(crate) fn pv(name: &str, node_affinity: Option<NodeSelectorTerm>) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            node_affinity: node_affinity.map(|term| VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![term],
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}
