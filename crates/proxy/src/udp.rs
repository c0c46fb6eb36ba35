//! UDP: per client address a session (a socket connected to the chosen endpoint) that lives
//! until it is idle for `SESSION_IDLE_TIMEOUT`; replies go back out of the frontend socket.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::runtime::{pick_least_open, EndpointState, PortState};

/// As the kernel's nf_conntrack_udp_timeout: a session with no packet either way for this long ends.
pub const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

struct Session {
    upstream: Arc<UdpSocket>,
    endpoint: Arc<EndpointState>,
    last_active: Arc<Mutex<Instant>>,
}

type Sessions = Arc<Mutex<HashMap<SocketAddr, Arc<Session>>>>;

pub async fn serve(socket: std::net::UdpSocket, port: Arc<PortState>) {
    let frontend = match UdpSocket::from_std(socket) {
        Ok(socket) => Arc::new(socket),
        Err(error) => {
            tracing::error!(%error, service = %port.key.service, "udp socket");
            return;
        }
    };
    let sessions: Sessions = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = match frontend.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(%error, "udp receive failed");
                continue;
            }
        };
        let config = port.config();
        let existing = sessions
            .lock()
            .expect("udp sessions lock")
            .get(&client)
            .cloned();
        // A session whose endpoint was removed ends, as kube-proxy clears its conntrack entries.
        let session = match existing.filter(|s| config.find(s.endpoint.endpoint.addr).is_some()) {
            Some(session) => session,
            None => {
                let endpoint = port
                    .affinity_endpoint(&config, client.ip())
                    .or_else(|| pick_least_open(&config, &[]));
                let Some(endpoint) = endpoint else {
                    continue; // no endpoints: dropped
                };
                match open_session(&frontend, &sessions, client, endpoint).await {
                    Some(session) => {
                        port.pin(&config, client.ip(), session.endpoint.endpoint.addr);
                        session
                    }
                    None => continue,
                }
            }
        };
        *session.last_active.lock().expect("udp session lock") = Instant::now();
        match session.upstream.send(&buf[..n]).await {
            Ok(sent) => {
                session.endpoint.metrics().bytes_in.inc_by(sent as u64);
            }
            Err(error) => {
                tracing::debug!(%error, endpoint = %session.endpoint.endpoint.addr, "udp send failed");
                session.endpoint.metrics().connection_errors.inc();
            }
        }
    }
}

async fn open_session(
    frontend: &Arc<UdpSocket>,
    sessions: &Sessions,
    client: SocketAddr,
    endpoint: Arc<EndpointState>,
) -> Option<Arc<Session>> {
    let addr = endpoint.endpoint.addr;
    let unspecified = match addr.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let upstream = match UdpSocket::bind((unspecified, 0)).await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(%error, "udp session socket");
            endpoint.metrics().connection_errors.inc();
            return None;
        }
    };
    if let Err(error) = upstream.connect(addr).await {
        tracing::debug!(%error, %addr, "udp connect failed");
        endpoint.metrics().connection_errors.inc();
        return None;
    }
    let session = Arc::new(Session {
        upstream: Arc::new(upstream),
        endpoint: endpoint.clone(),
        last_active: Arc::new(Mutex::new(Instant::now())),
    });
    endpoint.open.fetch_add(1, Ordering::Relaxed);
    endpoint.metrics().connections.inc();
    endpoint.metrics().open_connections.inc();
    let previous = sessions
        .lock()
        .expect("udp sessions lock")
        .insert(client, session.clone());
    drop(previous);
    tokio::spawn(replies(
        frontend.clone(),
        sessions.clone(),
        client,
        session.clone(),
    ));
    Some(session)
}

/// Sends the endpoint's datagrams back to the client until the session idles out or is replaced.
async fn replies(
    frontend: Arc<UdpSocket>,
    sessions: Sessions,
    client: SocketAddr,
    session: Arc<Session>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let deadline =
            *session.last_active.lock().expect("udp session lock") + SESSION_IDLE_TIMEOUT;
        tokio::select! {
            received = session.upstream.recv(&mut buf) => match received {
                Ok(n) => {
                    *session.last_active.lock().expect("udp session lock") = Instant::now();
                    match frontend.send_to(&buf[..n], client).await {
                        Ok(sent) => {
                            session.endpoint.metrics().bytes_out.inc_by(sent as u64);
                        }
                        Err(error) => tracing::debug!(%error, %client, "udp reply failed"),
                    }
                }
                // ICMP port unreachable from the endpoint surfaces here; the session stays until idle.
                Err(error) => {
                    tracing::debug!(%error, endpoint = %session.endpoint.endpoint.addr, "udp receive from endpoint failed");
                    session.endpoint.metrics().connection_errors.inc();
                    tokio::time::sleep_until(deadline).await;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let idle = Instant::now().duration_since(*session.last_active.lock().expect("udp session lock"));
                if idle >= SESSION_IDLE_TIMEOUT {
                    break;
                }
            }
        }
        // Replaced (its endpoint was removed): stop.
        let current = sessions
            .lock()
            .expect("udp sessions lock")
            .get(&client)
            .cloned();
        if !current.is_some_and(|c| Arc::ptr_eq(&c, &session)) {
            break;
        }
    }
    {
        let mut sessions = sessions.lock().expect("udp sessions lock");
        if sessions
            .get(&client)
            .is_some_and(|c| Arc::ptr_eq(c, &session))
        {
            sessions.remove(&client);
        }
    }
    session.endpoint.metrics().open_connections.dec();
    session.endpoint.open.fetch_sub(1, Ordering::Relaxed);
}
