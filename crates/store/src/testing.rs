//! Test support shared with other crates: a real, throwaway etcd server on
//! loopback ports with its own data directory.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Environment variable naming the etcd binary; otherwise `etcd` on `PATH`.
pub const ETCD_BINARY_ENV: &str = "DROVER_ETCD_BIN";

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running etcd, killed and its data directory removed on drop.
pub struct EtcdProcess {
    child: Child,
    data_dir: PathBuf,
    endpoint: String,
}

impl EtcdProcess {
    /// Start etcd on free loopback ports and wait until it reports healthy.
    /// Fails (never skips) when the binary is missing, saying how to install it.
    pub fn start() -> Result<EtcdProcess, String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let binary = std::env::var(ETCD_BINARY_ENV).unwrap_or_else(|_| "etcd".into());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let data_dir = std::env::temp_dir().join(format!(
            "drover-etcd-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log_path = data_dir.join("etcd.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cloning log handle: {e}"))?;
        let spawned = Command::new(&binary)
            .arg("--name=default")
            .arg(format!("--data-dir={}", data_dir.join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .arg("--initial-cluster-state=new")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&data_dir);
                return Err(format!(
                    "cannot run etcd binary {binary:?}: {e}. Install it (`apt-get install -y etcd-server`) \
                     or point {ETCD_BINARY_ENV} at an etcd binary"
                ));
            }
        };
        let mut process = EtcdProcess {
            child,
            data_dir,
            endpoint: client_url,
        };
        process.wait_until_healthy(client_port)?;
        Ok(process)
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn wait_until_healthy(&mut self, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "etcd exited with {status} before becoming ready:\n{}",
                    self.log_tail()
                ));
            }
            if health_ok(port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "etcd did not become healthy within {READY_TIMEOUT:?}:\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.data_dir.join("etcd.log")).unwrap_or_default();
        let start = log.len().saturating_sub(4000);
        log.get(start..).unwrap_or_default().to_owned()
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// `GET /health` answers `{"health":"true"}` once etcd serves clients.
fn health_ok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}
