//! End to end: the real drover server driven by a real kubectl (1.32).

mod common;

use std::time::Duration;

use common::{wait_until, write_file, Server};
use serde_json::Value;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.local/web:1
        ports:
        - containerPort: 8080
"#;

#[test]
fn namespaces_exist_and_version_is_reported() {
    let s = Server::start();
    let out = s.ok(&["get", "namespaces"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(out.contains(ns), "namespace {ns} missing from:\n{out}");
    }
    assert!(
        out.contains("STATUS") && out.contains("Active"),
        "table columns missing:\n{out}"
    );
    let v = s.ok(&["version", "-o", "json"]);
    let v: Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["serverVersion"]["major"], "1");
    assert_eq!(v["serverVersion"]["minor"], "33");
    let sa = s.json(&["get", "serviceaccount", "default", "-n", "kube-system"]);
    assert_eq!(sa["metadata"]["name"], "default");
}

#[test]
fn apply_client_side_then_change_then_server_side() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let f = write_file(dir.path(), "d.yaml", DEPLOYMENT);
    let out = s.ok(&["apply", "-f", f.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let d = s.json(&["get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["generation"], 1);
    assert!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    // Defaults were filled in like Kubernetes does.
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );

    let changed = DEPLOYMENT
        .replace("replicas: 2", "replicas: 3")
        .replace("web:1", "web:2");
    write_file(dir.path(), "d.yaml", &changed);
    let out = s.ok(&["apply", "-f", f.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let d = s.json(&["get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/web:2"
    );
    assert_eq!(
        d["metadata"]["generation"], 2,
        "a spec change bumps generation"
    );

    // Unchanged re-apply: nothing changes, generation stays.
    let out = s.ok(&["apply", "-f", f.to_str().unwrap()]);
    assert!(out.contains("unchanged"), "{out}");

    // Server-side apply of a new object, then a conflicting field from another manager.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"1\"\n";
    let p = write_file(dir.path(), "cm.yaml", cm);
    let out = s.ok(&["apply", "--server-side", "-f", p.to_str().unwrap()]);
    assert!(out.contains("configmap/ssa serverside-applied"), "{out}");
    let got = s.json(&["get", "configmap", "ssa", "--show-managed-fields"]);
    assert_eq!(got["data"]["a"], "1");
    let managers: Vec<&str> = got["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"kubectl"), "managedFields: {managers:?}");
    let other = cm.replace("\"1\"", "\"2\"");
    let p2 = write_file(dir.path(), "cm2.yaml", &other);
    let err = s.fails(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "-f",
            p2.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        err.contains("conflict") && err.contains(".data.a"),
        "expected a field conflict, got: {err}"
    );
    s.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "other",
        "--force-conflicts",
        "-f",
        p2.to_str().unwrap(),
    ]);
    assert_eq!(s.json(&["get", "configmap", "ssa"])["data"]["a"], "2");
}

#[test]
fn get_formats_selectors_and_watch() {
    let s = Server::start();
    s.ok(&["create", "configmap", "one", "--from-literal=k=v"]);
    s.ok(&["create", "configmap", "two", "--from-literal=k=v"]);
    s.ok(&["label", "configmap", "one", "tier=front"]);
    let table = s.ok(&["get", "configmaps"]);
    assert!(
        table.starts_with("NAME") && table.contains("DATA") && table.contains("AGE"),
        "{table}"
    );
    let yaml = s.ok(&["get", "configmap", "one", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: ConfigMap") && yaml.contains("tier: front"),
        "{yaml}"
    );
    let list = s.json(&["get", "configmaps", "-l", "tier=front"]);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["one"]);
    let list = s.json(&["get", "configmaps", "-l", "tier!=front"]);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"two") && !names.contains(&"one"),
        "{names:?}"
    );
    let list = s.json(&["get", "configmaps", "--field-selector", "metadata.name=two"]);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // -w: start a watch, make a change, see it arrive.
    let mut child = std::process::Command::new(common::kubectl_binary())
        .args(["get", "configmaps", "-w", "-o", "name"])
        .env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", s.home.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // The initial list arrives first; then the new object.
    let mut seen = Vec::new();
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("watch printed nothing");
    seen.push(first);
    s.ok(&["create", "configmap", "three", "--from-literal=k=v"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|l| l.contains("three")) && std::time::Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // The initial list held one and two: three can only have come through the watch.
    assert!(
        seen.iter().any(|l| l.trim() == "configmap/three"),
        "watch lines: {seen:?}"
    );
}

#[test]
fn describe_scale_label_annotate_patch() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    let out = s.ok(&["describe", "deployment", "web"]);
    assert!(
        out.contains("Name:") && out.contains("web") && out.contains("Replicas:"),
        "{out}"
    );
    s.ok(&["scale", "deployment", "web", "--replicas=5"]);
    assert_eq!(s.json(&["get", "deployment", "web"])["spec"]["replicas"], 5);
    let scale: Value = serde_json::from_str(&s.ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    ]))
    .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["selector"], "app=web");

    s.ok(&["label", "deployment", "web", "team=blue"]);
    s.ok(&["annotate", "deployment", "web", "note=hello"]);
    let d = s.json(&["get", "deployment", "web"]);
    assert_eq!(d["metadata"]["labels"]["team"], "blue");
    assert_eq!(d["metadata"]["annotations"]["note"], "hello");
    s.ok(&["label", "deployment", "web", "team-"]);
    assert!(s.json(&["get", "deployment", "web"])["metadata"]["labels"]
        .get("team")
        .is_none());

    // Strategic merge: the container list is merged by name, not replaced.
    s.ok(&["patch", "deployment", "web", "--type=strategic", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"registry.local/web:9"}]}}}}"#]);
    let d = s.json(&["get", "deployment", "web"]);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.local/web:9");
    assert_eq!(
        c["ports"][0]["containerPort"], 8080,
        "strategic merge kept the ports: {c}"
    );
    // Merge patch.
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minReadySeconds":3}}"#,
    ]);
    assert_eq!(
        s.json(&["get", "deployment", "web"])["spec"]["minReadySeconds"],
        3
    );
    // JSON patch, including a failing test op.
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":1}]"#,
    ]);
    assert_eq!(s.json(&["get", "deployment", "web"])["spec"]["replicas"], 1);
    let err = s.fails(
        &[
            "patch",
            "deployment",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/spec/replicas","value":7}]"#,
        ],
        None,
    );
    assert!(
        err.contains("spec/replicas") || err.contains("test"),
        "{err}"
    );
}

#[test]
fn delete_cascades_and_wait() {
    let s = Server::start();
    s.ok(&["create", "configmap", "owner", "--from-literal=a=b"]);
    let owner_uid = s.json(&["get", "configmap", "owner"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let dependent = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dependent\n  labels: {{group: g}}\n  ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: owner\n    uid: {owner_uid}\n    blockOwnerDeletion: true\n"
    );
    s.ok_stdin(&["apply", "-f", "-"], &dependent);
    // Foreground: the owner disappears only after its dependent.
    s.ok(&[
        "delete",
        "configmap",
        "owner",
        "--cascade=foreground",
        "--wait=true",
        "--timeout=60s",
    ]);
    let out = s.kubectl(&["get", "configmap", "dependent"]);
    assert!(
        !out.status.success(),
        "dependent should be gone after a foreground delete of its owner"
    );

    // Background (the default): the collector deletes the orphaned dependent afterwards.
    s.ok(&["create", "configmap", "owner2", "--from-literal=a=b"]);
    let uid2 = s.json(&["get", "configmap", "owner2"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok_stdin(
        &["apply", "-f", "-"],
        &dependent
            .replace("name: owner\n", "name: owner2\n")
            .replace(&owner_uid, &uid2),
    );
    s.ok(&["delete", "configmap", "owner2"]);
    s.ok(&[
        "wait",
        "--for=delete",
        "configmap/dependent",
        "--timeout=60s",
    ]);

    // Orphan: the dependent stays, without the owner reference.
    s.ok(&["create", "configmap", "owner3", "--from-literal=a=b"]);
    let uid3 = s.json(&["get", "configmap", "owner3"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok_stdin(
        &["apply", "-f", "-"],
        &dependent
            .replace("name: owner\n", "name: owner3\n")
            .replace(&owner_uid, &uid3),
    );
    s.ok(&[
        "delete",
        "configmap",
        "owner3",
        "--cascade=orphan",
        "--wait=true",
        "--timeout=60s",
    ]);
    let d = s.json(&["get", "configmap", "dependent"]);
    assert!(
        d["metadata"].get("ownerReferences").is_none(),
        "owner reference should be removed: {d}"
    );

    // Delete by label.
    s.ok(&["create", "configmap", "x1", "--from-literal=a=b"]);
    s.ok(&["label", "configmap", "x1", "group=g"]);
    let out = s.ok(&["delete", "configmaps", "-l", "group=g"]);
    assert!(out.contains("dependent") && out.contains("x1"), "{out}");
    let left = s.json(&["get", "configmaps", "-l", "group=g"]);
    assert_eq!(left["items"].as_array().unwrap().len(), 0);
}

#[test]
fn namespace_deletion_empties_it() {
    let s = Server::start();
    s.ok(&["create", "namespace", "scratch"]);
    wait_until(
        "the default ServiceAccount of a new namespace",
        Duration::from_secs(30),
        || {
            s.kubectl(&["get", "serviceaccount", "default", "-n", "scratch"])
                .status
                .success()
        },
    );
    s.ok(&[
        "create",
        "configmap",
        "c",
        "-n",
        "scratch",
        "--from-literal=a=b",
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "scratch",
        "--from-literal=password=hunter2",
    ]);
    let secret = s.json(&["get", "secret", "s", "-n", "scratch"]);
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    assert_eq!(secret["type"], "Opaque");
    s.ok(&["delete", "namespace", "scratch", "--timeout=60s"]);
    let out = s.kubectl(&["get", "namespace", "scratch"]);
    assert!(!out.status.success(), "namespace should be gone");
    let err = s.fails(
        &[
            "create",
            "configmap",
            "c2",
            "-n",
            "scratch",
            "--from-literal=a=b",
        ],
        None,
    );
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn api_resources_and_explain() {
    let s = Server::start();
    let out = s.ok(&["api-resources"]);
    for line in [
        "deployments",
        "deploy",
        "apps/v1",
        "pods",
        "po",
        "customresourcedefinitions",
        "horizontalpodautoscalers",
    ] {
        assert!(
            out.contains(line),
            "{line} missing from api-resources:\n{out}"
        );
    }
    let out = s.ok(&["explain", "pods.spec.containers"]);
    assert!(
        out.contains("KIND:") && out.contains("Pod") && out.contains("image"),
        "{out}"
    );
    let out = s.ok(&["explain", "deployment.spec.replicas"]);
    assert!(out.contains("replicas") && out.contains("integer"), "{out}");
}

#[test]
fn custom_resources() {
    let s = Server::start();
    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              replicas: {type: integer}
          status:
            type: object
            properties:
              replicas: {type: integer}
"#;
    s.ok_stdin(&["apply", "-f", "-"], crd);
    s.ok(&[
        "wait",
        "--for=condition=established",
        "crd/widgets.example.com",
        "--timeout=60s",
    ]);
    let w = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n  replicas: 1\n";
    s.ok_stdin(&["apply", "-f", "-"], w);
    let out = s.ok(&["get", "widgets"]);
    assert!(
        out.contains("SIZE") && out.contains("w1") && out.contains('3'),
        "{out}"
    );
    assert_eq!(s.json(&["get", "wd", "w1"])["spec"]["size"], 3);
    s.ok(&["scale", "widget", "w1", "--replicas=4"]);
    assert_eq!(s.json(&["get", "widget", "w1"])["spec"]["replicas"], 4);
    s.ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":5}}"#,
    ]);
    assert_eq!(s.json(&["get", "widget", "w1"])["spec"]["size"], 5);
    // Schema validation.
    let err = s.fails(
        &["apply", "-f", "-"],
        Some(&w.replace("size: 3", "size: 0").replace("w1", "w2")),
    );
    assert!(
        err.contains("spec.size") && err.contains("greater than or equal to 1"),
        "{err}"
    );
    let err = s.fails(
        &["apply", "-f", "-"],
        Some(&w.replace("size: 3", "size: big").replace("w1", "w3")),
    );
    assert!(err.contains("spec.size"), "{err}");
    s.ok(&["delete", "widget", "w1"]);
    s.ok(&["delete", "crd", "widgets.example.com"]);
    wait_until(
        "widgets to stop being served",
        Duration::from_secs(30),
        || !s.kubectl(&["get", "widgets"]).status.success(),
    );
}

#[test]
fn bad_input_is_rejected_with_clear_errors() {
    let s = Server::start();
    // Malformed YAML (client side) and unknown kinds.
    let err = s.fails(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n"),
    );
    assert!(
        err.to_lowercase().contains("yaml") || err.contains("error"),
        "{err}"
    );
    let err = s.fails(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Gizmo\nmetadata:\n  name: g\n"),
    );
    assert!(err.contains("Gizmo"), "{err}");
    // Missing required fields.
    let err = s.fails(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n",
        ),
    );
    assert!(
        err.contains("spec.containers[0].image") && err.contains("Required value"),
        "{err}"
    );
    // Wrong types.
    let err = s.fails(
        &["apply", "-f", "-"],
        Some(&DEPLOYMENT.replace("replicas: 2", "replicas: two")),
    );
    assert!(err.contains("replicas"), "{err}");
    // Invalid names.
    let err = s.fails(&["create", "configmap", "Bad_Name"], None);
    assert!(
        err.contains("metadata.name") && err.contains("RFC 1123"),
        "{err}"
    );
    // Unknown fields with kubectl's default strict validation.
    let err = s.fails(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndatta:\n  a: b\n"),
    );
    assert!(err.contains("datta"), "{err}");
    // Bad selectors.
    let err = s.fails(&["get", "pods", "-l", "a in (b"], None);
    assert!(
        err.contains("unable to parse requirement") || err.contains("selector"),
        "{err}"
    );
    let err = s.fails(
        &["apply", "-f", "-"],
        Some(&DEPLOYMENT.replace("matchLabels: {app: web}", "matchLabels: {app: other}")),
    );
    assert!(
        err.contains("selector") && err.contains("does not match template"),
        "{err}"
    );
    // Stale resourceVersion.
    s.ok(&["create", "configmap", "stale", "--from-literal=a=b"]);
    let mut cm = s.json(&["get", "configmap", "stale"]);
    s.ok(&["label", "configmap", "stale", "x=y"]);
    cm["data"]["a"] = Value::String("changed".into());
    let err = s.fails(&["replace", "-f", "-"], Some(&cm.to_string()));
    assert!(err.contains("the object has been modified"), "{err}");
}

#[test]
fn raw_api_statuses() {
    let s = Server::start();
    let token = s.token.clone();
    let t = Some(token.as_str());
    // Credentials.
    let (code, body) = s.curl("GET", "/api/v1/namespaces", None, None, None);
    assert_eq!(code, 401, "{body}");
    assert!(
        !body.contains("kube-system"),
        "no data without credentials: {body}"
    );
    let (code, _) = s.curl("GET", "/api/v1/namespaces", Some("wrong-token"), None, None);
    assert_eq!(code, 401);
    let (code, body) = s.curl("GET", "/readyz", None, None, None);
    assert_eq!((code, body.as_str()), (200, "ok"));
    // Undecodable body → 400.
    let (code, body) = s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        t,
        Some("application/json"),
        Some(b"{not json"),
    );
    assert_eq!(code, 400, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "BadRequest");
    // Unsupported content type → 415.
    let (code, _) = s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        t,
        Some("text/plain"),
        Some(b"hello"),
    );
    assert_eq!(code, 415);
    // Oversized body → 413.
    let big = format!(
        "{{\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"a\":\"{}\"}}}}",
        "x".repeat(4 * 1024 * 1024)
    );
    let (code, _) = s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        t,
        Some("application/json"),
        Some(big.as_bytes()),
    );
    assert_eq!(code, 413);
    // Invalid object → 422 with a field path.
    let (code, body) = s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        t,
        Some("application/json"),
        Some(br#"{"metadata":{"name":"UPPER"}}"#),
    );
    assert_eq!(code, 422, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    // Not found, already exists.
    let (code, _) = s.curl(
        "GET",
        "/api/v1/namespaces/default/configmaps/nope",
        t,
        None,
        None,
    );
    assert_eq!(code, 404);
    let (code, _) = s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        t,
        Some("application/json"),
        Some(br#"{"metadata":{"name":"dup"}}"#),
    );
    assert_eq!(code, 201);
    let (code, body) = s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        t,
        Some("application/json"),
        Some(br#"{"metadata":{"name":"dup"}}"#),
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("AlreadyExists"));
    // Nothing half-applied: the rejected creates left nothing behind.
    let (_, body) = s.curl(
        "GET",
        "/api/v1/namespaces/default/configmaps",
        t,
        None,
        None,
    );
    let list: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        // Every namespace has the cluster CA, published in the background.
        .filter(|n| *n != "kube-root-ca.crt")
        .collect();
    assert_eq!(names, vec!["dup"]);
}

#[test]
fn state_survives_a_crash() {
    let mut s = Server::start();
    s.ok(&["create", "configmap", "durable", "--from-literal=k=v"]);
    let rv_before: i64 = s.json(&["get", "configmap", "durable"])["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    s.restart();
    let cm = s.json(&["get", "configmap", "durable"]);
    assert_eq!(cm["data"]["k"], "v");
    s.ok(&["create", "configmap", "after", "--from-literal=k=v"]);
    let rv_after: i64 = s.json(&["get", "configmap", "after"])["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rv_after > rv_before,
        "revisions must not go backwards across restarts ({rv_before} -> {rv_after})"
    );
}

#[test]
fn server_on_etcd() {
    let etcd = store::testing::EtcdProcess::start()
        .expect("etcd must be installed (apt-get install -y etcd-server)");
    let mut s = Server::start_with(&["--datastore-endpoint", etcd.endpoint()]);
    s.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    assert_eq!(s.json(&["get", "deployment", "web"])["spec"]["replicas"], 2);
    s.ok(&["scale", "deployment", "web", "--replicas=4"]);
    // A restarted server on the same etcd sees the same state.
    s.restart();
    assert_eq!(s.json(&["get", "deployment", "web"])["spec"]["replicas"], 4);
    let out = s.ok(&["get", "namespaces"]);
    assert!(out.contains("kube-system"), "{out}");
}

#[test]
fn auth_can_i_and_whoami() {
    let s = Server::start();
    assert_eq!(
        s.ok(&["auth", "can-i", "create", "deployments"]).trim(),
        "yes"
    );
    let out = s.ok(&["auth", "whoami"]);
    assert!(out.contains("admin"), "{out}");
}
