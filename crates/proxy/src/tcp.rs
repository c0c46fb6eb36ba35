//! Opaque TCP: one endpoint per connection (affinity, else least-open power of two choices),
//! bytes spliced both ways with half-close passed through.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::runtime::{accept_each, pick_least_open, EndpointState, PortState};

/// How many endpoints one connection tries before it is reset.
const MAX_CONNECT_ATTEMPTS: usize = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn serve(listener: std::net::TcpListener, port: Arc<PortState>) {
    accept_each(listener, &port, |stream, client| {
        tokio::spawn(handle(stream, client, port.clone()));
    })
    .await
}

/// Connects to an endpoint for a client, trying others (bounded) when a connect fails.
pub(crate) async fn connect(
    port: &PortState,
    client: SocketAddr,
) -> Option<(TcpStream, Arc<EndpointState>)> {
    let config = port.config();
    let mut failed = Vec::new();
    let mut pinned = port.affinity_endpoint(&config, client.ip());
    while failed.len() < MAX_CONNECT_ATTEMPTS {
        let endpoint = match pinned.take() {
            Some(endpoint) => endpoint,
            None => pick_least_open(&config, &failed)?,
        };
        let addr = endpoint.endpoint.addr;
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                port.pin(&config, client.ip(), addr);
                return Some((stream, endpoint));
            }
            Ok(Err(error)) => tracing::debug!(%error, %addr, "connect to endpoint failed"),
            Err(_) => tracing::debug!(%addr, "connect to endpoint timed out"),
        }
        endpoint.metrics().connection_errors.inc();
        failed.push(addr);
    }
    None
}

async fn handle(mut client_stream: TcpStream, client: SocketAddr, port: Arc<PortState>) {
    let Some((mut upstream, endpoint)) = connect(&port, client).await else {
        crate::socket::reset(client_stream);
        return;
    };
    let _ = client_stream.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    endpoint.open.fetch_add(1, Ordering::Relaxed);
    endpoint.metrics().connections.inc();
    endpoint.metrics().open_connections.inc();
    let mut counted = (0u64, 0u64);
    // copy_bidirectional shuts down each write side when its read side hits EOF (half-close).
    match tokio::io::copy_bidirectional(&mut client_stream, &mut upstream).await {
        Ok(bytes) => counted = bytes,
        Err(error) => {
            tracing::debug!(%error, endpoint = %endpoint.endpoint.addr, "tcp splice ended")
        }
    }
    endpoint.metrics().bytes_in.inc_by(counted.0);
    endpoint.metrics().bytes_out.inc_by(counted.1);
    endpoint.metrics().open_connections.dec();
    endpoint.open.fetch_sub(1, Ordering::Relaxed);
}
