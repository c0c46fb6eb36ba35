//! drover's API object model: which kinds exist and how they are served
//! (the registry), how objects are defaulted and validated, and the Kubernetes
//! `Status` error shape. Pure: no I/O, no clock (time comes in as an argument).

pub mod conversion;
pub mod crd;
pub mod cron;
pub mod defaults;
pub mod registry;
pub mod status;
pub mod validation;

pub use registry::{Registry, ResourceType, Scope};
pub use status::{ApiError, Cause};
