//! The Job controller: runs a Job's pods to completion (NonIndexed and
//! Indexed), with parallelism, backoffLimit, activeDeadlineSeconds, suspend
//! and ttlSecondsAfterFinished, the way kube-controller-manager does.
//!
//! Pods are counted from the pods that exist (the runtime's informer cache):
//! drover does not put the `batch.kubernetes.io/job-tracking` finalizer on
//! Job pods, so `status.uncountedTerminatedPods` stays empty and a finished
//! pod deleted by someone else before the Job finishes is no longer counted
//! (Kubernetes' tracking before 1.26 behaved the same).
//!
//! The `SuccessfulCreate` event ("Created pod: NAME") needs the name the API
//! server generates, so it is not in the plan. TODO(runtime): as for
//! ReplicaSets, record it on the Job once the pod's `Create` returns.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::plan::{object_reference, Action, EventType, Plan, Resource};
use crate::pods;

/// The completion index of a pod of an Indexed Job (annotation and label).
pub const JOB_COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The unprefixed labels Kubernetes still sets for older selectors.
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";

const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Pod creation back-off after failures: 10s doubling up to 6 minutes
/// (`DefaultJobPodFailureBackOff`, `MaxJobPodFailureBackOff`).
const DEFAULT_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(360);
/// Bounds one sync's writes so a huge Job cannot starve the others.
const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
const DEFAULT_BACKOFF_LIMIT: i32 = 6;

/// What the Job is finishing with: its interim condition (already written
/// or about to be) turns into the terminal one once no pod is terminating.
#[derive(Clone, Debug, PartialEq)]
enum Finish {
    Success,
    Failure { reason: String, message: String },
}

/// Reconciles one Job against its pods (those in its namespace matching its
/// selector; only the ones it controls are used).
pub fn reconcile_job(job: &Job, pods: &[&Pod], now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let (Some(spec), Some(uid)) = (job.spec.as_ref(), job.metadata.uid.as_deref()) else {
        return plan;
    };
    if job.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let status = job.status.clone().unwrap_or_default();
    if finished_condition(&status).is_some() {
        plan_ttl_after_finished(job, spec, &status, now, &mut plan);
        return plan;
    }
    let pods: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| pods::is_controlled_by(&p.metadata, uid))
        .collect();
    let involved = object_reference("batch/v1", "Job", &job.metadata);
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let job_name = job.metadata.name.clone().unwrap_or_default();

    let suspended = spec.suspend == Some(true);
    let completions = spec.completions;
    let indexed = spec.completion_mode.as_deref() == Some("Indexed") && completions.is_some();
    let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);

    let mut new = status.clone();
    if new.uncounted_terminated_pods.is_none() {
        new.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    }
    let mut active_pods: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| pods::is_pod_active(p))
        .collect();
    active_pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut active = active_pods.len();
    let mut ready = active_pods.iter().filter(|p| pods::is_pod_ready(p)).count();
    let mut terminating = pods.iter().filter(|p| is_pod_terminating(p)).count();
    let failed = pods
        .iter()
        .filter(|p| {
            pods::pod_phase(p) == "Failed" && (!indexed || valid_index(p, completions).is_some())
        })
        .count();
    let succeeded_indexes: BTreeSet<i32> = if indexed {
        let mut set = parse_indexes(
            status.completed_indexes.as_deref().unwrap_or(""),
            completions.unwrap_or(0),
        );
        set.extend(
            pods.iter()
                .filter(|p| pods::pod_phase(p) == "Succeeded")
                .filter_map(|p| valid_index(p, completions)),
        );
        set
    } else {
        BTreeSet::new()
    };
    let succeeded = if indexed {
        succeeded_indexes.len()
    } else {
        pods.iter()
            .filter(|p| pods::pod_phase(p) == "Succeeded")
            .count()
    };

    if new.start_time.is_none() && !suspended {
        new.start_time = Some(whole_seconds(now));
    }

    let mut finish = interim_finish(&status);
    if finish.is_none() {
        if failed as i64 > i64::from(backoff_limit)
            || past_backoff_limit_on_failure(spec, &pods, backoff_limit)
        {
            finish = Some(Finish::Failure {
                reason: "BackoffLimitExceeded".into(),
                message: "Job has reached the specified backoff limit".into(),
            });
        } else if let Some(remaining) = active_deadline_remaining(spec, &new, suspended, now) {
            if remaining.is_zero() {
                finish = Some(Finish::Failure {
                    reason: "DeadlineExceeded".into(),
                    message: "Job was active longer than specified deadline".into(),
                });
            } else {
                plan.requeue(remaining);
            }
        }
    }

    let mut conditions = new.conditions.take().unwrap_or_default();
    let mut events: Vec<(EventType, &str, String)> = Vec::new();
    if finish.is_some() {
        // A failing (or succeeded) Job stops all its remaining pods.
        for pod in &active_pods {
            delete_pod(&mut plan, &involved, &namespace, pod);
        }
        ready -= active_pods.iter().filter(|p| pods::is_pod_ready(p)).count();
        terminating += active;
        active = 0;
    } else {
        let ctx = ManageContext {
            job,
            job_name: &job_name,
            namespace: &namespace,
            involved: &involved,
            spec,
            indexed,
            succeeded,
            succeeded_indexes: &succeeded_indexes,
            pods: &pods,
            now,
        };
        let managed = manage_job(&ctx, &active_pods, terminating, suspended, &mut plan);
        active = managed.active;
        ready -= managed.deleted_ready;
        terminating += managed.deleted;

        let complete = match completions {
            // A work queue is done once any pod succeeded and the rest finished.
            None => succeeded > 0 && active == 0,
            Some(c) => succeeded as i64 >= i64::from(c) && active == 0,
        };
        if complete {
            finish = Some(Finish::Success);
        } else if suspended {
            if ensure_condition(
                &mut conditions,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            ) {
                events.push((EventType::Normal, "Suspended", "Job suspended".into()));
            }
        } else if ensure_condition(
            &mut conditions,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        ) {
            events.push((EventType::Normal, "Resumed", "Job resumed".into()));
            // activeDeadlineSeconds counts continuous activity, so a resumed
            // Job starts its clock again, like one created suspended.
            new.start_time = Some(whole_seconds(now));
        }
    }

    // The interim condition is written first; the terminal one only once
    // every pod has terminated, so watchers of Complete/Failed can rely on
    // no pod of the Job still running.
    let mut finished_now = false;
    if let Some(finish) = &finish {
        let (interim, reason, message) = match finish {
            Finish::Success => (
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ),
            Finish::Failure { reason, message } => {
                ("FailureTarget", reason.as_str(), message.as_str())
            }
        };
        if !conditions
            .iter()
            .any(|c| c.type_ == interim && c.status == "True")
        {
            conditions.push(new_condition(interim, "True", reason, message, now));
        }
        if terminating == 0 {
            let terminal = match finish {
                Finish::Success => "Complete",
                Finish::Failure { .. } => "Failed",
            };
            ensure_condition(&mut conditions, terminal, "True", reason, message, now);
            if terminal == "Complete" {
                new.completion_time = Some(whole_seconds(now));
                if completions.is_some_and(|c| succeeded as i64 > i64::from(c)) {
                    events.push((
                        EventType::Warning,
                        "TooManySucceededPods",
                        "Too many succeeded pods running after completion count reached".into(),
                    ));
                }
                events.push((EventType::Normal, "Completed", "Job completed".into()));
            } else {
                events.push((EventType::Warning, reason, message.to_string()));
            }
            finished_now = true;
        }
    }

    new.conditions = (!conditions.is_empty()).then_some(conditions);
    new.active = nonzero(active);
    new.ready = Some(ready as i32);
    new.terminating = Some(terminating as i32);
    new.failed = nonzero(failed);
    new.succeeded = nonzero(succeeded);
    new.completed_indexes = if indexed {
        Some(format_indexes(&succeeded_indexes)).filter(|s| !s.is_empty())
    } else {
        status.completed_indexes.clone()
    };
    if new != status {
        let mut updated = job.clone();
        updated.status = Some(new.clone());
        plan.push(Action::UpdateStatus {
            resource: Resource::Jobs,
            namespace: Some(namespace.clone()),
            name: job_name.clone(),
            object: pods::to_value(&updated),
        });
    }
    for (event_type, reason, message) in events {
        plan.push(Action::Event {
            involved: involved.clone(),
            event_type,
            reason: reason.to_string(),
            message,
        });
    }
    if finished_now {
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            plan.requeue(Duration::from_secs(ttl.max(0) as u64));
        }
    }
    plan
}

struct ManageContext<'a> {
    job: &'a Job,
    job_name: &'a str,
    namespace: &'a str,
    involved: &'a serde_json::Value,
    spec: &'a JobSpec,
    indexed: bool,
    succeeded: usize,
    succeeded_indexes: &'a BTreeSet<i32>,
    pods: &'a [&'a Pod],
    now: Timestamp,
}

struct Managed {
    /// Active pods once the plan is applied.
    active: usize,
    deleted: usize,
    deleted_ready: usize,
}

/// Creates or deletes pods so that the right number run (kube's manageJob).
/// Deletions take precedence: a sync either deletes or creates.
fn manage_job(
    ctx: &ManageContext,
    active_pods: &[&Pod],
    terminating: usize,
    suspended: bool,
    plan: &mut Plan,
) -> Managed {
    let spec = ctx.spec;
    let active = active_pods.len();
    let mut out = Managed {
        active,
        deleted: 0,
        deleted_ready: 0,
    };
    let completions = spec.completions;
    let delete = |pods: Vec<&Pod>, plan: &mut Plan, out: &mut Managed| {
        for pod in pods.into_iter().take(MAX_POD_CREATE_DELETE_PER_SYNC) {
            delete_pod(plan, ctx.involved, ctx.namespace, pod);
            out.active -= 1;
            out.deleted += 1;
            if pods::is_pod_ready(pod) {
                out.deleted_ready += 1;
            }
        }
    };
    if suspended {
        let all = pods_for_removal(active_pods, active, ctx.indexed, completions);
        delete(all, plan, &mut out);
        return out;
    }

    let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;
    let want_active = match completions {
        None if ctx.succeeded > 0 => active,
        None => parallelism,
        Some(c) => (c.max(0) as usize)
            .saturating_sub(ctx.succeeded)
            .min(parallelism),
    };
    let remove = pods_for_removal(
        active_pods,
        active.saturating_sub(want_active),
        ctx.indexed,
        completions,
    );
    if !remove.is_empty() {
        delete(remove, plan, &mut out);
        return out;
    }

    // With podReplacementPolicy Failed (implied by a podFailurePolicy), a
    // terminating pod still holds its slot until it has fully stopped.
    let only_replace_failed = spec.pod_replacement_policy.as_deref() == Some("Failed")
        || spec.pod_failure_policy.is_some();
    let held = if only_replace_failed { terminating } else { 0 };
    let mut diff = want_active.saturating_sub(held).saturating_sub(active);
    if diff == 0 {
        return out;
    }
    let backoff = creation_backoff(ctx.pods, ctx.now);
    if !backoff.is_zero() {
        plan.requeue(backoff);
        return out;
    }
    diff = diff.min(MAX_POD_CREATE_DELETE_PER_SYNC);
    let indexes: Vec<Option<i32>> = if ctx.indexed {
        let mut taken: BTreeSet<i32> = ctx.succeeded_indexes.clone();
        taken.extend(active_pods.iter().filter_map(|p| completion_index(p)));
        if only_replace_failed {
            taken.extend(
                ctx.pods
                    .iter()
                    .filter(|p| is_pod_terminating(p))
                    .filter_map(|p| completion_index(p)),
            );
        }
        (0..completions.unwrap_or(0))
            .filter(|i| !taken.contains(i))
            .take(diff)
            .map(Some)
            .collect()
    } else {
        vec![None; diff]
    };
    let template = pod_template_for(ctx);
    for index in indexes {
        let pod = new_job_pod(ctx, &template, index);
        plan.push(Action::Create {
            resource: Resource::Pods,
            namespace: Some(ctx.namespace.to_string()),
            object: pods::to_value(&pod),
        });
        out.active += 1;
    }
    out
}

/// The template every pod of this Job starts from: Indexed Jobs expose the
/// index to containers through the downward API.
fn pod_template_for(ctx: &ManageContext) -> k8s_openapi::api::core::v1::PodTemplateSpec {
    let mut template = ctx.spec.template.clone();
    if ctx.indexed {
        if let Some(spec) = template.spec.as_mut() {
            add_completion_index_env(spec);
        }
    }
    template
}

fn add_completion_index_env(spec: &mut PodSpec) {
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for container in containers {
        let env = container.env.get_or_insert_with(Vec::new);
        if env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
            continue;
        }
        env.push(EnvVar {
            name: COMPLETION_INDEX_ENV.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: format!("metadata.labels['{JOB_COMPLETION_INDEX}']"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
}

fn new_job_pod(
    ctx: &ManageContext,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    index: Option<i32>,
) -> Pod {
    let owner = pods::controller_reference("batch/v1", "Job", &ctx.job.metadata);
    let uid = owner.uid.clone();
    let mut pod = pods::pod_from_template(template, ctx.namespace, owner);
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(CONTROLLER_UID_LABEL.into(), uid.clone());
    labels.insert(JOB_NAME_LABEL.into(), ctx.job_name.to_string());
    labels.insert(LEGACY_CONTROLLER_UID_LABEL.into(), uid);
    labels.insert(LEGACY_JOB_NAME_LABEL.into(), ctx.job_name.to_string());
    match index {
        Some(index) => {
            labels.insert(JOB_COMPLETION_INDEX.into(), index.to_string());
            pod.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(JOB_COMPLETION_INDEX.into(), index.to_string());
            if let Some(spec) = pod.spec.as_mut() {
                spec.hostname = Some(format!("{}-{index}", ctx.job_name));
            }
            pod.metadata.generate_name = Some(format!("{}-{index}-", ctx.job_name));
        }
        None => pod.metadata.generate_name = Some(format!("{}-", ctx.job_name)),
    }
    pod
}

fn delete_pod(plan: &mut Plan, involved: &serde_json::Value, namespace: &str, pod: &Pod) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    plan.push(Action::Delete {
        resource: Resource::Pods,
        namespace: Some(namespace.to_string()),
        name: name.clone(),
        uid: pod.metadata.uid.clone(),
        propagation: None,
    });
    plan.push(Action::Event {
        involved: involved.clone(),
        event_type: EventType::Normal,
        reason: "SuccessfulDelete".into(),
        message: format!("Deleted pod: {name}"),
    });
}

/// The active pods to delete, at least `at_least` of them: for Indexed Jobs
/// first those with a missing, out-of-range or repeated index; then the
/// least established ones.
fn pods_for_removal<'a>(
    active: &[&'a Pod],
    at_least: usize,
    indexed: bool,
    completions: Option<i32>,
) -> Vec<&'a Pod> {
    let mut remove = Vec::new();
    let mut left: Vec<&Pod> = Vec::new();
    if indexed {
        let mut by_index: std::collections::BTreeMap<i32, Vec<&Pod>> = Default::default();
        for pod in active {
            match valid_index(pod, completions) {
                Some(ix) => by_index.entry(ix).or_default().push(pod),
                None => remove.push(*pod),
            }
        }
        for (_, mut same) in by_index {
            // Keep the most established pod of a repeated index.
            same.sort_by(|a, b| deletion_order(a, b));
            let keep = same.pop().expect("non-empty group");
            remove.extend(same);
            left.push(keep);
        }
    } else {
        left = active.to_vec();
    }
    if remove.len() < at_least {
        left.sort_by(|a, b| deletion_order(a, b));
        let more = at_least - remove.len();
        remove.extend(left.into_iter().take(more));
    }
    remove
}

/// Kubernetes' `controller.ActivePods` order: pods earlier in the order are
/// deleted first (unscheduled, pending, not ready, recently ready, often
/// restarted, young).
fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let assigned = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase_rank = |p: &Pod| match pods::pod_phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let ready_since = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    };
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
            .unwrap_or(0)
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    assigned(a)
        .cmp(&assigned(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(pods::is_pod_ready(a).cmp(&pods::is_pod_ready(b)))
        .then_with(|| {
            if pods::is_pod_ready(a) && pods::is_pod_ready(b) {
                empty_or_newer_first(ready_since(a), ready_since(b))
            } else {
                Ordering::Equal
            }
        })
        .then(restarts(b).cmp(&restarts(a)))
        .then(empty_or_newer_first(created(a), created(b)))
        .then(a.metadata.name.cmp(&b.metadata.name))
}

fn empty_or_newer_first(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// For restartPolicy OnFailure failures show as container restarts, not
/// failed pods: their sum counts against backoffLimit.
fn past_backoff_limit_on_failure(spec: &JobSpec, pods: &[&Pod], backoff_limit: i32) -> bool {
    let restart_policy = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref());
    if restart_policy != Some("OnFailure") {
        return false;
    }
    let restarts: i64 = pods
        .iter()
        .filter(|p| matches!(pods::pod_phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| i64::from(c.restart_count))
        .sum();
    if backoff_limit == 0 {
        restarts > 0
    } else {
        restarts >= i64::from(backoff_limit)
    }
}

/// Time left before activeDeadlineSeconds; zero once past it; None when no
/// deadline applies (none set, not started, or suspended).
fn active_deadline_remaining(
    spec: &JobSpec,
    status: &JobStatus,
    suspended: bool,
    now: Timestamp,
) -> Option<Duration> {
    let deadline = spec.active_deadline_seconds?;
    let start = status.start_time.as_ref()?.0;
    if suspended {
        return None;
    }
    let end_ns = start.as_nanosecond() + i128::from(deadline) * 1_000_000_000;
    let left_ns = end_ns - now.as_nanosecond();
    Some(if left_ns <= 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(left_ns as u64)
    })
}

/// How long pod creation must still wait after recent failures: 10s after
/// one failure since the last success, doubling per further failure, at most
/// 6 minutes (kube's pod failure back-off, derived here from the pods).
fn creation_backoff(pods: &[&Pod], now: Timestamp) -> Duration {
    let last_success = pods
        .iter()
        .filter(|p| pods::pod_phase(p) == "Succeeded")
        .map(|p| pod_finished_at(p))
        .max();
    let failures: Vec<Timestamp> = pods
        .iter()
        .filter(|p| pods::pod_phase(p) == "Failed")
        .map(|p| pod_finished_at(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let Some(last_failure) = failures.iter().max().copied() else {
        return Duration::ZERO;
    };
    let mut backoff = DEFAULT_POD_FAILURE_BACKOFF;
    for _ in 1..failures.len() {
        backoff *= 2;
        if backoff >= MAX_POD_FAILURE_BACKOFF {
            backoff = MAX_POD_FAILURE_BACKOFF;
            break;
        }
    }
    let elapsed_ns = now.as_nanosecond() - last_failure.as_nanosecond();
    let elapsed = Duration::from_nanos(elapsed_ns.max(0) as u64);
    backoff.saturating_sub(elapsed)
}

/// When a pod finished: its containers' latest finishedAt, else when Ready
/// turned False, else its deletion, else its creation.
fn pod_finished_at(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let containers: Option<Vec<Option<Timestamp>>> = status
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    c.state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .and_then(|t| t.finished_at.as_ref())
                        .map(|t| t.0)
                })
                .collect()
        });
    if let Some(times) = containers {
        if !times.is_empty() && times.iter().all(Option::is_some) {
            if let Some(latest) = times.into_iter().flatten().max() {
                return latest;
            }
        }
    }
    let ready_false = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "False"))
        .and_then(|c| c.last_transition_time.as_ref());
    if let Some(t) = ready_false {
        return t.0;
    }
    if let Some(t) = &pod.metadata.deletion_timestamp {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return Timestamp::from_second(t.0.as_second() - grace).unwrap_or(t.0);
    }
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Being deleted but not yet finished.
fn is_pod_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && !matches!(pods::pod_phase(pod), "Succeeded" | "Failed")
}

fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(JOB_COMPLETION_INDEX)?
        .parse::<i32>()
        .ok()
        .filter(|i| *i >= 0)
}

fn valid_index(pod: &Pod, completions: Option<i32>) -> Option<i32> {
    completion_index(pod).filter(|i| completions.is_some_and(|c| *i < c))
}

/// Parses `status.completedIndexes` ("1,3-5,7"), ignoring indexes at or
/// beyond `completions` and malformed intervals.
fn parse_indexes(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for interval in s.split(',').filter(|i| !i.is_empty()) {
        let (first, last) = match interval.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (interval.parse::<i32>(), interval.parse::<i32>()),
        };
        let (Ok(first), Ok(last)) = (first, last) else {
            continue;
        };
        for i in first.max(0)..=last.min(completions - 1) {
            set.insert(i);
        }
    }
    set
}

/// Formats indexes the way Kubernetes does: runs of three or more as
/// "a-b", pairs as "a,b".
fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last = iter.next().expect("peeked");
        }
        match last - first {
            0 => out.push(first.to_string()),
            1 => out.push(format!("{first},{last}")),
            _ => out.push(format!("{first}-{last}")),
        }
    }
    out.join(",")
}

fn finished_condition(status: &JobStatus) -> Option<&JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// A finish decided by an earlier sync and recorded as an interim condition.
fn interim_finish(status: &JobStatus) -> Option<Finish> {
    let conditions = status.conditions.as_ref()?;
    if conditions
        .iter()
        .any(|c| c.type_ == "SuccessCriteriaMet" && c.status == "True")
    {
        return Some(Finish::Success);
    }
    conditions
        .iter()
        .find(|c| c.type_ == "FailureTarget" && c.status == "True")
        .map(|c| Finish::Failure {
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        })
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(whole_seconds(now)),
        last_transition_time: Some(whole_seconds(now)),
    }
}

/// Sets a condition's status, reason and message, returning whether
/// anything changed; a missing condition is not added as False (going from
/// nothing to False says nothing).
fn ensure_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status
            || c.reason.as_deref() != Some(reason)
            || c.message.as_deref() != Some(message)
        {
            *c = new_condition(type_, status, reason, message, now);
            return true;
        }
        return false;
    }
    if status != "False" {
        conditions.push(new_condition(type_, status, reason, message, now));
        return true;
    }
    false
}

/// The TTL-after-finished controller's part: delete a finished Job (and,
/// through Background propagation, its pods) once its TTL has passed.
fn plan_ttl_after_finished(
    job: &Job,
    spec: &JobSpec,
    status: &JobStatus,
    now: Timestamp,
    plan: &mut Plan,
) {
    let Some(ttl) = spec.ttl_seconds_after_finished else {
        return;
    };
    let Some(finished_at) =
        finished_condition(status).and_then(|c| c.last_transition_time.as_ref())
    else {
        return;
    };
    let expire_ns = finished_at.0.as_nanosecond() + i128::from(ttl) * 1_000_000_000;
    let left_ns = expire_ns - now.as_nanosecond();
    if left_ns > 0 {
        plan.requeue(Duration::from_nanos(left_ns as u64));
        return;
    }
    plan.push(Action::Delete {
        resource: Resource::Jobs,
        namespace: job.metadata.namespace.clone(),
        name: job.metadata.name.clone().unwrap_or_default(),
        uid: job.metadata.uid.clone(),
        propagation: Some("Background"),
    });
}

/// Kubernetes omits zero counters (`omitempty`).
fn nonzero(n: usize) -> Option<i32> {
    (n > 0).then_some(n as i32)
}

/// Times are stored with second precision; planning them that way keeps a
/// written status equal to what is read back.
fn whole_seconds(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const NOW: &str = "2026-03-01T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn at(offset_secs: i64) -> Timestamp {
        Timestamp::from_second(now().as_second() + offset_secs).unwrap()
    }

    /// A Job named `pi` with `spec` merged over a minimal valid spec.
    fn job(spec: Value) -> Job {
        let mut base = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "pi", "namespace": "ns", "uid": "job-uid", "resourceVersion": "5"},
            "spec": {
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "job-uid"}},
                "template": {
                    "metadata": {"labels": {"app": "pi"}},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "perl"}]}
                }
            }
        });
        merge(&mut base["spec"], spec);
        serde_json::from_value(base).unwrap()
    }

    fn with_status(mut job: Job, status: Value) -> Job {
        job.status = Some(serde_json::from_value(status).unwrap());
        job
    }

    fn merge(base: &mut Value, patch: Value) {
        if let (Some(b), Value::Object(p)) = (base.as_object_mut(), patch) {
            for (k, v) in p {
                b.insert(k, v);
            }
        }
    }

    /// A pod of the Job: `phase`, optional index, `ready`.
    fn pod(name: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                "creationTimestamp": "2026-03-01T11:00:00Z",
                "labels": {"batch.kubernetes.io/controller-uid": "job-uid"},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": "job-uid", "controller": true}]
            },
            "spec": {"containers": [{"name": "c", "image": "perl"}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn indexed_pod(name: &str, phase: &str, index: i32) -> Pod {
        let mut p = pod(name, phase);
        p.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(JOB_COMPLETION_INDEX.into(), index.to_string());
        p
    }

    fn ready(mut p: Pod) -> Pod {
        let status = p.status.get_or_insert_with(Default::default);
        status.conditions = Some(vec![serde_json::from_value(
            json!({"type": "Ready", "status": "True", "lastTransitionTime": "2026-03-01T11:00:10Z"}),
        )
        .unwrap()]);
        p
    }

    fn failed_at(name: &str, finished: &str) -> Pod {
        let mut p = pod(name, "Failed");
        p.status.as_mut().unwrap().container_statuses = Some(vec![serde_json::from_value(json!({
            "name": "c", "image": "perl", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "finishedAt": finished}}
        }))
        .unwrap()]);
        p
    }

    fn terminating(mut p: Pod) -> Pod {
        p.metadata.deletion_timestamp = Some(Time(now()));
        p
    }

    fn run(job: &Job, pods: &[Pod]) -> Plan {
        let refs: Vec<&Pod> = pods.iter().collect();
        reconcile_job(job, &refs, now())
    }

    /// One line per action, so tests can compare whole plans exactly.
    fn summary(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .map(|a| match a {
                Action::Create { object, .. } => format!(
                    "create pod {}",
                    object["metadata"]["generateName"]
                        .as_str()
                        .unwrap_or_default()
                ),
                Action::Delete {
                    resource,
                    name,
                    uid,
                    propagation,
                    ..
                } => format!(
                    "delete {resource:?} {name} uid={} {propagation:?}",
                    uid.as_deref().unwrap_or("-")
                ),
                Action::UpdateStatus { .. } => "status".to_string(),
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

    fn status_of(plan: &Plan) -> JobStatus {
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

    fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
    }

    /// Applies a plan the way the API server and informers would: created
    /// pods get a name and uid, deleted pods start terminating, status
    /// writes replace the Job's status (JSON round trip included).
    fn apply(job: &mut Job, pods: &mut Vec<Pod>, plan: &Plan) {
        for action in &plan.actions {
            match action {
                Action::Create { object, .. } => {
                    let mut p: Pod = serde_json::from_value(object.clone()).unwrap();
                    let name = format!(
                        "{}x{}",
                        p.metadata.generate_name.clone().unwrap(),
                        pods.len()
                    );
                    p.metadata.uid = Some(format!("uid-{name}"));
                    p.metadata.name = Some(name);
                    p.metadata.creation_timestamp = Some(Time(now()));
                    p.status = Some(serde_json::from_value(json!({"phase": "Pending"})).unwrap());
                    pods.push(p);
                }
                Action::Delete { name, .. } => {
                    let p = pods
                        .iter_mut()
                        .find(|p| p.metadata.name.as_deref() == Some(name))
                        .unwrap();
                    p.metadata.deletion_timestamp = Some(Time(now()));
                }
                Action::UpdateStatus { object, .. } => {
                    *job = serde_json::from_value(object.clone()).unwrap();
                }
                _ => {}
            }
        }
    }

    /// Reconcile, apply, reconcile again: the second plan must not act.
    fn assert_idempotent(job: &Job, pods: &[Pod]) {
        let (mut job, mut pods) = (job.clone(), pods.to_vec());
        let first = run(&job, &pods);
        assert_eq!(first, run(&job, &pods), "same state, same plan");
        apply(&mut job, &mut pods, &first);
        let second = run(&job, &pods);
        check(&second, &[]);
    }

    #[test]
    fn creates_parallelism_pods_with_job_labels() {
        let j = job(json!({"completions": 5, "parallelism": 2}));
        let plan = run(&j, &[]);
        check(&plan, &["create pod pi-", "create pod pi-", "status"]);
        let Action::Create {
            object, namespace, ..
        } = &plan.actions[0]
        else {
            panic!()
        };
        assert_eq!(namespace.as_deref(), Some("ns"));
        assert_eq!(
            object["metadata"]["labels"],
            json!({
                "app": "pi",
                "batch.kubernetes.io/controller-uid": "job-uid",
                "batch.kubernetes.io/job-name": "pi",
                "controller-uid": "job-uid",
                "job-name": "pi"
            })
        );
        assert_eq!(object["metadata"]["ownerReferences"][0]["kind"], "Job");
        assert_eq!(object["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(object["spec"]["restartPolicy"], "Never");
        let status = status_of(&plan);
        assert_eq!(status.active, Some(2));
        assert_eq!(status.ready, Some(0));
        assert_eq!(status.terminating, Some(0));
        assert_eq!(status.start_time, Some(Time(now())));
        assert_eq!(status.uncounted_terminated_pods, Some(Default::default()));
        assert_idempotent(&j, &[]);
    }

    #[test]
    fn never_runs_more_pods_than_remaining_completions() {
        let j = job(json!({"completions": 3, "parallelism": 5}));
        let pods = [pod("pi-a", "Succeeded"), ready(pod("pi-b", "Running"))];
        let plan = run(&j, &pods);
        check(&plan, &["create pod pi-", "status"]);
        let status = status_of(&plan);
        assert_eq!(
            (status.active, status.succeeded, status.ready),
            (Some(2), Some(1), Some(1))
        );
        assert_idempotent(&j, &pods);
    }

    #[test]
    fn deletes_excess_pods_least_established_first() {
        let j = job(json!({"completions": 10, "parallelism": 1}));
        let mut scheduled = ready(pod("pi-ready", "Running"));
        scheduled.spec.as_mut().unwrap().node_name = Some("n1".into());
        let pods = [scheduled, pod("pi-pending", "Pending")];
        let plan = run(&j, &pods);
        check(
            &plan,
            &[
                "delete Pods pi-pending uid=uid-pi-pending None",
                "event Normal SuccessfulDelete: Deleted pod: pi-pending",
                "status",
            ],
        );
        let status = status_of(&plan);
        assert_eq!((status.active, status.terminating), (Some(1), Some(1)));
        assert_idempotent(&j, &pods);
    }

    #[test]
    fn completes_with_success_criteria_then_complete() {
        let j = with_status(
            job(json!({"completions": 2, "parallelism": 2, "ttlSecondsAfterFinished": 100})),
            json!({"startTime": "2026-03-01T11:00:00Z", "active": 1}),
        );
        let pods = [pod("pi-a", "Succeeded"), pod("pi-b", "Succeeded")];
        let plan = run(&j, &pods);
        check(&plan, &["status", "event Normal Completed: Job completed"]);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(100)));
        let status = status_of(&plan);
        let types: Vec<_> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, ["SuccessCriteriaMet", "Complete"]);
        let complete = condition(&status, "Complete").unwrap();
        assert_eq!(complete.reason.as_deref(), Some("CompletionsReached"));
        assert_eq!(
            complete.message.as_deref(),
            Some("Reached expected number of succeeded pods")
        );
        assert_eq!(status.completion_time, Some(Time(now())));
        assert_eq!((status.succeeded, status.active), (Some(2), None));
    }

    #[test]
    fn work_queue_job_completes_when_one_succeeded_and_none_run() {
        let j = job(json!({"parallelism": 3}));
        // One succeeded: no new pods, the running ones finish on their own.
        let running = [pod("pi-a", "Succeeded"), pod("pi-b", "Running")];
        let plan = run(&j, &running);
        check(&plan, &["status"]);
        assert_eq!(status_of(&plan).active, Some(1));
        let done = [pod("pi-a", "Succeeded"), pod("pi-b", "Succeeded")];
        let status = status_of(&run(&j, &done));
        assert!(condition(&status, "Complete").is_some());
    }

    #[test]
    fn backoff_limit_exceeded_fails_after_active_pods_terminate() {
        let j = with_status(
            job(json!({"completions": 5, "parallelism": 2, "backoffLimit": 1})),
            json!({"startTime": "2026-03-01T11:00:00Z"}),
        );
        let pods = [
            failed_at("pi-a", "2026-03-01T11:10:00Z"),
            failed_at("pi-b", "2026-03-01T11:20:00Z"),
            ready(pod("pi-c", "Running")),
        ];
        // First FailureTarget and the deletion of the running pod ...
        let plan = run(&j, &pods);
        check(
            &plan,
            &[
                "delete Pods pi-c uid=uid-pi-c None",
                "event Normal SuccessfulDelete: Deleted pod: pi-c",
                "status",
            ],
        );
        let status = status_of(&plan);
        let target = condition(&status, "FailureTarget").unwrap();
        assert_eq!(target.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(
            target.message.as_deref(),
            Some("Job has reached the specified backoff limit")
        );
        assert!(condition(&status, "Failed").is_none());
        assert_eq!(
            (status.failed, status.terminating, status.active),
            (Some(2), Some(1), None)
        );
        assert_idempotent(&j, &pods);

        // ... then Failed once it is gone.
        let (mut j2, mut pods2) = (j.clone(), pods.to_vec());
        apply(&mut j2, &mut pods2, &plan);
        pods2.retain(|p| p.metadata.name.as_deref() != Some("pi-c"));
        let plan = run(&j2, &pods2);
        check(
            &plan,
            &[
                "status",
                "event Warning BackoffLimitExceeded: Job has reached the specified backoff limit",
            ],
        );
        let status = status_of(&plan);
        assert_eq!(
            condition(&status, "Failed").unwrap().reason.as_deref(),
            Some("BackoffLimitExceeded")
        );
        assert_eq!(status.completion_time, None);
        // A finished Job is left alone.
        apply(&mut j2, &mut pods2, &plan);
        check(&run(&j2, &pods2), &[]);
    }

    #[test]
    fn on_failure_restarts_count_against_backoff_limit() {
        let j = job(
            json!({"backoffLimit": 2, "template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "perl"}]}}}),
        );
        let mut p = pod("pi-a", "Running");
        p.status.as_mut().unwrap().container_statuses = Some(vec![serde_json::from_value(
            json!({"name": "c", "image": "perl", "imageID": "", "ready": false, "restartCount": 2}),
        )
        .unwrap()]);
        let plan = run(&j, &[p]);
        assert_eq!(summary(&plan)[0], "delete Pods pi-a uid=uid-pi-a None");
        let target = condition(&status_of(&plan), "FailureTarget")
            .cloned()
            .unwrap();
        assert_eq!(target.reason.as_deref(), Some("BackoffLimitExceeded"));
    }

    #[test]
    fn active_deadline_requeues_then_fails() {
        let j = with_status(
            job(json!({"activeDeadlineSeconds": 3600})),
            json!({"startTime": "2026-03-01T11:30:00Z", "active": 1, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}}),
        );
        let pods = [pod("pi-a", "Running")];
        let plan = run(&j, &pods);
        check(&plan, &[]);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(1800)));

        let late = reconcile_job(&j, &[&pods[0]], at(1800));
        check(
            &late,
            &[
                "delete Pods pi-a uid=uid-pi-a None",
                "event Normal SuccessfulDelete: Deleted pod: pi-a",
                "status",
            ],
        );
        let status = status_of(&late);
        let target = condition(&status, "FailureTarget").unwrap();
        assert_eq!(target.reason.as_deref(), Some("DeadlineExceeded"));
        assert_eq!(
            target.message.as_deref(),
            Some("Job was active longer than specified deadline")
        );
        // With no pod left to stop it fails at once.
        let plan = reconcile_job(&j, &[], at(1800));
        check(
            &plan,
            &[
                "status",
                "event Warning DeadlineExceeded: Job was active longer than specified deadline",
            ],
        );
        let types: Vec<_> = status_of(&plan)
            .conditions
            .into_iter()
            .flatten()
            .map(|c| c.type_)
            .collect();
        assert_eq!(types, ["FailureTarget", "Failed"]);
    }

    #[test]
    fn failed_pods_are_replaced_after_backoff() {
        let j = with_status(
            job(json!({"completions": 1, "backoffLimit": 6})),
            json!({"startTime": "2026-03-01T11:00:00Z", "failed": 2, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}}),
        );
        // Two failures: 20s back-off from the latest, 5s ago.
        let pods = [
            failed_at("pi-a", "2026-03-01T11:50:00Z"),
            failed_at("pi-b", "2026-03-01T11:59:55Z"),
        ];
        let plan = run(&j, &pods);
        check(&plan, &[]);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(15)));
        let later = reconcile_job(&j, &[&pods[0], &pods[1]], at(15));
        check(&later, &["create pod pi-", "status"]);
    }

    #[test]
    fn indexed_job_creates_pending_indexes_with_identity() {
        let j = job(json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}));
        let pods = [indexed_pod("pi-0-aaaaa", "Succeeded", 0)];
        let plan = run(&j, &pods);
        check(&plan, &["create pod pi-1-", "create pod pi-2-", "status"]);
        let Action::Create { object, .. } = &plan.actions[0] else {
            panic!()
        };
        assert_eq!(object["metadata"]["annotations"][JOB_COMPLETION_INDEX], "1");
        assert_eq!(object["metadata"]["labels"][JOB_COMPLETION_INDEX], "1");
        assert_eq!(object["spec"]["hostname"], "pi-1");
        assert_eq!(
            object["spec"]["containers"][0]["env"],
            json!([{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-completion-index']"}}}])
        );
        let status = status_of(&plan);
        assert_eq!(status.completed_indexes.as_deref(), Some("0"));
        assert_eq!((status.succeeded, status.active), (Some(1), Some(2)));
        assert_idempotent(&j, &pods);
    }

    #[test]
    fn indexed_job_removes_duplicate_and_out_of_range_indexes() {
        let j = job(json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}));
        let pods = [
            ready(indexed_pod("pi-0-old", "Running", 0)),
            indexed_pod("pi-0-dup", "Pending", 0),
            ready(indexed_pod("pi-1-a", "Running", 1)),
            ready(indexed_pod("pi-2-a", "Running", 2)),
            ready(indexed_pod("pi-7-a", "Running", 7)),
        ];
        let plan = run(&j, &pods);
        check(
            &plan,
            &[
                "delete Pods pi-7-a uid=uid-pi-7-a None",
                "event Normal SuccessfulDelete: Deleted pod: pi-7-a",
                "delete Pods pi-0-dup uid=uid-pi-0-dup None",
                "event Normal SuccessfulDelete: Deleted pod: pi-0-dup",
                "status",
            ],
        );
        assert_idempotent(&j, &pods);
    }

    #[test]
    fn indexed_job_tracks_completed_indexes_and_completes() {
        let j = with_status(
            job(json!({"completions": 6, "parallelism": 6, "completionMode": "Indexed"})),
            json!({"startTime": "2026-03-01T11:00:00Z", "completedIndexes": "0-2,4"}),
        );
        let pods = [
            indexed_pod("pi-3-a", "Succeeded", 3),
            indexed_pod("pi-5-a", "Succeeded", 5),
        ];
        let plan = run(&j, &pods);
        let status = status_of(&plan);
        assert_eq!(status.completed_indexes.as_deref(), Some("0-5"));
        assert_eq!(status.succeeded, Some(6));
        assert!(condition(&status, "Complete").is_some());
        assert_eq!(
            format_indexes(&[1, 2, 5, 6, 7, 9].into_iter().collect()),
            "1,2,5-7,9"
        );
        assert_eq!(
            parse_indexes("1,3-5,x,9", 5),
            [1, 3, 4].into_iter().collect()
        );
    }

    #[test]
    fn suspend_deletes_active_pods_and_resume_restarts_the_clock() {
        let j = with_status(
            job(json!({"suspend": true, "parallelism": 2, "completions": 2})),
            json!({"startTime": "2026-03-01T10:00:00Z", "active": 2}),
        );
        let pods = [ready(pod("pi-a", "Running")), pod("pi-b", "Pending")];
        let plan = run(&j, &pods);
        check(
            &plan,
            &[
                "delete Pods pi-b uid=uid-pi-b None",
                "event Normal SuccessfulDelete: Deleted pod: pi-b",
                "delete Pods pi-a uid=uid-pi-a None",
                "event Normal SuccessfulDelete: Deleted pod: pi-a",
                "status",
                "event Normal Suspended: Job suspended",
            ],
        );
        let status = status_of(&plan);
        let suspended = condition(&status, "Suspended").unwrap();
        assert_eq!(
            (suspended.status.as_str(), suspended.reason.as_deref()),
            ("True", Some("JobSuspended"))
        );
        assert_eq!(
            (status.active, status.terminating, status.ready),
            (None, Some(2), Some(0))
        );
        assert_idempotent(&j, &pods);

        // A Job created suspended does not start its clock.
        let fresh = job(json!({"suspend": true}));
        assert_eq!(status_of(&run(&fresh, &[])).start_time, None);

        // Resuming: pods again, Suspended=False, startTime reset to now.
        let (mut j2, mut pods2) = (j.clone(), pods.to_vec());
        apply(&mut j2, &mut pods2, &plan);
        pods2.clear();
        j2.spec.as_mut().unwrap().suspend = Some(false);
        let plan = run(&j2, &pods2);
        check(
            &plan,
            &[
                "create pod pi-",
                "create pod pi-",
                "status",
                "event Normal Resumed: Job resumed",
            ],
        );
        let status = status_of(&plan);
        assert_eq!(condition(&status, "Suspended").unwrap().status, "False");
        assert_eq!(status.start_time, Some(Time(now())));
    }

    #[test]
    fn replacement_waits_for_terminating_pods_with_policy_failed() {
        let pods = [terminating(pod("pi-a", "Running"))];
        let j = job(json!({"podReplacementPolicy": "Failed"}));
        let plan = run(&j, &pods);
        check(&plan, &["status"]);
        assert_eq!(status_of(&plan).terminating, Some(1));
        // The default (TerminatingOrFailed) replaces it right away.
        let j = job(json!({}));
        check(&run(&j, &pods), &["create pod pi-", "status"]);
    }

    #[test]
    fn ignores_pods_of_other_controllers_and_deleting_jobs() {
        let j = job(json!({}));
        let mut foreign = pod("other", "Running");
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "someone-else".into();
        let plan = run(&j, &[foreign]);
        assert_eq!(summary(&plan)[0], "create pod pi-");
        let mut deleting = j.clone();
        deleting.metadata.deletion_timestamp = Some(Time(now()));
        check(&run(&deleting, &[]), &[]);
    }

    #[test]
    fn ttl_after_finished_deletes_the_job_in_background() {
        let finished = with_status(
            job(json!({"ttlSecondsAfterFinished": 60})),
            json!({"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-03-01T11:59:30Z"}]}),
        );
        let plan = run(&finished, &[]);
        check(&plan, &[]);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(30)));
        let plan = reconcile_job(&finished, &[], at(30));
        check(&plan, &["delete Jobs pi uid=job-uid Some(\"Background\")"]);
        // Without a TTL a finished Job is kept.
        let kept = with_status(
            job(json!({})),
            json!({"conditions": [{"type": "Failed", "status": "True", "lastTransitionTime": "2026-03-01T11:59:30Z"}]}),
        );
        assert!(reconcile_job(&kept, &[], at(10_000)).is_empty());
    }
}
