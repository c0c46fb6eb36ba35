//! Mutating admission that kube-apiserver runs by default and drover keeps:
//! `DefaultTolerationSeconds`, which gives every pod a bounded toleration of
//! the `not-ready` and `unreachable` NoExecute taints, so that taint-based
//! eviction moves pods off a lost node after a while instead of at once.

use serde_json::{json, Value};

pub const TAINT_NODE_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_NODE_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// kube-apiserver's `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds` default.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Appends `{key, operator: Exists, effect: NoExecute, tolerationSeconds}` for
/// the not-ready and the unreachable taint unless the pod already tolerates
/// that taint's NoExecute effect. As in Kubernetes, a toleration counts when
/// its key is the taint's (or empty: every key) and its effect is NoExecute
/// (or empty: every effect); its operator and seconds are not looked at.
pub fn default_toleration_seconds(
    pod: &mut Value,
    not_ready_seconds: i64,
    unreachable_seconds: i64,
) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerates = |list: &[Value], key: &str| {
        list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    let existing: Vec<Value> = match spec.get("tolerations") {
        Some(Value::Array(a)) => a.clone(),
        // Anything else failed the type check already; leave it to validation.
        Some(Value::Null) | None => Vec::new(),
        Some(_) => return,
    };
    let mut added = Vec::new();
    for (key, seconds) in [
        (TAINT_NODE_NOT_READY, not_ready_seconds),
        (TAINT_NODE_UNREACHABLE, unreachable_seconds),
    ] {
        if !tolerates(&existing, key) {
            added.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
        }
    }
    if added.is_empty() {
        return;
    }
    let mut all = existing;
    all.extend(added);
    spec.insert("tolerations".into(), Value::Array(all));
}

/// The provisioner of the `local-path` StorageClass drover creates at
/// bootstrap (its own name: the PVs it makes are `hostPath` volumes under
/// drover's data dir, not rancher's layout).
pub const LOCAL_PATH_PROVISIONER: &str = "drover.dev/local-path";
pub const IS_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const IS_DEFAULT_CLASS_BETA: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// DefaultStorageClass: a claim that names no class (the field absent, not
/// `""`, which asks for no class) gets the default StorageClass — the
/// newest of those annotated default, by name when equally new.
pub fn default_storage_class(claim: &mut Value, classes: &[Value]) {
    let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("storageClassName").is_some_and(|v| !v.is_null()) {
        return;
    }
    let default = classes
        .iter()
        .filter(|c| {
            let annotation = |k: &str| {
                c.pointer("/metadata/annotations")
                    .and_then(|a| a.get(k))
                    .and_then(Value::as_str)
                    == Some("true")
            };
            annotation(IS_DEFAULT_CLASS) || annotation(IS_DEFAULT_CLASS_BETA)
        })
        .max_by(|a, b| {
            let key = |c: &Value| {
                (
                    c.pointer("/metadata/creationTimestamp")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    std::cmp::Reverse(
                        c.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    ),
                )
            };
            key(a).cmp(&key(b))
        });
    if let Some(name) = default.and_then(|c| c.pointer("/metadata/name")) {
        spec.insert("storageClassName".into(), name.clone());
    }
}

/// The finalizer that keeps a claim in use by a pod from going away
/// (StorageObjectInUseProtection admission adds it; the pvc-protection
/// controller removes it once no pod uses the claim).
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";

/// StorageObjectInUseProtection for claims (on create).
pub fn pvc_protection(claim: &mut Value) {
    let Some(meta) = claim.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = finalizers.as_array_mut() {
        if !list.iter().any(|f| f == PVC_PROTECTION_FINALIZER) {
            list.push(json!(PVC_PROTECTION_FINALIZER));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_get_the_protection_finalizer_once() {
        let mut claim = json!({"metadata": {"name": "c", "finalizers": ["x"]}});
        pvc_protection(&mut claim);
        pvc_protection(&mut claim);
        assert_eq!(
            claim["metadata"]["finalizers"],
            json!(["x", PVC_PROTECTION_FINALIZER])
        );
    }

    #[test]
    fn claims_without_a_class_get_the_newest_default() {
        let classes = [
            json!({"metadata": {"name": "slow", "creationTimestamp": "2026-01-01T00:00:00Z"}}),
            json!({"metadata": {"name": "a", "creationTimestamp": "2026-01-01T00:00:00Z",
                                "annotations": {IS_DEFAULT_CLASS: "true"}}}),
            json!({"metadata": {"name": "b", "creationTimestamp": "2026-01-01T00:00:00Z",
                                "annotations": {IS_DEFAULT_CLASS: "true"}}}),
        ];
        let run = |spec: Value, classes: &[Value]| {
            let mut claim = json!({"spec": spec});
            default_storage_class(&mut claim, classes);
            claim["spec"]["storageClassName"].clone()
        };
        assert_eq!(
            run(json!({}), &classes),
            json!("a"),
            "equally new: first by name"
        );
        assert_eq!(
            run(json!({"storageClassName": "slow"}), &classes),
            json!("slow")
        );
        assert_eq!(
            run(json!({"storageClassName": ""}), &classes),
            json!(""),
            "\"\" asks for no class"
        );
        assert_eq!(run(json!({}), &classes[..1]), Value::Null, "no default");
        let newer = json!({"metadata": {"name": "z", "creationTimestamp": "2026-02-01T00:00:00Z",
                                        "annotations": {IS_DEFAULT_CLASS_BETA: "true"}}});
        assert_eq!(run(json!({}), &[classes[1].clone(), newer]), json!("z"));
    }

    /// (tolerations before, not-ready seconds, unreachable seconds) → keys and
    /// seconds of the tolerations after.
    fn check(before: Value, want: &[(&str, Option<i64>)]) {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "i"}]}});
        if !before.is_null() {
            pod["spec"]["tolerations"] = before;
        }
        default_toleration_seconds(&mut pod, 300, 60);
        let got: Vec<(String, Option<i64>)> = pod["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["key"].as_str().unwrap_or("").to_string(),
                    t["tolerationSeconds"].as_i64(),
                )
            })
            .collect();
        let want: Vec<(String, Option<i64>)> =
            want.iter().map(|(k, s)| (k.to_string(), *s)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn adds_what_the_pod_does_not_tolerate() {
        let nr = TAINT_NODE_NOT_READY;
        let un = TAINT_NODE_UNREACHABLE;
        check(Value::Null, &[(nr, Some(300)), (un, Some(60))]);
        check(json!([]), &[(nr, Some(300)), (un, Some(60))]);
        // Its own unreachable toleration is kept; only not-ready is added.
        check(
            json!([{"key": un, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 7}]),
            &[(un, Some(7)), (nr, Some(300))],
        );
        // An empty effect tolerates NoExecute too.
        check(
            json!([{"key": nr, "operator": "Exists"}]),
            &[(nr, None), (un, Some(60))],
        );
        // Another effect does not.
        check(
            json!([{"key": nr, "operator": "Exists", "effect": "NoSchedule"}]),
            &[(nr, None), (nr, Some(300)), (un, Some(60))],
        );
        // An empty key with operator Exists tolerates every taint.
        check(json!([{"operator": "Exists"}]), &[("", None)]);
        // Unrelated keys change nothing.
        check(
            json!([{"key": "gpu", "operator": "Equal", "value": "x", "effect": "NoExecute"}]),
            &[("gpu", None), (nr, Some(300)), (un, Some(60))],
        );
    }

    #[test]
    fn a_pod_without_spec_is_left_to_validation() {
        let mut pod = json!({"metadata": {"name": "p"}});
        default_toleration_seconds(&mut pod, 300, 300);
        assert_eq!(pod, json!({"metadata": {"name": "p"}}));
    }
}
