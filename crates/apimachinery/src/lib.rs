//! Pure Kubernetes API machinery over `serde_json::Value`: selectors, name
//! validation, the patch formats kubectl sends, and server-side apply.
//! No I/O, no clock, no async: every function here is data in, data out.

pub mod apply;
pub mod fields;
pub mod names;
pub mod patch;
pub mod patch_meta;
pub mod selector;
pub mod strategic;
