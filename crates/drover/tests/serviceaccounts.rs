//! End to end: service account credentials. `kubectl create token` asks
//! the TokenRequest API; a pod gets a projected token, the cluster CA and
//! its namespace at /var/run/secrets/kubernetes.io/serviceaccount and the
//! `KUBERNETES_SERVICE_*` variables, so the Python kubernetes client (from
//! PyPI, installed by scripts/install-deps) running in the pod with
//! `load_incluster_config()` reads the API through the `kubernetes`
//! Service; a token bound to a pod stops working when the pod is gone.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use common::Server;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(90);
const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn python_kubernetes() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-deps/python");
    assert!(
        dir.join("kubernetes").is_dir(),
        "the Python kubernetes client is not in {}: run scripts/install-deps",
        dir.display()
    );
    dir.canonicalize().unwrap()
}

fn claims(token: &str) -> Value {
    let part = token
        .trim()
        .split('.')
        .nth(1)
        .expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url claims");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// kubectl with `token` instead of the admin's.
fn kubectl_as(s: &Server, token: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--token", token];
    all.extend_from_slice(args);
    s.kubectl(&all)
}

#[test]
fn tokens_are_requested_projected_and_used_in_cluster() {
    let pylib = python_kubernetes();
    let s = Server::start_with_agent(&[]);
    s.wait(
        "the default ServiceAccount and kube-root-ca.crt",
        TIMEOUT,
        || {
            s.kubectl(&["get", "serviceaccount", "default"])
                .status
                .success()
                && s.kubectl(&["get", "configmap", "kube-root-ca.crt"])
                    .status
                    .success()
        },
    );
    let ca = s.json(&["get", "configmap", "kube-root-ca.crt"]);
    let ca_pem = std::fs::read_to_string(s.data_dir.path().join("tls/ca.crt")).unwrap();
    assert_eq!(ca["data"]["ca.crt"], ca_pem.as_str(), "the cluster CA");

    // kubectl create token: a JWT for the account, accepted by the API.
    let token = s.ok(&["create", "token", "default", "--duration=20m"]);
    let c = claims(&token);
    assert_eq!(c["sub"], "system:serviceaccount:default:default", "{c}");
    assert_eq!(c["kubernetes.io"]["namespace"], "default", "{c}");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        1200,
        "{c}"
    );
    let out = kubectl_as(&s, token.trim(), &["get", "serviceaccounts", "-o", "name"]);
    assert!(
        out.status.success(),
        "the token authenticates: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("serviceaccount/default"));
    // Who the token is: `kubectl auth whoami`, and a TokenReview.
    let out = kubectl_as(&s, token.trim(), &["auth", "whoami", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let me: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        me["status"]["userInfo"]["username"], "system:serviceaccount:default:default",
        "{me}"
    );
    let review = |token: &str, audiences: &str| -> Value {
        let body = format!(
            r#"{{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                 "spec": {{"token": "{token}", "audiences": {audiences}}}}}"#
        );
        serde_json::from_str(&s.ok_stdin(&["create", "-f", "-", "-o", "json"], &body)).unwrap()
    };
    let r = review(token.trim(), "[]");
    assert_eq!(r["status"]["authenticated"], true, "{r}");
    assert_eq!(
        r["status"]["user"]["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ]),
        "{r}"
    );
    let r = review(token.trim(), r#"["vault"]"#);
    assert_eq!(r["status"]["authenticated"], false, "another audience: {r}");
    let vault = s.ok(&["create", "token", "default", "--audience=vault"]);
    let r = review(vault.trim(), r#"["vault"]"#);
    assert_eq!(r["status"]["authenticated"], true, "{r}");
    assert_eq!(
        r["status"]["audiences"],
        serde_json::json!(["vault"]),
        "{r}"
    );
    let out = kubectl_as(&s, vault.trim(), &["get", "pods"]);
    assert!(!out.status.success(), "a vault token is not for the API");
    // The admin's token carries no audience: good for the API's only.
    let r = review(&s.token, r#"["vault"]"#);
    assert_eq!(
        r["status"]["authenticated"], false,
        "admin token for vault: {r}"
    );
    let r = review(&s.token, "[]");
    assert_eq!(r["status"]["authenticated"], true, "admin token: {r}");
    assert_eq!(r["status"]["audiences"], c["aud"], "{r}");
    let err = s.fails(
        &["create", "-f", "-"],
        Some(r#"{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {}}"#),
    );
    assert!(
        err.contains("token is required for TokenReview in authentication"),
        "{err}"
    );
    // A service account token cannot stand in for a node.
    let out = kubectl_as(
        &s,
        token.trim(),
        &["get", "--raw", "/drover/v1/nodes/n1/tunnel"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("only node credentials can"),
        "{err}"
    );
    // Service accounts are namespaced: no cluster-wide token path.
    let err = s.fails(
        &[
            "create",
            "--raw",
            "/api/v1/serviceaccounts/default/token",
            "-f",
            "-",
        ],
        Some(r#"{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}"#),
    );
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );

    // The issuer's keys, for checking tokens elsewhere.
    let oidc: Value =
        serde_json::from_str(&s.ok(&["get", "--raw", "/.well-known/openid-configuration"]))
            .unwrap();
    assert_eq!(oidc["issuer"], c["iss"], "{oidc}");
    let jwks: Value = serde_json::from_str(&s.ok(&["get", "--raw", "/openid/v1/jwks"])).unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256", "{jwks}");

    // A token with one character of its signature changed is refused (a
    // middle one: the last character's low bits may be padding).
    let mut forged: Vec<u8> = token.trim().as_bytes().to_vec();
    let at = token.trim().rfind('.').unwrap() + 20;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let out = kubectl_as(&s, &forged, &["get", "pods"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Bad requests: too short, no such account.
    let err = s.fails(&["create", "token", "default", "--duration=1m"], None);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
    let err = s.fails(&["create", "token", "nosuch"], None);
    assert!(
        err.contains("serviceaccounts \"nosuch\" not found"),
        "{err}"
    );
    // A pod naming an account that does not exist is refused.
    let err = s.fails(
        &[
            "run",
            "lost",
            "--image=unused",
            "--overrides",
            r#"{"spec": {"serviceAccountName": "nosuch"}}"#,
            "--command",
            "--",
            "sleep",
            "1",
        ],
        None,
    );
    assert!(
        err.contains("error looking up service account default/nosuch"),
        "{err}"
    );

    // A pod with the in-cluster configuration: the Python client finds the
    // API from the environment and the mounted token and CA.
    let script = r#"
import os, sys, time
from kubernetes import client, config
config.load_incluster_config()
me = client.CoreV1Api().read_namespaced_pod(os.environ['POD_NAME'], open('/var/run/secrets/kubernetes.io/serviceaccount/namespace').read())
print('in-cluster', me.metadata.name, me.spec.service_account_name, os.environ['KUBERNETES_SERVICE_HOST'], flush=True)
time.sleep(3600)
"#;
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "api-client"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "py",
                "image": "unused",
                "command": ["python3", "-c", script],
                "env": [
                    {"name": "PYTHONPATH", "value": pylib.to_string_lossy()},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
            }],
        },
    });
    s.ok_stdin(&["apply", "-f", "-"], &manifest.to_string());
    let pod = s.json(&["get", "pod", "api-client"]);
    let volume = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| {
            v["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("kube-api-access-"))
        })
        .unwrap_or_else(|| panic!("no kube-api-access volume: {}", pod["spec"]));
    let mount = &pod["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(mount["name"], volume["name"], "{pod}");
    assert_eq!(mount["mountPath"], MOUNT, "{pod}");
    assert_eq!(mount["readOnly"], true, "{pod}");

    let service_ip = s.json(&["get", "service", "kubernetes"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let mut logs = String::new();
    s.wait(
        "the in-cluster client read its own pod (or failed)",
        TIMEOUT,
        || {
            logs = String::from_utf8_lossy(&s.kubectl(&["logs", "api-client"]).stdout).into_owned();
            let p = s.json(&["get", "pod", "api-client"]);
            logs.contains("in-cluster")
                || p["status"]["containerStatuses"][0]["restartCount"].as_i64() > Some(0)
        },
    );
    if !logs.contains("in-cluster") {
        let previous = s.kubectl(&["logs", "api-client", "--previous"]);
        panic!(
            "the in-cluster client failed:\n{}",
            String::from_utf8_lossy(&previous.stdout)
        );
    }
    assert_eq!(
        logs.trim(),
        format!("in-cluster api-client default {service_ip}"),
        "pod log"
    );

    // The projected files, and the token bound to this pod.
    let listed = s.ok(&["exec", "api-client", "--", "ls", MOUNT]);
    let mut files: Vec<&str> = listed.split_whitespace().collect();
    files.sort();
    assert_eq!(files, vec!["ca.crt", "namespace", "token"], "{listed}");
    let token_path = format!("{MOUNT}/token");
    let pod_token = s.ok(&["exec", "api-client", "--", "cat", &token_path]);
    let c = claims(&pod_token);
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    assert_eq!(c["kubernetes.io"]["pod"]["name"], "api-client", "{c}");
    assert_eq!(c["kubernetes.io"]["pod"]["uid"], uid, "{c}");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3607,
        "{c}"
    );
    let out = kubectl_as(&s, pod_token.trim(), &["get", "pod", "api-client"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Gone with its pod.
    s.ok(&[
        "delete",
        "pod",
        "api-client",
        "--wait=true",
        "--timeout=60s",
    ]);
    let out = kubectl_as(&s, pod_token.trim(), &["get", "pods"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "a token of a deleted pod: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // automountServiceAccountToken: false on the account: no volume.
    s.ok(&["create", "serviceaccount", "quiet"]);
    s.ok(&[
        "patch",
        "serviceaccount",
        "quiet",
        "-p",
        r#"{"automountServiceAccountToken": false}"#,
    ]);
    s.ok(&[
        "run",
        "quiet",
        "--image=unused",
        "--overrides",
        r#"{"spec": {"serviceAccountName": "quiet"}}"#,
        "--command",
        "--",
        "sleep",
        "3600",
    ]);
    let quiet = s.json(&["get", "pod", "quiet"]);
    assert!(quiet["spec"].get("volumes").is_none(), "{}", quiet["spec"]);
    assert_eq!(quiet["spec"]["serviceAccountName"], "quiet");
}
