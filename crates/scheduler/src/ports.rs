//! Host ports requested by pods and in use on a node (kube-scheduler's `HostPortInfo`).
//! `0.0.0.0` conflicts with every address on the same protocol and port.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;

/// The address that means "every address".
const BIND_ALL: &str = "0.0.0.0";

/// A `hostPort` a container binds, with empty protocol and address defaulted to
/// `TCP` and `0.0.0.0`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The host address, `0.0.0.0` for all of them.
    pub host_ip: String,
    /// The port on the host.
    pub port: i32,
}

impl HostPort {
    /// The host ports of a pod's (regular) containers; ports without a `hostPort` are skipped.
    pub(crate) fn of(spec: Option<&PodSpec>) -> Vec<HostPort> {
        let mut ports = Vec::new();
        for container in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
            for port in container.ports.iter().flatten() {
                let host_port = port.host_port.unwrap_or(0);
                if host_port <= 0 {
                    continue;
                }
                let non_empty = |value: Option<&str>, default: &str| match value {
                    Some(value) if !value.is_empty() => value.to_string(),
                    _ => default.to_string(),
                };
                ports.push(HostPort {
                    protocol: non_empty(port.protocol.as_deref(), "TCP"),
                    host_ip: non_empty(port.host_ip.as_deref(), BIND_ALL),
                    port: host_port,
                });
            }
        }
        ports
    }
}

/// The host ports in use on a node, counted so that removing one of two pods that
/// (against the rules) share a port keeps the port in use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsedPorts {
    by_port: BTreeMap<(String, i32), BTreeMap<String, u32>>,
}

impl UsedPorts {
    pub(crate) fn add(&mut self, port: &HostPort) {
        *self
            .by_port
            .entry((port.protocol.clone(), port.port))
            .or_default()
            .entry(port.host_ip.clone())
            .or_default() += 1;
    }

    pub(crate) fn remove(&mut self, port: &HostPort) {
        let key = (port.protocol.clone(), port.port);
        let Some(addresses) = self.by_port.get_mut(&key) else {
            return;
        };
        if let Some(count) = addresses.get_mut(&port.host_ip) {
            *count -= 1;
            if *count == 0 {
                addresses.remove(&port.host_ip);
            }
        }
        if addresses.is_empty() {
            self.by_port.remove(&key);
        }
    }

    /// Whether binding `port` would clash with a port in use.
    pub fn conflicts_with(&self, port: &HostPort) -> bool {
        let Some(addresses) = self.by_port.get(&(port.protocol.clone(), port.port)) else {
            return false;
        };
        port.host_ip == BIND_ALL
            || addresses.contains_key(BIND_ALL)
            || addresses.contains_key(&port.host_ip)
    }

    /// Whether no host port is in use.
    pub fn is_empty(&self) -> bool {
        self.by_port.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(protocol: &str, ip: &str, port: i32) -> HostPort {
        HostPort {
            protocol: protocol.to_string(),
            host_ip: ip.to_string(),
            port,
        }
    }

    fn check(used: &[HostPort], wanted: HostPort, expected: bool) {
        let mut in_use = UsedPorts::default();
        for p in used {
            in_use.add(p);
        }
        assert_eq!(
            in_use.conflicts_with(&wanted),
            expected,
            "{wanted:?} against {used:?}"
        );
    }

    #[test]
    fn conflicts() {
        check(&[], port("TCP", "0.0.0.0", 80), false);
        check(
            &[port("TCP", "0.0.0.0", 80)],
            port("TCP", "0.0.0.0", 80),
            true,
        );
        check(
            &[port("TCP", "0.0.0.0", 80)],
            port("TCP", "10.0.0.1", 80),
            true,
        );
        check(
            &[port("TCP", "10.0.0.1", 80)],
            port("TCP", "0.0.0.0", 80),
            true,
        );
        check(
            &[port("TCP", "10.0.0.1", 80)],
            port("TCP", "10.0.0.1", 80),
            true,
        );
        check(
            &[port("TCP", "10.0.0.1", 80)],
            port("TCP", "10.0.0.2", 80),
            false,
        );
        check(
            &[port("TCP", "0.0.0.0", 80)],
            port("UDP", "0.0.0.0", 80),
            false,
        );
        check(
            &[port("TCP", "0.0.0.0", 80)],
            port("TCP", "0.0.0.0", 8080),
            false,
        );
    }

    #[test]
    fn counted_removal() {
        let mut used = UsedPorts::default();
        let p = port("TCP", "0.0.0.0", 80);
        used.add(&p);
        used.add(&p);
        used.remove(&p);
        assert!(used.conflicts_with(&p));
        used.remove(&p);
        assert!(!used.conflicts_with(&p));
        assert!(used.is_empty());
        used.remove(&p);
        assert!(used.is_empty());
    }
}
