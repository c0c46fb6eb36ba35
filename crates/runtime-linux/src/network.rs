//! Pod networking over netlink, in process: each pod gets a named network
//! namespace (`/run/netns/drover-<uid>`, as `ip netns add` makes them),
//! loopback up, and an `eth0` — one end of a veth pair whose other end is a
//! port of the node bridge `drover0` — with an address from the node's pod
//! CIDR and a default route through the bridge. The bridge holds the CIDR's
//! first address, so it is the pods' gateway and the node reaches every pod
//! IP.
//!
//! Netlink rather than the CNI plugins (bridge + host-local + loopback) that
//! drover first used: those are three Go processes (and an `ip netns add`)
//! per pod, ≈14–20 ms of a pod's start on a quiet machine and a blocked
//! worker thread while they ran; the same steps over netlink take well
//! under a millisecond. Addresses are leased as host-local leases them (a
//! file per address under `<ipam dir>/drover/`, holding the pod's uid), so a
//! node upgraded from the CNI version keeps its pods' leases.
//!
//! Spares: making a namespace and its veth is most of a sandbox's cost
//! (≈5 ms of a pod's start here, and the tail of it: the kernel sets up
//! every per-namespace subsystem). With [`PodNetwork::with_spares`] a
//! background task keeps that many namespaces wired and addressed ahead of
//! need (named `drover-spare-<node>-<n>`, `<node>` a hash of the lease
//! directory, their leases held by that name); a pod takes one by
//! bind-mounting it at its own path `/run/netns/drover-<uid>` and taking
//! over its lease: a mount and a rename. The spare's own path is unmounted
//! afterwards, off the pod's path (an unmount can wait out an RCU grace
//! period: 3–6 ms in one of ten here). Spares left by an agent that stopped
//! are found by their leases, and spare paths whose lease already went to
//! a pod by their node's name prefix; both are removed when the next agent
//! starts (and by [`PodNetwork::remove_spares`] at a clean shutdown).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

/// The name host-local gave the lease directory (the CNI network's name).
const LEASE_NETWORK: &str = "drover";

/// What a spare's name (its lease holder; its namespace is
/// `drover-<name>`) starts with. Pod uids never do.
pub const SPARE_PREFIX: &str = "spare-";

#[derive(Clone, Debug)]
pub struct PodNetwork {
    /// This node's pod CIDR.
    network: Ipv4Addr,
    prefix: u8,
    /// The lease directory (host-local's `dataDir`).
    pub ipam_dir: PathBuf,
    pub bridge: String,
    /// Shared by every clone (the runtimes of one node share one pool).
    spares: std::sync::Arc<Spares>,
}

/// Pre-made pod networks.
#[derive(Debug, Default)]
struct Spares {
    /// How many to keep ready.
    target: std::sync::atomic::AtomicUsize,
    ready: std::sync::Mutex<std::collections::VecDeque<Spare>>,
    /// A spare was taken: make another.
    taken: tokio::sync::Notify,
    /// The refill task runs (started once).
    started: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Spare {
    name: String,
    ip: Ipv4Addr,
}

impl PodNetwork {
    /// A pod network on `subnet` (IPv4 CIDR, at most /30), bridge `bridge`,
    /// leases under `ipam_dir`.
    pub fn new(subnet: &str, ipam_dir: PathBuf, bridge: String) -> Result<PodNetwork, String> {
        let (network, prefix) = parse_cidr(subnet)?;
        if bridge.is_empty() || bridge.len() > 15 {
            return Err(format!(
                "bridge name {bridge:?}: interface names have 1 to 15 bytes"
            ));
        }
        Ok(PodNetwork {
            network,
            prefix,
            ipam_dir,
            bridge,
            spares: Default::default(),
        })
    }

    /// Keep `count` spare pod networks ready (0: none; a pod then makes
    /// its own as it starts). Takes effect with [`PodNetwork::start_spares`].
    pub fn with_spares(self, count: usize) -> PodNetwork {
        self.spares
            .target
            .store(count, std::sync::atomic::Ordering::Relaxed);
        self
    }

    /// Removes spares an earlier agent left (found by their leases), then
    /// keeps the pool full on a task of its own. Call once, in a tokio
    /// runtime; later calls do nothing.
    pub fn start_spares(&self) {
        use std::sync::atomic::Ordering;
        if self.spares.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.remove_leftover_spares().await;
            // Warned once per run of failures (a full pod CIDR, say), not
            // every retry.
            let mut failing = false;
            loop {
                while this.spare_count() < this.spares.target.load(Ordering::Relaxed) {
                    match this.make_spare().await {
                        Ok(spare) => {
                            failing = false;
                            this.spares.ready.lock().unwrap().push_back(spare);
                        }
                        Err(e) => {
                            if failing {
                                tracing::debug!("pod network: making a spare: {e}");
                            } else {
                                tracing::warn!(
                                    "pod network: making a spare (retried every 5 s): {e}"
                                );
                            }
                            failing = true;
                            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                        }
                    }
                }
                this.spares.taken.notified().await;
                // Let the pod that took one start before making the next.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        });
    }

    /// How many spares are ready now.
    pub fn spare_count(&self) -> usize {
        self.spares.ready.lock().unwrap().len()
    }

    /// Removes every spare of this node: those ready, and any an earlier
    /// agent left behind (at a clean shutdown; pods' networks stay).
    pub async fn remove_spares(&self) {
        self.spares
            .target
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let ready: Vec<Spare> = self.spares.ready.lock().unwrap().drain(..).collect();
        for spare in ready {
            let _ = self.teardown(&spare.name).await;
        }
        self.remove_leftover_spares().await;
    }

    async fn remove_leftover_spares(&self) {
        let ready: std::collections::BTreeSet<String> = self
            .spares
            .ready
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let leased = spare_leases(&self.lease_dir());
        for name in &leased {
            if !ready.contains(name) {
                if let Err(e) = self.teardown(name).await {
                    tracing::warn!("pod network: removing the leftover spare {name}: {e}");
                }
            }
        }
        // A spare's path whose lease went to a pod: only the path goes (the
        // namespace, its veth and its address are the pod's).
        for name in orphan_spare_paths(&self.spare_name_prefix(), &leased) {
            if !ready.contains(&name) {
                unmount_netns_path(&Self::netns_path(&name));
            }
        }
    }

    /// What this node's spares are named with: [`SPARE_PREFIX`] and a hash
    /// of the lease directory, so that an agent sweeping spare paths left
    /// without a lease never touches another node's on the same host.
    pub fn spare_name_prefix(&self) -> String {
        spare_name_prefix(&self.lease_dir())
    }

    async fn make_spare(&self) -> Result<Spare, String> {
        static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seed = format!(
            "{}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let name = format!("{}{}", self.spare_name_prefix(), short_hash(&seed));
        let ip = lease(&self.lease_dir(), self.network, self.prefix, &name)?;
        match self.wire(&name, ip).await {
            Ok(()) => Ok(Spare { name, ip }),
            Err(e) => {
                let _ = self.teardown(&name).await;
                Err(e)
            }
        }
    }

    /// Gives a ready spare to pod `uid`: its namespace bound at the pod's
    /// path, its lease the pod's. `None` when no spare is ready (or one
    /// could not be handed over; it is removed).
    async fn take_spare(&self, uid: &str) -> Option<Ipv4Addr> {
        let spare = self.spares.ready.lock().unwrap().pop_front()?;
        self.spares.taken.notify_one();
        let from = Self::netns_path(&spare.name);
        let to = Self::netns_path(uid);
        let handed = (|| {
            std::fs::File::create(&to).map_err(|e| format!("creating {}: {e}", to.display()))?;
            nix::mount::mount(
                Some(&from),
                &to,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| format!("binding {} on {}: {e}", from.display(), to.display()))?;
            // The namespace is the pod's from here on. An agent stopped
            // before the rename leaves the spare's lease (the spare goes at
            // the next start; the pod's sandbox, not recorded yet, is made
            // afresh); one stopped after it leaves the spare's path with no
            // lease, removed at the next start by its node's prefix.
            hand_over_lease(&self.lease_dir(), spare.ip, uid)
        })();
        match handed {
            Ok(()) => {
                let name = spare.name;
                tokio::task::spawn_blocking(move || unmount_netns_path(&Self::netns_path(&name)));
                Some(spare.ip)
            }
            Err(e) => {
                tracing::warn!(
                    "pod network: handing spare {} to pod {uid}: {e}",
                    spare.name
                );
                if let Ok(true) = to.try_exists() {
                    unmount_netns_path(&to);
                }
                let _ = self.teardown(&spare.name).await;
                None
            }
        }
    }

    fn netns_name(uid: &str) -> String {
        format!("drover-{uid}")
    }

    pub fn netns_path(uid: &str) -> PathBuf {
        Path::new("/run/netns").join(Self::netns_name(uid))
    }

    /// The bridge's address: the CIDR's first host.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    fn lease_dir(&self) -> PathBuf {
        self.ipam_dir.join(LEASE_NETWORK)
    }

    /// Creates the pod's network namespace and interfaces; returns the pod IP.
    pub async fn setup(&self, uid: &str) -> Result<String, String> {
        if Self::netns_path(uid).exists() {
            // Left by an attempt that did not finish: start afresh.
            self.teardown(uid).await?;
        }
        if let Some(ip) = self.take_spare(uid).await {
            return Ok(ip.to_string());
        }
        let ip = lease(&self.lease_dir(), self.network, self.prefix, uid)?;
        match self.wire(uid, ip).await {
            Ok(()) => Ok(ip.to_string()),
            Err(e) => {
                // Leave nothing half made.
                let _ = self.teardown(uid).await;
                Err(e)
            }
        }
    }

    async fn wire(&self, uid: &str, ip: Ipv4Addr) -> Result<(), String> {
        let (pod_handle, netns) = create_netns(uid).await?;
        let host = connect()?;
        let bridge = self.ensure_bridge(&host).await?;
        let host_end = format!("veth{}", short_hash(uid));
        let failed = |what: &str| {
            let what = what.to_string();
            move |e: rtnetlink::Error| format!("pod network: {what}: {e}")
        };
        // One message makes the pair with each end where it belongs: the
        // host end a port of the bridge, up; the other `eth0` in the pod's
        // namespace. (Moving an interface between namespaces afterwards
        // costs the kernel RCU grace periods: 20-35 ms here.)
        let pod_end = LinkMessageBuilder::<LinkUnspec>::new()
            .name("eth0".into())
            .setns_by_fd(netns.as_raw_fd())
            .build();
        let pair = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host_end.clone())
            .controller(bridge)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(pod_end)))
            .build();
        host.link()
            .add(pair)
            .execute()
            .await
            .map_err(failed(&format!("creating veth pair {host_end}")))?;
        // Hairpin: a pod reaching itself through a service address gets its
        // packets back through its own port.
        let _ = std::fs::write(
            format!("/sys/class/net/{host_end}/brport/hairpin_mode"),
            "1",
        );
        // Inside the pod: lo and eth0 up, the address, the default route.
        let lo = link_index(&pod_handle, "lo").await?;
        pod_handle
            .link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await
            .map_err(failed("bringing up lo"))?;
        let eth0 = link_index(&pod_handle, "eth0").await?;
        pod_handle
            .link()
            .set(LinkUnspec::new_with_index(eth0).up().build())
            .execute()
            .await
            .map_err(failed("bringing up eth0"))?;
        pod_handle
            .address()
            .add(eth0, IpAddr::V4(ip), self.prefix)
            .execute()
            .await
            .map_err(failed(&format!("adding {ip}/{} to eth0", self.prefix)))?;
        pod_handle
            .route()
            .add(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(self.gateway())
                    .output_interface(eth0)
                    .build(),
            )
            .execute()
            .await
            .map_err(failed("adding the default route"))?;
        Ok(())
    }

    /// The bridge's index, made (up, with the gateway address, forwarding
    /// on) if it is not there yet.
    async fn ensure_bridge(&self, host: &Handle) -> Result<u32, String> {
        let index = match link_index(host, &self.bridge).await {
            Ok(index) => index,
            Err(_) => {
                let added = host
                    .link()
                    .add(LinkBridge::new(&self.bridge).build())
                    .execute()
                    .await;
                if let Err(e) = added {
                    // Another pod's setup may have made it meanwhile.
                    if !is_exists(&e) {
                        return Err(format!("pod network: creating bridge {}: {e}", self.bridge));
                    }
                }
                link_index(host, &self.bridge).await?
            }
        };
        let added = host
            .address()
            .add(index, IpAddr::V4(self.gateway()), self.prefix)
            .execute()
            .await;
        if let Err(e) = added {
            if !is_exists(&e) {
                return Err(format!(
                    "pod network: adding {}/{} to {}: {e}",
                    self.gateway(),
                    self.prefix,
                    self.bridge
                ));
            }
        }
        host.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| format!("pod network: bringing up {}: {e}", self.bridge))?;
        // As CNI's bridge plugin with isGateway: the node routes for its pods.
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
        Ok(index)
    }

    /// Removes the namespace (and with it the veth) and releases the address.
    pub async fn teardown(&self, uid: &str) -> Result<(), String> {
        let path = Self::netns_path(uid);
        if path.exists() {
            match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(format!("unmounting {}: {e}", path.display())),
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("removing {}: {e}", path.display())),
            }
        }
        // The host end goes with the namespace once nothing holds it; an
        // attempt that failed before the move leaves it here.
        if let Ok(host) = connect() {
            let host_end = format!("veth{}", short_hash(uid));
            if let Ok(index) = link_index(&host, &host_end).await {
                let _ = host.link().del(index).execute().await;
            }
        }
        release(&self.lease_dir(), uid)
    }
}

fn parse_cidr(cidr: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || format!("pod CIDR {cidr:?}: expected an IPv4 CIDR such as 10.88.0.0/16");
    let (address, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if !(1..=30).contains(&prefix) {
        return Err(format!(
            "pod CIDR {cidr:?}: the prefix must be /1 to /30 (room for a gateway and pods)"
        ));
    }
    let mask = u32::MAX << (32 - prefix);
    Ok((Ipv4Addr::from(u32::from(address) & mask), prefix))
}

/// 8 hex digits naming a pod's interfaces (interface names have at most 15
/// bytes; a uid has 36).
fn short_hash(uid: &str) -> String {
    // FNV-1a: stable across builds, so a newer agent finds the names an
    // older one made.
    let hash = uid.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{hash:08x}")
}

fn is_exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EEXIST)
}

fn connect() -> Result<Handle, String> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| format!("pod network: netlink socket: {e}"))?;
    tokio::spawn(connection);
    Ok(handle)
}

async fn link_index(handle: &Handle, name: &str) -> Result<u32, String> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(link.header.index),
        Ok(None) => Err(format!("pod network: no interface {name}")),
        Err(e) => Err(format!("pod network: looking up {name}: {e}")),
    }
}

/// Makes the named network namespace of pod `uid` as `ip netns add` does (a
/// new namespace bind-mounted on `/run/netns/NAME`, `/run/netns` a shared
/// mount) and returns a netlink handle inside it and the namespace itself.
/// A thread of its own enters the new namespace (a thread's namespace is its
/// own); the netlink socket it opens there stays in it.
async fn create_netns(uid: &str) -> Result<(Handle, OwnedFd), String> {
    let path = PodNetwork::netns_path(uid);
    let runtime = tokio::runtime::Handle::current();
    let (connection, handle, netns) = std::thread::spawn(move || {
        prepare_netns_dir()?;
        std::fs::File::create(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("creating a network namespace: {e}"))?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &path,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("mounting the network namespace on {}: {e}", path.display()))?;
        let netns: OwnedFd = std::fs::File::open("/proc/thread-self/ns/net")
            .map_err(|e| format!("opening the new network namespace: {e}"))?
            .into();
        let _entered = runtime.enter();
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| format!("pod network: netlink socket in the pod namespace: {e}"))?;
        Ok::<_, String>((connection, handle, netns))
    })
    .join()
    .map_err(|_| "creating the network namespace: the thread panicked".to_string())??;
    tokio::spawn(connection);
    Ok((handle, netns))
}

/// `/run/netns` as iproute2 leaves it: a mount point with shared
/// propagation, so namespaces mounted there show in every mount namespace.
fn prepare_netns_dir() -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        use nix::mount::{mount, MsFlags};
        let dir = Path::new("/run/netns");
        std::fs::create_dir_all(dir).map_err(|e| format!("creating /run/netns: {e}"))?;
        let shared = || {
            mount(
                None::<&str>,
                dir,
                None::<&str>,
                MsFlags::MS_SHARED | MsFlags::MS_REC,
                None::<&str>,
            )
        };
        if shared().is_err() {
            // Not a mount point yet: make it one.
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| format!("bind-mounting /run/netns: {e}"))?;
            shared().map_err(|e| format!("making /run/netns shared: {e}"))?;
        }
        Ok(())
    })
    .clone()
}

/// Leases an address of `network/prefix` to `uid` as host-local does: one
/// file per address, created exclusively, searched round-robin from the
/// last address leased (so a freed address is not reused at once). The
/// network address, the gateway (first host) and the broadcast address are
/// never leased.
fn lease(dir: &Path, network: Ipv4Addr, prefix: u8, uid: &str) -> Result<Ipv4Addr, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if let Some(ip) = leased_to(dir, uid) {
        return Ok(ip);
    }
    let first = u32::from(network) + 2;
    let last = u32::from(network) + (1u32 << (32 - prefix)) - 2;
    let count = last - first + 1;
    let marker = dir.join("last_reserved_ip.0");
    let start = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
        .map(u32::from)
        .filter(|a| (first..=last).contains(a))
        .map_or(first, |a| if a == last { first } else { a + 1 });
    for i in 0..count {
        let candidate = Ipv4Addr::from(first + (start - first + i) % count);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(candidate.to_string()));
        match file {
            Ok(mut file) => {
                file.write_all(format!("{uid}\r\neth0").as_bytes())
                    .map_err(|e| format!("writing the lease of {candidate}: {e}"))?;
                let _ = std::fs::write(&marker, candidate.to_string());
                return Ok(candidate);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("leasing {candidate}: {e}")),
        }
    }
    Err(format!(
        "no free address in {network}/{prefix}: all {count} are leased"
    ))
}

/// Gives the lease of `ip` to `uid` (a write to a new file renamed over the
/// lease: never half written).
fn hand_over_lease(dir: &Path, ip: Ipv4Addr, uid: &str) -> Result<(), String> {
    let temporary = dir.join(format!(".{ip}.handover"));
    std::fs::write(&temporary, format!("{uid}\r\neth0"))
        .map_err(|e| format!("writing the lease of {ip}: {e}"))?;
    std::fs::rename(&temporary, dir.join(ip.to_string()))
        .map_err(|e| format!("handing over the lease of {ip}: {e}"))
}

/// The names of the spares holding leases in `dir`.
fn spare_leases(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<Ipv4Addr>().is_ok())
        })
        .filter_map(|e| lease_holder(&e.path()))
        .filter(|holder| holder.starts_with(SPARE_PREFIX))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn spare_name_prefix(lease_dir: &Path) -> String {
    format!(
        "{SPARE_PREFIX}{}-",
        short_hash(&lease_dir.to_string_lossy())
    )
}

/// Names (spare names, not paths) of the spare namespaces under
/// `/run/netns` that start with `prefix` and hold no lease in `leased`.
fn orphan_spare_paths(prefix: &str, leased: &[String]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let path_prefix = PodNetwork::netns_name(prefix);
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(&path_prefix))
        .filter_map(|n| n.strip_prefix("drover-").map(str::to_string))
        .filter(|name| !leased.contains(name))
        .collect();
    names.sort();
    names
}

/// Detaches and removes one bind mount of a namespace (the namespace
/// lives on while another path or a process holds it).
fn unmount_netns_path(path: &Path) {
    let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path);
}

/// The network namespaces of the spares a killed agent on `ipam_dir` left
/// (names under `/run/netns`): those holding leases, and spare paths whose
/// lease had gone to a pod. For whoever cleans up after it (tests).
pub fn leftover_spare_namespaces(ipam_dir: &Path) -> Vec<String> {
    let lease_dir = ipam_dir.join(LEASE_NETWORK);
    let leased = spare_leases(&lease_dir);
    let orphans = orphan_spare_paths(&spare_name_prefix(&lease_dir), &leased);
    let mut names: Vec<String> = leased
        .into_iter()
        .chain(orphans)
        .map(|name| PodNetwork::netns_name(&name))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn lease_holder(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    Some(text.lines().next()?.trim().to_string())
}

fn leased_to(dir: &Path, uid: &str) -> Option<Ipv4Addr> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let ip: Ipv4Addr = entry.file_name().to_str()?.parse().ok()?;
        (lease_holder(&entry.path())? == uid).then_some(ip)
    })
}

/// Releases every address leased to `uid`.
fn release(dir: &Path, uid: &str) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let is_lease = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.parse::<Ipv4Addr>().is_ok());
        if is_lease && lease_holder(&entry.path()).as_deref() == Some(uid) {
            std::fs::remove_file(entry.path())
                .map_err(|e| format!("releasing {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
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
mod leases {
    use super::{lease, parse_cidr, release, short_hash};
    use std::net::Ipv4Addr;

    #[test]
    fn cidrs_parse_to_their_network() {
        assert_eq!(
            parse_cidr("10.88.3.7/16"),
            Ok((Ipv4Addr::new(10, 88, 0, 0), 16))
        );
        for bad in [
            "10.88.0.0",
            "10.88.0.0/31",
            "10.88.0.0/0",
            "fd00::/64",
            "x/8",
        ] {
            let e = parse_cidr(bad).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn addresses_are_leased_round_robin_skipping_gateway_and_broadcast() {
        let dir = tempfile::tempdir().unwrap();
        let net = Ipv4Addr::new(10, 9, 0, 0);
        // A /29 has hosts .1 to .6; .1 is the gateway: .2 to .6 for pods.
        let got: Vec<Ipv4Addr> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|uid| lease(dir.path(), net, 29, uid).unwrap())
            .collect();
        assert_eq!(
            got,
            (2..=6)
                .map(|h| Ipv4Addr::new(10, 9, 0, h))
                .collect::<Vec<_>>()
        );
        // Asking again for the same pod gives its lease, not a new one.
        assert_eq!(
            lease(dir.path(), net, 29, "c").unwrap(),
            Ipv4Addr::new(10, 9, 0, 4)
        );
        let full = lease(dir.path(), net, 29, "f").unwrap_err();
        assert!(full.contains("all 5 are leased"), "{full}");
        // A released address is leased again once the search comes round.
        release(dir.path(), "b").unwrap();
        assert_eq!(
            lease(dir.path(), net, 29, "f").unwrap(),
            Ipv4Addr::new(10, 9, 0, 3)
        );
        release(dir.path(), "a").unwrap();
        release(dir.path(), "d").unwrap();
        // .2 and .5 are free now; the search goes on after the last lease
        // (.3): .4 is c's, so .5, not the lower .2.
        let next = lease(dir.path(), net, 29, "g").unwrap();
        assert_eq!(next, Ipv4Addr::new(10, 9, 0, 5));
    }

    #[test]
    fn leases_written_by_host_local_are_honoured() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("10.9.0.2"), "old-pod\r\neth0").unwrap();
        let net = Ipv4Addr::new(10, 9, 0, 0);
        assert_eq!(
            lease(dir.path(), net, 24, "old-pod").unwrap(),
            Ipv4Addr::new(10, 9, 0, 2)
        );
        assert_eq!(
            lease(dir.path(), net, 24, "new-pod").unwrap(),
            Ipv4Addr::new(10, 9, 0, 3)
        );
        release(dir.path(), "old-pod").unwrap();
        assert!(!dir.path().join("10.9.0.2").exists());
        assert!(dir.path().join("10.9.0.3").exists());
    }

    #[test]
    fn interface_names_fit_and_are_stable() {
        let name = format!("veth{}", short_hash("5a9a3123-8422-4cbf-98a4-867e8dd2c7cf"));
        assert_eq!(name.len(), 12);
        // FNV-1a of the uid: the same in every build.
        assert_eq!(short_hash(""), "811c9dc5");
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
