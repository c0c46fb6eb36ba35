//! PodDisruptionBudget arithmetic, as Kubernetes' disruption controller does
//! it: which pods a budget covers, how many are expected and healthy, and how
//! many disruptions it allows. Drover has no disruption controller; the
//! eviction subresource computes this at eviction time from the live pods
//! (see `apiserver::eviction`), so a budget is never stale.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// How long a pod recorded in `status.disruptedPods` is not counted as
/// healthy while its deletion is on the way (Kubernetes' `DeletionTimeout`).
pub const DELETION_TIMEOUT_SECONDS: i64 = 120;

/// A budget's numbers, as its status reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    pub expected_pods: i64,
    pub desired_healthy: i64,
    pub current_healthy: i64,
    pub disruptions_allowed: i64,
    /// `status.disruptedPods` pruned of pods that are gone, terminating, or
    /// whose deletion was expected too long ago.
    pub disrupted_pods: BTreeMap<String, String>,
}

/// Whether the budget's `spec.selector` selects the pod. A missing selector
/// selects nothing, `{}` everything (policy/v1); an invalid one nothing.
pub fn selects(pdb: &Value, pod: &Value) -> bool {
    match apimachinery::selector::LabelSelector::from_json(
        pdb.pointer("/spec/selector"),
        "spec.selector",
    ) {
        Ok(s) => s.matches_labels_value(pod.pointer("/metadata/labels")),
        Err(_) => false,
    }
}

/// Kubernetes' `IsPodReady`: the Ready condition is True.
pub fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

pub fn pod_terminating(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// An int-or-percent scaled against `total`, percentages rounded up
/// (`GetScaledValueFromIntOrPercent(.., roundUp=true)`). None if malformed.
pub fn scaled_value(v: &Value, total: i64) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let p: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some((p * total + 99).div_euclid(100))
        }
        _ => None,
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The budget over `pods` — every pod in the budget's namespace its selector
/// matches, terminating ones included. `controller_scale` is the summed
/// desired replicas of those pods' controllers; it is what percentages and
/// `maxUnavailable` are taken of (pods without a controller add nothing), as
/// in Kubernetes. An integer `minAvailable` expects as many pods as match.
pub fn compute(pdb: &Value, pods: &[&Value], controller_scale: i64, now: DateTime<Utc>) -> Budget {
    let spec = pdb.get("spec");
    let min_available = spec
        .and_then(|s| s.get("minAvailable"))
        .filter(|v| !v.is_null());
    let max_unavailable = spec
        .and_then(|s| s.get("maxUnavailable"))
        .filter(|v| !v.is_null());
    // A malformed value fails the sync in Kubernetes: nothing is allowed.
    let mut malformed = false;
    let (expected_pods, desired_healthy) = match (max_unavailable, min_available) {
        (Some(max), _) => {
            let expected = controller_scale;
            match scaled_value(max, expected) {
                Some(m) => (expected, (expected - m).max(0)),
                None => {
                    malformed = true;
                    (expected, 0)
                }
            }
        }
        (None, Some(Value::Number(n))) => (pods.len() as i64, n.as_i64().unwrap_or(0)),
        (None, Some(min)) => {
            let expected = controller_scale;
            match scaled_value(min, expected) {
                Some(m) => (expected, m),
                None => {
                    malformed = true;
                    (expected, 0)
                }
            }
        }
        (None, None) => (pods.len() as i64, 0),
    };
    let recorded: BTreeMap<String, String> = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let timeout = chrono::Duration::seconds(DELETION_TIMEOUT_SECONDS);
    let expected_soon = |name: &str| {
        recorded
            .get(name)
            .and_then(|t| parse_time(t))
            .is_some_and(|t| t + timeout > now)
    };
    let mut current_healthy = 0;
    let mut disrupted_pods = BTreeMap::new();
    for pod in pods {
        if pod_terminating(pod) {
            continue;
        }
        let name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if expected_soon(name) {
            disrupted_pods.insert(name.to_string(), recorded[name].clone());
            continue;
        }
        if pod_ready(pod) {
            current_healthy += 1;
        }
    }
    let mut disruptions_allowed = current_healthy - desired_healthy;
    if expected_pods <= 0 || disruptions_allowed <= 0 || malformed {
        disruptions_allowed = 0;
    }
    Budget {
        expected_pods,
        desired_healthy,
        current_healthy,
        disruptions_allowed,
        disrupted_pods,
    }
}

/// The status a budget reports for `budget`: the counts, observedGeneration,
/// disruptedPods, and the `DisruptionAllowed` condition (its transition time
/// kept while its status does not change).
pub fn status(pdb: &Value, budget: &Budget, now_rfc3339: &str) -> Value {
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let (condition_status, reason) = if budget.disruptions_allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let previous = pdb
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|c| c["type"] == "DisruptionAllowed"));
    let transition = match previous {
        Some(c) if c["status"] == condition_status => c
            .get("lastTransitionTime")
            .cloned()
            .unwrap_or_else(|| json!(now_rfc3339)),
        _ => json!(now_rfc3339),
    };
    let mut conditions: Vec<Value> = pdb
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|c| c["type"] != "DisruptionAllowed")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    conditions.push(json!({
        "type": "DisruptionAllowed",
        "status": condition_status,
        "reason": reason,
        "message": "",
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    }));
    let disrupted: Map<String, Value> = budget
        .disrupted_pods
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut status = json!({
        "observedGeneration": generation,
        "disruptionsAllowed": budget.disruptions_allowed,
        "currentHealthy": budget.current_healthy,
        "desiredHealthy": budget.desired_healthy,
        "expectedPods": budget.expected_pods,
        "conditions": conditions,
    });
    if !disrupted.is_empty() {
        status["disruptedPods"] = Value::Object(disrupted);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        parse_time("2025-01-01T00:10:00Z").unwrap()
    }

    fn pod(name: &str, ready: bool, terminating: bool) -> Value {
        let mut p = json!({"metadata": {"name": name, "labels": {"app": "db"}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if terminating {
            p["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:09:00Z");
        }
        p
    }

    fn pdb(spec: Value) -> Value {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "db"}});
        json!({"metadata": {"name": "b", "generation": 2}, "spec": spec})
    }

    /// (spec, pods as (ready, terminating), controller scale) →
    /// (expected, desired, healthy, allowed).
    type Case = (Value, &'static [(bool, bool)], i64, (i64, i64, i64, i64));

    #[test]
    fn budgets_like_the_disruption_controller() {
        let cases: &[Case] = &[
            (
                json!({"minAvailable": 1}),
                &[(true, false)],
                0,
                (1, 1, 1, 0),
            ),
            (
                json!({"minAvailable": 1}),
                &[(true, false), (true, false)],
                0,
                (2, 1, 2, 1),
            ),
            // A terminating pod is expected but not healthy.
            (
                json!({"minAvailable": 1}),
                &[(true, false), (true, true)],
                0,
                (2, 1, 1, 0),
            ),
            (
                json!({"minAvailable": 2}),
                &[(true, false), (false, false)],
                0,
                (2, 2, 1, 0),
            ),
            // Percentages are of the controllers' scale, rounded up.
            (
                json!({"minAvailable": "50%"}),
                &[(true, false), (true, false), (true, false)],
                3,
                (3, 2, 3, 1),
            ),
            (
                json!({"maxUnavailable": 1}),
                &[(true, false), (true, false), (true, false)],
                3,
                (3, 2, 3, 1),
            ),
            (
                json!({"maxUnavailable": "34%"}),
                &[(true, false), (true, false), (true, false)],
                3,
                (3, 1, 3, 2),
            ),
            (
                json!({"maxUnavailable": 0}),
                &[(true, false), (true, false)],
                2,
                (2, 2, 2, 0),
            ),
            // Bare pods have no scale: nothing is expected, nothing allowed.
            (
                json!({"maxUnavailable": 1}),
                &[(true, false)],
                0,
                (0, 0, 1, 0),
            ),
        ];
        for (spec, pods, scale, want) in cases {
            let pods: Vec<Value> = pods
                .iter()
                .enumerate()
                .map(|(i, (r, t))| pod(&format!("p{i}"), *r, *t))
                .collect();
            let refs: Vec<&Value> = pods.iter().collect();
            let b = compute(&pdb(spec.clone()), &refs, *scale, now());
            assert_eq!(
                (
                    b.expected_pods,
                    b.desired_healthy,
                    b.current_healthy,
                    b.disruptions_allowed
                ),
                *want,
                "{spec}"
            );
        }
    }

    #[test]
    fn recently_disrupted_pods_are_not_healthy() {
        let mut budget = pdb(json!({"minAvailable": 1}));
        budget["status"] = json!({"disruptedPods": {
            "p0": "2025-01-01T00:09:30Z",
            "p1": "2025-01-01T00:01:00Z",
        }});
        let pods = [
            pod("p0", true, false),
            pod("p1", true, false),
            pod("p2", true, false),
        ];
        let refs: Vec<&Value> = pods.iter().collect();
        let b = compute(&budget, &refs, 0, now());
        // p0 was evicted 30 s ago (still counted out); p1's entry timed out.
        assert_eq!((b.current_healthy, b.disruptions_allowed), (2, 1));
        assert_eq!(b.disrupted_pods.keys().collect::<Vec<_>>(), vec!["p0"]);
        let s = status(&budget, &b, "2025-01-01T00:10:00Z");
        assert_eq!(s["observedGeneration"], 2);
        assert_eq!(s["disruptedPods"]["p0"], "2025-01-01T00:09:30Z");
        assert_eq!(s["conditions"][0]["reason"], "SufficientPods");
    }

    #[test]
    fn selectors_follow_policy_v1() {
        let p = pod("p", true, false);
        assert!(selects(&pdb(json!({})), &p));
        assert!(selects(&json!({"spec": {"selector": {}}}), &p));
        assert!(!selects(&json!({"spec": {}}), &p));
        assert!(!selects(
            &json!({"spec": {"selector": {"matchLabels": {"app": "web"}}}}),
            &p
        ));
    }

    #[test]
    fn scaled_values_round_up() {
        assert_eq!(scaled_value(&json!("50%"), 3), Some(2));
        assert_eq!(scaled_value(&json!("10%"), 1), Some(1));
        assert_eq!(scaled_value(&json!("0%"), 5), Some(0));
        assert_eq!(scaled_value(&json!(4), 1), Some(4));
        assert_eq!(scaled_value(&json!("x"), 1), None);
    }
}
