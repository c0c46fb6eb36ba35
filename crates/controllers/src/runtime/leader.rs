//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go does
//! it: the holder renews `renewTime`; a candidate takes over only after it
//! has seen the same record unchanged for a whole lease duration on its own
//! clock (so clock skew between servers does not matter). The decision is
//! pure ([`decide`]); [`LeaderElector`] applies it with compare-and-swap
//! writes, so two servers on one etcd never both win a round.

use std::sync::Arc;
use std::time::Duration;

use client::{Client, Gvr};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use serde_json::Value;
use tokio::sync::watch;

use super::Clock;

#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// kube-controller-manager's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(name: &str, identity: &str) -> LeaderConfig {
        LeaderConfig {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate does this round.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// No Lease yet: create it holding it.
    Create(Lease),
    /// Renew our Lease or take over an expired one (carries the
    /// resourceVersion read, so a concurrent writer makes it fail).
    Update(Lease),
    /// Someone else holds a live Lease.
    Follow { holder: String },
}

/// The decision for `identity` given the Lease as read (if any), `now`, and
/// when this candidate first saw the Lease's current record (`observed_at`).
pub fn decide(
    current: Option<&Lease>,
    config: &LeaderConfig,
    now: jiff::Timestamp,
    observed_at: jiff::Timestamp,
) -> Decision {
    let micro = MicroTime(now);
    let duration_seconds = config.lease_duration.as_secs() as i32;
    let Some(lease) = current else {
        return Decision::Create(Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(duration_seconds),
                acquire_time: Some(micro.clone()),
                renew_time: Some(micro),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        });
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let mut next = lease.clone();
    if holder == config.identity {
        next.spec = Some(LeaseSpec {
            renew_time: Some(micro),
            lease_duration_seconds: Some(duration_seconds),
            ..spec
        });
        return Decision::Update(next);
    }
    let held_for = spec
        .lease_duration_seconds
        .map(|s| Duration::from_secs(s.max(0) as u64))
        .unwrap_or(config.lease_duration);
    let expired = holder.is_empty()
        || now.duration_since(observed_at).unsigned_abs().ge(&held_for) && now >= observed_at;
    if !expired {
        return Decision::Follow { holder };
    }
    next.spec = Some(LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(duration_seconds),
        acquire_time: Some(micro.clone()),
        renew_time: Some(micro),
        lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + 1),
        ..spec
    });
    Decision::Update(next)
}

const LEASES: Gvr = Gvr::new("coordination.k8s.io", "v1", "leases");

/// Runs the election loop; `leading` turns true while this process leads.
pub struct LeaderElector {
    client: Client,
    clock: Arc<dyn Clock>,
    config: LeaderConfig,
    leading: watch::Sender<bool>,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        clock: Arc<dyn Clock>,
        config: LeaderConfig,
    ) -> (LeaderElector, watch::Receiver<bool>) {
        let (leading, receiver) = watch::channel(false);
        (
            LeaderElector {
                client,
                clock,
                config,
                leading,
            },
            receiver,
        )
    }

    pub async fn run(self) {
        // The record last seen (holder, renewTime) and when we first saw it.
        let mut observed: Option<(String, Option<MicroTime>)> = None;
        let mut observed_at = self.clock.now();
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            let now = self.clock.now();
            let current = match self
                .client
                .get(LEASES, Some(&self.config.namespace), &self.config.name)
                .await
            {
                Ok(v) => serde_json::from_value::<Lease>(v).ok(),
                Err(e) if e.is_not_found() => None,
                Err(e) => {
                    tracing::warn!("leader election: reading the lease: {e}");
                    self.check_deadline(last_renewed);
                    tokio::time::sleep(self.config.retry_period).await;
                    continue;
                }
            };
            if let Some(lease) = &current {
                let spec = lease.spec.clone().unwrap_or_default();
                let record = (spec.holder_identity.unwrap_or_default(), spec.renew_time);
                if observed.as_ref() != Some(&record) {
                    observed = Some(record);
                    observed_at = now;
                }
            }
            let result = match decide(current.as_ref(), &self.config, now, observed_at) {
                Decision::Create(lease) => self
                    .client
                    .create(LEASES, Some(&self.config.namespace), &to_value(&lease))
                    .await
                    .map(|_| true),
                Decision::Update(lease) => self
                    .client
                    .replace(
                        LEASES,
                        Some(&self.config.namespace),
                        &self.config.name,
                        &to_value(&lease),
                    )
                    .await
                    .map(|_| true),
                Decision::Follow { .. } => Ok(false),
            };
            match result {
                Ok(true) => {
                    last_renewed = tokio::time::Instant::now();
                    if !*self.leading.borrow() {
                        tracing::info!(
                            "leader election: {} became the leader of {}",
                            self.config.identity,
                            self.config.name
                        );
                        let _ = self.leading.send(true);
                    }
                }
                Ok(false) => {
                    if *self.leading.borrow() {
                        tracing::warn!(
                            "leader election: lost {} to another holder",
                            self.config.name
                        );
                        let _ = self.leading.send(false);
                    }
                }
                Err(e) => {
                    tracing::debug!("leader election: {e}");
                    self.check_deadline(last_renewed);
                }
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// A leader that could not renew within the renew deadline stops leading.
    fn check_deadline(&self, last_renewed: tokio::time::Instant) {
        if *self.leading.borrow() && last_renewed.elapsed() > self.config.renew_deadline {
            tracing::warn!(
                "leader election: could not renew {} in time; stepping down",
                self.config.name
            );
            let _ = self.leading.send(false);
        }
    }
}

fn to_value(lease: &Lease) -> Value {
    serde_json::to_value(lease).expect("Lease serializes")
}

/// Runs `start()`'s tasks only while this process leads: they start when
/// leadership is won and are aborted when it is lost (and started afresh,
/// with empty caches, if it is won again).
pub async fn run_while_leading<F>(
    elector: LeaderElector,
    mut leading: watch::Receiver<bool>,
    start: F,
) where
    F: Fn() -> tokio::task::JoinSet<()>,
{
    tokio::spawn(elector.run());
    loop {
        while !*leading.borrow_and_update() {
            if leading.changed().await.is_err() {
                return;
            }
        }
        let mut tasks = start();
        while *leading.borrow_and_update() {
            if leading.changed().await.is_err() {
                tasks.abort_all();
                return;
            }
        }
        tasks.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(identity: &str) -> LeaderConfig {
        LeaderConfig::new("drover-controller-manager", identity)
    }

    fn t(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn held_by(holder: &str, renewed: i64) -> Lease {
        match decide(None, &config(holder), t(renewed), t(renewed)) {
            Decision::Create(mut l) => {
                l.metadata.resource_version = Some("7".into());
                l
            }
            other => panic!("expected create, got {other:?}"),
        }
    }

    fn holder_of(d: &Decision) -> String {
        match d {
            Decision::Create(l) | Decision::Update(l) => {
                l.spec.as_ref().unwrap().holder_identity.clone().unwrap()
            }
            Decision::Follow { holder } => format!("follow {holder}"),
        }
    }

    #[test]
    fn decisions() {
        let a = config("a");
        // No lease: create it.
        assert_eq!(holder_of(&decide(None, &a, t(0), t(0))), "a");
        // Our own lease: renew, keeping transitions and the resourceVersion.
        let d = decide(Some(&held_by("a", 0)), &a, t(5), t(0));
        let Decision::Update(l) = &d else {
            panic!("{d:?}")
        };
        assert_eq!(l.spec.as_ref().unwrap().renew_time, Some(MicroTime(t(5))));
        assert_eq!(l.metadata.resource_version.as_deref(), Some("7"));
        // Someone else's live lease: follow, until we have seen it unchanged for 15 s.
        assert_eq!(
            holder_of(&decide(Some(&held_by("b", 0)), &a, t(14), t(0))),
            "follow b"
        );
        let d = decide(Some(&held_by("b", 0)), &a, t(15), t(0));
        assert_eq!(holder_of(&d), "a");
        let Decision::Update(l) = &d else { panic!() };
        assert_eq!(l.spec.as_ref().unwrap().lease_transitions, Some(1));
        assert_eq!(
            l.spec.as_ref().unwrap().acquire_time,
            Some(MicroTime(t(15)))
        );
        // Skewed remote clock: a renewTime far in the past does not matter, only
        // how long we have watched the record.
        assert_eq!(
            holder_of(&decide(Some(&held_by("b", -3600)), &a, t(3), t(0))),
            "follow b"
        );
        // Released (empty holder): take it at once.
        let mut released = held_by("b", 0);
        released.spec.as_mut().unwrap().holder_identity = Some(String::new());
        assert_eq!(holder_of(&decide(Some(&released), &a, t(1), t(1))), "a");
    }
}
