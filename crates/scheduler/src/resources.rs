//! Resource amounts in kube-scheduler's units and the effective requests of a pod:
//! `max(sum(containers), max(initContainers))` with sidecars added to both sides,
//! plus `spec.overhead` (component-helpers' `PodRequests`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;

/// The cpu request kube-scheduler assumes, for scoring only, for a container without one.
pub(crate) const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory request (200 MiB) kube-scheduler assumes, for scoring only, for a container without one.
pub(crate) const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler accounts for: cpu in millicores, memory
/// and ephemeral storage in bytes, and scalar resources (extended resources such
/// as `example.com/foo`, `hugepages-*`, `*kubernetes.io/*`) in their base unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Extended and other scalar resources by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Reads a resource list (`requests`, `allocatable`, `overhead`). `pods` and
    /// names that are neither native nor scalar are ignored; quantities that do
    /// not parse count as zero (the API server rejects them before they get here).
    pub fn from_resource_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut resources = Resources::default();
        for (name, amount) in amounts_of(list) {
            resources.add_amount(&name, amount);
        }
        resources
    }

    fn add_amount(&mut self, name: &str, amount: i64) {
        match name {
            "cpu" => self.milli_cpu = self.milli_cpu.saturating_add(amount),
            "memory" => self.memory = self.memory.saturating_add(amount),
            "ephemeral-storage" => {
                self.ephemeral_storage = self.ephemeral_storage.saturating_add(amount)
            }
            _ if is_scalar_resource_name(name) => {
                let entry = self.scalar.entry(name.to_string()).or_default();
                *entry = entry.saturating_add(amount);
            }
            _ => {}
        }
    }

    /// Adds another amount to this one.
    pub(crate) fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (name, amount) in &other.scalar {
            let entry = self.scalar.entry(name.clone()).or_default();
            *entry = entry.saturating_add(*amount);
        }
    }

    /// Subtracts another amount from this one; scalar entries reaching zero are dropped.
    pub(crate) fn subtract(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        for (name, amount) in &other.scalar {
            if let Some(entry) = self.scalar.get_mut(name) {
                *entry = entry.saturating_sub(*amount);
                if *entry == 0 {
                    self.scalar.remove(name);
                }
            }
        }
    }

    /// Whether nothing at all is requested (NodeResourcesFit then only counts pods).
    pub(crate) fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.is_empty()
    }
}

/// Extended resources, hugepages, attachable volumes and `kubernetes.io/`-prefixed
/// native resources (`IsScalarResourceName`).
pub(crate) fn is_scalar_resource_name(name: &str) -> bool {
    (name.contains('/') && !name.starts_with("requests."))
        || name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
}

/// What the scheduler needs to know about a pod's requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PodRequests {
    /// The effective requests, used by NodeResourcesFit's filter and by BalancedAllocation.
    pub(crate) requests: Resources,
    /// Effective cpu with 100m assumed for containers that request none (LeastAllocated).
    pub(crate) non_zero_milli_cpu: i64,
    /// Effective memory with 200Mi assumed for containers that request none.
    pub(crate) non_zero_memory: i64,
}

impl PodRequests {
    pub(crate) fn of(spec: Option<&PodSpec>) -> PodRequests {
        let Some(spec) = spec else {
            return PodRequests::default();
        };
        let mut requests = Resources::default();
        for (name, amount) in effective_amounts(spec, false) {
            requests.add_amount(&name, amount);
        }
        let non_zero = effective_amounts(spec, true);
        PodRequests {
            requests,
            non_zero_milli_cpu: non_zero.get("cpu").copied().unwrap_or(0),
            non_zero_memory: non_zero.get("memory").copied().unwrap_or(0),
        }
    }
}

/// Amounts by resource name, cpu in millicores.
type Amounts = BTreeMap<String, i64>;

fn amounts_of(list: &BTreeMap<String, Quantity>) -> Amounts {
    list.iter()
        .map(|(name, quantity)| {
            let amount = if name == "cpu" {
                quantity::parse_milli_value(&quantity.0)
            } else {
                quantity::parse_value(&quantity.0)
            };
            (name.clone(), amount.unwrap_or(0))
        })
        .collect()
}

fn container_amounts(container: &Container, non_missing: bool) -> Amounts {
    let mut amounts = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(amounts_of)
        .unwrap_or_default();
    if non_missing {
        amounts
            .entry("cpu".to_string())
            .or_insert(DEFAULT_MILLI_CPU_REQUEST);
        amounts
            .entry("memory".to_string())
            .or_insert(DEFAULT_MEMORY_REQUEST);
    }
    amounts
}

fn add_amounts(total: &mut Amounts, more: &Amounts) {
    for (name, amount) in more {
        let entry = total.entry(name.clone()).or_default();
        *entry = entry.saturating_add(*amount);
    }
}

fn max_amounts(total: &mut Amounts, other: &Amounts) {
    for (name, amount) in other {
        let entry = total.entry(name.clone()).or_insert(*amount);
        *entry = (*entry).max(*amount);
    }
}

fn effective_amounts(spec: &PodSpec, non_missing: bool) -> Amounts {
    let mut total = Amounts::new();
    for container in &spec.containers {
        add_amounts(&mut total, &container_amounts(container, non_missing));
    }
    // Sidecars (init containers with restartPolicy Always) keep running, so they add
    // to the pod's steady state and to every init container started after them.
    let mut sidecars = Amounts::new();
    let mut init_max = Amounts::new();
    for container in spec.init_containers.iter().flatten() {
        let amounts = container_amounts(container, non_missing);
        let during_init = if container.restart_policy.as_deref() == Some("Always") {
            add_amounts(&mut total, &amounts);
            add_amounts(&mut sidecars, &amounts);
            sidecars.clone()
        } else {
            let mut during = amounts;
            add_amounts(&mut during, &sidecars);
            during
        };
        max_amounts(&mut init_max, &during_init);
    }
    max_amounts(&mut total, &init_max);
    if let Some(overhead) = &spec.overhead {
        add_amounts(&mut total, &amounts_of(overhead));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PodBuilder;

    fn check(pod: PodBuilder, milli_cpu: i64, memory: i64, non_zero: (i64, i64)) {
        let pod = pod.build();
        let requests = PodRequests::of(pod.spec.as_ref());
        assert_eq!(
            (requests.requests.milli_cpu, requests.requests.memory),
            (milli_cpu, memory),
            "requests of {pod:?}"
        );
        assert_eq!(
            (requests.non_zero_milli_cpu, requests.non_zero_memory),
            non_zero,
            "non-zero requests of {pod:?}"
        );
    }

    const MI: i64 = 1024 * 1024;
    const DEFAULT_MEMORY: i64 = DEFAULT_MEMORY_REQUEST;

    #[test]
    fn effective_requests() {
        check(PodBuilder::new("p"), 0, 0, (100, DEFAULT_MEMORY));
        check(
            PodBuilder::new("p").requests("250m", "64Mi"),
            250,
            64 * MI,
            (250, 64 * MI),
        );
        check(
            PodBuilder::new("p")
                .requests("250m", "64Mi")
                .container("500m", "1Mi"),
            750,
            65 * MI,
            (750, 65 * MI),
        );
        // Only cpu requested: memory assumed for scoring, not for fitting.
        check(
            PodBuilder::new("p").requests("1", ""),
            1000,
            0,
            (1000, DEFAULT_MEMORY),
        );
        // An explicit zero is not missing.
        check(PodBuilder::new("p").requests("0", "0"), 0, 0, (0, 0));
        // Init containers: the max of any one of them against the sum of containers.
        check(
            PodBuilder::new("p")
                .requests("100m", "10Mi")
                .init_container("2", "5Mi"),
            2000,
            10 * MI,
            (2000, 10 * MI),
        );
        check(
            PodBuilder::new("p")
                .requests("1", "10Mi")
                .init_container("500m", "50Mi")
                .init_container("700m", "20Mi"),
            1000,
            50 * MI,
            (1000, 50 * MI),
        );
        // Sidecars add to the containers and to later init containers.
        check(
            PodBuilder::new("p")
                .requests("1", "10Mi")
                .sidecar("200m", "5Mi")
                .init_container("1", "1Mi"),
            1200,
            15 * MI,
            (1200, 15 * MI),
        );
        check(
            PodBuilder::new("p")
                .requests("100m", "10Mi")
                .init_container("1", "1Mi")
                .sidecar("200m", "5Mi"),
            1000,
            15 * MI,
            (1000, 15 * MI),
        );
        // Overhead is added on top.
        check(
            PodBuilder::new("p")
                .requests("1", "10Mi")
                .overhead("250m", "120Mi"),
            1250,
            130 * MI,
            (1250, 130 * MI),
        );
        check(
            PodBuilder::new("p").overhead("250m", "120Mi"),
            250,
            120 * MI,
            (350, 120 * MI + DEFAULT_MEMORY),
        );
    }

    #[test]
    fn scalar_and_resource_lists() {
        let pod = PodBuilder::new("p")
            .requests("1", "1Gi")
            .request("example.com/foo", "2")
            .request("hugepages-2Mi", "4Mi")
            .request("ephemeral-storage", "1G")
            .request("nvidia.com/gpu", "1")
            .request("pods", "3")
            .request("storage", "1Gi")
            .build();
        let requests = PodRequests::of(pod.spec.as_ref()).requests;
        assert_eq!(requests.ephemeral_storage, 1_000_000_000);
        let scalar: Vec<_> = requests
            .scalar
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            scalar,
            vec![
                ("example.com/foo", 2),
                ("hugepages-2Mi", 4 * MI),
                ("nvidia.com/gpu", 1)
            ]
        );
        assert!(is_scalar_resource_name("kubernetes.io/batch"));
        assert!(is_scalar_resource_name("attachable-volumes-csi-x"));
        assert!(!is_scalar_resource_name("requests.example.com/foo"));
        assert!(!is_scalar_resource_name("cpu"));

        let mut total = requests.clone();
        total.add(&requests);
        assert_eq!(total.milli_cpu, 2000);
        total.subtract(&requests);
        assert_eq!(total, requests);
        total.subtract(&requests);
        assert!(total.is_zero());
    }
}
