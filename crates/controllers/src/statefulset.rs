//! The StatefulSet controller: pods with stable names `<set>-<ordinal>` and
//! stable storage (a PVC per volumeClaimTemplate and ordinal, created before
//! the pod and kept across restarts), started and stopped in order
//! (OrderedReady) or all at once (Parallel), updated by RollingUpdate with
//! partition (and maxUnavailable) or OnDelete, the way
//! kube-controller-manager does.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    ControllerRevision, StatefulSet, StatefulSetSpec, StatefulSetStatus,
};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::history::{self, CONTROLLER_HASH_LABEL, CONTROLLER_REVISION_HASH_LABEL};
use crate::plan::{object_reference, Action, EventType, Plan, Resource};
use crate::pods;

/// A pod's own name as a label, so a Service can select a single member.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// A pod's ordinal as a label.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

/// Reconciles one StatefulSet. `pods` are the pods in its namespace (those
/// it controls and named as its members are used), `pvcs` the claims in its
/// namespace, `revisions` the ControllerRevisions in its namespace (those it
/// controls are its history, the rest only matter for name collisions).
pub fn reconcile_statefulset(
    sts: &StatefulSet,
    pods: &[&Pod],
    pvcs: &[&PersistentVolumeClaim],
    revisions: &[&ControllerRevision],
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let (Some(spec), Some(uid)) = (sts.spec.as_ref(), sts.metadata.uid.as_deref()) else {
        return plan;
    };
    let set_name = sts.metadata.name.clone().unwrap_or_default();
    let deleting = sts.metadata.deletion_timestamp.is_some();
    let revs = resolve_revisions(sts, revisions);
    // A set being deleted only reports status: its history goes with it.
    if !deleting {
        plan.actions.extend(revs.actions.iter().cloned());
    }

    let mut members: Vec<(i32, &Pod)> = pods
        .iter()
        .filter(|p| pods::is_controlled_by(&p.metadata, uid))
        .filter_map(|p| Some((ordinal_of(p, &set_name)?, *p)))
        .collect();
    members.sort_by_key(|(ordinal, _)| *ordinal);
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let replica_count = spec.replicas.unwrap_or(1).max(0);
    let end = start + replica_count;

    let ctx = Context {
        sts,
        spec,
        set_name: &set_name,
        involved: object_reference("apps/v1", "StatefulSet", &sts.metadata),
        pvcs,
        revs: &revs,
        start,
        now,
    };
    // Every ordinal in range, with its pod if it exists; the rest condemned
    // (highest ordinal first, the order they go in).
    let replicas: Vec<(i32, Option<&Pod>)> = (start..end)
        .map(|ordinal| {
            (
                ordinal,
                members.iter().find(|(o, _)| *o == ordinal).map(|(_, p)| *p),
            )
        })
        .collect();
    let condemned: Vec<&Pod> = members
        .iter()
        .rev()
        .filter(|(o, _)| *o < start || *o >= end)
        .map(|(_, p)| *p)
        .collect();
    let mut status = ctx.count(
        replicas
            .iter()
            .filter_map(|(_, p)| *p)
            .chain(condemned.iter().copied()),
    );

    if !deleting {
        ctx.update(&replicas, &condemned, &mut status, &mut plan);
    }

    // A rolling update is complete once every pod runs the update revision
    // and is ready: the update revision becomes the current one.
    let rolling = update_strategy(spec) == "RollingUpdate";
    if rolling
        && status.updated_replicas.unwrap_or(0) == status.replicas
        && status.ready_replicas.unwrap_or(0) == status.replicas
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
    let mut new_status = sts.status.clone().unwrap_or_default();
    new_status.observed_generation = sts.metadata.generation;
    new_status.replicas = status.replicas;
    // As Kubernetes writes them: these three are omitted when zero.
    let nonzero = |n: Option<i32>| n.filter(|n| *n != 0);
    new_status.ready_replicas = nonzero(status.ready_replicas);
    new_status.available_replicas = status.available_replicas;
    new_status.current_replicas = nonzero(status.current_replicas);
    new_status.updated_replicas = nonzero(status.updated_replicas);
    new_status.current_revision = status.current_revision;
    new_status.update_revision = status.update_revision;
    new_status.collision_count = status.collision_count;
    if Some(&new_status) != sts.status.as_ref() {
        let mut updated = sts.clone();
        updated.status = Some(new_status);
        plan.push(Action::UpdateStatus {
            resource: Resource::StatefulSets,
            namespace: sts.metadata.namespace.clone(),
            name: set_name.clone(),
            object: pods::to_value(&updated),
        });
    }

    if !deleting {
        // Keep revisionHistoryLimit revisions besides those in use.
        let live: BTreeSet<String> = [revs.current_name.clone(), revs.update_name.clone()]
            .into_iter()
            .chain(
                members
                    .iter()
                    .filter_map(|(_, p)| pod_revision(p).map(str::to_string)),
            )
            .collect();
        let limit = spec
            .revision_history_limit
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
            .max(0) as usize;
        for old in history::excess_not_live(&revs.controlled, limit, |r| {
            r.metadata.name.as_deref().is_some_and(|n| live.contains(n))
        }) {
            plan.push(history::delete(old));
        }
    }

    // Wake up when a ready pod has been ready for minReadySeconds.
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let next_available = members
        .iter()
        .filter(|(_, p)| is_running_and_ready(p) && !pods::is_pod_available(p, min_ready, now))
        .filter_map(|(_, p)| pods::available_at(p, min_ready))
        .min();
    if let Some(at) = next_available {
        plan.requeue(Duration::from_nanos(
            (at.as_nanosecond() - now.as_nanosecond()).max(0) as u64,
        ));
    }
    plan
}

/// The set's current and update revisions (kube's getStatefulSetRevisions).
struct Revisions<'a> {
    current_name: String,
    current_template: PodTemplateSpec,
    update_name: String,
    collision_count: i32,
    /// Its revisions, oldest first, as they were before this sync.
    controlled: Vec<&'a ControllerRevision>,
    /// Creating or renumbering the update revision.
    actions: Vec<Action>,
}

fn resolve_revisions<'a>(sts: &StatefulSet, revisions: &[&'a ControllerRevision]) -> Revisions<'a> {
    let spec = sts.spec.as_ref().expect("checked");
    let uid = sts.metadata.uid.as_deref().unwrap_or_default();
    let set_name = sts.metadata.name.clone().unwrap_or_default();
    let controlled = history::controlled_sorted(revisions, uid);
    let mut collision_count = sts
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let data = history::template_patch(&spec.template);
    let next = history::max_revision(&controlled) + 1;
    let equal: Vec<&ControllerRevision> = controlled
        .iter()
        .copied()
        .filter(|r| history::has_data(r, &data))
        .collect();
    let mut actions = Vec::new();
    let update_name = match (equal.last(), controlled.last()) {
        // The newest revision is the current template: nothing changed.
        (Some(e), Some(last)) if e.metadata.name == last.metadata.name => {
            e.metadata.name.clone().unwrap_or_default()
        }
        // An older revision has this template: a rollback renumbers it.
        (Some(e), _) => {
            actions.push(history::renumber(e, next));
            e.metadata.name.clone().unwrap_or_default()
        }
        (None, _) => {
            let (name, hash, bumped) = history::free_name(
                &set_name,
                uid,
                revisions,
                &data,
                Some(collision_count),
                |c| pods::template_hash(&data, c),
            );
            collision_count = bumped.unwrap_or(collision_count);
            let mut labels = spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(CONTROLLER_HASH_LABEL.into(), hash);
            let revision = history::new_revision(
                "apps/v1",
                "StatefulSet",
                &sts.metadata,
                &name,
                labels,
                data,
                next,
            );
            actions.push(history::create(&revision));
            name
        }
    };
    let status_current = sts
        .status
        .as_ref()
        .and_then(|s| s.current_revision.as_deref());
    let current = controlled.iter().find(|r| {
        r.metadata
            .name
            .as_deref()
            .is_some_and(|n| Some(n) == status_current)
    });
    let (current_name, current_template) = match current {
        Some(r) => (
            r.metadata.name.clone().unwrap_or_default(),
            history::template_of(r).unwrap_or_else(|| spec.template.clone()),
        ),
        // No recorded current revision yet: the history starts here.
        None => (update_name.clone(), spec.template.clone()),
    };
    Revisions {
        current_name,
        current_template,
        update_name,
        collision_count,
        controlled,
        actions,
    }
}

struct Context<'a> {
    sts: &'a StatefulSet,
    spec: &'a StatefulSetSpec,
    set_name: &'a str,
    involved: serde_json::Value,
    pvcs: &'a [&'a PersistentVolumeClaim],
    revs: &'a Revisions<'a>,
    start: i32,
    now: Timestamp,
}

impl Context<'_> {
    fn monotonic(&self) -> bool {
        self.spec.pod_management_policy.as_deref() != Some("Parallel")
    }

    fn partition(&self) -> i32 {
        self.spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.min_ready_seconds.unwrap_or(0)
    }

    fn healthy(&self, pod: &Pod) -> bool {
        is_running_and_ready(pod) && !pods::is_terminating(&pod.metadata)
    }

    fn available(&self, pod: &Pod) -> bool {
        is_running_and_ready(pod) && pods::is_pod_available(pod, self.min_ready_seconds(), self.now)
    }

    /// Ordinals below the partition are (re)created at the current
    /// revision; the rest at the update revision.
    fn revision_for(&self, ordinal: i32) -> (&str, &PodTemplateSpec) {
        if update_strategy(self.spec) == "RollingUpdate" && ordinal < self.start + self.partition()
        {
            (&self.revs.current_name, &self.revs.current_template)
        } else {
            (&self.revs.update_name, &self.spec.template)
        }
    }

    /// The replica counts of the status, from the pods as they are.
    fn count<'p>(&self, pods: impl Iterator<Item = &'p Pod>) -> StatefulSetStatus {
        let mut status = StatefulSetStatus {
            current_revision: Some(self.revs.current_name.clone()),
            update_revision: Some(self.revs.update_name.clone()),
            collision_count: Some(self.revs.collision_count),
            ..Default::default()
        };
        let (mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0);
        for pod in pods {
            status.replicas += 1;
            if is_running_and_ready(pod) {
                ready += 1;
                if self.available(pod) {
                    available += 1;
                }
            }
            if !pods::is_terminating(&pod.metadata) {
                let revision = pod_revision(pod);
                if revision == Some(self.revs.current_name.as_str()) {
                    current += 1;
                }
                if revision == Some(self.revs.update_name.as_str()) {
                    updated += 1;
                }
            }
        }
        status.ready_replicas = Some(ready);
        status.available_replicas = Some(available);
        status.current_replicas = Some(current);
        status.updated_replicas = Some(updated);
        status
    }

    /// The pods and claims to create, update and delete (kube's
    /// updateStatefulSet): first each ordinal in range, in order; then the
    /// condemned, highest ordinal first; then the rolling update. In
    /// OrderedReady mode each step waits for everything before it to be
    /// Running, Ready and available.
    fn update(
        &self,
        replicas: &[(i32, Option<&Pod>)],
        condemned: &[&Pod],
        status: &mut StatefulSetStatus,
        plan: &mut Plan,
    ) {
        let monotonic = self.monotonic();
        for (ordinal, pod) in replicas {
            if self.process_replica(*ordinal, *pod, plan) && monotonic {
                return;
            }
        }

        // Claims of pods about to go get their owners first, so a
        // whenScaled=Delete claim goes with its pod.
        let mut claim_fixes = false;
        for pod in condemned {
            claim_fixes |= self.fix_claim_owners(pod, false, plan);
        }
        if claim_fixes {
            return;
        }

        let first_unhealthy = replicas
            .iter()
            .find(|(_, p)| p.is_none_or(|p| !self.healthy(p)))
            .map(|(o, _)| *o)
            .or_else(|| {
                condemned
                    .iter()
                    .rev()
                    .find(|p| !self.healthy(p))
                    .and_then(|p| ordinal_of(p, self.set_name))
            });
        for pod in condemned {
            if pods::is_terminating(&pod.metadata) {
                if monotonic {
                    return;
                }
                continue;
            }
            let is_first_unhealthy = ordinal_of(pod, self.set_name) == first_unhealthy;
            if monotonic && !self.available(pod) && !is_first_unhealthy {
                return;
            }
            self.delete_pod(pod, plan);
            if monotonic {
                return;
            }
        }

        if update_strategy(self.spec) != "RollingUpdate" {
            return;
        }
        let update_min = self.partition().max(0) as usize;
        let revision_of = |(ordinal, pod): &(i32, Option<&Pod>)| match pod {
            Some(p) => pod_revision(p).map(str::to_string),
            None => Some(self.revision_for(*ordinal).0.to_string()),
        };
        let max_unavailable = self
            .spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.as_ref());
        if let Some(max_unavailable) = max_unavailable {
            // Up to maxUnavailable pods are replaced at once, highest
            // ordinal first; unhealthy pods already count against it.
            let limit = max_unavailable_count(max_unavailable, replicas.len() as i32);
            let unavailable = replicas
                .iter()
                .filter(|(_, p)| p.is_none_or(|p| !self.healthy(p)))
                .count() as i32;
            let mut budget = limit - unavailable;
            for target in replicas.iter().skip(update_min).rev() {
                if budget <= 0 {
                    break;
                }
                if let (Some(pod), Some(revision)) = (target.1, revision_of(target)) {
                    if revision != self.revs.update_name && !pods::is_terminating(&pod.metadata) {
                        self.delete_pod(pod, plan);
                        self.count_out_of_current(pod, status);
                        budget -= 1;
                    }
                }
            }
            return;
        }
        // One pod at a time, highest ordinal first, each waiting for the
        // one before to be healthy again.
        for target in replicas.iter().skip(update_min).rev() {
            if let Some(pod) = target.1 {
                if revision_of(target).as_deref() != Some(self.revs.update_name.as_str())
                    && !pods::is_terminating(&pod.metadata)
                {
                    self.delete_pod(pod, plan);
                    self.count_out_of_current(pod, status);
                    return;
                }
            }
            if target.1.is_none_or(|p| !self.healthy(p)) {
                return;
            }
        }
    }

    /// A pod deleted for the update no longer counts as current (it will be
    /// terminating once the plan is applied).
    fn count_out_of_current(&self, pod: &Pod, status: &mut StatefulSetStatus) {
        if pod_revision(pod) == Some(self.revs.current_name.as_str()) {
            status.current_replicas = status.current_replicas.map(|c| c - 1);
        }
    }

    /// One ordinal in range (kube's processReplica); true when OrderedReady
    /// must stop here.
    fn process_replica(&self, ordinal: i32, pod: Option<&Pod>, plan: &mut Plan) -> bool {
        let Some(pod) = pod else {
            let pod_name = format!("{}-{ordinal}", self.set_name);
            let claims = self.claims_for(ordinal);
            let existing: Vec<Option<&PersistentVolumeClaim>> =
                claims.iter().map(|c| self.find_claim(c)).collect();
            // A claim still owned by an earlier incarnation of this pod
            // (whenScaled=Delete) is about to be garbage collected; a claim
            // being deleted cannot be used. Either way wait.
            let stale = existing.iter().flatten().any(|c| {
                c.metadata.deletion_timestamp.is_some()
                    || (retention(self.spec).1 != "Retain"
                        && owner_refs(c)
                            .iter()
                            .any(|r| r.kind == "Pod" && r.name == pod_name))
            });
            if stale {
                return true;
            }
            for (claim, existing) in claims.iter().zip(&existing) {
                if existing.is_none() {
                    self.create_claim(claim, &pod_name, plan);
                }
            }
            let new_pod = self.new_pod(ordinal);
            plan.push(Action::Create {
                resource: Resource::Pods,
                namespace: self.sts.metadata.namespace.clone(),
                object: pods::to_value(&new_pod),
            });
            self.event(
                plan,
                "SuccessfulCreate",
                format!(
                    "create Pod {pod_name} in StatefulSet {} successful",
                    self.set_name
                ),
            );
            return true;
        };
        // Failed (or evicted and Succeeded) members are recreated: delete
        // now, create once it is gone.
        if matches!(pods::pod_phase(pod), "Failed" | "Succeeded") {
            if !pods::is_terminating(&pod.metadata) {
                self.delete_pod(pod, plan);
            }
            return true;
        }
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        if pods::pod_phase(pod) == "Pending" {
            // Claims deleted under a pod that has not started are recreated.
            for claim in self.claims_for(ordinal) {
                if self.find_claim(&claim).is_none() {
                    self.create_claim(&claim, &pod_name, plan);
                }
            }
        }
        if self.monotonic() && (pods::is_terminating(&pod.metadata) || !self.available(pod)) {
            return true;
        }
        if !identity_matches(pod, self.set_name, ordinal) {
            let mut fixed = pod.clone();
            let labels = fixed.metadata.labels.get_or_insert_with(Default::default);
            labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
            labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
            plan.push(Action::Update {
                resource: Resource::Pods,
                namespace: pod.metadata.namespace.clone(),
                name: pod_name.clone(),
                object: pods::to_value(&fixed),
            });
            self.event(
                plan,
                "SuccessfulUpdate",
                format!(
                    "update Pod {pod_name} in StatefulSet {} successful",
                    self.set_name
                ),
            );
        }
        self.fix_claim_owners(pod, true, plan);
        false
    }

    /// The member pod for `ordinal`: the template of its revision, its
    /// identity (name, hostname, subdomain, labels) and its claims.
    fn new_pod(&self, ordinal: i32) -> Pod {
        let (revision, template) = self.revision_for(ordinal);
        let owner = pods::controller_reference("apps/v1", "StatefulSet", &self.sts.metadata);
        let mut pod = pods::pod_from_template(
            template,
            self.sts.metadata.namespace.as_deref().unwrap_or_default(),
            owner,
        );
        let name = format!("{}-{ordinal}", self.set_name);
        pod.metadata.name = Some(name.clone());
        let labels = pod.metadata.labels.get_or_insert_with(Default::default);
        labels.insert(POD_NAME_LABEL.into(), name.clone());
        labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
        labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), revision.to_string());
        let spec = pod.spec.get_or_insert_with(Default::default);
        spec.hostname = Some(name);
        spec.subdomain = self.spec.service_name.clone().filter(|s| !s.is_empty());
        // The claims replace any template volume of the same name.
        let claim_volumes: Vec<Volume> = self
            .spec
            .volume_claim_templates
            .iter()
            .flatten()
            .map(|t| {
                let template_name = t.metadata.name.clone().unwrap_or_default();
                Volume {
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim_name(&template_name, self.set_name, ordinal),
                        read_only: Some(false),
                    }),
                    name: template_name,
                    ..Default::default()
                }
            })
            .collect();
        if !claim_volumes.is_empty() {
            let others: Vec<Volume> = spec
                .volumes
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter(|v| !claim_volumes.iter().any(|c| c.name == v.name))
                .collect();
            spec.volumes = Some(claim_volumes.into_iter().chain(others).collect());
        }
        pod
    }

    /// The claims of `ordinal`'s pod, as they would be created.
    fn claims_for(&self, ordinal: i32) -> Vec<PersistentVolumeClaim> {
        let selector_labels = self.spec.selector.match_labels.clone().unwrap_or_default();
        let in_range =
            ordinal >= self.start && ordinal < self.start + self.spec.replicas.unwrap_or(1);
        self.spec
            .volume_claim_templates
            .iter()
            .flatten()
            .map(|t| {
                let mut claim = t.clone();
                let template_name = t.metadata.name.clone().unwrap_or_default();
                claim.metadata = ObjectMeta {
                    name: Some(claim_name(&template_name, self.set_name, ordinal)),
                    namespace: self.sts.metadata.namespace.clone(),
                    labels: Some(
                        t.metadata
                            .labels
                            .clone()
                            .unwrap_or_default()
                            .into_iter()
                            .chain(selector_labels.clone())
                            .collect(),
                    ),
                    annotations: t.metadata.annotations.clone(),
                    ..Default::default()
                };
                claim.status = None;
                // whenDeleted=Delete: the set owns claims of pods in range.
                let (when_deleted, _) = retention(self.spec);
                if when_deleted == "Delete" && in_range {
                    claim.metadata.owner_references = Some(vec![pods::controller_reference(
                        "apps/v1",
                        "StatefulSet",
                        &self.sts.metadata,
                    )]);
                }
                claim
            })
            .collect()
    }

    fn find_claim(&self, claim: &PersistentVolumeClaim) -> Option<&PersistentVolumeClaim> {
        self.pvcs.iter().copied().find(|c| {
            c.metadata.name == claim.metadata.name
                && c.metadata.namespace == claim.metadata.namespace
        })
    }

    fn create_claim(&self, claim: &PersistentVolumeClaim, pod_name: &str, plan: &mut Plan) {
        plan.push(Action::Create {
            resource: Resource::PersistentVolumeClaims,
            namespace: claim.metadata.namespace.clone(),
            object: pods::to_value(claim),
        });
        let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
        self.event(
            plan,
            "SuccessfulCreate",
            format!(
                "create Claim {claim_name} Pod {pod_name} in StatefulSet {} success",
                self.set_name
            ),
        );
    }

    /// Sets the owner references of a pod's existing claims to what
    /// persistentVolumeClaimRetentionPolicy asks for; true if any changed.
    fn fix_claim_owners(&self, pod: &Pod, in_range: bool, plan: &mut Plan) -> bool {
        let Some(ordinal) = ordinal_of(pod, self.set_name) else {
            return false;
        };
        let mut changed = false;
        for claim in self.claims_for(ordinal) {
            let Some(existing) = self.find_claim(&claim) else {
                continue;
            };
            if let Some(refs) = wanted_claim_owners(existing, self.sts, pod, self.spec, in_range) {
                if refs != owner_refs(existing) {
                    let mut updated = existing.clone();
                    updated.metadata.owner_references = (!refs.is_empty()).then_some(refs);
                    plan.push(Action::Update {
                        resource: Resource::PersistentVolumeClaims,
                        namespace: existing.metadata.namespace.clone(),
                        name: existing.metadata.name.clone().unwrap_or_default(),
                        object: pods::to_value(&updated),
                    });
                    changed = true;
                }
            }
        }
        changed
    }

    fn delete_pod(&self, pod: &Pod, plan: &mut Plan) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        plan.push(Action::Delete {
            resource: Resource::Pods,
            namespace: pod.metadata.namespace.clone(),
            name: name.clone(),
            uid: pod.metadata.uid.clone(),
            propagation: None,
        });
        self.event(
            plan,
            "SuccessfulDelete",
            format!(
                "delete Pod {name} in StatefulSet {} successful",
                self.set_name
            ),
        );
    }

    fn event(&self, plan: &mut Plan, reason: &str, message: String) {
        plan.push(Action::Event {
            involved: self.involved.clone(),
            event_type: EventType::Normal,
            reason: reason.into(),
            message,
        });
    }
}

/// The owner references a claim should have under the retention policy
/// (kube's updateClaimOwnerRefForSetAndPod): the set for whenDeleted=Delete
/// while the pod is in range, the pod for whenScaled=Delete once it is
/// scaled away. None leaves the claim alone: it refers to an earlier set or
/// pod of the same name, which the garbage collector is dealing with.
fn wanted_claim_owners(
    claim: &PersistentVolumeClaim,
    sts: &StatefulSet,
    pod: &Pod,
    spec: &StatefulSetSpec,
    in_range: bool,
) -> Option<Vec<OwnerReference>> {
    let refs = owner_refs(claim);
    let is_set = |r: &OwnerReference| {
        r.kind == "StatefulSet"
            && r.api_version == "apps/v1"
            && Some(&r.name) == sts.metadata.name.as_ref()
    };
    let is_pod = |r: &OwnerReference| {
        r.kind == "Pod" && r.api_version == "v1" && Some(&r.name) == pod.metadata.name.as_ref()
    };
    let stale = refs.iter().any(|r| {
        (is_set(r) && Some(&r.uid) != sts.metadata.uid.as_ref())
            || (is_pod(r) && Some(&r.uid) != pod.metadata.uid.as_ref())
    });
    if stale {
        return None;
    }
    let (when_deleted, when_scaled) = retention(spec);
    let mut wanted: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| !is_set(r) && !is_pod(r))
        .cloned()
        .collect();
    let retain_all = when_deleted == "Retain" && when_scaled == "Retain";
    // Another controller owns the claim: only take ours off.
    if !retain_all && wanted.iter().any(|r| r.controller == Some(true)) {
        return Some(wanted);
    }
    if when_deleted == "Delete" && in_range {
        wanted.push(pods::controller_reference(
            "apps/v1",
            "StatefulSet",
            &sts.metadata,
        ));
    }
    if when_scaled == "Delete" && !in_range {
        wanted.push(pods::controller_reference("v1", "Pod", &pod.metadata));
    }
    Some(wanted)
}

fn owner_refs(claim: &PersistentVolumeClaim) -> Vec<OwnerReference> {
    claim.metadata.owner_references.clone().unwrap_or_default()
}

/// (whenDeleted, whenScaled), Retain unless set.
fn retention(spec: &StatefulSetSpec) -> (&str, &str) {
    let policy = spec.persistent_volume_claim_retention_policy.as_ref();
    (
        policy
            .and_then(|p| p.when_deleted.as_deref())
            .unwrap_or("Retain"),
        policy
            .and_then(|p| p.when_scaled.as_deref())
            .unwrap_or("Retain"),
    )
}

fn update_strategy(spec: &StatefulSetSpec) -> &str {
    spec.update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// maxUnavailable as a count of replicas, rounded down but at least one.
fn max_unavailable_count(value: &IntOrString, replicas: i32) -> i32 {
    pods::scaled_int_or_percent(value, replicas, false)
        .unwrap_or(1)
        .max(1)
}

fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The ordinal of a member pod `<set>-<ordinal>`; None for other pods.
fn ordinal_of(pod: &Pod, set_name: &str) -> Option<i32> {
    let name = pod.metadata.name.as_deref()?;
    let (parent, ordinal) = name.rsplit_once('-')?;
    if parent != set_name || ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ordinal.parse().ok()
}

fn identity_matches(pod: &Pod, set_name: &str, ordinal: i32) -> bool {
    let labels = pod.metadata.labels.as_ref();
    pod.metadata.name.as_deref() == Some(format!("{set_name}-{ordinal}").as_str())
        && labels.and_then(|l| l.get(POD_NAME_LABEL)) == pod.metadata.name.as_ref()
}

fn pod_revision(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH_LABEL)
        .map(String::as_str)
}

fn is_running_and_ready(pod: &Pod) -> bool {
    pods::pod_phase(pod) == "Running" && pods::is_pod_ready(pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::{json, Value};

    const NOW: &str = "2026-03-01T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    /// StatefulSet `web` (serviceName `nginx`, a `www` claim template) with
    /// `spec` merged over the base.
    fn sts(spec: Value) -> StatefulSet {
        let mut base = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "ns", "uid": "sts-uid", "generation": 4, "resourceVersion": "11"},
            "spec": {
                "replicas": 3,
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "containers": [{"name": "c", "image": "nginx:1", "volumeMounts": [{"name": "www", "mountPath": "/data"}]}],
                    "volumes": [{"name": "www", "emptyDir": {}}, {"name": "config", "emptyDir": {}}]
                }},
                "volumeClaimTemplates": [{"metadata": {"name": "www", "labels": {"tier": "data"}},
                                          "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        });
        if let (Some(b), Value::Object(p)) = (base["spec"].as_object_mut(), spec) {
            b.extend(p);
        }
        serde_json::from_value(base).unwrap()
    }

    fn with_image(mut s: StatefulSet, image: &str) -> StatefulSet {
        s.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some(image.into());
        s
    }

    /// `s`'s update revision as it would have been created, numbered.
    fn revision_of(s: &StatefulSet, number: i64) -> ControllerRevision {
        let revs = resolve_revisions(s, &[]);
        let Action::Create { object, .. } = &revs.actions[0] else {
            panic!()
        };
        let mut r: ControllerRevision = serde_json::from_value(object.clone()).unwrap();
        r.revision = number;
        r.metadata.uid = Some(format!("uid-{}", r.metadata.name.clone().unwrap()));
        r
    }

    fn rev_name(s: &StatefulSet) -> String {
        resolve_revisions(s, &[]).update_name
    }

    /// Member pod `web-<ordinal>` at `revision`, Running and Ready.
    fn member(ordinal: i32, revision: &str) -> Pod {
        let name = format!("web-{ordinal}");
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "resourceVersion": "1",
                         "labels": {"app": "web", POD_NAME_LABEL: name, CONTROLLER_REVISION_HASH_LABEL: revision},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "sts-uid", "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-03-01T11:00:00Z"}]}
        }))
        .unwrap()
    }

    fn not_ready(mut p: Pod) -> Pod {
        p.status.as_mut().unwrap().conditions = None;
        p
    }

    fn phase(mut p: Pod, phase: &str) -> Pod {
        p.status.as_mut().unwrap().phase = Some(phase.into());
        p
    }

    fn terminating(mut p: Pod) -> Pod {
        p.metadata.deletion_timestamp = Some(Time(now()));
        p
    }

    fn claim(name: &str, owners: Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "ownerReferences": owners}}))
            .unwrap()
    }

    fn claims(ordinals: std::ops::Range<i32>) -> Vec<PersistentVolumeClaim> {
        ordinals
            .map(|o| claim(&format!("www-web-{o}"), json!([])))
            .collect()
    }

    fn run(
        s: &StatefulSet,
        pods: &[Pod],
        pvcs: &[PersistentVolumeClaim],
        revisions: &[ControllerRevision],
    ) -> Plan {
        let pods: Vec<&Pod> = pods.iter().collect();
        let pvcs: Vec<&PersistentVolumeClaim> = pvcs.iter().collect();
        let revisions: Vec<&ControllerRevision> = revisions.iter().collect();
        reconcile_statefulset(s, &pods, &pvcs, &revisions, now())
    }

    fn summary(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .filter(|a| !matches!(a, Action::Event { .. }))
            .map(|a| match a {
                Action::Create {
                    resource, object, ..
                } => {
                    format!(
                        "create {resource:?} {}",
                        object["metadata"]["name"].as_str().unwrap()
                    )
                }
                Action::Update { resource, name, .. } => format!("update {resource:?} {name}"),
                Action::Delete { resource, name, .. } => format!("delete {resource:?} {name}"),
                Action::UpdateStatus { .. } => "status".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn events(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Event {
                    reason, message, ..
                } => Some(format!("{reason}: {message}")),
                _ => None,
            })
            .collect()
    }

    fn check(plan: &Plan, want: &[&str]) {
        assert_eq!(summary(plan), want, "plan: {plan:#?}");
    }

    fn status_of(plan: &Plan) -> StatefulSetStatus {
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

    fn object<'a>(plan: &'a Plan, name: &str) -> &'a Value {
        plan.actions
            .iter()
            .find_map(|a| match a {
                Action::Create { object, .. } | Action::Update { object, .. }
                    if object["metadata"]["name"] == name =>
                {
                    Some(object)
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no write of {name}"))
    }

    struct World {
        sts: StatefulSet,
        pods: Vec<Pod>,
        pvcs: Vec<PersistentVolumeClaim>,
        revisions: Vec<ControllerRevision>,
    }

    impl World {
        fn new(sts: StatefulSet) -> World {
            World {
                sts,
                pods: vec![],
                pvcs: vec![],
                revisions: vec![],
            }
        }

        fn run(&self) -> Plan {
            run(&self.sts, &self.pods, &self.pvcs, &self.revisions)
        }

        /// Applies a plan: created pods start Pending, deleted pods start
        /// terminating, claims and revisions are stored, status written.
        fn apply(&mut self, plan: &Plan) {
            for action in &plan.actions {
                match action {
                    Action::Create {
                        resource, object, ..
                    } => match resource {
                        Resource::Pods => {
                            let mut p: Pod = serde_json::from_value(object.clone()).unwrap();
                            p.metadata.uid =
                                Some(format!("uid-{}", p.metadata.name.clone().unwrap()));
                            p.status =
                                Some(serde_json::from_value(json!({"phase": "Pending"})).unwrap());
                            self.pods.push(p);
                        }
                        Resource::PersistentVolumeClaims => self
                            .pvcs
                            .push(serde_json::from_value(object.clone()).unwrap()),
                        _ => {
                            let mut r: ControllerRevision =
                                serde_json::from_value(object.clone()).unwrap();
                            r.metadata.uid =
                                Some(format!("uid-{}", r.metadata.name.clone().unwrap()));
                            self.revisions.push(r);
                        }
                    },
                    Action::Update {
                        resource,
                        name,
                        object,
                        ..
                    } => match resource {
                        Resource::Pods => {
                            *self
                                .pods
                                .iter_mut()
                                .find(|p| p.metadata.name.as_deref() == Some(name))
                                .unwrap() = serde_json::from_value(object.clone()).unwrap()
                        }
                        Resource::PersistentVolumeClaims => {
                            *self
                                .pvcs
                                .iter_mut()
                                .find(|p| p.metadata.name.as_deref() == Some(name))
                                .unwrap() = serde_json::from_value(object.clone()).unwrap()
                        }
                        _ => {
                            *self
                                .revisions
                                .iter_mut()
                                .find(|p| p.metadata.name.as_deref() == Some(name))
                                .unwrap() = serde_json::from_value(object.clone()).unwrap()
                        }
                    },
                    Action::Delete {
                        resource: Resource::Pods,
                        name,
                        ..
                    } => {
                        let p = self
                            .pods
                            .iter_mut()
                            .find(|p| p.metadata.name.as_deref() == Some(name))
                            .unwrap();
                        p.metadata.deletion_timestamp = Some(Time(now()));
                    }
                    Action::Delete { name, .. } => self
                        .revisions
                        .retain(|r| r.metadata.name.as_deref() != Some(name)),
                    Action::UpdateStatus { object, .. } => {
                        self.sts = serde_json::from_value(object.clone()).unwrap()
                    }
                    _ => {}
                }
            }
        }

        /// The kubelet's part: pods start and become ready, terminating
        /// pods go away.
        fn kubelet(&mut self) {
            self.pods
                .retain(|p| p.metadata.deletion_timestamp.is_none());
            for p in &mut self.pods {
                if pods::pod_phase(p) == "Pending" {
                    let name = p.metadata.name.clone().unwrap();
                    let revision = pod_revision(p).unwrap().to_string();
                    let mut ready = member(0, &revision);
                    ready.metadata = p.metadata.clone();
                    ready.metadata.name = Some(name);
                    ready.spec = p.spec.clone();
                    *p = ready;
                }
            }
        }

        fn pod_names(&self) -> Vec<String> {
            let mut names: Vec<String> = self
                .pods
                .iter()
                .map(|p| p.metadata.name.clone().unwrap())
                .collect();
            names.sort();
            names
        }
    }

    #[test]
    fn ordered_ready_creates_claims_then_pods_one_at_a_time() {
        let mut w = World::new(sts(json!({})));
        let revision = rev_name(&w.sts);
        let plan = w.run();
        check(
            &plan,
            &[
                &format!("create ControllerRevisions {revision}"),
                "create PersistentVolumeClaims www-web-0",
                "create Pods web-0",
                "status",
            ],
        );
        assert_eq!(
            events(&plan),
            [
                "SuccessfulCreate: create Claim www-web-0 Pod web-0 in StatefulSet web success",
                "SuccessfulCreate: create Pod web-0 in StatefulSet web successful",
            ]
        );
        let pod = object(&plan, "web-0");
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app": "web", POD_NAME_LABEL: "web-0", POD_INDEX_LABEL: "0", CONTROLLER_REVISION_HASH_LABEL: revision})
        );
        assert_eq!(
            (
                pod["spec"]["hostname"].as_str(),
                pod["spec"]["subdomain"].as_str()
            ),
            (Some("web-0"), Some("nginx"))
        );
        assert_eq!(
            pod["spec"]["volumes"],
            json!([{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0", "readOnly": false}}, {"name": "config", "emptyDir": {}}])
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        let claim = object(&plan, "www-web-0");
        assert_eq!(
            claim["metadata"]["labels"],
            json!({"tier": "data", "app": "web"})
        );
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert_eq!(claim["metadata"].get("ownerReferences"), None);
        let revision_object = object(&plan, &revision);
        assert_eq!(revision_object["revision"], 1);
        assert!(revision_object["metadata"]["labels"][CONTROLLER_HASH_LABEL].is_string());
        let status = status_of(&plan);
        assert_eq!(status.current_revision.as_deref(), Some(revision.as_str()));
        assert_eq!(
            (
                status.replicas,
                status.collision_count,
                status.observed_generation
            ),
            (0, Some(0), Some(4))
        );

        // web-0 is Pending: nothing more, and nothing new to write.
        w.apply(&plan);
        let plan = w.run();
        check(&plan, &["status"]);
        w.apply(&plan);
        check(&w.run(), &[]);
        // Running and Ready: web-1 next, and so on.
        w.kubelet();
        check(
            &w.run(),
            &[
                "create PersistentVolumeClaims www-web-1",
                "create Pods web-1",
                "status",
            ],
        );
        for _ in 0..4 {
            let plan = w.run();
            w.apply(&plan);
            w.kubelet();
        }
        assert_eq!(w.pod_names(), ["web-0", "web-1", "web-2"]);
        let status = w.sts.status.clone().unwrap();
        assert_eq!(
            (
                status.replicas,
                status.ready_replicas,
                status.available_replicas,
                status.current_replicas,
                status.updated_replicas
            ),
            (3, Some(3), Some(3), Some(3), Some(3))
        );
        assert!(w.run().is_empty());
    }

    #[test]
    fn ordered_ready_waits_for_an_unready_predecessor() {
        let s = sts(json!({}));
        let r = rev_name(&s);
        let pods = [member(0, &r), not_ready(member(1, &r))];
        let plan = run(&s, &pods, &claims(0..2), &[revision_of(&s, 1)]);
        check(&plan, &["status"]);
        // Parallel does not wait.
        let p = sts(json!({"podManagementPolicy": "Parallel"}));
        let plan = run(&p, &pods, &claims(0..2), &[revision_of(&p, 1)]);
        check(
            &plan,
            &[
                "create PersistentVolumeClaims www-web-2",
                "create Pods web-2",
                "status",
            ],
        );
    }

    #[test]
    fn parallel_creates_all_at_once() {
        let mut w = World::new(sts(json!({"podManagementPolicy": "Parallel"})));
        let plan = w.run();
        let creates: Vec<_> = summary(&plan)
            .into_iter()
            .filter(|s| s.contains("Pods"))
            .collect();
        assert_eq!(
            creates,
            [
                "create Pods web-0",
                "create Pods web-1",
                "create Pods web-2"
            ]
        );
        w.apply(&plan);
        let plan = w.run();
        check(&plan, &["status"]);
    }

    #[test]
    fn scale_down_goes_highest_ordinal_first_and_keeps_claims() {
        let mut w = World::new(sts(json!({"replicas": 1})));
        let r = rev_name(&w.sts);
        w.revisions = vec![revision_of(&w.sts, 1)];
        w.pods = vec![member(0, &r), member(1, &r), member(2, &r)];
        w.pvcs = claims(0..3);
        let plan = w.run();
        check(&plan, &["delete Pods web-2", "status"]);
        assert_eq!(
            events(&plan),
            ["SuccessfulDelete: delete Pod web-2 in StatefulSet web successful"]
        );
        // Waits while web-2 terminates (only its status counts change).
        w.apply(&plan);
        let plan = w.run();
        check(&plan, &["status"]);
        w.apply(&plan);
        check(&w.run(), &[]);
        w.kubelet();
        check(&w.run(), &["delete Pods web-1", "status"]);
        assert_eq!(w.pvcs.len(), 3);
    }

    #[test]
    fn scale_down_waits_for_unhealthy_pods_unless_it_is_the_first() {
        let s = sts(json!({"replicas": 1}));
        let r = rev_name(&s);
        // web-2 goes first, but it is unhealthy and web-1 is the first
        // unhealthy pod: blocked until web-2 recovers.
        let pods = [
            member(0, &r),
            not_ready(member(1, &r)),
            not_ready(member(2, &r)),
        ];
        check(
            &run(&s, &pods, &claims(0..3), &[revision_of(&s, 1)]),
            &["status"],
        );
        // A healthy web-2 goes regardless of web-1.
        let pods = [member(0, &r), not_ready(member(1, &r)), member(2, &r)];
        check(
            &run(&s, &pods, &claims(0..3), &[revision_of(&s, 1)]),
            &["delete Pods web-2", "status"],
        );
        // The unhealthy pod is the first unhealthy one and next in line.
        let pods = [member(0, &r), not_ready(member(1, &r))];
        check(
            &run(&s, &pods, &claims(0..2), &[revision_of(&s, 1)]),
            &["delete Pods web-1", "status"],
        );
    }

    #[test]
    fn failed_pods_are_deleted_and_recreated() {
        let mut w = World::new(sts(json!({})));
        let r = rev_name(&w.sts);
        w.revisions = vec![revision_of(&w.sts, 1)];
        w.pods = vec![member(0, &r), phase(member(1, &r), "Failed"), member(2, &r)];
        w.pvcs = claims(0..3);
        let plan = w.run();
        check(&plan, &["delete Pods web-1", "status"]);
        w.apply(&plan);
        w.kubelet();
        // Recreated with the same name and claim.
        check(&w.run(), &["create Pods web-1", "status"]);
    }

    #[test]
    fn ordinals_start_shifts_names_and_condemns_the_rest() {
        let s = sts(
            json!({"replicas": 2, "ordinals": {"start": 5}, "podManagementPolicy": "Parallel"}),
        );
        let r = rev_name(&s);
        let plan = run(&s, &[member(0, &r)], &[], &[revision_of(&s, 1)]);
        check(
            &plan,
            &[
                "create PersistentVolumeClaims www-web-5",
                "create Pods web-5",
                "create PersistentVolumeClaims www-web-6",
                "create Pods web-6",
                "delete Pods web-0",
                "status",
            ],
        );
        assert_eq!(
            object(&plan, "web-6")["metadata"]["labels"][POD_INDEX_LABEL],
            "6"
        );
    }

    #[test]
    fn rolling_update_replaces_from_the_highest_ordinal() {
        let v1 = sts(json!({}));
        let r1 = rev_name(&v1);
        let mut w = World::new(with_image(v1.clone(), "nginx:2"));
        let r2 = rev_name(&w.sts);
        w.sts.status = Some(
            serde_json::from_value(
                json!({"replicas": 3, "currentRevision": r1, "updateRevision": r1}),
            )
            .unwrap(),
        );
        w.revisions = vec![revision_of(&v1, 1)];
        w.pods = vec![member(0, &r1), member(1, &r1), member(2, &r1)];
        w.pvcs = claims(0..3);
        let plan = w.run();
        check(
            &plan,
            &[
                &format!("create ControllerRevisions {r2}"),
                "delete Pods web-2",
                "status",
            ],
        );
        let status = status_of(&plan);
        assert_eq!(
            (
                status.current_revision.as_deref(),
                status.update_revision.as_deref()
            ),
            (Some(r1.as_str()), Some(r2.as_str()))
        );
        assert_eq!(
            (status.current_replicas, status.updated_replicas),
            (Some(2), None)
        );
        // After the write the status already matches.
        w.apply(&plan);
        check(&w.run(), &[]);
        w.kubelet();
        let plan = w.run();
        check(&plan, &["create Pods web-2", "status"]);
        assert_eq!(
            object(&plan, "web-2")["spec"]["containers"][0]["image"],
            "nginx:2"
        );
        // Then web-1, web-0; finally the update revision becomes current.
        for _ in 0..6 {
            let plan = w.run();
            w.apply(&plan);
            w.kubelet();
        }
        let plan = w.run();
        w.apply(&plan);
        let status = w.sts.status.clone().unwrap();
        assert_eq!(status.current_revision.as_deref(), Some(r2.as_str()));
        assert_eq!(
            (status.current_replicas, status.updated_replicas),
            (Some(3), Some(3))
        );
        assert!(w.pods.iter().all(|p| pod_revision(p) == Some(r2.as_str())));
        assert!(w.run().is_empty());
    }

    #[test]
    fn partition_keeps_lower_ordinals_at_the_current_revision() {
        let v1 = sts(json!({}));
        let r1 = rev_name(&v1);
        let v2 = with_image(
            sts(
                json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
            ),
            "nginx:2",
        );
        let r2 = rev_name(&v2);
        let status = json!({"replicas": 3, "currentRevision": r1, "updateRevision": r2});
        let mut v2 = v2;
        v2.status = Some(serde_json::from_value(status).unwrap());
        let revisions = [revision_of(&v1, 1), revision_of(&v2, 2)];
        // Only web-2 is at or above the partition.
        let pods = [member(0, &r1), member(1, &r1), member(2, &r2)];
        check(&run(&v2, &pods, &claims(0..3), &revisions), &["status"]);
        // A deleted web-0 comes back at the current revision's template.
        let plan = run(&v2, &pods[1..], &claims(0..3), &revisions);
        check(&plan, &["create Pods web-0", "status"]);
        let pod = object(&plan, "web-0");
        assert_eq!(
            pod["metadata"]["labels"][CONTROLLER_REVISION_HASH_LABEL],
            r1.as_str()
        );
        assert_eq!(pod["spec"]["containers"][0]["image"], "nginx:1");
    }

    #[test]
    fn max_unavailable_replaces_several_at_once() {
        let v1 = sts(json!({"replicas": 4}));
        let r1 = rev_name(&v1);
        let v2 = with_image(
            sts(
                json!({"replicas": 4, "podManagementPolicy": "Parallel", "updateStrategy": {"rollingUpdate": {"maxUnavailable": "50%"}}}),
            ),
            "nginx:2",
        );
        let revisions = [revision_of(&v1, 1), revision_of(&v2, 2)];
        let pods = [
            member(0, &r1),
            member(1, &r1),
            member(2, &r1),
            member(3, &r1),
        ];
        let plan = run(&v2, &pods, &claims(0..4), &revisions);
        check(&plan, &["delete Pods web-3", "delete Pods web-2", "status"]);
        // An unhealthy pod uses up part of the budget.
        let pods = [
            member(0, &r1),
            not_ready(member(1, &r1)),
            member(2, &r1),
            member(3, &r1),
        ];
        let plan = run(&v2, &pods, &claims(0..4), &revisions);
        check(&plan, &["delete Pods web-3", "status"]);
    }

    #[test]
    fn on_delete_never_deletes_for_an_update() {
        let v1 = sts(json!({}));
        let r1 = rev_name(&v1);
        let v2 = with_image(
            sts(json!({"updateStrategy": {"type": "OnDelete"}})),
            "nginx:2",
        );
        let revisions = [revision_of(&v1, 1), revision_of(&v2, 2)];
        let pods = [member(0, &r1), member(1, &r1), member(2, &r1)];
        let plan = run(&v2, &pods, &claims(0..3), &revisions);
        check(&plan, &["status"]);
        assert_eq!(status_of(&plan).updated_replicas, None);
        // A pod deleted by hand comes back at the update revision.
        let plan = run(&v2, &pods[..2], &claims(0..3), &revisions);
        assert_eq!(
            object(&plan, "web-2")["spec"]["containers"][0]["image"],
            "nginx:2"
        );
    }

    #[test]
    fn retention_policy_sets_claim_owners() {
        // whenDeleted=Delete: the set owns new claims.
        let s = sts(
            json!({"replicas": 1, "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"}}),
        );
        let plan = run(&s, &[], &[], &[]);
        let owners = &object(&plan, "www-web-0")["metadata"]["ownerReferences"];
        assert_eq!(
            (owners[0]["kind"].as_str(), owners[0]["uid"].as_str()),
            (Some("StatefulSet"), Some("sts-uid"))
        );

        // whenScaled=Delete: the claim of a scaled-away pod gets the pod as
        // owner first, and only then is the pod deleted.
        let s = sts(
            json!({"replicas": 1, "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"}}),
        );
        let r = rev_name(&s);
        let mut w = World::new(s);
        w.revisions = vec![revision_of(&w.sts, 1)];
        w.pods = vec![member(0, &r), member(1, &r)];
        w.pvcs = claims(0..2);
        let plan = w.run();
        check(
            &plan,
            &["update PersistentVolumeClaims www-web-1", "status"],
        );
        let owners = &object(&plan, "www-web-1")["metadata"]["ownerReferences"];
        assert_eq!(
            (owners[0]["kind"].as_str(), owners[0]["uid"].as_str()),
            (Some("Pod"), Some("uid-web-1"))
        );
        w.apply(&plan);
        check(&w.run(), &["delete Pods web-1"]);

        // Scaling back up before the garbage collector removed that claim
        // waits for it instead of reusing it.
        w.apply(&w.run());
        w.kubelet();
        w.sts.spec.as_mut().unwrap().replicas = Some(2);
        check(&w.run(), &["status"]);
        w.pvcs
            .retain(|c| c.metadata.name.as_deref() != Some("www-web-1"));
        check(
            &w.run(),
            &[
                "create PersistentVolumeClaims www-web-1",
                "create Pods web-1",
                "status",
            ],
        );
    }

    #[test]
    fn switching_to_retain_removes_our_claim_owners() {
        let s = sts(json!({"replicas": 1}));
        let r = rev_name(&s);
        let owned = claim(
            "www-web-0",
            json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "sts-uid", "controller": true},
                   {"apiVersion": "v1", "kind": "ConfigMap", "name": "keep", "uid": "cm"}]),
        );
        let plan = run(&s, &[member(0, &r)], &[owned], &[revision_of(&s, 1)]);
        check(
            &plan,
            &["update PersistentVolumeClaims www-web-0", "status"],
        );
        assert_eq!(
            object(&plan, "www-web-0")["metadata"]["ownerReferences"],
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "keep", "uid": "cm"}])
        );
    }

    #[test]
    fn pending_pods_get_missing_claims_and_identity_is_repaired() {
        let s = sts(json!({"replicas": 2, "podManagementPolicy": "Parallel"}));
        let r = rev_name(&s);
        let pending = phase(member(0, &r), "Pending");
        let mut relabelled = member(1, &r);
        relabelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(POD_NAME_LABEL);
        let plan = run(
            &s,
            &[pending, relabelled],
            &claims(1..2),
            &[revision_of(&s, 1)],
        );
        check(
            &plan,
            &[
                "create PersistentVolumeClaims www-web-0",
                "update Pods web-1",
                "status",
            ],
        );
        assert_eq!(
            events(&plan)[1],
            "SuccessfulUpdate: update Pod web-1 in StatefulSet web successful"
        );
        assert_eq!(
            object(&plan, "web-1")["metadata"]["labels"][POD_NAME_LABEL],
            "web-1"
        );
    }

    #[test]
    fn rollback_renumbers_and_history_is_truncated() {
        let v1 = sts(json!({"revisionHistoryLimit": 0}));
        let v2 = with_image(v1.clone(), "nginx:2");
        let v3 = with_image(v1.clone(), "nginx:3");
        let (r1, r2, r3) = (rev_name(&v1), rev_name(&v2), rev_name(&v3));
        let mut s = v1.clone();
        s.status = Some(
            serde_json::from_value(json!({"currentRevision": r3, "updateRevision": r3})).unwrap(),
        );
        let revisions = [
            revision_of(&v1, 1),
            revision_of(&v2, 2),
            revision_of(&v3, 3),
        ];
        // Back to v1: its revision is renumbered; v2 is not live and goes.
        let plan = run(&s, &[], &[], &revisions);
        let summary = summary(&plan);
        assert_eq!(summary[0], format!("update ControllerRevisions {r1}"));
        assert_eq!(object(&plan, &r1)["revision"], 4);
        assert!(
            summary.contains(&format!("delete ControllerRevisions {r2}")),
            "{summary:?}"
        );
        assert!(!summary
            .iter()
            .any(|s| s.contains(&format!("delete ControllerRevisions {r3}"))));
    }

    #[test]
    fn hash_collision_bumps_the_collision_count() {
        let s = sts(json!({}));
        let mut squatter = revision_of(&with_image(s.clone(), "other"), 1);
        squatter.metadata.name = Some(rev_name(&s));
        squatter.metadata.owner_references = None;
        let plan = run(&s, &[], &[], &[squatter]);
        let status = status_of(&plan);
        assert_eq!(status.collision_count, Some(1));
        assert_ne!(
            status.update_revision.as_deref(),
            Some(rev_name(&s).as_str())
        );
        assert_eq!(
            summary(&plan)[0],
            format!(
                "create ControllerRevisions {}",
                status.update_revision.unwrap()
            )
        );
    }

    #[test]
    fn min_ready_seconds_gates_progress_and_requeues() {
        let s = sts(json!({"minReadySeconds": 60}));
        let r = rev_name(&s);
        let plan = run(&s, &[member(0, &r)], &claims(0..1), &[revision_of(&s, 1)]);
        // Ready at 11:00, available since 11:01: web-1 is created.
        assert!(summary(&plan).contains(&"create Pods web-1".to_string()));
        let mut fresh = member(0, &r);
        fresh.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
            Some(Time("2026-03-01T11:59:30Z".parse().unwrap()));
        let plan = run(&s, &[fresh], &claims(0..1), &[revision_of(&s, 1)]);
        check(&plan, &["status"]);
        let status = status_of(&plan);
        assert_eq!(
            (status.ready_replicas, status.available_replicas),
            (Some(1), Some(0))
        );
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(30)));
    }

    #[test]
    fn deleting_set_only_reports_status() {
        let mut s = sts(json!({}));
        s.metadata.deletion_timestamp = Some(Time(now()));
        let r = rev_name(&s);
        let plan = run(&s, &[member(0, &r), terminating(member(1, &r))], &[], &[]);
        check(&plan, &["status"]);
        assert_eq!(status_of(&plan).replicas, 2);
    }

    #[test]
    fn foreign_and_non_member_pods_are_ignored() {
        let s = sts(json!({"replicas": 1}));
        let r = rev_name(&s);
        let mut other_owner = member(0, &r);
        other_owner.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
        let mut not_member = member(0, &r);
        not_member.metadata.name = Some("web-x".into());
        let plan = run(&s, &[other_owner, not_member], &[], &[revision_of(&s, 1)]);
        check(
            &plan,
            &[
                "create PersistentVolumeClaims www-web-0",
                "create Pods web-0",
                "status",
            ],
        );
    }
}
