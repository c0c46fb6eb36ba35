//! A pod's DNS settings on this node, decided when its sandbox is made:
//! the `/etc/resolv.conf` text ([`dns::resolv_conf`] with the node's
//! cluster DNS settings) and the warning the kubelet records when a
//! cluster-DNS pod has to fall back to the host's settings.

use k8s_openapi::api::core::v1::Pod;

use crate::node::NodeConfig;
use crate::runtime::SandboxConfig;

/// The pod's sandbox config, plus a `MissingClusterDNS` warning message
/// when the pod asked for cluster DNS and the node has none. An error
/// means the sandbox cannot be made (as the kubelet's `GetPodDNS`).
pub fn sandbox_config(
    pod: &Pod,
    node: &NodeConfig,
    host_resolv_conf: &str,
) -> Result<(SandboxConfig, Option<String>), String> {
    let resolv_conf = dns::resolv_conf(
        pod,
        &node.cluster_dns,
        &node.cluster_domain,
        host_resolv_conf,
    )?;
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network) == Some(true);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let wants_cluster_dns =
        policy == "ClusterFirstWithHostNet" || (policy == "ClusterFirst" && !host_network);
    let warning = (wants_cluster_dns && node.cluster_dns.is_empty()).then(|| {
        format!(
            "pod: {:?}. kubelet does not have ClusterDNS IP configured and cannot create Pod using {policy:?} policy. Falling back to \"Default\" policy.",
            pod.metadata.name.as_deref().unwrap_or_default()
        )
    });
    Ok((
        SandboxConfig {
            resolv_conf: Some(resolv_conf),
        },
        warning,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOST: &str = "nameserver 192.168.1.1\nsearch lan\n";

    fn check(cluster_dns: &[&str], spec: serde_json::Value, resolv: &str, warns: bool) {
        let mut node = NodeConfig::from_machine("n", "127.0.0.1", std::path::Path::new("/"), "v");
        node.cluster_dns = cluster_dns.iter().map(|s| s.parse().unwrap()).collect();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"}, "spec": spec
        }))
        .unwrap();
        let (config, warning) = sandbox_config(&pod, &node, HOST).unwrap();
        assert_eq!(config.resolv_conf.as_deref(), Some(resolv), "{spec}");
        assert_eq!(warning.is_some(), warns, "{spec}: {warning:?}");
    }

    #[test]
    fn cluster_dns_settings_reach_the_sandbox() {
        let cluster = "search ns.svc.cluster.local svc.cluster.local cluster.local lan\nnameserver 10.43.0.10\noptions ndots:5\n";
        let host = "search lan\nnameserver 192.168.1.1\n";
        check(&["10.43.0.10"], json!({}), cluster, false);
        check(&["10.43.0.10"], json!({"hostNetwork": true}), host, false);
        check(&[], json!({}), host, true);
        check(
            &[],
            json!({"dnsPolicy": "ClusterFirstWithHostNet"}),
            host,
            true,
        );
        check(&[], json!({"dnsPolicy": "Default"}), host, false);
        check(&[], json!({"hostNetwork": true}), host, false);
    }
}
