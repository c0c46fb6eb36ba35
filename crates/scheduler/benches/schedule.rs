//! Scheduling throughput: 10,000 pods of mixed shapes onto 5,000 nodes (5 zones,
//! some tainted, some labelled) that already run 100,000 pods, assuming each
//! binding with `add_pod` like the scheduler controller does.
//!
//! Run with `cargo bench -p scheduler`.

use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use scheduler::{schedule, Decision, ScheduleOptions, Snapshot};
use serde_json::json;

const NODES: usize = 5_000;
const EXISTING_PODS_PER_NODE: usize = 20;
const PODS: usize = 10_000;
const REPLICA_SETS: usize = 50;

fn node(i: usize) -> Node {
    let name = format!("node-{i:04}");
    let mut labels = json!({
        "kubernetes.io/hostname": name,
        "topology.kubernetes.io/zone": format!("zone-{}", i % 5),
    });
    // Every 10th node is a tainted GPU node, every 7th has an SSD, and a few
    // are spot nodes that pods should rather avoid.
    let gpu = matches!(i % 10, 0);
    let ssd = matches!(i % 7, 0);
    let spot = i % 50 == 1;
    let mut taints = json!([]);
    if gpu {
        labels["gpu"] = json!("true");
        taints = json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]);
    }
    if ssd {
        labels["disk"] = json!("ssd");
    }
    if spot {
        taints = json!([{"key": "spot", "effect": "PreferNoSchedule"}]);
    }
    decode(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "ephemeral-storage": "500Gi", "pods": "110"}},
    }))
}

fn existing_pod(node: usize, j: usize) -> Pod {
    decode(json!({
        "metadata": {
            "name": format!("existing-{node}-{j}"),
            "namespace": "default",
            "labels": {"app": format!("svc-{}", (node + j) % 200)},
        },
        "spec": {
            "nodeName": format!("node-{node:04}"),
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}}}],
        },
    }))
}

/// Mostly ReplicaSet replicas (default spreading), plus pods with a node
/// selector, GPU pods, pods with hostname anti-affinity and zone spreading.
fn pending_pod(i: usize) -> Pod {
    let replica_set = i % REPLICA_SETS;
    let app = format!("web-{replica_set}");
    let mut pod = json!({
        "metadata": {
            "name": format!("pending-{i}"),
            "namespace": "default",
            "labels": {"app": app},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": app,
                "uid": format!("rs-{replica_set}"), "controller": true,
            }],
        },
        "spec": {
            "containers": [{
                "name": "c",
                "resources": {"requests": {
                    "cpu": format!("{}m", 100 + (i % 5) * 100),
                    "memory": format!("{}Mi", 128 * (1 + i % 4)),
                }},
            }],
        },
    });
    match i % 20 {
        0 | 1 => pod["spec"]["nodeSelector"] = json!({"disk": "ssd"}),
        2 => {
            pod["spec"]["nodeSelector"] = json!({"gpu": "true"});
            pod["spec"]["tolerations"] = json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
        }
        3 => {
            pod["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"app": app}},
                "topologyKey": "kubernetes.io/hostname",
            }]}});
        }
        4 => {
            pod["spec"]["topologySpreadConstraints"] = json!([{
                "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": app}},
            }]);
        }
        _ => {}
    }
    decode(pod)
}

fn decode<T: k8s_openapi::serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    match serde_json::from_value(value) {
        Ok(object) => object,
        Err(error) => panic!("benchmark object does not decode: {error}"),
    }
}

fn main() {
    let nodes: Vec<Node> = (0..NODES).map(node).collect();
    let existing: Vec<Pod> = (0..NODES)
        .flat_map(|n| (0..EXISTING_PODS_PER_NODE).map(move |j| existing_pod(n, j)))
        .collect();
    let pending: Vec<Pod> = (0..PODS).map(pending_pod).collect();

    let started = Instant::now();
    let mut snapshot = Snapshot::new(nodes, existing, vec![], vec![]);
    let built = started.elapsed();
    println!(
        "snapshot of {NODES} nodes and {} pods built in {:.2?}",
        NODES * EXISTING_PODS_PER_NODE,
        built
    );

    let mut options = ScheduleOptions::default();
    let mut unschedulable = 0usize;
    let started = Instant::now();
    for pod in &pending {
        match schedule(&snapshot, pod, &options) {
            Decision::Bind {
                node,
                next_start_index,
                ..
            } => {
                options.start_index = next_start_index;
                let mut bound = pod.clone();
                bound.spec.get_or_insert_with(Default::default).node_name = Some(node);
                snapshot.add_pod(bound);
            }
            Decision::Unschedulable { .. } => unschedulable += 1,
        }
        options.tie_break = options.tie_break.wrapping_add(1);
    }
    let elapsed = started.elapsed();
    println!(
        "scheduled {PODS} pods onto {NODES} nodes in {:.2?}: {:.0} pods/s ({unschedulable} unschedulable)",
        elapsed,
        PODS as f64 / elapsed.as_secs_f64()
    );
}
