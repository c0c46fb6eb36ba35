//! End to end: `kubectl drain` (1.32) against a real drover server. Drain
//! cordons the node and evicts its pods through `pods/eviction`, which
//! honours PodDisruptionBudgets; and pods get the DefaultTolerationSeconds
//! tolerations the server flags configure. No node agent and no controllers
//! run: the test registers the Node and writes pod status itself.

mod common;

use std::time::Duration;

use common::{wait_until, Server};
use serde_json::Value;

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels: {kubernetes.io/hostname: node-a}
"#;

const READY: &str =
    r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#;

fn register_node(s: &Server) {
    s.ok_stdin(&["apply", "-f", "-"], NODE);
    s.ok(&[
        "patch",
        "node",
        "node-a",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"capacity":{"cpu":"4","memory":"8Gi","pods":"110"},"allocatable":{"cpu":"4","memory":"8Gi","pods":"110"},"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ready"}]}}"#,
    ]);
}

/// A bare pod bound to node-a, Running and Ready.
fn running_pod(s: &Server, name: &str, app: &str) {
    let pod = format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","labels":{{"app":"{app}"}}}},
        "spec":{{"nodeName":"node-a","containers":[{{"name":"c","image":"registry.local/{app}:1"}}]}}}}"#
    );
    s.ok_stdin(&["create", "-f", "-"], &pod);
    s.ok(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        READY,
    ]);
}

/// The value of `apiserver_request_total{verb, resource, code}` (0 when absent).
fn requests(s: &Server, verb: &str, resource: &str, code: &str) -> u64 {
    let metrics = s.ok(&["get", "--raw", "/metrics"]);
    let labels = format!("code=\"{code}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| {
            l.contains(&format!("verb=\"{verb}\""))
                && l.contains(&format!("resource=\"{resource}\""))
                && l.contains(&labels)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

fn pod_names(s: &Server) -> Vec<String> {
    let pods = s.json(&["get", "pods"]);
    let mut names: Vec<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn drain_evicts_unprotected_pods_and_stops_at_a_disruption_budget() {
    let s = Server::start_with(&["--disable-controllers"]);
    register_node(&s);
    running_pod(&s, "bare-1", "bare");
    running_pod(&s, "bare-2", "bare");
    running_pod(&s, "db-0", "db");
    s.ok(&[
        "create",
        "poddisruptionbudget",
        "db",
        "--selector=app=db",
        "--min-available=1",
    ]);
    assert_eq!(pod_names(&s), ["bare-1", "bare-2", "db-0"]);

    // Grace period 0: no kubelet runs to finish a graceful deletion, so the
    // evicted pods must go at once for drain to see them gone.
    let out = s.kubectl(&[
        "drain",
        "node-a",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--force",
        "--grace-period=0",
        "--timeout=12s",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "drain must fail on the protected pod:\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stderr.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("db-0"), "stderr: {stderr}");
    for name in ["bare-1", "bare-2"] {
        assert!(
            stdout.contains(&format!("pod/{name} evicted")),
            "stdout: {stdout}"
        );
    }

    let node = s.json(&["get", "node", "node-a"]);
    assert_eq!(node["spec"]["unschedulable"], true, "{}", node["spec"]);
    // The unprotected pods are gone; the protected one is untouched.
    wait_until("only db-0 left", Duration::from_secs(10), || {
        pod_names(&s) == ["db-0"]
    });
    let db = s.json(&["get", "pod", "db-0"]);
    assert!(db["metadata"].get("deletionTimestamp").is_none(), "{db}");
    // Both went through pods/eviction (201), and the budget refused db-0 (429).
    assert_eq!(requests(&s, "POST", "pods/eviction", "201"), 2);
    assert!(requests(&s, "POST", "pods/eviction", "429") >= 1);
    assert_eq!(requests(&s, "DELETE", "pods", "200"), 0);
    // The budget's status says why.
    let pdb: Value = s.json(&["get", "pdb", "db"]);
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0, "{}", pdb["status"]);
    assert_eq!(pdb["status"]["currentHealthy"], 1, "{}", pdb["status"]);
    assert_eq!(pdb["status"]["desiredHealthy"], 1, "{}", pdb["status"]);

    // With a second replica the budget allows one disruption: drain finishes.
    running_pod(&s, "db-1", "db");
    let out = s.kubectl(&[
        "drain",
        "node-a",
        "--ignore-daemonsets",
        "--force",
        "--grace-period=0",
        "--pod-selector=app=db",
        "--timeout=12s",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // One of the two goes; the other is held by the budget again.
    assert!(!out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.matches(" evicted").count(), 1, "stdout: {stdout}");
    assert_eq!(pod_names(&s).len(), 1);
}

#[test]
fn pods_get_the_configured_default_toleration_seconds() {
    let s = Server::start_with(&[
        "--disable-controllers",
        "--default-not-ready-toleration-seconds",
        "30",
        "--default-unreachable-toleration-seconds",
        "45",
    ]);
    s.ok(&["run", "p", "--image=registry.local/p:1", "--restart=Never"]);
    let pod = s.json(&["get", "pod", "p"]);
    let got: Vec<(String, i64)> = pod["spec"]["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap().to_string(),
                t["tolerationSeconds"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("node.kubernetes.io/not-ready".to_string(), 30),
            ("node.kubernetes.io/unreachable".to_string(), 45)
        ]
    );
}
