//! The Deployment controller: rolls a Deployment's pod template out through
//! ReplicaSets (RollingUpdate or Recreate), scales them proportionally,
//! keeps revisions for `kubectl rollout history|undo`, cleans up old
//! ReplicaSets and reports the Progressing/Available conditions, as
//! kube-controller-manager's `pkg/controller/deployment` (`syncDeployment`)
//! does.
//!
//! One reconcile is one `syncDeployment` pass. Where Kubernetes writes an
//! object several times in a pass, the plan writes it once with the final
//! content:
//! - Every ReplicaSet change of the pass (annotation sync, scale steps such as
//!   cleanupUnhealthyReplicas followed by scaleDownOldReplicaSetsForRollingUpdate)
//!   is one `Update` carrying the resourceVersion it was read at, followed by
//!   one `ScalingReplicaSet` event from the read size to the final size.
//! - The Deployment's status (paused/resumed, new ReplicaSet found or
//!   created, collisionCount, counts and conditions) is one `UpdateStatus`,
//!   written only when it differs from the observed status.
//! - The Deployment's `deployment.kubernetes.io/revision` annotation is a
//!   JSON merge patch after the status write: the status subresource does
//!   not write metadata, and a patch needs no resourceVersion, so it cannot
//!   conflict with the status write before it. Kubernetes syncs it (and the
//!   FoundNewReplicaSet condition) one pass after it had to update the new
//!   ReplicaSet's annotations; here it happens in the same pass.
//! - Adopting or releasing ReplicaSets ends the pass (the patches change their
//!   resourceVersions; the runtime reconciles again once they land).
//!
//! Status counts use the ReplicaSets as this pass leaves them (Kubernetes
//! uses the copies read at the start of the pass, and corrects them on the
//! next pass), so applying a plan and reconciling again writes nothing new
//! unless the world moved.
//!
//! A hash collision is noticed only against the ReplicaSets passed in (those
//! controlled by the Deployment or matching its selector).
//! TODO(runtime): if a `Create` of a ReplicaSet fails with AlreadyExists
//! anyway, reconcile the Deployment again once the cache has the object.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use crate::plan::{object_reference, Action, EventType, Plan, Resource};
use crate::pods;
use crate::replicaset::{adopt_patch, nonzero, release_patch, selector_is_valid};

/// The revision of a ReplicaSet (and, copied, of its Deployment).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet had before a rollback made it current again.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's `spec.replicas` when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` when the ReplicaSet was last scaled.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// The label that keeps the ReplicaSets of one Deployment apart.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
const DEPRECATED_ROLLBACK_TO_ANNOTATION: &str = "deprecated.deployment.rollback.to";
/// Annotations of a Deployment that are not copied to its ReplicaSets.
const ANNOTATIONS_TO_SKIP: [&str; 6] = [
    LAST_APPLIED_ANNOTATION,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    DEPRECATED_ROLLBACK_TO_ANNOTATION,
];
const MAX_REVISION_HISTORY_LENGTH_IN_CHARS: usize = 2000;

const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

pub const CONDITION_PROGRESSING: &str = "Progressing";
pub const CONDITION_AVAILABLE: &str = "Available";
pub const CONDITION_REPLICA_FAILURE: &str = "ReplicaFailure";

pub const REASON_NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const REASON_FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const REASON_RS_UPDATED: &str = "ReplicaSetUpdated";
pub const REASON_NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const REASON_TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const REASON_PAUSED: &str = "DeploymentPaused";
pub const REASON_RESUMED: &str = "DeploymentResumed";
pub const REASON_MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const REASON_MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// `Deployment` reconcile. `replica_sets` are the ReplicaSets of the
/// Deployment's namespace that it controls or that match its selector;
/// `pods` are the pods matching its selector (Recreate waits for the old
/// ones to be gone).
pub fn reconcile_deployment(
    d: &Deployment,
    replica_sets: &[&ReplicaSet],
    pods: &[&Pod],
    now: jiff::Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = d.spec.clone() else {
        return plan;
    };
    // Condition times are stored with second precision.
    let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);

    if pods::selector_is_empty(&spec.selector) {
        let generation = d.metadata.generation.unwrap_or(0);
        let observed = d
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(0);
        // Once per generation, so that reconciling again repeats nothing.
        if observed < generation {
            let mut object = d.clone();
            object
                .status
                .get_or_insert_with(Default::default)
                .observed_generation = Some(generation);
            plan.push(Action::UpdateStatus {
                resource: Resource::Deployments,
                namespace: d.metadata.namespace.clone(),
                name: d.metadata.name.clone().unwrap_or_default(),
                object: pods::to_value(&object),
            });
            plan.push(Action::Event {
                involved: object_reference("apps/v1", "Deployment", &d.metadata),
                event_type: EventType::Warning,
                reason: "SelectingAll".into(),
                message: "This deployment is selecting all pods. A non-empty selector is required."
                    .into(),
            });
        }
        return plan;
    }
    if !selector_is_valid(&spec.selector) {
        return plan;
    }

    // Claim ReplicaSets: ours that still match, orphans that match.
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let deleting = pods::is_terminating(&d.metadata);
    let mut claimed: Vec<&ReplicaSet> = Vec::new();
    for &rs in replica_sets {
        let matches = pods::selector_matches(&spec.selector, rs.metadata.labels.as_ref());
        match pods::controller_of(&rs.metadata) {
            Some(r) if r.uid != uid => {}
            Some(_) if matches => claimed.push(rs),
            Some(_) => {
                if !deleting {
                    plan.push(Action::Patch {
                        resource: Resource::ReplicaSets,
                        namespace: rs.metadata.namespace.clone(),
                        name: rs.metadata.name.clone().unwrap_or_default(),
                        subresource: None,
                        patch: release_patch(&rs.metadata, &uid),
                    });
                }
            }
            None => {
                if deleting
                    || !matches
                    || pods::is_terminating(&rs.metadata)
                    || rs.metadata.namespace != d.metadata.namespace
                {
                    continue;
                }
                plan.push(Action::Patch {
                    resource: Resource::ReplicaSets,
                    namespace: rs.metadata.namespace.clone(),
                    name: rs.metadata.name.clone().unwrap_or_default(),
                    subresource: None,
                    patch: adopt_patch(
                        &rs.metadata,
                        pods::controller_reference("apps/v1", "Deployment", &d.metadata),
                    ),
                });
            }
        }
    }
    if !plan.actions.is_empty() {
        return plan;
    }

    let mut sync = Sync::new(d, spec, &claimed, replica_sets, now);
    if deleting {
        sync.sync_existing_new_replica_set();
        sync.sync_deployment_status();
        return sync.finish();
    }
    sync.check_paused_conditions();
    sync.sync_existing_new_replica_set();
    if sync.paused() || sync.is_scaling_event() {
        sync.sync();
        return sync.finish();
    }
    if sync.is_recreate() {
        sync.rollout_recreate(pods);
    } else {
        sync.rollout_rolling();
    }
    sync.finish()
}

/// `(maxSurge, maxUnavailable)` resolved against `replicas` like Kubernetes'
/// `ResolveFenceposts`: surge rounds up, unavailable rounds down, and if both
/// come to 0, unavailable is 1. Unset values are the API default, 25%.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    replicas: i32,
) -> (i32, i32) {
    let surge = scaled_value(max_surge, replicas, true);
    let mut unavailable = scaled_value(max_unavailable, replicas, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// `GetScaledValueFromIntOrPercent`; an invalid value counts as 0.
fn scaled_value(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    let default = IntOrString::String("25%".into());
    match value.unwrap_or(&default) {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let Some(percent) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let exact = percent as f64 * f64::from(total) / 100.0;
            let rounded = if round_up {
                exact.ceil()
            } else {
                exact.floor()
            };
            rounded as i32
        }
    }
}

/// Kubernetes' `EqualIgnoreHash`: templates equal once the
/// `pod-template-hash` label is dropped; unset, null and empty values are
/// equal (the semantic equality Kubernetes uses treats nil and empty
/// collections alike).
pub fn templates_equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    comparable_template(a) == comparable_template(b)
}

fn comparable_template(t: &PodTemplateSpec) -> Value {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    let mut v = pods::to_value(&t);
    prune_empty(&mut v);
    v
}

/// Drops nulls and empty objects/arrays; true if `v` itself is empty.
fn prune_empty(v: &mut Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(map) => {
            map.retain(|_, x| !prune_empty(x));
            map.is_empty()
        }
        Value::Array(items) => {
            for x in items.iter_mut() {
                prune_empty(x);
            }
            items.is_empty()
        }
        _ => false,
    }
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn rs_name(rs: &ReplicaSet) -> &str {
    rs.metadata.name.as_deref().unwrap_or("")
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(&rs.metadata, key)?.parse().ok()
}

/// A ReplicaSet's revision; unset is 0, unparsable is `None`.
fn revision_of(rs: &ReplicaSet) -> Option<i64> {
    match annotation(&rs.metadata, REVISION_ANNOTATION) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

/// `SetReplicasAnnotations`; true if anything changed.
fn set_replicas_annotations(
    annotations: &mut BTreeMap<String, String>,
    desired: i32,
    max: i32,
) -> bool {
    let mut changed = false;
    for (key, value) in [
        (DESIRED_REPLICAS_ANNOTATION, desired),
        (MAX_REPLICAS_ANNOTATION, max),
    ] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

/// Copies the Deployment's annotations except [`ANNOTATIONS_TO_SKIP`];
/// never removes any.
fn copy_deployment_annotations(
    deployment: Option<&BTreeMap<String, String>>,
    annotations: &mut BTreeMap<String, String>,
) -> bool {
    let mut changed = false;
    for (k, v) in deployment.into_iter().flatten() {
        if ANNOTATIONS_TO_SKIP.contains(&k.as_str()) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// `SetNewReplicaSetAnnotations`: copy the Deployment's annotations, raise
/// the revision to `new_revision` (remembering the previous one in the
/// revision history), and for a ReplicaSet about to be created, the replica
/// annotations.
fn set_new_replica_set_annotations(
    deployment: Option<&BTreeMap<String, String>>,
    annotations: &mut BTreeMap<String, String>,
    new_revision: i64,
    exists: bool,
    desired: i32,
    max: i32,
) -> bool {
    let mut changed = copy_deployment_annotations(deployment, annotations);
    let old_revision = annotations.get(REVISION_ANNOTATION).cloned();
    let old = match old_revision.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(v) => v,
            Err(_) => return false,
        },
    };
    if old < new_revision {
        annotations.insert(REVISION_ANNOTATION.into(), new_revision.to_string());
        changed = true;
        if let Some(old_revision) = old_revision {
            let history = annotations
                .get(REVISION_HISTORY_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            let revisions: Vec<&str> = history.split(',').collect();
            if revisions[0].is_empty() {
                annotations.insert(REVISION_HISTORY_ANNOTATION.into(), old_revision);
            } else {
                let mut total = history.len() + old_revision.len() + 1;
                let mut start = 0;
                while total > MAX_REVISION_HISTORY_LENGTH_IN_CHARS && start < revisions.len() {
                    total -= revisions[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REVISION_HISTORY_LENGTH_IN_CHARS {
                    let mut kept = revisions[start..].to_vec();
                    kept.push(&old_revision);
                    annotations.insert(REVISION_HISTORY_ANNOTATION.into(), kept.join(","));
                }
            }
        }
    }
    if !exists && set_replicas_annotations(annotations, desired, max) {
        changed = true;
    }
    changed
}

fn count(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

fn get_condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: jiff::Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// `SetDeploymentCondition`: no change if status and reason are the same;
/// the transition time is kept while the status stays; the condition moves
/// to the end of the list.
fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = get_condition(status, &condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != condition.type_);
    conditions.push(condition);
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
    }
}

/// The status as Kubernetes serializes it (zero counts and empty lists
/// omitted), for comparing.
fn normalized(status: &DeploymentStatus) -> DeploymentStatus {
    let nz = |v: Option<i32>| v.filter(|n| *n != 0);
    DeploymentStatus {
        available_replicas: nz(status.available_replicas),
        collision_count: status.collision_count,
        conditions: status.conditions.clone().filter(|c| !c.is_empty()),
        observed_generation: status.observed_generation.filter(|g| *g != 0),
        ready_replicas: nz(status.ready_replicas),
        replicas: nz(status.replicas),
        terminating_replicas: nz(status.terminating_replicas),
        unavailable_replicas: nz(status.unavailable_replicas),
        updated_replicas: nz(status.updated_replicas),
    }
}

/// One ReplicaSet as this pass sees and changes it.
struct Rs {
    /// As the pass leaves it.
    current: ReplicaSet,
    /// `spec.replicas` as read (0 for a ReplicaSet this pass creates).
    read_replicas: i32,
    created: bool,
    /// Position among this pass's writes, if written.
    write: Option<usize>,
}

struct Sync<'a> {
    d: &'a Deployment,
    spec: DeploymentSpec,
    replicas: i32,
    now: jiff::Timestamp,
    /// Every ReplicaSet passed in, for noticing name collisions.
    inputs: &'a [&'a ReplicaSet],
    /// Claimed ReplicaSets by creation time (then name); created ones last.
    rss: Vec<Rs>,
    new_rs: Option<usize>,
    /// The Deployment's status as Kubernetes mutates `d.Status` during a
    /// pass (conditions, collisionCount); the counts stay as read.
    status: DeploymentStatus,
    /// The status this pass computed, if it got that far.
    final_status: Option<DeploymentStatus>,
    /// The Deployment's revision annotation as this pass leaves it.
    revision: Option<String>,
    deletes: Vec<Action>,
    writes: usize,
    requeue: Option<Duration>,
}

impl<'a> Sync<'a> {
    fn new(
        d: &'a Deployment,
        spec: DeploymentSpec,
        claimed: &[&ReplicaSet],
        inputs: &'a [&'a ReplicaSet],
        now: jiff::Timestamp,
    ) -> Sync<'a> {
        let mut sorted: Vec<&ReplicaSet> = claimed.to_vec();
        sorted.sort_by(|a, b| {
            (&a.metadata.creation_timestamp, rs_name(a))
                .cmp(&(&b.metadata.creation_timestamp, rs_name(b)))
        });
        let rss = sorted
            .into_iter()
            .map(|rs| Rs {
                current: rs.clone(),
                read_replicas: rs_replicas(rs),
                created: false,
                write: None,
            })
            .collect();
        Sync {
            d,
            replicas: spec.replicas.unwrap_or(1),
            spec,
            now,
            inputs,
            rss,
            new_rs: None,
            status: d.status.clone().unwrap_or_default(),
            final_status: None,
            revision: annotation(&d.metadata, REVISION_ANNOTATION).map(str::to_string),
            deletes: Vec::new(),
            writes: 0,
            requeue: None,
        }
    }

    fn name(&self) -> &str {
        self.d.metadata.name.as_deref().unwrap_or("")
    }

    fn paused(&self) -> bool {
        self.spec.paused == Some(true)
    }

    fn is_recreate(&self) -> bool {
        self.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate")
    }

    fn fenceposts(&self) -> (i32, i32) {
        let rolling = self
            .spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref());
        resolve_fenceposts(
            rolling.and_then(|r| r.max_surge.as_ref()),
            rolling.and_then(|r| r.max_unavailable.as_ref()),
            self.replicas,
        )
    }

    fn max_surge(&self) -> i32 {
        if self.is_recreate() {
            0
        } else {
            self.fenceposts().0
        }
    }

    fn max_unavailable(&self) -> i32 {
        if self.is_recreate() || self.replicas == 0 {
            0
        } else {
            self.fenceposts().1.min(self.replicas)
        }
    }

    fn progress_deadline_seconds(&self) -> Option<i32> {
        match self.spec.progress_deadline_seconds {
            None => Some(DEFAULT_PROGRESS_DEADLINE_SECONDS),
            Some(i32::MAX) => None,
            Some(s) => Some(s),
        }
    }

    fn revision_history_limit(&self) -> Option<i32> {
        match self.spec.revision_history_limit {
            None => Some(DEFAULT_REVISION_HISTORY_LIMIT),
            Some(i32::MAX) => None,
            Some(n) => Some(n),
        }
    }

    fn spec_replicas(&self, i: usize) -> i32 {
        rs_replicas(&self.rss[i].current)
    }

    /// Every ReplicaSet but the new one, oldest first.
    fn old(&self) -> Vec<usize> {
        (0..self.rss.len())
            .filter(|i| Some(*i) != self.new_rs)
            .collect()
    }

    /// Old ReplicaSets then the new one.
    fn all(&self) -> Vec<usize> {
        let mut all = self.old();
        all.extend(self.new_rs);
        all
    }

    fn active(&self, list: &[usize]) -> Vec<usize> {
        list.iter()
            .copied()
            .filter(|&i| self.spec_replicas(i) > 0)
            .collect()
    }

    /// `ReplicaSetsByCreationTimestamp` key; ReplicaSets created by this
    /// pass are the newest.
    fn creation_key(&self, i: usize) -> (bool, Option<&Time>, &str) {
        let rs = &self.rss[i];
        (
            rs.created,
            rs.current.metadata.creation_timestamp.as_ref(),
            rs_name(&rs.current),
        )
    }

    fn sort_by_creation(&self, list: &mut [usize]) {
        list.sort_by(|&a, &b| self.creation_key(a).cmp(&self.creation_key(b)));
    }

    fn mark_written(&mut self, i: usize) {
        if self.rss[i].write.is_none() {
            self.rss[i].write = Some(self.writes);
            self.writes += 1;
        }
    }

    fn find_new_replica_set(&self) -> Option<usize> {
        (0..self.rss.len()).find(|&i| {
            self.rss[i]
                .current
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| templates_equal_ignoring_hash(t, &self.spec.template))
        })
    }

    fn max_old_revision(&self) -> i64 {
        self.old()
            .into_iter()
            .filter_map(|i| revision_of(&self.rss[i].current))
            .max()
            .unwrap_or(0)
            .max(0)
    }

    fn set_condition(&mut self, type_: &str, status: &str, reason: &str, message: String) {
        let condition = new_condition(type_, status, reason, message, self.now);
        set_condition(&mut self.status, condition);
    }

    /// `checkPausedConditions`.
    fn check_paused_conditions(&mut self) {
        if self.progress_deadline_seconds().is_none() {
            return;
        }
        let reason = get_condition(&self.status, CONDITION_PROGRESSING)
            .and_then(|c| c.reason.clone())
            .unwrap_or_default();
        if reason == REASON_TIMED_OUT {
            return;
        }
        let paused_condition = reason == REASON_PAUSED;
        if self.paused() && !paused_condition {
            self.set_condition(
                CONDITION_PROGRESSING,
                "Unknown",
                REASON_PAUSED,
                "Deployment is paused".into(),
            );
        } else if !self.paused() && paused_condition {
            self.set_condition(
                CONDITION_PROGRESSING,
                "Unknown",
                REASON_RESUMED,
                "Deployment is resumed".into(),
            );
        }
    }

    /// The existing-new-ReplicaSet half of `getNewReplicaSet`: sync its
    /// annotations and minReadySeconds, the Deployment's revision, and note
    /// FoundNewReplicaSet if no Progressing condition exists yet.
    fn sync_existing_new_replica_set(&mut self) {
        let Some(i) = self.find_new_replica_set() else {
            return;
        };
        self.new_rs = Some(i);
        let new_revision = self.max_old_revision() + 1;
        let mut rs = self.rss[i].current.clone();
        let mut annotations = rs.metadata.annotations.clone().unwrap_or_default();
        let annotations_changed = set_new_replica_set_annotations(
            self.d.metadata.annotations.as_ref(),
            &mut annotations,
            new_revision,
            true,
            0,
            0,
        );
        let rs_spec = rs.spec.get_or_insert_with(Default::default);
        let min_ready_changed =
            rs_spec.min_ready_seconds.unwrap_or(0) != self.spec.min_ready_seconds.unwrap_or(0);
        if annotations_changed || min_ready_changed {
            rs_spec.min_ready_seconds = self.spec.min_ready_seconds;
            rs.metadata.annotations = Some(annotations).filter(|a| !a.is_empty());
            self.rss[i].current = rs;
            self.mark_written(i);
        }
        self.revision = Some(
            annotation(&self.rss[i].current.metadata, REVISION_ANNOTATION)
                .unwrap_or("")
                .to_string(),
        );
        if self.progress_deadline_seconds().is_some()
            && get_condition(&self.status, CONDITION_PROGRESSING).is_none()
        {
            let message = format!(
                "Found new replica set \"{}\"",
                rs_name(&self.rss[i].current)
            );
            self.set_condition(CONDITION_PROGRESSING, "True", REASON_FOUND_NEW_RS, message);
        }
    }

    /// The create half of `getNewReplicaSet`. `None` on a hash collision:
    /// collisionCount is raised and the pass ends with only the status write.
    fn create_new_replica_set(&mut self) -> Option<usize> {
        let hash = pods::template_hash(&self.spec.template, self.status.collision_count);
        let name = format!("{}-{hash}", self.name());
        if self
            .inputs
            .iter()
            .any(|rs| rs.metadata.name.as_deref() == Some(name.as_str()))
        {
            self.status.collision_count = Some(self.status.collision_count.unwrap_or(0) + 1);
            return None;
        }
        let new_revision = self.max_old_revision() + 1;
        let mut template = self.spec.template.clone();
        let template_labels = template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default);
        template_labels.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let labels = template_labels.clone();
        let mut selector = self.spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash);
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.metadata.namespace.clone(),
                labels: Some(labels),
                owner_references: Some(vec![pods::controller_reference(
                    "apps/v1",
                    "Deployment",
                    &self.d.metadata,
                )]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: self.spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        self.rss.push(Rs {
            current: rs,
            read_replicas: 0,
            created: true,
            write: None,
        });
        let i = self.rss.len() - 1;
        self.mark_written(i);
        self.new_rs = Some(i);
        let replicas = self.new_replica_set_replicas(i);
        let max = self.replicas + self.max_surge();
        let mut annotations = BTreeMap::new();
        set_new_replica_set_annotations(
            self.d.metadata.annotations.as_ref(),
            &mut annotations,
            new_revision,
            false,
            self.replicas,
            max,
        );
        let rs = &mut self.rss[i].current;
        rs.metadata.annotations = Some(annotations);
        rs.spec.get_or_insert_with(Default::default).replicas = Some(replicas);

        self.revision = Some(new_revision.to_string());
        if self.progress_deadline_seconds().is_some() {
            self.set_condition(
                CONDITION_PROGRESSING,
                "True",
                REASON_NEW_RS_CREATED,
                format!("Created new replica set \"{name}\""),
            );
        }
        Some(i)
    }

    /// `NewRSNewReplicas`.
    fn new_replica_set_replicas(&self, new: usize) -> i32 {
        let current = self.spec_replicas(new);
        if self.is_recreate() {
            return self.replicas;
        }
        let total: i32 = self.all().iter().map(|&i| self.spec_replicas(i)).sum();
        let max_total = self.replicas + self.max_surge();
        if total >= max_total {
            return current;
        }
        let up = (max_total - total).min(self.replicas - current);
        current + up
    }

    /// `scaleReplicaSet`: set the size and the replica annotations; true if
    /// the size changed.
    fn scale_replica_set(&mut self, i: usize, size: i32) -> bool {
        let desired = self.replicas;
        let max = self.replicas + self.max_surge();
        let rs = &self.rss[i].current;
        let size_changes = rs_replicas(rs) != size;
        let annotations_change = annotation(&rs.metadata, DESIRED_REPLICAS_ANNOTATION)
            != Some(desired.to_string().as_str())
            || annotation(&rs.metadata, MAX_REPLICAS_ANNOTATION) != Some(max.to_string().as_str());
        if size_changes || annotations_change {
            let rs = &mut self.rss[i].current;
            rs.spec.get_or_insert_with(Default::default).replicas = Some(size);
            let annotations = rs.metadata.annotations.get_or_insert_with(Default::default);
            set_replicas_annotations(annotations, desired, max);
            self.mark_written(i);
        }
        size_changes
    }

    /// `scaleReplicaSetAndRecordEvent`: nothing if the size is right.
    fn scale_replica_set_if_needed(&mut self, i: usize, size: i32) -> bool {
        if self.spec_replicas(i) == size {
            return false;
        }
        self.scale_replica_set(i, size)
    }

    /// `isScalingEvent`: an active ReplicaSet was sized for another
    /// `spec.replicas`.
    fn is_scaling_event(&self) -> bool {
        let all = self.all();
        self.active(&all).into_iter().any(|i| {
            int_annotation(&self.rss[i].current, DESIRED_REPLICAS_ANNOTATION)
                .is_some_and(|desired| desired != self.replicas)
        })
    }

    /// `IsSaturated`.
    fn is_saturated(&self, i: Option<usize>) -> bool {
        let Some(i) = i else {
            return false;
        };
        let rs = &self.rss[i].current;
        int_annotation(rs, DESIRED_REPLICAS_ANNOTATION) == Some(self.replicas)
            && rs_replicas(rs) == self.replicas
            && rs_available(rs) == self.replicas
    }

    /// `sync`: scaling events and paused deployments.
    fn sync(&mut self) {
        self.scale();
        if self.paused() {
            let old = self.old();
            self.cleanup(&old);
        }
        self.sync_deployment_status();
    }

    /// `scale`: a lone active (or the latest) ReplicaSet takes all replicas;
    /// a saturated new ReplicaSet means old ones go to 0; otherwise a rolling
    /// Deployment spreads the difference proportionally.
    fn scale(&mut self) {
        let mut old = self.old();
        old.sort_by(|&a, &b| self.creation_key(b).cmp(&self.creation_key(a)));
        let mut candidates = old.clone();
        candidates.extend(self.new_rs);
        let active = self.active(&candidates);
        let active_or_latest = if self.new_rs.is_none() && old.is_empty() {
            None
        } else {
            match active.len() {
                0 => self.new_rs.or(old.first().copied()),
                1 => Some(active[0]),
                _ => None,
            }
        };
        if let Some(i) = active_or_latest {
            // Kubernetes returns without a write when the size is already
            // right, so stale replica annotations keep every later pass a
            // "scaling event" and a template change never rolls out
            // (kubernetes/kubernetes#138036); refresh them instead.
            self.scale_replica_set(i, self.replicas);
            return;
        }
        if self.is_saturated(self.new_rs) {
            for i in self.active(&old) {
                self.scale_replica_set_if_needed(i, 0);
            }
            return;
        }
        if self.is_recreate() {
            return;
        }
        let mut active = active;
        let total: i32 = active.iter().map(|&i| self.spec_replicas(i)).sum();
        let allowed = if self.replicas > 0 {
            self.replicas + self.max_surge()
        } else {
            0
        };
        let to_add = allowed - total;
        // Bigger ReplicaSets first; among equals, newer first when adding,
        // older first when removing.
        if to_add > 0 {
            active.sort_by(|&a, &b| {
                self.spec_replicas(b)
                    .cmp(&self.spec_replicas(a))
                    .then_with(|| self.creation_key(b).cmp(&self.creation_key(a)))
            });
        } else if to_add < 0 {
            active.sort_by(|&a, &b| {
                self.spec_replicas(b)
                    .cmp(&self.spec_replicas(a))
                    .then_with(|| self.creation_key(a).cmp(&self.creation_key(b)))
            });
        }
        let mut added = 0;
        let mut sizes = Vec::with_capacity(active.len());
        for &i in &active {
            if to_add != 0 {
                let proportion = self.proportion(i, to_add, added);
                sizes.push(self.spec_replicas(i) + proportion);
                added += proportion;
            } else {
                sizes.push(self.spec_replicas(i));
            }
        }
        for (k, &i) in active.iter().enumerate() {
            let mut size = sizes[k];
            // Leftovers go to the largest ReplicaSet.
            if k == 0 && to_add != 0 {
                size = (size + to_add - added).max(0);
            }
            self.scale_replica_set(i, size);
        }
    }

    /// `GetReplicaSetProportion`.
    fn proportion(&self, i: usize, to_add: i32, added: i32) -> i32 {
        if self.spec_replicas(i) == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = self.fraction(i);
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    /// `getReplicaSetFraction`: the ReplicaSet's share of the new maximum,
    /// by its share of the maximum it was sized for.
    fn fraction(&self, i: usize) -> i32 {
        let size = self.spec_replicas(i);
        if self.replicas == 0 {
            return -size;
        }
        let max_now = self.replicas + self.max_surge();
        let max_before = int_annotation(&self.rss[i].current, MAX_REPLICAS_ANNOTATION)
            .filter(|n| *n != 0)
            .or_else(|| {
                self.d
                    .status
                    .as_ref()
                    .and_then(|s| s.replicas)
                    .filter(|n| *n != 0)
            })
            .unwrap_or(max_now);
        let new_size = (f64::from(size) * f64::from(max_now)) / f64::from(max_before);
        new_size.round() as i32 - size
    }

    /// `rolloutRolling`.
    fn rollout_rolling(&mut self) {
        let new = match self.new_rs {
            Some(i) => i,
            None => match self.create_new_replica_set() {
                Some(i) => i,
                None => return,
            },
        };
        if self.reconcile_new_replica_set(new) {
            self.sync_rollout_status();
            return;
        }
        let old = self.old();
        let active_old = self.active(&old);
        if self.reconcile_old_replica_sets(&active_old, new) {
            self.sync_rollout_status();
            return;
        }
        if self.deployment_complete(&self.status) {
            self.cleanup(&old);
        }
        self.sync_rollout_status();
    }

    /// `reconcileNewReplicaSet`.
    fn reconcile_new_replica_set(&mut self, new: usize) -> bool {
        let current = self.spec_replicas(new);
        if current == self.replicas {
            return false;
        }
        if current > self.replicas {
            return self.scale_replica_set_if_needed(new, self.replicas);
        }
        let size = self.new_replica_set_replicas(new);
        self.scale_replica_set_if_needed(new, size)
    }

    /// `reconcileOldReplicaSets`: scale old ReplicaSets down as far as
    /// maxUnavailable allows, unhealthy replicas first.
    fn reconcile_old_replica_sets(&mut self, active_old: &[usize], new: usize) -> bool {
        let old_pods: i32 = active_old.iter().map(|&i| self.spec_replicas(i)).sum();
        if old_pods == 0 {
            return false;
        }
        let all_pods: i32 = self.all().iter().map(|&i| self.spec_replicas(i)).sum();
        let min_available = self.replicas - self.max_unavailable();
        let new_unavailable = self.spec_replicas(new) - rs_available(&self.rss[new].current);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let mut old = active_old.to_vec();
        self.sort_by_creation(&mut old);
        let Some(cleaned) = self.cleanup_unhealthy_replicas(&old, max_scaled_down) else {
            return false;
        };
        let scaled = self.scale_down_old_replica_sets(&old, new);
        cleaned + scaled > 0
    }

    /// `cleanupUnhealthyReplicas`; `None` where Kubernetes gives up the pass
    /// (a ReplicaSet with more available pods than its size).
    fn cleanup_unhealthy_replicas(&mut self, old: &[usize], max_cleanup: i32) -> Option<i32> {
        let mut total = 0;
        for &i in old {
            if total >= max_cleanup {
                break;
            }
            let size = self.spec_replicas(i);
            let available = rs_available(&self.rss[i].current);
            if size == 0 || size == available {
                continue;
            }
            let down = (max_cleanup - total).min(size - available);
            if down < 0 {
                return None;
            }
            self.scale_replica_set_if_needed(i, size - down);
            total += down;
        }
        Some(total)
    }

    /// `scaleDownOldReplicaSetsForRollingUpdate`.
    fn scale_down_old_replica_sets(&mut self, old: &[usize], new: usize) -> i32 {
        let min_available = self.replicas - self.max_unavailable();
        // Old ReplicaSets that were active at the start of the pass, and the
        // new one.
        let available: i32 = old
            .iter()
            .chain([&new])
            .map(|&i| rs_available(&self.rss[i].current))
            .sum();
        if available <= min_available {
            return 0;
        }
        let to_scale_down = available - min_available;
        let mut total = 0;
        for &i in old {
            if total >= to_scale_down {
                break;
            }
            let size = self.spec_replicas(i);
            if size == 0 {
                continue;
            }
            let down = size.min(to_scale_down - total);
            self.scale_replica_set_if_needed(i, size - down);
            total += down;
        }
        total
    }

    /// `rolloutRecreate`: old ReplicaSets to 0, wait until none of their
    /// pods runs, then the new ReplicaSet at full size.
    fn rollout_recreate(&mut self, pods: &[&Pod]) {
        let old = self.old();
        let mut scaled_down = false;
        for i in self.active(&old) {
            if self.scale_replica_set_if_needed(i, 0) {
                scaled_down = true;
            }
        }
        if scaled_down || self.old_pods_running(&old, pods) {
            self.sync_rollout_status();
            return;
        }
        let new = match self.new_rs {
            Some(i) => i,
            None => match self.create_new_replica_set() {
                Some(i) => i,
                None => return,
            },
        };
        self.scale_replica_set_if_needed(new, self.replicas);
        if self.deployment_complete(&self.status) {
            self.cleanup(&old);
        }
        self.sync_rollout_status();
    }

    /// `oldPodsRunning`: an old ReplicaSet reports pods, or a pod controlled
    /// by one is not finished (terminating pods still run).
    fn old_pods_running(&self, old: &[usize], pods: &[&Pod]) -> bool {
        if old
            .iter()
            .any(|&i| rs_status_replicas(&self.rss[i].current) > 0)
        {
            return true;
        }
        let old_uids: HashSet<&str> = old
            .iter()
            .filter_map(|&i| self.rss[i].current.metadata.uid.as_deref())
            .collect();
        pods.iter().any(|pod| {
            pods::controller_of(&pod.metadata).is_some_and(|r| old_uids.contains(r.uid.as_str()))
                && !matches!(pods::pod_phase(pod), "Succeeded" | "Failed")
        })
    }

    /// `cleanupDeployment`: delete the oldest old ReplicaSets beyond
    /// revisionHistoryLimit that are scaled to 0, have no pods and whose
    /// latest spec their controller has seen.
    fn cleanup(&mut self, old: &[usize]) {
        let Some(limit) = self.revision_history_limit() else {
            return;
        };
        let mut cleanable: Vec<usize> = old
            .iter()
            .copied()
            .filter(|&i| !pods::is_terminating(&self.rss[i].current.metadata))
            .collect();
        let diff = cleanable.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return;
        }
        cleanable.sort_by(|&a, &b| {
            let ra = revision_of(&self.rss[a].current).unwrap_or(0);
            let rb = revision_of(&self.rss[b].current).unwrap_or(0);
            ra.cmp(&rb)
                .then_with(|| self.creation_key(a).cmp(&self.creation_key(b)))
        });
        for &i in cleanable.iter().take(diff as usize) {
            let rs = &self.rss[i];
            let observed = rs
                .current
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs_status_replicas(&rs.current) != 0
                || rs.read_replicas != 0
                || rs.write.is_some()
                || rs.current.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            self.deletes.push(Action::Delete {
                resource: Resource::ReplicaSets,
                namespace: rs.current.metadata.namespace.clone(),
                name: rs_name(&rs.current).to_string(),
                uid: rs.current.metadata.uid.clone(),
                propagation: None,
            });
        }
    }

    /// `DeploymentComplete`.
    fn deployment_complete(&self, status: &DeploymentStatus) -> bool {
        count(status.updated_replicas) == self.replicas
            && count(status.replicas) == self.replicas
            && count(status.available_replicas) == self.replicas
            && status.observed_generation.unwrap_or(0) >= self.d.metadata.generation.unwrap_or(0)
    }

    /// `calculateStatus`.
    fn calculate_status(&self) -> DeploymentStatus {
        let all = self.all();
        let sum = |f: fn(&ReplicaSet) -> i32| -> i32 {
            all.iter().map(|&i| f(&self.rss[i].current)).sum()
        };
        let available = sum(rs_available);
        let total = sum(rs_replicas);
        let unavailable = (total - available).max(0);
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: nonzero(sum(rs_status_replicas)),
            updated_replicas: nonzero(
                self.new_rs
                    .map_or(0, |i| rs_status_replicas(&self.rss[i].current)),
            ),
            ready_replicas: nonzero(sum(rs_ready)),
            available_replicas: nonzero(available),
            unavailable_replicas: nonzero(unavailable),
            collision_count: self.status.collision_count,
            conditions: self.status.conditions.clone(),
            terminating_replicas: None,
        };
        let condition = if available >= self.replicas - self.max_unavailable() {
            new_condition(
                CONDITION_AVAILABLE,
                "True",
                REASON_MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                self.now,
            )
        } else {
            new_condition(
                CONDITION_AVAILABLE,
                "False",
                REASON_MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                self.now,
            )
        };
        set_condition(&mut status, condition);
        status
    }

    /// `syncDeploymentStatus`.
    fn sync_deployment_status(&mut self) {
        self.final_status = Some(self.calculate_status());
    }

    fn subject(&self) -> String {
        match self.new_rs {
            Some(i) => format!("ReplicaSet \"{}\"", rs_name(&self.rss[i].current)),
            None => format!("Deployment \"{}\"", self.name()),
        }
    }

    /// `syncRolloutStatus`: status plus the Progressing condition, and a
    /// requeue for the progress deadline.
    fn sync_rollout_status(&mut self) {
        let mut status = self.calculate_status();
        let deadline = self.progress_deadline_seconds();
        if deadline.is_none() {
            remove_condition(&mut status, CONDITION_PROGRESSING);
        }
        let current = get_condition(&self.status, CONDITION_PROGRESSING).cloned();
        let complete_before = count(status.replicas) == count(status.updated_replicas)
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(REASON_NEW_RS_AVAILABLE));
        if let Some(deadline) = deadline.filter(|_| !complete_before) {
            let subject = self.subject();
            if self.deployment_complete(&status) {
                let condition = new_condition(
                    CONDITION_PROGRESSING,
                    "True",
                    REASON_NEW_RS_AVAILABLE,
                    format!("{subject} has successfully progressed."),
                    self.now,
                );
                set_condition(&mut status, condition);
            } else if deployment_progressing(&self.status, &status) {
                let mut condition = new_condition(
                    CONDITION_PROGRESSING,
                    "True",
                    REASON_RS_UPDATED,
                    format!("{subject} is progressing."),
                    self.now,
                );
                // Progress refreshes lastUpdateTime even with the same reason.
                if let Some(current) = &current {
                    if current.status == "True" {
                        condition.last_transition_time = current.last_transition_time.clone();
                    }
                    remove_condition(&mut status, CONDITION_PROGRESSING);
                }
                set_condition(&mut status, condition);
            } else if self.timed_out(&status, deadline) {
                let condition = new_condition(
                    CONDITION_PROGRESSING,
                    "False",
                    REASON_TIMED_OUT,
                    format!("{subject} has timed out progressing."),
                    self.now,
                );
                set_condition(&mut status, condition);
            }
        }
        match self.replica_failure() {
            Some(condition) => set_condition(&mut status, condition),
            None => remove_condition(&mut status, CONDITION_REPLICA_FAILURE),
        }
        if let Some(deadline) = deadline {
            self.requeue_for_deadline(&status, deadline);
        }
        self.final_status = Some(status);
    }

    /// `DeploymentTimedOut`.
    fn timed_out(&self, status: &DeploymentStatus, deadline: i32) -> bool {
        let Some(condition) = get_condition(status, CONDITION_PROGRESSING) else {
            return false;
        };
        match condition.reason.as_deref() {
            Some(REASON_NEW_RS_AVAILABLE) => return false,
            Some(REASON_TIMED_OUT) => return true,
            _ => {}
        }
        let from = condition
            .last_update_time
            .as_ref()
            .map_or(0, |t| t.0.as_second());
        from + i64::from(deadline) < self.now.as_second()
    }

    /// `requeueStuckDeployment`: look again just after the deadline of a
    /// rollout that is still in progress.
    fn requeue_for_deadline(&mut self, status: &DeploymentStatus, deadline: i32) {
        let Some(condition) = get_condition(status, CONDITION_PROGRESSING) else {
            return;
        };
        if self.deployment_complete(status)
            || matches!(
                condition.reason.as_deref(),
                Some(REASON_TIMED_OUT | REASON_NEW_RS_AVAILABLE)
            )
        {
            return;
        }
        let Some(from) = condition.last_update_time.as_ref() else {
            return;
        };
        let remaining = from.0.as_second() + i64::from(deadline) - self.now.as_second();
        let after = Duration::from_secs(remaining.max(0) as u64 + 1);
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    /// `getReplicaFailures`: the new ReplicaSet's ReplicaFailure condition,
    /// else the first old one's.
    fn replica_failure(&self) -> Option<DeploymentCondition> {
        let mut order: Vec<usize> = self.new_rs.into_iter().collect();
        order.extend(self.all());
        order.into_iter().find_map(|i| {
            let c = self.rss[i]
                .current
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == CONDITION_REPLICA_FAILURE)?;
            Some(DeploymentCondition {
                type_: CONDITION_REPLICA_FAILURE.into(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_update_time: c.last_transition_time.clone(),
                last_transition_time: c.last_transition_time.clone(),
            })
        })
    }

    fn finish(mut self) -> Plan {
        let mut plan = Plan::default();
        let involved = object_reference("apps/v1", "Deployment", &self.d.metadata);
        let namespace = self.d.metadata.namespace.clone();
        let mut written: Vec<usize> = (0..self.rss.len())
            .filter(|&i| self.rss[i].write.is_some())
            .collect();
        written.sort_by_key(|&i| self.rss[i].write);
        for i in written {
            let rs = &self.rss[i];
            let name = rs_name(&rs.current).to_string();
            let object = pods::to_value(&rs.current);
            plan.push(if rs.created {
                Action::Create {
                    resource: Resource::ReplicaSets,
                    namespace: namespace.clone(),
                    object,
                }
            } else {
                Action::Update {
                    resource: Resource::ReplicaSets,
                    namespace: namespace.clone(),
                    name: name.clone(),
                    object,
                }
            });
            let from = rs.read_replicas;
            let to = rs_replicas(&rs.current);
            if from != to {
                let direction = if from < to { "up" } else { "down" };
                plan.push(Action::Event {
                    involved: involved.clone(),
                    event_type: EventType::Normal,
                    reason: "ScalingReplicaSet".into(),
                    message: format!("Scaled {direction} replica set {name} from {from} to {to}"),
                });
            }
        }
        plan.actions.append(&mut self.deletes);

        let status = self
            .final_status
            .take()
            .unwrap_or_else(|| self.status.clone());
        let observed = self.d.status.clone().unwrap_or_default();
        if normalized(&observed) != normalized(&status) {
            let mut object = self.d.clone();
            object.status = Some(status);
            plan.push(Action::UpdateStatus {
                resource: Resource::Deployments,
                namespace: namespace.clone(),
                name: self.name().to_string(),
                object: pods::to_value(&object),
            });
        }
        if let Some(revision) = &self.revision {
            if annotation(&self.d.metadata, REVISION_ANNOTATION) != Some(revision.as_str()) {
                plan.push(Action::Patch {
                    resource: Resource::Deployments,
                    namespace,
                    name: self.name().to_string(),
                    subresource: None,
                    patch: json!({"metadata": {"annotations": {REVISION_ANNOTATION: revision}}}),
                });
            }
        }
        plan.requeue_after = self.requeue;
        plan
    }
}

/// `DeploymentProgressing`: more updated, ready or available replicas, or
/// fewer old ones, than the status last written.
fn deployment_progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_old = count(old.replicas) - count(old.updated_replicas);
    let new_old = count(new.replicas) - count(new.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || new_old < old_old
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::apps::v1::{
        DeploymentStrategy, ReplicaSetCondition, ReplicaSetStatus, RollingUpdateDeployment,
    };
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};

    use super::*;
    use crate::replicaset::reconcile_replicaset;

    fn ts(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(map(&[("app", "web")])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    /// `web` in `default`, image nginx:1, default strategy (RollingUpdate
    /// 25%/25%), generation 1, no status yet.
    fn deployment(replicas: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("d-uid".into()),
                generation: Some(1),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(map(&[("app", "web")])),
                    match_expressions: None,
                },
                template: template("nginx:1"),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn int(n: i32) -> IntOrString {
        IntOrString::Int(n)
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    fn rolling(mut d: Deployment, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(surge),
                max_unavailable: Some(unavailable),
            }),
        });
        d
    }

    fn recreate(mut d: Deployment) -> Deployment {
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        d
    }

    fn with_image(mut d: Deployment, image: &str) -> Deployment {
        d.spec.as_mut().unwrap().template = template(image);
        d.metadata.generation = Some(d.metadata.generation.unwrap() + 1);
        d
    }

    fn spec_mut(d: &mut Deployment) -> &mut DeploymentSpec {
        d.spec.as_mut().unwrap()
    }

    /// A status as a finished rollout of `replicas` leaves it.
    fn complete_status(d: &Deployment, replicas: i32, rs_name: &str) -> DeploymentStatus {
        DeploymentStatus {
            observed_generation: d.metadata.generation,
            replicas: nonzero(replicas),
            updated_replicas: nonzero(replicas),
            ready_replicas: nonzero(replicas),
            available_replicas: nonzero(replicas),
            conditions: Some(vec![
                new_condition(
                    CONDITION_AVAILABLE,
                    "True",
                    REASON_MIN_AVAILABLE,
                    "Deployment has minimum availability.".into(),
                    ts(-5000),
                ),
                new_condition(
                    CONDITION_PROGRESSING,
                    "True",
                    REASON_NEW_RS_AVAILABLE,
                    format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                    ts(-5000),
                ),
            ]),
            ..Default::default()
        }
    }

    /// A ReplicaSet of `d` for `image`, as this controller creates them,
    /// named `web-<tag>` (the controller recognizes ReplicaSets by template,
    /// not by name), with `replicas` pods all available.
    fn replica_set(
        d: &Deployment,
        tag: &str,
        image: &str,
        replicas: i32,
        revision: i64,
        created: i64,
    ) -> ReplicaSet {
        let hash = format!("h{tag}");
        let mut t = template(image);
        t.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let replicas_d = d.spec.as_ref().unwrap().replicas.unwrap();
        let name = format!("web-{tag}");
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                generation: Some(1),
                resource_version: Some("100".into()),
                creation_timestamp: Some(Time(ts(created))),
                labels: Some(map(&[("app", "web"), (POD_TEMPLATE_HASH_LABEL, &hash)])),
                annotations: Some(map(&[
                    (REVISION_ANNOTATION, &revision.to_string()),
                    (DESIRED_REPLICAS_ANNOTATION, &replicas_d.to_string()),
                    (
                        MAX_REPLICAS_ANNOTATION,
                        &(replicas_d + max_surge_of(d)).to_string(),
                    ),
                ])),
                owner_references: Some(vec![pods::controller_reference(
                    "apps/v1",
                    "Deployment",
                    &d.metadata,
                )]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: None,
                selector: LabelSelector {
                    match_labels: Some(map(&[("app", "web"), (POD_TEMPLATE_HASH_LABEL, &hash)])),
                    match_expressions: None,
                },
                template: Some(t),
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                fully_labeled_replicas: nonzero(replicas),
                ready_replicas: nonzero(replicas),
                available_replicas: nonzero(replicas),
                observed_generation: Some(1),
                ..Default::default()
            }),
        }
    }

    fn max_surge_of(d: &Deployment) -> i32 {
        let sync = Sync::new(d, d.spec.clone().unwrap(), &[], &[], ts(0));
        sync.max_surge()
    }

    fn rs_status(mut rs: ReplicaSet, replicas: i32, ready: i32, available: i32) -> ReplicaSet {
        let status = rs.status.as_mut().unwrap();
        status.replicas = replicas;
        status.ready_replicas = nonzero(ready);
        status.available_replicas = nonzero(available);
        rs
    }

    fn annotate(mut rs: ReplicaSet, key: &str, value: &str) -> ReplicaSet {
        rs.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        rs
    }

    /// The name this controller gives the new ReplicaSet of `d`.
    fn new_name(d: &Deployment) -> String {
        let collisions = d.status.as_ref().and_then(|s| s.collision_count);
        format!(
            "web-{}",
            pods::template_hash(&d.spec.as_ref().unwrap().template, collisions)
        )
    }

    fn reconcile(d: &Deployment, rss: &[ReplicaSet], pods: &[Pod], now: i64) -> Plan {
        let rss: Vec<&ReplicaSet> = rss.iter().collect();
        let pods: Vec<&Pod> = pods.iter().collect();
        reconcile_deployment(d, &rss, &pods, ts(now))
    }

    /// One line per action; the new ReplicaSet's generated name reads NEW.
    fn summary(d: &Deployment, plan: &Plan) -> Vec<String> {
        let new = new_name(d);
        plan.actions
            .iter()
            .map(|a| {
                let line = match a {
                    Action::Create {
                        resource: Resource::ReplicaSets,
                        object,
                        ..
                    } => format!("create {}", rs_line(object)),
                    Action::Update {
                        resource: Resource::ReplicaSets,
                        object,
                        ..
                    } => format!("update {}", rs_line(object)),
                    Action::Delete {
                        resource: Resource::ReplicaSets,
                        name,
                        uid,
                        ..
                    } => {
                        assert_eq!(uid.as_deref(), Some(format!("uid-{name}").as_str()));
                        format!("delete {name}")
                    }
                    Action::UpdateStatus {
                        resource: Resource::Deployments,
                        object,
                        ..
                    } => {
                        let d: Deployment = serde_json::from_value(object.clone()).unwrap();
                        format!("status {}", status_line(&d.status.unwrap()))
                    }
                    Action::Patch {
                        resource: Resource::Deployments,
                        patch,
                        ..
                    } => format!(
                        "revision {}",
                        patch["metadata"]["annotations"][REVISION_ANNOTATION]
                            .as_str()
                            .unwrap()
                    ),
                    Action::Patch {
                        resource: Resource::ReplicaSets,
                        name,
                        patch,
                        ..
                    } => {
                        if patch["metadata"]["ownerReferences"].is_null() {
                            format!("release {name}")
                        } else {
                            format!("adopt {name}")
                        }
                    }
                    Action::Event {
                        event_type,
                        reason,
                        message,
                        ..
                    } => format!("event {event_type:?} {reason}: {message}"),
                    other => panic!("unexpected action {other:?}"),
                };
                line.replace(&new, "NEW")
            })
            .collect()
    }

    fn rs_line(object: &Value) -> String {
        let rs: ReplicaSet = serde_json::from_value(object.clone()).unwrap();
        let a = |k| annotation(&rs.metadata, k).unwrap_or("-").to_string();
        let mut line = format!(
            "{} replicas={} rev={} desired={} max={}",
            rs_name(&rs),
            rs_replicas(&rs),
            a(REVISION_ANNOTATION),
            a(DESIRED_REPLICAS_ANNOTATION),
            a(MAX_REPLICAS_ANNOTATION),
        );
        if let Some(h) = annotation(&rs.metadata, REVISION_HISTORY_ANNOTATION) {
            line.push_str(&format!(" history={h}"));
        }
        line
    }

    fn status_line(s: &DeploymentStatus) -> String {
        let mut line = format!(
            "replicas={} updated={} ready={} available={} unavailable={} observed={}",
            count(s.replicas),
            count(s.updated_replicas),
            count(s.ready_replicas),
            count(s.available_replicas),
            count(s.unavailable_replicas),
            s.observed_generation.unwrap_or(0),
        );
        if let Some(c) = s.collision_count {
            line.push_str(&format!(" collisions={c}"));
        }
        for c in s.conditions.iter().flatten() {
            line.push_str(&format!(
                " | {} {} {}",
                c.type_,
                c.status,
                c.reason.as_deref().unwrap_or("")
            ));
        }
        line
    }

    #[track_caller]
    fn check(
        d: &Deployment,
        rss: &[ReplicaSet],
        pods: &[Pod],
        now: i64,
        expected: &[&str],
    ) -> Plan {
        let plan = reconcile(d, rss, pods, now);
        assert_eq!(summary(d, &plan), expected, "{plan:#?}");
        plan
    }

    fn written_status(plan: &Plan) -> DeploymentStatus {
        plan.actions
            .iter()
            .find_map(|a| match a {
                Action::UpdateStatus { object, .. } => {
                    serde_json::from_value::<Deployment>(object.clone())
                        .unwrap()
                        .status
                }
                _ => None,
            })
            .expect("a status write")
    }

    fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> &'a DeploymentCondition {
        get_condition(status, type_).unwrap_or_else(|| panic!("no {type_} in {status:?}"))
    }

    // ---------------------------------------------------------------- basics

    #[test]
    fn fenceposts_resolve_like_kubernetes() {
        type Case = (Option<IntOrString>, Option<IntOrString>, i32, (i32, i32));
        let cases: &[Case] = &[
            (None, None, 4, (1, 1)),
            (None, None, 10, (3, 2)),
            (None, None, 1, (1, 0)),
            (None, None, 0, (0, 1)),
            (Some(pct("25%")), Some(pct("25%")), 3, (1, 0)),
            (Some(int(0)), Some(int(0)), 5, (0, 1)),
            (Some(pct("0%")), Some(pct("10%")), 5, (0, 1)),
            (Some(int(3)), Some(int(2)), 10, (3, 2)),
            (Some(pct("50%")), Some(pct("50%")), 5, (3, 2)),
            (Some(pct("100%")), Some(pct("0%")), 3, (3, 0)),
            (Some(pct("bad")), Some(int(2)), 3, (0, 2)),
        ];
        for (surge, unavailable, replicas, expected) in cases {
            assert_eq!(
                resolve_fenceposts(surge.as_ref(), unavailable.as_ref(), *replicas),
                *expected,
                "{surge:?} {unavailable:?} {replicas}"
            );
        }
    }

    #[test]
    fn template_equality_ignores_hash_label_and_empty_values() {
        let a = template("nginx:1");
        let mut b = a.clone();
        b.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH_LABEL.into(), "abc".into());
        b.metadata.as_mut().unwrap().annotations = Some(BTreeMap::new());
        b.spec.as_mut().unwrap().volumes = Some(vec![]);
        assert!(templates_equal_ignoring_hash(&a, &b));
        assert!(!templates_equal_ignoring_hash(&a, &template("nginx:2")));
        let mut c = a.clone();
        c.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("tier".into(), "fe".into());
        assert!(!templates_equal_ignoring_hash(&a, &c));
    }

    #[test]
    fn first_rollout_creates_the_new_replica_set() {
        let mut d = deployment(3);
        d.metadata.annotations = Some(map(&[
            ("kubernetes.io/change-cause", "initial"),
            (LAST_APPLIED_ANNOTATION, "{...}"),
        ]));
        let plan = check(
            &d,
            &[],
            &[],
            0,
            &[
                "create NEW replicas=3 rev=1 desired=3 max=4",
                "event Normal ScalingReplicaSet: Scaled up replica set NEW from 0 to 3",
                "status replicas=0 updated=0 ready=0 available=0 unavailable=3 observed=1 \
                 | Progressing True NewReplicaSetCreated | Available False MinimumReplicasUnavailable",
                "revision 1",
            ],
        );
        let hash = pods::template_hash(&d.spec.as_ref().unwrap().template, None);
        let Action::Create {
            object, namespace, ..
        } = &plan.actions[0]
        else {
            unreachable!()
        };
        assert_eq!(namespace.as_deref(), Some("default"));
        assert_eq!(
            *object,
            json!({
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "annotations": {
                        DESIRED_REPLICAS_ANNOTATION: "3",
                        MAX_REPLICAS_ANNOTATION: "4",
                        REVISION_ANNOTATION: "1",
                        "kubernetes.io/change-cause": "initial",
                    },
                    "labels": {"app": "web", "pod-template-hash": hash},
                    "name": format!("web-{hash}"),
                    "namespace": "default",
                    "ownerReferences": [{
                        "apiVersion": "apps/v1",
                        "blockOwnerDeletion": true,
                        "controller": true,
                        "kind": "Deployment",
                        "name": "web",
                        "uid": "d-uid",
                    }],
                },
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web", "pod-template-hash": hash}},
                    "template": {
                        "metadata": {"labels": {"app": "web", "pod-template-hash": hash}},
                        "spec": {"containers": [{"image": "nginx:1", "name": "web"}]},
                    },
                },
            })
        );
        let status = written_status(&plan);
        let progressing = condition(&status, CONDITION_PROGRESSING);
        assert_eq!(
            progressing.message.as_deref(),
            Some(format!("Created new replica set \"web-{hash}\"").as_str())
        );
        assert_eq!(progressing.last_update_time, Some(Time(ts(0))));
        assert_eq!(
            condition(&status, CONDITION_AVAILABLE).message.as_deref(),
            Some("Deployment does not have minimum availability.")
        );
        // The progress deadline is watched.
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(601)));
    }

    #[test]
    fn condition_times_have_second_precision() {
        let now = ts(0)
            .checked_add(jiff::SignedDuration::from_millis(700))
            .unwrap();
        let d = deployment(1);
        let plan = reconcile_deployment(&d, &[], &[], now);
        let status = written_status(&plan);
        assert_eq!(
            condition(&status, CONDITION_PROGRESSING).last_update_time,
            Some(Time(ts(0)))
        );
    }

    #[test]
    fn steady_state_plans_nothing() {
        let mut d = deployment(3);
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "1")]));
        d.status = Some(complete_status(&d, 3, "web-a"));
        let rss = [replica_set(&d, "a", "nginx:1", 3, 1, -6000)];
        let plan = reconcile(&d, &rss, &[], 0);
        assert!(plan.is_empty(), "{plan:#?}");
    }

    #[test]
    fn missing_progressing_condition_is_found_new_replica_set() {
        let mut d = deployment(3);
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "1")]));
        let mut status = complete_status(&d, 3, "web-a");
        status.conditions.as_mut().unwrap().pop();
        d.status = Some(status);
        let rss = [replica_set(&d, "a", "nginx:1", 3, 1, -6000)];
        let plan = check(
            &d,
            &rss,
            &[],
            0,
            &[
                "status replicas=3 updated=3 ready=3 available=3 unavailable=0 observed=1 \
               | Available True MinimumReplicasAvailable | Progressing True NewReplicaSetAvailable",
            ],
        );
        // FoundNewReplicaSet was noted, then the complete rollout replaced it.
        let status = written_status(&plan);
        assert_eq!(
            condition(&status, CONDITION_PROGRESSING).message.as_deref(),
            Some("ReplicaSet \"web-a\" has successfully progressed.")
        );
    }

    #[test]
    fn revision_annotation_follows_the_new_replica_set() {
        let mut d = deployment(3);
        d.status = Some(complete_status(&d, 3, "web-a"));
        let rss = [replica_set(&d, "a", "nginx:1", 3, 4, -6000)];
        check(&d, &rss, &[], 0, &["revision 4"]);
    }

    #[test]
    fn annotations_and_min_ready_seconds_sync_to_the_new_replica_set() {
        let mut d = deployment(3);
        d.metadata.annotations = Some(map(&[
            (REVISION_ANNOTATION, "1"),
            ("kubernetes.io/change-cause", "kubectl set image"),
            (LAST_APPLIED_ANNOTATION, "{...}"),
            (DESIRED_REPLICAS_ANNOTATION, "99"),
        ]));
        spec_mut(&mut d).min_ready_seconds = Some(5);
        d.status = Some(complete_status(&d, 3, "web-a"));
        let rss = [replica_set(&d, "a", "nginx:1", 3, 1, -6000)];
        let plan = check(
            &d,
            &rss,
            &[],
            0,
            &["update web-a replicas=3 rev=1 desired=3 max=4"],
        );
        let Action::Update { object, .. } = &plan.actions[0] else {
            unreachable!()
        };
        assert_eq!(
            object["metadata"]["annotations"]["kubernetes.io/change-cause"],
            "kubectl set image"
        );
        assert!(object["metadata"]["annotations"]
            .get(LAST_APPLIED_ANNOTATION)
            .is_none());
        assert_eq!(object["spec"]["minReadySeconds"], 5);
        assert_eq!(object["metadata"]["resourceVersion"], "100");
    }

    #[test]
    fn selecting_all_is_reported_once_per_generation() {
        let mut d = deployment(3);
        spec_mut(&mut d).selector = LabelSelector::default();
        check(
            &d,
            &[],
            &[],
            0,
            &[
                "status replicas=0 updated=0 ready=0 available=0 unavailable=0 observed=1",
                "event Warning SelectingAll: This deployment is selecting all pods. \
                 A non-empty selector is required.",
            ],
        );
        d.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            ..Default::default()
        });
        check(&d, &[], &[], 0, &[]);
    }

    #[test]
    fn deleting_deployment_only_updates_status() {
        let mut d = with_image(deployment(3), "nginx:2");
        d.metadata.deletion_timestamp = Some(Time(ts(-1)));
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "1")]));
        d.status = Some(complete_status(&deployment(3), 3, "web-a"));
        let rss = [
            rs_status(replica_set(&d, "a", "nginx:1", 3, 1, -6000), 2, 2, 2),
            annotate(replica_set(&d, "orphan", "nginx:1", 1, 1, -10), "x", "y"),
        ];
        let mut rss = rss.to_vec();
        rss[1].metadata.owner_references = None;
        check(
            &d,
            &rss,
            &[],
            0,
            &["status replicas=2 updated=0 ready=2 available=2 unavailable=1 observed=2 \
               | Progressing True NewReplicaSetAvailable | Available False MinimumReplicasUnavailable"],
        );
    }

    // ------------------------------------------------------ adoption/release

    #[test]
    fn adopts_orphans_and_releases_strays_then_stops() {
        let mut d = deployment(3);
        d.status = Some(complete_status(&d, 3, "web-a"));
        let mut orphan = replica_set(&d, "a", "nginx:1", 3, 1, -6000);
        orphan.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "cm".into(),
            uid: "cm-uid".into(),
            controller: None,
            block_owner_deletion: None,
        }]);
        let mut stray = replica_set(&d, "b", "nginx:0", 0, 1, -7000);
        stray.metadata.labels = Some(map(&[("app", "other")]));
        let mut foreign = replica_set(&d, "c", "nginx:1", 3, 1, -6000);
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
        let mut dying_orphan = replica_set(&d, "e", "nginx:1", 3, 1, -6000);
        dying_orphan.metadata.owner_references = None;
        dying_orphan.metadata.deletion_timestamp = Some(Time(ts(-3)));
        let plan = check(
            &d,
            &[orphan.clone(), stray.clone(), foreign, dying_orphan],
            &[],
            0,
            &["adopt web-a", "release web-b"],
        );
        assert_eq!(
            plan.actions[0],
            Action::Patch {
                resource: Resource::ReplicaSets,
                namespace: Some("default".into()),
                name: "web-a".into(),
                subresource: None,
                patch: json!({"metadata": {
                    "uid": "uid-web-a",
                    "resourceVersion": "100",
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "cm-uid"},
                        {"apiVersion": "apps/v1", "blockOwnerDeletion": true, "controller": true,
                         "kind": "Deployment", "name": "web", "uid": "d-uid"},
                    ],
                }}),
            }
        );
        // A Deployment being deleted neither adopts nor releases.
        let mut dying = d.clone();
        dying.metadata.deletion_timestamp = Some(Time(ts(-1)));
        let plan = reconcile(&dying, &[orphan, stray], &[], 0);
        assert!(summary(&dying, &plan)
            .iter()
            .all(|l| !l.starts_with("adopt") && !l.starts_with("release")));
    }

    // -------------------------------------------------------- rolling update

    #[test]
    fn rolling_update_first_pass_creates_and_scales_down_within_bounds() {
        let mut d = rolling(deployment(10), int(3), int(2));
        d.status = Some(complete_status(&d, 10, "web-a"));
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "1")]));
        let d = with_image(d, "nginx:2");
        let rss = [replica_set(&d, "a", "nginx:1", 10, 1, -6000)];
        let plan = check(
            &d,
            &rss,
            &[],
            0,
            &[
                "create NEW replicas=3 rev=2 desired=10 max=13",
                "event Normal ScalingReplicaSet: Scaled up replica set NEW from 0 to 3",
                "update web-a replicas=8 rev=1 desired=10 max=13",
                "event Normal ScalingReplicaSet: Scaled down replica set web-a from 10 to 8",
                "status replicas=10 updated=0 ready=10 available=10 unavailable=1 observed=2 \
                 | Available True MinimumReplicasAvailable | Progressing True NewReplicaSetCreated",
                "revision 2",
            ],
        );
        let status = written_status(&plan);
        let progressing = condition(&status, CONDITION_PROGRESSING);
        // Same status (True): the transition time stays, the update time moves.
        assert_eq!(progressing.last_transition_time, Some(Time(ts(-5000))));
        assert_eq!(progressing.last_update_time, Some(Time(ts(0))));
    }

    #[test]
    fn scale_up_ends_the_pass() {
        let mut d = rolling(deployment(3), int(1), int(0));
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "2")]));
        let old = replica_set(&d, "a", "nginx:1", 2, 1, -6000);
        let new = with_image(d.clone(), "nginx:2");
        let new_rs = replica_set(&new, "b", "nginx:2", 1, 2, -100);
        let mut d = new;
        d.status = Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(3),
            updated_replicas: Some(1),
            ready_replicas: Some(3),
            available_replicas: Some(3),
            ..Default::default()
        });
        // Old could go down (3 available > 3 - 0), but the new ReplicaSet
        // scales up first and the pass ends.
        check(
            &d,
            &[old, new_rs],
            &[],
            0,
            &[
                "update web-b replicas=2 rev=2 desired=3 max=4",
                "event Normal ScalingReplicaSet: Scaled up replica set web-b from 1 to 2",
                "status replicas=3 updated=1 ready=3 available=3 unavailable=1 observed=2 \
                 | Progressing True FoundNewReplicaSet | Available True MinimumReplicasAvailable",
            ],
        );
    }

    #[test]
    fn unhealthy_old_replicas_go_first_and_steps_coalesce() {
        let mut d = rolling(deployment(5), int(1), int(1));
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "2")]));
        let old = rs_status(replica_set(&d, "a", "nginx:1", 4, 1, -6000), 4, 3, 3);
        let d = with_image(d, "nginx:2");
        let new_rs = replica_set(&d, "b", "nginx:2", 2, 2, -100);
        // maxScaledDown = 6 - 4 - 0 = 2: one unhealthy replica is cleaned up,
        // then one more goes since 5 are available and 4 must stay.
        check(
            &d,
            &[old, new_rs],
            &[],
            0,
            &[
                "update web-a replicas=2 rev=1 desired=5 max=6",
                "event Normal ScalingReplicaSet: Scaled down replica set web-a from 4 to 2",
                "status replicas=6 updated=2 ready=5 available=5 unavailable=0 observed=2 \
                 | Available True MinimumReplicasAvailable | Progressing True ReplicaSetUpdated",
            ],
        );
    }

    #[test]
    fn no_scale_down_while_new_pods_are_unavailable() {
        let mut d = rolling(deployment(4), int(1), int(1));
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "2")]));
        d.status = Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(5),
            updated_replicas: Some(2),
            ready_replicas: Some(3),
            available_replicas: Some(3),
            unavailable_replicas: Some(2),
            ..Default::default()
        });
        let old = replica_set(&d, "a", "nginx:1", 3, 1, -6000);
        let d = with_image(d, "nginx:2");
        let mut d2 = d.clone();
        d2.metadata.generation = Some(2);
        let new_rs = rs_status(replica_set(&d2, "b", "nginx:2", 2, 2, -100), 2, 0, 0);
        // allPods 5, minAvailable 3, new unavailable 2: maxScaledDown 0.
        let plan = check(
            &d2,
            &[old, new_rs],
            &[],
            0,
            &[
                "status replicas=5 updated=2 ready=3 available=3 unavailable=2 observed=2 \
             | Progressing True FoundNewReplicaSet | Available True MinimumReplicasAvailable",
            ],
        );
        // FoundNewReplicaSet starts the progress clock.
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(601)));
    }

    // ------------------------------------------------------------ simulation

    /// A fake namespace: the API server's side of plans, the ReplicaSet
    /// controller, and a kubelet that makes pods ready.
    struct Cluster {
        d: Deployment,
        rss: Vec<ReplicaSet>,
        pods: Vec<Pod>,
        now: i64,
        rv: u64,
        serial: u64,
        events: Vec<String>,
    }

    impl Cluster {
        fn new(d: Deployment) -> Cluster {
            Cluster {
                d,
                rss: Vec::new(),
                pods: Vec::new(),
                now: 0,
                rv: 1000,
                serial: 0,
                events: Vec::new(),
            }
        }

        fn next_rv(&mut self) -> Option<String> {
            self.rv += 1;
            Some(self.rv.to_string())
        }

        fn deployment_pods(&self) -> Vec<Pod> {
            let selector = &self.d.spec.as_ref().unwrap().selector;
            self.pods
                .iter()
                .filter(|p| pods::selector_matches(selector, p.metadata.labels.as_ref()))
                .cloned()
                .collect()
        }

        fn reconcile(&self) -> Plan {
            reconcile(&self.d, &self.rss, &self.deployment_pods(), self.now)
        }

        fn rs_index(&self, name: &str) -> usize {
            self.rss
                .iter()
                .position(|r| rs_name(r) == name)
                .unwrap_or_else(|| panic!("no ReplicaSet {name}"))
        }

        /// Applies a plan as the API server would; a write with a stale
        /// resourceVersion within one plan is a bug, so it panics.
        fn apply(&mut self, plan: &Plan) {
            for action in &plan.actions {
                match action {
                    Action::Create {
                        resource: Resource::ReplicaSets,
                        object,
                        ..
                    } => {
                        let mut rs: ReplicaSet = serde_json::from_value(object.clone()).unwrap();
                        let name = rs_name(&rs).to_string();
                        assert!(
                            !self.rss.iter().any(|r| rs_name(r) == name),
                            "{name} exists"
                        );
                        rs.metadata.uid = Some(format!("uid-{name}"));
                        rs.metadata.generation = Some(1);
                        rs.metadata.creation_timestamp = Some(Time(ts(self.now)));
                        rs.metadata.resource_version = self.next_rv();
                        self.rss.push(rs);
                    }
                    Action::Update {
                        resource: Resource::ReplicaSets,
                        name,
                        object,
                        ..
                    } => {
                        let i = self.rs_index(name);
                        let mut rs: ReplicaSet = serde_json::from_value(object.clone()).unwrap();
                        assert_eq!(
                            rs.metadata.resource_version, self.rss[i].metadata.resource_version,
                            "conflict on {name}"
                        );
                        let old = &self.rss[i];
                        rs.metadata.generation = if rs.spec != old.spec {
                            Some(old.metadata.generation.unwrap_or(0) + 1)
                        } else {
                            old.metadata.generation
                        };
                        rs.status = old.status.clone();
                        rs.metadata.resource_version = self.next_rv();
                        self.rss[i] = rs;
                    }
                    Action::UpdateStatus {
                        resource: Resource::ReplicaSets,
                        name,
                        object,
                        ..
                    } => {
                        let i = self.rs_index(name);
                        let rs: ReplicaSet = serde_json::from_value(object.clone()).unwrap();
                        assert_eq!(
                            rs.metadata.resource_version,
                            self.rss[i].metadata.resource_version
                        );
                        self.rss[i].status = rs.status;
                        self.rss[i].metadata.resource_version = self.next_rv();
                    }
                    Action::Delete {
                        resource: Resource::ReplicaSets,
                        name,
                        uid,
                        ..
                    } => {
                        let i = self.rs_index(name);
                        assert_eq!(&self.rss[i].metadata.uid, uid);
                        self.rss.remove(i);
                    }
                    Action::UpdateStatus {
                        resource: Resource::Deployments,
                        object,
                        ..
                    } => {
                        let d: Deployment = serde_json::from_value(object.clone()).unwrap();
                        assert_eq!(
                            d.metadata.resource_version,
                            self.d.metadata.resource_version
                        );
                        self.d.status = d.status;
                        self.d.metadata.resource_version = self.next_rv();
                    }
                    Action::Patch {
                        resource: Resource::Deployments,
                        patch,
                        ..
                    } => {
                        let annotations = self
                            .d
                            .metadata
                            .annotations
                            .get_or_insert_with(Default::default);
                        for (k, v) in patch["metadata"]["annotations"].as_object().unwrap() {
                            annotations.insert(k.clone(), v.as_str().unwrap().to_string());
                        }
                        self.d.metadata.resource_version = self.next_rv();
                    }
                    Action::Create {
                        resource: Resource::Pods,
                        object,
                        ..
                    } => {
                        let mut pod: Pod = serde_json::from_value(object.clone()).unwrap();
                        self.serial += 1;
                        let name = format!(
                            "{}{}",
                            pod.metadata.generate_name.clone().unwrap(),
                            self.serial
                        );
                        pod.metadata.uid = Some(format!("uid-{name}"));
                        pod.metadata.name = Some(name);
                        pod.metadata.creation_timestamp = Some(Time(ts(self.now)));
                        pod.metadata.resource_version = self.next_rv();
                        pod.status = Some(PodStatus {
                            phase: Some("Pending".into()),
                            ..Default::default()
                        });
                        self.pods.push(pod);
                    }
                    Action::Delete {
                        resource: Resource::Pods,
                        name,
                        uid,
                        ..
                    } => {
                        let i = self
                            .pods
                            .iter()
                            .position(|p| p.metadata.name.as_deref() == Some(name))
                            .unwrap();
                        assert_eq!(&self.pods[i].metadata.uid, uid);
                        self.pods.remove(i);
                    }
                    Action::Event {
                        reason, message, ..
                    } => {
                        if reason == "ScalingReplicaSet" {
                            self.events.push(message.clone());
                        }
                    }
                    other => panic!("unexpected action {other:?}"),
                }
            }
        }

        /// Runs the ReplicaSet controller on every ReplicaSet until it has
        /// nothing left to do.
        fn run_replica_sets(&mut self) {
            for _ in 0..10 {
                let mut busy = false;
                for i in 0..self.rss.len() {
                    let rs = self.rss[i].clone();
                    let selector = &rs.spec.as_ref().unwrap().selector;
                    let uid = rs.metadata.uid.clone().unwrap();
                    let pods: Vec<&Pod> = self
                        .pods
                        .iter()
                        .filter(|p| {
                            pods::is_controlled_by(&p.metadata, &uid)
                                || pods::selector_matches(selector, p.metadata.labels.as_ref())
                        })
                        .collect();
                    let plan = reconcile_replicaset(&rs, &pods, ts(self.now));
                    if !plan.actions.is_empty() {
                        busy = true;
                        self.apply(&plan);
                    }
                }
                if !busy {
                    return;
                }
            }
            panic!("replica sets do not settle");
        }

        /// The kubelet: up to `n` pending pods start and become ready.
        fn make_ready(&mut self, n: usize) {
            let now = ts(self.now);
            for pod in self
                .pods
                .iter_mut()
                .filter(|p| pods::pod_phase(p) == "Pending")
                .take(n)
            {
                pod.spec.as_mut().unwrap().node_name = Some("n1".into());
                pod.status = Some(PodStatus {
                    phase: Some("Running".into()),
                    conditions: Some(vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(now)),
                        ..Default::default()
                    }]),
                    ..Default::default()
                });
            }
        }

        fn available_pods(&self) -> usize {
            self.pods.iter().filter(|p| pods::is_pod_ready(p)).count()
        }

        /// Deployment, ReplicaSets and kubelet until the Deployment plans
        /// nothing; `check` runs after every step. Returns the passes taken.
        fn settle(&mut self, ready_per_tick: usize, check: &mut dyn FnMut(&Cluster)) -> usize {
            for pass in 0..200 {
                self.now += 1;
                let plan = self.reconcile();
                self.apply(&plan);
                self.run_replica_sets();
                check(self);
                self.make_ready(ready_per_tick);
                self.run_replica_sets();
                check(self);
                if plan.actions.is_empty()
                    && self.reconcile().actions.is_empty()
                    && self.rss.iter().all(|rs| {
                        rs_status_replicas(rs) == rs_replicas(rs)
                            && rs_available(rs) == rs_replicas(rs)
                    })
                {
                    return pass;
                }
            }
            panic!("deployment does not settle: {:#?}", self.d.status);
        }

        fn sizes(&self) -> Vec<(String, i32)> {
            let mut sizes: Vec<(String, i32)> = self
                .rss
                .iter()
                .map(|r| {
                    (
                        annotation(&r.metadata, REVISION_ANNOTATION)
                            .unwrap()
                            .to_string(),
                        rs_replicas(r),
                    )
                })
                .collect();
            sizes.sort();
            sizes
        }
    }

    /// Rolls `d` out, then changes the image and rolls again, asserting the
    /// RollingUpdate bounds after every step.
    fn simulate_rolling_update(d: Deployment, ready_per_tick: usize) -> Cluster {
        let replicas = d.spec.as_ref().unwrap().replicas.unwrap();
        let sync = Sync::new(&d, d.spec.clone().unwrap(), &[], &[], ts(0));
        let (surge, unavailable) = (sync.max_surge(), sync.max_unavailable());
        let mut c = Cluster::new(d);
        c.settle(usize::MAX, &mut |_| {});
        assert_eq!(c.pods.len(), replicas as usize);
        assert_eq!(c.available_pods(), replicas as usize);

        c.d = with_image(c.d.clone(), "nginx:2");
        c.events.clear();
        let mut steps = 0;
        c.settle(ready_per_tick, &mut |c: &Cluster| {
            steps += 1;
            assert!(
                c.available_pods() as i32 >= replicas - unavailable,
                "availability dropped to {} (min {}) at step {steps}",
                c.available_pods(),
                replicas - unavailable
            );
            assert!(
                c.pods.len() as i32 <= replicas + surge,
                "{} pods exceed {} at step {steps}",
                c.pods.len(),
                replicas + surge
            );
            let total: i32 = c.rss.iter().map(rs_replicas).sum();
            assert!(total <= replicas + surge);
        });
        // Done: every pod runs the new template, the old ReplicaSet is kept
        // at 0 for history, and the status says so.
        let new_hash = pods::template_hash(&c.d.spec.as_ref().unwrap().template, None);
        assert_eq!(c.pods.len(), replicas as usize);
        assert!(c.pods.iter().all(|p| {
            p.metadata
                .labels
                .as_ref()
                .unwrap()
                .get(POD_TEMPLATE_HASH_LABEL)
                == Some(&new_hash)
        }));
        assert_eq!(
            c.sizes(),
            vec![("1".to_string(), 0), ("2".to_string(), replicas)]
        );
        let status = c.d.status.clone().unwrap();
        assert_eq!(
            status_line(&status),
            format!(
                "replicas={replicas} updated={replicas} ready={replicas} available={replicas} \
                 unavailable=0 observed=2 | Available True MinimumReplicasAvailable \
                 | Progressing True NewReplicaSetAvailable"
            )
        );
        assert_eq!(
            condition(&status, CONDITION_PROGRESSING).message.as_deref(),
            Some(format!("ReplicaSet \"web-{new_hash}\" has successfully progressed.").as_str())
        );
        assert_eq!(
            c.d.metadata.annotations.as_ref().unwrap()[REVISION_ANNOTATION],
            "2"
        );
        // Settled means idempotent: nothing more to write.
        assert!(c.reconcile().actions.is_empty());
        c
    }

    #[test]
    fn rolling_update_10_replicas_surge_3_unavailable_2() {
        let c = simulate_rolling_update(rolling(deployment(10), int(3), int(2)), usize::MAX);
        // Kubernetes' first steps: +3 new / -2 old, then as pods become ready.
        assert_eq!(
            c.events[0],
            format!("Scaled up replica set {} from 0 to 3", new_name(&c.d))
        );
        assert_eq!(
            c.events[1],
            "Scaled down replica set web-".to_string()
                + &pods::template_hash(&template("nginx:1"), None)
                + " from 10 to 8"
        );
    }

    #[test]
    fn rolling_update_default_strategy_one_pod_ready_per_tick() {
        simulate_rolling_update(deployment(4), 1);
    }

    #[test]
    fn rolling_update_surge_only() {
        simulate_rolling_update(rolling(deployment(5), int(1), int(0)), 1);
    }

    #[test]
    fn rolling_update_unavailable_only() {
        simulate_rolling_update(rolling(deployment(5), int(0), int(1)), 1);
    }

    #[test]
    fn rolling_update_percentages() {
        simulate_rolling_update(rolling(deployment(7), pct("50%"), pct("20%")), 2);
    }

    #[test]
    fn rolling_update_single_replica() {
        simulate_rolling_update(deployment(1), 1);
    }

    #[test]
    fn rolling_update_with_zero_fenceposts_still_moves() {
        // 0%/0% of 3 → unavailable 1.
        simulate_rolling_update(rolling(deployment(3), pct("0%"), pct("10%")), 1);
    }

    #[test]
    fn rollout_to_a_third_revision_midway_through_a_second() {
        let mut c = Cluster::new(rolling(deployment(6), int(2), int(1)));
        c.settle(usize::MAX, &mut |_| {});
        c.d = with_image(c.d.clone(), "nginx:2");
        // A couple of passes into revision 2 ...
        for _ in 0..2 {
            c.now += 1;
            let plan = c.reconcile();
            c.apply(&plan);
            c.run_replica_sets();
            c.make_ready(1);
            c.run_replica_sets();
        }
        assert_eq!(c.rss.len(), 2);
        // ... revision 3 arrives; everything converges on it.
        c.d = with_image(c.d.clone(), "nginx:3");
        c.settle(2, &mut |c: &Cluster| {
            assert!(c.available_pods() >= 5);
            assert!(c.pods.len() <= 8);
        });
        assert_eq!(
            c.sizes(),
            vec![
                ("1".to_string(), 0),
                ("2".to_string(), 0),
                ("3".to_string(), 6)
            ]
        );
    }

    #[test]
    fn scale_mid_rollout_keeps_bounds() {
        let mut c = Cluster::new(rolling(deployment(10), int(3), int(2)));
        c.settle(usize::MAX, &mut |_| {});
        c.d = with_image(c.d.clone(), "nginx:2");
        c.now += 1;
        let plan = c.reconcile();
        c.apply(&plan);
        c.run_replica_sets();
        // kubectl scale --replicas=15 while the rollout is under way.
        spec_mut(&mut c.d).replicas = Some(15);
        c.d.metadata.generation = Some(3);
        c.settle(3, &mut |c: &Cluster| {
            assert!(c.pods.len() <= 18, "{}", c.pods.len());
        });
        assert_eq!(c.sizes(), vec![("1".to_string(), 0), ("2".to_string(), 15)]);
    }

    // -------------------------------------------------------------- Recreate

    #[test]
    fn recreate_scales_old_down_first() {
        let mut d = recreate(deployment(3));
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "1")]));
        d.status = Some(complete_status(&d, 3, "web-a"));
        let old = replica_set(&d, "a", "nginx:1", 3, 1, -6000);
        let d = with_image(d, "nginx:2");
        check(
            &d,
            &[old],
            &[],
            0,
            &[
                "update web-a replicas=0 rev=1 desired=3 max=3",
                "event Normal ScalingReplicaSet: Scaled down replica set web-a from 3 to 0",
                "status replicas=3 updated=0 ready=3 available=3 unavailable=0 observed=2 \
                 | Available True MinimumReplicasAvailable | Progressing True NewReplicaSetAvailable",
            ],
        );
    }

    fn old_pod(phase: &str, terminating: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-a-1".into()),
                namespace: Some("default".into()),
                labels: Some(map(&[("app", "web"), (POD_TEMPLATE_HASH_LABEL, "ha")])),
                owner_references: Some(vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "web-a".into(),
                    uid: "uid-web-a".into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                deletion_timestamp: terminating.then(|| Time(ts(-1))),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn recreate_waits_for_old_pods_then_creates_at_full_size() {
        let mut d = recreate(deployment(3));
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "1")]));
        let old = rs_status(replica_set(&d, "a", "nginx:1", 0, 1, -6000), 0, 0, 0);
        let mut d = with_image(d, "nginx:2");
        d.status = Some(DeploymentStatus {
            observed_generation: Some(2),
            conditions: Some(vec![new_condition(
                CONDITION_PROGRESSING,
                "True",
                REASON_RS_UPDATED,
                "ReplicaSet \"web-a\" is progressing.".into(),
                ts(-10),
            )]),
            ..Default::default()
        });
        // The old ReplicaSet still reports a pod.
        let reporting = rs_status(old.clone(), 1, 0, 0);
        let waiting = "status replicas=1 updated=0 ready=0 available=0 unavailable=0 observed=2 \
                       | Progressing True ReplicaSetUpdated | Available False MinimumReplicasUnavailable";
        let plan = check(&d, &[reporting], &[], 0, &[waiting]);
        assert_eq!(
            condition(&written_status(&plan), CONDITION_PROGRESSING)
                .message
                .as_deref(),
            Some("ReplicaSet \"web-a\" is progressing.")
        );
        // A terminating old pod still runs: wait.
        let waiting = "status replicas=0 updated=0 ready=0 available=0 unavailable=0 observed=2 \
                       | Progressing True ReplicaSetUpdated | Available False MinimumReplicasUnavailable";
        check(
            &d,
            std::slice::from_ref(&old),
            &[old_pod("Running", true)],
            0,
            &[waiting],
        );
        check(
            &d,
            std::slice::from_ref(&old),
            &[old_pod("Unknown", false)],
            0,
            &[waiting],
        );
        // Finished pods do not count.
        let creating = [
            "create NEW replicas=3 rev=2 desired=3 max=3",
            "event Normal ScalingReplicaSet: Scaled up replica set NEW from 0 to 3",
            "status replicas=0 updated=0 ready=0 available=0 unavailable=3 observed=2 \
             | Progressing True NewReplicaSetCreated | Available False MinimumReplicasUnavailable",
            "revision 2",
        ];
        check(
            &d,
            std::slice::from_ref(&old),
            &[old_pod("Failed", false)],
            0,
            &creating,
        );
        check(
            &d,
            std::slice::from_ref(&old),
            &[old_pod("Succeeded", true)],
            0,
            &creating,
        );
        check(&d, &[old], &[], 0, &creating);
    }

    #[test]
    fn recreate_simulation_never_mixes_versions() {
        let mut c = Cluster::new(recreate(deployment(3)));
        c.settle(usize::MAX, &mut |_| {});
        c.d = with_image(c.d.clone(), "nginx:2");
        c.events.clear();
        c.settle(1, &mut |c: &Cluster| {
            let hashes: HashSet<&String> = c
                .pods
                .iter()
                .map(|p| &p.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL])
                .collect();
            assert!(hashes.len() <= 1, "old and new pods at once");
        });
        let old = pods::template_hash(&template("nginx:1"), None);
        assert_eq!(
            c.events,
            vec![
                format!("Scaled down replica set web-{old} from 3 to 0"),
                format!("Scaled up replica set {} from 0 to 3", new_name(&c.d)),
            ]
        );
        assert_eq!(c.sizes(), vec![("1".to_string(), 0), ("2".to_string(), 3)]);
        assert_eq!(c.available_pods(), 3);
    }

    // --------------------------------------------------------------- scaling

    #[test]
    fn scaling_a_single_replica_set() {
        let mut d = deployment(3);
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "1")]));
        d.status = Some(complete_status(&d, 3, "web-a"));
        let rs = replica_set(&d, "a", "nginx:1", 3, 1, -6000);
        spec_mut(&mut d).replicas = Some(5);
        d.metadata.generation = Some(2);
        check(
            &d,
            &[rs],
            &[],
            0,
            &[
                "update web-a replicas=5 rev=1 desired=5 max=7",
                "event Normal ScalingReplicaSet: Scaled up replica set web-a from 3 to 5",
                "status replicas=3 updated=3 ready=3 available=3 unavailable=2 observed=2 \
                 | Progressing True NewReplicaSetAvailable | Available False MinimumReplicasUnavailable",
            ],
        );
    }

    /// The example of the Kubernetes documentation ("Proportional scaling"):
    /// 10 replicas, maxSurge 3, maxUnavailable 2, a rollout stuck at 8 old +
    /// 5 new; scaling to 15 adds 3 to the old and 2 to the new ReplicaSet.
    #[test]
    fn proportional_scaling_documented_example() {
        let mut d = rolling(deployment(10), int(3), int(2));
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "2")]));
        let old = replica_set(&d, "a", "nginx:1", 8, 1, -6000);
        let mut d = with_image(d, "nginx:2");
        let new = rs_status(replica_set(&d, "b", "nginx:2", 5, 2, -100), 5, 0, 0);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(13),
            updated_replicas: Some(5),
            ready_replicas: Some(8),
            available_replicas: Some(8),
            unavailable_replicas: Some(5),
            ..Default::default()
        });
        spec_mut(&mut d).replicas = Some(15);
        d.metadata.generation = Some(3);
        check(
            &d,
            &[old.clone(), new.clone()],
            &[],
            0,
            &[
                "update web-a replicas=11 rev=1 desired=15 max=18",
                "event Normal ScalingReplicaSet: Scaled up replica set web-a from 8 to 11",
                "update web-b replicas=7 rev=2 desired=15 max=18",
                "event Normal ScalingReplicaSet: Scaled up replica set web-b from 5 to 7",
                "status replicas=13 updated=5 ready=8 available=8 unavailable=10 observed=3 \
                 | Progressing True FoundNewReplicaSet | Available False MinimumReplicasUnavailable",
            ],
        );

        // And back down to 10: 11/7 sized for 18 become 8/5 for 13.
        let mut old = old;
        old.spec.as_mut().unwrap().replicas = Some(11);
        let mut new = new;
        new.spec.as_mut().unwrap().replicas = Some(7);
        for rs in [&mut old, &mut new] {
            let a = rs.metadata.annotations.as_mut().unwrap();
            a.insert(DESIRED_REPLICAS_ANNOTATION.into(), "15".into());
            a.insert(MAX_REPLICAS_ANNOTATION.into(), "18".into());
        }
        spec_mut(&mut d).replicas = Some(10);
        d.metadata.generation = Some(4);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(4),
            replicas: Some(13),
            updated_replicas: Some(5),
            ready_replicas: Some(8),
            available_replicas: Some(8),
            unavailable_replicas: Some(5),
            conditions: Some(vec![new_condition(
                CONDITION_AVAILABLE,
                "True",
                REASON_MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                ts(-50),
            )]),
            ..Default::default()
        });
        check(
            &d,
            &[old, new],
            &[],
            0,
            &[
                "update web-a replicas=8 rev=1 desired=10 max=13",
                "event Normal ScalingReplicaSet: Scaled down replica set web-a from 11 to 8",
                "update web-b replicas=5 rev=2 desired=10 max=13",
                "event Normal ScalingReplicaSet: Scaled down replica set web-b from 7 to 5",
                "status replicas=13 updated=5 ready=8 available=8 unavailable=5 observed=4 \
                 | Available True MinimumReplicasAvailable | Progressing True FoundNewReplicaSet",
            ],
        );
    }

    #[test]
    fn proportional_scaling_leftovers_go_to_the_largest() {
        // Three active ReplicaSets of 1 each sized for 3; scaling 2 → 4
        // (surge 1): 5 allowed, 2 to add; fractions round to 2/3 each (+1),
        // the largest (newest on ties) gets +1 and the next +1.
        let mut d = rolling(deployment(2), int(1), int(0));
        let a = replica_set(&d, "a", "nginx:1", 1, 1, -300);
        let b = replica_set(&d, "b", "nginx:2", 1, 2, -200);
        d = with_image(d, "nginx:3");
        let c = replica_set(&d, "c", "nginx:3", 1, 3, -100);
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "3")]));
        spec_mut(&mut d).replicas = Some(4);
        let plan = reconcile(&d, &[a, b, c], &[], 0);
        let lines = summary(&d, &plan);
        assert_eq!(
            lines[..6],
            [
                "update web-c replicas=2 rev=3 desired=4 max=5",
                "event Normal ScalingReplicaSet: Scaled up replica set web-c from 1 to 2",
                "update web-b replicas=2 rev=2 desired=4 max=5",
                "event Normal ScalingReplicaSet: Scaled up replica set web-b from 1 to 2",
                "update web-a replicas=1 rev=1 desired=4 max=5",
                lines[5].as_str(),
            ]
        );
        assert!(lines[5].starts_with("status"), "{lines:?}");
    }

    #[test]
    fn saturated_new_replica_set_scales_old_ones_to_zero() {
        let mut d = deployment(3);
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "2")]));
        let old = annotate(
            replica_set(&d, "a", "nginx:1", 2, 1, -6000),
            DESIRED_REPLICAS_ANNOTATION,
            "2",
        );
        let d = with_image(d, "nginx:2");
        let new = replica_set(&d, "b", "nginx:2", 3, 2, -100);
        let lines = summary(&d, &reconcile(&d, &[old, new], &[], 0));
        assert_eq!(
            lines[..2],
            [
                "update web-a replicas=0 rev=1 desired=3 max=4",
                "event Normal ScalingReplicaSet: Scaled down replica set web-a from 2 to 0",
            ]
        );
    }

    // -------------------------------------------------------------- rollback

    #[test]
    fn rollback_makes_the_old_replica_set_new_again() {
        // Revision 1 (nginx:1, scaled to 0) and 2 (nginx:2, current);
        // `kubectl rollout undo` patches the template (and change-cause) back.
        let mut d = rolling(deployment(3), int(1), int(0));
        d.metadata.annotations = Some(map(&[
            (REVISION_ANNOTATION, "2"),
            ("kubernetes.io/change-cause", "v1"),
        ]));
        let rev1 = annotate(
            rs_status(replica_set(&d, "a", "nginx:1", 0, 1, -6000), 0, 0, 0),
            "kubernetes.io/change-cause",
            "v1",
        );
        let rev2 = replica_set(&d, "b", "nginx:2", 3, 2, -3000);
        d.metadata.generation = Some(3);
        d.status = Some(complete_status(&d, 3, "web-b"));
        let plan = check(
            &d,
            &[rev1, rev2],
            &[],
            0,
            &[
                "update web-a replicas=1 rev=3 desired=3 max=4 history=1",
                "event Normal ScalingReplicaSet: Scaled up replica set web-a from 0 to 1",
                "status replicas=3 updated=0 ready=3 available=3 unavailable=1 observed=3 \
                 | Available True MinimumReplicasAvailable | Progressing True NewReplicaSetAvailable",
                "revision 3",
            ],
        );
        // No new ReplicaSet was created: the old one is the new one.
        assert!(!plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Create { .. })));
    }

    #[test]
    fn revision_history_accumulates_and_is_bounded() {
        let mut ann = map(&[
            (REVISION_ANNOTATION, "4"),
            (REVISION_HISTORY_ANNOTATION, "1,3"),
        ]);
        assert!(set_new_replica_set_annotations(
            None, &mut ann, 6, true, 0, 0
        ));
        assert_eq!(ann[REVISION_ANNOTATION], "6");
        assert_eq!(ann[REVISION_HISTORY_ANNOTATION], "1,3,4");
        // Never lowered.
        assert!(!set_new_replica_set_annotations(
            None, &mut ann, 5, true, 0, 0
        ));
        assert_eq!(ann[REVISION_ANNOTATION], "6");
        // Bounded to 2000 characters, dropping the oldest.
        let long: Vec<String> = (0..400).map(|i| format!("{:04}", i)).collect();
        let mut ann = map(&[
            (REVISION_ANNOTATION, "9999"),
            (REVISION_HISTORY_ANNOTATION, &long.join(",")),
        ]);
        set_new_replica_set_annotations(None, &mut ann, 10000, true, 0, 0);
        let history = &ann[REVISION_HISTORY_ANNOTATION];
        assert!(history.len() <= 2000, "{}", history.len());
        assert!(history.ends_with(",0399,9999"));
        assert!(!history.starts_with("0000,"));
        // An unparsable revision blocks the update, as in Kubernetes.
        let mut ann = map(&[(REVISION_ANNOTATION, "x")]);
        assert!(!set_new_replica_set_annotations(
            None, &mut ann, 2, true, 0, 0
        ));
    }

    // ----------------------------------------------------------------- pause

    #[test]
    fn paused_deployment_does_not_roll_out() {
        let mut d = deployment(3);
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "1")]));
        d.status = Some(complete_status(&d, 3, "web-a"));
        let rs = replica_set(&d, "a", "nginx:1", 3, 1, -6000);
        let mut d = with_image(d, "nginx:2");
        spec_mut(&mut d).paused = Some(true);
        let plan = check(
            &d,
            std::slice::from_ref(&rs),
            &[],
            0,
            &[
                "status replicas=3 updated=0 ready=3 available=3 unavailable=0 observed=2 \
               | Available True MinimumReplicasAvailable | Progressing Unknown DeploymentPaused",
            ],
        );
        let status = written_status(&plan);
        let progressing = condition(&status, CONDITION_PROGRESSING);
        assert_eq!(progressing.message.as_deref(), Some("Deployment is paused"));
        assert_eq!(progressing.last_transition_time, Some(Time(ts(0))));
        assert_eq!(plan.requeue_after, None);

        // Still paused after the status landed: nothing, however long.
        d.status = Some(status.clone());
        check(&d, std::slice::from_ref(&rs), &[], 100_000, &[]);

        // Scaling works while paused.
        let mut scaled = d.clone();
        spec_mut(&mut scaled).replicas = Some(4);
        let lines = summary(
            &scaled,
            &reconcile(&scaled, std::slice::from_ref(&rs), &[], 5),
        );
        assert_eq!(
            lines[..2],
            [
                "update web-a replicas=4 rev=1 desired=4 max=5",
                "event Normal ScalingReplicaSet: Scaled up replica set web-a from 3 to 4",
            ]
        );

        // Resume: DeploymentResumed, and the rollout starts in the same pass.
        spec_mut(&mut d).paused = Some(false);
        let plan = check(
            &d,
            &[rs],
            &[],
            10,
            &[
                "create NEW replicas=1 rev=2 desired=3 max=4",
                "event Normal ScalingReplicaSet: Scaled up replica set NEW from 0 to 1",
                "status replicas=3 updated=0 ready=3 available=3 unavailable=1 observed=2 \
                 | Available True MinimumReplicasAvailable | Progressing True NewReplicaSetCreated",
                "revision 2",
            ],
        );
        let _ = plan;
        // Resuming without a template change leaves DeploymentResumed.
        let mut d = deployment(3);
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "1")]));
        d.status = Some(status);
        let rs = replica_set(&d, "a", "nginx:1", 3, 1, -6000);
        let plan = reconcile(&d, &[rs], &[], 20);
        let status = written_status(&plan);
        let progressing = condition(&status, CONDITION_PROGRESSING);
        assert_eq!(progressing.reason.as_deref(), Some(REASON_NEW_RS_AVAILABLE));
        assert_eq!(
            progressing.message.as_deref(),
            Some("ReplicaSet \"web-a\" has successfully progressed.")
        );
    }

    #[test]
    fn resumed_condition_then_deadline_applies_again() {
        let mut d = deployment(3);
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "2")]));
        let old = replica_set(&d, "a", "nginx:1", 3, 1, -6000);
        let d = with_image(d, "nginx:2");
        let new = rs_status(replica_set(&d, "b", "nginx:2", 1, 2, -5000), 1, 0, 0);
        let mut d = d;
        d.status = Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(4),
            updated_replicas: Some(1),
            ready_replicas: Some(3),
            available_replicas: Some(3),
            unavailable_replicas: Some(1),
            conditions: Some(vec![new_condition(
                CONDITION_PROGRESSING,
                "Unknown",
                REASON_PAUSED,
                "Deployment is paused".into(),
                ts(-4000),
            )]),
            ..Default::default()
        });
        let plan = reconcile(&d, &[old.clone(), new.clone()], &[], 0);
        let status = written_status(&plan);
        let progressing = condition(&status, CONDITION_PROGRESSING);
        assert_eq!(progressing.reason.as_deref(), Some(REASON_RESUMED));
        assert_eq!(
            progressing.message.as_deref(),
            Some("Deployment is resumed")
        );
        assert_eq!(progressing.status, "Unknown");
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(601)));
        // No progress for longer than the deadline after resuming: timed out.
        d.status = Some(status);
        let plan = reconcile(&d, &[old, new], &[], 601);
        let progressing = written_status(&plan);
        let progressing = condition(&progressing, CONDITION_PROGRESSING);
        assert_eq!(progressing.reason.as_deref(), Some(REASON_TIMED_OUT));
        assert_eq!(progressing.status, "False");
    }

    #[test]
    fn pausing_keeps_a_reported_timeout() {
        let mut d = deployment(3);
        spec_mut(&mut d).paused = Some(true);
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "1")]));
        let mut status = complete_status(&d, 3, "web-a");
        status.conditions.as_mut().unwrap()[1] = new_condition(
            CONDITION_PROGRESSING,
            "False",
            REASON_TIMED_OUT,
            "ReplicaSet \"web-a\" has timed out progressing.".into(),
            ts(-100),
        );
        d.status = Some(status);
        let rs = replica_set(&d, "a", "nginx:1", 3, 1, -6000);
        check(&d, &[rs], &[], 0, &[]);
    }

    // ------------------------------------------------------ progress deadline

    fn stuck(progressing_since: i64, deadline: Option<i32>) -> (Deployment, Vec<ReplicaSet>) {
        let mut d = deployment(3);
        spec_mut(&mut d).progress_deadline_seconds = deadline;
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "2")]));
        let old = replica_set(&d, "a", "nginx:1", 3, 1, -6000);
        let mut d = with_image(d, "nginx:2");
        let new = rs_status(replica_set(&d, "b", "nginx:2", 1, 2, -5000), 1, 0, 0);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(4),
            updated_replicas: Some(1),
            ready_replicas: Some(3),
            available_replicas: Some(3),
            unavailable_replicas: Some(1),
            conditions: Some(vec![
                new_condition(
                    CONDITION_AVAILABLE,
                    "True",
                    REASON_MIN_AVAILABLE,
                    "Deployment has minimum availability.".into(),
                    ts(-5000),
                ),
                DeploymentCondition {
                    last_transition_time: Some(Time(ts(-5000))),
                    ..new_condition(
                        CONDITION_PROGRESSING,
                        "True",
                        REASON_RS_UPDATED,
                        "ReplicaSet \"web-b\" is progressing.".into(),
                        ts(progressing_since),
                    )
                },
            ]),
            ..Default::default()
        });
        (d, vec![old, new])
    }

    #[test]
    fn progress_deadline_requeues_then_times_out() {
        // 100s into a 600s deadline: nothing to write, look again at 501s.
        let (d, rss) = stuck(-100, None);
        let plan = check(&d, &rss, &[], 0, &[]);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(501)));
        // Exactly at the deadline: not yet.
        let plan = check(&d, &rss, &[], 500, &[]);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(1)));
        // Past it: ProgressDeadlineExceeded, no more requeues.
        let plan = check(
            &d,
            &rss,
            &[],
            501,
            &["status replicas=4 updated=1 ready=3 available=3 unavailable=1 observed=2 \
               | Available True MinimumReplicasAvailable | Progressing False ProgressDeadlineExceeded"],
        );
        assert_eq!(plan.requeue_after, None);
        let status = written_status(&plan);
        let progressing = condition(&status, CONDITION_PROGRESSING);
        assert_eq!(
            progressing.message.as_deref(),
            Some("ReplicaSet \"web-b\" has timed out progressing.")
        );
        assert_eq!(progressing.last_transition_time, Some(Time(ts(501))));
        assert_eq!(progressing.last_update_time, Some(Time(ts(501))));
        // Timed out stays timed out without progress.
        let mut d = d;
        d.status = Some(status);
        let plan = check(&d, &rss, &[], 5000, &[]);
        assert_eq!(plan.requeue_after, None);
    }

    #[test]
    fn progress_refreshes_update_time_but_not_transition_time() {
        let (d, mut rss) = stuck(-400, Some(60));
        // One more new pod became available since the last status.
        rss[1] = rs_status(rss[1].clone(), 1, 1, 1);
        let plan = check(
            &d,
            &rss,
            &[],
            0,
            &[
                "update web-a replicas=2 rev=1 desired=3 max=4",
                "event Normal ScalingReplicaSet: Scaled down replica set web-a from 3 to 2",
                "status replicas=4 updated=1 ready=4 available=4 unavailable=0 observed=2 \
                 | Available True MinimumReplicasAvailable | Progressing True ReplicaSetUpdated",
            ],
        );
        let status = written_status(&plan);
        let progressing = condition(&status, CONDITION_PROGRESSING);
        assert_eq!(progressing.last_update_time, Some(Time(ts(0))));
        assert_eq!(progressing.last_transition_time, Some(Time(ts(-5000))));
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(61)));
    }

    #[test]
    fn no_progress_deadline_means_no_progressing_condition() {
        let (d, rss) = stuck(-100_000, Some(i32::MAX));
        let plan = check(
            &d,
            &rss,
            &[],
            0,
            &[
                "status replicas=4 updated=1 ready=3 available=3 unavailable=1 observed=2 \
               | Available True MinimumReplicasAvailable",
            ],
        );
        assert_eq!(plan.requeue_after, None);
    }

    #[test]
    fn available_condition_tracks_max_unavailable() {
        let (mut d, mut rss) = stuck(-10, None);
        // 3 replicas, 25%: maxUnavailable 0 → all 3 must be available.
        rss[0] = rs_status(rss[0].clone(), 3, 2, 2);
        let plan = reconcile(&d, &rss, &[], 0);
        let status = written_status(&plan);
        let available = condition(&status, CONDITION_AVAILABLE);
        assert_eq!(available.status, "False");
        assert_eq!(available.reason.as_deref(), Some(REASON_MIN_UNAVAILABLE));
        assert_eq!(
            available.message.as_deref(),
            Some("Deployment does not have minimum availability.")
        );
        assert_eq!(available.last_transition_time, Some(Time(ts(0))));
        // With maxUnavailable 1, 2 of 3 is enough.
        d = rolling(d, int(1), int(1));
        let plan = reconcile(&d, &rss, &[], 0);
        let status = written_status(&plan);
        assert_eq!(condition(&status, CONDITION_AVAILABLE).status, "True");
    }

    #[test]
    fn replica_failure_is_copied_from_replica_sets() {
        let (d, mut rss) = stuck(-10, None);
        rss[1].status.as_mut().unwrap().conditions = Some(vec![ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some("pods \"web-b-\" is forbidden: exceeded quota".into()),
            last_transition_time: Some(Time(ts(-3))),
        }]);
        let plan = reconcile(&d, &rss, &[], 0);
        let status = written_status(&plan);
        let failure = condition(&status, CONDITION_REPLICA_FAILURE);
        assert_eq!(failure.reason.as_deref(), Some("FailedCreate"));
        assert_eq!(failure.last_update_time, Some(Time(ts(-3))));
        // Gone from the ReplicaSet: gone from the Deployment.
        let mut d = d;
        d.status = Some(status);
        rss[1].status.as_mut().unwrap().conditions = None;
        let status = written_status(&reconcile(&d, &rss, &[], 1));
        assert!(get_condition(&status, CONDITION_REPLICA_FAILURE).is_none());
    }

    // ------------------------------------------------------------- collision

    #[test]
    fn hash_collision_bumps_collision_count() {
        let mut d = deployment(3);
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "1")]));
        d.status = Some(complete_status(&d, 3, "web-a"));
        let mut d = with_image(d, "nginx:2");
        // Someone else's ReplicaSet (or an old one with another template)
        // already has the name the new ReplicaSet would get.
        let mut squatter = replica_set(&d, "a", "nginx:1", 3, 1, -6000);
        let taken = new_name(&d);
        squatter.metadata.name = Some(taken.clone());
        squatter.metadata.uid = Some(format!("uid-{taken}"));
        let plan = check(
            &d,
            &[squatter.clone()],
            &[],
            0,
            &[
                "status replicas=3 updated=3 ready=3 available=3 unavailable=0 observed=1 \
               collisions=1 | Available True MinimumReplicasAvailable \
               | Progressing True NewReplicaSetAvailable",
            ],
        );
        d.status = Some(written_status(&plan));
        let renamed = new_name(&d);
        assert_ne!(renamed, taken);
        let lines = summary(&d, &reconcile(&d, &[squatter], &[], 1));
        assert_eq!(lines[0], "create NEW replicas=1 rev=2 desired=3 max=4");
    }

    // --------------------------------------------------------------- cleanup

    fn with_history(old: i64, limit: Option<i32>) -> (Deployment, Vec<ReplicaSet>) {
        let mut d = deployment(2);
        spec_mut(&mut d).revision_history_limit = limit;
        let mut rss: Vec<ReplicaSet> = (1..=old)
            .map(|r| {
                rs_status(
                    replica_set(
                        &d,
                        &format!("r{r}"),
                        &format!("nginx:{r}"),
                        0,
                        r,
                        -10_000 + r,
                    ),
                    0,
                    0,
                    0,
                )
            })
            .collect();
        let current = format!("nginx:{}", old + 1);
        d = with_image(d, &current);
        rss.push(replica_set(&d, "cur", &current, 2, old + 1, -100));
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, &(old + 1).to_string())]));
        d.status = Some(complete_status(&d, 2, "web-cur"));
        (d, rss)
    }

    #[test]
    fn old_replica_sets_beyond_the_history_limit_are_deleted() {
        let (d, rss) = with_history(12, None);
        check(&d, &rss, &[], 0, &["delete web-r1", "delete web-r2"]);
        let (d, rss) = with_history(3, Some(1));
        check(&d, &rss, &[], 0, &["delete web-r1", "delete web-r2"]);
        let (d, rss) = with_history(3, Some(0));
        check(
            &d,
            &rss,
            &[],
            0,
            &["delete web-r1", "delete web-r2", "delete web-r3"],
        );
        let (d, rss) = with_history(10, None);
        check(&d, &rss, &[], 0, &[]);
        let (d, rss) = with_history(12, Some(i32::MAX));
        check(&d, &rss, &[], 0, &[]);
    }

    #[test]
    fn history_cleanup_spares_busy_replica_sets() {
        let (d, mut rss) = with_history(4, Some(1));
        // Revision 1 still has a pod, revision 2's latest spec is not yet
        // observed, revision 3 is already being deleted.
        rss[0] = rs_status(rss[0].clone(), 1, 0, 0);
        rss[1].metadata.generation = Some(2);
        rss[2].metadata.deletion_timestamp = Some(Time(ts(-1)));
        // Cleanable: r1, r2, r4 (r3 is going anyway); 3 - 1 = 2 candidates,
        // both spared.
        let deletes = |rss: &[ReplicaSet]| -> Vec<String> {
            summary(&d, &reconcile(&d, rss, &[], 0))
                .into_iter()
                .filter(|l| l.starts_with("delete"))
                .collect()
        };
        assert!(deletes(&rss).is_empty());
        rss[1].metadata.generation = Some(1);
        assert_eq!(deletes(&rss), vec!["delete web-r2"]);
    }

    #[test]
    fn no_cleanup_while_rolling_out() {
        let (mut d, rss) = with_history(12, None);
        d.status.as_mut().unwrap().available_replicas = Some(1);
        let lines = summary(&d, &reconcile(&d, &rss, &[], 0));
        assert!(lines.iter().all(|l| !l.starts_with("delete")), "{lines:?}");
    }

    #[test]
    fn paused_deployment_cleans_up_history() {
        let (mut d, rss) = with_history(11, None);
        spec_mut(&mut d).paused = Some(true);
        let lines = summary(&d, &reconcile(&d, &rss, &[], 0));
        assert_eq!(lines[0], "delete web-r1");
    }

    // ------------------------------------------------------------ more cases

    #[test]
    fn stale_replica_annotations_do_not_block_a_rollout() {
        // The lone ReplicaSet already has the right size but was sized for
        // another spec.replicas (someone scaled it directly).
        let mut d = deployment(5);
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "1")]));
        d.status = Some(complete_status(&d, 5, "web-a"));
        let rs = annotate(
            replica_set(&d, "a", "nginx:1", 5, 1, -6000),
            DESIRED_REPLICAS_ANNOTATION,
            "3",
        );
        let d = with_image(d, "nginx:2");
        let mut c = Cluster::new(d);
        c.rss.push(rs);
        let plan = c.reconcile();
        assert_eq!(
            summary(&c.d, &plan)[0],
            "update web-a replicas=5 rev=1 desired=5 max=7"
        );
        assert!(!summary(&c.d, &plan).iter().any(|l| l.contains("event")));
        c.apply(&plan);
        // Now the rollout starts.
        let lines = summary(&c.d, &c.reconcile());
        assert_eq!(lines[0], "create NEW replicas=2 rev=2 desired=5 max=7");
    }

    #[test]
    fn oversized_new_replica_set_is_scaled_down() {
        let mut d = rolling(deployment(3), int(1), int(0));
        d.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "1")]));
        // Adopted without replica annotations, so not a scaling event.
        let mut rs = replica_set(&d, "a", "nginx:1", 5, 1, -6000);
        rs.metadata.annotations = Some(map(&[(REVISION_ANNOTATION, "1")]));
        d.status = Some(complete_status(&d, 3, "web-a"));
        let lines = summary(&d, &reconcile(&d, &[rs], &[], 0));
        assert_eq!(
            lines[..2],
            [
                "update web-a replicas=3 rev=1 desired=3 max=4",
                "event Normal ScalingReplicaSet: Scaled down replica set web-a from 5 to 3",
            ]
        );
    }

    #[test]
    fn zero_replicas_is_complete_at_once() {
        let d = deployment(0);
        let plan = check(
            &d,
            &[],
            &[],
            0,
            &[
                "create NEW replicas=0 rev=1 desired=0 max=0",
                "status replicas=0 updated=0 ready=0 available=0 unavailable=0 observed=1 \
                 | Available True MinimumReplicasAvailable | Progressing True NewReplicaSetAvailable",
                "revision 1",
            ],
        );
        assert_eq!(plan.requeue_after, None);
    }

    #[test]
    fn min_ready_seconds_gates_the_rollout() {
        let mut d = rolling(deployment(4), int(1), int(0));
        spec_mut(&mut d).min_ready_seconds = Some(3);
        let mut c = Cluster::new(d);
        c.settle(usize::MAX, &mut |_| {});
        assert!(c
            .rss
            .iter()
            .all(|rs| rs.spec.as_ref().unwrap().min_ready_seconds == Some(3)));
        c.d = with_image(c.d.clone(), "nginx:2");
        let passes = c.settle(usize::MAX, &mut |c: &Cluster| {
            // Availability as the ReplicaSets report it never drops below 4.
            let available: i32 = c.rss.iter().map(rs_available).sum();
            assert!(available >= 4, "{available}");
        });
        // Each of the 4 steps waits 3s for the new pod to become available.
        assert!(passes >= 12, "{passes}");
        assert_eq!(c.sizes(), vec![("1".to_string(), 0), ("2".to_string(), 4)]);
    }

    #[test]
    fn rollout_undo_in_simulation() {
        let mut c = Cluster::new(rolling(deployment(3), int(1), int(1)));
        c.settle(usize::MAX, &mut |_| {});
        c.d = with_image(c.d.clone(), "nginx:2");
        c.settle(1, &mut |_| {});
        // kubectl rollout undo: the template of revision 1 comes back.
        c.d = with_image(c.d.clone(), "nginx:1");
        c.settle(1, &mut |c: &Cluster| assert!(c.available_pods() >= 2));
        assert_eq!(c.sizes(), vec![("2".to_string(), 0), ("3".to_string(), 3)]);
        let first = pods::template_hash(&template("nginx:1"), None);
        let rs = &c.rss[c.rs_index(&format!("web-{first}"))];
        assert_eq!(
            annotation(&rs.metadata, REVISION_HISTORY_ANNOTATION),
            Some("1")
        );
        assert_eq!(
            c.d.metadata.annotations.as_ref().unwrap()[REVISION_ANNOTATION],
            "3"
        );
        assert!(c.reconcile().is_empty());
    }

    #[test]
    fn recreate_rollback_reuses_the_old_replica_set() {
        let mut c = Cluster::new(recreate(deployment(2)));
        c.settle(usize::MAX, &mut |_| {});
        c.d = with_image(c.d.clone(), "nginx:2");
        c.settle(usize::MAX, &mut |_| {});
        c.d = with_image(c.d.clone(), "nginx:1");
        c.events.clear();
        c.settle(usize::MAX, &mut |_| {});
        let first = pods::template_hash(&template("nginx:1"), None);
        let second = pods::template_hash(&template("nginx:2"), None);
        assert_eq!(
            c.events,
            vec![
                format!("Scaled down replica set web-{second} from 2 to 0"),
                format!("Scaled up replica set web-{first} from 0 to 2"),
            ]
        );
        assert_eq!(c.sizes(), vec![("2".to_string(), 0), ("3".to_string(), 2)]);
    }

    #[test]
    fn history_limit_applies_in_simulation() {
        let mut d = rolling(deployment(1), int(1), int(0));
        spec_mut(&mut d).revision_history_limit = Some(2);
        let mut c = Cluster::new(d);
        c.settle(usize::MAX, &mut |_| {});
        for v in 2..=6 {
            c.d = with_image(c.d.clone(), &format!("nginx:{v}"));
            c.settle(usize::MAX, &mut |_| {});
        }
        // Revision 6 plus the two before it.
        assert_eq!(
            c.sizes(),
            vec![
                ("4".to_string(), 0),
                ("5".to_string(), 0),
                ("6".to_string(), 1)
            ]
        );
    }
}
