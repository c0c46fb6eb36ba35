//! Listener sockets for frontends: FREEBIND because the node agent may add the cluster IP only
//! after we bind, REUSEPORT because two agents on one test machine may serve the same cluster IP.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};

fn frontend_socket(addr: SocketAddr, ty: Type) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv4() {
        socket.set_freebind_v4(true)?;
    } else {
        socket.set_freebind_v6(true)?;
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// A bound, listening socket; it becomes a tokio listener inside the worker that serves it
/// (a tokio socket belongs to the reactor of the runtime it was made in).
pub fn tcp_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = frontend_socket(addr, Type::STREAM)?;
    socket.listen(1024)?;
    Ok(socket.into())
}

pub fn udp_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = frontend_socket(addr, Type::DGRAM)?;
    Ok(socket.into())
}

/// Closes an accepted connection with a RST, as kube-proxy's REJECT does for a Service with no endpoints.
pub fn reset(stream: tokio::net::TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
    drop(stream);
}
