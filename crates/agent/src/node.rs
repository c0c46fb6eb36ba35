//! The Node object and Lease the agent keeps up to date: capacity read
//! from the machine, the kubelet's four conditions, and a Lease in
//! `kube-node-lease` renewed every [`LEASE_RENEW_INTERVAL`] (the heartbeat
//! the node lifecycle controller watches).

use std::time::Duration;

use client::{Client, ClientError, Gvr};
use serde_json::{json, Value};

pub const NODES: Gvr = Gvr::new("", "v1", "nodes");
pub const LEASES: Gvr = Gvr::new("coordination.k8s.io", "v1", "leases");
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The kubelet renews its Lease every 10 s (a quarter of its 40 s duration).
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
const LEASE_DURATION_SECONDS: i64 = 40;

/// What the agent says about its node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub name: String,
    /// `InternalIP` address (also the pod IP of host-network pods).
    pub address: String,
    pub labels: Vec<(String, String)>,
    pub cpu_milli: i64,
    pub memory_bytes: i64,
    pub ephemeral_storage_bytes: i64,
    pub max_pods: i64,
    /// Whether privileged containers may run (the kubelet's
    /// `--allow-privileged`, true unless turned off).
    pub allow_privileged: bool,
    /// The Kubernetes version the agent reports (`kubeletVersion`).
    pub version: String,
    /// Where pod volumes live (`DATA/agent/volumes`).
    pub volumes_dir: std::path::PathBuf,
    /// The cluster DNS server addresses pods with `dnsPolicy: ClusterFirst`
    /// are given (the kubelet's `clusterDNS`); empty: they get the host's
    /// settings, as the kubelet does.
    pub cluster_dns: Vec<std::net::IpAddr>,
    /// The cluster domain (the kubelet's `clusterDomain`, `cluster.local`).
    pub cluster_domain: String,
    /// The host's resolver file pods' DNS settings start from (the
    /// kubelet's `--resolv-conf`).
    pub host_resolv_conf: std::path::PathBuf,
}

impl NodeConfig {
    /// Capacity as this machine has it (CPUs, MemTotal, the data dir's
    /// file system).
    pub fn from_machine(
        name: &str,
        address: &str,
        data_dir: &std::path::Path,
        version: &str,
    ) -> NodeConfig {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as i64;
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            })
            .unwrap_or(0)
            * 1024;
        let storage = nix_statvfs(data_dir).unwrap_or(0);
        NodeConfig {
            name: name.to_string(),
            address: address.to_string(),
            labels: Vec::new(),
            cpu_milli: cpus * 1000,
            memory_bytes: memory,
            ephemeral_storage_bytes: storage,
            max_pods: 110,
            allow_privileged: true,
            version: version.to_string(),
            volumes_dir: data_dir.join("agent").join("volumes"),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".to_string(),
            host_resolv_conf: "/etc/resolv.conf".into(),
        }
    }
}

fn nix_statvfs(path: &std::path::Path) -> Option<i64> {
    let out = std::process::Command::new("df")
        .args(["--output=size", "-B1"])
        .arg(path)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The node's status as the agent reports it at `now`.
pub fn node_status(config: &NodeConfig, now: jiff::Timestamp, since: jiff::Timestamp) -> Value {
    let t = rfc3339(now);
    let since = rfc3339(since);
    let resources = json!({
        "cpu": format!("{}m", config.cpu_milli),
        "memory": format!("{}", config.memory_bytes),
        "ephemeral-storage": format!("{}", config.ephemeral_storage_bytes),
        "pods": format!("{}", config.max_pods),
    });
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": t, "lastTransitionTime": since})
    };
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "drover agent is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": config.address},
            {"type": "Hostname", "address": config.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": std::fs::read_to_string("/etc/machine-id").unwrap_or_default().trim(),
            "systemUUID": "",
            "bootID": std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim(),
            "kernelVersion": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "osImage": os_image(),
            "containerRuntimeVersion": "drover://process",
            "kubeletVersion": config.version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": arch(),
        },
    })
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Creates the Node (or takes over an existing one of the same name) and
/// posts its status.
pub async fn register(
    client: &Client,
    config: &NodeConfig,
    now: jiff::Timestamp,
) -> Result<(), ClientError> {
    let mut labels = serde_json::Map::new();
    labels.insert("kubernetes.io/hostname".into(), json!(config.name));
    labels.insert("kubernetes.io/os".into(), json!("linux"));
    labels.insert("kubernetes.io/arch".into(), json!(arch()));
    for (k, v) in &config.labels {
        labels.insert(k.clone(), json!(v));
    }
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": config.name, "labels": labels},
        "spec": {},
    });
    match client.create(NODES, None, &node).await {
        Ok(_) => {}
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(e),
    }
    post_status(client, config, now, now).await
}

pub async fn post_status(
    client: &Client,
    config: &NodeConfig,
    now: jiff::Timestamp,
    since: jiff::Timestamp,
) -> Result<(), ClientError> {
    let patch = json!({"status": node_status(config, now, since)});
    client
        .patch(
            NODES,
            None,
            &config.name,
            Some("status"),
            client::PatchType::Merge,
            &patch,
        )
        .await
        .map(|_| ())
}

/// Renews (or creates) the node's Lease.
pub async fn renew_lease(
    client: &Client,
    node: &str,
    now: jiff::Timestamp,
) -> Result<(), ClientError> {
    let renew = now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
    let spec = json!({
        "holderIdentity": node,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": renew,
    });
    match client.get(LEASES, Some(NODE_LEASE_NAMESPACE), node).await {
        Ok(mut lease) => {
            lease["spec"] = spec;
            client
                .replace(LEASES, Some(NODE_LEASE_NAMESPACE), node, &lease)
                .await
                .map(|_| ())
        }
        Err(e) if e.is_not_found() => {
            let uid = client
                .get(NODES, None, node)
                .await
                .ok()
                .and_then(|n| n.pointer("/metadata/uid").cloned());
            let mut lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": node, "namespace": NODE_LEASE_NAMESPACE},
                "spec": spec,
            });
            if let Some(uid) = uid {
                lease["metadata"]["ownerReferences"] =
                    json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}]);
            }
            client
                .create(LEASES, Some(NODE_LEASE_NAMESPACE), &lease)
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    }
}
