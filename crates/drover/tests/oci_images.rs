//! End to end: RuntimeClass `oci` pods from real images — built here from
//! busybox-static, pushed to a `docker-registry` on loopback and pulled by
//! the node's image store, or loaded with `drover image import` while the
//! server runs — with `kubectl logs`, `exec` and `port-forward` into them,
//! and a missing image reported with the registry's message.

mod common;

use std::time::Duration;

use common::{drover, http_get, port_forward, Server};
use images::testing::{ImageBuilder, Registry};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(120);

fn pod(s: &Server, name: &str) -> Value {
    s.json(&["get", "pod", name])
}

fn oci_pod(name: &str, image: &str, pull_policy: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "runtimeClassName": "oci",
            "containers": [{"name": "web", "image": image, "imagePullPolicy": pull_policy}]
        }
    })
}

#[test]
fn oci_pods_run_images_pulled_from_a_registry_or_imported() {
    // An image whose command prints a line and serves /www on the pod's
    // loopback with busybox httpd.
    let image = ImageBuilder::busybox(&[
        "sh",
        "-c",
        "echo hello from the image; exec httpd -f -p 127.0.0.1:8080 -h /www",
    ]);
    let extra = image.staging("web");
    std::fs::create_dir_all(extra.join("bin")).unwrap();
    std::fs::create_dir_all(extra.join("www")).unwrap();
    std::os::unix::fs::symlink("busybox", extra.join("bin/httpd")).unwrap();
    std::os::unix::fs::symlink("busybox", extra.join("bin/tr")).unwrap();
    std::fs::write(extra.join("www/index.html"), "served from an oci pod\n").unwrap();
    image.insert(&extra, "/");
    let registry = Registry::start();
    let pulled = registry.reference("e2e/web:1");
    image.push(&pulled, None);
    let archives = tempfile::tempdir().unwrap();
    let archive = archives.path().join("web.tar");
    image.save_docker_archive(&archive, "imported/web:2");

    let s = Server::start_with_agent(&[]);
    let data_dir = s.data_dir.path().to_string_lossy().to_string();
    let (ok, out, err) = drover(&[
        "image",
        "import",
        &archive.to_string_lossy(),
        "--data-dir",
        &data_dir,
    ]);
    assert!(ok, "drover image import failed: {out}{err}");

    let apply = |object: Value| {
        s.ok_stdin(&["apply", "-f", "-"], &object.to_string());
    };
    apply(oci_pod("pulled", &pulled, "IfNotPresent"));
    apply(oci_pod("imported", "imported/web:2", "Never"));
    let missing = registry.reference("e2e/nope:1");
    apply(oci_pod("missing", &missing, "IfNotPresent"));

    for name in ["pulled", "imported"] {
        s.wait(&format!("{name} Running from its image"), TIMEOUT, || {
            pod(&s, name)["status"]["phase"] == "Running"
                && s.kubectl(&["logs", name])
                    .stdout
                    .starts_with(b"hello from the image\n")
        });
        let status = pod(&s, name)["status"]["containerStatuses"][0].clone();
        assert!(
            status["imageID"]
                .as_str()
                .is_some_and(|id| id.contains("sha256:")),
            "{name}: imageID {status}"
        );
    }

    // The kubelet's image events: a pull, and an image already present.
    let events_of = |name: &str| {
        s.ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "jsonpath={range .items[*]}{.type}|{.reason}|{.message}{\"\\n\"}{end}",
        ])
    };
    s.wait(
        "Pulling and Pulled events of the pulled image",
        TIMEOUT,
        || {
            let events = events_of("pulled");
            events.contains(&format!("Normal|Pulling|Pulling image \"{pulled}\""))
                && events.contains(&format!(
                    "Normal|Pulled|Successfully pulled image \"{pulled}\" in "
                ))
                && events.contains("Image size: ")
        },
    );
    s.wait("a Pulled event of the imported image", TIMEOUT, || {
        events_of("imported")
            .contains("Normal|Pulled|Container image \"imported/web:2\" already present on machine")
    });

    // exec (runc exec) with an exit code and stdin.
    let out = s.kubectl(&["exec", "pulled", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "kubectl exec: {out:?}");
    let upper = s.ok_stdin(&["exec", "-i", "pulled", "--", "tr", "a-z", "A-Z"], "oci\n");
    assert_eq!(upper, "OCI\n");
    // The container sees its image's files, not the host's.
    let listing = s.ok(&["exec", "imported", "--", "cat", "/www/index.html"]);
    assert_eq!(listing, "served from an oci pod\n");

    // port-forward to the pod's loopback.
    let forward = port_forward(&s, "pulled", 8080);
    s.wait("port-forward to the oci pod", TIMEOUT, || {
        http_get(forward.local_port, "/index.html").is_ok_and(|b| b == "served from an oci pod\n")
    });
    drop(forward);

    // A missing image: back-off, and the registry's answer in an event.
    s.wait("missing backs off pulling", TIMEOUT, || {
        let p = pod(&s, "missing");
        let reason = p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].clone();
        reason == "ImagePullBackOff" || reason == "ErrImagePull"
    });
    s.wait("an event with the registry's message", TIMEOUT, || {
        let events = s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=missing",
        ]);
        events.contains("failed to pull and unpack image") && events.contains("not found")
    });
    let events = events_of("missing");
    assert!(
        events.contains(&format!(
            "Warning|Failed|Failed to pull image \"{missing}\": "
        )),
        "no kubelet-style pull failure event:\n{events}"
    );

    let (ok, list, err) = drover(&["image", "ls", "--data-dir", &data_dir]);
    assert!(ok, "{err}");
    assert!(
        list.contains("e2e/web") && list.contains("imported/web"),
        "{list}"
    );

    s.ok(&[
        "delete",
        "pod",
        "pulled",
        "imported",
        "missing",
        "--grace-period=1",
    ]);
    s.wait("pods gone", TIMEOUT, || {
        s.ok(&["get", "pods", "-o", "name"]).trim().is_empty()
    });
}
