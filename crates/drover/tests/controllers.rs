//! End to end: the controllers and the scheduler of a real drover server,
//! driven by kubectl 1.32. No node agent runs here: the test registers a
//! Node itself and plays its kubelet — marking bound pods Running and Ready
//! and finishing terminating ones — so what is tested is exactly the control
//! loop: Deployment → ReplicaSet → pods → scheduler → binding → status.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{wait_until, Server};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(90);

fn register_node(s: &Server, cpu: &str) {
    register_named_node(s, "node-a", cpu);
}

/// Registers a Node with a Ready condition and a renewed Lease, as a
/// kubelet does on start.
fn register_named_node(s: &Server, name: &str, cpu: &str) {
    let node = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}}}\n"
    );
    s.ok_stdin(&["apply", "-f", "-"], &node);
    let status = format!(
        r#"{{"status":{{"capacity":{{"cpu":"{cpu}","memory":"8Gi","pods":"110"}},"allocatable":{{"cpu":"{cpu}","memory":"8Gi","pods":"110"}},"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"ready"}}]}}}}"#
    );
    s.ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
    renew_lease(s, name);
}

/// What a kubelet does every 10 s: renew `kube-node-lease/<node>`.
fn renew_lease(s: &Server, node: &str) {
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ");
    let lease = format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: {node}\n  namespace: kube-node-lease\nspec:\n  holderIdentity: {node}\n  leaseDurationSeconds: 40\n  renewTime: \"{now}\"\n"
    );
    s.ok_stdin(&["apply", "-f", "-"], &lease);
}

static NEXT_POD_IP: AtomicU32 = AtomicU32::new(2);

/// One pass of a fake kubelet over the pods of `selector`: bound pods become
/// Running and Ready with a pod IP; terminating ones are finished; the
/// Leases of the nodes seen are renewed. Returns the live pods.
fn kubelet_pass(s: &Server, selector: &str) -> Vec<Value> {
    kubelet_pass_except(s, selector, &[])
}

/// [`kubelet_pass`] for every node but `dead` (whose kubelets are gone:
/// their pods are left as they are and their Leases are not renewed).
fn kubelet_pass_except(s: &Server, selector: &str, dead: &[&str]) -> Vec<Value> {
    let nodes = s.json(&["get", "nodes"]);
    for n in nodes["items"].as_array().unwrap() {
        let name = n["metadata"]["name"].as_str().unwrap();
        if !dead.contains(&name) {
            renew_lease(s, name);
        }
    }
    let pods = s.json(&["get", "pods", "-l", selector]);
    let mut live = Vec::new();
    for p in pods["items"].as_array().unwrap() {
        let name = p["metadata"]["name"].as_str().unwrap();
        let node = p["spec"]["nodeName"].as_str().filter(|n| !n.is_empty());
        if node.is_some_and(|n| dead.contains(&n)) {
            continue;
        }
        if p["metadata"].get("deletionTimestamp").is_some() {
            let _ = s.kubectl(&["delete", "pod", name, "--grace-period=0", "--force"]);
            continue;
        }
        live.push(p.clone());
        let ready = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if node.is_some() && !ready {
            let ip = p["status"]["podIP"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| {
                    format!(
                        "10.42.0.{}",
                        NEXT_POD_IP.fetch_add(1, Ordering::Relaxed) % 250 + 2
                    )
                });
            let status = format!(
                r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"PodScheduled","status":"True"}},{{"type":"Initialized","status":"True"}},{{"type":"ContainersReady","status":"True"}},{{"type":"Ready","status":"True"}}]}}}}"#
            );
            let _ = s.kubectl(&[
                "patch",
                "pod",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status,
            ]);
        }
    }
    live
}

/// Plays the kubelet until `kubectl rollout status` says the rollout is done.
fn roll_out(s: &Server, deployment: &str, selector: &str) -> String {
    let mut last = String::new();
    wait_until(&format!("rollout of {deployment}: {last}"), TIMEOUT, || {
        kubelet_pass(s, selector);
        let out = s.kubectl(&[
            "rollout",
            "status",
            &format!("deployment/{deployment}"),
            "--watch=false",
        ]);
        last = String::from_utf8_lossy(&out.stdout).to_string();
        out.status.success() && last.contains("successfully rolled out")
    });
    last
}

fn images(s: &Server, selector: &str) -> Vec<String> {
    let mut v: Vec<String> = kubelet_pass(s, selector)
        .iter()
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn deployment_rolls_out_scales_and_rolls_back() {
    let s = Server::start();
    register_node(&s, "4");
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=registry.local/web:1",
        "--replicas=3",
    ]);

    // The ReplicaSet creates three pods; the scheduler binds them to the node.
    wait_until("3 pods bound to node-a", TIMEOUT, || {
        let pods = s.json(&["get", "pods", "-l", "app=web"]);
        let items = pods["items"].as_array().unwrap();
        items.len() == 3 && items.iter().all(|p| p["spec"]["nodeName"] == "node-a")
    });
    roll_out(&s, "web", "app=web");
    let d = s.json(&["get", "deployment", "web"]);
    assert_eq!(d["status"]["availableReplicas"], 3, "{}", d["status"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let rs = s.json(&["get", "replicasets", "-l", "app=web"]);
    assert_eq!(rs["items"].as_array().unwrap().len(), 1);
    assert!(rs["items"][0]["metadata"]["labels"]["pod-template-hash"].is_string());
    let events = s.ok(&["describe", "deployment", "web"]);
    assert!(
        events.contains("ScalingReplicaSet") && events.contains("Scaled up replica set"),
        "{events}"
    );
    let out = s.ok(&["get", "deployment", "web"]);
    assert!(out.contains("3/3"), "READY column: {out}");

    // A new image rolls out through a second ReplicaSet.
    s.ok(&["set", "image", "deployment/web", "web=registry.local/web:2"]);
    roll_out(&s, "web", "app=web");
    wait_until("only web:2 pods", TIMEOUT, || {
        images(&s, "app=web") == vec!["registry.local/web:2"; 3]
    });
    let history = s.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");

    // Undo goes back to the first template, as revision 3.
    s.ok(&["rollout", "undo", "deployment/web"]);
    roll_out(&s, "web", "app=web");
    wait_until("only web:1 pods again", TIMEOUT, || {
        images(&s, "app=web") == vec!["registry.local/web:1"; 3]
    });
    let d = s.json(&["get", "deployment", "web"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );

    // Scale down: surplus pods are deleted.
    s.ok(&["scale", "deployment", "web", "--replicas=1"]);
    wait_until("one pod left", TIMEOUT, || {
        kubelet_pass(&s, "app=web").len() == 1
    });
    roll_out(&s, "web", "app=web");

    // Pause: template changes wait; resume rolls them out.
    s.ok(&["rollout", "pause", "deployment/web"]);
    s.ok(&["set", "image", "deployment/web", "web=registry.local/web:3"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        images(&s, "app=web"),
        vec!["registry.local/web:1"],
        "paused deployment rolled out"
    );
    s.ok(&["rollout", "resume", "deployment/web"]);
    roll_out(&s, "web", "app=web");
    wait_until("web:3 after resume", TIMEOUT, || {
        images(&s, "app=web") == vec!["registry.local/web:3"]
    });

    // Restart: same image, a new ReplicaSet and a new pod.
    let before: Vec<String> = kubelet_pass(&s, "app=web")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    s.ok(&["rollout", "restart", "deployment/web"]);
    roll_out(&s, "web", "app=web");
    wait_until("a new pod after restart", TIMEOUT, || {
        let now: Vec<String> = kubelet_pass(&s, "app=web")
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        now.len() == 1 && now != before
    });
    let d = s.json(&["get", "deployment", "web"]);
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string(),
        "{}",
        d["spec"]["template"]
    );
    assert_eq!(images(&s, "app=web"), vec!["registry.local/web:3"]);

    // Deleting the deployment takes its ReplicaSets and pods with it.
    s.ok(&["delete", "deployment", "web"]);
    wait_until("ReplicaSets and pods of web gone", TIMEOUT, || {
        kubelet_pass(&s, "app=web");
        let rs = s.json(&["get", "replicasets", "-l", "app=web"]);
        let pods = s.json(&["get", "pods", "-l", "app=web"]);
        rs["items"].as_array().unwrap().is_empty() && pods["items"].as_array().unwrap().is_empty()
    });
}

#[test]
fn unschedulable_pods_say_why_and_schedule_when_capacity_appears() {
    let s = Server::start();
    register_node(&s, "1");
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: big}
spec:
  containers:
  - name: c
    image: registry.local/big:1
    resources: {requests: {cpu: "2"}}
"#,
    );
    let mut message = String::new();
    wait_until("PodScheduled=False on the big pod", TIMEOUT, || {
        let p = s.json(&["get", "pod", "big"]);
        message = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
            .and_then(|c| c["message"].as_str())
            .unwrap_or("")
            .to_string();
        !message.is_empty()
    });
    // The node is smaller than the pod even when empty, so preemption cannot
    // help (kube-scheduler's wording since kubernetes/kubernetes#131345).
    assert_eq!(
        message,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
    let events = s.ok(&["describe", "pod", "big"]);
    assert!(
        events.contains("FailedScheduling") && events.contains("Insufficient cpu"),
        "{events}"
    );

    // More CPU on the node: the pod is retried and bound.
    let status = r#"{"status":{"capacity":{"cpu":"4"},"allocatable":{"cpu":"4"}}}"#;
    s.ok(&[
        "patch",
        "node",
        "node-a",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
    wait_until("big pod bound", TIMEOUT, || {
        s.json(&["get", "pod", "big"])["spec"]["nodeName"] == "node-a"
    });

    // A cordoned node takes no new pods.
    s.ok(&["cordon", "node-a"]);
    s.ok(&["run", "small", "--image=registry.local/small:1"]);
    wait_until("small pod reported unschedulable", TIMEOUT, || {
        let p = s.json(&["get", "pod", "small"]);
        p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["type"] == "PodScheduled"
                    && c["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("unschedulable"))
            })
    });
    s.ok(&["uncordon", "node-a"]);
    wait_until("small pod bound after uncordon", TIMEOUT, || {
        s.json(&["get", "pod", "small"])["spec"]["nodeName"] == "node-a"
    });
}

#[test]
fn two_servers_on_one_etcd_run_one_controller_manager() {
    let etcd = store::testing::EtcdProcess::start()
        .expect("etcd must be installed (apt-get install -y etcd-server)");
    let mut a = Server::start_with(&["--datastore-endpoint", etcd.endpoint()]);
    let mut b = Server::start_with(&["--datastore-endpoint", etcd.endpoint()]);
    let holder = |s: &Server| {
        let out = s.kubectl(&[
            "get",
            "lease",
            "drover-controller-manager",
            "-n",
            "kube-system",
            "-o",
            "json",
        ]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    wait_until("a leader is elected", TIMEOUT, || !holder(&a).is_empty());
    let first = holder(&a);
    assert_eq!(first, holder(&b), "both servers see the same lease");

    // One acting controller manager: three replicas, not six.
    register_node(&a, "4");
    a.ok(&[
        "create",
        "deployment",
        "one",
        "--image=registry.local/one:1",
        "--replicas=3",
    ]);
    wait_until("3 pods of one", TIMEOUT, || {
        kubelet_pass(&b, "app=one").len() == 3
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        kubelet_pass(&a, "app=one").len(),
        3,
        "a second controller manager acted too"
    );
    assert_eq!(s_rs_count(&a, "app=one"), 1, "one ReplicaSet");

    // The leader dies: the other server takes over within the lease duration.
    let a_leads = a.log_text().contains("became the leader");
    let b_leads = b.log_text().contains("became the leader");
    assert!(
        a_leads != b_leads,
        "exactly one server says it leads (a: {a_leads}, b: {b_leads})"
    );
    let survivor = if a_leads {
        a.kill();
        &b
    } else {
        b.kill();
        &a
    };
    wait_until("the lease changes hands", TIMEOUT, || {
        let h = holder(survivor);
        !h.is_empty() && h != first
    });
    survivor.ok(&[
        "create",
        "deployment",
        "two",
        "--image=registry.local/two:1",
        "--replicas=2",
    ]);
    wait_until("2 pods of two, made by the new leader", TIMEOUT, || {
        kubelet_pass(survivor, "app=two").len() == 2
    });
    let lease = survivor.json(&[
        "get",
        "lease",
        "drover-controller-manager",
        "-n",
        "kube-system",
    ]);
    assert!(
        lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0) >= 1,
        "{lease}"
    );
}

fn s_rs_count(s: &Server, selector: &str) -> usize {
    s.json(&["get", "replicasets", "-l", selector])["items"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0)
}

fn addresses(endpoints: &Value, field: &str) -> Vec<String> {
    let mut ips: Vec<String> = endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect();
    ips.sort();
    ips
}

fn pod_ips(pods: &[Value]) -> Vec<String> {
    let mut ips: Vec<String> = pods
        .iter()
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
        .collect();
    ips.sort();
    ips
}

#[test]
fn services_get_endpoints_and_slices_of_ready_pods() {
    let s = Server::start();
    register_node(&s, "4");
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=registry.local/web:1",
        "--replicas=2",
    ]);
    s.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
    ]);
    roll_out(&s, "web", "app=web");
    let pods = kubelet_pass(&s, "app=web");
    let ips = pod_ips(&pods);
    assert_eq!(ips.len(), 2, "pods without IPs: {pods:?}");

    let mut last = Value::Null;
    wait_until("Endpoints web list both pod IPs", TIMEOUT, || {
        last = s.json(&["get", "endpoints", "web"]);
        addresses(&last, "addresses") == ips
    });
    assert_eq!(last["subsets"][0]["ports"][0]["port"], 8080, "{last}");
    assert_eq!(
        last["metadata"]["labels"]["endpoints.kubernetes.io/managed-by"],
        "endpoint-controller"
    );
    wait_until("an EndpointSlice with both pods ready", TIMEOUT, || {
        let slices = s.json(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ]);
        let endpoints: Vec<&Value> = slices["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|sl| sl["endpoints"].as_array().into_iter().flatten())
            .collect();
        endpoints.len() == 2 && endpoints.iter().all(|e| e["conditions"]["ready"] == true)
    });
    let described = s.ok(&["describe", "service", "web"]);
    assert!(
        ips.iter().all(|ip| described.contains(ip.as_str())),
        "describe service shows no endpoints: {described}"
    );

    // A pod that turns not ready moves to notReadyAddresses.
    let name = pods[0]["metadata"]["name"].as_str().unwrap();
    let ip = pods[0]["status"]["podIP"].as_str().unwrap().to_string();
    s.ok(&[
        "patch", "pod", name, "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"conditions":[{"type":"ContainersReady","status":"False"},{"type":"Ready","status":"False"}]}}"#,
    ]);
    wait_until(
        "the not-ready pod leaves the ready addresses",
        TIMEOUT,
        || {
            last = s.json(&["get", "endpoints", "web"]);
            addresses(&last, "notReadyAddresses") == vec![ip.clone()]
                && !addresses(&last, "addresses").contains(&ip)
        },
    );

    // Deleting the Service removes its Endpoints and EndpointSlices.
    s.ok(&["delete", "service", "web"]);
    wait_until("Endpoints and EndpointSlices gone", TIMEOUT, || {
        let ep = s.kubectl(&["get", "endpoints", "web"]);
        let slices = s.json(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ]);
        !ep.status.success() && slices["items"].as_array().is_some_and(|i| i.is_empty())
    });
}

const TOLERATING_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.local/web:1}]
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
"#;

#[test]
fn pods_of_an_unreachable_node_are_evicted_and_replaced() {
    let s = Server::start_with(&["--node-monitor-grace-period=3s"]);
    register_named_node(&s, "node-a", "4");
    s.ok_stdin(&["apply", "-f", "-"], TOLERATING_DEPLOYMENT);
    roll_out(&s, "web", "app=web");
    let on_a = kubelet_pass(&s, "app=web");
    assert!(on_a.iter().all(|p| p["spec"]["nodeName"] == "node-a"));
    register_named_node(&s, "node-b", "4");

    // node-a's kubelet dies: no more Lease renewals, its pods left alone.
    let dead = ["node-a"];
    let mut last = Value::Null;
    wait_until("node-a Unknown and tainted unreachable", TIMEOUT, || {
        kubelet_pass_except(&s, "app=web", &dead);
        last = s.json(&["get", "node", "node-a"]);
        let unknown = last["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "Unknown");
        let tainted = last["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute");
        unknown && tainted
    });
    let b = s.json(&["get", "node", "node-b"]);
    assert!(
        b["spec"]["taints"].is_null(),
        "the live node was tainted: {}",
        b["spec"]
    );

    // Its pods are evicted after their 2 s toleration and replaced on node-b.
    wait_until("3 ready pods on node-b", TIMEOUT, || {
        let live = kubelet_pass_except(&s, "app=web", &dead);
        let all = s.json(&["get", "pods", "-l", "app=web"]);
        let ready_on_b = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["spec"]["nodeName"] == "node-b"
                    && p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count();
        let _ = live;
        ready_on_b == 3
    });
    let pods = s.json(&["get", "pods", "-l", "app=web"]);
    for p in pods["items"].as_array().unwrap() {
        if p["spec"]["nodeName"] == "node-a" {
            assert!(
                p["metadata"]["deletionTimestamp"].is_string(),
                "a pod on the dead node was not evicted: {}",
                p["metadata"]
            );
            let target = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"] == "DisruptionTarget" && c["reason"] == "DeletionByTaintManager"
                });
            assert!(target, "no DisruptionTarget condition: {}", p["status"]);
        }
    }
    let events = s.ok(&["get", "events", "-A"]);
    assert!(events.contains("NodeNotReady"), "{events}");
}

#[test]
fn hpa_scales_to_min_replicas_and_reports_missing_metrics() {
    let s = Server::start();
    register_node(&s, "4");
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=registry.local/web:1",
        "--replicas=1",
    ]);
    s.ok(&[
        "set",
        "resources",
        "deployment",
        "web",
        "--requests=cpu=100m",
    ]);
    roll_out(&s, "web", "app=web");
    s.ok(&[
        "autoscale",
        "deployment",
        "web",
        "--min=2",
        "--max=5",
        "--cpu-percent=80",
    ]);
    wait_until(
        "the HPA raises the deployment to its minimum",
        TIMEOUT,
        || {
            kubelet_pass(&s, "app=web");
            s.json(&["get", "deployment", "web"])["spec"]["replicas"] == 2
        },
    );
    roll_out(&s, "web", "app=web");
    let mut hpa = Value::Null;
    wait_until("HPA status with conditions", TIMEOUT, || {
        hpa = s.json(&["get", "hpa.v2.autoscaling", "web"]);
        let conditions = hpa["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        hpa["status"]["desiredReplicas"] == 2
            && conditions
                .iter()
                .any(|c| c["type"] == "AbleToScale" && c["status"] == "True")
    });
    // Nothing serves metrics.k8s.io here: the HPA says so, as Kubernetes
    // does without metrics-server, and may only have acted on minReplicas.
    let described = s.ok(&["describe", "hpa", "web"]);
    assert!(
        described.contains("SuccessfulRescale") && described.contains("below Spec.MinReplicas"),
        "{described}"
    );
    wait_until("ScalingActive False for missing metrics", TIMEOUT, || {
        hpa = s.json(&["get", "hpa.v2.autoscaling", "web"]);
        hpa["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["type"] == "ScalingActive"
                    && c["status"] == "False"
                    && c["reason"] == "FailedGetResourceMetric"
            })
    });
}

/// Plays the kubelet of pods that run to completion: bound pods of
/// `selector` finish with exit code 0. Returns how many have succeeded.
fn complete_pods(s: &Server, selector: &str) -> usize {
    renew_lease(s, "node-a");
    let pods = s.json(&["get", "pods", "-l", selector]);
    let mut succeeded = 0;
    for p in pods["items"].as_array().unwrap() {
        let name = p["metadata"]["name"].as_str().unwrap();
        if p["status"]["phase"] == "Succeeded" {
            succeeded += 1;
            continue;
        }
        if p["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
            && p["metadata"]["deletionTimestamp"].is_null()
        {
            let status = r#"{"status":{"phase":"Succeeded","conditions":[{"type":"Ready","status":"False","reason":"PodCompleted"}],"containerStatuses":[{"name":"job","image":"registry.local/job:1","imageID":"","ready":false,"restartCount":0,"state":{"terminated":{"exitCode":0,"reason":"Completed"}}}]}}"#;
            let _ = s.kubectl(&[
                "patch",
                "pod",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                status,
            ]);
        }
    }
    succeeded
}

#[test]
fn jobs_complete_and_cronjobs_fire() {
    let s = Server::start();
    register_node(&s, "4");
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: batch}
spec:
  completions: 4
  parallelism: 2
  template:
    metadata: {labels: {app: batch}}
    spec:
      restartPolicy: Never
      containers: [{name: job, image: registry.local/job:1}]
"#,
    );
    // Never more than `parallelism` pods run at once.
    let mut max_active = 0;
    wait_until("job batch complete", TIMEOUT, || {
        let pods = s.json(&["get", "pods", "-l", "app=batch"]);
        let active = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["status"]["phase"] != "Succeeded" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .count();
        max_active = max_active.max(active);
        complete_pods(&s, "app=batch");
        let job = s.json(&["get", "job", "batch"]);
        job["status"]["succeeded"] == 4
            && job["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Complete" && c["status"] == "True")
    });
    assert!(
        max_active <= 2,
        "{max_active} pods ran at once with parallelism 2"
    );
    let out = s.ok(&["get", "job", "batch"]);
    assert!(out.contains("4/4"), "COMPLETIONS column: {out}");

    // A CronJob every minute creates a Job at the next minute boundary.
    s.ok(&[
        "create",
        "cronjob",
        "tick",
        "--image=registry.local/job:1",
        "--schedule=* * * * *",
    ]);
    s.wait(
        "cronjob tick fired and its job completed",
        Duration::from_secs(150),
        || {
            // The fake kubelet stays alive: without renewals the node turns
            // unreachable after 40 s and the tick's pod cannot be scheduled.
            renew_lease(&s, "node-a");
            let jobs = s.json(&["get", "jobs"]);
            let tick: Vec<&Value> = jobs["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|j| j["metadata"]["ownerReferences"][0]["name"] == "tick")
                .collect();
            if let Some(job) = tick.first() {
                let name = job["metadata"]["name"].as_str().unwrap();
                complete_pods(&s, &format!("job-name={name}"));
            }
            let cj = s.json(&["get", "cronjob", "tick"]);
            cj["status"]["lastSuccessfulTime"].is_string()
        },
    );
    let described = s.ok(&["describe", "cronjob", "tick"]);
    assert!(described.contains("SuccessfulCreate"), "{described}");
}

#[test]
fn workload_bad_input_is_rejected_with_field_paths() {
    let s = Server::start();
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad}
spec:
  replicas: 2
  strategy: {type: RollingUpdate}
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec:
      containers: [{name: c, image: registry.local/c:1}]
"#;
    for (manifest, wanted) in [
        (
            deployment.replace("replicas: 2", "replicas: -1"),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            deployment.replace("type: RollingUpdate", "type: BlueGreen"),
            "spec.strategy.type: Unsupported value: \"BlueGreen\"",
        ),
        (
            deployment.replace("matchLabels: {app: bad}", "matchLabels: {app: other}"),
            "spec.template.metadata.labels: Invalid value",
        ),
        (
            deployment.replace("matchLabels: {app: bad}", "matchExpressions: [{key: app, operator: Near}]"),
            "spec.selector.matchExpressions[0].operator",
        ),
        (
            "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: bad}\nspec:\n  schedule: \"61 * * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{name: c, image: i}]\n".to_string(),
            "spec.schedule: Invalid value: \"61 * * * *\"",
        ),
    ] {
        let err = s.fails(&["apply", "-f", "-"], Some(&manifest));
        assert!(err.contains(wanted), "wanted {wanted:?} in: {err}");
        assert!(err.contains("is invalid"), "not a 422 Invalid: {err}");
    }
    // Nothing was half-created.
    let all = s.ok(&["get", "deployments,cronjobs", "-o", "name"]);
    assert!(all.trim().is_empty(), "{all}");
}
