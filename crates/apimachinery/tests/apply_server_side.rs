//! Table tests of server-side apply and managedFields tracking, driven through the public API as the API server would call it.

use apimachinery::apply::{apply, update_managed_fields, FieldSet};
use apimachinery::patch_meta::root_type_for_api_version;
use serde_json::{json, Value};

const NOW: &str = "2026-01-01T00:00:00Z";

/// One write: `("apply" | "force" | "update" | "untracked", manager, object)`.
type Step<'a> = (&'a str, &'a str, Value);

/// Runs the writes in order from no object; returns the final object without
/// managedFields and the managers as `manager/operation: path path ...`, or
/// the first error.
fn run(steps: Vec<Step>) -> Result<(Value, Vec<String>), String> {
    let mut live: Option<Value> = None;
    for (write, manager, object) in steps {
        let ty = root_type_for_api_version(
            object["apiVersion"].as_str().unwrap_or_default(),
            object["kind"].as_str().unwrap_or_default(),
        );
        let next = match write {
            "apply" | "force" => apply(live.as_ref(), &object, manager, write == "force", ty, NOW)
                .map_err(|e| e.to_string())?,
            "update" => {
                // An update sends the whole object; keep the stored managedFields as a client would.
                let mut object = object.clone();
                if let Some(fields) = live
                    .as_ref()
                    .and_then(|l| l.pointer("/metadata/managedFields"))
                {
                    object["metadata"]["managedFields"] = fields.clone();
                }
                update_managed_fields(live.as_ref(), &object, manager, "Update", NOW, ty)
            }
            // An object stored without managedFields, as before field tracking existed.
            "untracked" => object.clone(),
            other => panic!("unknown write {other}"),
        };
        live = Some(next);
    }
    let mut object = live.expect("at least one step");
    let managers = match object["metadata"]
        .as_object_mut()
        .and_then(|m| m.shift_remove("managedFields"))
    {
        Some(Value::Array(entries)) => entries
            .iter()
            .map(|entry| {
                assert_eq!(entry["fieldsType"], "FieldsV1");
                assert_eq!(entry["time"], NOW);
                let set = FieldSet::from_fields_v1(&entry["fieldsV1"]).expect("valid fieldsV1");
                let paths: Vec<String> = set.iter().map(ToString::to_string).collect();
                format!(
                    "{}/{}/{}: {}",
                    entry["manager"].as_str().unwrap(),
                    entry["operation"].as_str().unwrap(),
                    entry["apiVersion"].as_str().unwrap(),
                    paths.join(" ")
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok((object, managers))
}

fn check(steps: Vec<Step>, expect: Result<(Value, &[&str]), &str>) {
    let expect = expect
        .map(|(object, managers)| {
            (
                object,
                managers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            )
        })
        .map_err(str::to_string);
    assert_eq!(run(steps), expect);
}

fn deploy(spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": spec})
}

fn cm(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
}

fn pod(containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
}

#[test]
#[rustfmt::skip]
fn applies_create_remove_and_share() {
    // Apply creates the object and records the applier.
    check(vec![("apply", "kubectl", cm(json!({"a": "1"})))], Ok((cm(json!({"a": "1"})), &["kubectl/Apply/v1: .data.a"])));
    // Applying again without a field removes it.
    check(vec![ ("apply", "kubectl", cm(json!({"a": "1", "b": "2"}))), ("apply", "kubectl", cm(json!({"a": "1"}))), ], Ok((cm(json!({"a": "1"})), &["kubectl/Apply/v1: .data.a"])));
    // Two appliers of the same value both own it, and the field survives one of them leaving.
    check(vec![ ("apply", "a", cm(json!({"x": "1"}))), ("apply", "b", cm(json!({"x": "1"}))), ], Ok((cm(json!({"x": "1"})), &["a/Apply/v1: .data.x", "b/Apply/v1: .data.x"])));
    check(vec![ ("apply", "a", cm(json!({"x": "1", "y": "2"}))), ("apply", "b", cm(json!({"x": "1"}))), ("apply", "a", cm(json!({"y": "2"}))), ], Ok((cm(json!({"x": "1", "y": "2"})), &["a/Apply/v1: .data.y", "b/Apply/v1: .data.x"])));
    // A field another manager set by update is not removed when the applier stops applying it.
    check(vec![ ("apply", "a", cm(json!({"x": "1"}))), ("update", "ctl", cm(json!({"x": "1", "y": "2"}))), ("apply", "a", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})), ], Ok((cm(json!({"y": "2"})), &["ctl/Update/v1: .data.y"])));
    // An applied empty map is owned as a whole.
    check(vec![ ("apply", "a", cm(json!({"x": "1"}))), ("apply", "a", cm(json!({}))), ], Ok((cm(json!({})), &["a/Apply/v1: .data"])));
    // Applying the same configuration twice changes nothing.
    check(vec![ ("apply", "a", deploy(json!({"replicas": 2}))), ("apply", "a", deploy(json!({"replicas": 2}))), ], Ok((deploy(json!({"replicas": 2})), &["a/Apply/apps/v1: .spec.replicas"])));
    // Status, identity and bookkeeping fields are never owned.
    let mut with_status = cm(json!({"a": "1"}));
    with_status["status"] = json!({"phase": "x"});
    with_status["metadata"]["uid"] = json!("u1");
    check(vec![("apply", "a", with_status.clone())], Ok((with_status, &["a/Apply/v1: .data.a"])));
    // Applying null for a field means not applying it.
    check(vec![("apply", "a", cm(json!({"a": "1", "b": null})))], Ok((cm(json!({"a": "1"})), &["a/Apply/v1: .data.a"])));
}

#[test]
#[rustfmt::skip]
fn conflicts_and_force() {
    let replicas = |n: u64| deploy(json!({"replicas": n}));
    check(vec![("apply", "a", replicas(1)), ("apply", "b", replicas(2))], Err("Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"));
    check(vec![("update", "kubectl-client-side-apply", replicas(1)), ("apply", "kubectl", replicas(2))], Err("Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"));
    check(vec![("apply", "a", deploy(json!({"replicas": 1, "paused": false}))), ("update", "u", deploy(json!({"replicas": 1, "paused": false, "minReadySeconds": 5}))), ("apply", "b", deploy(json!({"replicas": 2, "paused": true, "minReadySeconds": 6})))], Err("Apply failed with 3 conflicts: conflicts with \"a\":\n- .spec.paused\n- .spec.replicas\nconflicts with \"u\" using apps/v1:\n- .spec.minReadySeconds"));
    // Force moves ownership; a manager left with nothing disappears.
    check(vec![("apply", "a", replicas(1)), ("force", "b", replicas(2))], Ok((replicas(2), &["b/Apply/apps/v1: .spec.replicas"])));
    check(vec![ ("apply", "a", deploy(json!({"replicas": 1, "paused": false}))), ("force", "b", replicas(2)), ], Ok((deploy(json!({"replicas": 2, "paused": false})), &[ "a/Apply/apps/v1: .spec.paused", "b/Apply/apps/v1: .spec.replicas", ])));
    // Fields of an object that predates tracking belong to "before-first-apply".
    check(vec![("untracked", "-", replicas(1)), ("apply", "a", replicas(2))], Err("Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"));
    check(vec![("untracked", "-", deploy(json!({"replicas": 1, "paused": true}))), ("apply", "a", replicas(1))], Ok((deploy(json!({"replicas": 1, "paused": true})), &["a/Apply/apps/v1: .spec.replicas", "before-first-apply/Update/apps/v1: .spec.paused .spec.replicas"])));
    // After a forced takeover the previous owner conflicts in turn.
    check(vec![ ("apply", "a", replicas(1)), ("force", "b", replicas(2)), ("apply", "a", replicas(1)), ], Err("Apply failed with 1 conflict: conflict with \"b\": .spec.replicas"));
    // Re-applying an unchanged value does not conflict.
    check(vec![ ("apply", "a", replicas(1)), ("update", "hpa", replicas(3)), ("apply", "a", replicas(3)), ], Ok((replicas(3), &[ "a/Apply/apps/v1: .spec.replicas", "hpa/Update/apps/v1: .spec.replicas", ])));
}

#[test]
#[rustfmt::skip]
fn updates_move_ownership() {
    let replicas = |n: u64| deploy(json!({"replicas": n}));
    // An update after an apply takes the fields it changed.
    check(vec![ ("apply", "kubectl", replicas(1)), ("update", "kube-controller-manager", replicas(4)), ], Ok((replicas(4), &["kube-controller-manager/Update/apps/v1: .spec.replicas"])));
    // The applier then loses nothing else, and its next apply conflicts.
    check(vec![ ("apply", "kubectl", replicas(1)), ("update", "hpa", replicas(4)), ("apply", "kubectl", replicas(2)), ], Err("Apply failed with 1 conflict: conflict with \"hpa\" using apps/v1: .spec.replicas"));
    // Updates by one manager accumulate in one entry.
    check(vec![ ("update", "u", cm(json!({"a": "1"}))), ("update", "u", cm(json!({"a": "1", "b": "2"}))), ], Ok((cm(json!({"a": "1", "b": "2"})), &["u/Update/v1: .data .data.a .data.b"])));
    // Removing a field drops it from every manager.
    check(vec![ ("update", "u", cm(json!({"a": "1", "b": "2"}))), ("update", "v", cm(json!({"a": "1"}))), ], Ok((cm(json!({"a": "1"})), &["u/Update/v1: .data .data.a"])));
    // A create records maps it created with the map itself owned, as kubectl shows with ".".
    let labelled = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"app": "x"}}});
    check(vec![("update", "kubectl-create", labelled.clone())], Ok((labelled, &["kubectl-create/Update/v1: .metadata.labels .metadata.labels.app"])));
    // A write that changes nothing records nothing.
    check(vec![ ("update", "u", cm(json!({}))), ("update", "v", cm(json!({}))), ], Ok((cm(json!({})), &["u/Update/v1: .data"])));
}

#[test]
#[rustfmt::skip]
fn list_maps_merge_by_key() {
    let nginx = json!({"name": "nginx", "image": "nginx:1"});
    let sidecar = json!({"name": "sidecar", "image": "busybox"});
    check(vec![("apply", "a", pod(json!([nginx])))], Ok((pod(json!([nginx])), &["a/Apply/v1: .spec.containers[name=\"nginx\"] .spec.containers[name=\"nginx\"].image .spec.containers[name=\"nginx\"].name"])));
    // Two appliers each own their own container.
    check(vec![("apply", "a", pod(json!([nginx]))), ("apply", "b", pod(json!([sidecar])))], Ok((pod(json!([nginx, sidecar])), &["a/Apply/v1: .spec.containers[name=\"nginx\"] .spec.containers[name=\"nginx\"].image .spec.containers[name=\"nginx\"].name", "b/Apply/v1: .spec.containers[name=\"sidecar\"] .spec.containers[name=\"sidecar\"].image .spec.containers[name=\"sidecar\"].name"])));
    // Dropping a container removes only that one.
    check(vec![("apply", "a", pod(json!([nginx]))), ("apply", "b", pod(json!([sidecar]))), ("apply", "a", pod(json!([])))], Ok((pod(json!([sidecar])), &["b/Apply/v1: .spec.containers[name=\"sidecar\"] .spec.containers[name=\"sidecar\"].image .spec.containers[name=\"sidecar\"].name"])));
    // Changing another applier's container image conflicts on that field only.
    check(vec![("apply", "a", pod(json!([nginx]))), ("apply", "b", pod(json!([{"name": "nginx", "image": "nginx:2"}])))], Err("Apply failed with 1 conflict: conflict with \"a\": .spec.containers[name=\"nginx\"].image"));
    // A field within an element is removed when its applier stops applying it.
    check(vec![("apply", "a", pod(json!([{"name": "nginx", "image": "nginx:1", "args": ["x"]}]))), ("apply", "a", pod(json!([nginx])))], Ok((pod(json!([nginx])), &["a/Apply/v1: .spec.containers[name=\"nginx\"] .spec.containers[name=\"nginx\"].image .spec.containers[name=\"nginx\"].name"])));
    // Ports are keyed by containerPort and protocol, with the protocol defaulted.
    let with_port = pod(json!([{"name": "nginx", "ports": [{"containerPort": 80}]}]));
    check(vec![("apply", "a", with_port.clone())], Ok((with_port, &["a/Apply/v1: .spec.containers[name=\"nginx\"] .spec.containers[name=\"nginx\"].name .spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"] .spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"].containerPort"])));
    // Sets (finalizers) merge by value.
    let finalizers = |f: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": f}});
    check(vec![ ("apply", "a", finalizers(json!(["x"]))), ("apply", "b", finalizers(json!(["y"]))), ], Ok((finalizers(json!(["x", "y"])), &[ "a/Apply/v1: .metadata.finalizers[=\"x\"]", "b/Apply/v1: .metadata.finalizers[=\"y\"]", ])));
}

#[test]
#[rustfmt::skip]
fn fields_v1_is_kubernetes_json() {
    let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}});
    let ty = root_type_for_api_version("apps/v1", "Deployment");
    let result = apply(None, &applied, "kubectl", false, ty, NOW).unwrap();
    assert_eq!(result["metadata"]["managedFields"], json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": NOW, "fieldsType": "FieldsV1", "fieldsV1": { "f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}}} }}]));
}

#[test]
#[rustfmt::skip]
fn invalid_applies() {
    let ty = None;
    let err = |applied: Value| {
        apply(None, &applied, "a", false, ty, NOW)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(err(json!([1])), "invalid object: the applied configuration must be an object");
    assert_eq!(err(json!({"kind": "ConfigMap"})), "invalid object: apiVersion and kind must be set");
    assert_eq!(err(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"managedFields": []}})), "invalid object: metadata.managedFields must be nil");
    // A client clears managedFields by writing one empty entry.
    let live = apply(None, &cm(json!({"a": "1"})), "a", false, None, NOW).unwrap();
    let mut reset = live.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    assert_eq!(update_managed_fields(Some(&live), &reset, "u", "Update", NOW, None), cm(json!({"a": "1"})));
}
