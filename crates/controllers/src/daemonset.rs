//! The DaemonSet controller: one pod per eligible node (node selector,
//! required node affinity, taints against tolerations), rolled out with
//! RollingUpdate (maxUnavailable / maxSurge) or OnDelete and recorded in
//! ControllerRevisions, the way kube-controller-manager does.
//!
//! Pods are created with a required node affinity on `metadata.name` of
//! their node; the scheduler binds them.
//!
//! The `SuccessfulCreate` event ("Created pod: NAME") needs the name the API
//! server generates, so it is not in the plan. TODO(runtime): as for
//! ReplicaSets, record it on the DaemonSet once the pod's `Create` returns.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use crate::history::{self, CONTROLLER_REVISION_HASH_LABEL};
use crate::plan::{object_reference, Action, EventType, Plan, Resource};
use crate::pods;

/// The label older DaemonSet pods were matched by, still set for clients
/// that read it, from the `deprecated.daemonset.template.generation`
/// annotation the API server keeps on the DaemonSet.
pub const POD_TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// The field a node's name is selected by in node affinity.
const NODE_NAME_FIELD: &str = "metadata.name";
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

/// The tolerations every daemon pod gets, so node problems that make the
/// node controller taint a node do not evict or block its daemons
/// (`AddOrUpdateDaemonPodTolerations`): (key, effect).
const DAEMON_TOLERATIONS: [(&str, &str); 6] = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];
/// Only host-network daemons (CNI plugins, typically) run before the
/// network is up.
const HOST_NETWORK_TOLERATION: (&str, &str) =
    ("node.kubernetes.io/network-unavailable", "NoSchedule");

/// Reconciles one DaemonSet. `pods` are the pods in its namespace (only
/// those it controls are used); `revisions` are the ControllerRevisions in
/// its namespace (those it controls are its history, the rest only matter
/// for name collisions).
pub fn reconcile_daemonset(
    ds: &DaemonSet,
    nodes: &[&Node],
    pods: &[&Pod],
    revisions: &[&ControllerRevision],
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let (Some(spec), Some(uid)) = (ds.spec.as_ref(), ds.metadata.uid.as_deref()) else {
        return plan;
    };
    // Being deleted: its history may already be gone, so neither pods nor
    // status can be trusted; the garbage collector finishes the job.
    if ds.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let involved = object_reference("apps/v1", "DaemonSet", &ds.metadata);
    if pods::selector_is_empty(&spec.selector) {
        plan.push(Action::Event {
            involved,
            event_type: EventType::Warning,
            reason: "SelectingAll".into(),
            message: "This daemon set is selecting all pods. A non-empty selector is required."
                .into(),
        });
        return plan;
    }
    let mut pods: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| pods::is_controlled_by(&p.metadata, uid))
        .collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut nodes: Vec<&Node> = nodes.to_vec();
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let mut status = ds.status.clone().unwrap_or_default();
    let history = construct_history(ds, &pods, revisions, &mut plan);
    status.collision_count = history.collision_count;
    let ctx = Context {
        ds,
        involved: &involved,
        hash: &history.hash,
        generation: template_generation(ds),
        now,
    };

    // Terminal pods already being deleted are gone as far as placement is
    // concerned (the kubelet or pod GC removes them).
    let node_to_pods = pods_by_node(pods.iter().copied().filter(|p| {
        !(matches!(pods::pod_phase(p), "Succeeded" | "Failed")
            && p.metadata.deletion_timestamp.is_some())
    }));

    let before = plan.actions.len();
    manage(&ctx, &nodes, &node_to_pods, &mut plan);
    // Like kube's expectations: the rollout only looks at a settled state,
    // so it waits for the pods just created or deleted to show up.
    let settled = plan.actions.len() == before;
    if settled
        && spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate"
    {
        rolling_update(&ctx, &nodes, &node_to_pods, &mut plan);
    }

    // Old revisions beyond the limit go, except those a pod still runs.
    let live: BTreeSet<&str> = pods
        .iter()
        .filter_map(|p| {
            p.metadata
                .labels
                .as_ref()?
                .get(CONTROLLER_REVISION_HASH_LABEL)
                .map(String::as_str)
        })
        .collect();
    let limit = spec
        .revision_history_limit
        .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
        .max(0) as usize;
    for old in history::excess_skipping_live(&history.old, limit, |r| {
        live.contains(revision_hash(r).as_str())
    }) {
        plan.push(history::delete(old));
    }

    let computed = compute_status(&ctx, &nodes, &node_to_pods);
    status.desired_number_scheduled = computed.desired;
    status.current_number_scheduled = computed.current;
    status.number_misscheduled = computed.misscheduled;
    status.number_ready = computed.ready;
    status.number_available = nonzero(computed.available);
    status.number_unavailable = nonzero(computed.desired - computed.available);
    status.updated_number_scheduled = nonzero(computed.updated);
    status.observed_generation = ds.metadata.generation;
    if Some(&status) != ds.status.as_ref() {
        let mut updated = ds.clone();
        updated.status = Some(status);
        plan.push(Action::UpdateStatus {
            resource: Resource::DaemonSets,
            namespace: ds.metadata.namespace.clone(),
            name: ds.metadata.name.clone().unwrap_or_default(),
            object: pods::to_value(&updated),
        });
    }
    if let Some(at) = computed.next_available {
        plan.requeue(Duration::from_nanos(
            (at.as_nanosecond() - now.as_nanosecond()).max(0) as u64,
        ));
    }
    plan
}

struct Context<'a> {
    ds: &'a DaemonSet,
    involved: &'a serde_json::Value,
    /// The current revision's hash (the pods' `controller-revision-hash`).
    hash: &'a str,
    generation: Option<String>,
    now: Timestamp,
}

impl Context<'_> {
    fn spec(&self) -> &k8s_openapi::api::apps::v1::DaemonSetSpec {
        self.ds.spec.as_ref().expect("checked")
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec().min_ready_seconds.unwrap_or(0)
    }

    fn available(&self, pod: &Pod) -> bool {
        pods::is_pod_available(pod, self.min_ready_seconds(), self.now)
    }

    /// Whether a pod runs the current template (by hash, or by the
    /// deprecated template generation).
    fn updated(&self, pod: &Pod) -> bool {
        let labels = pod.metadata.labels.as_ref();
        let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
        label(CONTROLLER_REVISION_HASH_LABEL) == Some(self.hash)
            || self
                .generation
                .as_deref()
                .is_some_and(|g| label(POD_TEMPLATE_GENERATION_LABEL) == Some(g))
    }
}

struct History<'a> {
    hash: String,
    collision_count: Option<i32>,
    /// Revisions of earlier templates, oldest first.
    old: Vec<&'a ControllerRevision>,
}

/// Finds the revision of the current template, creating or renumbering it
/// as needed, and removes duplicates (kube's constructHistory).
fn construct_history<'a>(
    ds: &DaemonSet,
    pods: &[&Pod],
    revisions: &[&'a ControllerRevision],
    plan: &mut Plan,
) -> History<'a> {
    let spec = ds.spec.as_ref().expect("checked");
    let uid = ds.metadata.uid.as_deref().unwrap_or_default();
    let data = history::template_patch(&spec.template);
    let controlled = history::controlled_sorted(revisions, uid);
    let (current, old): (Vec<&ControllerRevision>, Vec<&ControllerRevision>) = controlled
        .into_iter()
        .partition(|r| history::has_data(r, &data));
    let next = history::max_revision(&old) + 1;
    let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);

    let Some(keep) = current.last().copied() else {
        let template = &spec.template;
        let (name, hash, collision_count) = history::free_name(
            &ds.metadata.name.clone().unwrap_or_default(),
            uid,
            revisions,
            &data,
            collision_count,
            |c| pods::template_hash(template, c),
        );
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.clone());
        let revision = history::new_revision(
            "apps/v1",
            "DaemonSet",
            &ds.metadata,
            &name,
            labels,
            data,
            next,
        );
        plan.push(history::create(&revision));
        return History {
            hash,
            collision_count,
            old,
        };
    };
    let hash = revision_hash(keep);
    if keep
        .metadata
        .labels
        .as_ref()
        .is_none_or(|l| !l.contains_key(CONTROLLER_REVISION_HASH_LABEL))
    {
        // Revisions from before the label existed are labelled by name.
        let mut labelled = keep.clone();
        labelled
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.clone());
        labelled.revision = keep.revision.max(next);
        plan.push(Action::Update {
            resource: Resource::ControllerRevisions,
            namespace: keep.metadata.namespace.clone(),
            name: keep.metadata.name.clone().unwrap_or_default(),
            object: pods::to_value(&labelled),
        });
    } else if keep.revision < next {
        plan.push(history::renumber(keep, next));
    }
    // Duplicates of the current template: relabel their pods, then drop them.
    for duplicate in &current[..current.len() - 1] {
        let duplicate_hash = revision_hash(duplicate);
        for pod in pods {
            let label = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL));
            if label == Some(&duplicate_hash) && duplicate_hash != hash {
                plan.push(Action::Patch {
                    resource: Resource::Pods,
                    namespace: pod.metadata.namespace.clone(),
                    name: pod.metadata.name.clone().unwrap_or_default(),
                    subresource: None,
                    patch: json!({"metadata": {"labels": {CONTROLLER_REVISION_HASH_LABEL: hash}}}),
                });
            }
        }
        plan.push(history::delete(duplicate));
    }
    History {
        hash,
        collision_count,
        old,
    }
}

fn revision_hash(revision: &ControllerRevision) -> String {
    revision
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
        .cloned()
        .unwrap_or_else(|| revision.metadata.name.clone().unwrap_or_default())
}

fn template_generation(ds: &DaemonSet) -> Option<String> {
    let value = ds
        .metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)?;
    value.parse::<i64>().ok().map(|g| g.to_string())
}

/// Daemon pods grouped by the node they are for: their `spec.nodeName`, or
/// before binding the node their affinity names.
fn pods_by_node<'a>(pods: impl Iterator<Item = &'a Pod>) -> BTreeMap<String, Vec<&'a Pod>> {
    let mut map: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods {
        if let Some(node) = target_node(pod) {
            map.entry(node).or_default().push(pod);
        }
    }
    for pods in map.values_mut() {
        pods.sort_by(|a, b| oldest_scheduled_first(a, b));
    }
    map
}

fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(node.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find_map(|r| {
            let values = r.values.as_deref().unwrap_or(&[]);
            (r.key == NODE_NAME_FIELD && r.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
}

/// Scheduled pods first, then oldest first (kube's
/// podByCreationTimestampAndPhase), so "the" pod of a node is stable.
fn oldest_scheduled_first(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    let unscheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(str::is_empty)
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    unscheduled(a)
        .cmp(&unscheduled(b))
        .then(created(a).cmp(&created(b)))
        .then(a.metadata.name.cmp(&b.metadata.name))
}

/// Creates pods on nodes that should run one and have none; deletes pods on
/// nodes that must not run one, failed and succeeded pods, and duplicates
/// (kube's manage / podsShouldBeOnNode).
fn manage(
    ctx: &Context,
    nodes: &[&Node],
    node_to_pods: &BTreeMap<String, Vec<&Pod>>,
    plan: &mut Plan,
) {
    let surge = allows_surge(ctx.ds);
    let mut create_on: Vec<&str> = Vec::new();
    let mut delete: Vec<&Pod> = Vec::new();
    let mut events: Vec<(EventType, &str, String)> = Vec::new();
    for node in nodes {
        let node_name = node.metadata.name.as_deref().unwrap_or_default();
        let (should_run, should_continue) = node_should_run_daemon_pod(node, ctx.ds);
        let daemon_pods = node_to_pods.get(node_name);
        match daemon_pods {
            None if should_run => create_on.push(node_name),
            Some(daemon_pods) if should_continue => {
                let mut running: Vec<&Pod> = Vec::new();
                for pod in daemon_pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                {
                    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
                    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
                    match pods::pod_phase(pod) {
                        "Failed" => {
                            events.push((
                                EventType::Warning,
                                "FailedDaemonPod",
                                format!("Found failed daemon pod {namespace}/{pod_name} on node {node_name}, will try to kill it"),
                            ));
                            delete.push(pod);
                        }
                        "Succeeded" => {
                            events.push((
                                EventType::Normal,
                                "SucceededDaemonPod",
                                format!(
                                    "Found succeeded daemon pod {namespace}/{pod_name} on node {node_name}, will try to delete it"
                                ),
                            ));
                            delete.push(pod);
                        }
                        _ => running.push(pod),
                    }
                }
                // The replacement of a deleted failed pod is created once it
                // is gone, on a later sync.
                if !surge {
                    delete.extend(running.iter().skip(1));
                    continue;
                }
                if running.is_empty() {
                    if should_run {
                        create_on.push(node_name);
                    }
                    continue;
                }
                // Surging allows one old and one new pod while the new one
                // becomes available; any others go.
                let mut oldest_new: Option<&Pod> = None;
                let mut oldest_old: Option<&Pod> = None;
                for pod in &running {
                    let slot = if ctx.updated(pod) {
                        &mut oldest_new
                    } else {
                        &mut oldest_old
                    };
                    if slot.is_none() {
                        *slot = Some(pod);
                    } else {
                        delete.push(pod);
                    }
                }
                if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
                    if !pods::is_pod_ready(old) || ctx.available(new) {
                        delete.push(old);
                    }
                }
            }
            Some(daemon_pods) if !should_continue => {
                delete.extend(
                    daemon_pods
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none()),
                );
            }
            _ => {}
        }
    }
    // Unscheduled pods for nodes that no longer exist would never be bound,
    // and pod GC only collects pods bound to missing nodes.
    let existing: BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    for (node_name, daemon_pods) in node_to_pods {
        if existing.contains(node_name.as_str()) {
            continue;
        }
        delete.extend(daemon_pods.iter().filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_none_or(str::is_empty)
        }));
    }
    for (event_type, reason, message) in events {
        plan.push(Action::Event {
            involved: ctx.involved.clone(),
            event_type,
            reason: reason.into(),
            message,
        });
    }
    sync_nodes(ctx, &create_on, &delete, plan);
}

/// Creates a pod on each node in `create_on` and deletes `delete`.
fn sync_nodes(ctx: &Context, create_on: &[&str], delete: &[&Pod], plan: &mut Plan) {
    for node in create_on {
        let pod = new_daemon_pod(ctx, node);
        plan.push(Action::Create {
            resource: Resource::Pods,
            namespace: ctx.ds.metadata.namespace.clone(),
            object: pods::to_value(&pod),
        });
    }
    let mut seen = BTreeSet::new();
    for pod in delete {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if !seen.insert(name.clone()) {
            continue;
        }
        plan.push(Action::Delete {
            resource: Resource::Pods,
            namespace: pod.metadata.namespace.clone(),
            name: name.clone(),
            uid: pod.metadata.uid.clone(),
            propagation: None,
        });
        plan.push(Action::Event {
            involved: ctx.involved.clone(),
            event_type: EventType::Normal,
            reason: "SuccessfulDelete".into(),
            message: format!("Deleted pod: {name}"),
        });
    }
}

/// The pod for one node: the template with the daemon tolerations, the
/// revision labels, and a required affinity to exactly that node.
fn new_daemon_pod(ctx: &Context, node: &str) -> Pod {
    let mut template = ctx.spec().template.clone();
    let labels = template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default);
    if let Some(generation) = &ctx.generation {
        labels.insert(POD_TEMPLATE_GENERATION_LABEL.into(), generation.clone());
    }
    labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), ctx.hash.to_string());
    let owner = pods::controller_reference("apps/v1", "DaemonSet", &ctx.ds.metadata);
    let mut pod = pods::pod_from_template(
        &template,
        ctx.ds.metadata.namespace.as_deref().unwrap_or_default(),
        owner,
    );
    pod.metadata.generate_name = Some(format!(
        "{}-",
        ctx.ds.metadata.name.as_deref().unwrap_or_default()
    ));
    let spec = pod.spec.get_or_insert_with(Default::default);
    add_daemon_tolerations(spec);
    replace_node_affinity(spec, node);
    pod
}

fn add_daemon_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network == Some(true);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let wanted = DAEMON_TOLERATIONS
        .iter()
        .chain(host_network.then_some(&HOST_NETWORK_TOLERATION));
    for (key, effect) in wanted {
        let toleration = Toleration {
            key: Some(key.to_string()),
            operator: Some("Exists".into()),
            effect: Some(effect.to_string()),
            ..Default::default()
        };
        // An identical toleration the user wrote is kept as is.
        if !tolerations.iter().any(|t| {
            t.key == toleration.key
                && t.operator == toleration.operator
                && t.effect == toleration.effect
                && t.value.is_none()
        }) {
            tolerations.push(toleration);
        }
    }
}

/// Replaces the required node affinity terms with one selecting `node` by
/// name (kube's ReplaceDaemonSetPodNodeNameNodeAffinity); preferred terms
/// stay.
fn replace_node_affinity(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: NODE_NAME_FIELD.into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
        ..Default::default()
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}

/// (shouldRun, shouldContinueRunning) for a node (kube's
/// NodeShouldRunDaemonPod): a node the pod's node name, node selector or
/// required affinity rule out runs nothing; an untolerated NoSchedule taint
/// stops new pods but keeps running ones; an untolerated NoExecute taint
/// stops both.
pub fn node_should_run_daemon_pod(node: &Node, ds: &DaemonSet) -> (bool, bool) {
    let Some(spec) = ds.spec.as_ref() else {
        return (false, false);
    };
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    let mut pod_spec = spec.template.spec.clone().unwrap_or_default();
    if pod_spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return (false, false);
    }
    add_daemon_tolerations(&mut pod_spec);
    if !fits_node_affinity(&pod_spec, node) {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let tolerations = pod_spec.tolerations.as_deref().unwrap_or(&[]);
    let untolerated = |effects: &[&str]| {
        taints
            .iter()
            .filter(|t| effects.contains(&t.effect.as_str()))
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    if untolerated(&["NoSchedule", "NoExecute"]) {
        return (false, !untolerated(&["NoExecute"]));
    }
    (true, true)
}

fn fits_node_affinity(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if let Some(selector) = &spec.node_selector {
        if selector.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(selector) => selector
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node, labels)),
    }
}

/// A term matches when all its requirements do; an empty term matches
/// nothing.
fn term_matches(term: &NodeSelectorTerm, node: &Node, labels: &BTreeMap<String, String>) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            r.key == NODE_NAME_FIELD && requirement_matches(r, node.metadata.name.as_deref())
        })
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or(&[]);
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(v), [bound]) = (value.and_then(|v| v.parse::<i64>().ok()), values) else {
                return false;
            };
            let Ok(bound) = bound.parse::<i64>() else {
                return false;
            };
            if op == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty()) {
        if key != taint.key {
            return false;
        }
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// maxUnavailable and maxSurge as pod counts for `desired` nodes (both
/// rounded up); with neither allowing anything, one may be unavailable.
fn rollout_limits(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let rolling = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let max_unavailable = rolling
        .and_then(|r| r.max_unavailable.as_ref())
        .cloned()
        .unwrap_or(IntOrString::Int(1));
    let max_surge = rolling
        .and_then(|r| r.max_surge.as_ref())
        .cloned()
        .unwrap_or(IntOrString::Int(0));
    let mut unavailable = pods::scaled_int_or_percent(&max_unavailable, desired, true).unwrap_or(1);
    let surge = pods::scaled_int_or_percent(&max_surge, desired, true).unwrap_or(0);
    if desired > 0 && unavailable == 0 && surge == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

fn allows_surge(ds: &DaemonSet) -> bool {
    let rolling_update = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .is_none_or(|s| s.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate");
    rolling_update && rollout_limits(ds, 1).0 > 0
}

/// Replaces old pods within maxUnavailable (deleting old pods; manage then
/// creates their replacements) or maxSurge (creating new pods next to old
/// ones and deleting the old once the new are available) — kube's
/// rollingUpdate.
fn rolling_update(
    ctx: &Context,
    nodes: &[&Node],
    node_to_pods: &BTreeMap<String, Vec<&Pod>>,
    plan: &mut Plan,
) {
    let node_by_name: BTreeMap<&str, &Node> = nodes
        .iter()
        .filter_map(|n| Some((n.metadata.name.as_deref()?, *n)))
        .collect();
    let should_run = |name: &str| {
        node_by_name
            .get(name)
            .is_some_and(|n| node_should_run_daemon_pod(n, ctx.ds).0)
    };
    // Every node that should run a pod takes part, even with no pod yet.
    let mut all: BTreeMap<&str, Vec<&Pod>> = node_to_pods
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let mut desired = 0;
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if node_should_run_daemon_pod(node, ctx.ds).0 {
            desired += 1;
            all.entry(name).or_default();
        }
    }
    let (max_surge, max_unavailable) = rollout_limits(ctx.ds, desired);

    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replacements: Vec<&Pod> = Vec::new();
        let mut candidates: Vec<&Pod> = Vec::new();
        for pods_on_node in all.values() {
            let Some((new, old)) = updated_pods_on_node(ctx, pods_on_node) else {
                // Excess pods: manage cleans them up; count it unavailable.
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !ctx.available(new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !ctx.available(old) {
                        // An unavailable old pod costs nothing to replace.
                        replacements.push(old);
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let remaining = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
        replacements.extend(candidates.into_iter().take(remaining));
        sync_nodes(ctx, &[], &replacements, plan);
        return;
    }

    let mut delete: Vec<&Pod> = Vec::new();
    let mut should_not_run: Vec<&Pod> = Vec::new();
    let mut candidates: Vec<&str> = Vec::new();
    let mut allowed: Vec<&str> = Vec::new();
    let mut surging = 0;
    let mut available = 0;
    for (node, pods_on_node) in &all {
        let Some((new, old)) = updated_pods_on_node(ctx, pods_on_node) else {
            surging += 1;
            continue;
        };
        if let Some(pod) = old.or(new) {
            if ctx.available(pod) {
                available += 1;
            }
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !ctx.available(old) {
                    if should_run(node) {
                        allowed.push(node);
                    } else {
                        delete.push(old);
                    }
                } else if !should_run(node) {
                    should_not_run.push(old);
                } else if surging < max_surge {
                    candidates.push(node);
                }
            }
            (Some(new), Some(old)) => {
                if ctx.available(new) {
                    delete.push(old);
                } else {
                    surging += 1;
                }
            }
        }
    }
    // With surge the owner expects full availability: a pod on a node that
    // no longer qualifies goes only once enough others are available.
    let deletable = (available - desired).clamp(0, should_not_run.len() as i32) as usize;
    delete.extend(should_not_run.into_iter().take(deletable));
    let remaining = (max_surge - surging).clamp(0, candidates.len() as i32) as usize;
    allowed.extend(candidates.into_iter().take(remaining));
    sync_nodes(ctx, &allowed, &delete, plan);
}

/// The node's one current and one old pod (ignoring pods being deleted);
/// None when there are more of either.
fn updated_pods_on_node<'a>(
    ctx: &Context,
    pods: &[&'a Pod],
) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if ctx.updated(pod) { &mut new } else { &mut old };
        if slot.is_some() {
            return None;
        }
        *slot = Some(*pod);
    }
    Some((new, old))
}

struct ComputedStatus {
    desired: i32,
    current: i32,
    misscheduled: i32,
    ready: i32,
    available: i32,
    updated: i32,
    /// When the next ready pod becomes available (minReadySeconds).
    next_available: Option<Timestamp>,
}

/// The counts `kubectl rollout status ds` reads, from the oldest pod on each
/// node.
fn compute_status(
    ctx: &Context,
    nodes: &[&Node],
    node_to_pods: &BTreeMap<String, Vec<&Pod>>,
) -> ComputedStatus {
    let mut s = ComputedStatus {
        desired: 0,
        current: 0,
        misscheduled: 0,
        ready: 0,
        available: 0,
        updated: 0,
        next_available: None,
    };
    for node in nodes {
        let (should_run, _) = node_should_run_daemon_pod(node, ctx.ds);
        let pod = node_to_pods
            .get(node.metadata.name.as_deref().unwrap_or_default())
            .and_then(|p| p.first());
        if !should_run {
            if pod.is_some() {
                s.misscheduled += 1;
            }
            continue;
        }
        s.desired += 1;
        let Some(pod) = pod else { continue };
        s.current += 1;
        if pods::is_pod_ready(pod) {
            s.ready += 1;
            if ctx.available(pod) {
                s.available += 1;
            } else if let Some(at) = pods::available_at(pod, ctx.min_ready_seconds()) {
                s.next_available = Some(s.next_available.map_or(at, |t: Timestamp| t.min(at)));
            }
        }
        if ctx.updated(pod) {
            s.updated += 1;
        }
    }
    s
}

/// Kubernetes omits these zero counters (`omitempty`).
fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::{json, Value};

    const NOW: &str = "2026-03-01T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    /// DaemonSet `agent` with `spec` merged over a minimal spec.
    fn ds(spec: Value) -> DaemonSet {
        let mut base = json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "ns", "uid": "ds-uid", "generation": 2, "resourceVersion": "7"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "agent:1"}]}}
            }
        });
        if let (Some(b), Value::Object(p)) = (base["spec"].as_object_mut(), spec) {
            b.extend(p);
        }
        serde_json::from_value(base).unwrap()
    }

    fn with_image(mut d: DaemonSet, image: &str) -> DaemonSet {
        d.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some(image.into());
        d
    }

    fn node(name: &str, labels: Value, taints: Value) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}),
        )
        .unwrap()
    }

    fn plain_node(name: &str) -> Node {
        node(name, json!({}), json!([]))
    }

    /// The current revision of `d`, as the API would hold it.
    fn revision_of(d: &DaemonSet, number: i64) -> ControllerRevision {
        let plan = reconcile_daemonset(d, &[], &[], &[], now());
        let Action::Create { object, .. } = &plan.actions[0] else {
            panic!("expected the revision first: {plan:#?}")
        };
        let mut r: ControllerRevision = serde_json::from_value(object.clone()).unwrap();
        r.revision = number;
        r.metadata.uid = Some(format!("uid-{}", r.metadata.name.clone().unwrap()));
        r
    }

    fn hash_of(d: &DaemonSet) -> String {
        pods::template_hash(&d.spec.as_ref().unwrap().template, None)
    }

    /// A daemon pod of `d`'s current template bound to `node`.
    fn daemon_pod(name: &str, node: &str, hash: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                         "creationTimestamp": "2026-03-01T10:00:00Z",
                         "labels": {"app": "agent", "controller-revision-hash": hash},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "ds-uid", "controller": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "agent:1"}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn ready(mut p: Pod, since: &str) -> Pod {
        p.status.as_mut().unwrap().conditions = Some(vec![serde_json::from_value(
            json!({"type": "Ready", "status": "True", "lastTransitionTime": since}),
        )
        .unwrap()]);
        p
    }

    fn run(d: &DaemonSet, nodes: &[Node], pods: &[Pod], revisions: &[ControllerRevision]) -> Plan {
        let nodes: Vec<&Node> = nodes.iter().collect();
        let pods: Vec<&Pod> = pods.iter().collect();
        let revisions: Vec<&ControllerRevision> = revisions.iter().collect();
        reconcile_daemonset(d, &nodes, &pods, &revisions, now())
    }

    fn summary(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .filter(|a| !matches!(a, Action::Event { reason, .. } if reason == "SuccessfulCreate" || reason == "SuccessfulDelete"))
            .map(|a| match a {
                Action::Create {
                    resource: Resource::Pods,
                    object,
                    ..
                } => format!(
                    "create pod on {}",
                    object["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
                        ["matchFields"][0]["values"][0]
                        .as_str()
                        .unwrap()
                ),
                Action::Create { object, .. } => format!(
                    "create revision {} #{}",
                    object["metadata"]["name"].as_str().unwrap(),
                    object["revision"]
                ),
                Action::Update { name, object, .. } => format!("update revision {name} #{}", object["revision"]),
                Action::Delete { resource, name, .. } => format!("delete {resource:?} {name}"),
                Action::Patch { name, patch, .. } => format!("patch {name} {patch}"),
                Action::UpdateStatus { .. } => "status".into(),
                Action::Event {
                    event_type,
                    reason,
                    message,
                    ..
                } => format!("event {event_type:?} {reason}: {message}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn check(plan: &Plan, want: &[&str]) {
        assert_eq!(summary(plan), want, "plan: {plan:#?}");
    }

    fn status_of(plan: &Plan) -> DaemonSetStatus {
        plan.actions
            .iter()
            .find_map(|a| match a {
                Action::UpdateStatus { object, .. } => {
                    Some(serde_json::from_value(object["status"].clone()).unwrap())
                }
                _ => None,
            })
            .expect("a status update")
    }

    /// Applies a plan like the API server: pods are created bound (as the
    /// scheduler would), running and ready; deleted pods disappear;
    /// revisions are created, updated and deleted; status is written.
    fn apply(
        d: &mut DaemonSet,
        pods: &mut Vec<Pod>,
        revisions: &mut Vec<ControllerRevision>,
        plan: &Plan,
    ) {
        for action in &plan.actions {
            match action {
                Action::Create {
                    resource: Resource::Pods,
                    object,
                    ..
                } => {
                    let mut p: Pod = serde_json::from_value(object.clone()).unwrap();
                    let node = target_node(&p).unwrap();
                    let name = format!("agent-{node}-{}", pods.len());
                    p.metadata.uid = Some(format!("uid-{name}"));
                    p.metadata.name = Some(name);
                    p.metadata.creation_timestamp = Some(Time(now()));
                    p.spec.as_mut().unwrap().node_name = Some(node);
                    p.status = Some(serde_json::from_value(json!({"phase": "Running"})).unwrap());
                    pods.push(ready(p, "2026-03-01T11:00:00Z"));
                }
                Action::Create { object, .. } => {
                    let mut r: ControllerRevision = serde_json::from_value(object.clone()).unwrap();
                    r.metadata.uid = Some(format!("uid-{}", r.metadata.name.clone().unwrap()));
                    revisions.push(r);
                }
                Action::Update { object, .. } => {
                    let r: ControllerRevision = serde_json::from_value(object.clone()).unwrap();
                    let slot = revisions
                        .iter_mut()
                        .find(|x| x.metadata.name == r.metadata.name)
                        .unwrap();
                    *slot = r;
                }
                Action::Delete {
                    resource: Resource::Pods,
                    name,
                    ..
                } => pods.retain(|p| p.metadata.name.as_deref() != Some(name)),
                Action::Delete { name, .. } => {
                    revisions.retain(|r| r.metadata.name.as_deref() != Some(name))
                }
                Action::UpdateStatus { object, .. } => {
                    *d = serde_json::from_value(object.clone()).unwrap()
                }
                _ => {}
            }
        }
    }

    #[test]
    fn creates_the_revision_and_one_pod_per_node() {
        let d = ds(json!({}));
        let nodes = [plain_node("n1"), plain_node("n2")];
        let hash = hash_of(&d);
        let plan = run(&d, &nodes, &[], &[]);
        check(
            &plan,
            &[
                &format!("create revision agent-{hash} #1"),
                "create pod on n1",
                "create pod on n2",
                "status",
            ],
        );
        let Action::Create {
            object: revision, ..
        } = &plan.actions[0]
        else {
            panic!()
        };
        assert_eq!(
            revision["metadata"]["labels"],
            json!({"app": "agent", "controller-revision-hash": hash})
        );
        assert_eq!(
            revision["metadata"]["ownerReferences"][0]["kind"],
            "DaemonSet"
        );
        assert_eq!(revision["data"]["spec"]["template"]["$patch"], "replace");
        let Action::Create { object: pod, .. } = &plan.actions[1] else {
            panic!()
        };
        assert_eq!(pod["metadata"]["generateName"], "agent-");
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app": "agent", "controller-revision-hash": hash})
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "ds-uid");
        assert_eq!(
            pod["spec"]["affinity"],
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}})
        );
        let keys: Vec<_> = pod["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                format!(
                    "{}:{}",
                    t["key"].as_str().unwrap(),
                    t["effect"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                "node.kubernetes.io/not-ready:NoExecute",
                "node.kubernetes.io/unreachable:NoExecute",
                "node.kubernetes.io/disk-pressure:NoSchedule",
                "node.kubernetes.io/memory-pressure:NoSchedule",
                "node.kubernetes.io/pid-pressure:NoSchedule",
                "node.kubernetes.io/unschedulable:NoSchedule",
            ]
        );
        let status = status_of(&plan);
        assert_eq!(
            (
                status.desired_number_scheduled,
                status.current_number_scheduled
            ),
            (2, 0)
        );
        assert_eq!(
            (status.number_unavailable, status.observed_generation),
            (Some(2), Some(2))
        );

        // Converges: after the writes, only the status catches up, then
        // nothing changes.
        let (mut d, mut pods, mut revisions) = (d, Vec::new(), Vec::new());
        apply(&mut d, &mut pods, &mut revisions, &plan);
        let plan = run(&d, &nodes, &pods, &revisions);
        check(&plan, &["status"]);
        let status = status_of(&plan);
        assert_eq!(
            (
                status.current_number_scheduled,
                status.number_ready,
                status.number_available,
                status.updated_number_scheduled
            ),
            (2, 2, Some(2), Some(2))
        );
        assert_eq!(status.number_unavailable, None);
        apply(&mut d, &mut pods, &mut revisions, &plan);
        assert!(run(&d, &nodes, &pods, &revisions).is_empty());
    }

    #[test]
    fn node_selector_affinity_and_taints_pick_the_nodes() {
        let d = ds(
            json!({"template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                "containers": [{"name": "c", "image": "agent:1"}],
                "nodeSelector": {"role": "worker"},
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}, {"key": "cores", "operator": "Gt", "values": ["4"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]}
                ]}}},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]
            }}}),
        );
        let nodes = [
            node("big", json!({"role": "worker", "cores": "8"}), json!([])),
            node("small", json!({"role": "worker", "cores": "2"}), json!([])),
            node(
                "gpu",
                json!({"role": "worker", "cores": "8", "gpu": "a100"}),
                json!([]),
            ),
            node("special", json!({"role": "worker"}), json!([])),
            node("master", json!({"cores": "8"}), json!([])),
            node(
                "infra",
                json!({"role": "worker", "cores": "8"}),
                json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]),
            ),
            node(
                "other",
                json!({"role": "worker", "cores": "8"}),
                json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
            ),
            node(
                "cordoned",
                json!({"role": "worker", "cores": "8"}),
                json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
            ),
            node(
                "notready",
                json!({"role": "worker", "cores": "8"}),
                json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
            ),
            node(
                "netdown",
                json!({"role": "worker", "cores": "8"}),
                json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]),
            ),
        ];
        let plan = run(&d, &nodes, &[], &[]);
        let created: Vec<_> = summary(&plan)
            .into_iter()
            .filter(|s| s.starts_with("create pod"))
            .collect();
        assert_eq!(
            created,
            [
                "create pod on big",
                "create pod on cordoned",
                "create pod on infra",
                "create pod on notready",
                "create pod on special"
            ]
        );
        // Host-network daemons also run where the network is not up yet.
        let mut host = d.clone();
        host.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .host_network = Some(true);
        assert_eq!(node_should_run_daemon_pod(&nodes[9], &host), (true, true));
        assert_eq!(node_should_run_daemon_pod(&nodes[9], &d), (false, true));
    }

    #[test]
    fn pods_leave_nodes_that_no_longer_qualify() {
        let d = ds(json!({}));
        let hash = hash_of(&d);
        let revisions = [revision_of(&d, 1)];
        let nodes = [
            node(
                "evict",
                json!({}),
                json!([{"key": "k", "effect": "NoExecute"}]),
            ),
            node(
                "keep",
                json!({}),
                json!([{"key": "k", "effect": "NoSchedule"}]),
            ),
        ];
        let pods = [
            ready(
                daemon_pod("agent-a", "evict", &hash, "Running"),
                "2026-03-01T11:00:00Z",
            ),
            ready(
                daemon_pod("agent-b", "keep", &hash, "Running"),
                "2026-03-01T11:00:00Z",
            ),
            daemon_pod("agent-c", "gone", &hash, "Running"),
        ];
        let plan = run(&d, &nodes, &pods, &revisions);
        // A NoExecute taint evicts; a NoSchedule taint only keeps new pods
        // away; a pod bound to a vanished node is left to pod GC.
        check(&plan, &["delete Pods agent-a", "status"]);
        let status = status_of(&plan);
        assert_eq!(
            (status.desired_number_scheduled, status.number_misscheduled),
            (0, 2)
        );
    }

    #[test]
    fn unscheduled_pods_for_missing_nodes_are_deleted() {
        let d = ds(json!({}));
        let mut pending = daemon_pod("agent-x", "", &hash_of(&d), "Pending");
        replace_node_affinity(pending.spec.as_mut().unwrap(), "gone");
        let plan = run(&d, &[], &[pending], &[revision_of(&d, 1)]);
        check(&plan, &["delete Pods agent-x", "status"]);
    }

    #[test]
    fn failed_succeeded_and_duplicate_pods_are_deleted() {
        let d = ds(json!({}));
        let hash = hash_of(&d);
        let revisions = [revision_of(&d, 1)];
        let nodes = [plain_node("n1"), plain_node("n2"), plain_node("n3")];
        let mut newer = daemon_pod("agent-dup", "n3", &hash, "Running");
        newer.metadata.creation_timestamp = Some(Time("2026-03-01T11:00:00Z".parse().unwrap()));
        let pods = [
            daemon_pod("agent-f", "n1", &hash, "Failed"),
            daemon_pod("agent-s", "n2", &hash, "Succeeded"),
            daemon_pod("agent-old", "n3", &hash, "Running"),
            newer,
        ];
        let plan = run(&d, &nodes, &pods, &revisions);
        check(
            &plan,
            &[
                "event Warning FailedDaemonPod: Found failed daemon pod ns/agent-f on node n1, will try to kill it",
                "event Normal SucceededDaemonPod: Found succeeded daemon pod ns/agent-s on node n2, will try to delete it",
                "delete Pods agent-f",
                "delete Pods agent-s",
                "delete Pods agent-dup",
                "status",
            ],
        );
        let deleted: Vec<_> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Event {
                    reason, message, ..
                } if reason == "SuccessfulDelete" => Some(message.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            deleted,
            [
                "Deleted pod: agent-f",
                "Deleted pod: agent-s",
                "Deleted pod: agent-dup"
            ]
        );
        // Once the failed pod is gone its replacement is created.
        let mut d2 = d.clone();
        let (mut pods, mut revisions) = (pods.to_vec(), revisions.to_vec());
        apply(&mut d2, &mut pods, &mut revisions, &plan);
        let plan = run(&d2, &nodes, &pods, &revisions);
        check(&plan, &["create pod on n1", "create pod on n2", "status"]);
    }

    #[test]
    fn rolling_update_replaces_within_max_unavailable() {
        let old = ds(json!({}));
        let old_hash = hash_of(&old);
        let new = with_image(
            ds(
                json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}}),
            ),
            "agent:2",
        );
        let revisions = [revision_of(&old, 1)];
        let nodes = [plain_node("n1"), plain_node("n2"), plain_node("n3")];
        let pods: Vec<Pod> = ["n1", "n2", "n3"]
            .iter()
            .map(|n| {
                ready(
                    daemon_pod(&format!("agent-{n}"), n, &old_hash, "Running"),
                    "2026-03-01T11:00:00Z",
                )
            })
            .collect();
        let new_hash = hash_of(&new);
        // The new revision, and one old pod at a time.
        let plan = run(&new, &nodes, &pods, &revisions);
        check(
            &plan,
            &[
                &format!("create revision agent-{new_hash} #2"),
                "delete Pods agent-n1",
                "status",
            ],
        );
        let (mut d, mut pods, mut revisions) = (new, pods, revisions.to_vec());
        apply(&mut d, &mut pods, &mut revisions, &plan);
        let plan = run(&d, &nodes, &pods, &revisions);
        check(&plan, &["create pod on n1", "status"]);
        // The new pod is not ready yet: it uses up maxUnavailable.
        apply(&mut d, &mut pods, &mut revisions, &plan);
        let fresh = pods
            .iter_mut()
            .find(|p| target_node(p).as_deref() == Some("n1"))
            .unwrap();
        fresh.status.as_mut().unwrap().conditions = None;
        let plan = run(&d, &nodes, &pods, &revisions);
        check(&plan, &["status"]);
        // Ready again: the next old pod goes.
        apply(&mut d, &mut pods, &mut revisions, &plan);
        let fresh = pods
            .iter_mut()
            .find(|p| target_node(p).as_deref() == Some("n1"))
            .unwrap();
        *fresh = ready(fresh.clone(), "2026-03-01T11:00:00Z");
        check(
            &run(&d, &nodes, &pods, &revisions),
            &["delete Pods agent-n2", "status"],
        );
    }

    #[test]
    fn rolling_update_percentages_and_unavailable_old_pods() {
        let old = ds(json!({}));
        let old_hash = hash_of(&old);
        let new = with_image(
            ds(json!({"updateStrategy": {"rollingUpdate": {"maxUnavailable": "50%"}}})),
            "agent:2",
        );
        let revisions = [revision_of(&old, 1), revision_of(&new, 2)];
        let nodes = [
            plain_node("n1"),
            plain_node("n2"),
            plain_node("n3"),
            plain_node("n4"),
            plain_node("n5"),
        ];
        let mut pods: Vec<Pod> = ["n1", "n2", "n3", "n4"]
            .iter()
            .map(|n| {
                ready(
                    daemon_pod(&format!("agent-{n}"), n, &old_hash, "Running"),
                    "2026-03-01T11:00:00Z",
                )
            })
            .collect();
        // An old pod that is not ready is replaced without counting.
        pods.push(daemon_pod("agent-n5", "n5", &old_hash, "Running"));
        let plan = run(&new, &nodes, &pods, &revisions);
        // 50% of 5 rounds up to 3: the unready pod plus two more.
        check(
            &plan,
            &[
                "delete Pods agent-n5",
                "delete Pods agent-n1",
                "delete Pods agent-n2",
                "status",
            ],
        );
        assert_eq!(status_of(&plan).updated_number_scheduled, None);
    }

    #[test]
    fn rolling_update_with_surge_adds_before_removing() {
        let old = ds(json!({}));
        let old_hash = hash_of(&old);
        let new = with_image(
            ds(json!({"updateStrategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}})),
            "agent:2",
        );
        let new_hash = hash_of(&new);
        let revisions = [revision_of(&old, 1), revision_of(&new, 2)];
        let nodes = [plain_node("n1"), plain_node("n2")];
        let pods: Vec<Pod> = ["n1", "n2"]
            .iter()
            .map(|n| {
                ready(
                    daemon_pod(&format!("agent-{n}"), n, &old_hash, "Running"),
                    "2026-03-01T11:00:00Z",
                )
            })
            .collect();
        let plan = run(&new, &nodes, &pods, &revisions);
        check(&plan, &["create pod on n1", "status"]);
        // New pod available: the old one on that node goes, and the next
        // node surges.
        let mut pods = pods;
        pods.push(ready(
            daemon_pod("agent-n1-new", "n1", &new_hash, "Running"),
            "2026-03-01T11:00:00Z",
        ));
        let plan = run(&new, &nodes, &pods, &revisions);
        check(&plan, &["delete Pods agent-n1", "status"]);
        // Not yet available: both stay and nothing else surges.
        pods.last_mut().unwrap().status.as_mut().unwrap().conditions = None;
        check(&run(&new, &nodes, &pods, &revisions), &["status"]);
    }

    #[test]
    fn on_delete_leaves_old_pods_until_deleted() {
        let old = ds(json!({}));
        let old_hash = hash_of(&old);
        let new = with_image(
            ds(json!({"updateStrategy": {"type": "OnDelete"}})),
            "agent:2",
        );
        let revisions = [revision_of(&old, 1), revision_of(&new, 2)];
        let nodes = [plain_node("n1")];
        let pods = [ready(
            daemon_pod("agent-n1", "n1", &old_hash, "Running"),
            "2026-03-01T11:00:00Z",
        )];
        let plan = run(&new, &nodes, &pods, &revisions);
        check(&plan, &["status"]);
        assert_eq!(status_of(&plan).updated_number_scheduled, None);
        // Deleted by hand: the replacement runs the new template.
        let plan = run(&new, &nodes, &[], &revisions);
        let Action::Create { object, .. } = &plan.actions[0] else {
            panic!()
        };
        assert_eq!(
            object["metadata"]["labels"]["controller-revision-hash"],
            hash_of(&new)
        );
        assert_eq!(object["spec"]["containers"][0]["image"], "agent:2");
    }

    #[test]
    fn rollback_renumbers_and_history_is_truncated() {
        let v1 = ds(json!({"revisionHistoryLimit": 1}));
        let v2 = with_image(v1.clone(), "agent:2");
        let v3 = with_image(v1.clone(), "agent:3");
        let revisions = [
            revision_of(&v1, 1),
            revision_of(&v2, 2),
            revision_of(&v3, 3),
        ];
        // Back to v1's template: its revision becomes #4; of the two old
        // ones, v2's goes (no pod runs it) and v3's stays within the limit.
        let plan = run(&v1, &[], &[], &revisions);
        check(
            &plan,
            &[
                &format!("update revision agent-{} #4", hash_of(&v1)),
                &format!("delete ControllerRevisions agent-{}", hash_of(&v2)),
                "status",
            ],
        );
        // A revision a pod still runs is kept; the next oldest goes instead.
        let mut on_delete = v1.clone();
        on_delete.spec.as_mut().unwrap().update_strategy =
            Some(serde_json::from_value(json!({"type": "OnDelete"})).unwrap());
        let pods = [ready(
            daemon_pod("agent-x", "n1", &hash_of(&v2), "Running"),
            "2026-03-01T11:00:00Z",
        )];
        let plan = run(&on_delete, &[plain_node("n1")], &pods, &revisions);
        check(
            &plan,
            &[
                &format!("update revision agent-{} #4", hash_of(&v1)),
                &format!("delete ControllerRevisions agent-{}", hash_of(&v3)),
                "status",
            ],
        );
    }

    #[test]
    fn hash_collisions_bump_the_collision_count() {
        let d = ds(json!({}));
        let hash = hash_of(&d);
        // Someone else's revision already has our name.
        let mut squatter = revision_of(&with_image(d.clone(), "other"), 1);
        squatter.metadata.name = Some(format!("agent-{hash}"));
        let plan = run(&d, &[], &[], &[squatter]);
        let bumped = pods::template_hash(&d.spec.as_ref().unwrap().template, Some(1));
        assert_eq!(
            summary(&plan)[0],
            format!("create revision agent-{bumped} #2")
        );
        assert_eq!(status_of(&plan).collision_count, Some(1));
    }

    #[test]
    fn requeues_when_ready_pods_become_available() {
        let d = ds(json!({"minReadySeconds": 30}));
        let pods = [ready(
            daemon_pod("agent-a", "n1", &hash_of(&d), "Running"),
            "2026-03-01T11:59:50Z",
        )];
        let plan = run(&d, &[plain_node("n1")], &pods, &[revision_of(&d, 1)]);
        let status = status_of(&plan);
        assert_eq!((status.number_ready, status.number_available), (1, None));
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(20)));
    }

    #[test]
    fn empty_selector_and_deleting_daemonset() {
        let d = ds(json!({"selector": {}}));
        check(
            &run(&d, &[plain_node("n1")], &[], &[]),
            &["event Warning SelectingAll: This daemon set is selecting all pods. A non-empty selector is required."],
        );
        let mut deleting = ds(json!({}));
        deleting.metadata.deletion_timestamp = Some(Time(now()));
        assert!(run(&deleting, &[plain_node("n1")], &[], &[]).is_empty());
    }

    #[test]
    fn template_generation_label_marks_pods_updated() {
        let mut d = ds(json!({}));
        d.metadata.annotations =
            Some([(TEMPLATE_GENERATION_ANNOTATION.to_string(), "3".to_string())].into());
        let plan = run(&d, &[plain_node("n1")], &[], &[]);
        let Action::Create { object, .. } = &plan.actions[1] else {
            panic!()
        };
        assert_eq!(
            object["metadata"]["labels"][POD_TEMPLATE_GENERATION_LABEL],
            "3"
        );
        let mut legacy = daemon_pod("agent-a", "n1", "stale-hash", "Running");
        legacy
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_GENERATION_LABEL.into(), "3".into());
        let plan = run(&d, &[plain_node("n1")], &[legacy], &[revision_of(&d, 1)]);
        assert_eq!(status_of(&plan).updated_number_scheduled, Some(1));
    }
}
