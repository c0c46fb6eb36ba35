//! `hostPort`: a container port published on the node's address, as
//! docker-proxy does it — a listener on `hostIP:hostPort` (every address
//! when `hostIP` is empty) that relays each TCP connection, or each UDP
//! client's datagrams, to `podIP:containerPort`. No iptables rules to leave
//! behind; the relays live as long as the pod's sandbox and are made again
//! after an agent restart. `hostNetwork` pods listen on the node already.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::task::JoinHandle;

/// One published port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub host: SocketAddr,
    pub pod_port: u16,
    pub udp: bool,
}

/// The hostPorts of `pod`, or an error naming the bad entry.
pub fn mappings(pod: &Pod) -> Result<Vec<Mapping>, String> {
    let Some(spec) = &pod.spec else {
        return Ok(Vec::new());
    };
    if spec.host_network == Some(true) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for container in spec.containers.iter() {
        for port in container.ports.iter().flatten() {
            let Some(host_port) = port.host_port.filter(|p| *p > 0) else {
                continue;
            };
            let host_port = u16::try_from(host_port)
                .map_err(|_| format!("hostPort {host_port} out of range"))?;
            let pod_port = u16::try_from(port.container_port)
                .map_err(|_| format!("containerPort {} out of range", port.container_port))?;
            let ip: IpAddr = match port.host_ip.as_deref() {
                None | Some("") => IpAddr::from([0, 0, 0, 0]),
                Some(text) => text
                    .parse()
                    .map_err(|_| format!("hostIP {text:?} is not an IP address"))?,
            };
            let udp = match port.protocol.as_deref() {
                None | Some("TCP") => false,
                Some("UDP") => true,
                Some(other) => return Err(format!("hostPort protocol {other} is not supported")),
            };
            out.push(Mapping {
                host: SocketAddr::new(ip, host_port),
                pod_port,
                udp,
            });
        }
    }
    Ok(out)
}

/// The relays of every pod, by pod uid.
#[derive(Default)]
pub struct HostPorts {
    pods: Mutex<HashMap<String, Vec<JoinHandle<()>>>>,
}

impl HostPorts {
    /// Starts the relays of pod `uid` to `pod_ip` unless they run already.
    pub async fn ensure(&self, uid: &str, pod: &Pod, pod_ip: &str) -> Result<(), String> {
        if self.pods.lock().unwrap().contains_key(uid) {
            return Ok(());
        }
        let maps = mappings(pod)?;
        if maps.is_empty() {
            return Ok(());
        }
        let ip: IpAddr = pod_ip
            .parse()
            .map_err(|_| format!("pod IP {pod_ip:?} is not an IP address"))?;
        let mut tasks = Vec::new();
        for m in maps {
            let target = SocketAddr::new(ip, m.pod_port);
            let task = if m.udp {
                match tokio::net::UdpSocket::bind(m.host).await {
                    Ok(socket) => tokio::spawn(relay_udp(Arc::new(socket), target)),
                    Err(e) => {
                        tasks.iter().for_each(|t: &JoinHandle<()>| t.abort());
                        return Err(format!("hostPort {}/UDP: {e}", m.host));
                    }
                }
            } else {
                match tokio::net::TcpListener::bind(m.host).await {
                    Ok(listener) => tokio::spawn(relay_tcp(listener, target)),
                    Err(e) => {
                        tasks.iter().for_each(|t: &JoinHandle<()>| t.abort());
                        return Err(format!("hostPort {}/TCP: {e}", m.host));
                    }
                }
            };
            tasks.push(task);
        }
        self.pods.lock().unwrap().insert(uid.to_string(), tasks);
        Ok(())
    }

    /// Stops the relays of pod `uid`.
    pub fn remove(&self, uid: &str) {
        if let Some(tasks) = self.pods.lock().unwrap().remove(uid) {
            for t in tasks {
                t.abort();
            }
        }
    }
}

async fn relay_tcp(listener: tokio::net::TcpListener, target: SocketAddr) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await {
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}

/// UDP: one upstream socket per client address, forgotten after 30 s idle.
async fn relay_udp(socket: Arc<tokio::net::UdpSocket>, target: SocketAddr) {
    let sessions: Arc<Mutex<HashMap<SocketAddr, Arc<tokio::net::UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let existing = sessions.lock().unwrap().get(&client).cloned();
        let upstream = match existing {
            Some(u) => u,
            None => {
                let local: SocketAddr = if target.is_ipv4() {
                    "0.0.0.0:0".parse().unwrap()
                } else {
                    "[::]:0".parse().unwrap()
                };
                let Ok(u) = tokio::net::UdpSocket::bind(local).await else {
                    continue;
                };
                if u.connect(target).await.is_err() {
                    continue;
                }
                let u = Arc::new(u);
                sessions.lock().unwrap().insert(client, u.clone());
                let (back, up, sessions) = (socket.clone(), u.clone(), sessions.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_secs(30), up.recv(&mut buf)).await
                    {
                        let _ = back.send_to(&buf[..n], client).await;
                    }
                    sessions.lock().unwrap().remove(&client);
                });
                u
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn host_ports_are_read_from_every_container() {
        let p = pod(serde_json::json!({"containers": [
            {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]},
            {"name": "b", "ports": [{"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.1"}]}
        ]}));
        assert_eq!(
            mappings(&p),
            Ok(vec![
                Mapping {
                    host: "0.0.0.0:8080".parse().unwrap(),
                    pod_port: 80,
                    udp: false
                },
                Mapping {
                    host: "127.0.0.1:5353".parse().unwrap(),
                    pod_port: 53,
                    udp: true
                },
            ])
        );
        let host_network = pod(serde_json::json!({"hostNetwork": true, "containers": [
            {"name": "a", "ports": [{"containerPort": 80, "hostPort": 80}]}
        ]}));
        assert_eq!(mappings(&host_network), Ok(vec![]));
        let bad = pod(serde_json::json!({"containers": [
            {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": "nope"}]}
        ]}));
        assert_eq!(
            mappings(&bad),
            Err("hostIP \"nope\" is not an IP address".into())
        );
    }

    #[tokio::test]
    async fn tcp_and_udp_are_relayed_to_the_pod_port() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // "Pods": an echo server on TCP and on UDP.
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp_port = tcp.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut c, _) = tcp.accept().await.unwrap();
            let mut b = [0u8; 5];
            c.read_exact(&mut b).await.unwrap();
            c.write_all(&b).await.unwrap();
        });
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let udp_port = udp.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut b = [0u8; 16];
            let (n, from) = udp.recv_from(&mut b).await.unwrap();
            udp.send_to(&b[..n], from).await.unwrap();
        });
        // Free host ports for the relays.
        let free = |udp: bool| {
            if udp {
                std::net::UdpSocket::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            } else {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            }
        };
        let (host_tcp, host_udp) = (free(false), free(true));
        let p = pod(serde_json::json!({"containers": [{"name": "a", "ports": [
            {"containerPort": tcp_port, "hostPort": host_tcp, "hostIP": "127.0.0.1"},
            {"containerPort": udp_port, "hostPort": host_udp, "hostIP": "127.0.0.1", "protocol": "UDP"}
        ]}]}));
        let ports = HostPorts::default();
        ports.ensure("uid", &p, "127.0.0.1").await.unwrap();
        // Binding the same ports for another pod fails, naming the port.
        let clash = ports.ensure("uid2", &p, "127.0.0.1").await.unwrap_err();
        assert!(
            clash.starts_with(&format!("hostPort 127.0.0.1:{host_tcp}/TCP")),
            "{clash}"
        );

        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", host_tcp))
            .await
            .unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"hello");

        let u = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        u.connect(("127.0.0.1", host_udp)).await.unwrap();
        u.send(b"ping").await.unwrap();
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), u.recv(&mut b))
            .await
            .expect("no UDP answer through the relay")
            .unwrap();
        assert_eq!(&b[..n], b"ping");

        ports.remove("uid");
        // The listener is gone once its task is aborted.
        let mut refused = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", host_tcp))
                .await
                .is_err()
            {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            refused,
            "the hostPort still accepts connections after remove"
        );
    }
}
