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

pub fn tcp_listener(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = frontend_socket(addr, Type::STREAM)?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

pub fn udp_socket(addr: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
    let socket = frontend_socket(addr, Type::DGRAM)?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// Closes an accepted connection with a RST, as kube-proxy's REJECT does for a Service with no endpoints.
pub fn reset(stream: tokio::net::TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
    drop(stream);
}
