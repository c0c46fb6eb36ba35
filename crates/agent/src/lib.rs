//! drover's node agent (its kubelet): registers the Node, renews its Lease
//! in `kube-node-lease`, and keeps the pods bound to the node running
//! through a [`runtime::ContainerRuntime`], publishing their status. The
//! decision per pod is the pure [`sync::sync_pod`]; this crate's runtime
//! loop only observes, calls it and carries out its steps.

pub mod agent;
pub mod handlers;
pub mod hostports;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod pod_dns;
pub mod prober;
pub mod remote;
pub mod runtime;
pub mod service_env;
pub mod services;
pub mod streams;
pub mod sync;
pub mod volumes;
