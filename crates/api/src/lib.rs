//! drover's API object model: which kinds exist and how they are served
//! (the registry), how objects are defaulted and validated, and the Kubernetes
//! `Status` error shape. Pure: no I/O, no clock (time comes in as an argument).

pub mod admission;
pub mod conversion;
pub mod crd;
pub mod cron;
pub mod defaults;
pub mod disruption;
pub mod registry;
pub mod status;
pub mod validation;

pub use registry::{Registry, ResourceType, Scope};
pub use status::{ApiError, Cause};

/// The strings of a JSON array (non-strings skipped); empty when absent.
pub fn string_list(v: Option<&serde_json::Value>) -> Vec<String> {
    v.and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(serde_json::Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}
