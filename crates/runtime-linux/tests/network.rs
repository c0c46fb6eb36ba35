//! Pod networks against the real kernel: spare namespaces made ahead of
//! need, handed to pods, refilled, and removed (also when an earlier agent
//! left them). Needs root (as CI runs); each test has its own bridge, pod
//! CIDR and lease directory and removes all of them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use runtime_linux::network::{leftover_spare_namespaces, PodNetwork};

struct Net {
    bridge: String,
    cidr: String,
    dir: tempfile::TempDir,
    /// Pods this test set up (their namespaces go at the end, whatever
    /// happened).
    pods: Vec<String>,
}

impl Net {
    fn new(test: u32) -> Net {
        let pid = std::process::id();
        Net {
            bridge: format!("drvn{}{test}", pid % 100_000),
            cidr: format!("10.77.{}.0/24", (pid % 60) * 4 + test),
            dir: tempfile::tempdir().unwrap(),
            pods: Vec::new(),
        }
    }

    fn network(&self, spares: usize) -> PodNetwork {
        PodNetwork::new(
            &self.cidr,
            self.dir.path().to_path_buf(),
            self.bridge.clone(),
        )
        .unwrap()
        .with_spares(spares)
    }

    fn spares(&self) -> Vec<String> {
        leftover_spare_namespaces(self.dir.path())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let mut names = self.spares();
        names.extend(self.pods.iter().map(|uid| format!("drover-{uid}")));
        for name in names {
            delete_netns(&name);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Deletes namespace `name` (its `/run/netns` path) if it is there.
fn delete_netns(name: &str) {
    if netns_exists(name) {
        let _ = Command::new("ip").args(["netns", "delete", name]).status();
    }
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "after 30 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The addresses on `eth0` inside namespace `name`.
fn eth0_of(name: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", name, "-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The host reaches `ip` on TCP inside namespace `name` (a listener there
/// answers one connection).
fn reachable(name: &str, ip: &str) -> bool {
    let mut listener = Command::new("ip")
        .args(["netns", "exec", name, "python3", "-c"])
        .arg(format!(
            "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
             s.bind(('{ip}', 7777)); s.listen(1); print('up', flush=True); c, _ = s.accept(); c.sendall(b'hi'); c.close()"
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(
        &mut std::io::BufReader::new(listener.stdout.as_mut().unwrap()),
        &mut line,
    );
    let answered = std::net::TcpStream::connect_timeout(
        &format!("{ip}:7777").parse().unwrap(),
        Duration::from_secs(5),
    )
    .and_then(|mut s| {
        let mut buf = String::new();
        std::io::Read::read_to_string(&mut s, &mut buf)?;
        Ok(buf)
    });
    let _ = listener.kill();
    let _ = listener.wait();
    matches!(answered.as_deref(), Ok("hi"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_takes_a_ready_spare_keeps_its_address_and_the_pool_refills() {
    let mut net = Net::new(0);
    let network = net.network(2);
    network.start_spares();
    wait_for("two spares ready", || network.spare_count() == 2).await;
    let before = net.spares();
    assert_eq!(before.len(), 2, "two spare leases: {before:?}");
    for name in &before {
        assert!(netns_exists(name), "spare namespace {name} exists");
    }

    net.pods.push("uid-a".into());
    let ip = network.setup("uid-a").await.unwrap();
    assert!(
        netns_exists("drover-uid-a"),
        "the pod's namespace is at its own path"
    );
    assert!(
        eth0_of("drover-uid-a").contains(&format!("{ip}/24")),
        "eth0 of the pod has {ip}: {}",
        eth0_of("drover-uid-a")
    );
    let lease = std::fs::read_to_string(net.dir.path().join("drover").join(&ip)).unwrap();
    assert!(
        lease.starts_with("uid-a"),
        "the lease of {ip} is the pod's: {lease:?}"
    );
    // It was a spare: the spare's path goes, the namespace stays the pod's.
    wait_for("the taken spare's path removed", || {
        before.iter().filter(|n| netns_exists(n)).count() == 1
    })
    .await;
    assert!(
        reachable("drover-uid-a", &ip),
        "the node reaches the pod at {ip}"
    );
    wait_for("the pool refilled to two", || {
        network.spare_count() == 2 && net.spares().len() == 2
    })
    .await;

    network.teardown("uid-a").await.unwrap();
    assert!(!netns_exists("drover-uid-a"), "torn down");
    assert!(
        !net.dir.path().join("drover").join(&ip).exists(),
        "the pod's address {ip} is released"
    );

    // A spare removed behind the agent's back is not handed out: the pod
    // makes its own network.
    let broken = net.spares();
    for name in &broken {
        assert!(Command::new("ip")
            .args(["netns", "delete", name])
            .status()
            .unwrap()
            .success());
    }
    net.pods.push("uid-b".into());
    let ip_b = network.setup("uid-b").await.unwrap();
    assert!(eth0_of("drover-uid-b").contains(&format!("{ip_b}/24")));
    assert!(
        reachable("drover-uid-b", &ip_b),
        "the node reaches the pod at {ip_b}"
    );
    network.teardown("uid-b").await.unwrap();

    network.remove_spares().await;
    assert_eq!(net.spares(), Vec::<String>::new(), "no spare lease left");
    for name in before.iter().chain(&broken) {
        assert!(!netns_exists(name), "spare namespace {name} removed");
    }
}

#[test]
fn spares_an_agent_left_behind_go_when_the_next_one_starts() {
    let mut net = Net::new(1);
    // The first agent: makes two spares and stops without removing them
    // (its runtime, and with it the refill task, is dropped).
    let first = tokio::runtime::Runtime::new().unwrap();
    let left = first.block_on(async {
        let network = net.network(2);
        network.start_spares();
        wait_for("two spares ready", || network.spare_count() == 2).await;
        net.spares()
    });
    drop(first);
    assert_eq!(left.len(), 2);
    // A spare path whose lease had already gone to a pod (the agent was
    // stopped before it unmounted the path): this node's goes, another
    // node's on the same host (another lease directory) stays.
    let prefix = net.network(0).spare_name_prefix();
    let orphan = format!("drover-{prefix}orphan");
    let foreign = format!(
        "drover-{}ffffffff-orphan",
        runtime_linux::network::SPARE_PREFIX
    );
    for name in [&orphan, &foreign] {
        assert!(Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .unwrap()
            .success());
    }
    struct Delete(String);
    impl Drop for Delete {
        fn drop(&mut self) {
            delete_netns(&self.0);
        }
    }
    let _cleanup = (Delete(orphan.clone()), Delete(foreign.clone()));
    assert!(
        net.spares().contains(&orphan),
        "the orphan path counts as left behind: {:?}",
        net.spares()
    );
    // The next agent keeps one spare: the two old ones go.
    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        let network = net.network(1);
        network.start_spares();
        wait_for("the old spares removed and one new one made", || {
            let now = net.spares();
            now.len() == 1 && !left.contains(&now[0]) && network.spare_count() == 1
        })
        .await;
        for name in &left {
            assert!(!netns_exists(name), "leftover spare {name} removed");
        }
        assert!(
            !netns_exists(&orphan),
            "this node's orphan spare path removed"
        );
        assert!(
            netns_exists(&foreign),
            "another node's spare path left alone"
        );
        // And a pod still gets a working network from the new spare.
        net.pods.push("uid-c".into());
        let ip = network.setup("uid-c").await.unwrap();
        assert!(
            reachable("drover-uid-c", &ip),
            "the node reaches the pod at {ip}"
        );
        network.teardown("uid-c").await.unwrap();
        network.remove_spares().await;
    });
    assert!(net.spares().is_empty());
}
