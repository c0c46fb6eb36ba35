//! End to end: pods of `drover server`'s node agent get the resolv.conf
//! the kubelet would give them (cluster DNS settings from the node flags,
//! dnsPolicy, dnsConfig), and the host keeps its own.

mod common;

use std::time::Duration;

use common::Server;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(90);

/// Runs a pod that prints its /etc/resolv.conf and returns what it printed.
fn resolv_conf_of(s: &Server, name: &str, spec_extra: &str) -> String {
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: unused
    command: [cat, /etc/resolv.conf]
{spec_extra}
"#
        ),
    );
    s.wait(&format!("pod {name} Succeeded"), TIMEOUT, || {
        let pod: Value = s.json(&["get", "pod", name]);
        pod["status"]["phase"] == "Succeeded"
    });
    s.ok(&["logs", name])
}

#[test]
fn pods_get_the_cluster_dns_resolv_conf_and_the_host_keeps_its_own() {
    let host_before = std::fs::read("/etc/resolv.conf").ok();
    // The harness gives each server its own service CIDR and cluster DNS
    // address: the kube-dns Service's ClusterIP.
    let s = Server::start_with_agent(&["--cluster-domain=cluster.test"]);
    let kube_dns = s.json(&["get", "service", "kube-dns", "-n", "kube-system"]);
    let dns_ip = kube_dns["spec"]["clusterIP"].as_str().unwrap().to_string();

    let cluster_first = resolv_conf_of(&s, "cluster-first", "");
    let lines: Vec<&str> = cluster_first.lines().collect();
    assert!(
        lines[0].starts_with("search default.svc.cluster.test svc.cluster.test cluster.test"),
        "{cluster_first}"
    );
    assert_eq!(
        lines[1..],
        [format!("nameserver {dns_ip}").as_str(), "options ndots:5"],
        "{cluster_first}"
    );

    let none = resolv_conf_of(
        &s,
        "none",
        r#"  dnsPolicy: "None"
  dnsConfig:
    nameservers: [192.0.2.1]
    searches: [example.test]
    options: [{name: ndots, value: "2"}, {name: edns0}]"#,
    );
    assert_eq!(
        none,
        "search example.test\nnameserver 192.0.2.1\noptions ndots:2 edns0\n"
    );

    assert_eq!(
        std::fs::read("/etc/resolv.conf").ok(),
        host_before,
        "the host's /etc/resolv.conf changed"
    );
}
