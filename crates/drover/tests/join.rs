//! End to end: a node agent on "another machine" (`drover agent`, its own
//! process, data dir, cgroups and pod network) joins a server with a token
//! from `drover token create`, runs the pods scheduled to it, and serves
//! their logs and metrics back through its tunnel; bad tokens are refused
//! with a clear message.

mod common;

use std::time::Duration;

use common::{drover, AgentProcess, Server};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(90);

fn node_ready(s: &Server, name: &str) -> bool {
    let out = s.kubectl(&["get", "node", name, "-o", "json"]);
    out.status.success()
        && serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|n| {
            n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn create_token(s: &Server, ttl: &str) -> String {
    let kubeconfig = s.kubeconfig.to_string_lossy().to_string();
    let (ok, out, err) = drover(&["token", "create", "--ttl", ttl, "--kubeconfig", &kubeconfig]);
    assert!(ok, "drover token create failed: {err}");
    let token = out.trim().to_string();
    assert!(token.starts_with("K10"), "not a join token: {token:?}");
    token
}

#[test]
fn an_agent_joins_with_a_token_runs_pods_and_serves_their_logs() {
    let s = Server::start();
    let kubeconfig = s.kubeconfig.to_string_lossy().to_string();
    let token = create_token(&s, "1h");

    // Bad tokens: refused before anything starts, saying why.
    let (ok, _, err) = drover(&[
        "agent",
        "--server",
        &s.url,
        "--token",
        "abcdef.0123456789abcdef",
    ]);
    assert!(!ok && err.contains("starts with K10"), "{err}");
    let (hash_and_rest, _) = token.split_once("::").unwrap();
    let wrong_ca = format!("K10{}::abcdef.0123456789abcdef", "0".repeat(64));
    let (ok, _, err) = drover(&["agent", "--server", &s.url, "--token", &wrong_ca]);
    assert!(
        !ok && err.contains("does not match the join token"),
        "{err}"
    );
    let unknown = format!("{hash_and_rest}::abcdef.0123456789abcdef");
    let (ok, _, err) = drover(&["agent", "--server", &s.url, "--token", &unknown]);
    assert!(!ok && err.contains("does not accept this token"), "{err}");

    let mut agent = AgentProcess::join(&s, &token, "remote-1");
    s.wait("node remote-1 Ready", TIMEOUT, || {
        assert!(
            agent.exited().is_none(),
            "drover agent exited; log:\n{}",
            agent.log_text()
        );
        node_ready(&s, "remote-1")
    });

    // The scheduler places a pod on the only node; it runs there.
    s.ok(&[
        "run",
        "talker",
        "--image=unused",
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "echo hello from the remote node; while true; do sleep 1; echo tick; done",
    ]);
    s.wait("pod talker Running on remote-1", TIMEOUT, || {
        let p = s.json(&["get", "pod", "talker"]);
        p["spec"]["nodeName"] == "remote-1" && p["status"]["phase"] == "Running"
    });
    // Logs come from the agent through its tunnel.
    s.wait("kubectl logs through the tunnel", TIMEOUT, || {
        let out = s.kubectl(&["logs", "talker"]).stdout;
        out.starts_with(b"hello from the remote node\ntick\n")
    });
    let tail = s.ok(&["logs", "talker", "--tail=1"]);
    assert_eq!(tail, "tick\n", "tail of the log");
    // Metrics too (the agent samples every 5 s).
    s.wait("kubectl top node remote-1", TIMEOUT, || {
        let out = s.kubectl(&["top", "node", "remote-1", "--no-headers"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("remote-1")
    });
    s.wait("kubectl top pod talker", TIMEOUT, || {
        let out = s.kubectl(&["top", "pod", "talker", "--no-headers"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("talker")
    });

    // The kubelet's resource metrics of the remote node on the server's
    // /metrics (Prometheus/OpenMetrics text, still ending in # EOF).
    let (code, metrics) = s.curl("GET", "/metrics", Some(&s.token), None, None);
    assert_eq!(code, 200, "{metrics}");
    let labels = "{container=\"talker\",namespace=\"default\",pod=\"talker\",node=\"remote-1\"}";
    for name in [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
    ] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{labels} ")))
            .unwrap_or_else(|| panic!("no {name}{labels} in /metrics:\n{metrics}"));
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value > 0.0, "{line}");
    }
    assert!(
        metrics.contains("node_memory_working_set_bytes{node=\"remote-1\"}"),
        "{metrics}"
    );
    assert!(
        metrics.trim_end().ends_with("# EOF"),
        "OpenMetrics must end with # EOF"
    );

    // exec, stdin and port-forward also go through the tunnel.
    let out = s.kubectl(&["exec", "talker", "--", "sh", "-c", "exit 3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "kubectl exec exit code: {out:?}"
    );
    let upper = s.ok_stdin(
        &["exec", "-i", "talker", "--", "tr", "a-z", "A-Z"],
        "through the tunnel\n",
    );
    assert_eq!(upper, "THROUGH THE TUNNEL\n");
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: web
    image: unused
    command: [python3, -m, http.server, "8080", --bind, 127.0.0.1, --directory, /etc]
"#,
    );
    // Listening, not just Running: a port-forward whose first connection
    // is refused ends (kubectl's behaviour), and python may take a while
    // to start on a busy machine.
    s.wait("web listening", TIMEOUT, || {
        s.kubectl(&[
            "exec",
            "web",
            "--",
            "python3",
            "-c",
            "import socket; socket.create_connection(('127.0.0.1', 8080))",
        ])
        .status
        .success()
    });
    let forward = common::port_forward(&s, "web", 8080);
    let want = std::fs::read_to_string("/etc/hostname").unwrap();
    s.wait("port-forward through the tunnel answers", TIMEOUT, || {
        common::http_get(forward.local_port, "/hostname").is_ok_and(|b| b == want)
    });
    drop(forward);

    // The agent traded the join token for a credential of its own.
    let (ok, list, err) = drover(&["token", "list", "--kubeconfig", &kubeconfig]);
    assert!(ok, "{err}");
    assert!(
        list.lines()
            .any(|l| l.contains("never") && l.contains("remote-1")),
        "no credential of node remote-1 in:\n{list}"
    );

    // With the join token deleted, a restarted agent still gets in (its
    // own credential) and re-adopts the pod without restarting it.
    let id = token.split("::").nth(1).unwrap().split('.').next().unwrap();
    let (ok, _, err) = drover(&["token", "delete", id, "--kubeconfig", &kubeconfig]);
    assert!(ok, "{err}");
    agent.kill();
    agent.start(&token);
    s.wait("the restarted agent's tunnel serves logs", TIMEOUT, || {
        assert!(
            agent.exited().is_none(),
            "restarted drover agent exited; log:\n{}",
            agent.log_text()
        );
        agent.log_text().matches("tunnel to").count() >= 2
            && s.kubectl(&["logs", "talker", "--tail=1"]).status.success()
    });
    let p = s.json(&["get", "pod", "talker"]);
    assert_eq!(
        p["status"]["containerStatuses"][0]["restartCount"], 0,
        "{p}"
    );
    assert_eq!(p["status"]["phase"], "Running", "{p}");

    s.ok(&["delete", "pod", "talker", "web", "--grace-period=1"]);
    s.wait("pods talker and web gone", TIMEOUT, || {
        !s.kubectl(&["get", "pod", "talker"]).status.success()
            && !s.kubectl(&["get", "pod", "web"]).status.success()
    });
    let left: Vec<String> = common::cgroup_pids(&agent.cgroup)
        .into_iter()
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            )
        })
        .collect();
    assert!(
        left.is_empty(),
        "processes left in the agent's cgroup after the pod was deleted: {left:?}\nagent log:\n{}",
        agent.log_text()
    );
}

#[test]
fn an_expired_token_is_refused() {
    let s = Server::start();
    let token = create_token(&s, "1s");
    std::thread::sleep(Duration::from_secs(2));
    let (ok, _, err) = drover(&["agent", "--server", &s.url, "--token", &token]);
    assert!(!ok && err.contains("does not accept this token"), "{err}");
}
