//! Pod networking through the standard CNI plugins (Debian's
//! containernetworking-plugins): each pod gets a named network namespace
//! (`ip netns`), loopback, and an `eth0` on the node bridge `drover0` with
//! an address from the node's pod CIDR (`host-local` IPAM). The bridge is the
//! pods' gateway and has an address in the CIDR, so the node reaches every
//! pod IP. CNI rather than hand-written netlink: the plugins are what every
//! Kubernetes distribution runs, they handle veths, hairpin, IPAM leases and
//! clean-up, and a different plugin chain is a configuration change.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct PodNetwork {
    /// Where the CNI plugin binaries are.
    pub cni_bin: PathBuf,
    /// The pod CIDR of this node.
    pub subnet: String,
    /// host-local's lease directory.
    pub ipam_dir: PathBuf,
    pub bridge: String,
}

impl PodNetwork {
    pub fn new(cni_bin: PathBuf, subnet: String, ipam_dir: PathBuf, bridge: String) -> PodNetwork {
        PodNetwork {
            cni_bin,
            subnet,
            ipam_dir,
            bridge,
        }
    }

    /// Whether the plugins this needs are installed.
    pub fn available(&self) -> bool {
        ["bridge", "host-local", "loopback"]
            .iter()
            .all(|p| self.cni_bin.join(p).is_file())
    }

    fn netns_name(uid: &str) -> String {
        format!("drover-{uid}")
    }

    pub fn netns_path(uid: &str) -> PathBuf {
        Path::new("/run/netns").join(Self::netns_name(uid))
    }

    fn bridge_config(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "drover",
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.ipam_dir,
            },
        })
    }

    fn cni(&self, command: &str, uid: &str, ifname: &str, config: &Value) -> Result<Value, String> {
        let plugin = config["type"].as_str().unwrap_or_default();
        let mut child = Command::new(self.cni_bin.join(plugin))
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", uid)
            .env("CNI_NETNS", Self::netns_path(uid))
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.cni_bin)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running CNI plugin {plugin}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(config.to_string().as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("running CNI plugin {plugin}: {e}"))?;
        let stdout: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if !out.status.success() {
            let message = stdout
                .get("msg")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).to_string());
            return Err(format!("CNI plugin {plugin} {command} failed: {message}"));
        }
        Ok(stdout)
    }

    /// Creates the pod's network namespace and interfaces; returns the pod IP.
    pub fn setup(&self, uid: &str) -> Result<String, String> {
        let name = Self::netns_name(uid);
        if !Self::netns_path(uid).exists() {
            let out = Command::new("ip")
                .args(["netns", "add", &name])
                .output()
                .map_err(|e| format!("ip netns add {name}: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "ip netns add {name}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        let loopback = json!({"cniVersion": "1.0.0", "name": "drover-lo", "type": "loopback"});
        let added = self
            .cni("ADD", uid, "lo", &loopback)
            .and_then(|_| self.cni("ADD", uid, "eth0", &self.bridge_config()));
        let result = match added {
            Ok(r) => r,
            Err(e) => {
                // Leave nothing half made: the next attempt starts afresh.
                let _ = self.teardown(uid);
                return Err(e);
            }
        };
        result
            .pointer("/ips/0/address")
            .and_then(Value::as_str)
            .and_then(|a| a.split('/').next())
            .map(str::to_string)
            .ok_or_else(|| format!("CNI bridge returned no address: {result}"))
    }

    /// Releases the address and removes the namespace (and with it the veth).
    pub fn teardown(&self, uid: &str) -> Result<(), String> {
        if Self::netns_path(uid).exists() {
            self.cni("DEL", uid, "eth0", &self.bridge_config())?;
            let out = Command::new("ip")
                .args(["netns", "delete", &Self::netns_name(uid)])
                .output()
                .map_err(|e| format!("ip netns delete: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "ip netns delete: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        } else {
            // The namespace is gone already: release the address anyway.
            let _ = self.cni("DEL", uid, "eth0", &self.bridge_config());
        }
        Ok(())
    }
}

/// The node's service addresses (ClusterIPs and the cluster DNS address)
/// as host-scope /32 (/128) addresses on an interface of their own,
/// `BRIDGE-svc` (kube-proxy's IPVS mode does the same with its dummy
/// `kube-ipvs0`): the node's own
/// processes reach them as local addresses, and pods through their default
/// route to the bridge, so the agent's userspace proxy and DNS server can
/// listen on them without iptables. Not on the bridge itself: CNI's bridge
/// plugin refuses a bridge with an IPv4 address other than its gateway's.
pub struct ServiceAddresses {
    interface: String,
}

impl ServiceAddresses {
    pub fn new(interface: &str) -> ServiceAddresses {
        ServiceAddresses {
            interface: interface.to_string(),
        }
    }

    /// The service interface of the node whose pod bridge is `bridge`
    /// (`BRIDGE-svc`; interface names have at most 15 bytes).
    pub fn interface_for(bridge: &str) -> String {
        if bridge.len() <= 11 {
            format!("{bridge}-svc")
        } else {
            let hash = bridge.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            format!("drsvc{:010x}", hash & 0xff_ffff_ffff)
        }
    }

    fn ip(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut command = Command::new("ip");
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
        if !out.status.success() {
            return Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates the interface and brings it up (addresses on a down
    /// interface are not local): a dummy device, or where the kernel has no
    /// dummy module, a bridge without ports, which holds local addresses
    /// just as well.
    fn ensure_interface(&self) -> Result<(), String> {
        if self
            .ip(&["link", "show", "dev", &self.interface], None)
            .is_err()
            && self
                .ip(&["link", "add", &self.interface, "type", "dummy"], None)
                .is_err()
        {
            self.ip(&["link", "add", &self.interface, "type", "bridge"], None)?;
        }
        self.ip(&["link", "set", "dev", &self.interface, "up"], None)
            .map(|_| ())
    }

    /// Parses `ip -o addr show` lines into the host-length prefixes.
    fn host_addresses(listing: &str) -> std::collections::BTreeSet<std::net::IpAddr> {
        listing
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                words.find(|w| *w == "inet" || *w == "inet6")?;
                let (address, length) = words.next()?.split_once('/')?;
                let address: std::net::IpAddr = address.parse().ok()?;
                let full = if address.is_ipv4() { "32" } else { "128" };
                (length == full).then_some(address)
            })
            .collect()
    }
}

impl agent::services::LocalAddresses for ServiceAddresses {
    fn list(&self) -> Result<std::collections::BTreeSet<std::net::IpAddr>, String> {
        self.ensure_interface()?;
        let listing = self.ip(&["-o", "addr", "show", "dev", &self.interface], None)?;
        Ok(Self::host_addresses(&listing))
    }

    fn add(&self, addresses: &[std::net::IpAddr]) -> Result<(), String> {
        if addresses.is_empty() {
            return Ok(());
        }
        self.ensure_interface()?;
        let batch: String = addresses
            .iter()
            .map(|a| {
                let length = if a.is_ipv4() { 32 } else { 128 };
                format!(
                    "address replace {a}/{length} dev {} scope host\n",
                    self.interface
                )
            })
            .collect();
        self.ip(&["-force", "-batch", "-"], Some(&batch))
            .map(|_| ())
    }

    fn remove(&self, addresses: &[std::net::IpAddr]) -> Result<(), String> {
        if addresses.is_empty() {
            return Ok(());
        }
        let batch: String = addresses
            .iter()
            .map(|a| {
                let length = if a.is_ipv4() { 32 } else { 128 };
                format!("address del {a}/{length} dev {}\n", self.interface)
            })
            .collect();
        self.ip(&["-force", "-batch", "-"], Some(&batch))
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::ServiceAddresses;

    #[test]
    fn only_host_length_addresses_are_service_addresses() {
        let listing = "5: drover0    inet 10.100.3.1/24 brd 10.100.3.255 scope global drover0\\       valid_lft forever preferred_lft forever\n\
                       5: drover0    inet 10.43.0.10/32 scope host drover0\\       valid_lft forever preferred_lft forever\n\
                       5: drover0    inet6 fd00::5/128 scope host \\       valid_lft forever preferred_lft forever\n\
                       5: drover0    inet6 fe80::1/64 scope link \\       valid_lft forever preferred_lft forever\n";
        let found: Vec<String> = ServiceAddresses::host_addresses(listing)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(found, ["10.43.0.10", "fd00::5"]);
    }
}

#[cfg(test)]
mod interface_names {
    use super::ServiceAddresses;

    #[test]
    fn service_interfaces_are_valid_interface_names() {
        assert_eq!(ServiceAddresses::interface_for("drover0"), "drover0-svc");
        assert_eq!(
            ServiceAddresses::interface_for("drv12345x12"),
            "drv12345x12-svc"
        );
        let long = ServiceAddresses::interface_for("a-very-long-bridge");
        assert!(long.len() <= 15 && long.starts_with("drsvc"), "{long}");
        assert_ne!(long, ServiceAddresses::interface_for("a-very-long-bridgf"));
    }
}
