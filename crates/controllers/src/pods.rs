//! Helpers every workload controller shares: owner references, pods from
//! templates, pod readiness and availability, typed label selectors.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde::Serialize;
use serde_json::Value;

/// The controller reference a controller puts on what it creates.
pub fn controller_reference(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `meta` is controlled by the object with this uid.
pub fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == owner_uid)
}

/// A pod for `template`, owned by `owner`, in `namespace`. The caller sets
/// `metadata.name` or `metadata.generateName`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    owner: OwnerReference,
) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_string()),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// What the informer cache keeps of a pod's spec: everything a controller or
/// the scheduler reads, without what only the node agent needs. Dropped:
/// volumes other than `persistentVolumeClaim` and `ephemeral` (the scheduler's
/// volume binding, the local-path provisioner, PVC protection and the
/// StatefulSet controller read only those; the service account token volume
/// every pod gets is ≈3 KB of typed struct alone), and of every container and
/// init container its command, args, env, envFrom, volume mounts and devices,
/// probes, lifecycle hooks, working directory, termination message settings,
/// security context and stdin/tty flags. Kept: names, images, ports,
/// resources, restart policies (sidecars), and everything outside the
/// containers and volumes. No controller writes a cached pod's spec back: pods
/// are created from templates, patched, deleted, or have their status
/// replaced, and a status update keeps the stored spec. The lists kept are
/// cut to their length (see [`shrink`]).
pub fn cache_form(pod: &mut Pod) {
    if let Some(spec) = pod.spec.as_mut() {
        trim_spec(spec);
    }
    shrink(&mut pod.metadata.owner_references);
    shrink(&mut pod.metadata.finalizers);
    if let Some(status) = pod.status.as_mut() {
        shrink(&mut status.conditions);
        shrink(&mut status.container_statuses);
        shrink(&mut status.init_container_statuses);
        shrink(&mut status.pod_ips);
        shrink(&mut status.host_ips);
    }
}

/// The spec's part of [`cache_form`].
fn trim_spec(spec: &mut PodSpec) {
    if let Some(volumes) = spec.volumes.as_mut() {
        volumes.retain(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some());
        if volumes.is_empty() {
            spec.volumes = None;
        } else {
            volumes.shrink_to_fit();
        }
    }
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        shrink(&mut c.ports);
        c.command = None;
        c.args = None;
        c.env = None;
        c.env_from = None;
        c.volume_mounts = None;
        c.volume_devices = None;
        c.liveness_probe = None;
        c.readiness_probe = None;
        c.startup_probe = None;
        c.lifecycle = None;
        c.working_dir = None;
        c.termination_message_path = None;
        c.termination_message_policy = None;
        c.security_context = None;
        c.stdin = None;
        c.stdin_once = None;
        c.tty = None;
    }
    spec.containers.shrink_to_fit();
    shrink(&mut spec.init_containers);
    shrink(&mut spec.tolerations);
    shrink(&mut spec.topology_spread_constraints);
}

/// A decoded list grows its capacity in steps (to 4 elements at once for
/// all but the largest types, since JSON gives no length up front): one
/// `ContainerStatus` of 752 bytes takes 3 KB. Cached objects live long, so
/// their lists are cut to their length.
fn shrink<T>(list: &mut Option<Vec<T>>) {
    if let Some(list) = list {
        list.shrink_to_fit();
    }
}

pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

pub fn is_terminating(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// Active as the ReplicaSet and Job controllers count it: not finished and
/// not being deleted.
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = pod_phase(pod);
    phase != "Succeeded" && phase != "Failed" && !is_terminating(&pod.metadata)
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The pod's Ready condition is True.
pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    let Some(c) = ready_condition(pod) else {
        return false;
    };
    if c.status != "True" {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match &c.last_transition_time {
        Some(t) => t.0.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
        None => false,
    }
}

/// When a ready pod becomes available, if it is not yet (for requeueing).
pub fn available_at(pod: &Pod, min_ready_seconds: i32) -> Option<jiff::Timestamp> {
    let c = ready_condition(pod)?;
    if c.status != "True" {
        return None;
    }
    let t = c.last_transition_time.as_ref()?;
    jiff::Timestamp::from_second(t.0.as_second() + i64::from(min_ready_seconds)).ok()
}

/// Whether a typed `LabelSelector` matches `labels`. An empty selector
/// matches everything; a selector with an invalid operator matches nothing.
pub fn selector_matches(
    selector: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    if let Some(ml) = &selector.match_labels {
        if ml.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or(&[]);
        let ok = match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether the selector selects nothing at all (nil selector).
pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|m| m.is_empty())
}

/// A typed object as JSON for a plan action.
pub fn to_value<T: Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("k8s-openapi types serialize")
}

/// Kubernetes' `ComputeHash`-style short hash for names (pod-template-hash,
/// controller-revision-hash): FNV-1a of the JSON form plus a collision
/// count, rendered with the "safe" alphabet Kubernetes uses.
pub fn template_hash<T: Serialize>(template: &T, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(template).expect("serializable");
    let mut h: u32 = 0x811c9dc5;
    let mut feed = |b: u8| {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x01000193);
    };
    for b in bytes {
        feed(b);
    }
    if let Some(c) = collision_count {
        for b in c.to_le_bytes() {
            feed(b);
        }
    }
    safe_encode(u64::from(h))
}

/// Kubernetes' `rand.SafeEncodeString` alphabet (no vowels, no 0/1/3 that
/// could spell words).
fn safe_encode(mut n: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    if n == 0 {
        return "b".into();
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(ALPHABET[(n % ALPHABET.len() as u64) as usize]);
        n /= ALPHABET.len() as u64;
    }
    String::from_utf8(out).unwrap()
}

/// An int-or-percent field (maxUnavailable, maxSurge) as a count of
/// `total`, percentages rounded up or down as the field's semantics need;
/// None for a malformed value.
pub fn scaled_int_or_percent(
    value: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
    total: i32,
    round_up: bool,
) -> Option<i32> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match value {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(s) => {
            let percent: i64 = s.strip_suffix('%')?.parse().ok()?;
            let scaled = percent * i64::from(total);
            let count = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(count).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        assert!(selector_matches(&sel, Some(&labels(&[("app", "web")]))));
        assert!(selector_matches(
            &sel,
            Some(&labels(&[("app", "web"), ("tier", "fe")]))
        ));
        assert!(!selector_matches(
            &sel,
            Some(&labels(&[("app", "web"), ("tier", "db")]))
        ));
        assert!(!selector_matches(&sel, Some(&labels(&[("app", "api")]))));
        assert!(!selector_matches(&sel, None));
        assert!(selector_matches(&LabelSelector::default(), None));
    }

    #[test]
    fn the_cached_pod_keeps_what_controllers_read_and_drops_what_only_the_agent_needs() {
        let full: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {
                "nodeName": "n1",
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "priority": 7,
                "hostname": "h", "subdomain": "s",
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "c"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                    {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                    {"name": "cfg", "configMap": {"name": "cm"}},
                ],
                "initContainers": [{"name": "init", "image": "busybox", "restartPolicy": "Always",
                    "command": ["sh"], "resources": {"requests": {"cpu": "1"}}}],
                "containers": [{
                    "name": "c", "image": "busybox",
                    "command": ["sleep"], "args": ["3600"], "workingDir": "/w",
                    "env": [{"name": "A", "value": "1"}], "envFrom": [{"configMapRef": {"name": "cm"}}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "livenessProbe": {"exec": {"command": ["true"]}},
                    "readinessProbe": {"tcpSocket": {"port": 80}},
                    "startupProbe": {"exec": {"command": ["true"]}},
                    "lifecycle": {"preStop": {"exec": {"command": ["true"]}}},
                    "securityContext": {"runAsUser": 1000},
                    "terminationMessagePath": "/dev/termination-log",
                    "stdin": true, "tty": true,
                    "ports": [{"name": "http", "containerPort": 80, "hostPort": 8080}],
                    "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}},
                }],
            },
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        let mut cached = full.clone();
        cache_form(&mut cached);

        let spec = cached.spec.as_ref().unwrap();
        let names: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(names, ["data", "scratch"], "only claim volumes stay");
        let c = &spec.containers[0];
        assert_eq!(c.command, None);
        assert_eq!(c.args, None);
        assert_eq!(c.env, None);
        assert_eq!(c.env_from, None);
        assert_eq!(c.volume_mounts, None);
        assert_eq!(c.liveness_probe, None);
        assert_eq!(c.readiness_probe, None);
        assert_eq!(c.startup_probe, None);
        assert_eq!(c.lifecycle, None);
        assert_eq!(c.security_context, None);
        assert_eq!(c.working_dir, None);
        assert_eq!(c.tty, None);
        assert_eq!(spec.init_containers.as_ref().unwrap()[0].command, None);

        // What readers use is untouched: put it back on the full pod's
        // stripped parts and the two are equal.
        let mut expected = full.clone();
        {
            let spec = expected.spec.as_mut().unwrap();
            spec.volumes.as_mut().unwrap().truncate(2);
            let c = &mut spec.containers[0];
            *c = k8s_openapi::api::core::v1::Container {
                name: c.name.clone(),
                image: c.image.clone(),
                ports: c.ports.clone(),
                resources: c.resources.clone(),
                ..Default::default()
            };
            let i = &mut spec.init_containers.as_mut().unwrap()[0];
            i.command = None;
        }
        assert_eq!(cached, expected);

        // Decoded lists grow 4 elements at a time; cached ones are cut to size.
        let decoded = |cached: &Pod| {
            let status = cached.status.as_ref().unwrap();
            (
                status.conditions.as_ref().unwrap().capacity(),
                cached.metadata.owner_references.as_ref().map(Vec::capacity),
            )
        };
        // From JSON text, as informers decode watch events and list pages.
        let mut owned: Pod = serde_json::from_str(
            r#"{"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "u"}]},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            decoded(&owned),
            (4, Some(4)),
            "serde's growth, which this test relies on"
        );
        cache_form(&mut owned);
        assert_eq!(decoded(&owned), (1, Some(1)));

        // A pod without volumes or spec stays as it is.
        let mut bare = Pod::default();
        cache_form(&mut bare);
        assert_eq!(bare, Pod::default());
    }

    #[test]
    fn hash_is_stable_and_depends_on_collisions() {
        let a = template_hash(&serde_json::json!({"a": 1}), None);
        assert_eq!(a, template_hash(&serde_json::json!({"a": 1}), None));
        assert_ne!(a, template_hash(&serde_json::json!({"a": 1}), Some(1)));
        assert_ne!(a, template_hash(&serde_json::json!({"a": 2}), None));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
}

/// A label selector in its string form, as `metav1.FormatLabelSelector`
/// writes it for the `scale` subresource's `status.selector`: requirements
/// sorted by key, `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`.
pub fn format_label_selector(selector: &LabelSelector) -> String {
    let mut parts: Vec<(String, String)> = Vec::new();
    for (k, v) in selector.match_labels.iter().flatten() {
        parts.push((k.clone(), format!("{k}={v}")));
    }
    for e in selector.match_expressions.iter().flatten() {
        let mut values = e.values.clone().unwrap_or_default();
        values.sort();
        let text = match e.operator.as_str() {
            "In" => format!("{} in ({})", e.key, values.join(",")),
            "NotIn" => format!("{} notin ({})", e.key, values.join(",")),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other} ()", e.key),
        };
        parts.push((e.key.clone(), text));
    }
    parts.sort();
    parts
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod format_tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selectors_format_like_kubernetes() {
        let selector = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["fe".into(), "be".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(
            format_label_selector(&selector),
            "app=web,!canary,tier in (be,fe)"
        );
        assert_eq!(format_label_selector(&LabelSelector::default()), "");
    }
}
