//! Deterministic simulation of drover's control plane, also a user feature
//! (`drover sim`): the real API server on an in-memory store, the real
//! controllers and scheduler, and many fake nodes, all on one thread with a
//! virtual clock and a seeded RNG, with faults injected and invariants
//! checked after every committed change. A seed replays exactly.

pub mod checker;
pub mod clock;
pub mod faults;
pub mod kubelet;
pub mod progress;
pub mod prune;
mod scenario;

pub use scenario::{run, Faults, Report, SimConfig};
