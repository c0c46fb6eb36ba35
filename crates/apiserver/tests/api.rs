//! The API server in process, over both store backends: the request
//! semantics kubectl does not exercise directly (paging, compaction → 410,
//! watch filtering, status subresource rules, preconditions, dry-run), and two
//! servers sharing one etcd.

use std::sync::Arc;
use std::time::Duration;

use apiserver::{ApiServer, Config};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

const TOKEN: &str = "test-token";

struct Api {
    server: Arc<ApiServer>,
    _guard: Box<dyn std::any::Any + Send>,
}

async fn embedded() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = store::EmbeddedStore::open(dir.path(), store::EmbeddedOptions::default()).unwrap();
    let server = ApiServer::new(store, Config::new(vec![TOKEN.into()]));
    server.start().await.unwrap();
    Api {
        server,
        _guard: Box::new(dir),
    }
}

async fn on_etcd(etcd: &store::testing::EtcdProcess, prefix: &str) -> Arc<ApiServer> {
    let store = store::EtcdStore::connect(&[etcd.endpoint().to_string()], prefix)
        .await
        .unwrap();
    let server = ApiServer::new(store, Config::new(vec![TOKEN.into()]));
    server.start().await.unwrap();
    server
}

async fn etcd() -> Api {
    let etcd = store::testing::EtcdProcess::start()
        .expect("etcd must be installed (apt-get install -y etcd-server)");
    let server = on_etcd(&etcd, "/drover").await;
    Api {
        server,
        _guard: Box::new(etcd),
    }
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call(&self.server, method, path, content_type, body).await
    }
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call("GET", path, "application/json", None).await
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, "application/json", Some(body))
            .await
    }
}

async fn call(
    server: &Arc<ApiServer>,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", content_type)
        .body(Full::new(bytes))
        .unwrap();
    let resp = server.clone().handle(req).await;
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    (status, v)
}

/// Reads watch events until `n` arrived or the stream ends.
async fn watch(server: &Arc<ApiServer>, path: &str, n: usize) -> Vec<Value> {
    let req = Request::builder()
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = server.clone().handle(req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while events.len() < n {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(f))) => f,
            _ => break,
        };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                events.push(serde_json::from_slice(&line).unwrap());
            }
        }
    }
    events
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": name}})
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

async fn paging_is_a_consistent_snapshot(api: Api) {
    for i in 0..7 {
        assert_eq!(
            api.post(CMS, cm(&format!("c{i}"), json!({}))).await.0,
            StatusCode::CREATED
        );
    }
    let (code, page1) = api.get(&format!("{CMS}?limit=3")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(page1["items"].as_array().unwrap().len(), 3);
    assert_eq!(page1["metadata"]["remainingItemCount"], 4);
    let token = page1["metadata"]["continue"].as_str().unwrap().to_string();
    // A write after the first page is not seen by the rest of the list.
    api.post(CMS, cm("c99", json!({}))).await;
    let (_, page2) = api.get(&format!("{CMS}?limit=10&continue={token}")).await;
    let names: Vec<&str> = page2["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["c3", "c4", "c5", "c6"]);
    assert!(page2["metadata"].get("continue").is_none());
    // Label-filtered paging still fills pages.
    for i in 0..5 {
        api.post(CMS, cm(&format!("l{i}"), json!({"pick": "yes"})))
            .await;
    }
    let (_, page) = api
        .get(&format!("{CMS}?limit=2&labelSelector=pick%3Dyes"))
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
}

async fn compaction_answers_410(api: Api) {
    api.post(CMS, cm("a", json!({}))).await;
    api.post(CMS, cm("b", json!({}))).await;
    let (_, list) = api.get(&format!("{CMS}?limit=1")).await;
    let old_rv: i64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    api.post(CMS, cm("c", json!({}))).await;
    api.post(CMS, cm("d", json!({}))).await;
    let token = list["metadata"]["continue"].as_str().unwrap().to_string();
    let (current, _) = api.server.store().revisions().await.unwrap();
    api.server.store().compact(current).await.unwrap();
    let (code, status) = api.get(&format!("{CMS}?limit=1&continue={token}")).await;
    assert_eq!(code, StatusCode::GONE, "{status}");
    assert_eq!(status["reason"], "Expired");
    let events = watch(
        &api.server,
        &format!("{CMS}?watch=true&resourceVersion={old_rv}"),
        1,
    )
    .await;
    assert_eq!(events[0]["type"], "ERROR", "{events:?}");
    assert_eq!(events[0]["object"]["code"], 410);
    assert!(events[0]["object"]["message"]
        .as_str()
        .unwrap()
        .contains("too old resource version"));
}

async fn watch_filters_and_replays(api: Api) {
    let (_, created) = api.post(CMS, cm("w", json!({"app": "x"}))).await;
    let rv: i64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let path = format!("{CMS}/w");
    // Leaves the selection (DELETED for the watcher), re-enters (ADDED), is deleted.
    api.call(
        "PATCH",
        &path,
        "application/merge-patch+json",
        Some(json!({"metadata": {"labels": {"app": "y"}}})),
    )
    .await;
    api.call(
        "PATCH",
        &path,
        "application/merge-patch+json",
        Some(json!({"metadata": {"labels": {"app": "x"}}})),
    )
    .await;
    api.post(CMS, cm("other", json!({"app": "z"}))).await;
    api.call("DELETE", &path, "application/json", None).await;
    let events = watch(
        &api.server,
        &format!("{CMS}?watch=true&labelSelector=app%3Dx&resourceVersion={rv}"),
        3,
    )
    .await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["DELETED", "ADDED", "DELETED"], "{events:?}");
    // From "now" (no resourceVersion): the current state as ADDED first.
    api.post(CMS, cm("now", json!({"app": "x"}))).await;
    let events = watch(
        &api.server,
        &format!("{CMS}?watch=true&labelSelector=app%3Dx&timeoutSeconds=1"),
        5,
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["object"]["metadata"]["name"], "now");
}

async fn writes_follow_kubernetes_rules(api: Api) {
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"generateName": "web-"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}},
        "status": {"replicas": 99}});
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    // dryRun stores nothing.
    let (code, dry) = api
        .post(&format!("{deps}?dryRun=All"), deploy.clone())
        .await;
    assert_eq!(code, StatusCode::CREATED);
    assert!(dry["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("web-"));
    let (_, list) = api.get(deps).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    // generateName, status dropped on create, generation 1.
    let (code, d) = api.post(deps, deploy.clone()).await;
    assert_eq!(code, StatusCode::CREATED, "{d}");
    let name = d["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(name.len(), "web-".len() + 5);
    assert_eq!(d["metadata"]["generation"], 1);
    assert!(
        d.get("status").is_none() || d["status"].get("replicas").is_none(),
        "{d}"
    );
    let path = format!("{deps}/{name}");
    // The status subresource changes only status; the main resource only spec.
    let (code, s) = api
        .call(
            "PATCH",
            &format!("{path}/status"),
            "application/merge-patch+json",
            Some(json!({"spec": {"replicas": 7}, "status": {"replicas": 1}})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{s}");
    assert_eq!(s["status"]["replicas"], 1);
    assert_eq!(s["spec"]["replicas"], 1);
    assert_eq!(
        s["metadata"]["generation"], 1,
        "status writes do not bump generation"
    );
    let (_, m) = api
        .call(
            "PATCH",
            &path,
            "application/merge-patch+json",
            Some(json!({"spec": {"replicas": 3}, "status": {"replicas": 50}})),
        )
        .await;
    assert_eq!(m["spec"]["replicas"], 3);
    assert_eq!(m["status"]["replicas"], 1);
    assert_eq!(m["metadata"]["generation"], 2);
    // A metadata-only change does not bump generation.
    let (_, m) = api
        .call(
            "PATCH",
            &path,
            "application/merge-patch+json",
            Some(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await;
    assert_eq!(m["metadata"]["generation"], 2);
    // An update that changes nothing is not written: same resourceVersion,
    // and no watch event (kube-apiserver compares before it writes).
    let rv = m["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    for (method, path_, body) in [
        ("PUT", path.clone(), m.clone()),
        ("PUT", format!("{path}/status"), m.clone()),
        ("PATCH", path.clone(), json!({"spec": {"replicas": 3}})),
    ] {
        let content_type = if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let (code, same) = api.call(method, &path_, content_type, Some(body)).await;
        assert_eq!(code, StatusCode::OK, "no-op {method} {path_}: {same}");
        assert_eq!(
            same["metadata"]["resourceVersion"], rv,
            "a no-op {method} {path_} must keep the resourceVersion"
        );
    }
    let (_, m) = api
        .call(
            "PATCH",
            &path,
            "application/merge-patch+json",
            Some(json!({"metadata": {"annotations": {"after": "no-ops"}}})),
        )
        .await;
    let events = watch(
        &api.server,
        &format!("{deps}?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3D{name}"),
        1,
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0]["object"]["metadata"]["resourceVersion"], m["metadata"]["resourceVersion"],
        "the first event after the no-ops is the real change"
    );
    // Stale resourceVersion → 409.
    let mut stale = m.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let (code, status) = api
        .call("PUT", &path, "application/json", Some(stale))
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{status}");
    assert_eq!(status["reason"], "Conflict");
    // Delete preconditions.
    let (code, _) = api
        .call(
            "DELETE",
            &path,
            "application/json",
            Some(json!({"preconditions": {"uid": "not-it"}})),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT);
    // Finalizers hold deletion until removed.
    api.call(
        "PATCH",
        &path,
        "application/merge-patch+json",
        Some(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
    )
    .await;
    let (code, d) = api.call("DELETE", &path, "application/json", None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
    let (code, _) = api.get(&path).await;
    assert_eq!(
        code,
        StatusCode::OK,
        "still there while a finalizer remains"
    );
    api.call(
        "PATCH",
        &path,
        "application/merge-patch+json",
        Some(json!({"metadata": {"finalizers": null}})),
    )
    .await;
    let (code, _) = api.get(&path).await;
    assert_eq!(
        code,
        StatusCode::NOT_FOUND,
        "gone once the last finalizer is removed"
    );
    // Field selectors: supported and unsupported.
    let (code, _) = api
        .get("/api/v1/pods?fieldSelector=spec.nodeName%3Dn1")
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, status) = api.get("/api/v1/pods?fieldSelector=spec.bogus%3D1").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(status["message"]
        .as_str()
        .unwrap()
        .contains("field label not supported"));
    // deletecollection.
    api.post(CMS, cm("d1", json!({"del": "me"}))).await;
    api.post(CMS, cm("d2", json!({"del": "me"}))).await;
    let (code, _) = api
        .call(
            "DELETE",
            &format!("{CMS}?labelSelector=del%3Dme"),
            "application/json",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let (_, list) = api.get(&format!("{CMS}?labelSelector=del%3Dme")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

async fn tables_and_discovery(api: Api) {
    api.post(CMS, cm("t", json!({}))).await;
    let req = Request::builder()
        .uri(CMS)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = api.server.clone().handle(req).await;
    let t: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, vec!["Name", "Data", "Age"]);
    assert_eq!(t["rows"][0]["cells"][0], "t");
    let req = Request::builder()
        .uri("/apis")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header(
            "accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = api.server.clone().handle(req).await;
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("as=APIGroupDiscoveryList"));
    let d: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let apps = d["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "apps")
        .unwrap();
    let deploy = apps["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "deployments")
        .unwrap();
    assert_eq!(deploy["scope"], "Namespaced");
    assert!(deploy["subresources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["subresource"] == "scale"));
}

const PODS: &str = "/api/v1/namespaces/default/pods";
const PDBS: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";

fn pod(name: &str, labels: Value, phase: &str, ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "registry.local/c:1"}]},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

fn eviction(name: &str, delete_options: Value) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": name, "namespace": "default"}, "deleteOptions": delete_options})
}

fn toleration_seconds(pod: &Value) -> Vec<(String, Option<i64>)> {
    pod["spec"]["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap_or("").to_string(),
                t["tolerationSeconds"].as_i64(),
            )
        })
        .collect()
}

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

async fn pods_get_default_toleration_seconds(api: Api) {
    let (code, p) = api
        .post(PODS, pod("plain", json!({}), "Pending", false))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{p}");
    assert_eq!(
        toleration_seconds(&p),
        vec![
            (NOT_READY.into(), Some(300)),
            (UNREACHABLE.into(), Some(300))
        ]
    );
    for t in p["spec"]["tolerations"].as_array().unwrap() {
        assert_eq!(t["operator"], "Exists");
        assert_eq!(t["effect"], "NoExecute");
    }
    // Its own unreachable toleration is kept; only not-ready is added.
    let mut own = pod("own", json!({}), "Pending", false);
    own["spec"]["tolerations"] = json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]);
    let (code, p) = api.post(PODS, own).await;
    assert_eq!(code, StatusCode::CREATED, "{p}");
    assert_eq!(
        toleration_seconds(&p),
        vec![(UNREACHABLE.into(), Some(5)), (NOT_READY.into(), Some(300))]
    );
    // A dry run shows them too; an update that drops them gets them back.
    let (code, p) = api
        .post(
            &format!("{PODS}?dryRun=All"),
            pod("dry", json!({}), "Pending", false),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{p}");
    assert_eq!(toleration_seconds(&p).len(), 2);
    let (_, mut stored) = api.get(&format!("{PODS}/plain")).await;
    stored["spec"]
        .as_object_mut()
        .unwrap()
        .remove("tolerations");
    let (code, p) = api
        .call(
            "PUT",
            &format!("{PODS}/plain"),
            "application/json",
            Some(stored),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{p}");
    assert_eq!(toleration_seconds(&p).len(), 2);
}

async fn evictions_respect_disruption_budgets(api: Api) {
    // Discovery advertises pods/eviction as kubectl drain looks for it.
    let (_, list) = api.get("/api/v1").await;
    let ev = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/eviction")
        .expect("pods/eviction in /api/v1")
        .clone();
    assert_eq!(
        (&ev["kind"], &ev["group"], &ev["version"], &ev["verbs"]),
        (
            &json!("Eviction"),
            &json!("policy"),
            &json!("v1"),
            &json!(["create"])
        )
    );

    // A budget with both minAvailable and maxUnavailable is invalid.
    let both = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "both"},
        "spec": {"minAvailable": 1, "maxUnavailable": 1, "selector": {"matchLabels": {"app": "db"}}}});
    let (code, st) = api.post(PDBS, both).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{st}");
    assert_eq!(st["reason"], "Invalid");
    assert_eq!(st["details"]["causes"][0]["field"], "spec", "{st}");
    assert!(st["message"]
        .as_str()
        .unwrap()
        .contains("minAvailable and maxUnavailable cannot be both set"));

    for p in [
        pod("db-0", json!({"app": "db"}), "Running", true),
        pod("db-1", json!({"app": "db"}), "Running", true),
        pod("db-pending", json!({"app": "db"}), "Pending", false),
        pod("lone", json!({}), "Running", true),
    ] {
        let (code, body) = api.post(PODS, p).await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }
    let budget = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}});
    assert_eq!(api.post(PDBS, budget).await.0, StatusCode::CREATED);

    // Bad requests.
    let (code, st) = api
        .post(
            &format!("{PODS}/db-0/eviction"),
            eviction("db-1", json!({})),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{st}");
    assert_eq!(
        st["message"],
        "name in URL does not match name in Eviction object"
    );
    let (code, st) = api
        .post(
            &format!("{PODS}/ghost/eviction"),
            eviction("ghost", json!({})),
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{st}");
    assert_eq!(st["message"], "pods \"ghost\" not found");
    let (code, st) = api
        .post(
            &format!("{PODS}/db-0/eviction"),
            eviction("db-0", json!({"gracePeriodSeconds": "soon"})),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{st}");

    // A dry run changes nothing.
    let (code, st) = api
        .post(
            &format!("{PODS}/db-0/eviction"),
            eviction("db-0", json!({"dryRun": ["All"]})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{st}");
    assert_eq!(api.get(&format!("{PODS}/db-0")).await.0, StatusCode::OK);
    let (_, b) = api.get(&format!("{PDBS}/db")).await;
    assert!(b["status"].get("disruptedPods").is_none(), "{b}");

    // Two healthy pods, one must stay: the first eviction is allowed.
    let (code, st) = api
        .post(
            &format!("{PODS}/db-0/eviction"),
            eviction("db-0", json!({"gracePeriodSeconds": 0})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{st}");
    assert_eq!(st["kind"], "Status");
    assert_eq!(st["status"], "Success");
    assert_eq!(
        api.get(&format!("{PODS}/db-0")).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, b) = api.get(&format!("{PDBS}/db")).await;
    let s = &b["status"];
    assert_eq!(
        (
            &s["disruptionsAllowed"],
            &s["currentHealthy"],
            &s["desiredHealthy"],
            &s["expectedPods"],
            &s["observedGeneration"]
        ),
        (&json!(0), &json!(2), &json!(1), &json!(3), &json!(1)),
        "{b}"
    );
    assert!(s["disruptedPods"]["db-0"].is_string(), "{b}");

    // The second would leave none: 429 with the budget as the cause.
    let (code, st) = api
        .post(
            &format!("{PODS}/db-1/eviction"),
            eviction("db-1", json!({})),
        )
        .await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "{st}");
    assert_eq!(st["reason"], "TooManyRequests");
    assert_eq!(
        st["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(
        st["details"]["causes"],
        json!([{"reason": "DisruptionBudget", "message": "The disruption budget db needs 1 healthy pods and has 1 currently"}])
    );
    let (code, p) = api.get(&format!("{PODS}/db-1")).await;
    assert_eq!(code, StatusCode::OK);
    assert!(p["metadata"].get("deletionTimestamp").is_none());

    // A pending pod is no disruption: deleted whatever the budget says.
    let (code, st) = api
        .post(
            &format!("{PODS}/db-pending/eviction"),
            eviction("db-pending", json!({"gracePeriodSeconds": 0})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{st}");
    assert_eq!(
        api.get(&format!("{PODS}/db-pending")).await.0,
        StatusCode::NOT_FOUND
    );

    // An unready pod may go while the budget is met.
    let (code, body) = api
        .post(PODS, pod("db-sick", json!({"app": "db"}), "Running", false))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let (code, st) = api
        .post(
            &format!("{PODS}/db-sick/eviction"),
            eviction("db-sick", json!({"gracePeriodSeconds": 0})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{st}");

    // Without a budget, the pod is deleted gracefully (it is on a node) and
    // marked as a disruption target; policy/v1beta1 is accepted too.
    let mut beta = eviction("lone", json!({}));
    beta["apiVersion"] = json!("policy/v1beta1");
    let (code, st) = api.post(&format!("{PODS}/lone/eviction"), beta).await;
    assert_eq!(code, StatusCode::CREATED, "{st}");
    let (_, p) = api.get(&format!("{PODS}/lone")).await;
    assert!(p["metadata"]["deletionTimestamp"].is_string(), "{p}");
    let target = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DisruptionTarget")
        .expect("DisruptionTarget condition")
        .clone();
    assert_eq!(target["reason"], "EvictionByEvictionAPI");

    // Two budgets over one pod: Kubernetes refuses with a 500.
    let second = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "everything"},
        "spec": {"maxUnavailable": 1, "selector": {}}});
    assert_eq!(api.post(PDBS, second).await.0, StatusCode::CREATED);
    let (code, st) = api
        .post(
            &format!("{PODS}/db-1/eviction"),
            eviction("db-1", json!({})),
        )
        .await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{st}");
    assert_eq!(
        st["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
}

/// `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds` reach the admission.
#[tokio::test]
async fn configured_toleration_seconds_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::EmbeddedStore::open(dir.path(), store::EmbeddedOptions::default()).unwrap();
    let server = ApiServer::with_admission(
        store,
        Config::new(vec![TOKEN.into()]),
        apiserver::AdmissionConfig {
            default_not_ready_toleration_seconds: 30,
            default_unreachable_toleration_seconds: 45,
        },
    );
    server.start().await.unwrap();
    let (code, p) = call(
        &server,
        "POST",
        PODS,
        "application/json",
        Some(pod("p", json!({}), "Pending", false)),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{p}");
    assert_eq!(
        toleration_seconds(&p),
        vec![(NOT_READY.into(), Some(30)), (UNREACHABLE.into(), Some(45))]
    );
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded_store { $( #[tokio::test] async fn $name() { super::$name(super::embedded().await).await } )* }
        mod etcd_store { $( #[tokio::test] async fn $name() { super::$name(super::etcd().await).await } )* }
    };
}

on_both_backends!(
    paging_is_a_consistent_snapshot,
    compaction_answers_410,
    watch_filters_and_replays,
    writes_follow_kubernetes_rules,
    tables_and_discovery,
    pods_get_default_toleration_seconds,
    evictions_respect_disruption_budgets
);

/// Two API servers on one etcd: each sees the other's writes and watches,
/// concurrent updates of one object never lose a write, and a CRD created
/// through one is served by the other.
#[tokio::test]
async fn two_servers_share_one_etcd() {
    let etcd = store::testing::EtcdProcess::start()
        .expect("etcd must be installed (apt-get install -y etcd-server)");
    let a = on_etcd(&etcd, "/shared").await;
    let b = on_etcd(&etcd, "/shared").await;
    let (code, _) = call(
        &a,
        "POST",
        CMS,
        "application/json",
        Some(json!({"metadata": {"name": "counter"}, "data": {"n": "0"}})),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    // 40 increments split across both servers, each a read-modify-write with
    // the resourceVersion as precondition, retried on 409.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            loop {
                let (_, cur) = call(
                    &s,
                    "GET",
                    &format!("{CMS}/counter"),
                    "application/json",
                    None,
                )
                .await;
                let n: i64 = cur["data"]["n"].as_str().unwrap().parse().unwrap();
                let mut next = cur.clone();
                next["data"]["n"] = json!((n + 1).to_string());
                let (code, _) = call(
                    &s,
                    "PUT",
                    &format!("{CMS}/counter"),
                    "application/json",
                    Some(next),
                )
                .await;
                if code == StatusCode::OK {
                    return;
                }
                assert_eq!(code, StatusCode::CONFLICT);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, cur) = call(
        &b,
        "GET",
        &format!("{CMS}/counter"),
        "application/json",
        None,
    )
    .await;
    assert_eq!(cur["data"]["n"], "40", "no lost updates across servers");
    // A CRD created through A becomes served by B (B's collector watch reloads CRDs).
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Gadget", "plural": "gadgets"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let (code, body) = call(
        &a,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "application/json",
        Some(crd),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (code, _) = call(
            &b,
            "GET",
            "/apis/example.com/v1/namespaces/default/gadgets",
            "application/json",
            None,
        )
        .await;
        if code == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "server B never served the CRD created through A"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
