//! The CronJob controller: creates a Job for each scheduled time (in
//! `spec.timeZone`), honouring concurrencyPolicy, suspend,
//! startingDeadlineSeconds and the history limits, the way
//! kube-controller-manager's cronjob controller (v2) does.

use std::time::Duration;

use api::cron::Schedule;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::plan::{object_reference, Action, EventType, Plan, Resource};
use crate::pods;

/// The nominal (scheduled) start of a Job, RFC 3339 in the CronJob's zone.
pub const CRONJOB_SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// More missed start times than this is treated as clock trouble.
const TOO_MANY_MISSED: i64 = 100;
/// Requeues land this much after the scheduled time, so a slightly early
/// wake-up (clock skew) does not miss it.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// A cron schedule evaluated on the wall clock of a time zone.
struct ZonedSchedule {
    schedule: Schedule,
    zone: TimeZone,
}

impl ZonedSchedule {
    /// The first firing strictly after `after`. Wall-clock times skipped by
    /// a DST change do not fire that day; repeated ones fire once.
    fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let mut civil = after.to_zoned(self.zone.clone()).datetime();
        // A few DST transitions in a row is the most a real zone has.
        for _ in 0..8 {
            let next = self.schedule.next_after(civil_to_chrono(civil)?)?;
            let next_civil = chrono_to_civil(next)?;
            let ambiguous = self.zone.to_ambiguous_timestamp(next_civil);
            match ambiguous.offset() {
                AmbiguousOffset::Unambiguous { .. } => return ambiguous.compatible().ok(),
                AmbiguousOffset::Fold { .. } => {
                    let (earlier, later) = (ambiguous.earlier().ok()?, ambiguous.later().ok()?);
                    if let Some(t) = [earlier, later].into_iter().find(|t| *t > after) {
                        return Some(t);
                    }
                }
                AmbiguousOffset::Gap { .. } => {}
            }
            civil = next_civil;
        }
        None
    }
}

/// The cron parser works on chrono UTC times; wall-clock fields are passed
/// through it as if they were UTC.
fn civil_to_chrono(dt: jiff::civil::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    Some(
        chrono::NaiveDate::from_ymd_opt(i32::from(dt.year()), dt.month() as u32, dt.day() as u32)?
            .and_hms_opt(dt.hour() as u32, dt.minute() as u32, dt.second() as u32)?
            .and_utc(),
    )
}

fn chrono_to_civil(t: chrono::DateTime<chrono::Utc>) -> Option<jiff::civil::DateTime> {
    use chrono::{Datelike, Timelike};
    jiff::civil::DateTime::new(
        i16::try_from(t.year()).ok()?,
        t.month() as i8,
        t.day() as i8,
        t.hour() as i8,
        t.minute() as i8,
        0,
        0,
    )
    .ok()
}

/// How many start times were missed since the last one: Kubernetes only
/// distinguishes "many" (more than 100) to warn about clock skew.
#[derive(Debug, PartialEq)]
enum Missed {
    NoneOrFew,
    Many,
}

/// Reconciles one CronJob against the Jobs in its namespace (only those it
/// controls are used).
pub fn reconcile_cronjob(cronjob: &CronJob, jobs: &[&Job], now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let (Some(_), Some(uid)) = (cronjob.spec.as_ref(), cronjob.metadata.uid.as_deref()) else {
        return plan;
    };
    let mut jobs: Vec<&Job> = jobs
        .iter()
        .copied()
        .filter(|j| pods::is_controlled_by(&j.metadata, uid))
        .collect();
    jobs.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let involved = object_reference("batch/v1", "CronJob", &cronjob.metadata);
    let namespace = cronjob.metadata.namespace.clone().unwrap_or_default();
    let name = cronjob.metadata.name.clone().unwrap_or_default();
    let status = cronjob.status.clone().unwrap_or_default();
    let mut new = status.clone();
    let mut events: Vec<(EventType, &str, String)> = Vec::new();

    cleanup_finished_jobs(cronjob, &jobs, &mut new, &mut plan, &involved);

    for job in &jobs {
        let finished = finished_type(job);
        let position = active_position(&new, job);
        match (position, finished) {
            (None, None) => events.push((
                EventType::Warning,
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    name_of(&job.metadata)
                ),
            )),
            (Some(i), Some(finished)) => {
                new.active.as_mut().expect("found in active").remove(i);
                events.push((
                    EventType::Normal,
                    "SawCompletedJob",
                    format!(
                        "Saw completed job: {}, status: {finished}",
                        name_of(&job.metadata)
                    ),
                ));
            }
            (Some(i), None) => {
                // A reference planned before the Job existed gets its uid now.
                let reference = &mut new.active.as_mut().expect("found in active")[i];
                if reference.uid.is_none() {
                    reference.uid = job.metadata.uid.clone();
                    reference.resource_version = job.metadata.resource_version.clone();
                }
            }
            (None, Some(_)) => {}
        }
        if finished == Some("Complete") {
            if let Some(completed) = job.status.as_ref().and_then(|s| s.completion_time.as_ref()) {
                if new
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|t| completed.0 > t.0)
                {
                    new.last_successful_time = Some(completed.clone());
                }
            }
        }
    }

    // A referenced Job that no longer exists would hold the CronJob
    // "active" (and block Forbid) forever.
    if let Some(active) = new.active.as_mut() {
        active.retain(|reference| {
            let exists = jobs.iter().any(|j| reference_matches(reference, j));
            if !exists {
                events.push((
                    EventType::Normal,
                    "MissingJob",
                    format!(
                        "Active job went missing: {}",
                        reference.name.as_deref().unwrap_or_default()
                    ),
                ));
            }
            exists
        });
    }

    schedule(cronjob, &jobs, now, &mut new, &mut plan, &mut events);

    if new.active.as_ref().is_some_and(|a| a.is_empty()) {
        new.active = None;
    }
    let mut status_written = status.clone();
    if status_written.active.as_ref().is_some_and(|a| a.is_empty()) {
        status_written.active = None;
    }
    if new != status_written {
        let mut updated = cronjob.clone();
        updated.status = Some(new);
        plan.push(Action::UpdateStatus {
            resource: Resource::CronJobs,
            namespace: Some(namespace),
            name,
            object: pods::to_value(&updated),
        });
    }
    for (event_type, reason, message) in events {
        plan.push(Action::Event {
            involved: involved.clone(),
            event_type,
            reason: reason.into(),
            message,
        });
    }
    plan
}

/// Decides whether a Job starts now (kube's syncCronJob after the
/// bookkeeping): creates it, deletes what Replace replaces, and requeues for
/// the next scheduled time.
fn schedule(
    cronjob: &CronJob,
    jobs: &[&Job],
    now: Timestamp,
    new: &mut CronJobStatus,
    plan: &mut Plan,
    events: &mut Vec<(EventType, &'static str, String)>,
) {
    let spec = cronjob.spec.as_ref().expect("checked by the caller");
    if cronjob.metadata.deletion_timestamp.is_some() {
        return;
    }
    let zone = match spec.time_zone.as_deref() {
        None => TimeZone::UTC,
        Some(name) => match TimeZone::get(name) {
            Ok(zone) => zone,
            Err(e) => {
                events.push((
                    EventType::Warning,
                    "UnknownTimeZone",
                    format!("invalid timeZone: {name:?}: {e}"),
                ));
                return;
            }
        },
    };
    if spec.suspend == Some(true) {
        return;
    }
    let schedule = match Schedule::parse(&spec.schedule) {
        Ok(schedule) => ZonedSchedule { schedule, zone },
        Err(e) => {
            events.push((
                EventType::Warning,
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            ));
            return;
        }
    };

    let created = cronjob
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let last = new
        .last_schedule_time
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(created);
    let mut earliest = last;
    if let Some(deadline) = spec.starting_deadline_seconds {
        // Nothing older than the deadline can start any more.
        let limit = Timestamp::from_second(now.as_second() - deadline).unwrap_or(now);
        earliest = earliest.max(limit);
    }
    let requeue = |plan: &mut Plan| {
        if let Some(next) = schedule.next_after(last.max(now)) {
            plan.requeue(until(now, next) + NEXT_SCHEDULE_DELTA);
        }
    };

    let scheduled = match most_recent_schedule_time(&schedule, earliest, now) {
        Err(e) => {
            events.push((
                EventType::Warning,
                "InvalidSchedule",
                format!("invalid schedule: {} : {e}", spec.schedule),
            ));
            return;
        }
        Ok((None, _)) => return requeue(plan),
        Ok((Some(t), missed)) => {
            if missed == Missed::Many {
                events.push((
                    EventType::Warning,
                    "TooManyMissedTimes",
                    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
                        .into(),
                ));
            }
            t
        }
    };

    // Kubernetes' guard against starting too late. The deadline already
    // bounds the search above, so this fires only if that bound and this
    // check ever disagree (as upstream, where the same holds).
    if let Some(deadline) = spec.starting_deadline_seconds {
        if scheduled.as_second() + deadline < now.as_second() {
            events.push((
                EventType::Warning,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000")
                ),
            ));
            return requeue(plan);
        }
    }

    let job_name = format!(
        "{}-{}",
        name_of(&cronjob.metadata),
        scheduled.as_second().div_euclid(60)
    );
    let active = new.active.get_or_insert_with(Vec::new);
    let already = active
        .iter()
        .any(|r| r.name.as_deref() == Some(job_name.as_str()))
        || new
            .last_schedule_time
            .as_ref()
            .is_some_and(|t| t.0 == scheduled);
    if already {
        return requeue(plan);
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !active.is_empty() {
        events.push((
            EventType::Normal,
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is Forbid"
                .into(),
        ));
        return requeue(plan);
    }
    if policy == "Replace" {
        let replaced: Vec<ObjectReference> = std::mem::take(active);
        for reference in replaced {
            match jobs.iter().find(|j| reference_matches(&reference, j)) {
                Some(job) => delete_job(plan, events, job),
                None => active.push(reference),
            }
        }
    }

    match jobs
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some(job_name.as_str()))
    {
        // Created by an earlier sync whose status write was lost: adopt it
        // into the active list instead of creating it again.
        Some(existing) => active.push(job_reference(existing)),
        None => {
            let job = job_from_template(cronjob, &schedule.zone, &job_name, scheduled);
            plan.push(Action::Create {
                resource: Resource::Jobs,
                namespace: cronjob.metadata.namespace.clone(),
                object: pods::to_value(&job),
            });
            events.push((
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created job {job_name}"),
            ));
            // The uid is known once the Job exists; the next sync fills it in.
            active.push(ObjectReference {
                api_version: Some("batch/v1".into()),
                kind: Some("Job".into()),
                name: Some(job_name),
                namespace: cronjob.metadata.namespace.clone(),
                ..Default::default()
            });
        }
    }
    new.last_schedule_time = Some(Time(scheduled));
    requeue(plan);
}

/// The latest scheduled time at or before `now` and after `earliest`, the
/// way Kubernetes estimates it: from the interval between the first two
/// firings, so a CronJob that missed years of starts costs little.
fn most_recent_schedule_time(
    schedule: &ZonedSchedule,
    earliest: Timestamp,
    now: Timestamp,
) -> Result<(Option<Timestamp>, Missed), String> {
    const NEVER: &str = "time difference between two schedules is less than 1 second";
    let t1 = schedule.next_after(earliest).ok_or(NEVER)?;
    if now < t1 {
        return Ok((None, Missed::NoneOrFew));
    }
    let Some(t2) = schedule.next_after(t1) else {
        return Ok((Some(t1), Missed::NoneOrFew));
    };
    if now < t2 {
        return Ok((Some(t1), Missed::NoneOrFew));
    }
    let interval = t2.as_second() - t1.as_second();
    if interval < 1 {
        return Err(NEVER.into());
    }
    let missed = (now.as_second() - t1.as_second()) / interval + 1;
    let potential_earliest = Timestamp::from_second(t1.as_second() + (missed - 2) * interval)
        .map_err(|e| e.to_string())?;
    let mut most_recent = None;
    let mut t = schedule.next_after(potential_earliest);
    while let Some(at) = t.filter(|at| *at <= now) {
        most_recent = Some(at);
        t = schedule.next_after(at);
    }
    let kind = if missed > TOO_MANY_MISSED {
        Missed::Many
    } else {
        Missed::NoneOrFew
    };
    Ok((most_recent, kind))
}

/// The Job for one scheduled time: the template's metadata and spec, named
/// after the scheduled minute so the name doubles as a lock against creating
/// it twice.
fn job_from_template(cronjob: &CronJob, zone: &TimeZone, name: &str, scheduled: Timestamp) -> Job {
    let template = &cronjob.spec.as_ref().expect("checked").job_template;
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(
        CRONJOB_SCHEDULED_TIMESTAMP.into(),
        rfc3339_in_zone(scheduled, zone),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: cronjob.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![pods::controller_reference(
                "batch/v1",
                "CronJob",
                &cronjob.metadata,
            )]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Go's RFC 3339 layout: "Z" for a zero offset, "+hh:mm" otherwise.
fn rfc3339_in_zone(t: Timestamp, zone: &TimeZone) -> String {
    let zoned = t.to_zoned(zone.clone());
    if zoned.offset().seconds() == 0 {
        zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// Deletes the oldest finished Jobs beyond successfulJobsHistoryLimit and
/// failedJobsHistoryLimit (kube's cleanupFinishedJobs).
fn cleanup_finished_jobs(
    cronjob: &CronJob,
    jobs: &[&Job],
    new: &mut CronJobStatus,
    plan: &mut Plan,
    involved: &serde_json::Value,
) {
    let spec = cronjob.spec.as_ref().expect("checked");
    let mut events = Vec::new();
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<&Job> = jobs
            .iter()
            .copied()
            .filter(|j| j.metadata.deletion_timestamp.is_none() && finished_type(j) == Some(kind))
            .collect();
        let excess = finished.len().saturating_sub(limit.max(0) as usize);
        if excess == 0 {
            continue;
        }
        finished.sort_by(|a, b| by_start_time(a, b));
        for job in &finished[..excess] {
            delete_job(plan, &mut events, job);
            if let Some(active) = new.active.as_mut() {
                active.retain(|r| !reference_matches(r, job));
            }
        }
    }
    for (event_type, reason, message) in events {
        plan.push(Action::Event {
            involved: involved.clone(),
            event_type,
            reason: reason.into(),
            message,
        });
    }
}

/// Oldest start first; Jobs that never started last; then by name.
fn by_start_time(a: &Job, b: &Job) -> std::cmp::Ordering {
    let start = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
    };
    match (start(a), start(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        _ => a.metadata.name.cmp(&b.metadata.name),
    }
}

fn delete_job(plan: &mut Plan, events: &mut Vec<(EventType, &'static str, String)>, job: &Job) {
    let name = name_of(&job.metadata);
    plan.push(Action::Delete {
        resource: Resource::Jobs,
        namespace: job.metadata.namespace.clone(),
        name: name.clone(),
        uid: job.metadata.uid.clone(),
        propagation: Some("Background"),
    });
    events.push((
        EventType::Normal,
        "SuccessfulDelete",
        format!("Deleted job {name}"),
    ));
}

/// "Complete" or "Failed" once the Job has that condition True.
fn finished_type(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find_map(|c| match (c.type_.as_str(), c.status.as_str()) {
            ("Complete", "True") => Some("Complete"),
            ("Failed", "True") => Some("Failed"),
            _ => None,
        })
}

fn active_position(status: &CronJobStatus, job: &Job) -> Option<usize> {
    status
        .active
        .as_ref()?
        .iter()
        .position(|r| reference_matches(r, job))
}

/// By uid; a reference written before the Job existed has only its name.
fn reference_matches(reference: &ObjectReference, job: &Job) -> bool {
    match (&reference.uid, &job.metadata.uid) {
        (Some(a), Some(b)) => a == b,
        _ => reference.name.is_some() && reference.name == job.metadata.name,
    }
}

fn job_reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    let ns = then.as_nanosecond() - now.as_nanosecond();
    Duration::from_nanos(ns.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// A CronJob `hello` created at 2026-01-01T00:00:00Z, with `spec` merged
    /// over a five-minute schedule and `status`.
    fn cronjob(spec: Value, status: Value) -> CronJob {
        let mut base = json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "hello", "namespace": "ns", "uid": "cj-uid", "resourceVersion": "3",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "schedule": "*/5 * * * *",
                "jobTemplate": {
                    "metadata": {"labels": {"app": "hello"}, "annotations": {"team": "a"}},
                    "spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}
                }
            },
            "status": status
        });
        if let (Some(b), Value::Object(p)) = (base["spec"].as_object_mut(), spec) {
            b.extend(p);
        }
        serde_json::from_value(base).unwrap()
    }

    /// A Job of the CronJob; `finished` is None, "Complete" or "Failed".
    fn job(name: &str, start: &str, finished: Option<&str>) -> Job {
        let mut status = json!({"startTime": start});
        if let Some(kind) = finished {
            status["conditions"] = json!([{"type": kind, "status": "True"}]);
            if kind == "Complete" {
                status["completionTime"] = json!(start);
            }
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "resourceVersion": "9",
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "hello", "uid": "cj-uid", "controller": true}]},
            "spec": {"template": {"spec": {"containers": []}}},
            "status": status
        }))
        .unwrap()
    }

    fn active(name: &str) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "name": name, "namespace": "ns", "uid": format!("uid-{name}")})
    }

    fn run(cj: &CronJob, jobs: &[Job], now: &str) -> Plan {
        let refs: Vec<&Job> = jobs.iter().collect();
        reconcile_cronjob(cj, &refs, ts(now))
    }

    fn summary(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .map(|a| match a {
                Action::Create { object, .. } => format!(
                    "create job {}",
                    object["metadata"]["name"].as_str().unwrap()
                ),
                Action::Delete {
                    name,
                    uid,
                    propagation,
                    ..
                } => {
                    format!(
                        "delete job {name} uid={} {}",
                        uid.as_deref().unwrap_or("-"),
                        propagation.unwrap_or("-")
                    )
                }
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

    fn check(plan: &Plan, want: &[&str], requeue: Option<Duration>) {
        assert_eq!(summary(plan), want, "plan: {plan:#?}");
        assert_eq!(plan.requeue_after, requeue, "requeue");
    }

    fn status_of(plan: &Plan) -> CronJobStatus {
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

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s) + NEXT_SCHEDULE_DELTA)
    }

    /// Applies a plan: created Jobs appear (with a uid), deleted ones go,
    /// status writes replace the CronJob's status.
    fn apply(cj: &mut CronJob, jobs: &mut Vec<Job>, plan: &Plan) {
        for action in &plan.actions {
            match action {
                Action::Create { object, .. } => {
                    let mut j: Job = serde_json::from_value(object.clone()).unwrap();
                    j.metadata.uid = Some(format!("uid-{}", j.metadata.name.clone().unwrap()));
                    j.metadata.resource_version = Some("1".into());
                    jobs.push(j);
                }
                Action::Delete { name, .. } => {
                    jobs.retain(|j| j.metadata.name.as_deref() != Some(name))
                }
                Action::UpdateStatus { object, .. } => {
                    *cj = serde_json::from_value(object.clone()).unwrap()
                }
                _ => {}
            }
        }
    }

    #[test]
    fn creates_the_job_for_the_scheduled_time() {
        let cj = cronjob(json!({}), json!({}));
        let plan = run(&cj, &[], "2026-01-01T00:05:20Z");
        // 2026-01-01T00:05:00Z is minute 29453765 since the epoch.
        check(
            &plan,
            &[
                "create job hello-29453765",
                "status",
                "event Normal SuccessfulCreate: Created job hello-29453765",
            ],
            secs(280),
        );
        let Action::Create {
            object, namespace, ..
        } = &plan.actions[0]
        else {
            panic!()
        };
        assert_eq!(namespace.as_deref(), Some("ns"));
        assert_eq!(object["metadata"]["labels"], json!({"app": "hello"}));
        assert_eq!(
            object["metadata"]["annotations"],
            json!({"team": "a", "batch.kubernetes.io/cronjob-scheduled-timestamp": "2026-01-01T00:05:00Z"})
        );
        assert_eq!(object["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        assert_eq!(
            object["spec"]["template"]["spec"]["restartPolicy"],
            "OnFailure"
        );
        let status = status_of(&plan);
        assert_eq!(
            status.last_schedule_time,
            Some(Time(ts("2026-01-01T00:05:00Z")))
        );
        let refs = status.active.unwrap();
        assert_eq!(
            (refs[0].name.as_deref(), refs[0].uid.as_deref()),
            (Some("hello-29453765"), None)
        );

        // After the writes: the uid is filled in, then nothing more to do.
        let (mut cj, mut jobs) = (cj, Vec::new());
        apply(&mut cj, &mut jobs, &plan);
        let plan = run(&cj, &jobs, "2026-01-01T00:05:21Z");
        check(&plan, &["status"], secs(279));
        assert_eq!(
            status_of(&plan).active.unwrap()[0].uid.as_deref(),
            Some("uid-hello-29453765")
        );
        apply(&mut cj, &mut jobs, &plan);
        check(&run(&cj, &jobs, "2026-01-01T00:05:22Z"), &[], secs(278));
    }

    #[test]
    fn nothing_before_the_first_scheduled_time() {
        let cj = cronjob(json!({}), json!({}));
        check(&run(&cj, &[], "2026-01-01T00:03:00Z"), &[], secs(120));
    }

    #[test]
    fn schedules_in_the_cronjob_time_zone() {
        // 09:00 in Tokyo is 00:00 UTC.
        let cj = cronjob(
            json!({"schedule": "0 9 * * *", "timeZone": "Asia/Tokyo"}),
            json!({}),
        );
        let plan = run(&cj, &[], "2026-01-02T00:00:30Z");
        assert_eq!(summary(&plan)[0], "create job hello-29455200");
        let Action::Create { object, .. } = &plan.actions[0] else {
            panic!()
        };
        assert_eq!(
            object["metadata"]["annotations"][CRONJOB_SCHEDULED_TIMESTAMP],
            "2026-01-02T09:00:00+09:00"
        );
        assert_eq!(plan.requeue_after, secs(86_400 - 30));
        // New York observes DST: 02:30 does not exist on 2026-03-08, and
        // 01:30 happens twice on 2026-11-01 but fires once.
        let ny = ZonedSchedule {
            schedule: Schedule::parse("30 2 * * *").unwrap(),
            zone: TimeZone::get("America/New_York").unwrap(),
        };
        assert_eq!(
            ny.next_after(ts("2026-03-07T08:00:00Z")),
            Some(ts("2026-03-09T06:30:00Z"))
        );
        let ny = ZonedSchedule {
            schedule: Schedule::parse("30 1 * * *").unwrap(),
            ..ny
        };
        assert_eq!(
            ny.next_after(ts("2026-11-01T04:00:00Z")),
            Some(ts("2026-11-01T05:30:00Z"))
        );
        assert_eq!(
            ny.next_after(ts("2026-11-01T05:30:00Z")),
            Some(ts("2026-11-02T06:30:00Z"))
        );
    }

    #[test]
    fn unknown_time_zone_and_bad_schedule_warn_and_stop() {
        let cj = cronjob(json!({"timeZone": "Mars/Olympus"}), json!({}));
        let plan = run(&cj, &[], "2026-01-01T00:05:00Z");
        assert_eq!(plan.actions.len(), 1);
        let Action::Event {
            reason, message, ..
        } = &plan.actions[0]
        else {
            panic!()
        };
        assert_eq!(reason, "UnknownTimeZone");
        assert!(
            message.starts_with("invalid timeZone: \"Mars/Olympus\": "),
            "{message}"
        );
        assert_eq!(plan.requeue_after, None);

        let cj = cronjob(json!({"schedule": "61 * * * *"}), json!({}));
        check(
            &run(&cj, &[], "2026-01-01T00:05:00Z"),
            &["event Warning UnparseableSchedule: unparseable schedule: \"61 * * * *\" : end of range (61) above maximum (59): 61"],
            None,
        );
        let cj = cronjob(json!({"schedule": "0 0 30 2 *"}), json!({}));
        check(
            &run(&cj, &[], "2026-01-01T00:05:00Z"),
            &["event Warning InvalidSchedule: invalid schedule: 0 0 30 2 * : time difference between two schedules is less than 1 second"],
            None,
        );
    }

    #[test]
    fn only_the_most_recent_missed_time_starts() {
        let cj = cronjob(
            json!({}),
            json!({"lastScheduleTime": "2026-01-01T00:05:00Z"}),
        );
        let plan = run(&cj, &[], "2026-01-01T00:31:00Z");
        check(
            &plan,
            &[
                "create job hello-29453790",
                "status",
                "event Normal SuccessfulCreate: Created job hello-29453790",
            ],
            secs(240),
        );
    }

    #[test]
    fn starting_deadline_skips_starts_that_are_too_late() {
        let cj = cronjob(
            json!({"startingDeadlineSeconds": 30}),
            json!({"lastScheduleTime": "2026-01-01T00:05:00Z"}),
        );
        // 00:10 is more than 30s ago: it is never started; wait for 00:15.
        check(&run(&cj, &[], "2026-01-01T00:10:31Z"), &[], secs(269));
        // Within the deadline it starts.
        assert_eq!(
            summary(&run(&cj, &[], "2026-01-01T00:10:29Z"))[0],
            "create job hello-29453770"
        );
    }

    #[test]
    fn too_many_missed_times_warns_and_starts_the_latest() {
        let cj = cronjob(json!({}), json!({}));
        let plan = run(&cj, &[], "2026-01-02T00:01:00Z");
        check(
            &plan,
            &[
                "create job hello-29455200",
                "status",
                "event Warning TooManyMissedTimes: too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                "event Normal SuccessfulCreate: Created job hello-29455200",
            ],
            secs(240),
        );
    }

    #[test]
    fn forbid_skips_while_a_job_runs() {
        let running = job("hello-29453765", "2026-01-01T00:05:00Z", None);
        let cj = cronjob(
            json!({"concurrencyPolicy": "Forbid"}),
            json!({"lastScheduleTime": "2026-01-01T00:05:00Z", "active": [active("hello-29453765")]}),
        );
        check(
            &run(&cj, std::slice::from_ref(&running), "2026-01-01T00:10:00Z"),
            &["event Normal JobAlreadyActive: Not starting job because prior execution is running and concurrency policy is Forbid"],
            secs(300),
        );
        // Allow starts another alongside.
        let allow = cronjob(
            json!({}),
            json!({"lastScheduleTime": "2026-01-01T00:05:00Z", "active": [active("hello-29453765")]}),
        );
        let plan = run(&allow, &[running], "2026-01-01T00:10:00Z");
        assert_eq!(summary(&plan)[0], "create job hello-29453770");
        assert_eq!(status_of(&plan).active.unwrap().len(), 2);
    }

    #[test]
    fn replace_deletes_the_running_job_first() {
        let running = job("hello-29453765", "2026-01-01T00:05:00Z", None);
        let cj = cronjob(
            json!({"concurrencyPolicy": "Replace"}),
            json!({"lastScheduleTime": "2026-01-01T00:05:00Z", "active": [active("hello-29453765")]}),
        );
        let plan = run(&cj, &[running], "2026-01-01T00:10:00Z");
        check(
            &plan,
            &[
                "delete job hello-29453765 uid=uid-hello-29453765 Background",
                "create job hello-29453770",
                "status",
                "event Normal SuccessfulDelete: Deleted job hello-29453765",
                "event Normal SuccessfulCreate: Created job hello-29453770",
            ],
            secs(300),
        );
        let names: Vec<_> = status_of(&plan)
            .active
            .unwrap()
            .into_iter()
            .map(|r| r.name.unwrap())
            .collect();
        assert_eq!(names, ["hello-29453770"]);
    }

    #[test]
    fn suspended_cronjob_starts_nothing_and_does_not_requeue() {
        let cj = cronjob(json!({"suspend": true}), json!({}));
        check(&run(&cj, &[], "2026-01-01T00:05:00Z"), &[], None);
    }

    #[test]
    fn completed_jobs_leave_active_and_set_last_successful_time() {
        let done = job("hello-29453765", "2026-01-01T00:05:00Z", Some("Complete"));
        let cj = cronjob(
            json!({}),
            json!({"lastScheduleTime": "2026-01-01T00:05:00Z", "active": [active("hello-29453765")]}),
        );
        let plan = run(&cj, &[done], "2026-01-01T00:06:00Z");
        check(
            &plan,
            &[
                "status",
                "event Normal SawCompletedJob: Saw completed job: hello-29453765, status: Complete",
            ],
            secs(240),
        );
        let status = status_of(&plan);
        assert_eq!(status.active, None);
        assert_eq!(
            status.last_successful_time,
            Some(Time(ts("2026-01-01T00:05:00Z")))
        );
    }

    #[test]
    fn history_limits_delete_the_oldest_finished_jobs() {
        let jobs = [
            job("hello-1", "2026-01-01T00:01:00Z", Some("Complete")),
            job("hello-2", "2026-01-01T00:02:00Z", Some("Complete")),
            job("hello-3", "2026-01-01T00:03:00Z", Some("Complete")),
            job("hello-4", "2026-01-01T00:04:00Z", Some("Failed")),
            job("hello-5", "2026-01-01T00:04:30Z", Some("Failed")),
        ];
        let cj = cronjob(
            json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1}),
            json!({"lastScheduleTime": "2026-01-01T00:05:00Z", "lastSuccessfulTime": "2026-01-01T00:03:00Z"}),
        );
        let plan = run(&cj, &jobs, "2026-01-01T00:06:00Z");
        check(
            &plan,
            &[
                "delete job hello-1 uid=uid-hello-1 Background",
                "delete job hello-2 uid=uid-hello-2 Background",
                "delete job hello-4 uid=uid-hello-4 Background",
                "event Normal SuccessfulDelete: Deleted job hello-1",
                "event Normal SuccessfulDelete: Deleted job hello-2",
                "event Normal SuccessfulDelete: Deleted job hello-4",
            ],
            secs(240),
        );
        let (mut cj, mut jobs) = (cj, jobs.to_vec());
        apply(&mut cj, &mut jobs, &plan);
        check(&run(&cj, &jobs, "2026-01-01T00:06:00Z"), &[], secs(240));
    }

    #[test]
    fn unexpected_and_missing_jobs() {
        let stray = job("hello-stray", "2026-01-01T00:01:00Z", None);
        let cj = cronjob(
            json!({}),
            json!({"lastScheduleTime": "2026-01-01T00:05:00Z", "active": [active("hello-gone")]}),
        );
        let plan = run(&cj, &[stray], "2026-01-01T00:06:00Z");
        check(
            &plan,
            &[
                "status",
                "event Warning UnexpectedJob: Saw a job that the controller did not create or forgot: hello-stray",
                "event Normal MissingJob: Active job went missing: hello-gone",
            ],
            secs(240),
        );
        assert_eq!(status_of(&plan).active, None);
    }

    #[test]
    fn a_created_job_whose_status_write_was_lost_is_adopted() {
        let created = job("hello-29453765", "2026-01-01T00:05:00Z", None);
        let cj = cronjob(json!({}), json!({}));
        let plan = run(&cj, &[created], "2026-01-01T00:05:30Z");
        check(
            &plan,
            &[
                "status",
                "event Warning UnexpectedJob: Saw a job that the controller did not create or forgot: hello-29453765",
            ],
            secs(270),
        );
        let status = status_of(&plan);
        assert_eq!(
            status.active.unwrap()[0].uid.as_deref(),
            Some("uid-hello-29453765")
        );
        assert_eq!(
            status.last_schedule_time,
            Some(Time(ts("2026-01-01T00:05:00Z")))
        );
    }

    #[test]
    fn deleting_cronjob_only_updates_status() {
        let mut cj = cronjob(json!({}), json!({"active": [active("hello-gone")]}));
        cj.metadata.deletion_timestamp = Some(Time(ts("2026-01-01T00:04:00Z")));
        check(
            &run(&cj, &[], "2026-01-01T00:05:00Z"),
            &[
                "status",
                "event Normal MissingJob: Active job went missing: hello-gone",
            ],
            None,
        );
    }
}
