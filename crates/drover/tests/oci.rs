//! End to end: pods of RuntimeClass `oci` run from images by runc on the
//! server's own node, driven by kubectl 1.32. Images come from a directory
//! (the hidden `--oci-image-dir-for-tests`: a static-busybox rootfs) until
//! the image store is wired. Also: a node started with
//! `--allow-privileged=false` rejects privileged pods of both runtimes as
//! the kubelet does, and an image that cannot be pulled goes from
//! ErrImagePull to ImagePullBackOff.

mod common;

use std::path::Path;
use std::time::Duration;

use common::Server;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(90);

fn pod(s: &Server, name: &str) -> Value {
    s.json(&["get", "pod", name])
}

fn apply(s: &Server, object: Value) {
    s.ok_stdin(&["apply", "-f", "-"], &object.to_string());
}

fn pod_object(name: &str, runtime_class: Option<&str>, container: Value) -> Value {
    let mut spec = json!({"restartPolicy": "Never", "containers": [container]});
    if let Some(class) = runtime_class {
        spec["runtimeClassName"] = json!(class);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

#[test]
fn oci_pods_run_from_images_and_privileged_pods_are_refused() {
    let images = tempfile::tempdir().unwrap();
    runtime_linux::oci::make_busybox_image(
        images.path(),
        "busybox",
        Path::new("/usr/bin/busybox"),
        &["PATH=/bin"],
    )
    .expect("a busybox image from /usr/bin/busybox (busybox-static)");
    let mut s = Server::start_with_agent(&[
        &format!("--oci-image-dir-for-tests={}", images.path().display()),
        "--allow-privileged=false",
    ]);

    // A running container from the image, as user 1234, ready by an exec
    // probe (runc exec), its output in `kubectl logs`.
    apply(
        &s,
        pod_object(
            "web",
            Some("oci"),
            json!({
                "name": "web",
                "image": "example.com/busybox:1",
                "command": ["sh", "-c", "echo hello from $(hostname) as $(id -u); exec sleep 3600"],
                "securityContext": {"runAsUser": 1234},
                "readinessProbe": {"exec": {"command": ["test", "-f", "/etc/hostname"]}, "periodSeconds": 1},
            }),
        ),
    );
    s.wait("pod web Running and Ready", TIMEOUT, || {
        let p = pod(&s, "web");
        p["status"]["phase"] == "Running" && p["status"]["containerStatuses"][0]["ready"] == true
    });
    let p = pod(&s, "web");
    let status = &p["status"]["containerStatuses"][0];
    assert!(
        status["containerID"]
            .as_str()
            .is_some_and(|id| id.starts_with("runc://")),
        "{status}"
    );
    s.wait("web's log", TIMEOUT, || {
        s.ok(&["logs", "web"]).contains("hello from web as 1234")
    });

    // The container outlives the server (its shim is detached); the
    // restarted agent adopts it: same container, no restart.
    let container_id = status["containerID"].clone();
    s.restart();
    s.wait("web still Running after a server restart", TIMEOUT, || {
        let p = pod(&s, "web");
        p["status"]["phase"] == "Running" && p["status"]["containerStatuses"][0]["ready"] == true
    });
    let p = pod(&s, "web");
    assert_eq!(
        p["status"]["containerStatuses"][0]["containerID"], container_id,
        "{p}"
    );
    assert_eq!(
        p["status"]["containerStatuses"][0]["restartCount"], 0,
        "{p}"
    );

    // An image that is not there: ErrImagePull, then the back-off.
    apply(
        &s,
        pod_object(
            "missing",
            Some("oci"),
            json!({"name": "missing", "image": "example.com/no-such-image:1"}),
        ),
    );
    // (ErrImagePull shows between the failed pull and the next sync; the
    // event stays.)
    s.wait("pod missing in ImagePullBackOff", TIMEOUT, || {
        pod(&s, "missing")["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            == "ImagePullBackOff"
    });
    s.wait("an ErrImagePull event", TIMEOUT, || {
        s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=missing",
        ])
        .contains("Error: ErrImagePull")
    });
    let p = pod(&s, "missing");
    assert_eq!(p["status"]["phase"], "Pending", "{p}");

    // Privileged on a node that forbids it: rejected, whatever the runtime.
    let privileged = |name: &str| {
        json!({"name": name, "image": "busybox", "command": ["sleep", "3600"],
               "securityContext": {"privileged": true}})
    };
    apply(&s, pod_object("priv-oci", Some("oci"), privileged("c")));
    apply(&s, pod_object("priv-process", None, privileged("c")));
    for name in ["priv-oci", "priv-process"] {
        s.wait(&format!("pod {name} Failed"), TIMEOUT, || {
            pod(&s, name)["status"]["phase"] == "Failed"
        });
        let p = pod(&s, name);
        let uid = p["metadata"]["uid"].as_str().unwrap();
        assert_eq!(p["status"]["reason"], "Forbidden", "{p}");
        assert_eq!(
            p["status"]["message"],
            format!("Pod was rejected: pod with UID \"{uid}\" specified privileged container, but is disallowed"),
            "{p}"
        );
        assert!(
            p["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|c| c["containerID"].is_null() && c["state"]["running"].is_null()),
            "nothing ran: {p}"
        );
    }
    let events = s.ok(&["get", "events", "--field-selector", "reason=Forbidden"]);
    assert!(
        events.contains("priv-oci") && events.contains("priv-process"),
        "{events}"
    );

    // Deleting the pods removes their rootfs mounts, namespace files and
    // runc states.
    s.ok(&["delete", "pod", "--all", "--wait=true"]);
    s.wait("no pods left", TIMEOUT, || {
        s.json(&["get", "pods"])["items"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    });
    s.wait("the OCI runtime's mounts gone", TIMEOUT, || {
        s.mounts().is_empty()
    });
    let runc_root = s.data_dir.path().join("agent/oci/runc");
    let states: Vec<_> = std::fs::read_dir(&runc_root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(states.is_empty(), "runc states left: {states:?}");
}
