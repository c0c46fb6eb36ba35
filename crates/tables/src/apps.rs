//! Printers for workload kinds (apps and batch): replica counts, containers
//! and images of the pod template, and job progress.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::duration;
use crate::value::{
    age, array_at, container_cells, format_label_selector, format_labels, get, has_true_condition,
    i64_at, is_deleting, name, opt_i64, opt_str, timestamp_at,
};
use crate::{col, wide, CellsFn, Column, Printer, AGE, NAME};

pub(crate) fn printer(group: &str, kind: &str) -> Option<Printer> {
    let (columns, cells): (&'static [Column], CellsFn) = match (group, kind) {
        ("apps", "Deployment") => (DEPLOYMENT_COLUMNS, deployment_cells),
        ("apps", "ReplicaSet") => (REPLICA_SET_COLUMNS, replica_set_cells),
        ("apps", "StatefulSet") => (STATEFUL_SET_COLUMNS, stateful_set_cells),
        ("apps", "DaemonSet") => (DAEMON_SET_COLUMNS, daemon_set_cells),
        ("apps", "ControllerRevision") => (CONTROLLER_REVISION_COLUMNS, controller_revision_cells),
        ("batch", "Job") => (JOB_COLUMNS, job_cells),
        ("batch", "CronJob") => (CRON_JOB_COLUMNS, cron_job_cells),
        _ => return None,
    };
    Some(Printer {
        columns,
        cells,
        conditions: None,
    })
}

const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);
const SELECTOR: Column = wide("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.");

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
    col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

/// `spec.replicas` defaults to 1 for every workload kind that has it.
fn desired_replicas(object: &Value) -> i64 {
    opt_i64(object, "spec.replicas").unwrap_or(1)
}

fn deployment_cells(deployment: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = container_cells(get(deployment, "spec.template.spec"));
    vec![
        json!(name(deployment)),
        json!(format!(
            "{}/{}",
            i64_at(deployment, "status.readyReplicas"),
            desired_replicas(deployment)
        )),
        json!(i64_at(deployment, "status.updatedReplicas")),
        json!(i64_at(deployment, "status.availableReplicas")),
        json!(age(deployment, now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(get(deployment, "spec.selector"))),
    ]
}

const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired pods.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn replica_set_cells(replica_set: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = container_cells(get(replica_set, "spec.template.spec"));
    vec![
        json!(name(replica_set)),
        json!(desired_replicas(replica_set)),
        json!(i64_at(replica_set, "status.replicas")),
        json!(i64_at(replica_set, "status.readyReplicas")),
        json!(age(replica_set, now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(get(replica_set, "spec.selector"))),
    ]
}

const STATEFUL_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

fn stateful_set_cells(stateful_set: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = container_cells(get(stateful_set, "spec.template.spec"));
    vec![
        json!(name(stateful_set)),
        json!(format!(
            "{}/{}",
            i64_at(stateful_set, "status.readyReplicas"),
            desired_replicas(stateful_set)
        )),
        json!(age(stateful_set, now)),
        json!(containers),
        json!(images),
    ]
}

const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod)."),
    col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
    col("Ready", "integer", "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
    col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
    col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn daemon_set_cells(daemon_set: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = container_cells(get(daemon_set, "spec.template.spec"));
    vec![
        json!(name(daemon_set)),
        json!(i64_at(daemon_set, "status.desiredNumberScheduled")),
        json!(i64_at(daemon_set, "status.currentNumberScheduled")),
        json!(i64_at(daemon_set, "status.numberReady")),
        json!(i64_at(daemon_set, "status.updatedNumberScheduled")),
        json!(i64_at(daemon_set, "status.numberAvailable")),
        json!(format_labels(get(
            daemon_set,
            "spec.template.spec.nodeSelector"
        ))),
        json!(age(daemon_set, now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(get(daemon_set, "spec.selector"))),
    ]
}

const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

fn controller_revision_cells(revision: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let controller = array_at(revision, "metadata.ownerReferences")
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|o| {
            let api_version = opt_str(o, "apiVersion").unwrap_or_default();
            let group = api_version
                .rsplit_once('/')
                .map(|(g, _)| g)
                .unwrap_or_default();
            let kind = opt_str(o, "kind").unwrap_or_default().to_lowercase();
            let kind = if group.is_empty() {
                kind
            } else {
                format!("{kind}.{group}")
            };
            format!("{kind}/{}", opt_str(o, "name").unwrap_or_default())
        })
        .unwrap_or_else(|| "<none>".to_string());
    vec![
        json!(name(revision)),
        json!(controller),
        json!(i64_at(revision, "revision")),
        json!(age(revision, now)),
    ]
}

const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

/// Kubernetes' job Status column; terminal conditions win over deletion.
pub(crate) fn job_status(job: &Value) -> &'static str {
    let conditions = array_at(job, "status.conditions");
    if has_true_condition(conditions, "Complete") {
        "Complete"
    } else if has_true_condition(conditions, "Failed") {
        "Failed"
    } else if is_deleting(job) {
        "Terminating"
    } else if has_true_condition(conditions, "Suspended") {
        "Suspended"
    } else if has_true_condition(conditions, "FailureTarget") {
        "FailureTarget"
    } else if has_true_condition(conditions, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

/// Kubernetes' job Completions column (`1/3`, or `0/1 of 4` for a work queue).
pub(crate) fn job_completions(job: &Value) -> String {
    let succeeded = i64_at(job, "status.succeeded");
    match (
        opt_i64(job, "spec.completions"),
        opt_i64(job, "spec.parallelism"),
    ) {
        (Some(completions), _) => format!("{succeeded}/{completions}"),
        (None, Some(parallelism)) if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
        _ => format!("{succeeded}/1"),
    }
}

/// Run time so far, or start to completion; empty before the job starts.
pub(crate) fn job_duration(job: &Value, now: DateTime<Utc>) -> String {
    match (
        timestamp_at(job, "status.startTime"),
        timestamp_at(job, "status.completionTime"),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => duration::human_duration(now - start),
        (Some(start), Some(end)) => duration::human_duration(end - start),
    }
}

fn job_cells(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = container_cells(get(job, "spec.template.spec"));
    vec![
        json!(name(job)),
        json!(job_status(job)),
        json!(job_completions(job)),
        json!(job_duration(job, now)),
        json!(age(job, now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(get(job, "spec.selector"))),
    ]
}

const CRON_JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    col("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
    col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions."),
    col("Active", "integer", "A list of pointers to currently running jobs."),
    col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn cron_job_cells(cron_job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) =
        container_cells(get(cron_job, "spec.jobTemplate.spec.template.spec"));
    let suspend = match get(cron_job, "spec.suspend").and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let last_schedule = match timestamp_at(cron_job, "status.lastScheduleTime") {
        Some(t) => duration::since(Some(t), now),
        None => "<none>".to_string(),
    };
    vec![
        json!(name(cron_job)),
        json!(opt_str(cron_job, "spec.schedule").unwrap_or_default()),
        json!(opt_str(cron_job, "spec.timeZone").unwrap_or("<none>")),
        json!(suspend),
        json!(array_at(cron_job, "status.active").len()),
        json!(last_schedule),
        json!(age(cron_job, now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(get(
            cron_job,
            "spec.jobTemplate.spec.selector"
        ))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::parse_timestamp;

    /// Formats a job's Status, Completions and Duration as `status | completions | duration`.
    fn check(job: Value, expect: &str) {
        let now = parse_timestamp("2024-01-01T12:00:00Z").unwrap();
        assert_eq!(
            format!(
                "{} | {} | {}",
                job_status(&job),
                job_completions(&job),
                job_duration(&job, now)
            ),
            expect,
            "{job}"
        );
    }

    #[test]
    fn job_columns() {
        check(json!({}), "Running | 0/1 | ");
        check(
            json!({"spec": {"completions": 3}, "status": {"succeeded": 1, "startTime": "2024-01-01T11:58:00Z"}}),
            "Running | 1/3 | 2m",
        );
        check(
            json!({"spec": {"parallelism": 4}, "status": {"succeeded": 0}}),
            "Running | 0/1 of 4 | ",
        );
        check(json!({"spec": {"parallelism": 1}}), "Running | 0/1 | ");
        check(
            json!({"spec": {"completions": 1}, "status": {"succeeded": 1, "startTime": "2024-01-01T11:00:00Z", "completionTime": "2024-01-01T11:00:09Z", "conditions": [{"type": "Complete", "status": "True"}]}}),
            "Complete | 1/1 | 9s",
        );
        check(
            json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}),
            "Failed | 0/1 | ",
        );
        check(
            json!({"status": {"conditions": [{"type": "Complete", "status": "False"}]}}),
            "Running | 0/1 | ",
        );
        check(
            json!({"metadata": {"deletionTimestamp": "2024-01-01T11:00:00Z"}}),
            "Terminating | 0/1 | ",
        );
        check(
            json!({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}}),
            "Suspended | 0/1 | ",
        );
        check(
            json!({"status": {"conditions": [{"type": "FailureTarget", "status": "True"}]}}),
            "FailureTarget | 0/1 | ",
        );
        check(
            json!({"status": {"conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]}}),
            "SuccessCriteriaMet | 0/1 | ",
        );
    }
}
