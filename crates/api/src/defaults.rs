//! Defaulting: the values kube-apiserver fills in when a field is omitted, so
//! that objects read back look like they do on Kubernetes (and controllers can
//! rely on them being set).

use serde_json::{json, Map, Value};

/// Fill in defaults in place for an object of `group`/`kind`.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    match (group, kind) {
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
            let status = obj
                .as_object_mut()
                .unwrap()
                .entry("status")
                .or_insert_with(|| json!({}));
            if let Some(s) = status.as_object_mut() {
                s.entry("phase").or_insert(json!("Pending"));
                s.entry("qosClass").or_insert(json!("BestEffort"));
            }
            let qos = obj.get("spec").map(qos_class).unwrap_or("BestEffort");
            obj["status"]["qosClass"] = json!(qos);
        }
        ("", "PodTemplate") => default_template(obj.get_mut("template")),
        ("", "ReplicationController") => {
            let spec = ensure_object(obj, "spec");
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("minReadySeconds").or_insert(json!(0));
            default_template(obj["spec"].get_mut("template"));
            // An RC's selector defaults to its template's labels.
            if obj["spec"].get("selector").is_none() {
                if let Some(labels) = obj["spec"].pointer("/template/metadata/labels").cloned() {
                    obj["spec"]["selector"] = labels;
                }
            }
        }
        ("apps", "Deployment") => {
            let spec = ensure_object(obj, "spec");
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("progressDeadlineSeconds").or_insert(json!(600));
            let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
            if let Some(st) = strategy.as_object_mut() {
                let t = st.entry("type").or_insert(json!("RollingUpdate")).clone();
                if t == "RollingUpdate" {
                    let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        ru.entry("maxUnavailable").or_insert(json!("25%"));
                        ru.entry("maxSurge").or_insert(json!("25%"));
                    }
                }
            }
            default_template(obj["spec"].get_mut("template"));
        }
        ("apps", "ReplicaSet") => {
            let spec = ensure_object(obj, "spec");
            spec.entry("replicas").or_insert(json!(1));
            default_template(obj["spec"].get_mut("template"));
        }
        ("apps", "StatefulSet") => {
            let spec = ensure_object(obj, "spec");
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("podManagementPolicy")
                .or_insert(json!("OrderedReady"));
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("persistentVolumeClaimRetentionPolicy")
                .or_insert(json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
            let strategy = spec.entry("updateStrategy").or_insert_with(|| json!({}));
            if let Some(st) = strategy.as_object_mut() {
                let t = st.entry("type").or_insert(json!("RollingUpdate")).clone();
                if t == "RollingUpdate" {
                    let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        ru.entry("partition").or_insert(json!(0));
                    }
                }
            }
            default_template(obj["spec"].get_mut("template"));
            if let Some(Value::Array(claims)) = obj["spec"].get_mut("volumeClaimTemplates") {
                for c in claims {
                    default_pvc_spec(c.get_mut("spec"));
                    if let Some(m) = c.as_object_mut() {
                        m.entry("apiVersion").or_insert(json!("v1"));
                        m.entry("kind").or_insert(json!("PersistentVolumeClaim"));
                    }
                }
            }
        }
        ("apps", "DaemonSet") => {
            let spec = ensure_object(obj, "spec");
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            let strategy = spec.entry("updateStrategy").or_insert_with(|| json!({}));
            if let Some(st) = strategy.as_object_mut() {
                let t = st.entry("type").or_insert(json!("RollingUpdate")).clone();
                if t == "RollingUpdate" {
                    let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        ru.entry("maxUnavailable").or_insert(json!(1));
                        ru.entry("maxSurge").or_insert(json!(0));
                    }
                }
            }
            default_template(obj["spec"].get_mut("template"));
        }
        ("batch", "Job") => {
            default_job_spec(obj.get_mut("spec"));
        }
        ("batch", "CronJob") => {
            let spec = ensure_object(obj, "spec");
            spec.entry("concurrencyPolicy").or_insert(json!("Allow"));
            spec.entry("suspend").or_insert(json!(false));
            spec.entry("successfulJobsHistoryLimit").or_insert(json!(3));
            spec.entry("failedJobsHistoryLimit").or_insert(json!(1));
            if let Some(jt) = obj["spec"].get_mut("jobTemplate") {
                default_job_spec(jt.get_mut("spec"));
            }
        }
        ("", "Service") => default_service(obj),
        ("", "Namespace") => {
            let spec = ensure_object(obj, "spec");
            spec.entry("finalizers").or_insert(json!(["kubernetes"]));
            let status = ensure_object(obj, "status");
            status.entry("phase").or_insert(json!("Active"));
            // Like kube-apiserver: every namespace carries its own name as a label.
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(name) = name {
                let meta = ensure_object(obj, "metadata");
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
        }
        ("", "Secret") => {
            if let Some(m) = obj.as_object_mut() {
                m.entry("type").or_insert(json!("Opaque"));
                fold_string_data(m);
            }
        }
        ("", "PersistentVolumeClaim") => {
            default_pvc_spec(obj.get_mut("spec"));
            let status = ensure_object(obj, "status");
            status.entry("phase").or_insert(json!("Pending"));
        }
        ("", "PersistentVolume") => {
            let spec = ensure_object(obj, "spec");
            spec.entry("persistentVolumeReclaimPolicy")
                .or_insert(json!("Retain"));
            spec.entry("volumeMode").or_insert(json!("Filesystem"));
            let status = ensure_object(obj, "status");
            status.entry("phase").or_insert(json!("Pending"));
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            let spec = ensure_object(obj, "spec");
            spec.entry("minReplicas").or_insert(json!(1));
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            if let Some(m) = obj.as_object_mut() {
                m.entry("preemptionPolicy")
                    .or_insert(json!("PreemptLowerPriority"));
            }
        }
        _ => {}
    }
}

fn ensure_object<'a>(obj: &'a mut Value, field: &str) -> &'a mut Map<String, Value> {
    let m = obj.as_object_mut().expect("objects are JSON objects");
    let v = m.entry(field).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().unwrap()
}

/// `stringData` is write-only: its entries are stored base64-encoded in
/// `data`, overriding keys of the same name (as the v1 → internal
/// conversion of kube-apiserver does).
fn fold_string_data(secret: &mut Map<String, Value>) {
    use base64::Engine;
    let Some(Value::Object(strings)) = secret.remove("stringData") else {
        return;
    };
    let data = secret.entry("data").or_insert_with(|| json!({}));
    if data.is_null() {
        *data = json!({});
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in strings {
            let text = v.as_str().unwrap_or_default();
            data.insert(
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(text.as_bytes())),
            );
        }
    }
}

fn default_template(template: Option<&mut Value>) {
    if let Some(t) = template {
        if let Some(spec) = t.get_mut("spec") {
            default_pod_spec(spec);
        }
    }
}

fn default_job_spec(spec: Option<&mut Value>) {
    let Some(spec) = spec else { return };
    let Some(m) = spec.as_object_mut() else {
        return;
    };
    let indexed = m.get("completionMode").and_then(Value::as_str) == Some("Indexed");
    m.entry("completionMode").or_insert(json!("NonIndexed"));
    m.entry("backoffLimit").or_insert(json!(6));
    m.entry("parallelism").or_insert(json!(1));
    if indexed {
        m.entry("completions").or_insert(json!(1));
    }
    m.entry("suspend").or_insert(json!(false));
    m.entry("podReplacementPolicy")
        .or_insert(json!("TerminatingOrFailed"));
    if let Some(t) = m.get_mut("template") {
        if let Some(ps) = t.get_mut("spec") {
            default_pod_spec(ps);
        }
    }
}

fn default_pvc_spec(spec: Option<&mut Value>) {
    if let Some(m) = spec.and_then(Value::as_object_mut) {
        m.entry("volumeMode").or_insert(json!("Filesystem"));
    }
}

fn default_service(obj: &mut Value) {
    let spec = ensure_object(obj, "spec");
    let ty = spec
        .entry("type")
        .or_insert(json!("ClusterIP"))
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    if ty != "ExternalName" {
        // clusterIPs[0] is clusterIP: whichever the client set fills the other.
        let ip = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let first = spec
            .get("clusterIPs")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .map(str::to_string);
        match first {
            None if !ip.is_empty() => {
                spec.insert("clusterIPs".into(), json!([ip]));
            }
            Some(first) if ip.is_empty() => {
                spec.insert("clusterIP".into(), json!(first));
            }
            _ => {}
        }
        let affinity = spec
            .entry("sessionAffinity")
            .or_insert(json!("None"))
            .clone();
        if affinity == "ClientIP" {
            let config = spec
                .entry("sessionAffinityConfig")
                .or_insert_with(|| json!({}));
            if config.is_null() {
                *config = json!({});
            }
            if let Some(c) = config.as_object_mut() {
                let client = c.entry("clientIP").or_insert_with(|| json!({}));
                if let Some(client) = client.as_object_mut() {
                    // kube-apiserver's DefaultClientIPServiceAffinitySeconds (3 h).
                    client.entry("timeoutSeconds").or_insert(json!(10800));
                }
            }
        }
        spec.entry("internalTrafficPolicy")
            .or_insert(json!("Cluster"));
        spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
        spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        spec.entry("externalTrafficPolicy")
            .or_insert(json!("Cluster"));
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports {
            if let Some(pm) = p.as_object_mut() {
                pm.entry("protocol").or_insert(json!("TCP"));
                if !pm.contains_key("targetPort") {
                    if let Some(port) = pm.get("port").cloned() {
                        pm.insert("targetPort".into(), port);
                    }
                }
            }
        }
    }
    let status = ensure_object(obj, "status");
    status.entry("loadBalancer").or_insert(json!({}));
}

/// Defaults of a PodSpec (also inside templates).
pub fn default_pod_spec(spec: &mut Value) {
    let Some(m) = spec.as_object_mut() else {
        return;
    };
    m.entry("restartPolicy").or_insert(json!("Always"));
    m.entry("terminationGracePeriodSeconds")
        .or_insert(json!(30));
    m.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    m.entry("securityContext").or_insert(json!({}));
    m.entry("schedulerName")
        .or_insert(json!("default-scheduler"));
    m.entry("enableServiceLinks").or_insert(json!(true));
    if !m.contains_key("serviceAccountName") {
        let sa = m.get("serviceAccount").cloned().unwrap_or(json!("default"));
        m.insert("serviceAccountName".into(), sa);
    }
    if !m.contains_key("serviceAccount") {
        let sa = m
            .get("serviceAccountName")
            .cloned()
            .unwrap_or(json!("default"));
        m.insert("serviceAccount".into(), sa);
    }
    for field in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = m.get_mut(field) {
            for c in cs {
                default_container(c);
            }
        }
    }
    if let Some(Value::Array(vols)) = m.get_mut("volumes") {
        for v in vols {
            if let Some(vm) = v.as_object_mut() {
                for (src, mode_field) in [
                    ("configMap", "defaultMode"),
                    ("secret", "defaultMode"),
                    ("downwardAPI", "defaultMode"),
                    ("projected", "defaultMode"),
                ] {
                    if let Some(Value::Object(s)) = vm.get_mut(src) {
                        s.entry(mode_field).or_insert(json!(420));
                    }
                }
                if let Some(Value::Object(hp)) = vm.get_mut("hostPath") {
                    hp.entry("type").or_insert(json!(""));
                }
            }
        }
    }
    if let Some(Value::Array(tols)) = m.get_mut("tolerations") {
        for t in tols {
            // An "Exists" toleration has no value; nothing to default.
            let _ = t;
        }
    }
}

fn default_container(c: &mut Value) {
    let Some(m) = c.as_object_mut() else { return };
    if !m.contains_key("imagePullPolicy") {
        let image = m.get("image").and_then(Value::as_str).unwrap_or("");
        m.insert("imagePullPolicy".into(), json!(default_pull_policy(image)));
    }
    m.entry("terminationMessagePath")
        .or_insert(json!("/dev/termination-log"));
    m.entry("terminationMessagePolicy").or_insert(json!("File"));
    m.entry("resources").or_insert(json!({}));
    // Requests default to limits when only limits are given.
    if let Some(Value::Object(res)) = m.get_mut("resources") {
        if let Some(Value::Object(limits)) = res.get("limits").cloned() {
            let requests = res.entry("requests").or_insert_with(|| json!({}));
            if let Some(r) = requests.as_object_mut() {
                for (k, v) in limits {
                    r.entry(k).or_insert(v);
                }
            }
        }
    }
    if let Some(Value::Array(ports)) = m.get_mut("ports") {
        for p in ports {
            if let Some(pm) = p.as_object_mut() {
                pm.entry("protocol").or_insert(json!("TCP"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(Value::Object(p)) = m.get_mut(probe) {
            default_unless_nonzero(p, "timeoutSeconds", 1);
            default_unless_nonzero(p, "periodSeconds", 10);
            default_unless_nonzero(p, "successThreshold", 1);
            default_unless_nonzero(p, "failureThreshold", 3);
            if let Some(Value::Object(h)) = p.get_mut("httpGet") {
                h.entry("path").or_insert(json!("/"));
                h.entry("scheme").or_insert(json!("HTTP"));
            }
        }
    }
}

/// Sets a non-pointer integer field (where Go treats 0 as unset) when it is
/// missing or 0 — protobuf clients always send such fields, 0 included.
fn default_unless_nonzero(m: &mut Map<String, Value>, field: &str, value: i64) {
    if m.get(field).and_then(Value::as_i64).unwrap_or(0) == 0 {
        m.insert(field.into(), json!(value));
    }
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent` (digests too).
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// The pod's QoS class from its containers' requests and limits.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| spec.get(*f).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        let has =
            |m: Option<&Map<String, Value>>, k: &str| m.map(|m| m.contains_key(k)).unwrap_or(false);
        for r in ["cpu", "memory"] {
            if has(requests, r) || has(limits, r) {
                any = true;
            }
            if !has(limits, r) {
                guaranteed = false;
            } else if let (Some(req), Some(lim)) = (
                requests.and_then(|m| m.get(r)),
                limits.and_then(|m| m.get(r)),
            ) {
                if req != lim {
                    guaranteed = false;
                }
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed && !containers.is_empty() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy() {
        for (image, want) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("localhost:5000/busybox", "Always"),
            ("localhost:5000/busybox:v1", "IfNotPresent"),
            ("busybox@sha256:abc", "IfNotPresent"),
        ] {
            assert_eq!(default_pull_policy(image), want, "{image}");
        }
    }

    #[test]
    fn secret_string_data_is_stored_in_data() {
        let mut s = json!({"metadata":{"name":"s"},"data":{"a":"eA==","b":"eA=="},"stringData":{"b":"hello","c":""}});
        apply_defaults("", "Secret", &mut s);
        assert_eq!(
            s,
            json!({"metadata":{"name":"s"},"data":{"a":"eA==","b":"aGVsbG8=","c":""},"type":"Opaque"})
        );
        let mut only = json!({"metadata":{"name":"s"},"stringData":{"k":"v"}});
        apply_defaults("", "Secret", &mut only);
        assert_eq!(only["data"], json!({"k":"dg=="}));
    }

    #[test]
    fn deployment_defaults() {
        let mut d = json!({"metadata":{"name":"web"},"spec":{"template":{"spec":{"containers":[{"name":"c","image":"x:1","ports":[{"containerPort":80}]}]}}}});
        apply_defaults("apps", "Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"],
            "TCP"
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
    }

    #[test]
    fn qos() {
        let g = json!({"containers":[{"resources":{"limits":{"cpu":"1","memory":"1Gi"},"requests":{"cpu":"1","memory":"1Gi"}}}]});
        let b = json!({"containers":[{"resources":{"requests":{"cpu":"1"}}}]});
        let be = json!({"containers":[{}]});
        assert_eq!(qos_class(&g), "Guaranteed");
        assert_eq!(qos_class(&b), "Burstable");
        assert_eq!(qos_class(&be), "BestEffort");
    }

    #[test]
    fn service_cluster_ips_and_affinity_timeout() {
        let check = |spec: Value, want_ip: Value, want_ips: Value| {
            let mut s = json!({ "spec": spec });
            apply_defaults("", "Service", &mut s);
            assert_eq!(s["spec"]["clusterIP"], want_ip, "{s}");
            assert_eq!(s["spec"]["clusterIPs"], want_ips, "{s}");
        };
        check(json!({}), Value::Null, Value::Null);
        check(
            json!({"clusterIP": "10.43.0.5"}),
            json!("10.43.0.5"),
            json!(["10.43.0.5"]),
        );
        check(
            json!({"clusterIPs": ["10.43.0.5"]}),
            json!("10.43.0.5"),
            json!(["10.43.0.5"]),
        );
        check(json!({"clusterIP": "None"}), json!("None"), json!(["None"]));
        check(
            json!({"type": "ExternalName", "externalName": "x.example"}),
            Value::Null,
            Value::Null,
        );
        let mut s = json!({"spec": {"sessionAffinity": "ClientIP"}});
        apply_defaults("", "Service", &mut s);
        assert_eq!(
            s["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
        let mut s = json!({"spec": {"sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}});
        apply_defaults("", "Service", &mut s);
        assert_eq!(
            s["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            60
        );
        let mut s = json!({"spec": {}});
        apply_defaults("", "Service", &mut s);
        assert!(s["spec"].get("sessionAffinityConfig").is_none());
    }

    #[test]
    fn service_target_port_defaults_to_port() {
        let mut s = json!({"spec":{"ports":[{"port":80}]}});
        apply_defaults("", "Service", &mut s);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["type"], "ClusterIP");
    }
}
