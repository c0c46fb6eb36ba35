//! drover's `/openapi/v3` documents and the schemas behind server-side field validation.
//!
//! kubectl reads these documents for two things: `apply`/`create` look for a PATCH operation
//! tagged with the object's group-version-kind that accepts `fieldValidation` (so validation is
//! left to the server), and `explain` walks the kind's schema in `components.schemas`.
//!
//! Schemas for built-in kinds come from k8s-openapi's `schemars` impls, generated on first use
//! (never at server start) and kept for the life of the process. Documents are plain
//! `serde_json::Value`s; building one is a pure function of the resources it describes, so the
//! API server caches each per group-version and rebuilds it when that group-version's resources
//! (or CRD schemas) change.
//!
//! Architecture invariant: no I/O, no HTTP, no knowledge of the store — inputs in, JSON out.

mod builtin;
mod document;
mod unknown_fields;

use std::collections::BTreeMap;

use serde_json::Value;

pub use document::{
    custom_definition_name, document_hash, group_version_document, group_version_path,
    parse_group_version_path, root_document,
};
pub use unknown_fields::{unknown_fields, unknown_fields_in_schema};

/// One resource served under a group-version, as discovery describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The URL segment: `pods`. Entries containing `/` (`pods/status`) are ignored; subresources
    /// are listed in [`ResourceInfo::subresources`] instead.
    pub plural: String,
    pub namespaced: bool,
    /// `status`, `scale`, `ephemeralcontainers`, `resize`, `approval` (GET/PUT/PATCH),
    /// `finalize` (PUT), `binding`, `eviction`, `token` (POST), `log` (GET), `exec`, `attach`, `portforward`,
    /// `proxy` (connect). Others are left out of the document.
    pub subresources: Vec<String>,
    /// Discovery verbs (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`); empty means all of them. PATCH is published regardless, since
    /// kubectl's field-validation probe needs it.
    pub verbs: Vec<String>,
}

/// The built-in schema of a kind (or its List kind) with `$ref`s into [`definitions`].
pub fn schema_for(group: &str, version: &str, kind: &str) -> Option<&'static Value> {
    let builtins = builtin::builtins();
    let name = builtins.definition_name(group, version, kind)?;
    builtins.definitions.get(&name)
}

/// Every built-in schema by its Kubernetes definition name (`io.k8s.api.core.v1.Pod`).
pub fn definitions() -> &'static BTreeMap<String, Value> {
    &builtin::builtins().definitions
}

/// The Kubernetes definition name of a built-in kind or List kind.
pub fn definition_name(group: &str, version: &str, kind: &str) -> Option<String> {
    builtin::builtins().definition_name(group, version, kind)
}

/// `(group, version, kind)` of every built-in kind that has a schema (not the List kinds).
pub fn builtin_kinds() -> Vec<(&'static str, &'static str, &'static str)> {
    builtin::builtins()
        .kinds
        .iter()
        .map(|k| (k.group, k.version, k.kind))
        .collect()
}
