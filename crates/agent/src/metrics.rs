//! Resource usage as the resource metrics API (`metrics.k8s.io`) reports
//! it, like the kubelet's summary API feeding metrics-server: the agent
//! samples every [`SAMPLE_PERIOD`] each running container's cgroup (CPU time
//! used, memory working set) and the node's /proc, and answers with CPU
//! rates over the last two samples.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use apiserver::nodes::{ContainerUsage, NodeMetricsReport, PodUsageReport};

use crate::runtime::Usage;

/// How often usage is sampled (the window of the reported rates).
pub const SAMPLE_PERIOD: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: jiff::Timestamp,
    usage: Usage,
}

#[derive(Default)]
struct Series {
    previous: Option<Sample>,
    last: Option<Sample>,
}

impl Series {
    fn push(&mut self, sample: Sample) {
        self.previous = self.last.replace(sample);
    }

    /// (CPU nanocores, memory bytes, at, window, cumulative CPU ns) once
    /// two samples exist.
    fn rate(&self) -> Option<(u64, u64, jiff::Timestamp, Duration, u64)> {
        let (a, b) = (self.previous?, self.last?);
        let elapsed = b.at.duration_since(a.at).as_secs_f64();
        if elapsed <= 0.0 {
            return None;
        }
        let cpu = b.usage.cpu_usage_ns.saturating_sub(a.usage.cpu_usage_ns) as f64 / elapsed;
        Some((
            cpu as u64,
            b.usage.memory_working_set_bytes,
            b.at,
            Duration::from_secs_f64(elapsed),
            b.usage.cpu_usage_ns,
        ))
    }
}

/// Pod identity for reports: (namespace, name, labels).
pub type PodIdentity = (String, String, BTreeMap<String, String>);

#[derive(Default)]
pub struct MetricsStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    node: Series,
    /// By pod uid, then container name.
    pods: BTreeMap<String, (PodIdentity, BTreeMap<String, Series>)>,
}

impl MetricsStore {
    /// Records one round: the node's usage and each running container's.
    pub fn record(
        &self,
        at: jiff::Timestamp,
        node: Option<Usage>,
        containers: Vec<(String, PodIdentity, String, Usage)>,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(usage) = node {
            inner.node.push(Sample { at, usage });
        }
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (uid, identity, container, usage) in containers {
            seen.entry(uid.clone()).or_default().push(container.clone());
            let entry = inner
                .pods
                .entry(uid)
                .or_insert_with(|| (identity.clone(), BTreeMap::new()));
            entry.0 = identity;
            entry
                .1
                .entry(container)
                .or_default()
                .push(Sample { at, usage });
        }
        // Containers that stopped are no longer reported.
        inner.pods.retain(|uid, (_, series)| {
            let Some(names) = seen.get(uid) else {
                return false;
            };
            series.retain(|name, _| names.contains(name));
            true
        });
    }

    pub fn report(&self) -> NodeMetricsReport {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let node = inner
            .node
            .rate()
            .map(|(cpu, memory, at, window, total)| ContainerUsage {
                name: String::new(),
                cpu_nanocores: cpu,
                memory_bytes: memory,
                cpu_usage_ns_total: total,
                timestamp: at.to_string(),
                window_seconds: window.as_secs_f64(),
            });
        let mut pods = Vec::new();
        for ((namespace, name, labels), series) in inner.pods.values() {
            let containers: Vec<ContainerUsage> = series
                .iter()
                .filter_map(|(container, s)| {
                    let (cpu, memory, at, window, total) = s.rate()?;
                    Some(ContainerUsage {
                        name: container.clone(),
                        cpu_nanocores: cpu,
                        memory_bytes: memory,
                        cpu_usage_ns_total: total,
                        timestamp: at.to_string(),
                        window_seconds: window.as_secs_f64(),
                    })
                })
                .collect();
            if !containers.is_empty() {
                pods.push(PodUsageReport {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    labels: labels.clone(),
                    containers,
                });
            }
        }
        NodeMetricsReport {
            node,
            pods,
            exposition: String::new(),
        }
    }
}

/// The node's CPU time (all CPUs, ns) and memory working set (MemTotal −
/// MemAvailable) from /proc.
pub fn node_usage() -> Option<Usage> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle, iowait.
    let busy: u64 = cpu
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, v)| *v)
        .sum();
    // USER_HZ is 100 on Linux: one tick is 10 ms.
    let cpu_ns = busy * 10_000_000;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    let memory = field("MemTotal:")?.saturating_sub(field("MemAvailable:")?);
    Some(Usage {
        cpu_usage_ns: cpu_ns,
        memory_working_set_bytes: memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_need_two_samples_and_stopped_containers_drop_out() {
        let store = MetricsStore::default();
        let t0: jiff::Timestamp = "2026-12-03T10:00:00Z".parse().unwrap();
        let id: PodIdentity = ("default".into(), "web".into(), BTreeMap::new());
        let usage = |cpu_ns, mem| Usage {
            cpu_usage_ns: cpu_ns,
            memory_working_set_bytes: mem,
        };
        store.record(
            t0,
            None,
            vec![("u1".into(), id.clone(), "app".into(), usage(0, 100))],
        );
        assert!(store.report().pods.is_empty());
        let t1 = t0 + jiff::SignedDuration::from_secs(5);
        // 2.5 s of CPU in 5 s: half a core.
        store.record(
            t1,
            None,
            vec![(
                "u1".into(),
                id.clone(),
                "app".into(),
                usage(2_500_000_000, 200),
            )],
        );
        let report = store.report();
        let c = &report.pods[0].containers[0];
        assert_eq!((c.cpu_nanocores, c.memory_bytes), (500_000_000, 200));
        assert_eq!(c.window_seconds, 5.0);
        store.record(t1, None, Vec::new());
        assert!(store.report().pods.is_empty());
    }
}
