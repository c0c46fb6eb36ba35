//! drover's service proxy: turns Services and EndpointSlices into listeners on cluster IPs and
//! NodePorts, and forwards each TCP connection, UDP session or HTTP request to a ready endpoint.
//!
//! `table` decides (pure); `Proxy::apply` makes the listeners and endpoint sets match a table.
//! Opaque TCP and UDP are balanced per connection / session; HTTP/1.1 (`h1`, hand-written) and
//! h2c (`http`, hyper and tower) are terminated and balanced per request, by power of two choices
//! over requests in flight.

mod h1;
mod http;
mod metrics;
mod runtime;
mod socket;
pub mod table;
mod tcp;
mod udp;

pub use runtime::Proxy;
pub use table::{
    build_table, AppProtocol, Endpoint, Protocol, ProxyTable, Scope, ServicePort, ServicePortKey,
    TableInputs,
};
