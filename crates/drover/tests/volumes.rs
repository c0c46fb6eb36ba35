//! End to end: pod volumes on the node agent (process runtime), driven by
//! kubectl 1.32 — ConfigMap and Secret volumes that follow updates, a
//! downward-API labels file, an emptyDir shared by two containers, a
//! missing ConfigMap that holds the pod in ContainerCreating with a
//! FailedMount event until it exists, and a subPath escape through a
//! symlink planted in an emptyDir refused. Containers see the host's file
//! system, so every mountPath is under a temp dir of the test; the mount
//! points the runtime made there go with the pod.

mod common;

use std::time::Duration;

use common::{mounts_below, Server};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(90);

fn apply(s: &Server, object: &Value) {
    s.ok_stdin(&["apply", "-f", "-"], &object.to_string());
}

fn logs(s: &Server, pod: &str, container: &str) -> String {
    let out = s.kubectl(&["logs", pod, "-c", container]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn last_line(text: &str) -> String {
    let line = text.lines().last().unwrap_or_default().to_string();
    // Shown when a wait times out (the test's output is captured).
    eprintln!("last line: {line}");
    line
}

fn events_for(s: &Server, pod: &str) -> Vec<Value> {
    s.json(&["get", "events"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["involvedObject"]["name"] == pod)
        .collect()
}

fn wait_gone(s: &Server, pod: &str) {
    s.wait(&format!("pod {pod} gone"), TIMEOUT, || {
        !s.kubectl(&["get", "pod", pod]).status.success()
    });
}

#[test]
fn config_map_secret_downward_api_and_empty_dir_volumes_reach_containers_and_follow_updates() {
    let mut s = Server::start_with_agent(&[]);
    let m = tempfile::tempdir().unwrap();
    let at = |p: &str| m.path().join(p).display().to_string();
    s.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=greeting=hello",
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=one",
    ]);
    apply(
        &s,
        &json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "reader", "labels": {"app": "reader", "tier": "web"}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "volumes": [
                    {"name": "cm", "configMap": {"name": "settings"}},
                    {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o400}},
                    {"name": "info", "downwardAPI": {"items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "shared", "emptyDir": {}}
                ],
                "containers": [
                    {"name": "writer", "image": "unused",
                     "command": ["sh", "-c", format!("echo from-writer > {}/msg; exec sleep 3600", at("w/shared"))],
                     "volumeMounts": [{"name": "shared", "mountPath": at("w/shared")}]},
                    {"name": "reader", "image": "unused",
                     "command": ["sh", "-c", format!(
                        "while true; do echo \"cm=$(cat {d}/cm/greeting) sec=$(cat {d}/sec/password) mode=$(stat -L -c %a {d}/sec/password) shared=$(cat {d}/shared/msg) labels=$(cat {d}/info/labels | tr '\\n' ,) ro=$(touch {d}/cm/x 2>/dev/null && echo writable || echo refused)\"; sleep 0.5; done",
                        d = at("r"))],
                     "volumeMounts": [
                        {"name": "cm", "mountPath": at("r/cm")},
                        {"name": "sec", "mountPath": at("r/sec")},
                        {"name": "info", "mountPath": at("r/info")},
                        {"name": "shared", "mountPath": at("r/shared")}
                     ]}
                ]
            }
        }),
    );
    let want = "cm=hello sec=one mode=400 shared=from-writer labels=app=\"reader\",tier=\"web\" ro=refused";
    let mut last = String::new();
    s.wait("the reader sees every volume", TIMEOUT, || {
        last = last_line(&logs(&s, "reader", "reader"));
        last == want
    });
    assert_eq!(last, want);

    // Updates reach the files (atomically: the reader never fails a read).
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"greeting": "bonjour"}});
    apply(&s, &cm);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                "stringData": {"password": "two"}})
        .to_string(),
    );
    s.ok(&["label", "pod", "reader", "tier=db", "--overwrite"]);
    let want = "cm=bonjour sec=two mode=400 shared=from-writer labels=app=\"reader\",tier=\"db\" ro=refused";
    s.wait("the reader sees the updates", TIMEOUT, || {
        last = last_line(&logs(&s, "reader", "reader"));
        last == want
    });
    let all = logs(&s, "reader", "reader");
    assert!(
        all.lines()
            .all(|l| !l.contains("cm= ") && !l.contains("sec= ")),
        "a reader saw a half-written volume:\n{all}"
    );

    // After a restart of the server (and its agent) the volumes are
    // re-adopted: the emptyDir is the same directory, and updates still
    // arrive.
    let uid = s.json(&["get", "pod", "reader"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let empty_dir = s
        .data_dir
        .path()
        .join("agent/volumes")
        .join(&uid)
        .join("volumes/kubernetes.io~empty-dir/shared");
    let inode =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = inode(&empty_dir);
    s.restart();
    apply(
        &s,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"greeting": "hallo"}}),
    );
    let want =
        "cm=hallo sec=two mode=400 shared=from-writer labels=app=\"reader\",tier=\"db\" ro=refused";
    s.wait("updates after a restart", TIMEOUT, || {
        last = last_line(&logs(&s, "reader", "reader"));
        last == want
    });
    assert_eq!(inode(&empty_dir), before, "the emptyDir was recreated");

    // Deleting the pod removes its volumes and the mount points made.
    let volumes = s.data_dir.path().join("agent/volumes").join(&uid);
    assert!(volumes
        .join("volumes/kubernetes.io~configmap/cm/..data")
        .exists());
    s.ok(&["delete", "pod", "reader", "--wait=false"]);
    wait_gone(&s, "reader");
    s.wait("the pod's volumes removed", TIMEOUT, || !volumes.exists());
    s.wait("the mount points removed", TIMEOUT, || {
        !m.path().join("r").exists() && !m.path().join("w").exists()
    });
    assert!(mounts_below(s.data_dir.path()).is_empty());
}

#[test]
fn a_missing_config_map_holds_the_pod_until_it_exists_and_sub_path_escapes_are_refused() {
    let s = Server::start_with_agent(&[]);
    let m = tempfile::tempdir().unwrap();
    let at = |p: &str| m.path().join(p).display().to_string();
    apply(
        &s,
        &json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waiting"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "volumes": [{"name": "cfg", "configMap": {"name": "later"}}],
                "containers": [{"name": "c", "image": "unused",
                    "command": ["sh", "-c", format!("echo \"$(cat {}/k)\"; exec sleep 3600", at("cfg"))],
                    "volumeMounts": [{"name": "cfg", "mountPath": at("cfg")}]}]
            }
        }),
    );
    let want = "MountVolume.SetUp failed for volume \"cfg\" : configmap \"later\" not found";
    s.wait("a FailedMount event", TIMEOUT, || {
        events_for(&s, "waiting")
            .iter()
            .any(|e| e["reason"] == "FailedMount" && e["type"] == "Warning" && e["message"] == want)
    });
    let pod = s.json(&["get", "pod", "waiting"]);
    assert_eq!(pod["status"]["phase"], "Pending", "{pod}");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "ContainerCreating",
        "{pod}"
    );
    s.ok(&["create", "configmap", "later", "--from-literal=k=arrived"]);
    s.wait("the pod runs once the ConfigMap exists", TIMEOUT, || {
        logs(&s, "waiting", "c") == "arrived\n"
    });

    // A container plants a symlink to / in an emptyDir; a subPath through
    // it is refused, one inside the volume works.
    apply(
        &s,
        &json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "escape"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "initContainers": [{"name": "plant", "image": "unused",
                    "command": ["sh", "-c", format!("ln -s / {d}/evil && mkdir {d}/ok && echo inside > {d}/ok/file && ln -s ok/file {d}/good", d = at("plant"))],
                    "volumeMounts": [{"name": "scratch", "mountPath": at("plant")}]}],
                "containers": [
                    {"name": "fine", "image": "unused",
                     "command": ["sh", "-c", format!("cat {}; exec sleep 3600", at("good-file"))],
                     "volumeMounts": [{"name": "scratch", "mountPath": at("good-file"), "subPath": "good"}]},
                    {"name": "victim", "image": "unused",
                     "command": ["sh", "-c", format!("cat {}/shadow; exec sleep 3600", at("etc"))],
                     "volumeMounts": [{"name": "scratch", "mountPath": at("etc"), "subPath": "evil/etc"}]}
                ]
            }
        }),
    );
    let mut victim = Value::Null;
    s.wait("the escape refused", TIMEOUT, || {
        let pod = s.json(&["get", "pod", "escape"]);
        victim = pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == "victim")
            .cloned()
            .unwrap_or_default();
        victim["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    let message = victim["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.starts_with(
            "failed to prepare subPath for volumeMount \"scratch\" of container \"victim\": subPath \"evil/etc\" goes through symlink \"evil\" -> \"/\", outside the volume"
        ),
        "{victim}"
    );
    s.wait("the subPath inside the volume mounted", TIMEOUT, || {
        logs(&s, "escape", "fine") == "inside\n"
    });

    // A subPath made in the API with `..` is refused by validation.
    let out = s.fails(
        &["apply", "-f", "-"],
        Some(
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"},
                "spec": {"volumes": [{"name": "v", "emptyDir": {}}],
                         "containers": [{"name": "c", "image": "unused",
                            "volumeMounts": [{"name": "v", "mountPath": "/x", "subPath": "../x"}]}]}})
            .to_string(),
        ),
    );
    assert!(
        out.contains("spec.containers[0].volumeMounts[0].subPath: Invalid value: \"../x\": must not contain '..'"),
        "{out}"
    );

    for pod in ["waiting", "escape"] {
        s.ok(&["delete", "pod", pod, "--wait=false"]);
    }
    for pod in ["waiting", "escape"] {
        wait_gone(&s, pod);
    }
    s.wait("every volume mount removed", TIMEOUT, || {
        mounts_below(s.data_dir.path()).is_empty()
    });
    assert!(!m.path().join("etc").exists() && !m.path().join("good-file").exists());
}

#[test]
fn a_stateful_set_keeps_its_data_on_a_local_path_volume_and_deleting_the_claim_deletes_it() {
    let s = Server::start_with_agent(&[]);
    let m = tempfile::tempdir().unwrap();
    let data = m.path().join("data").display().to_string();
    let class = s.json(&["get", "storageclass", "local-path"]);
    assert_eq!(class["provisioner"], "drover.dev/local-path", "{class}");
    assert_eq!(
        class["volumeBindingMode"], "WaitForFirstConsumer",
        "{class}"
    );
    apply(
        &s,
        &json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
            "spec": {
                "serviceName": "web", "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": "unused",
                            "command": ["sh", "-c", format!(
                                "[ -f {d}/first ] || echo \"$(hostname)-$$$$\" > {d}/first; echo \"data=$(cat {d}/first)\"; exec sleep 3600",
                                d = data)],
                            "volumeMounts": [{"name": "www", "mountPath": data}]}]
                    }
                },
                "volumeClaimTemplates": [{"metadata": {"name": "www"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}}]
            }
        }),
    );
    let mut first = String::new();
    s.wait("web-0 runs with its volume", TIMEOUT, || {
        first = last_line(&logs(&s, "web-0", "c"));
        first.starts_with("data=web-0-")
    });
    let claim = s.json(&["get", "pvc", "www-web-0"]);
    assert_eq!(claim["spec"]["storageClassName"], "local-path", "{claim}");
    assert_eq!(claim["status"]["phase"], "Bound", "{claim}");
    assert_eq!(
        claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"], "e2e-node",
        "{claim}"
    );
    let pv_name = claim["spec"]["volumeName"].as_str().unwrap().to_string();
    let pv = s.json(&["get", "pv", &pv_name]);
    assert_eq!(pv["status"]["phase"], "Bound", "{pv}");
    let dir = std::path::PathBuf::from(pv["spec"]["hostPath"]["path"].as_str().unwrap());
    assert!(
        dir.starts_with(s.data_dir.path().canonicalize().unwrap().join("storage")),
        "{pv}"
    );
    assert!(dir.join("first").is_file());

    // A new web-0 sees the same data.
    let old_uid = s.json(&["get", "pod", "web-0"])["metadata"]["uid"].clone();
    s.ok(&["delete", "pod", "web-0", "--wait=false"]);
    let mut again = String::new();
    s.wait("the new web-0 runs", TIMEOUT, || {
        let pod = s.kubectl(&["get", "pod", "web-0", "-o", "json"]);
        pod.status.success()
            && serde_json::from_slice::<Value>(&pod.stdout)
                .is_ok_and(|p| p["metadata"]["uid"] != old_uid)
            && {
                again = last_line(&logs(&s, "web-0", "c"));
                again.starts_with("data=")
            }
    });
    assert_eq!(again, first, "the new pod must see the old pod's data");

    // A claim in use is not deleted until its pod goes (pvc-protection);
    // then the volume and its directory go (reclaim policy Delete).
    s.ok(&["delete", "pvc", "www-web-0", "--wait=false"]);
    let claim = s.json(&["get", "pvc", "www-web-0"]);
    assert!(
        claim["metadata"]["deletionTimestamp"].is_string(),
        "{claim}"
    );
    assert!(
        dir.join("first").is_file(),
        "data deleted under a running pod"
    );
    s.ok(&["delete", "statefulset", "web", "--wait=false"]);
    wait_gone(&s, "web-0");
    s.wait("the claim gone", TIMEOUT, || {
        !s.kubectl(&["get", "pvc", "www-web-0"]).status.success()
    });
    s.wait("the volume deleted", TIMEOUT, || {
        !s.kubectl(&["get", "pv", &pv_name]).status.success()
    });
    assert!(!dir.exists(), "{} left behind", dir.display());
    s.wait("every volume mount removed", TIMEOUT, || {
        mounts_below(s.data_dir.path()).is_empty()
    });
}
