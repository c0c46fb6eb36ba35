//! drover's controllers. Each controller is a pure function from observed
//! state (typed objects read from informer caches) and `now` to a [`Plan`]
//! (plain data: creates, updates, deletes, status writes, events, requeue);
//! the runtime applies plans through the API server, never the store.

pub mod plan;
pub mod podgc;
pub mod pods;
pub mod runtime;
pub mod scheduling;
pub mod wiring;
// Workload controllers (one module each; pure reconcile + table tests):
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod history;
pub mod hpa;
pub mod job;
pub mod localpath;
pub mod nodelifecycle;
pub mod replicaset;
pub mod statefulset;

pub use plan::{Action, EventType, Plan, Resource};
