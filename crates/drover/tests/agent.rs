//! End to end: `drover server` with its node agent runs pods for real (the
//! process runtime: host processes in their own namespaces and cgroups),
//! driven by kubectl 1.32 — status, exit codes, restarts with back-off,
//! logs, configuration errors, limits and clean-up.

mod common;

use std::time::Duration;

use common::{cgroup_pids, Server};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(90);

fn pod(s: &Server, name: &str) -> Value {
    s.json(&["get", "pod", name])
}

fn container_status(pod: &Value) -> Value {
    pod["status"]["containerStatuses"][0].clone()
}

fn wait_for_phase(s: &Server, name: &str, phase: &str) -> Value {
    let mut last = Value::Null;
    s.wait(&format!("pod {name} {phase}"), TIMEOUT, || {
        last = pod(s, name);
        last["status"]["phase"] == phase
    });
    last
}

#[test]
fn the_server_is_a_ready_node_that_runs_pods() {
    let s = Server::start_with_agent(&[]);
    s.wait("node e2e-node Ready", TIMEOUT, || {
        let node = s.kubectl(&["get", "node", "e2e-node", "-o", "json"]);
        node.status.success()
            && serde_json::from_slice::<Value>(&node.stdout).is_ok_and(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    });
    let lease = s.json(&["get", "lease", "e2e-node", "-n", "kube-node-lease"]);
    assert_eq!(lease["spec"]["holderIdentity"], "e2e-node", "{lease}");

    // A pod that exits 3: Failed, exit code and reason reported, logs kept.
    s.ok(&[
        "run",
        "once",
        "--image=unused",
        "--restart=Never",
        "--command",
        "--",
        // `$$$$` is `$$` after Kubernetes' own `$(VAR)`/`$$` expansion.
        "sh",
        "-c",
        "echo hello from $(hostname) as pid $$$$; echo to stderr >&2; exit 3",
    ]);
    let p = wait_for_phase(&s, "once", "Failed");
    let c = container_status(&p);
    assert_eq!(c["state"]["terminated"]["exitCode"], 3, "{c}");
    assert_eq!(c["state"]["terminated"]["reason"], "Error", "{c}");
    assert_eq!(p["spec"]["nodeName"], "e2e-node");
    let logs = s.ok(&["logs", "once"]);
    assert_eq!(logs, "hello from once as pid 1\nto stderr\n", "{logs}");
    let tail = s.ok(&["logs", "once", "--tail=1", "--timestamps"]);
    assert!(
        tail.ends_with(" to stderr\n") && tail.starts_with("20"),
        "{tail}"
    );

    // A long-running pod is Running and Ready; deleting it stops its
    // processes and removes what it left.
    s.ok(&[
        "run",
        "server",
        "--image=unused",
        "--command",
        "--",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.2; done",
    ]);
    let p = wait_for_phase(&s, "server", "Running");
    s.wait("server Ready", TIMEOUT, || {
        pod(&s, "server")["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    assert!(p["status"]["podIP"].is_string(), "{}", p["status"]);
    let cgroup = s.agent_cgroup.clone().unwrap();
    assert!(
        !cgroup_pids(&cgroup).is_empty(),
        "no process in the pod cgroup"
    );
    s.ok(&["delete", "pod", "server", "--wait=true", "--timeout=60s"]);
    s.wait("no process left of deleted pods", TIMEOUT, || {
        // `once` has exited already; `server` was the only one running.
        cgroup_pids(&cgroup).is_empty()
    });
    let described = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=server",
    ]);
    assert!(
        described.contains("Started") && described.contains("Killing"),
        "{described}"
    );
}

#[test]
fn crashing_containers_restart_with_back_off_and_keep_previous_logs() {
    let s = Server::start_with_agent(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - name: app
    image: unused
    command: [sh, -c, 'echo run at $(date +%s%N); exit 1']
"#,
    );
    let mut last = Value::Null;
    s.wait("two restarts and CrashLoopBackOff", TIMEOUT, || {
        last = container_status(&pod(&s, "crasher"));
        last["restartCount"].as_i64().unwrap_or(0) >= 2
            && last["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let message = last["state"]["waiting"]["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("back-off ")
            && message.contains("restarting failed container=app pod=crasher_default("),
        "{last}"
    );
    assert_eq!(last["lastState"]["terminated"]["exitCode"], 1, "{last}");
    let previous = s.ok(&["logs", "crasher", "--previous"]);
    assert!(previous.starts_with("run at "), "{previous}");
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=crasher",
    ]);
    assert!(events.contains("BackOff"), "{events}");
    // Repeats are one Event with a count, as client-go's recorder does.
    s.wait("one BackOff event counted at least twice", TIMEOUT, || {
        let list = s.json(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=crasher,reason=BackOff",
        ]);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items.len() == 1 && items[0]["count"].as_i64().unwrap_or(0) >= 2
    });
}

#[test]
fn configuration_errors_are_reported_and_heal() {
    let s = Server::start_with_agent(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: configured, labels: {team: blue}}
spec:
  containers:
  - name: app
    image: unused
    command: [sh, -c, 'echo "$GREETING $POD_NAME $TEAM $KEPT"; sleep 3600']
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: settings, key: greeting}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: TEAM, valueFrom: {fieldRef: {fieldPath: "metadata.labels['team']"}}}
    - {name: KEPT, value: "$(MISSING_IS_KEPT) $(POD_NAME)"}
"#,
    );
    let mut last = Value::Null;
    s.wait("CreateContainerConfigError", TIMEOUT, || {
        last = container_status(&pod(&s, "configured"));
        last["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    assert!(
        last["state"]["waiting"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("configmap \"settings\" not found")),
        "{last}"
    );
    s.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=greeting=hi",
    ]);
    wait_for_phase(&s, "configured", "Running");
    let mut logs = String::new();
    s.wait("the resolved environment in the log", TIMEOUT, || {
        logs = s.ok(&["logs", "configured"]);
        !logs.is_empty()
    });
    assert_eq!(
        logs, "hi configured blue $(MISSING_IS_KEPT) configured\n",
        "{logs}"
    );

    // A command that does not exist says so.
    s.ok(&[
        "run",
        "typo",
        "--image=unused",
        "--restart=Never",
        "--command",
        "--",
        "no-such-command",
    ]);
    s.wait("RunContainerError for a missing command", TIMEOUT, || {
        last = container_status(&pod(&s, "typo"));
        last["state"]["waiting"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"no-such-command\": executable file not found in $PATH"))
    });
    s.ok(&[
        "delete",
        "pod",
        "configured",
        "typo",
        "--wait=true",
        "--timeout=60s",
    ]);
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() {
    let s = Server::start_with_agent(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: unused
    command: [sh, -c, 'x=$(head -c 300000000 /dev/zero | tr "\0" a); echo survived']
    resources:
      limits: {memory: 32Mi}
"#,
    );
    let p = wait_for_phase(&s, "hog", "Failed");
    let c = container_status(&p);
    assert_eq!(c["state"]["terminated"]["reason"], "OOMKilled", "{c}");
    assert_eq!(p["status"]["qosClass"], "Burstable", "{}", p["status"]);
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

#[test]
fn probes_drive_readiness_and_restart_unhealthy_containers() {
    let s = Server::start_with_agent(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  containers:
  - name: app
    image: unused
    command: [sh, -c, 'touch /tmp/drover-e2e-$(POD_UID)-ready; while true; do sleep 0.2; done']
    env:
    - {name: POD_UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
    readinessProbe:
      exec: {command: [sh, -c, 'test -e /tmp/drover-e2e-$POD_UID-ready']}
      periodSeconds: 1
      failureThreshold: 1
    livenessProbe:
      exec: {command: [sh, -c, 'test ! -e /tmp/drover-e2e-$POD_UID-sick']}
      periodSeconds: 1
      failureThreshold: 2
"#,
    );
    s.wait("probed Ready", TIMEOUT, || ready(&pod(&s, "probed")));
    let uid = pod(&s, "probed")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let flag = |name: &str| std::path::PathBuf::from(format!("/tmp/drover-e2e-{uid}-{name}"));

    // Readiness follows the probe both ways, without a restart.
    std::fs::remove_file(flag("ready")).unwrap();
    s.wait("probed not Ready", TIMEOUT, || !ready(&pod(&s, "probed")));
    std::fs::write(flag("ready"), "").unwrap();
    s.wait("probed Ready again", TIMEOUT, || ready(&pod(&s, "probed")));
    assert_eq!(container_status(&pod(&s, "probed"))["restartCount"], 0);

    // A failing liveness probe restarts the container.
    std::fs::write(flag("sick"), "").unwrap();
    s.wait("a restart after liveness failures", TIMEOUT, || {
        container_status(&pod(&s, "probed"))["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    });
    let _ = std::fs::remove_file(flag("sick"));
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=probed",
    ]);
    assert!(
        events.contains("Unhealthy") && events.contains("failed liveness probe, will be restarted"),
        "{events}"
    );
    s.ok(&["delete", "pod", "probed", "--wait=true", "--timeout=60s"]);
    let _ = std::fs::remove_file(flag("ready"));
}

#[test]
fn pods_keep_running_across_an_agent_restart() {
    let mut s = Server::start_with_agent(&[]);
    s.ok(&[
        "run",
        "steady",
        "--image=unused",
        "--command",
        "--",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.5; done",
    ]);
    s.wait("steady Ready", TIMEOUT, || ready(&pod(&s, "steady")));
    let before = container_status(&pod(&s, "steady"));
    let started = before["state"]["running"]["startedAt"].clone();
    assert!(started.is_string(), "{before}");

    // SIGKILL: no chance to stop anything. The container keeps running.
    s.kill();
    let cgroup = s.agent_cgroup.clone().unwrap();
    assert!(
        !cgroup_pids(&cgroup).is_empty(),
        "the pod died with the agent"
    );
    s.restart();
    let mut after = Value::Null;
    s.wait("steady re-adopted and Ready", TIMEOUT, || {
        let p = pod(&s, "steady");
        after = container_status(&p);
        ready(&p) && after["state"]["running"]["startedAt"] == started
    });
    assert_eq!(after["restartCount"], 0, "restarted: {after}");
    // Its log goes on (the shim writes it, not the agent).
    let mut logs = String::new();
    s.wait("more ticks in the log", TIMEOUT, || {
        logs = s.ok(&["logs", "steady"]);
        logs.lines().filter(|l| *l == "tick").count() >= 4
    });
    s.ok(&["delete", "pod", "steady", "--wait=true", "--timeout=60s"]);
}

#[test]
fn logs_follow_a_running_container_until_it_ends() {
    let s = Server::start_with_agent(&[]);
    s.ok(&[
        "run",
        "counter",
        "--image=unused",
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done",
    ]);
    s.wait("counter started", TIMEOUT, || {
        let p = pod(&s, "counter");
        p["status"]["phase"] == "Running" || p["status"]["phase"] == "Succeeded"
    });
    let followed = s.ok(&["logs", "-f", "counter"]);
    assert_eq!(
        followed, "line 1\nline 2\nline 3\nline 4\nline 5\n",
        "{followed}"
    );
    wait_for_phase(&s, "counter", "Succeeded");
}

#[test]
fn container_logs_rotate_at_the_configured_size_and_count() {
    let s = Server::start_with_agent(&[
        "--container-log-max-size=4Ki",
        "--container-log-max-files=2",
    ]);
    // 300 records of ≈100 bytes: ≈30 KiB, seven rotations' worth.
    s.ok(&[
        "run",
        "chatty",
        "--image=unused",
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo \"record $i $(printf '%080d' 0)\"; done; sleep 3600",
    ]);
    let mut logs = String::new();
    s.wait("the last record in kubectl logs", TIMEOUT, || {
        logs = s.ok(&["logs", "chatty"]);
        logs.contains("record 300 ")
    });
    assert!(
        !logs.contains("record 1 "),
        "the first records were rotated away, yet kubectl logs still shows them:\n{logs}"
    );
    let uid = pod(&s, "chatty")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = s
        .data_dir
        .path()
        .join(format!("agent/logs/default_chatty_{uid}/chatty"));
    let files: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
        .map(|e| {
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), size)
        })
        .collect();
    assert_eq!(
        files.len(),
        2,
        "--container-log-max-files=2 keeps the current file and one rotated: {files:?}"
    );
    for (name, size) in &files {
        // A file rotates once a record takes it to the limit: at most one
        // record (≈150 bytes with the CRI prefix) over 4 KiB.
        assert!(*size <= 4096 + 256, "{name} has {size} bytes: {files:?}");
    }
    s.ok(&["delete", "pod", "chatty", "--grace-period=0", "--force"]);
}

#[test]
fn kubectl_top_and_an_hpa_scale_a_cpu_burning_deployment_out_and_back() {
    let s = Server::start_with_agent(&[]);
    let flags = tempfile::tempdir().unwrap();
    let burn = flags.path().join("burn");
    std::fs::write(&burn, "").unwrap();
    // Burns CPU (capped at 200m by its limit: 200 % of its request) while
    // the flag file exists, idles otherwise.
    let manifest = format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: burner}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: burner}}}}
  template:
    metadata: {{labels: {{app: burner}}}}
    spec:
      containers:
      - name: cpu
        image: unused
        command: [sh, -c, 'while true; do if [ -e {burn} ]; then i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; else sleep 1; fi; done']
        resources:
          requests: {{cpu: 100m}}
          limits: {{cpu: 200m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: burner}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: burner}}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}
  behavior:
    scaleUp: {{stabilizationWindowSeconds: 0}}
    scaleDown: {{stabilizationWindowSeconds: 0}}
"#,
        burn = burn.display()
    );
    s.ok_stdin(&["apply", "-f", "-"], &manifest);

    // kubectl top reads metrics.k8s.io.
    let mut top = String::new();
    s.wait("kubectl top pods shows the burner", TIMEOUT, || {
        let out = s.kubectl(&["top", "pods", "-l", "app=burner"]);
        top = String::from_utf8_lossy(&out.stdout).to_string();
        out.status.success() && top.contains("burner-")
    });
    let node = s.ok(&["top", "node"]);
    assert!(node.contains("e2e-node"), "{node}");

    let replicas = |s: &Server| {
        s.json(&["get", "deployment", "burner"])["spec"]["replicas"]
            .as_i64()
            .unwrap_or(0)
    };
    let mut hpa = Value::Null;
    s.wait("scaled out to 3 on CPU", Duration::from_secs(180), || {
        hpa = s.json(&["get", "hpa.v2.autoscaling", "burner"]);
        replicas(&s) == 3
    });
    let described = s.ok(&["describe", "hpa", "burner"]);
    assert!(
        described.contains("SuccessfulRescale") && described.contains("cpu resource utilization"),
        "{described}"
    );

    // Load gone: back to one replica.
    std::fs::remove_file(&burn).unwrap();
    s.wait("scaled back to 1", Duration::from_secs(180), || {
        hpa = s.json(&["get", "hpa.v2.autoscaling", "burner"]);
        replicas(&s) == 1
    });
    s.ok(&[
        "delete",
        "deployment",
        "burner",
        "--wait=true",
        "--timeout=90s",
        "--grace-period=1",
    ]);
}

#[test]
fn replicas_on_the_same_port_each_get_a_pod_ip_the_node_reaches() {
    let s = Server::start_with_agent(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: http
        image: unused
        command: [sh, -c, 'mkdir -p /tmp/$(POD_NAME) && echo "served by $(POD_NAME)" > /tmp/$(POD_NAME)/index.html && exec python3 -m http.server 8080 --bind 0.0.0.0 --directory /tmp/$(POD_NAME)']
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        ports: [{containerPort: 8080, name: http}]
        readinessProbe:
          httpGet: {path: /, port: http}
          periodSeconds: 1
"#,
    );
    let mut pods = Vec::new();
    s.wait("2 ready web pods", TIMEOUT, || {
        let list = s.json(&["get", "pods", "-l", "app=web"]);
        pods = list["items"].as_array().cloned().unwrap_or_default();
        pods.len() == 2 && pods.iter().all(ready)
    });
    let mut ips = Vec::new();
    for p in &pods {
        let name = p["metadata"]["name"].as_str().unwrap();
        let ip = p["status"]["podIP"].as_str().unwrap().to_string();
        assert!(ip.starts_with("10."), "not a pod network address: {ip}");
        // From the node, each replica answers on its own address.
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "5",
                &format!("http://{ip}:8080/index.html"),
            ])
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            body.trim(),
            format!("served by {name}"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ips.push(ip);
    }
    assert_ne!(ips[0], ips[1]);
    s.ok(&["delete", "deployment", "web", "--wait=true"]);
    s.wait(
        "web pods gone with their network namespaces",
        TIMEOUT,
        || {
            s.json(&["get", "pods", "-l", "app=web"])["items"]
                .as_array()
                .is_some_and(|i| i.is_empty())
                && pods.iter().all(|p| {
                    let uid = p["metadata"]["uid"].as_str().unwrap();
                    !std::path::Path::new(&format!("/run/netns/drover-{uid}")).exists()
                })
        },
    );
}

/// One HTTP GET over a fresh connection; true on a 200.
fn http_ok(ip: &str, port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(addr) = format!("{ip}:{port}").parse() else {
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.0 200")
}

#[test]
fn a_rolling_update_with_max_unavailable_0_fails_no_request() {
    let s = Server::start_with_agent(&[]);
    let manifest = |version: &str| {
        format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 10
  selector: {{matchLabels: {{app: web}}}}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 3, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: web}}, annotations: {{version: "{version}"}}}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
      - name: http
        image: unused
        command: [python3, -m, http.server, "8080", --bind, 0.0.0.0, --directory, /]
        ports: [{{containerPort: 8080}}]
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"#
        )
    };
    s.ok_stdin(&["apply", "-f", "-"], &manifest("1"));
    let endpoints = |s: &Server| -> Vec<String> {
        s.json(&["get", "endpoints", "web"])["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|sub| sub["addresses"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a["ip"].as_str().map(str::to_string))
            .collect()
    };
    s.wait("10 ready endpoints", Duration::from_secs(180), || {
        endpoints(&s).len() == 10
    });

    // A client that keeps requesting every ready pod IP the Endpoints list.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        let kubeconfig = s.kubeconfig.clone();
        let home = s.home.path().to_path_buf();
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = std::process::Command::new(common::kubectl_binary())
                    .args(["get", "endpoints", "web", "-o", "json"])
                    .env("KUBECONFIG", &kubeconfig)
                    .env("HOME", &home)
                    .output()
                    .unwrap();
                let ep: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                let ips: Vec<String> = ep["subsets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|sub| sub["addresses"].as_array().cloned().unwrap_or_default())
                    .filter_map(|a| a["ip"].as_str().map(str::to_string))
                    .collect();
                for ip in ips {
                    if http_ok(&ip, 8080) {
                        ok += 1;
                    } else {
                        failed.push(ip);
                    }
                }
            }
            (ok, failed)
        })
    };
    s.ok_stdin(&["apply", "-f", "-"], &manifest("2"));
    s.wait("the rollout to finish", Duration::from_secs(240), || {
        let out = s.kubectl(&["rollout", "status", "deployment/web", "--watch=false"]);
        String::from_utf8_lossy(&out.stdout).contains("successfully rolled out")
    });
    // Old pods finish terminating while the client still runs.
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = client.join().unwrap();
    assert!(ok > 100, "only {ok} requests made");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok + failed.len() as u64
    );
    s.ok(&[
        "delete",
        "deployment",
        "web",
        "--wait=true",
        "--timeout=60s",
    ]);
}

#[test]
fn graceful_termination_sends_sigterm_and_waits_out_the_grace_period() {
    let s = Server::start_with_agent(&[]);
    let manifest = |name: &str, grace: u32, script: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: {grace}\n  containers:\n  - name: c\n    image: unused\n    command: [\"sh\", \"-c\", {script:?}]\n"
        )
    };
    // Exits on SIGTERM.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &manifest(
            "polite",
            120,
            "trap 'echo got TERM; exit 0' TERM; echo started; while true; do sleep 0.2; done",
        ),
    );
    // PID 1 of its namespace without a handler: SIGTERM does nothing, only
    // the SIGKILL at the end of the grace period stops it.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &manifest(
            "stubborn",
            5,
            "echo started; while true; do sleep 0.2; done",
        ),
    );
    for name in ["polite", "stubborn"] {
        s.wait(&format!("{name} running"), TIMEOUT, || {
            s.kubectl(&["logs", name]).stdout.starts_with(b"started")
        });
    }
    let deleted_at = std::time::Instant::now();
    s.ok(&["delete", "pod", "polite", "stubborn", "--wait=false"]);
    // The agent's status updates must not end a graceful deletion early.
    let stubborn = pod(&s, "stubborn");
    assert!(
        stubborn["metadata"]["deletionTimestamp"].is_string(),
        "stubborn should be Terminating, not gone: {stubborn}"
    );
    s.wait("polite gone after SIGTERM", TIMEOUT, || {
        !s.kubectl(&["get", "pod", "polite"]).status.success()
    });
    assert!(
        deleted_at.elapsed() < Duration::from_secs(120),
        "polite outlived its grace period: SIGTERM was not delivered"
    );
    s.wait("stubborn gone after its grace period", TIMEOUT, || {
        !s.kubectl(&["get", "pod", "stubborn"]).status.success()
    });
    assert!(
        deleted_at.elapsed() >= Duration::from_secs(5),
        "stubborn was gone after {:?}, before its 5 s grace period ended",
        deleted_at.elapsed()
    );
}

#[test]
fn post_start_and_pre_stop_hooks_run_in_the_container() {
    let s = Server::start_with_agent(&[]);
    // The hooks write to the container's own stdout (/proc/1/fd/1 in its
    // PID namespace), so the order shows in its log: postStart, then on
    // deletion preStop, and only then SIGTERM.
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hooked
spec:
  terminationGracePeriodSeconds: 60
  containers:
  - name: c
    image: unused
    command: ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo main; while true; do sleep 0.2; done"]
    lifecycle:
      postStart:
        exec:
          command: ["sh", "-c", "echo postStart > /proc/1/fd/1"]
      preStop:
        exec:
          command: ["sh", "-c", "echo preStop > /proc/1/fd/1; sleep 1"]
---
apiVersion: v1
kind: Pod
metadata:
  name: bad-hook
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: unused
    command: ["sleep", "600"]
    lifecycle:
      postStart:
        exec:
          command: ["sh", "-c", "exit 7"]
"#,
    );
    s.wait("hooked ran its postStart hook", TIMEOUT, || {
        let log = String::from_utf8_lossy(&s.kubectl(&["logs", "hooked"]).stdout).to_string();
        log.contains("postStart")
    });
    assert_eq!(pod(&s, "hooked")["status"]["phase"], "Running");
    let follower = std::process::Command::new(common::kubectl_binary())
        .args(["logs", "-f", "hooked"])
        .env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", s.home.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    s.ok(&["delete", "pod", "hooked", "--wait=false"]);
    let out = follower.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = log.lines().collect();
    let at = |what: &str| {
        lines
            .iter()
            .position(|l| *l == what)
            .unwrap_or_else(|| panic!("no {what:?} in the log:\n{log}"))
    };
    assert!(
        at("main") < at("preStop") || at("postStart") < at("preStop"),
        "{log}"
    );
    assert!(
        at("preStop") < at("got TERM"),
        "preStop must run before SIGTERM:\n{log}"
    );

    // A failing postStart hook: an event naming the hook, the container killed.
    s.wait("FailedPostStartHook event", TIMEOUT, || {
        let events = s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=bad-hook",
        ]);
        events.contains("FailedPostStartHook")
            && events.contains("Exec lifecycle hook ([\"sh\", \"-c\", \"exit 7\"])")
            && events.contains("exited with 7")
    });
    s.wait("bad-hook's container killed", TIMEOUT, || {
        pod(&s, "bad-hook")["status"]["phase"] == "Failed"
    });
}

#[test]
fn a_host_port_reaches_the_pod_and_a_second_claim_does_not_fit() {
    let s = Server::start_with_agent(&[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let manifest = |name: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: web
    image: unused
    command: [python3, -m, http.server, "8080", --bind, 0.0.0.0, --directory, /]
    ports:
    - containerPort: 8080
      hostPort: {port}
      hostIP: 127.0.0.1
"#
        )
    };
    s.ok_stdin(&["apply", "-f", "-"], &manifest("published"));
    s.wait("the pod answers on 127.0.0.1:hostPort", TIMEOUT, || {
        http_ok("127.0.0.1", port)
    });
    let p = pod(&s, "published");
    assert_ne!(
        p["status"]["podIP"], "127.0.0.1",
        "the pod has its own IP: {p}"
    );

    // The node's port is taken: a second pod asking for it fits nowhere.
    s.ok_stdin(&["apply", "-f", "-"], &manifest("second"));
    s.wait("second reports why it cannot be scheduled", TIMEOUT, || {
        let p = pod(&s, "second");
        p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["type"] == "PodScheduled"
                    && c["message"].as_str().is_some_and(|m| {
                        m.contains("didn't have free ports for the requested pod ports")
                    })
            })
    });

    // Gone with the pod. The waiting pod goes first: it is scheduled as soon
    // as the port is free (as it should be) and would then take the port
    // before the check below sees it closed.
    s.ok(&["delete", "pod", "second", "--grace-period=0", "--force"]);
    s.ok(&["delete", "pod", "published", "--grace-period=1"]);
    s.wait("the hostPort is released", TIMEOUT, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    });
}

/// The agent writes a pod's status once its containers run, not first a
/// "waiting" status made before it started them: every status write is a
/// watch event for every client of pods, and the stale one held back the
/// Running one by a round of the pod's worker.
#[test]
fn a_started_pod_s_first_container_status_is_running() {
    let s = Server::start_with_agent(&[]);
    let created: Value = serde_json::from_str(&s.ok(&[
        "run",
        "first-status",
        "--image=unused",
        "--command",
        "-o",
        "json",
        "--",
        "sleep",
        "3600",
    ]))
    .unwrap();
    let from = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for_phase(&s, "first-status", "Running");
    // Every change since the create, replayed by a watch from its revision.
    let events = s.ok(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/default/pods?watch=1&resourceVersion={from}\
             &fieldSelector=metadata.name%3Dfirst-status&timeoutSeconds=1"
        ),
    ]);
    let statuses: Vec<Value> = serde_json::Deserializer::from_str(&events)
        .into_iter::<Value>()
        .map(|e| e.unwrap()["object"]["status"].clone())
        .filter(|status| status["containerStatuses"].is_array())
        .collect();
    let first = statuses
        .first()
        .unwrap_or_else(|| panic!("no container status in {events}"));
    assert!(
        first["phase"] == "Running" && first["containerStatuses"][0]["state"]["running"].is_object(),
        "the first status with container statuses is not Running with its container running: {first}\nall of them: {statuses:?}"
    );
}
