//! Conversion between the served and the stored version of a kind: objects
//! are stored once, in the storage version, and converted on the way in and
//! out — autoscaling/v1 ↔ v2 HorizontalPodAutoscalers, core/v1 ↔
//! events.k8s.io/v1 Events, and CRD versions (apiVersion only, as with
//! `conversion.strategy: None`).

use serde_json::{json, Map, Value};

pub fn convert(mut obj: Value, from: &str, to: &str) -> Value {
    if from != to {
        obj = match (from, to) {
            ("autoscaling/v2", "autoscaling/v1") => hpa_v2_to_v1(obj),
            ("autoscaling/v1", "autoscaling/v2") => hpa_v1_to_v2(obj),
            ("v1", "events.k8s.io/v1") => event_core_to_events(obj),
            ("events.k8s.io/v1", "v1") => event_events_to_core(obj),
            _ => obj,
        };
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(to));
    }
    obj
}

fn take(m: &mut Map<String, Value>, from: &str, to: &str, out: &mut Map<String, Value>) {
    if let Some(v) = m.remove(from) {
        out.insert(to.into(), v);
    }
}

fn hpa_v2_to_v1(mut obj: Value) -> Value {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        let cpu = spec
            .get("metrics")
            .and_then(Value::as_array)
            .and_then(|ms| {
                ms.iter().find_map(|m| {
                    (m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu")))
                        .then(|| m.pointer("/resource/target/averageUtilization").cloned())
                        .flatten()
                })
            });
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(c) = cpu {
            spec.insert("targetCPUUtilizationPercentage".into(), c);
        }
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        let cpu = status
            .get("currentMetrics")
            .and_then(Value::as_array)
            .and_then(|ms| {
                ms.iter().find_map(|m| {
                    (m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu")))
                        .then(|| m.pointer("/resource/current/averageUtilization").cloned())
                        .flatten()
                })
            });
        status.remove("currentMetrics");
        status.remove("conditions");
        if let Some(c) = cpu {
            status.insert("currentCPUUtilizationPercentage".into(), c);
        }
    }
    obj
}

fn hpa_v1_to_v2(mut obj: Value) -> Value {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(cpu) = spec.remove("targetCPUUtilizationPercentage") {
            spec.insert(
                "metrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}}]),
            );
        }
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        if let Some(cpu) = status.remove("currentCPUUtilizationPercentage") {
            status.insert(
                "currentMetrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": cpu}}}]),
            );
        }
    }
    obj
}

fn event_core_to_events(obj: Value) -> Value {
    let Value::Object(mut m) = obj else {
        return obj;
    };
    let mut out = Map::new();
    take(&mut m, "kind", "kind", &mut out);
    take(&mut m, "metadata", "metadata", &mut out);
    take(&mut m, "eventTime", "eventTime", &mut out);
    take(&mut m, "series", "series", &mut out);
    take(
        &mut m,
        "reportingComponent",
        "reportingController",
        &mut out,
    );
    take(&mut m, "reportingInstance", "reportingInstance", &mut out);
    take(&mut m, "action", "action", &mut out);
    take(&mut m, "reason", "reason", &mut out);
    take(&mut m, "involvedObject", "regarding", &mut out);
    take(&mut m, "related", "related", &mut out);
    take(&mut m, "message", "note", &mut out);
    take(&mut m, "type", "type", &mut out);
    take(&mut m, "source", "deprecatedSource", &mut out);
    take(
        &mut m,
        "firstTimestamp",
        "deprecatedFirstTimestamp",
        &mut out,
    );
    take(&mut m, "lastTimestamp", "deprecatedLastTimestamp", &mut out);
    take(&mut m, "count", "deprecatedCount", &mut out);
    if !out.contains_key("eventTime") {
        out.insert("eventTime".into(), Value::Null);
    }
    Value::Object(out)
}

fn event_events_to_core(obj: Value) -> Value {
    let Value::Object(mut m) = obj else {
        return obj;
    };
    let mut out = Map::new();
    take(&mut m, "kind", "kind", &mut out);
    take(&mut m, "metadata", "metadata", &mut out);
    take(&mut m, "regarding", "involvedObject", &mut out);
    take(&mut m, "reason", "reason", &mut out);
    take(&mut m, "note", "message", &mut out);
    take(&mut m, "deprecatedSource", "source", &mut out);
    take(
        &mut m,
        "deprecatedFirstTimestamp",
        "firstTimestamp",
        &mut out,
    );
    take(&mut m, "deprecatedLastTimestamp", "lastTimestamp", &mut out);
    take(&mut m, "deprecatedCount", "count", &mut out);
    take(&mut m, "type", "type", &mut out);
    take(&mut m, "eventTime", "eventTime", &mut out);
    take(&mut m, "series", "series", &mut out);
    take(&mut m, "action", "action", &mut out);
    take(&mut m, "related", "related", &mut out);
    take(
        &mut m,
        "reportingController",
        "reportingComponent",
        &mut out,
    );
    take(&mut m, "reportingInstance", "reportingInstance", &mut out);
    if !out.contains_key("involvedObject") {
        out.insert("involvedObject".into(), json!({}));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_round_trip_keeps_cpu_target() {
        let v1 = json!({"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler","metadata":{"name":"h"},"spec":{"maxReplicas":5,"targetCPUUtilizationPercentage":80,"scaleTargetRef":{"kind":"Deployment","name":"web","apiVersion":"apps/v1"}}});
        let v2 = convert(v1.clone(), "autoscaling/v1", "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        let back = convert(v2, "autoscaling/v2", "autoscaling/v1");
        assert_eq!(back, v1);
    }

    #[test]
    fn event_round_trip() {
        let core = json!({"apiVersion":"v1","kind":"Event","metadata":{"name":"e"},"involvedObject":{"kind":"Pod","name":"p"},"reason":"Started","message":"hi","type":"Normal","count":2});
        let ev = convert(core.clone(), "v1", "events.k8s.io/v1");
        assert_eq!(ev["note"], "hi");
        assert_eq!(ev["regarding"]["name"], "p");
        let back = convert(ev, "events.k8s.io/v1", "v1");
        assert_eq!(back["message"], "hi");
        assert_eq!(back["count"], 2);
    }
}
