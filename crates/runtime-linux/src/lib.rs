//! drover's Linux container runtimes. The process runtime runs a
//! container's command as a host process in its own PID, mount, IPC and UTS
//! namespaces, under cgroup v1 or v2 limits, through a detached shim that
//! outlives agent restarts. This is the only crate with `unsafe` (fork and
//! exec in the shim).

pub mod cgroups;
pub mod network;
pub mod process;
pub mod shim;
pub mod streams;
