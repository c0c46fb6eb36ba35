//! Startup, liveness and readiness probes, as the kubelet's prober runs
//! them: per running container instance, after `initialDelaySeconds`, every
//! `periodSeconds`, each attempt bounded by `timeoutSeconds`, results
//! turned into state by `successThreshold` / `failureThreshold`. Liveness
//! and readiness wait for the startup probe. The results feed
//! [`crate::sync::sync_pod`] as [`ProbeResults`].

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Probe};

use crate::handlers::Target;
use crate::runtime::ContainerRuntime;
use crate::sync::{InstanceState, Observed, ProbeResults};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

#[derive(Clone, Debug, Default)]
struct ProbeState {
    last_run: Option<jiff::Timestamp>,
    successes: i32,
    failures: i32,
    /// `None` until the thresholds decided once.
    result: Option<bool>,
    message: String,
}

#[derive(Clone, Debug, Default)]
struct ContainerProbes {
    attempt: u32,
    startup: ProbeState,
    liveness: ProbeState,
    readiness: ProbeState,
}

/// The prober of one pod (kept by its worker).
#[derive(Default)]
pub struct Prober {
    containers: BTreeMap<String, ContainerProbes>,
}

/// A probe failure worth an event (`Unhealthy`).
pub struct ProbeFailure {
    pub message: String,
}

impl Prober {
    /// Runs the probes that are due and returns the current results and
    /// the failures seen in this round.
    pub async fn round(
        &mut self,
        pod: &Pod,
        observed: &Observed,
        runtime: &dyn ContainerRuntime,
        host_ip: &str,
        now: jiff::Timestamp,
    ) -> (ProbeResults, Vec<ProbeFailure>) {
        let mut results = ProbeResults::default();
        let mut failures = Vec::new();
        let Some(spec) = pod.spec.as_ref() else {
            return (results, failures);
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let pod_ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_else(|| host_ip.to_string());
        for container in &spec.containers {
            let newest = observed
                .containers
                .iter()
                .filter(|c| c.name == container.name && !c.init)
                .max_by_key(|c| c.attempt);
            let Some(instance) = newest else { continue };
            let InstanceState::Running { started_at } = instance.state else {
                continue;
            };
            let state = self.containers.entry(container.name.clone()).or_default();
            if state.attempt != instance.attempt {
                *state = ContainerProbes {
                    attempt: instance.attempt,
                    ..Default::default()
                };
            }
            let target = Target {
                runtime,
                uid: &uid,
                container,
                attempt: instance.attempt,
                pod_ip: &pod_ip,
            };
            let mut started = container.startup_probe.is_none();
            if let Some(probe) = &container.startup_probe {
                if state.startup.result != Some(true) {
                    if let Some(failure) = step(
                        &mut state.startup,
                        probe,
                        Kind::Startup,
                        &target,
                        started_at,
                        now,
                    )
                    .await
                    {
                        failures.push(failure);
                    }
                }
                started = state.startup.result == Some(true);
                if state.startup.result == Some(false) {
                    results.liveness_failed.insert(
                        container.name.clone(),
                        format!("Startup probe failed: {}", state.startup.message),
                    );
                }
            }
            if started {
                results.started.insert(container.name.clone());
            } else {
                continue;
            }
            if let Some(probe) = &container.liveness_probe {
                if let Some(failure) = step(
                    &mut state.liveness,
                    probe,
                    Kind::Liveness,
                    &target,
                    started_at,
                    now,
                )
                .await
                {
                    failures.push(failure);
                }
                if state.liveness.result == Some(false) {
                    results.liveness_failed.insert(
                        container.name.clone(),
                        format!("Liveness probe failed: {}", state.liveness.message),
                    );
                }
            }
            if let Some(probe) = &container.readiness_probe {
                if let Some(failure) = step(
                    &mut state.readiness,
                    probe,
                    Kind::Readiness,
                    &target,
                    started_at,
                    now,
                )
                .await
                {
                    failures.push(failure);
                }
                if let Some(ready) = state.readiness.result {
                    results.readiness.insert(container.name.clone(), ready);
                }
            }
        }
        (results, failures)
    }
}

fn seconds(v: Option<i32>, default: i32) -> i64 {
    i64::from(v.filter(|v| *v > 0).unwrap_or(default))
}

/// Runs `probe` if due; updates the state; returns a failure to report.
async fn step(
    state: &mut ProbeState,
    probe: &Probe,
    kind: Kind,
    target: &Target<'_>,
    started_at: jiff::Timestamp,
    now: jiff::Timestamp,
) -> Option<ProbeFailure> {
    let initial =
        jiff::SignedDuration::from_secs(i64::from(probe.initial_delay_seconds.unwrap_or(0)));
    let period = jiff::SignedDuration::from_secs(seconds(probe.period_seconds, 10));
    if now < started_at + initial {
        return None;
    }
    if state.last_run.is_some_and(|last| now < last + period) {
        return None;
    }
    state.last_run = Some(now);
    let timeout = Duration::from_secs(seconds(probe.timeout_seconds, 1) as u64);
    let outcome = match tokio::time::timeout(timeout, run(probe, target, timeout)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("timed out after {}s", timeout.as_secs())),
    };
    match outcome {
        Ok(()) => {
            state.successes += 1;
            state.failures = 0;
            let threshold = if kind == Kind::Readiness {
                seconds(probe.success_threshold, 1)
            } else {
                1
            };
            if i64::from(state.successes) >= threshold {
                state.result = Some(true);
            }
            None
        }
        Err(message) => {
            state.failures += 1;
            state.successes = 0;
            state.message = message.clone();
            if i64::from(state.failures) >= seconds(probe.failure_threshold, 3) {
                state.result = Some(false);
            }
            Some(ProbeFailure {
                message: format!("{} probe failed: {message}", kind.label()),
            })
        }
    }
}

async fn run(probe: &Probe, target: &Target<'_>, timeout: Duration) -> Result<(), String> {
    let action = crate::handlers::probe_action(probe, target.container)?;
    crate::handlers::run(&action, target, timeout).await
}
