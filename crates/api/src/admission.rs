//! Mutating admission that kube-apiserver runs by default and drover keeps:
//! `DefaultTolerationSeconds`, which gives every pod a bounded toleration of
//! the `not-ready` and `unreachable` NoExecute taints, so that taint-based
//! eviction moves pods off a lost node after a while instead of at once;
//! `ServiceAccount`, which gives every pod its account's credentials as a
//! projected volume (the API call itself is in crates/apiserver).

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

/// Where the ServiceAccount admission plugin mounts the API credentials.
pub const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The prefix of the projected volume it adds (`kube-api-access-xxxxx`).
pub const SERVICE_ACCOUNT_VOLUME_PREFIX: &str = "kube-api-access-";
/// The token lifetime the volume asks for (kube-apiserver's choice: an
/// hour and seven seconds, which marks it as an admission-made volume).
pub const SERVICE_ACCOUNT_TOKEN_SECONDS: i64 = 3607;
/// The ConfigMap every namespace gets with the cluster CA.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

/// The ServiceAccount admission plugin's mutation of a new pod, given the
/// pod's ServiceAccount: the pod names its account (`default` unless it
/// says), takes the account's `imagePullSecrets` when it has none, and —
/// unless the pod or else the account sets `automountServiceAccountToken:
/// false` — every container and init container without a mount at
/// [`SERVICE_ACCOUNT_MOUNT_PATH`] mounts a projected volume there (a bound
/// token, the cluster CA, the namespace). `suffix` makes the volume's name.
pub fn service_account(pod: &mut Value, account: &Value, suffix: &str) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        spec.insert("serviceAccountName".into(), json!("default"));
    }
    let has_pull_secrets = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !has_pull_secrets {
        if let Some(secrets) = account
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        {
            spec.insert("imagePullSecrets".into(), Value::Array(secrets.clone()));
        }
    }
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            account
                .get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true);
    if !automount {
        return;
    }
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .find(|n| n.starts_with(SERVICE_ACCOUNT_VOLUME_PREFIX))
        })
        .map(str::to_string);
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| format!("{SERVICE_ACCOUNT_VOLUME_PREFIX}{suffix}"));
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c
                .entry("volumeMounts")
                .or_insert_with(|| Value::Array(Vec::new()));
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            if mounts.iter().any(|m| {
                m.get("mountPath").and_then(Value::as_str) == Some(SERVICE_ACCOUNT_MOUNT_PATH)
            }) {
                continue;
            }
            mounts.push(json!({
                "name": volume_name,
                "readOnly": true,
                "mountPath": SERVICE_ACCOUNT_MOUNT_PATH,
            }));
            mounted = true;
        }
    }
    if mounted && existing.is_none() {
        let volumes = spec
            .entry("volumes")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(volumes) = volumes.as_array_mut() {
            volumes.push(json!({
                "name": volume_name,
                "projected": {
                    "defaultMode": 0o644,
                    "sources": [
                        {"serviceAccountToken": {
                            "expirationSeconds": SERVICE_ACCOUNT_TOKEN_SECONDS,
                            "path": "token"}},
                        {"configMap": {
                            "name": ROOT_CA_CONFIG_MAP,
                            "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                    ],
                },
            }));
        }
    }
}

/// Five characters for a generated name, from Kubernetes' alphabet (no
/// vowels, no look-alikes), drawn from `random`.
pub fn name_suffix(mut random: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| {
            let c = ALPHABET[(random % ALPHABET.len() as u64) as usize] as char;
            random /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

#[cfg(test)]
mod service_account_tests {
    use super::*;

    fn pod() -> Value {
        json!({"spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}],
        }})
    }

    fn mounts(pod: &Value, list: &str, i: usize) -> Vec<String> {
        pod["spec"][list][i]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}@{}",
                    m["name"].as_str().unwrap(),
                    m["mountPath"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn every_container_mounts_the_api_access_volume() {
        let mut p = pod();
        service_account(&mut p, &json!({}), "abcde");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        let at = format!("kube-api-access-abcde@{SERVICE_ACCOUNT_MOUNT_PATH}");
        assert_eq!(mounts(&p, "initContainers", 0), vec![at.clone()]);
        assert_eq!(mounts(&p, "containers", 0), vec![at.clone()]);
        assert_eq!(mounts(&p, "containers", 1), vec!["x@/x".to_string(), at]);
        let volumes = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 1);
        let sources = &volumes[0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        assert_eq!(volumes[0]["projected"]["defaultMode"], 420);
    }

    #[test]
    fn automount_false_on_the_pod_wins_over_the_account() {
        let mut p = pod();
        p["spec"]["automountServiceAccountToken"] = json!(false);
        service_account(
            &mut p,
            &json!({"automountServiceAccountToken": true}),
            "abcde",
        );
        assert!(p["spec"].get("volumes").is_none());
        assert!(p["spec"]["containers"][0].get("volumeMounts").is_none());

        let mut p = pod();
        service_account(
            &mut p,
            &json!({"automountServiceAccountToken": false}),
            "abcde",
        );
        assert!(
            p["spec"].get("volumes").is_none(),
            "the account's false counts"
        );

        let mut p = pod();
        p["spec"]["automountServiceAccountToken"] = json!(true);
        service_account(
            &mut p,
            &json!({"automountServiceAccountToken": false}),
            "abcde",
        );
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn an_existing_mount_at_the_path_or_volume_is_kept() {
        let mut p = json!({"spec": {
            "serviceAccountName": "builder",
            "containers": [{"name": "a", "volumeMounts": [{"name": "mine", "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}]}],
            "volumes": [{"name": "mine", "emptyDir": {}}],
        }});
        let before = p.clone();
        service_account(&mut p, &json!({}), "abcde");
        assert_eq!(p, before, "nothing to mount: no volume added");

        // A pod that already has a kube-api-access volume (e.g. recreated
        // from an exported manifest) reuses it.
        let mut p = json!({"spec": {
            "containers": [{"name": "a"}],
            "volumes": [{"name": "kube-api-access-zzzzz", "projected": {"sources": []}}],
        }});
        service_account(&mut p, &json!({}), "abcde");
        assert_eq!(
            mounts(&p, "containers", 0),
            vec![format!(
                "kube-api-access-zzzzz@{SERVICE_ACCOUNT_MOUNT_PATH}"
            )]
        );
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn image_pull_secrets_come_from_the_account_only_when_the_pod_has_none() {
        let account = json!({"imagePullSecrets": [{"name": "regcred"}]});
        let mut p = pod();
        service_account(&mut p, &account, "abcde");
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "regcred"}]));
        let mut p = pod();
        p["spec"]["imagePullSecrets"] = json!([{"name": "own"}]);
        service_account(&mut p, &account, "abcde");
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "own"}]));
    }

    #[test]
    fn name_suffixes_are_five_characters_of_the_alphabet() {
        let a = name_suffix(0);
        let b = name_suffix(123_456_789);
        assert_eq!(a, "bbbbb");
        assert_eq!(b.len(), 5);
        assert_ne!(a, b);
        assert!(b.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
}
