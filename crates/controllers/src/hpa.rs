//! The HorizontalPodAutoscaler controller (autoscaling/v2), as
//! kube-controller-manager's `pkg/controller/podautoscaler` computes it:
//! resource metrics (cpu, memory; `Utilization` of requests or
//! `AverageValue`) → a replica proposal with the 10 % tolerance and the
//! missing-metric and not-yet-ready-pod rules, then stabilization windows,
//! behavior policies and min/max clamping, the `scale` subresource patch,
//! and status with the AbleToScale / ScalingActive / ScalingLimited
//! conditions and Kubernetes' reasons and messages.
//!
//! What Kubernetes keeps in the controller's memory (recommendations for the
//! stabilization windows, recent scale events for the policies) is
//! [`HpaHistory`], plain data the runtime keeps per HPA between calls.
//! Inputs the runtime reads for it: the target's [`Scale`] (spec replicas and
//! the status selector of the `scale` subresource), the pods of the HPA's
//! namespace (filtered here by the selector) and [`PodMetrics`] (the
//! resource metrics API's per-pod usage).
//!
//! Differences from Kubernetes, all deliberate:
//! - Only `Resource` metrics are computed; `ContainerResource`, `Pods`,
//!   `Object` and `External` metrics fail the way an unavailable metrics API
//!   does (`FailedGet…Metric`), since drover serves no custom or external
//!   metrics API and its pod metrics are per pod, not per container.
//! - Metrics of pods that are not selected are ignored (the metrics API is
//!   queried by the same selector in Kubernetes, so they match anyway).
//! - `currentMetrics` lists only the metrics that could be computed, where
//!   Kubernetes leaves an empty entry for each failed one.
//! - Warning events (FailedGetScale, FailedGetResourceMetric,
//!   FailedComputeMetricsReplicas, …) are emitted when they change the
//!   status, not on every 15 s sync: a reconcile that changes nothing writes
//!   nothing.
//! - `status.observedGeneration` is set to `metadata.generation` (Kubernetes
//!   leaves it unset).
//! - The API server defaults Kubernetes applies to autoscaling/v2 HPAs are
//!   applied here too, in case drover's API server did not: no metrics means
//!   cpu at 80 % utilization; a `behavior` with missing fields gets the
//!   default scale-up / scale-down rules.
//! - `behavior.scaleUp/scaleDown.tolerance` (alpha in 1.33) is honoured when
//!   present.
//! - No check for pods selected by several HPAs (`AmbiguousSelector`): that
//!   needs every HPA's selector. TODO(wiring).
//! - Scale events are recorded in the returned history when the plan
//!   patches the scale; the runtime should keep the old history if that
//!   patch fails (Kubernetes records them only after a successful update).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition,
    HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus, MetricTarget, MetricValueStatus,
    ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use crate::plan::{object_reference, Action, EventType, Plan, Resource};
use crate::pods;

/// `--horizontal-pod-autoscaler-sync-period`: every HPA is reconciled this often.
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);
/// `--horizontal-pod-autoscaler-tolerance`: usage within ±10 % of the target
/// does not scale.
pub const TOLERANCE: f64 = 0.1;
/// `--horizontal-pod-autoscaler-cpu-initialization-period`.
pub const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
/// `--horizontal-pod-autoscaler-initial-readiness-delay`.
pub const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);
/// `--horizontal-pod-autoscaler-downscale-stabilization`.
pub const DOWNSCALE_STABILIZATION_WINDOW: Duration = Duration::from_secs(300);

/// Without `behavior`, one scale-up goes to at most
/// `max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM)`.
const SCALE_UP_LIMIT_FACTOR: f64 = 2.0;
const SCALE_UP_LIMIT_MINIMUM: f64 = 4.0;

/// The target's `scale` subresource as the HPA reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scale {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.selector`: the label selector in its string form
    /// (`app=web,tier in (fe)`); empty if the target has none.
    pub selector: String,
}

/// Resource usage per pod, as the resource metrics API
/// (`metrics.k8s.io` PodMetrics, summed over containers) reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMetrics {
    /// By pod name (in the HPA's namespace).
    pub pods: BTreeMap<String, PodUsage>,
}

/// One pod's usage sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodUsage {
    /// CPU in millicores; `None` if not reported.
    pub cpu_milli: Option<i64>,
    /// Memory working set in bytes; `None` if not reported.
    pub memory_bytes: Option<i64>,
    /// When the sample was taken (end of the window).
    pub timestamp: jiff::Timestamp,
    /// The window the sample was averaged over.
    pub window: Duration,
}

/// What the controller remembers about one HPA between reconciles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HpaHistory {
    /// Unstabilized recommendations, for the stabilization windows.
    pub recommendations: Vec<Recommendation>,
    /// Recent scale-ups (replicas added), for the scale-up policies.
    pub scale_up_events: Vec<ScaleEvent>,
    /// Recent scale-downs (replicas removed), for the scale-down policies.
    pub scale_down_events: Vec<ScaleEvent>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recommendation {
    pub replicas: i32,
    pub at: jiff::Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleEvent {
    /// Replicas added (scale-up) or removed (scale-down), positive.
    pub change: i32,
    pub at: jiff::Timestamp,
}

/// One HPA: compute the desired replica count, patch the target's scale if
/// it differs, write status, and requeue after [`SYNC_PERIOD`]. `target` is
/// `None` when the target does not exist. Returns the history to keep.
pub fn reconcile_hpa(
    hpa: &HorizontalPodAutoscaler,
    target: Option<&Scale>,
    pods: &[&Pod],
    metrics: &PodMetrics,
    history: &HpaHistory,
    now: jiff::Timestamp,
) -> (Plan, HpaHistory) {
    let mut run = Run {
        hpa,
        now,
        plan: Plan::default(),
        history: history.clone(),
        status: hpa.status.clone().unwrap_or_default(),
        warnings: Vec::new(),
    };
    run.plan.requeue(SYNC_PERIOD);
    run.reconcile(target, pods, metrics);
    run.finish()
}

/// The state of one reconcile: the status being built (conditions are set
/// in place, as Kubernetes' `setCondition` does) and the actions so far.
struct Run<'a> {
    hpa: &'a HorizontalPodAutoscaler,
    now: jiff::Timestamp,
    plan: Plan,
    history: HpaHistory,
    status: HorizontalPodAutoscalerStatus,
    /// Warning events `(reason, message)`, emitted if the status changes.
    warnings: Vec<(&'static str, String)>,
}

const ABLE_TO_SCALE: &str = "AbleToScale";
const SCALING_ACTIVE: &str = "ScalingActive";
const SCALING_LIMITED: &str = "ScalingLimited";

impl Run<'_> {
    fn reconcile(&mut self, target: Option<&Scale>, pods: &[&Pod], metrics: &PodMetrics) {
        let hpa = self.hpa;
        let spec = hpa.spec.clone().unwrap_or_default();
        let target_ref = &spec.scale_target_ref;
        let (resource, plural) = match scale_resource(
            target_ref.api_version.as_deref().unwrap_or_default(),
            &target_ref.kind,
        ) {
            Ok(r) => r,
            Err(err) => return self.failed_get_scale(err),
        };
        let Some(scale) = target else {
            return self.failed_get_scale(format!("{plural} \"{}\" not found", target_ref.name));
        };
        self.set_condition(
            ABLE_TO_SCALE,
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale".into(),
        );
        let current = scale.replicas;
        if self.history.recommendations.is_empty() {
            self.history.recommendations.push(Recommendation {
                replicas: current,
                at: self.now,
            });
        }
        let min_replicas = spec.min_replicas.unwrap_or(1);
        let max_replicas = spec.max_replicas;

        let mut metric_statuses = Vec::new();
        let mut desired;
        let mut rescale_reason = String::new();
        let mut rescale = true;
        if current == 0 && min_replicas != 0 {
            desired = 0;
            rescale = false;
            self.set_condition(
                SCALING_ACTIVE,
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero".into(),
            );
        } else if current > max_replicas {
            rescale_reason = "Current number of replicas above Spec.MaxReplicas".into();
            desired = max_replicas;
        } else if current < min_replicas {
            rescale_reason = "Current number of replicas below Spec.MinReplicas".into();
            desired = min_replicas;
        } else {
            let outcome = self.compute_replicas_for_metrics(&spec.metrics, scale, pods, metrics);
            metric_statuses = outcome.statuses;
            if let (Some(err), None) = (&outcome.error, outcome.replicas) {
                self.status.current_replicas = nonzero(current);
                self.status.current_metrics = non_empty(metric_statuses);
                self.warnings
                    .push(("FailedComputeMetricsReplicas", err.clone()));
                return;
            }
            desired = 0;
            let mut rescale_metric = String::new();
            let proposal = outcome.replicas.unwrap_or(0);
            if proposal > desired {
                desired = proposal;
                rescale_metric = outcome.metric;
            }
            if desired > current {
                rescale_reason = format!("{rescale_metric} above target");
            }
            if desired < current {
                rescale_reason = "All metrics below target".into();
            }
            desired = match &spec.behavior {
                None => self.normalize(current, desired, min_replicas, max_replicas),
                Some(behavior) => {
                    let rules = Rules::of(behavior);
                    self.normalize_with_behaviors(
                        &rules,
                        current,
                        desired,
                        min_replicas,
                        max_replicas,
                    )
                }
            };
            rescale = desired != current;
        }

        if rescale {
            self.plan.push(Action::Patch {
                resource,
                namespace: hpa.metadata.namespace.clone(),
                name: target_ref.name.clone(),
                subresource: Some("scale"),
                patch: json!({"spec": {"replicas": desired}}),
            });
            self.set_condition(
                ABLE_TO_SCALE,
                "True",
                "SucceededRescale",
                format!("the HPA controller was able to update the target scale to {desired}"),
            );
            self.plan.push(Action::Event {
                involved: object_reference(
                    "autoscaling/v2",
                    "HorizontalPodAutoscaler",
                    &hpa.metadata,
                ),
                event_type: EventType::Normal,
                reason: "SuccessfulRescale".into(),
                message: format!("New size: {desired}; reason: {rescale_reason}"),
            });
            if let Some(behavior) = &spec.behavior {
                self.store_scale_event(&Rules::of(behavior), current, desired);
            }
        } else {
            desired = current;
        }
        self.status.current_replicas = nonzero(current);
        self.status.desired_replicas = desired;
        self.status.current_metrics = non_empty(metric_statuses);
        if rescale {
            self.status.last_scale_time = Some(Time(self.now));
        }
    }

    fn failed_get_scale(&mut self, err: String) {
        self.set_condition(
            ABLE_TO_SCALE,
            "False",
            "FailedGetScale",
            format!("the HPA controller was unable to get the target's current scale: {err}"),
        );
        self.warnings.push(("FailedGetScale", err));
    }

    /// Writes status if it changed (with the warnings that changed it).
    fn finish(mut self) -> (Plan, HpaHistory) {
        let hpa = self.hpa;
        self.status.observed_generation = hpa.metadata.generation;
        if hpa.status.clone().unwrap_or_default() != self.status {
            let mut object = hpa.clone();
            object.status = Some(self.status);
            self.plan.push(Action::UpdateStatus {
                resource: Resource::HorizontalPodAutoscalers,
                namespace: hpa.metadata.namespace.clone(),
                name: hpa.metadata.name.clone().unwrap_or_default(),
                object: pods::to_value(&object),
            });
            let involved =
                object_reference("autoscaling/v2", "HorizontalPodAutoscaler", &hpa.metadata);
            for (reason, message) in self.warnings {
                self.plan.push(Action::Event {
                    involved: involved.clone(),
                    event_type: EventType::Warning,
                    reason: reason.into(),
                    message,
                });
            }
        }
        (self.plan, self.history)
    }

    /// `setCondition`: the transition time moves only when the status does.
    fn set_condition(&mut self, type_: &str, status: &str, reason: &str, message: String) {
        let conditions = self.status.conditions.get_or_insert_with(Vec::new);
        let index = match conditions.iter().position(|c| c.type_ == type_) {
            Some(i) => i,
            None => {
                conditions.push(HorizontalPodAutoscalerCondition {
                    type_: type_.into(),
                    ..Default::default()
                });
                conditions.len() - 1
            }
        };
        let condition = &mut conditions[index];
        if condition.status != status {
            condition.last_transition_time = Some(Time(self.now));
        }
        condition.status = status.into();
        condition.reason = Some(reason.into());
        condition.message = Some(message);
    }

    /// `computeReplicasForMetrics`: the largest proposal over the metrics;
    /// `replicas: None` when the metrics cannot be used (all invalid, or
    /// some invalid and the valid ones would scale down).
    fn compute_replicas_for_metrics(
        &mut self,
        specs: &Option<Vec<MetricSpec>>,
        scale: &Scale,
        pods: &[&Pod],
        metrics: &PodMetrics,
    ) -> MetricsOutcome {
        let selector = match self.parse_selector(&scale.selector) {
            Ok(selector) => selector,
            Err(err) => {
                return MetricsOutcome {
                    replicas: None,
                    metric: String::new(),
                    statuses: Vec::new(),
                    error: Some(err),
                }
            }
        };
        let namespace = self.hpa.metadata.namespace.as_deref();
        let selected: Vec<&Pod> = pods
            .iter()
            .copied()
            .filter(|p| namespace.is_none() || p.metadata.namespace.as_deref() == namespace)
            .filter(|p| selector.matches(p.metadata.labels.as_ref()))
            .collect();
        let specs = specs.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| {
            vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(k8s_openapi::api::autoscaling::v2::ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(80),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]
        });
        let tolerances = Tolerances::of(self.hpa);

        let mut replicas = 0;
        let mut metric = String::new();
        let mut statuses = Vec::new();
        let mut invalid = 0;
        let mut first_invalid: Option<MetricFailure> = None;
        for spec in &specs {
            match self.compute_replicas_for_metric(
                spec,
                scale.replicas,
                &selected,
                metrics,
                tolerances,
            ) {
                Ok(proposal) => {
                    statuses.push(proposal.status);
                    if replicas == 0 || proposal.replicas > replicas {
                        replicas = proposal.replicas;
                        metric = proposal.metric;
                    }
                }
                Err(failure) => {
                    invalid += 1;
                    if first_invalid.is_none() {
                        first_invalid = Some(failure);
                    }
                }
            }
        }
        let error = first_invalid
            .as_ref()
            .map(|MetricFailure { error: e, .. }| {
                format!(
                    "invalid metrics ({invalid} invalid out of {}), first error is: {e}",
                    specs.len()
                )
            });
        if invalid >= specs.len() || (invalid > 0 && replicas < scale.replicas) {
            if let Some(failure) = first_invalid {
                self.set_condition(SCALING_ACTIVE, "False", failure.reason, failure.message);
            }
            return MetricsOutcome {
                replicas: None,
                metric: String::new(),
                statuses,
                error,
            };
        }
        self.set_condition(
            SCALING_ACTIVE,
            "True",
            "ValidMetricFound",
            format!("the HPA was able to successfully calculate a replica count from {metric}"),
        );
        MetricsOutcome {
            replicas: Some(replicas),
            metric,
            statuses,
            error,
        }
    }

    /// `validateAndParseSelector`.
    fn parse_selector(&mut self, selector: &str) -> Result<Selector, String> {
        if selector.is_empty() {
            let message = "selector is required".to_string();
            self.warnings.push(("SelectorRequired", message.clone()));
            self.set_condition(
                SCALING_ACTIVE,
                "False",
                "InvalidSelector",
                "the HPA target's scale is missing a selector".into(),
            );
            return Err(message);
        }
        Selector::parse(selector).map_err(|err| {
            let message = format!(
                "couldn't convert selector into a corresponding internal selector object: {err}"
            );
            self.set_condition(SCALING_ACTIVE, "False", "InvalidSelector", message.clone());
            self.warnings.push(("InvalidSelector", message.clone()));
            message
        })
    }

    /// `computeReplicasForMetric` for one metric spec.
    fn compute_replicas_for_metric(
        &mut self,
        spec: &MetricSpec,
        spec_replicas: i32,
        pods: &[&Pod],
        metrics: &PodMetrics,
        tolerances: Tolerances,
    ) -> Result<Proposal, MetricFailure> {
        match (spec.type_.as_str(), &spec.resource) {
            ("Resource", Some(source)) => {
                let result = resource_replicas(
                    &source.name,
                    &source.target,
                    spec_replicas,
                    pods,
                    metrics,
                    tolerances,
                    self.now,
                );
                match result {
                    Ok((replicas, current, metric)) => Ok(Proposal {
                        replicas,
                        metric,
                        status: MetricStatus {
                            type_: "Resource".into(),
                            resource: Some(ResourceMetricStatus {
                                name: source.name.clone(),
                                current,
                            }),
                            ..Default::default()
                        },
                    }),
                    Err(err) => Err(self.metric_failure(
                        "FailedGetResourceMetric",
                        format!("failed to get {} resource metric value: {err}", source.name),
                        err,
                    )),
                }
            }
            ("ContainerResource", _) => {
                let (container, name) = spec
                    .container_resource
                    .as_ref()
                    .map(|c| (c.container.clone(), c.name.clone()))
                    .unwrap_or_default();
                let err = format!(
                    "failed to get {name} utilization: unable to get metrics for resource {name}: drover's resource metrics are per pod, not per container"
                );
                Err(self.metric_failure(
                    "FailedGetContainerResourceMetric",
                    format!("failed to get {container} container metric value: {err}"),
                    err,
                ))
            }
            ("Pods", _) => {
                let name = spec
                    .pods
                    .as_ref()
                    .map(|p| p.metric.name.clone())
                    .unwrap_or_default();
                let err =
                    format!("unable to get metric {name}: drover serves no custom metrics API");
                Err(self.metric_failure(
                    "FailedGetPodsMetric",
                    format!("failed to get pods metric value: {err}"),
                    err,
                ))
            }
            ("Object", _) => {
                let name = spec
                    .object
                    .as_ref()
                    .map(|o| o.metric.name.clone())
                    .unwrap_or_default();
                let err =
                    format!("unable to get metric {name}: drover serves no custom metrics API");
                Err(self.metric_failure(
                    "FailedGetObjectMetric",
                    format!("failed to get object metric value: {err}"),
                    err,
                ))
            }
            ("External", _) => {
                let name = spec
                    .external
                    .as_ref()
                    .map(|e| e.metric.name.clone())
                    .unwrap_or_default();
                let err = format!(
                    "unable to get external metric {name}: drover serves no external metrics API"
                );
                Err(self.metric_failure(
                    "FailedGetExternalMetric",
                    format!("failed to get {name} external metric value: {err}"),
                    err,
                ))
            }
            (other, _) => {
                let err = format!("unknown metric source type \"{other}\"");
                Err(self.metric_failure("InvalidMetricSourceType", err.clone(), err))
            }
        }
    }

    /// `getUnableComputeReplicaCountCondition`: the condition to set if this
    /// metric decides, and its Warning event.
    fn metric_failure(
        &mut self,
        reason: &'static str,
        error: String,
        cause: String,
    ) -> MetricFailure {
        let message = format!("the HPA was unable to compute the replica count: {cause}");
        self.warnings.push((reason, cause));
        MetricFailure {
            reason,
            message,
            error,
        }
    }

    /// `normalizeDesiredReplicas`: no `behavior`, the legacy rules.
    fn normalize(&mut self, current: i32, prenormalized: i32, min: i32, max: i32) -> i32 {
        let cutoff = sub(self.now, DOWNSCALE_STABILIZATION_WINDOW);
        let stabilized = self
            .history
            .recommendations
            .iter()
            .filter(|r| r.at >= cutoff)
            .map(|r| r.replicas)
            .fold(prenormalized, i32::max);
        self.history.recommendations.retain(|r| r.at >= cutoff);
        self.history.recommendations.push(Recommendation {
            replicas: prenormalized,
            at: self.now,
        });
        if stabilized != prenormalized {
            self.set_condition(
                ABLE_TO_SCALE,
                "True",
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation".into(),
            );
        } else {
            self.set_condition(
                ABLE_TO_SCALE,
                "True",
                "ReadyForNewScale",
                "recommended size matches current size".into(),
            );
        }
        let (desired, reason, message) = convert_with_rules(current, stabilized, min, max);
        let limited = if desired == stabilized {
            "False"
        } else {
            "True"
        };
        self.set_condition(SCALING_LIMITED, limited, reason, message.into());
        desired
    }

    /// `normalizeDesiredReplicasWithBehaviors`.
    fn normalize_with_behaviors(
        &mut self,
        rules: &Rules,
        current: i32,
        prenormalized: i32,
        min: i32,
        max: i32,
    ) -> i32 {
        let (stabilized, reason, message) =
            self.stabilize_with_behaviors(rules, current, prenormalized);
        if stabilized != prenormalized {
            self.set_condition(ABLE_TO_SCALE, "True", reason, message.into());
        } else {
            self.set_condition(
                ABLE_TO_SCALE,
                "True",
                "ReadyForNewScale",
                "recommended size matches current size".into(),
            );
        }
        let (desired, reason, message) =
            self.convert_with_behavior_rate(rules, current, stabilized, min, max);
        let limited = if desired == stabilized {
            "False"
        } else {
            "True"
        };
        self.set_condition(SCALING_LIMITED, limited, reason, message.into());
        desired
    }

    /// `stabilizeRecommendationWithBehaviors`: up to the lowest recommendation
    /// of the scale-up window, down to the highest of the scale-down window.
    fn stabilize_with_behaviors(
        &mut self,
        rules: &Rules,
        current: i32,
        desired: i32,
    ) -> (i32, &'static str, &'static str) {
        let up_cutoff = sub_secs(self.now, rules.up.stabilization_window_seconds);
        let down_cutoff = sub_secs(self.now, rules.down.stabilization_window_seconds);
        let mut up_recommendation = desired;
        let mut down_recommendation = desired;
        for r in &self.history.recommendations {
            if r.at > up_cutoff {
                up_recommendation = up_recommendation.min(r.replicas);
            }
            if r.at > down_cutoff {
                down_recommendation = down_recommendation.max(r.replicas);
            }
        }
        let mut recommendation = current;
        if recommendation < up_recommendation {
            recommendation = up_recommendation;
        }
        if recommendation > down_recommendation {
            recommendation = down_recommendation;
        }
        self.history
            .recommendations
            .retain(|r| !(r.at < up_cutoff && r.at < down_cutoff));
        self.history.recommendations.push(Recommendation {
            replicas: desired,
            at: self.now,
        });
        if desired >= current {
            (
                recommendation,
                "ScaleUpStabilized",
                "recent recommendations were lower than current one, applying the lowest recent recommendation",
            )
        } else {
            (
                recommendation,
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            )
        }
    }

    /// `convertDesiredReplicasWithBehaviorRate`: the policies' limits, then
    /// min/max.
    fn convert_with_behavior_rate(
        &self,
        rules: &Rules,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
    ) -> (i32, &'static str, &'static str) {
        if desired > current {
            let limit = scale_up_limit(current, &self.history, &rules.up, self.now).max(current);
            let (allowed, reason, message) = if max > limit {
                (
                    limit,
                    "ScaleUpLimit",
                    "the desired replica count is increasing faster than the maximum scale rate",
                )
            } else {
                (
                    max,
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                )
            };
            if desired > allowed {
                return (allowed, reason, message);
            }
        } else if desired < current {
            let limit =
                scale_down_limit(current, &self.history, &rules.down, self.now).min(current);
            let (allowed, reason, message) = if min < limit {
                (
                    limit,
                    "ScaleDownLimit",
                    "the desired replica count is decreasing faster than the maximum scale rate",
                )
            } else {
                (
                    min,
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                )
            };
            if desired < allowed {
                return (allowed, reason, message);
            }
        }
        (
            desired,
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
        )
    }

    /// `storeScaleEvent`: events older than the direction's longest policy
    /// period can no longer count and are dropped.
    fn store_scale_event(&mut self, rules: &Rules, previous: i32, new: i32) {
        let now = self.now;
        let (events, longest, change) = if new > previous {
            (
                &mut self.history.scale_up_events,
                longest_period(&rules.up),
                new - previous,
            )
        } else {
            (
                &mut self.history.scale_down_events,
                longest_period(&rules.down),
                previous - new,
            )
        };
        let cutoff = sub_secs(now, longest);
        events.retain(|e| e.at >= cutoff);
        events.push(ScaleEvent { change, at: now });
    }
}

struct MetricsOutcome {
    /// `None`: no usable proposal (Kubernetes' -1).
    replicas: Option<i32>,
    metric: String,
    statuses: Vec<MetricStatus>,
    error: Option<String>,
}

struct Proposal {
    replicas: i32,
    metric: String,
    status: MetricStatus,
}

/// A metric that could not be computed: the ScalingActive reason and
/// message to set if it decides, and the error for the aggregate.
struct MetricFailure {
    reason: &'static str,
    message: String,
    error: String,
}

/// Kubernetes omits a zero `currentReplicas` (`omitempty`).
fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn sub(t: jiff::Timestamp, d: Duration) -> jiff::Timestamp {
    t.checked_sub(d).unwrap_or(jiff::Timestamp::MIN)
}

fn sub_secs(t: jiff::Timestamp, seconds: i32) -> jiff::Timestamp {
    t.checked_sub(jiff::SignedDuration::from_secs(i64::from(seconds)))
        .unwrap_or(jiff::Timestamp::MIN)
}

/// The resource behind `scaleTargetRef` and its name in not-found errors
/// (`deployments.apps`); an error like the RESTMapper's for other kinds.
fn scale_resource(api_version: &str, kind: &str) -> Result<(Resource, &'static str), String> {
    let group = match api_version.split('/').collect::<Vec<_>>().as_slice() {
        [_version] => "",
        [group, _version] => group,
        _ => return Err(format!("unexpected GroupVersion string: {api_version}")),
    };
    match (group, kind) {
        ("apps", "Deployment") => Ok((Resource::Deployments, "deployments.apps")),
        ("apps", "ReplicaSet") => Ok((Resource::ReplicaSets, "replicasets.apps")),
        ("apps", "StatefulSet") => Ok((Resource::StatefulSets, "statefulsets.apps")),
        ("", "ReplicationController") => {
            Ok((Resource::ReplicationControllers, "replicationcontrollers"))
        }
        _ => Err(format!(
            "no matches for kind \"{kind}\" in group \"{group}\""
        )),
    }
}

/// The scale-up and scale-down tolerances (default ±10 %).
#[derive(Clone, Copy, Debug)]
struct Tolerances {
    down: f64,
    up: f64,
}

impl Tolerances {
    fn of(hpa: &HorizontalPodAutoscaler) -> Tolerances {
        let behavior = hpa.spec.as_ref().and_then(|s| s.behavior.as_ref());
        let get = |rules: Option<&HPAScalingRules>| {
            rules
                .and_then(|r| r.tolerance.as_ref())
                .and_then(|q| scheduler::quantity::parse_milli_value(&q.0).ok())
                .map_or(TOLERANCE, |milli| milli as f64 / 1000.0)
        };
        Tolerances {
            down: get(behavior.and_then(|b| b.scale_down.as_ref())),
            up: get(behavior.and_then(|b| b.scale_up.as_ref())),
        }
    }

    fn is_within(self, ratio: f64) -> bool {
        (1.0 - self.down) <= ratio && ratio <= (1.0 + self.up)
    }
}

/// One pod's metric after `getPodMetrics` (milli units).
#[derive(Clone, Copy, Debug)]
struct PodMetric {
    value: i64,
    timestamp: jiff::Timestamp,
    window: Duration,
}

/// `GetResourceMetric`: the selected pods' usage in milli units; pods
/// without a sample of the resource are left out (they count as missing).
fn resource_metrics(
    resource: &str,
    pods: &[&Pod],
    metrics: &PodMetrics,
) -> Result<BTreeMap<String, PodMetric>, String> {
    let names: BTreeSet<&str> = pods
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    let samples: Vec<(&String, &PodUsage)> = metrics
        .pods
        .iter()
        .filter(|(name, _)| names.contains(name.as_str()))
        .collect();
    if samples.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    Ok(samples
        .into_iter()
        .filter_map(|(name, usage)| {
            let value = match resource {
                "cpu" => usage.cpu_milli?,
                "memory" => usage.memory_bytes?.checked_mul(1000)?,
                _ => return None,
            };
            Some((
                name.clone(),
                PodMetric {
                    value,
                    timestamp: usage.timestamp,
                    window: usage.window,
                },
            ))
        })
        .collect())
}

/// Pods by how their metric may be used (`groupPods`).
struct Groups {
    ready_count: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

fn group_pods(
    pods: &[&Pod],
    metrics: &BTreeMap<String, PodMetric>,
    resource: &str,
    now: jiff::Timestamp,
) -> Groups {
    let mut groups = Groups {
        ready_count: 0,
        unready: BTreeSet::new(),
        missing: BTreeSet::new(),
        ignored: BTreeSet::new(),
    };
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let phase = status.phase.as_deref().unwrap_or_default();
        if pods::is_terminating(&pod.metadata) || phase == "Failed" {
            groups.ignored.insert(name);
            continue;
        }
        if phase == "Pending" {
            groups.unready.insert(name);
            continue;
        }
        let Some(metric) = metrics.get(&name) else {
            groups.missing.insert(name);
            continue;
        };
        if resource == "cpu" {
            let ready = status
                .conditions
                .as_ref()
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
            let unready = match (ready, status.start_time.as_ref()) {
                (Some(condition), Some(start)) => {
                    let transition = condition
                        .last_transition_time
                        .as_ref()
                        .map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0);
                    let start = start.0;
                    if add(start, CPU_INITIALIZATION_PERIOD) > now {
                        // Still initializing: only a sample taken a full
                        // window after becoming ready counts.
                        condition.status == "False"
                            || metric.timestamp < add(transition, metric.window)
                    } else {
                        // Unready and never been ready.
                        condition.status == "False"
                            && add(start, INITIAL_READINESS_DELAY) > transition
                    }
                }
                _ => true,
            };
            if unready {
                groups.unready.insert(name);
                continue;
            }
        }
        groups.ready_count += 1;
    }
    groups
}

fn add(t: jiff::Timestamp, d: Duration) -> jiff::Timestamp {
    t.checked_add(d).unwrap_or(jiff::Timestamp::MAX)
}

/// `calculateRequests`: each pod's request for the resource, summed over
/// its containers and restartable init containers, in milli units.
fn pod_requests(pods: &[&Pod], resource: &str) -> Result<BTreeMap<String, i64>, String> {
    let mut requests = BTreeMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let mut sum = 0i64;
        for container in spec.containers.iter().chain(sidecars) {
            let request = container
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| scheduler::quantity::parse_milli_value(&q.0).ok());
            let Some(request) = request else {
                return Err(format!(
                    "missing request for {resource} in container {} of Pod {name}",
                    container.name
                ));
            };
            sum = sum.saturating_add(request);
        }
        requests.insert(name, sum);
    }
    Ok(requests)
}

/// `GetResourceUtilizationRatio`: (ratio, utilization %, raw average).
fn utilization_ratio(
    metrics: &BTreeMap<String, PodMetric>,
    requests: &BTreeMap<String, i64>,
    target_utilization: i32,
) -> Result<(f64, i32, i64), String> {
    let mut metrics_total = 0i64;
    let mut requests_total = 0i64;
    let mut entries = 0i64;
    for (name, metric) in metrics {
        // Metrics of pods without a request are extraneous.
        let Some(request) = requests.get(name) else {
            continue;
        };
        metrics_total += metric.value;
        requests_total += request;
        entries += 1;
    }
    if requests_total == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = (metrics_total * 100 / requests_total) as i32;
    Ok((
        f64::from(utilization) / f64::from(target_utilization),
        utilization,
        metrics_total / entries,
    ))
}

/// `GetMetricUsageRatio`: (ratio, average usage).
fn usage_ratio(metrics: &BTreeMap<String, PodMetric>, target: i64) -> (f64, i64) {
    let total: i64 = metrics.values().map(|m| m.value).sum();
    let average = total / metrics.len().max(1) as i64;
    (average as f64 / target as f64, average)
}

fn ceil_replicas(x: f64) -> i32 {
    // `as` saturates, as Kubernetes' int32 conversion would overflow instead.
    x.ceil() as i32
}

/// One `Resource` metric: (proposal, current value status, metric name for
/// events and conditions), or the error Kubernetes reports for it.
fn resource_replicas(
    resource: &str,
    target: &MetricTarget,
    current_replicas: i32,
    pods: &[&Pod],
    pod_metrics: &PodMetrics,
    tolerances: Tolerances,
    now: jiff::Timestamp,
) -> Result<(i32, MetricValueStatus, String), String> {
    if let Some(average_value) = &target.average_value {
        let target_usage = scheduler::quantity::parse_milli_value(&average_value.0).unwrap_or(0);
        let (replicas, usage) = raw_resource_replicas(
            resource,
            target_usage,
            current_replicas,
            pods,
            pod_metrics,
            tolerances,
            now,
        )
        .map_err(|e| format!("failed to get {resource} usage: {e}"))?;
        let status = MetricValueStatus {
            average_value: Some(milli_quantity(usage)),
            ..Default::default()
        };
        return Ok((replicas, status, format!("{resource} resource")));
    }
    let Some(target_utilization) = target.average_utilization else {
        return Err("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into());
    };
    let (replicas, utilization, raw) = utilization_replicas(
        resource,
        target_utilization,
        current_replicas,
        pods,
        pod_metrics,
        tolerances,
        now,
    )
    .map_err(|e| format!("failed to get {resource} utilization: {e}"))?;
    let status = MetricValueStatus {
        average_utilization: Some(utilization),
        average_value: Some(milli_quantity(raw)),
        value: None,
    };
    Ok((
        replicas,
        status,
        format!("{resource} resource utilization (percentage of request)"),
    ))
}

/// `GetResourceReplicas`: (proposal, utilization %, raw average usage).
fn utilization_replicas(
    resource: &str,
    target_utilization: i32,
    current_replicas: i32,
    pods: &[&Pod],
    pod_metrics: &PodMetrics,
    tolerances: Tolerances,
    now: jiff::Timestamp,
) -> Result<(i32, i32, i64), String> {
    let mut metrics = resource_metrics(resource, pods, pod_metrics)?;
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let groups = group_pods(pods, &metrics, resource, now);
    metrics.retain(|name, _| !groups.ignored.contains(name) && !groups.unready.contains(name));
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let requests = pod_requests(pods, resource)?;
    let (ratio, utilization, raw) = utilization_ratio(&metrics, &requests, target_utilization)?;

    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if tolerances.is_within(ratio) {
            return Ok((current_replicas, utilization, raw));
        }
        return Ok((
            ceil_replicas(ratio * groups.ready_count as f64),
            utilization,
            raw,
        ));
    }
    if !groups.missing.is_empty() {
        // Scale-down: missing pods count as using 100 % of their request
        // (or the target, above 100 %); scale-up: 0 %.
        let fallback = i64::from(target_utilization.max(100));
        for name in &groups.missing {
            let value = if ratio < 1.0 {
                requests.get(name).copied().unwrap_or(0) * fallback / 100
            } else {
                0
            };
            if ratio != 1.0 {
                metrics.insert(name.clone(), placeholder(value));
            }
        }
    }
    if scale_up_with_unready {
        for name in &groups.unready {
            metrics.insert(name.clone(), placeholder(0));
        }
    }
    let (new_ratio, _, _) = utilization_ratio(&metrics, &requests, target_utilization)?;
    if tolerances.is_within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok((current_replicas, utilization, raw));
    }
    let new_replicas = ceil_replicas(new_ratio * metrics.len() as f64);
    if (new_ratio < 1.0 && new_replicas > current_replicas)
        || (new_ratio > 1.0 && new_replicas < current_replicas)
    {
        return Ok((current_replicas, utilization, raw));
    }
    Ok((new_replicas, utilization, raw))
}

/// `GetRawResourceReplicas` / `calcPlainMetricReplicas`: (proposal,
/// average usage in milli units).
fn raw_resource_replicas(
    resource: &str,
    target_usage: i64,
    current_replicas: i32,
    pods: &[&Pod],
    pod_metrics: &PodMetrics,
    tolerances: Tolerances,
    now: jiff::Timestamp,
) -> Result<(i32, i64), String> {
    let mut metrics = resource_metrics(resource, pods, pod_metrics)?;
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let groups = group_pods(pods, &metrics, resource, now);
    metrics.retain(|name, _| !groups.ignored.contains(name) && !groups.unready.contains(name));
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let (ratio, usage) = usage_ratio(&metrics, target_usage);
    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if tolerances.is_within(ratio) {
            return Ok((current_replicas, usage));
        }
        return Ok((ceil_replicas(ratio * groups.ready_count as f64), usage));
    }
    if !groups.missing.is_empty() && ratio != 1.0 {
        // Scale-down: missing pods count as exactly at the target; up: 0.
        let value = if ratio < 1.0 { target_usage } else { 0 };
        for name in &groups.missing {
            metrics.insert(name.clone(), placeholder(value));
        }
    }
    if scale_up_with_unready {
        for name in &groups.unready {
            metrics.insert(name.clone(), placeholder(0));
        }
    }
    let (new_ratio, _) = usage_ratio(&metrics, target_usage);
    if tolerances.is_within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok((current_replicas, usage));
    }
    let new_replicas = ceil_replicas(new_ratio * metrics.len() as f64);
    if (new_ratio < 1.0 && new_replicas > current_replicas)
        || (new_ratio > 1.0 && new_replicas < current_replicas)
    {
        return Ok((current_replicas, usage));
    }
    Ok((new_replicas, usage))
}

fn placeholder(value: i64) -> PodMetric {
    PodMetric {
        value,
        timestamp: jiff::Timestamp::UNIX_EPOCH,
        window: Duration::ZERO,
    }
}

/// `resource.NewMilliQuantity(v, DecimalSI).String()`: the canonical form,
/// `400m`, `2`, `104857600`, `5k`.
fn milli_quantity(milli: i64) -> Quantity {
    if milli % 1000 != 0 {
        return Quantity(format!("{milli}m"));
    }
    let mut value = milli / 1000;
    if value == 0 {
        return Quantity("0".into());
    }
    let mut suffix = "";
    for next in ["k", "M", "G", "T", "P", "E"] {
        if value % 1000 != 0 {
            break;
        }
        value /= 1000;
        suffix = next;
    }
    Quantity(format!("{value}{suffix}"))
}

/// `convertDesiredReplicasWithRules`: without `behavior`, min/max and a
/// scale-up of at most `max(2 * current, 4)`.
fn convert_with_rules(
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
) -> (i32, &'static str, &'static str) {
    let scale_up_limit =
        (SCALE_UP_LIMIT_FACTOR * f64::from(current)).max(SCALE_UP_LIMIT_MINIMUM) as i32;
    let (maximum, reason, message) = if max > scale_up_limit {
        (
            scale_up_limit,
            "ScaleUpLimit",
            "the desired replica count is increasing faster than the maximum scale rate",
        )
    } else {
        (
            max,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    };
    if desired < min {
        return (
            min,
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count",
        );
    }
    if desired > maximum {
        return (maximum, reason, message);
    }
    (
        desired,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    )
}

/// A direction's scaling rules with the API defaults filled in.
#[derive(Clone, Debug)]
struct DirectionRules {
    stabilization_window_seconds: i32,
    select_policy: String,
    policies: Vec<HPAScalingPolicy>,
}

#[derive(Clone, Debug)]
struct Rules {
    up: DirectionRules,
    down: DirectionRules,
}

impl Rules {
    /// `GenerateHPAScaleUpRules` / `GenerateHPAScaleDownRules`, and the
    /// controller's default scale-down window.
    fn of(behavior: &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior) -> Rules {
        let policy = |type_: &str, value: i32| HPAScalingPolicy {
            type_: type_.into(),
            value,
            period_seconds: 15,
        };
        let fill =
            |rules: Option<&HPAScalingRules>, window: i32, policies: Vec<HPAScalingPolicy>| {
                DirectionRules {
                    stabilization_window_seconds: rules
                        .and_then(|r| r.stabilization_window_seconds)
                        .unwrap_or(window),
                    select_policy: rules
                        .and_then(|r| r.select_policy.clone())
                        .unwrap_or_else(|| "Max".into()),
                    policies: rules.and_then(|r| r.policies.clone()).unwrap_or(policies),
                }
            };
        Rules {
            up: fill(
                behavior.scale_up.as_ref(),
                0,
                vec![policy("Pods", 4), policy("Percent", 100)],
            ),
            down: fill(
                behavior.scale_down.as_ref(),
                DOWNSCALE_STABILIZATION_WINDOW.as_secs() as i32,
                vec![policy("Percent", 100)],
            ),
        }
    }
}

fn longest_period(rules: &DirectionRules) -> i32 {
    rules
        .policies
        .iter()
        .map(|p| p.period_seconds)
        .max()
        .unwrap_or(0)
}

/// `getReplicasChangePerPeriod`.
fn change_in_period(period_seconds: i32, events: &[ScaleEvent], now: jiff::Timestamp) -> i32 {
    let cutoff = sub_secs(now, period_seconds);
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.change)
        .sum()
}

/// `calculateScaleUpLimitWithScalingRules`.
fn scale_up_limit(
    current: i32,
    history: &HpaHistory,
    rules: &DirectionRules,
    now: jiff::Timestamp,
) -> i32 {
    let (mut result, select): (i32, fn(i32, i32) -> i32) = match rules.select_policy.as_str() {
        "Disabled" => return current,
        "Min" => (i32::MAX, std::cmp::min),
        _ => (i32::MIN, std::cmp::max),
    };
    for policy in &rules.policies {
        let added = change_in_period(policy.period_seconds, &history.scale_up_events, now);
        let deleted = change_in_period(policy.period_seconds, &history.scale_down_events, now);
        let start = current - added + deleted;
        let proposed = match policy.type_.as_str() {
            "Pods" => start + policy.value,
            "Percent" => (f64::from(start) * (1.0 + f64::from(policy.value) / 100.0)).ceil() as i32,
            _ => continue,
        };
        result = select(result, proposed);
    }
    result
}

/// `calculateScaleDownLimitWithBehaviors`.
fn scale_down_limit(
    current: i32,
    history: &HpaHistory,
    rules: &DirectionRules,
    now: jiff::Timestamp,
) -> i32 {
    let (mut result, select): (i32, fn(i32, i32) -> i32) = match rules.select_policy.as_str() {
        "Disabled" => return current,
        "Min" => (i32::MIN, std::cmp::max),
        _ => (i32::MAX, std::cmp::min),
    };
    for policy in &rules.policies {
        let added = change_in_period(policy.period_seconds, &history.scale_up_events, now);
        let deleted = change_in_period(policy.period_seconds, &history.scale_down_events, now);
        let start = current - added + deleted;
        let proposed = match policy.type_.as_str() {
            "Pods" => start - policy.value,
            "Percent" => (f64::from(start) * (1.0 - f64::from(policy.value) / 100.0)) as i32,
            _ => continue,
        };
        result = select(result, proposed);
    }
    result
}

/// A parsed label selector string (the `scale` subresource's
/// `status.selector`, as `metav1.FormatLabelSelector` writes it).
#[derive(Clone, Debug, PartialEq)]
struct Selector(Vec<Requirement>);

#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// `labels.Parse` for the operators a formatted `LabelSelector` uses:
    /// `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`.
    fn parse(input: &str) -> Result<Selector, String> {
        let mut parts = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        for (i, ch) in input.char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&input[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&input[start..]);
        let mut requirements = Vec::new();
        for part in parts {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(Self::requirement(part)?);
        }
        Ok(Selector(requirements))
    }

    fn requirement(part: &str) -> Result<Requirement, String> {
        let unparsable = || format!("unable to parse requirement: {part:?}");
        let special = |c: char| c.is_whitespace() || "()=!<>".contains(c);
        if let Some(key) = part.strip_prefix('!') {
            let key = key.trim();
            if key.is_empty() || key.contains(special) {
                return Err(unparsable());
            }
            return Ok(Requirement::DoesNotExist(key.into()));
        }
        let key_end = part.find(special).unwrap_or(part.len());
        let key = part[..key_end].to_string();
        if key.is_empty() {
            return Err(unparsable());
        }
        let rest = part[key_end..].trim_start();
        let single = |v: &str| vec![v.trim().to_string()];
        if rest.is_empty() {
            Ok(Requirement::Exists(key))
        } else if let Some(v) = rest.strip_prefix("!=") {
            Ok(Requirement::NotIn(key, single(v)))
        } else if let Some(v) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
            Ok(Requirement::In(key, single(v)))
        } else if let Some(v) = rest.strip_prefix("notin") {
            Ok(Requirement::NotIn(
                key,
                Self::set(v).ok_or_else(unparsable)?,
            ))
        } else if let Some(v) = rest.strip_prefix("in") {
            Ok(Requirement::In(key, Self::set(v).ok_or_else(unparsable)?))
        } else {
            Err(unparsable())
        }
    }

    /// `(a, b)` → `[a, b]`.
    fn set(values: &str) -> Option<Vec<String>> {
        let inner = values.trim().strip_prefix('(')?.strip_suffix(')')?;
        Some(inner.split(',').map(|v| v.trim().to_string()).collect())
    }

    fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let empty = BTreeMap::new();
        let labels = labels.unwrap_or(&empty);
        self.0.iter().all(|r| match r {
            Requirement::In(k, values) => labels.get(k).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(k, values) => labels.get(k).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const BASE: i64 = 1_700_000_000;

    fn ts(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(BASE + s).unwrap()
    }

    fn t(s: i64) -> Value {
        serde_json::to_value(Time(ts(s))).unwrap()
    }

    /// An HPA on Deployment `web` (cpu at 50 %, 1..10 replicas); `spec`
    /// fields override those.
    fn hpa(spec: Value) -> HorizontalPodAutoscaler {
        let mut full = json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                         "target": {"type": "Utilization", "averageUtilization": 50}}}],
        });
        for (k, v) in spec.as_object().unwrap() {
            full[k] = v.clone();
        }
        serde_json::from_value(json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "prod", "uid": "hpa-uid",
                         "resourceVersion": "9", "generation": 2},
            "spec": full,
        }))
        .unwrap()
    }

    fn scale(replicas: i32) -> Scale {
        Scale {
            replicas,
            selector: "app=web".into(),
        }
    }

    /// A running pod of `web`, ready and started long ago, requesting 500m.
    fn pod(name: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "prod", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "i",
                     "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]},
            "status": {"phase": "Running", "startTime": t(-600), "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": t(-590)}]},
        }))
        .unwrap()
    }

    fn pod_with(name: &str, f: impl FnOnce(&mut Value)) -> Pod {
        let mut v = pods::to_value(&pod(name));
        f(&mut v);
        serde_json::from_value(v).unwrap()
    }

    fn usage(cpu_milli: i64) -> PodUsage {
        PodUsage {
            cpu_milli: Some(cpu_milli),
            memory_bytes: Some(100 << 20),
            timestamp: ts(0),
            window: Duration::from_secs(30),
        }
    }

    fn cpu(samples: &[(&str, i64)]) -> PodMetrics {
        PodMetrics {
            pods: samples
                .iter()
                .map(|(n, m)| (n.to_string(), usage(*m)))
                .collect(),
        }
    }

    /// `n` pods `web-0..` each using `milli` cpu.
    fn fleet(n: usize, milli: i64) -> (Vec<Pod>, PodMetrics) {
        let names: Vec<String> = (0..n).map(|i| format!("web-{i}")).collect();
        let pods = names.iter().map(|n| pod(n)).collect();
        let samples: Vec<(&str, i64)> = names.iter().map(|n| (n.as_str(), milli)).collect();
        (pods, cpu(&samples))
    }

    /// History whose only recommendation is long expired: the stabilization
    /// window holds nothing back.
    fn settled(now: i64) -> HpaHistory {
        HpaHistory {
            recommendations: vec![Recommendation {
                replicas: 1,
                at: ts(now - 10_000),
            }],
            ..Default::default()
        }
    }

    fn run(
        hpa: &HorizontalPodAutoscaler,
        target: Option<&Scale>,
        pods: &[Pod],
        metrics: &PodMetrics,
        history: &HpaHistory,
        now: i64,
    ) -> (Plan, HpaHistory) {
        let refs: Vec<&Pod> = pods.iter().collect();
        let (plan, history) = reconcile_hpa(hpa, target, &refs, metrics, history, ts(now));
        assert_eq!(plan.requeue_after, Some(SYNC_PERIOD), "always resynced");
        (plan, history)
    }

    fn scaled_to(plan: &Plan) -> Option<i64> {
        plan.actions.iter().find_map(|a| match a {
            Action::Patch { patch, .. } => patch["spec"]["replicas"].as_i64(),
            _ => None,
        })
    }

    fn status(plan: &Plan) -> Option<Value> {
        plan.actions.iter().find_map(|a| match a {
            Action::UpdateStatus { object, .. } => Some(object["status"].clone()),
            _ => None,
        })
    }

    /// The HPA as the plan wrote it (to reconcile again).
    fn written(hpa: &HorizontalPodAutoscaler, plan: &Plan) -> HorizontalPodAutoscaler {
        let mut h = hpa.clone();
        if let Some(s) = status(plan) {
            h.status = Some(serde_json::from_value(s).unwrap());
        }
        h
    }

    fn condition(plan: &Plan, type_: &str) -> (String, String, String) {
        let s = status(plan).expect("status written");
        let c = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap_or_else(|| panic!("no {type_} in {s}"))
            .clone();
        (
            c["status"].as_str().unwrap().into(),
            c["reason"].as_str().unwrap().into(),
            c["message"].as_str().unwrap().into(),
        )
    }

    fn events(plan: &Plan) -> Vec<(EventType, String, String)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Event {
                    event_type,
                    reason,
                    message,
                    ..
                } => Some((*event_type, reason.clone(), message.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn classic_scale_up_from_80_percent_to_a_50_percent_target() {
        let h = hpa(json!({}));
        let pods = [pod("web-a"), pod("web-b")];
        let m = cpu(&[("web-a", 400), ("web-b", 400)]);
        let (plan, history) = run(&h, Some(&scale(2)), &pods, &m, &HpaHistory::default(), 0);
        assert_eq!(plan.actions.len(), 3, "{plan:?}");
        assert_eq!(
            plan.actions[0],
            Action::Patch {
                resource: Resource::Deployments,
                namespace: Some("prod".into()),
                name: "web".into(),
                subresource: Some("scale"),
                patch: json!({"spec": {"replicas": 4}}),
            }
        );
        assert_eq!(
            plan.actions[1],
            Action::Event {
                involved: object_reference("autoscaling/v2", "HorizontalPodAutoscaler", &h.metadata),
                event_type: EventType::Normal,
                reason: "SuccessfulRescale".into(),
                message: "New size: 4; reason: cpu resource utilization (percentage of request) above target".into(),
            }
        );
        let Action::UpdateStatus {
            resource,
            namespace,
            name,
            object,
        } = &plan.actions[2]
        else {
            panic!("{plan:?}")
        };
        assert_eq!(
            (*resource, namespace.as_deref(), name.as_str()),
            (Resource::HorizontalPodAutoscalers, Some("prod"), "web")
        );
        assert_eq!(object["metadata"]["resourceVersion"], json!("9"));
        assert_eq!(
            object["status"],
            json!({
                "conditions": [
                    {"type": "AbleToScale", "status": "True", "reason": "SucceededRescale",
                     "message": "the HPA controller was able to update the target scale to 4",
                     "lastTransitionTime": t(0)},
                    {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound",
                     "message": "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)",
                     "lastTransitionTime": t(0)},
                    {"type": "ScalingLimited", "status": "False", "reason": "DesiredWithinRange",
                     "message": "the desired count is within the acceptable range",
                     "lastTransitionTime": t(0)},
                ],
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": 80, "averageValue": "400m"}}}],
                "currentReplicas": 2,
                "desiredReplicas": 4,
                "lastScaleTime": t(0),
                "observedGeneration": 2,
            })
        );
        // The controller's start recorded the current size, then the proposal.
        assert_eq!(
            history.recommendations,
            vec![
                Recommendation {
                    replicas: 2,
                    at: ts(0)
                },
                Recommendation {
                    replicas: 4,
                    at: ts(0)
                },
            ]
        );
        assert!(
            history.scale_up_events.is_empty(),
            "kept only with behavior"
        );

        // Four pods at 50 %: on target, nothing to scale; status settles.
        let h = written(&h, &plan);
        let (pods, m) = fleet(4, 250);
        let (plan, history) = run(&h, Some(&scale(4)), &pods, &m, &history, 15);
        assert_eq!(scaled_to(&plan), None, "{plan:?}");
        assert!(events(&plan).is_empty());
        let s = status(&plan).unwrap();
        assert_eq!(s["currentReplicas"], 4);
        assert_eq!(s["desiredReplicas"], 4);
        assert_eq!(s["lastScaleTime"], t(0), "unchanged without a rescale");
        assert_eq!(
            s["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            50
        );
        assert_eq!(
            condition(&plan, "AbleToScale"),
            (
                "True".into(),
                "ReadyForNewScale".into(),
                "recommended size matches current size".into()
            )
        );
        // Same inputs again: no writes at all.
        let h = written(&h, &plan);
        let (plan, _) = run(&h, Some(&scale(4)), &pods, &m, &history, 30);
        assert!(plan.actions.is_empty(), "{plan:?}");
    }

    #[test]
    fn tolerance_table() {
        // (usage per pod of 500m with a 50 % target, 4 replicas) → new size.
        let cases = [
            (225, None),    // 45 %: ratio 0.90, the lower edge is within
            (230, None),    // 46 %: 0.92
            (270, None),    // 54 %: 1.08
            (275, None),    // 55 %: 1.10, the upper edge is within
            (280, Some(5)), // 56 %: ceil(4 * 1.12)
            (150, Some(3)), // 30 %: ceil(4 * 0.6)
            (200, None),    // 40 %: ceil(4 * 0.8) = 4, nothing to do
        ];
        for (milli, expected) in cases {
            let (pods, m) = fleet(4, milli);
            let (plan, _) = run(&hpa(json!({})), Some(&scale(4)), &pods, &m, &settled(0), 0);
            assert_eq!(scaled_to(&plan), expected, "{milli}m: {plan:?}");
        }
        // A per-HPA tolerance (behavior.scaleUp.tolerance) narrows the band.
        let h = hpa(json!({"behavior": {"scaleUp": {"tolerance": "0.05"}}}));
        let (pods, m) = fleet(4, 270);
        let (plan, _) = run(&h, Some(&scale(4)), &pods, &m, &settled(0), 0);
        assert_eq!(scaled_to(&plan), Some(5));
    }

    #[test]
    fn scale_down_waits_out_the_stabilization_window() {
        let h = hpa(json!({}));
        let (pods, m) = fleet(4, 50); // 10 % → ceil(4 * 0.2) = 1
        let history = HpaHistory {
            recommendations: vec![Recommendation {
                replicas: 4,
                at: ts(-100),
            }],
            ..Default::default()
        };
        let (plan, history) = run(&h, Some(&scale(4)), &pods, &m, &history, 0);
        assert_eq!(scaled_to(&plan), None);
        assert_eq!(
            condition(&plan, "AbleToScale"),
            (
                "True".into(),
                "ScaleDownStabilized".into(),
                "recent recommendations were higher than current one, applying the highest recent recommendation".into()
            )
        );
        // At 200 s the recommendation of 4 is 300 s old and still counts.
        let h = written(&h, &plan);
        let (plan, history) = run(&h, Some(&scale(4)), &pods, &m, &history, 200);
        assert_eq!(scaled_to(&plan), None);
        // One second later it has left the window.
        let (plan, history) = run(&h, Some(&scale(4)), &pods, &m, &history, 201);
        assert_eq!(scaled_to(&plan), Some(1));
        assert_eq!(
            events(&plan),
            vec![(
                EventType::Normal,
                "SuccessfulRescale".into(),
                "New size: 1; reason: All metrics below target".into()
            )]
        );
        assert_eq!(
            history.recommendations,
            vec![
                Recommendation {
                    replicas: 1,
                    at: ts(0)
                },
                Recommendation {
                    replicas: 1,
                    at: ts(200)
                },
                Recommendation {
                    replicas: 1,
                    at: ts(201)
                },
            ]
        );
        // Right after a restart (empty history) the current size is the
        // first recommendation, so no scale-down for 5 minutes either.
        let (plan, _) = run(
            &hpa(json!({})),
            Some(&scale(4)),
            &pods,
            &m,
            &HpaHistory::default(),
            0,
        );
        assert_eq!(scaled_to(&plan), None);
    }

    #[test]
    fn min_max_and_rate_clamping_without_behavior() {
        let limited = |plan: &Plan| condition(plan, "ScalingLimited");
        // 2 pods at 100 % → 4, but max 3.
        let (pods, m) = fleet(2, 500);
        let (plan, _) = run(
            &hpa(json!({"maxReplicas": 3})),
            Some(&scale(2)),
            &pods,
            &m,
            &settled(0),
            0,
        );
        assert_eq!(scaled_to(&plan), Some(3));
        assert_eq!(
            limited(&plan),
            (
                "True".into(),
                "TooManyReplicas".into(),
                "the desired replica count is more than the maximum replica count".into()
            )
        );
        // 4 pods at 10 % → 1, but min 2.
        let (pods, m) = fleet(4, 50);
        let (plan, _) = run(
            &hpa(json!({"minReplicas": 2})),
            Some(&scale(4)),
            &pods,
            &m,
            &settled(0),
            0,
        );
        assert_eq!(scaled_to(&plan), Some(2));
        assert_eq!(
            limited(&plan),
            (
                "True".into(),
                "TooFewReplicas".into(),
                "the desired replica count is less than the minimum replica count".into()
            )
        );
        // 2 pods at 500 % → 20, but at most max(2 * 2, 4) per step.
        let (pods, m) = fleet(2, 2500);
        let (plan, _) = run(
            &hpa(json!({"maxReplicas": 100})),
            Some(&scale(2)),
            &pods,
            &m,
            &settled(0),
            0,
        );
        assert_eq!(scaled_to(&plan), Some(4));
        assert_eq!(
            limited(&plan),
            (
                "True".into(),
                "ScaleUpLimit".into(),
                "the desired replica count is increasing faster than the maximum scale rate".into()
            )
        );
        let (pods, m) = fleet(5, 2500);
        let (plan, _) = run(
            &hpa(json!({"maxReplicas": 100})),
            Some(&scale(5)),
            &pods,
            &m,
            &settled(0),
            0,
        );
        assert_eq!(scaled_to(&plan), Some(10));
    }

    #[test]
    fn replicas_outside_min_max_are_corrected_without_metrics() {
        let cases = [
            (
                12,
                json!({}),
                Some(10),
                "Current number of replicas above Spec.MaxReplicas",
            ),
            (
                1,
                json!({"minReplicas": 3}),
                Some(3),
                "Current number of replicas below Spec.MinReplicas",
            ),
        ];
        for (current, spec, expected, reason) in cases {
            let (plan, _) = run(
                &hpa(spec),
                Some(&scale(current)),
                &[],
                &PodMetrics::default(),
                &settled(0),
                0,
            );
            assert_eq!(scaled_to(&plan), expected);
            assert_eq!(
                events(&plan)[0].2,
                format!("New size: {}; reason: {reason}", expected.unwrap())
            );
            let s = status(&plan).unwrap();
            assert_eq!(s["currentMetrics"], Value::Null);
            assert_eq!(
                s["conditions"].as_array().unwrap().len(),
                1,
                "only AbleToScale: {s}"
            );
        }
        // A target scaled to zero by hand disables autoscaling.
        let (plan, _) = run(
            &hpa(json!({})),
            Some(&scale(0)),
            &[],
            &PodMetrics::default(),
            &settled(0),
            0,
        );
        assert_eq!(scaled_to(&plan), None);
        assert_eq!(
            condition(&plan, "ScalingActive"),
            (
                "False".into(),
                "ScalingDisabled".into(),
                "scaling is disabled since the replica count of the target is zero".into()
            )
        );
        let s = status(&plan).unwrap();
        assert_eq!(
            (s["currentReplicas"].clone(), s["desiredReplicas"].clone()),
            (Value::Null, json!(0))
        );
    }

    #[test]
    fn missing_metrics_count_against_the_scale_direction() {
        let pods = [pod("web-a"), pod("web-b"), pod("web-c")];
        // Scale-down: web-c without metrics counts as 100 %:
        // (50 + 50 + 500) / 1500 = 40 % → ratio 0.8 → ceil(0.8 * 3) = 3.
        let m = cpu(&[("web-a", 50), ("web-b", 50)]);
        let (plan, _) = run(&hpa(json!({})), Some(&scale(3)), &pods, &m, &settled(0), 0);
        assert_eq!(
            scaled_to(&plan),
            None,
            "naively ceil(0.2 * 2) = 1: {plan:?}"
        );
        // The reported utilization is that of the measured pods only.
        assert_eq!(
            status(&plan).unwrap()["currentMetrics"][0]["resource"]["current"],
            json!({"averageUtilization": 10, "averageValue": "50m"})
        );
        // Scale-up: web-c counts as 0 %: 800 / 1500 = 53 % → within tolerance.
        let m = cpu(&[("web-a", 400), ("web-b", 400)]);
        let (plan, _) = run(&hpa(json!({})), Some(&scale(3)), &pods, &m, &settled(0), 0);
        assert_eq!(
            scaled_to(&plan),
            None,
            "naively ceil(1.6 * 2) = 4: {plan:?}"
        );
        // Without web-c the same usage scales.
        let (plan, _) = run(
            &hpa(json!({})),
            Some(&scale(2)),
            &pods[..2],
            &m,
            &settled(0),
            0,
        );
        assert_eq!(scaled_to(&plan), Some(4));
        // A pod whose metrics lack the resource is missing too.
        let mut m = cpu(&[("web-a", 400), ("web-b", 400), ("web-c", 0)]);
        m.pods.get_mut("web-c").unwrap().cpu_milli = None;
        let (plan, _) = run(&hpa(json!({})), Some(&scale(3)), &pods, &m, &settled(0), 0);
        assert_eq!(scaled_to(&plan), None);
    }

    #[test]
    fn unready_and_ignored_pods() {
        let pending = pod_with("web-c", |p| p["status"]["phase"] = json!("Pending"));
        // Scale-up with a Pending pod: it counts as 0 % → 53 %, within.
        let pods = [pod("web-a"), pod("web-b"), pending.clone()];
        let m = cpu(&[("web-a", 400), ("web-b", 400), ("web-c", 400)]);
        let (plan, _) = run(&hpa(json!({})), Some(&scale(3)), &pods, &m, &settled(0), 0);
        assert_eq!(scaled_to(&plan), None, "{plan:?}");
        // Scale-down: unready pods are left out: ceil(0.2 * 2) = 1.
        let m = cpu(&[("web-a", 50), ("web-b", 50), ("web-c", 50)]);
        let (plan, _) = run(&hpa(json!({})), Some(&scale(3)), &pods, &m, &settled(0), 0);
        assert_eq!(scaled_to(&plan), Some(1));

        // Within the 5 min cpu initialization period, a sample not a full
        // window after becoming ready is a start-up spike, not load.
        let starting = pod_with("web-c", |p| {
            p["status"]["startTime"] = t(-60);
            p["status"]["conditions"][0]["lastTransitionTime"] = t(-10);
        });
        let m = cpu(&[("web-a", 400), ("web-b", 400), ("web-c", 1000)]);
        let pods = [pod("web-a"), pod("web-b"), starting.clone()];
        let (plan, _) = run(&hpa(json!({})), Some(&scale(3)), &pods, &m, &settled(0), 0);
        assert_eq!(scaled_to(&plan), None, "naively 120 % → 8: {plan:?}");
        // Ready for a full window before the sample: it counts.
        let mut later = m.clone();
        later.pods.get_mut("web-c").unwrap().timestamp = ts(20);
        let (plan, _) = run(
            &hpa(json!({})),
            Some(&scale(3)),
            &pods,
            &later,
            &settled(20),
            20,
        );
        assert_eq!(
            scaled_to(&plan),
            Some(6),
            "120 % → ceil(2.4 * 3) = 8, at most 2x"
        );

        // Not ready and never been ready (within 30 s of its start): unready.
        let never = pod_with("web-b", |p| {
            p["status"]["conditions"][0]["status"] = json!("False");
            p["status"]["conditions"][0]["lastTransitionTime"] = t(-590);
        });
        let m = cpu(&[("web-a", 400), ("web-b", 400)]);
        let (plan, _) = run(
            &hpa(json!({})),
            Some(&scale(2)),
            &[pod("web-a"), never],
            &m,
            &settled(0),
            0,
        );
        assert_eq!(
            scaled_to(&plan),
            None,
            "(400 + 0) / 1000 = 40 % is a direction change"
        );
        // Not ready after having been ready: its sample counts.
        let lapsed = pod_with("web-b", |p| {
            p["status"]["conditions"][0]["status"] = json!("False");
            p["status"]["conditions"][0]["lastTransitionTime"] = t(-100);
        });
        let (plan, _) = run(
            &hpa(json!({})),
            Some(&scale(2)),
            &[pod("web-a"), lapsed],
            &m,
            &settled(0),
            0,
        );
        assert_eq!(scaled_to(&plan), Some(4));

        // Failed and terminating pods are ignored altogether.
        let failed = pod_with("web-c", |p| p["status"]["phase"] = json!("Failed"));
        let leaving = pod_with("web-d", |p| p["metadata"]["deletionTimestamp"] = t(-1));
        let m = cpu(&[("web-a", 400), ("web-b", 400), ("web-c", 0), ("web-d", 0)]);
        let pods = [pod("web-a"), pod("web-b"), failed, leaving];
        let (plan, _) = run(&hpa(json!({})), Some(&scale(4)), &pods, &m, &settled(0), 0);
        assert_eq!(scaled_to(&plan), None, "ceil(1.6 * 2) = 4 = current");
        assert_eq!(
            status(&plan).unwrap()["currentMetrics"][0]["resource"]["current"]
                ["averageUtilization"],
            80
        );
    }

    #[test]
    fn metric_failures_set_scaling_active_false_once() {
        let h = hpa(json!({}));
        let pods = [pod("web-a"), pod("web-b")];
        let (plan, history) = run(
            &h,
            Some(&scale(2)),
            &pods,
            &PodMetrics::default(),
            &HpaHistory::default(),
            0,
        );
        assert_eq!(scaled_to(&plan), None);
        let cause = "failed to get cpu utilization: unable to get metrics for resource cpu: no metrics returned from resource metrics API";
        assert_eq!(
            status(&plan).unwrap(),
            json!({
                "conditions": [
                    {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale",
                     "message": "the HPA controller was able to get the target's current scale",
                     "lastTransitionTime": t(0)},
                    {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric",
                     "message": format!("the HPA was unable to compute the replica count: {cause}"),
                     "lastTransitionTime": t(0)},
                ],
                "currentReplicas": 2,
                "desiredReplicas": 0,
                "observedGeneration": 2,
            })
        );
        assert_eq!(
            events(&plan),
            vec![
                (EventType::Warning, "FailedGetResourceMetric".into(), cause.into()),
                (
                    EventType::Warning,
                    "FailedComputeMetricsReplicas".into(),
                    format!("invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: {cause}")
                ),
            ]
        );
        // Still failing 15 s later: nothing new to say.
        let (plan, _) = run(
            &written(&h, &plan),
            Some(&scale(2)),
            &pods,
            &PodMetrics::default(),
            &history,
            15,
        );
        assert!(plan.actions.is_empty(), "{plan:?}");

        let message = |pods: &[Pod], m: &PodMetrics| {
            let (plan, _) = run(&hpa(json!({})), Some(&scale(2)), pods, m, &settled(0), 0);
            assert_eq!(scaled_to(&plan), None);
            condition(&plan, "ScalingActive").2
        };
        let no_request = pod_with("web-a", |p| {
            p["spec"]["containers"][0]["resources"] = json!({});
        });
        assert_eq!(
            message(&[no_request, pod("web-b")], &cpu(&[("web-a", 1), ("web-b", 1)])),
            "the HPA was unable to compute the replica count: failed to get cpu utilization: missing request for cpu in container web of Pod web-a"
        );
        let pending = pod_with("web-a", |p| p["status"]["phase"] = json!("Pending"));
        assert_eq!(
            message(&[pending], &cpu(&[("web-a", 1)])),
            "the HPA was unable to compute the replica count: failed to get cpu utilization: did not receive metrics for targeted pods (pods might be unready)"
        );
        // Pods (and their metrics) outside the selector or namespace do not count.
        let other = pod_with("web-a", |p| p["metadata"]["labels"]["app"] = json!("api"));
        let elsewhere = pod_with("web-b", |p| p["metadata"]["namespace"] = json!("dev"));
        assert_eq!(
            message(&[other, elsewhere], &cpu(&[("web-a", 400), ("web-b", 400)])),
            format!("the HPA was unable to compute the replica count: {cause}")
        );
    }

    #[test]
    fn behavior_policies_limit_the_rate() {
        // Default scale-up rules: max(+4 pods, +100 %) per 15 s.
        let h = hpa(json!({"maxReplicas": 100, "behavior": {}}));
        let (pods, m) = fleet(2, 2500);
        let (plan, history) = run(&h, Some(&scale(2)), &pods, &m, &settled(0), 0);
        assert_eq!(scaled_to(&plan), Some(6));
        assert_eq!(condition(&plan, "ScalingLimited").1, "ScaleUpLimit");
        assert_eq!(
            history.scale_up_events,
            vec![ScaleEvent {
                change: 4,
                at: ts(0)
            }]
        );
        // 10 s later the period still holds those 4: the limit is
        // max(2 + 4, 2 * 2) = 6, already reached.
        let (pods, m) = fleet(6, 2500);
        let (plan, history) = run(
            &written(&h, &plan),
            Some(&scale(6)),
            &pods,
            &m,
            &history,
            10,
        );
        assert_eq!(scaled_to(&plan), None);
        assert_eq!(condition(&plan, "ScalingLimited").0, "True");
        // After the 15 s period: max(6 + 4, 6 * 2) = 12.
        let (plan, history) = run(&h, Some(&scale(6)), &pods, &m, &history, 16);
        assert_eq!(scaled_to(&plan), Some(12));
        assert_eq!(
            history.scale_up_events,
            vec![ScaleEvent {
                change: 6,
                at: ts(16)
            }],
            "events older than the longest period (15 s) are dropped"
        );
        // 16 s later: max(12 + 4, 12 * 2) = 24.
        let (plan, history) = run(&h, Some(&scale(12)), &pods, &m, &history, 32);
        assert_eq!(scaled_to(&plan), Some(24));
        assert_eq!(
            history.scale_up_events,
            vec![ScaleEvent {
                change: 12,
                at: ts(32)
            }]
        );

        // selectPolicy Min: the smaller of +4 and +100 %.
        let h = hpa(json!({"maxReplicas": 100, "behavior": {"scaleUp": {"selectPolicy": "Min"}}}));
        let (pods, m) = fleet(2, 2500);
        let (plan, _) = run(&h, Some(&scale(2)), &pods, &m, &settled(0), 0);
        assert_eq!(scaled_to(&plan), Some(4));
    }

    #[test]
    fn scale_down_policies_and_windows() {
        let (pods, m) = fleet(5, 50); // 10 % → 1
                                      // One pod per minute, no window.
        let h = hpa(
            json!({"behavior": {"scaleDown": {"stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}}),
        );
        let (plan, history) = run(&h, Some(&scale(5)), &pods, &m, &settled(0), 0);
        assert_eq!(scaled_to(&plan), Some(4));
        assert_eq!(
            condition(&plan, "ScalingLimited"),
            (
                "True".into(),
                "ScaleDownLimit".into(),
                "the desired replica count is decreasing faster than the maximum scale rate".into()
            )
        );
        assert_eq!(
            history.scale_down_events,
            vec![ScaleEvent {
                change: 1,
                at: ts(0)
            }]
        );
        let (plan, history) = run(&h, Some(&scale(4)), &pods[..4], &m, &history, 30);
        assert_eq!(scaled_to(&plan), None);
        let (plan, _) = run(&h, Some(&scale(4)), &pods[..4], &m, &history, 61);
        assert_eq!(scaled_to(&plan), Some(3));

        // 50 % per minute rounds the limit down: 5 * 0.5 = 2.5 → 2.
        let h = hpa(
            json!({"behavior": {"scaleDown": {"stabilizationWindowSeconds": 0,
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}}}),
        );
        let (plan, _) = run(&h, Some(&scale(5)), &pods, &m, &settled(0), 0);
        assert_eq!(scaled_to(&plan), Some(2));

        // Disabled: never down.
        let h = hpa(json!({"behavior": {"scaleDown": {"selectPolicy": "Disabled"}}}));
        let (plan, _) = run(&h, Some(&scale(5)), &pods, &m, &settled(0), 0);
        assert_eq!(scaled_to(&plan), None);
        assert_eq!(condition(&plan, "ScalingLimited").1, "ScaleDownLimit");

        // A 60 s scale-down window holds the highest recent recommendation.
        let h = hpa(json!({"behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}));
        let history = HpaHistory {
            recommendations: vec![Recommendation {
                replicas: 5,
                at: ts(-30),
            }],
            ..Default::default()
        };
        let (plan, history) = run(&h, Some(&scale(5)), &pods, &m, &history, 0);
        assert_eq!(scaled_to(&plan), None);
        assert_eq!(condition(&plan, "AbleToScale").1, "ScaleDownStabilized");
        let (plan, _) = run(&h, Some(&scale(5)), &pods, &m, &history, 31);
        assert_eq!(
            scaled_to(&plan),
            Some(1),
            "default scale-down policy: 100 % per 15 s"
        );

        // A scale-up window holds the lowest recent recommendation.
        let h = hpa(json!({"behavior": {"scaleUp": {"stabilizationWindowSeconds": 60}}}));
        let (pods, m) = fleet(2, 400);
        let history = HpaHistory {
            recommendations: vec![Recommendation {
                replicas: 2,
                at: ts(-30),
            }],
            ..Default::default()
        };
        let (plan, _) = run(&h, Some(&scale(2)), &pods, &m, &history, 0);
        assert_eq!(scaled_to(&plan), None);
        assert_eq!(
            condition(&plan, "AbleToScale"),
            (
                "True".into(),
                "ScaleUpStabilized".into(),
                "recent recommendations were lower than current one, applying the lowest recent recommendation".into()
            )
        );
    }

    #[test]
    fn scale_targets_by_kind() {
        let (pods, m) = fleet(2, 400);
        let cases = [
            ("apps/v1", "Deployment", Some(Resource::Deployments)),
            ("apps/v1", "ReplicaSet", Some(Resource::ReplicaSets)),
            ("apps/v1", "StatefulSet", Some(Resource::StatefulSets)),
            (
                "v1",
                "ReplicationController",
                Some(Resource::ReplicationControllers),
            ),
            ("example.com/v1", "Foo", None),
            ("v1", "Deployment", None),
        ];
        for (api_version, kind, expected) in cases {
            let h = hpa(
                json!({"scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": "web"}}),
            );
            let (plan, _) = run(&h, Some(&scale(2)), &pods, &m, &settled(0), 0);
            let resource = plan.actions.iter().find_map(|a| match a {
                Action::Patch {
                    resource,
                    subresource: Some("scale"),
                    ..
                } => Some(*resource),
                _ => None,
            });
            assert_eq!(resource, expected, "{kind}");
            if expected.is_none() {
                let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
                let err = format!("no matches for kind \"{kind}\" in group \"{group}\"");
                assert_eq!(
                    condition(&plan, "AbleToScale"),
                    (
                        "False".into(),
                        "FailedGetScale".into(),
                        format!("the HPA controller was unable to get the target's current scale: {err}")
                    )
                );
                assert_eq!(
                    events(&plan),
                    vec![(EventType::Warning, "FailedGetScale".into(), err)]
                );
            }
        }
        // The target does not exist.
        let (plan, _) = run(&hpa(json!({})), None, &pods, &m, &settled(0), 0);
        assert_eq!(
            events(&plan),
            vec![(
                EventType::Warning,
                "FailedGetScale".into(),
                "deployments.apps \"web\" not found".into()
            )]
        );
        assert_eq!(scaled_to(&plan), None);
    }

    #[test]
    fn average_value_and_several_metrics() {
        let memory = |target: &str| {
            json!({"type": "Resource", "resource": {"name": "memory",
            "target": {"type": "AverageValue", "averageValue": target}}})
        };
        let mut m = cpu(&[("web-a", 100), ("web-b", 100)]);
        for u in m.pods.values_mut() {
            u.memory_bytes = Some(300 << 20);
        }
        let pods = [pod("web-a"), pod("web-b")];
        let h = hpa(json!({"metrics": [memory("200Mi")]}));
        let (plan, _) = run(&h, Some(&scale(2)), &pods, &m, &settled(0), 0);
        assert_eq!(scaled_to(&plan), Some(3), "300Mi / 200Mi = 1.5 → 3");
        assert_eq!(
            events(&plan)[0].2,
            "New size: 3; reason: memory resource above target"
        );
        assert_eq!(
            status(&plan).unwrap()["currentMetrics"],
            json!([{"type": "Resource", "resource": {"name": "memory",
                     "current": {"averageValue": "314572800"}}}])
        );
        // The largest proposal wins: cpu 20 % → 1, memory → 3.
        let cpu20 = json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 50}}});
        let h = hpa(json!({"metrics": [cpu20, memory("200Mi")]}));
        let (plan, _) = run(&h, Some(&scale(2)), &pods, &m, &settled(0), 0);
        assert_eq!(scaled_to(&plan), Some(3));
        assert_eq!(
            status(&plan).unwrap()["currentMetrics"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        // No metrics in the spec: cpu at 80 %, as the API server defaults.
        let h = hpa(json!({"metrics": []}));
        let (plan, _) = run(
            &h,
            Some(&scale(2)),
            &pods,
            &cpu(&[("web-a", 400), ("web-b", 400)]),
            &settled(0),
            0,
        );
        assert_eq!(scaled_to(&plan), None, "80 % on an 80 % target");
        let (plan, _) = run(
            &h,
            Some(&scale(2)),
            &pods,
            &cpu(&[("web-a", 500), ("web-b", 500)]),
            &settled(0),
            0,
        );
        assert_eq!(scaled_to(&plan), Some(3), "100 % → ceil(2 * 1.25)");
    }

    #[test]
    fn metrics_drover_cannot_serve() {
        let pods_metric = json!({"type": "Pods", "pods": {"metric": {"name": "rps"},
            "target": {"type": "AverageValue", "averageValue": "10"}}});
        let cpu50 = json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 50}}});
        let pods = [pod("web-a"), pod("web-b")];
        // Alone: ScalingActive False.
        let h = hpa(json!({"metrics": [pods_metric.clone()]}));
        let (plan, _) = run(
            &h,
            Some(&scale(2)),
            &pods,
            &cpu(&[("web-a", 400), ("web-b", 400)]),
            &settled(0),
            0,
        );
        assert_eq!(scaled_to(&plan), None);
        assert_eq!(
            condition(&plan, "ScalingActive"),
            (
                "False".into(),
                "FailedGetPodsMetric".into(),
                "the HPA was unable to compute the replica count: unable to get metric rps: drover serves no custom metrics API".into()
            )
        );
        // With a valid metric that scales up: it scales, and says so.
        let h = hpa(json!({"metrics": [pods_metric.clone(), cpu50.clone()]}));
        let (plan, _) = run(
            &h,
            Some(&scale(2)),
            &pods,
            &cpu(&[("web-a", 400), ("web-b", 400)]),
            &settled(0),
            0,
        );
        assert_eq!(scaled_to(&plan), Some(4));
        assert_eq!(condition(&plan, "ScalingActive").1, "ValidMetricFound");
        assert_eq!(events(&plan)[1].1, "FailedGetPodsMetric");
        // But never down on partial information.
        let (plan, _) = run(
            &h,
            Some(&scale(2)),
            &pods,
            &cpu(&[("web-a", 50), ("web-b", 50)]),
            &settled(0),
            0,
        );
        assert_eq!(scaled_to(&plan), None);
        assert_eq!(condition(&plan, "ScalingActive").1, "FailedGetPodsMetric");
        assert!(events(&plan).iter().any(|e| e.2.starts_with(
            "invalid metrics (1 invalid out of 2), first error is: failed to get pods metric value"
        )));
    }

    #[test]
    fn selectors() {
        let (pods, m) = fleet(2, 400);
        let (plan, _) = run(
            &hpa(json!({})),
            Some(&Scale {
                replicas: 2,
                selector: String::new(),
            }),
            &pods,
            &m,
            &settled(0),
            0,
        );
        assert_eq!(
            condition(&plan, "ScalingActive"),
            (
                "False".into(),
                "InvalidSelector".into(),
                "the HPA target's scale is missing a selector".into()
            )
        );
        assert_eq!(
            events(&plan),
            vec![
                (
                    EventType::Warning,
                    "SelectorRequired".into(),
                    "selector is required".into()
                ),
                (
                    EventType::Warning,
                    "FailedComputeMetricsReplicas".into(),
                    "selector is required".into()
                ),
            ]
        );
        let bad = Scale {
            replicas: 2,
            selector: "app in web".into(),
        };
        let (plan, _) = run(&hpa(json!({})), Some(&bad), &pods, &m, &settled(0), 0);
        assert_eq!(condition(&plan, "ScalingActive").1, "InvalidSelector");

        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let web = labels(&[("app", "web"), ("tier", "fe")]);
        let cases = [
            ("app=web", true),
            ("app==web,tier=fe", true),
            ("app!=web", false),
            ("app in (web, api),tier notin (db)", true),
            ("tier notin (fe)", false),
            ("app,!canary", true),
            ("canary", false),
            ("!tier", false),
            ("app in(api)", false),
        ];
        for (selector, expected) in cases {
            let s = Selector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
            assert_eq!(s.matches(Some(&web)), expected, "{selector}");
        }
        for bad in ["app in web", "a b", "=web", "app in (web"] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn milli_quantities_print_like_kubernetes() {
        let cases = [
            (400, "400m"),
            (1500, "1500m"),
            (1000, "1"),
            (0, "0"),
            (2_000_000, "2k"),
            (314_572_800_000, "314572800"),
            (5_000_000_000_000, "5G"),
        ];
        for (milli, expected) in cases {
            assert_eq!(milli_quantity(milli).0, expected, "{milli}");
        }
    }
}
