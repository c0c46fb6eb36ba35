//! The container shim (conmon's job): one small process per container
//! instance, started by the runtime and detached from the agent, so that
//! containers keep running and their logs keep being written while the
//! agent is down. It makes the container's namespaces (PID, mount, IPC,
//! UTS), places the container in its cgroups before it executes anything,
//! copies its stdout/stderr into the log file in the CRI format the kubelet
//! uses, and records how it ended in a state file the runtime reads.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroups;

/// What the shim is asked to run (written by the runtime as JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShimConfig {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub hostname: String,
    pub log_path: PathBuf,
    pub state_path: PathBuf,
    pub cgroups: Cgroups,
    /// The container's cgroup, relative to the hierarchy roots.
    pub cgroup: PathBuf,
    /// The pod's network namespace (`None`: the host's network).
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// Run an OCI bundle with runc instead (the OCI runtime): runc makes
    /// the namespaces and cgroups; `argv`, `env`, `working_dir` and `netns`
    /// are in the bundle's config.json and unused here.
    #[serde(default)]
    pub runc: Option<RuncRun>,
    /// The container has a stdin (`stdin: true`) that `kubectl attach`
    /// writes into (`None`: /dev/null).
    #[serde(default)]
    pub stdin: Option<StdinConfig>,
    /// The container runs on a terminal (`tty: true`): its stdin, stdout
    /// and stderr are a pty's, whose output is logged as stdout.
    #[serde(default)]
    pub tty: Option<TtyConfig>,
    /// Volume mounts, bound in the container's mount namespace (the
    /// mount points exist: the runtime made them).
    #[serde(default)]
    pub mounts: Vec<agent::runtime::Mount>,
    /// When the log file rotates and how many files are kept.
    #[serde(default)]
    pub log_rotation: LogRotation,
}

/// The kubelet's `--container-log-max-size` and `--container-log-max-files`:
/// a container's log file is rotated once it reaches `max_bytes`, and at
/// most `max_files` files (the current one included) are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRotation {
    pub max_bytes: u64,
    pub max_files: usize,
}

impl Default for LogRotation {
    /// The kubelet's defaults: 10Mi, 5 files.
    fn default() -> LogRotation {
        LogRotation {
            max_bytes: 10 << 20,
            max_files: 5,
        }
    }
}

impl LogRotation {
    /// Checks the flags as the kubelet does: a positive size, at least two
    /// files (the current one and one rotated).
    pub fn new(max_bytes: i64, max_files: i64) -> Result<LogRotation, String> {
        if max_bytes <= 0 {
            return Err(format!(
                "--container-log-max-size must be a positive size, not {max_bytes} bytes"
            ));
        }
        if max_files < 2 {
            return Err(format!(
                "--container-log-max-files must be at least 2, not {max_files}"
            ));
        }
        Ok(LogRotation {
            max_bytes: max_bytes as u64,
            max_files: max_files as usize,
        })
    }
}

/// How the container's stdin is reached: a relay process of the shim
/// listens on an abstract Unix socket (host network namespace; abstract,
/// as a path under the state directory can exceed the 108 bytes a socket
/// address holds) and copies each attached client into the stdin pipe.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StdinConfig {
    pub socket_name: String,
    /// `stdinOnce`: the first attach that ends closes the container's stdin.
    pub once: bool,
}

/// A tty container's terminal: a relay process of the shim listens on
/// the abstract socket `resize_socket` for `WIDTH HEIGHT` lines and sets
/// the pty's window size (the kernel then signals SIGWINCH).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TtyConfig {
    pub resize_socket: String,
}

/// A pty pair: the master stays with the shim (and its relays), the
/// slave becomes the container's stdin, stdout, stderr and controlling
/// terminal. Both are opened without becoming the shim's own terminal.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

fn open_pty() -> Result<Pty, String> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = nix::pty::posix_openpt(flags).map_err(|e| format!("posix_openpt: {e}"))?;
    nix::pty::grantpt(&master).map_err(|e| format!("grantpt: {e}"))?;
    nix::pty::unlockpt(&master).map_err(|e| format!("unlockpt: {e}"))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| format!("ptsname: {e}"))?;
    let slave = nix::fcntl::open(name.as_str(), flags, nix::sys::stat::Mode::empty())
        .map_err(|e| format!("opening {name}: {e}"))?;
    // SAFETY: `master` owns a valid descriptor; into_raw_fd hands it over.
    let master = unsafe {
        use std::os::fd::{FromRawFd, IntoRawFd};
        OwnedFd::from_raw_fd(master.into_raw_fd())
    };
    Ok(Pty { master, slave })
}

/// Forks a relay process serving the abstract Unix socket `socket_name`
/// (host network namespace; abstract, as a path under the state directory
/// can exceed the 108 bytes a socket address holds). What `serve`
/// captures is moved into the relay: the shim's copies are dropped here.
/// `close_in_relay`: a descriptor the relay must not hold (a pty slave,
/// whose last close ends the container's output).
fn fork_relay(
    socket_name: &str,
    close_in_relay: Option<std::os::fd::RawFd>,
    serve: impl FnOnce(std::os::unix::net::UnixListener),
) -> Result<(), String> {
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(socket_name.as_bytes())
        .map_err(|e| format!("socket name {socket_name}: {e}"))?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&address)
        .map_err(|e| format!("binding the socket @{socket_name}: {e}"))?;
    // SAFETY: the shim is single-threaded here; the relay child only runs
    // `serve` and exits.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            if let Some(fd) = close_in_relay {
                // SAFETY: the relay's own copy of a descriptor it never uses.
                unsafe { libc::close(fd) };
            }
            // The relay goes when the shim does (after the container).
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            serve(listener);
            // SAFETY: leave without the parent's handlers.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { .. }) => Ok(()),
    }
}

/// Copies each attached client into `stdin` (the container's stdin pipe,
/// or its pty master), until the container closes it or, with
/// `stdinOnce`, the first client ends.
fn serve_stdin(listener: std::os::unix::net::UnixListener, mut stdin: File, once: bool) {
    let mut buf = [0u8; 8192];
    for client in listener.incoming() {
        let Ok(mut client) = client else { continue };
        loop {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if stdin.write_all(&buf[..n]).is_err() {
                        // The container closed its stdin.
                        return;
                    }
                }
            }
        }
        if once {
            return;
        }
    }
}

/// Sets the pty's window size from each `WIDTH HEIGHT` line a client sends.
fn serve_resize(listener: std::os::unix::net::UnixListener, master: OwnedFd) {
    use std::io::BufRead;
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        for line in std::io::BufReader::new(client).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_whitespace().map(str::parse::<u16>);
            if let (Some(Ok(width)), Some(Ok(height))) = (parts.next(), parts.next()) {
                set_window_size(&master, width, height);
            }
        }
    }
}

fn set_window_size(master: &OwnedFd, width: u16, height: u16) {
    let size = nix::pty::Winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one Winsize from the pointer, which lives
    // across the call; the fd is an open pty master.
    unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size);
    }
}

/// The container's standard streams: pipes, or a pty. Relays for stdin
/// (`stdin: true`) and terminal resizes (`tty: true`) are started here,
/// before anything else is opened, so they hold nothing but their own.
enum Stdio {
    Pipes {
        stdin: Option<OwnedFd>,
        out: (OwnedFd, OwnedFd),
        err: (OwnedFd, OwnedFd),
    },
    Tty(Pty),
}

fn container_stdio(config: &ShimConfig) -> Result<Stdio, String> {
    match &config.tty {
        Some(tty) => {
            let pty = open_pty()?;
            let slave = Some(pty.slave.as_raw_fd());
            if let Some(stdin) = &config.stdin {
                let writer = File::from(pty.master.try_clone().map_err(|e| e.to_string())?);
                let once = stdin.once;
                fork_relay(&stdin.socket_name, slave, move |l| {
                    serve_stdin(l, writer, once)
                })?;
            }
            let master = pty.master.try_clone().map_err(|e| e.to_string())?;
            fork_relay(&tty.resize_socket, slave, move |l| serve_resize(l, master))?;
            Ok(Stdio::Tty(pty))
        }
        None => {
            let pipe = || {
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
            };
            let stdin = match &config.stdin {
                Some(stdin) => {
                    let (read, write) = pipe()?;
                    let once = stdin.once;
                    let writer = File::from(write);
                    fork_relay(&stdin.socket_name, None, move |l| {
                        serve_stdin(l, writer, once)
                    })?;
                    Some(read)
                }
                None => None,
            };
            Ok(Stdio::Pipes {
                stdin,
                out: pipe()?,
                err: pipe()?,
            })
        }
    }
}

/// The abstract socket of a container instance's stdin relay.
fn stdin_socket_name(uid: &str, name: &str, attempt: u32) -> String {
    format!("drover-stdin/{uid}/{name}/{attempt}")
}

/// The abstract socket of a tty container instance's resize relay.
fn resize_socket_name(uid: &str, name: &str, attempt: u32) -> String {
    format!("drover-resize/{uid}/{name}/{attempt}")
}

/// What container `name` of `pod` asks of its streams: a stdin to attach
/// to (`stdin`, `stdinOnce`) and a terminal (`tty`).
pub(crate) fn stream_configs(
    pod: &k8s_openapi::api::core::v1::Pod,
    name: &str,
    attempt: u32,
) -> (Option<StdinConfig>, Option<TtyConfig>) {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let container = pod.spec.as_ref().and_then(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .find(|c| c.name == name)
    });
    let Some(c) = container else {
        return (None, None);
    };
    let stdin = (c.stdin == Some(true)).then(|| StdinConfig {
        socket_name: stdin_socket_name(uid, name, attempt),
        once: c.stdin_once == Some(true),
    });
    let tty = (c.tty == Some(true)).then(|| TtyConfig {
        resize_socket: resize_socket_name(uid, name, attempt),
    });
    (stdin, tty)
}

fn connect_relay(
    socket: &str,
    what: &str,
    name: &str,
) -> Result<tokio::net::UnixStream, agent::runtime::RuntimeError> {
    use agent::runtime::RuntimeError;
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(socket.as_bytes())
        .map_err(|e| RuntimeError::io(format!("naming the {what} socket"), e))?;
    let stream = std::os::unix::net::UnixStream::connect_addr(&address).map_err(|e| {
        RuntimeError::Invalid(format!(
            "container {name} has no {what} to attach to (@{socket}: {e})"
        ))
    })?;
    stream
        .set_nonblocking(true)
        .map_err(|e| RuntimeError::io(format!("setting up the {what} socket"), e))?;
    tokio::net::UnixStream::from_std(stream)
        .map_err(|e| RuntimeError::io(format!("setting up the {what} socket"), e))
}

/// A writer into the stdin of a running container instance (through its
/// shim's relay), for `kubectl attach`; dropping it ends this attach.
pub(crate) fn attach_stdin(
    uid: &str,
    name: &str,
    attempt: u32,
) -> Result<tokio::sync::mpsc::Sender<bytes::Bytes>, agent::runtime::RuntimeError> {
    let mut stream = connect_relay(&stdin_socket_name(uid, name, attempt), "stdin", name)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Some(bytes) = rx.recv().await {
            if stream.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = stream.shutdown().await;
    });
    Ok(tx)
}

/// Terminal sizes for a running tty container instance (through its
/// shim's resize relay), for `kubectl attach -t`.
pub(crate) fn attach_resize(
    uid: &str,
    name: &str,
    attempt: u32,
) -> Result<tokio::sync::mpsc::Sender<agent::runtime::TerminalSize>, agent::runtime::RuntimeError> {
    let mut stream = connect_relay(&resize_socket_name(uid, name, attempt), "terminal", name)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<agent::runtime::TerminalSize>(4);
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Some(size) = rx.recv().await {
            let line = format!("{} {}\n", size.width, size.height);
            if stream.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    Ok(tx)
}

/// `runc --root <root> run --keep --bundle <bundle> <id>`, in the
/// foreground: runc passes the shim's pipes to the container as its stdout
/// and stderr and exits with the container's status. `--keep` leaves the
/// stopped container (and its cgroup) for the shim to read the OOM-kill
/// counter before it runs `runc delete`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RuncRun {
    pub binary: PathBuf,
    /// A sealed in-memory copy of `binary` to run instead (the agent's
    /// `/proc/PID/fd/N`, see `oci::SealedBinary`), if the shim can open it.
    #[serde(default)]
    pub sealed: Option<PathBuf>,
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
}

/// The state file: written when the container runs, rewritten when it ends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimState {
    pub shim_pid: i32,
    /// The container's first process, as the host sees it.
    pub pid: i32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub oom_killed: bool,
    /// Could not start: `(reason, message)`.
    pub failed: Option<(String, String)>,
}

pub fn read_state(path: &Path) -> Option<ShimState> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

fn write_state(path: &Path, state: &ShimState) {
    let tmp = path.with_extension("tmp");
    if let Ok(bytes) = serde_json::to_vec(state) {
        if fs::write(&tmp, bytes).is_ok() && fs::rename(&tmp, path).is_ok() {
            announce_state();
        }
    }
}

/// Tells the runtime that started this shim that the state file now says
/// how the container stands (running, or could not start): one byte on
/// stdout, which is then pointed at /dev/null so nothing inherits the pipe.
/// Once per shim.
fn announce_state() {
    static ANNOUNCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if ANNOUNCED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(b"\n");
    let _ = stdout.flush();
    if let Ok(null) = OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
    }
}

/// Starts the shim for `config_path` (written already) — forked by the
/// zygote when `shim` has one, else `shim.program` exec'd — and waits until
/// it has written its first state (see [`announce_state`]), or has exited,
/// or `limit` passed; then the runtime's next observation is consistent. The
/// container's start failure, if the state records one, is the error.
pub(crate) async fn start_and_await(
    shim: &crate::process::ShimCommand,
    config_path: &Path,
    state_path: &Path,
    limit: std::time::Duration,
) -> std::io::Result<Result<(), String>> {
    use tokio::io::AsyncReadExt;
    let forked = match &shim.zygote {
        Some(zygote) => {
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            match zygote.fork_shim(config_path, write) {
                Ok(()) => Some(tokio::net::unix::pipe::Receiver::from_owned_fd(read)?),
                Err(e) => {
                    tracing::warn!("shim zygote: {e}; starting the shim with exec instead");
                    None
                }
            }
        }
        None => None,
    };
    let mut byte = [0u8; 1];
    // A byte: the state is written; end of file: the shim is gone.
    match forked {
        Some(mut pipe) => {
            let _ = tokio::time::timeout(limit, pipe.read(&mut byte)).await;
        }
        None => {
            let mut command = tokio::process::Command::new(&shim.program);
            command.args(&shim.args).arg(config_path);
            let mut child = command
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(false)
                .spawn()?;
            let mut announcement = child.stdout.take();
            // Reap the shim when it ends (it is our child while we live).
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
            if let Some(pipe) = announcement.as_mut() {
                let _ = tokio::time::timeout(limit, pipe.read(&mut byte)).await;
            }
        }
    }
    Ok(match read_state(state_path).and_then(|s| s.failed) {
        Some((_, message)) => Err(message),
        None => Ok(()),
    })
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%9fZ")
        .to_string()
}

/// The PATH a container gets when its env sets none (the OCI default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Finds `program` as execvp would, in the container's own PATH.
fn resolve(program: &str, env: &[(String, String)], cwd: &Path) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = cwd.join(program);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "exec: \"{program}\": stat {program}: no such file or directory"
            ))
        };
    }
    let path_var = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_PATH);
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if let Ok(meta) = fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(format!(
        "exec: \"{program}\": executable file not found in $PATH"
    ))
}

/// Runs the shim for `config_path`; returns the shim's exit code.
pub fn shim_main(config_path: &Path) -> i32 {
    let config: ShimConfig = match fs::read(config_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("drover shim: reading {}: {e}", config_path.display());
            return 2;
        }
    };
    let _ = nix::unistd::setsid();
    let mut state = ShimState {
        shim_pid: std::process::id() as i32,
        ..Default::default()
    };
    let fail = |state: &mut ShimState, reason: &str, message: String| {
        state.failed = Some((reason.to_string(), message));
        state.finished_at = Some(now());
        write_state(&config.state_path, state);
        1
    };

    if let Some(runc) = &config.runc {
        return run_runc(&config, runc, state);
    }

    let cwd = PathBuf::from(config.working_dir.as_deref().unwrap_or("/"));
    let Some(program) = config.argv.first() else {
        return fail(
            &mut state,
            "CreateContainerError",
            "no command given (the process runtime needs `command`)".into(),
        );
    };
    let program_name = program.clone();
    let to_c = |s: &str| std::ffi::CString::new(s.as_bytes()).unwrap_or_default();
    let argv: Vec<std::ffi::CString> = config.argv.iter().map(|a| to_c(a)).collect();
    let envp: Vec<std::ffi::CString> = config
        .env
        .iter()
        .map(|(k, v)| to_c(&format!("{k}={v}")))
        .collect();

    let log = match LogFile::open(
        &config.log_path,
        config.log_rotation.max_bytes,
        config.log_rotation.max_files,
    ) {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => {
            return fail(
                &mut state,
                "CreateContainerError",
                format!("opening log file {}: {e}", config.log_path.display()),
            )
        }
    };
    // Before the output pipes exist, so that the relay holds none of them.
    let stdio = match container_stdio(&config) {
        Ok(stdio) => stdio,
        Err(message) => return fail(&mut state, "CreateContainerError", message),
    };
    let Ok((sync_r, sync_w)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return fail(&mut state, "CreateContainerError", "pipe failed".into());
    };

    if let Some(netns) = &config.netns {
        let joined = File::open(netns).map_err(|e| e.to_string()).and_then(|f| {
            nix::sched::setns(f, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
        });
        if let Err(e) = joined {
            return fail(
                &mut state,
                "CreateContainerError",
                format!("joining the pod network namespace {}: {e}", netns.display()),
            );
        }
    }
    let flags = CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if let Err(e) = nix::sched::unshare(flags) {
        return fail(
            &mut state,
            "CreateContainerError",
            format!("creating namespaces: {e}"),
        );
    }
    if let Err(message) = bind_mounts(&config.mounts) {
        return fail(&mut state, "CreateContainerError", message);
    }
    if !cwd.is_dir() {
        return fail(
            &mut state,
            "CreateContainerError",
            format!("working directory {} does not exist", cwd.display()),
        );
    }
    let program = match resolve(&program_name, &config.env, &cwd) {
        Ok(p) => p,
        Err(message) => return fail(&mut state, "RunContainerError", message),
    };
    let program_c = to_c(&program.to_string_lossy());
    let oom_before = config.cgroups.oom_kill_count(&config.cgroup);

    // SAFETY: the shim is single-threaded here (no threads started yet), so
    // the child may run arbitrary code until exec.
    match unsafe { nix::unistd::fork() } {
        Err(e) => fail(&mut state, "CreateContainerError", format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop(sync_w);
            let streams = match stdio {
                Stdio::Pipes { stdin, out, err } => ChildStdio::Pipes {
                    stdin,
                    out: out.1,
                    err: err.1,
                },
                Stdio::Tty(pty) => ChildStdio::Tty(pty.slave),
            };
            child(
                sync_r,
                streams,
                &config.hostname,
                &cwd,
                &program_c,
                &argv,
                &envp,
            )
        }
        Ok(ForkResult::Parent { child }) => {
            drop(sync_r);
            // Only the container holds its ends of the streams now.
            let output = match stdio {
                Stdio::Pipes { out, err, .. } => Output::Pipes(out.0, err.0),
                Stdio::Tty(pty) => Output::Tty(pty.master),
            };
            for file in config.cgroups.procs_files(&config.cgroup) {
                if let Err(e) = fs::write(&file, child.as_raw().to_string()) {
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    return fail(
                        &mut state,
                        "CreateContainerError",
                        format!("joining cgroup {}: {e}", file.display()),
                    );
                }
            }
            state.pid = child.as_raw();
            state.started_at = Some(now());
            write_state(&config.state_path, &state);
            let mut sync = File::from(sync_w);
            let _ = sync.write_all(b"go");
            drop(sync);

            // Threads cannot be made after unshare(CLONE_NEWPID): one loop
            // polls both streams until the container's side closes them.
            match output {
                Output::Pipes(out, err) => copy_logs(out, err, &log),
                Output::Tty(master) => copy_tty(master, &log),
            }
            let exit_code = wait_exit(child);
            state.exit_code = Some(exit_code);
            state.oom_killed = config.cgroups.oom_kill_count(&config.cgroup) > oom_before;
            state.finished_at = Some(now());
            write_state(&config.state_path, &state);
            0
        }
    }
}

/// The OCI runtime's container: runc runs it in the foreground; the shim
/// copies its output into the log, waits for it to be running before it
/// says so, and records how it ended.
fn run_runc(config: &ShimConfig, runc: &RuncRun, mut state: ShimState) -> i32 {
    let fail = |state: &mut ShimState, reason: &str, message: String| {
        state.failed = Some((reason.to_string(), message));
        state.finished_at = Some(now());
        write_state(&config.state_path, state);
        1
    };
    let log = match LogFile::open(
        &config.log_path,
        config.log_rotation.max_bytes,
        config.log_rotation.max_files,
    ) {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => {
            return fail(
                &mut state,
                "CreateContainerError",
                format!("opening log file {}: {e}", config.log_path.display()),
            )
        }
    };
    let stdio = match container_stdio(config) {
        Ok(stdio) => stdio,
        Err(message) => return fail(&mut state, "CreateContainerError", message),
    };
    // runc's own messages (not the container's) go to a JSON log, so a
    // failure to start tells apart from the container's exit.
    let runc_log = runc.bundle.join("runc.log");
    let _ = fs::remove_file(&runc_log);
    // The sealed copy, opened now so that it stays ours for the
    // container's life (the agent may restart), run as `/proc/self/fd/N`:
    // the descriptor is closed on exec, after the kernel has opened it.
    let sealed = runc
        .sealed
        .as_ref()
        .and_then(|path| fs::File::open(path).ok());
    let program = match &sealed {
        Some(file) => PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
        None => runc.binary.clone(),
    };
    let runc_command = |args: &[&str]| {
        use std::os::unix::process::CommandExt;
        let mut c = std::process::Command::new(&program);
        c.arg0(&runc.binary)
            .arg("--root")
            .arg(&runc.root)
            .args(args);
        c
    };
    // Removes runc's state of the container (and its cgroups).
    let delete = || {
        let _ = runc_command(&["delete", "--force", &runc.id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    };
    // Without a terminal runc runs the container detached (`run -d`, what
    // bare runc users and containerd do): runc returns once the container
    // runs, and the container's init, reparented to this shim (a child
    // subreaper), is waited for here. No runc process stays behind for the
    // container's lifetime (≈ 10 MB each), and the start needs no polling.
    // With a terminal runc stays in the foreground to relay it (see below).
    let detached = config.tty.is_none();
    let pid_file = runc.bundle.join("init.pid");
    let mut command = runc_command(&["--log", &runc_log.to_string_lossy(), "--log-format", "json"]);
    if detached {
        let _ = fs::remove_file(&pid_file);
        // SAFETY: prctl with integer arguments only.
        let subreaper = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if subreaper != 0 {
            return fail(
                &mut state,
                "CreateContainerError",
                format!(
                    "becoming the container's subreaper: {}",
                    std::io::Error::last_os_error()
                ),
            );
        }
        command
            .arg("run")
            .arg("--detach")
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--bundle")
            .arg(&runc.bundle)
            .arg(&runc.id);
    } else {
        command
            .arg("run")
            .arg("--keep")
            .arg("--bundle")
            .arg(&runc.bundle)
            .arg(&runc.id);
    }
    // runc passes its stdin, stdout and stderr to the container. With
    // `tty: true` runc runs the container on a pty of its own
    // (`process.terminal` in config.json) and relays it to its stdio, our
    // pty, whose size it follows on SIGWINCH: so runc gets our pty as its
    // controlling terminal.
    let output = match stdio {
        Stdio::Pipes { stdin, out, err } => {
            command
                .stdin(match stdin {
                    Some(fd) => std::process::Stdio::from(fd),
                    None => std::process::Stdio::null(),
                })
                .stdout(File::from(out.1))
                .stderr(File::from(err.1));
            Output::Pipes(out.0, err.0)
        }
        Stdio::Tty(pty) => {
            let (Ok(stdin), Ok(stdout)) = (pty.slave.try_clone(), pty.slave.try_clone()) else {
                return fail(&mut state, "CreateContainerError", "dup failed".into());
            };
            command
                .stdin(std::process::Stdio::from(stdin))
                .stdout(std::process::Stdio::from(stdout))
                .stderr(std::process::Stdio::from(pty.slave));
            use std::os::unix::process::CommandExt;
            // SAFETY: take_terminal is async-signal-safe (setsid, ioctl,
            // dup2 only); fd 0 is the slave once std has set up stdio.
            unsafe {
                command.pre_exec(|| {
                    take_terminal(0);
                    Ok(())
                });
            }
            Output::Tty(pty.master)
        }
    };
    let oom_before = config.cgroups.oom_kill_count(&config.cgroup);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return fail(
                &mut state,
                "CreateContainerError",
                format!("running {}: {e}", runc.binary.display()),
            )
        }
    };
    drop(command);
    let copier = {
        let log = log.clone();
        std::thread::spawn(move || match output {
            Output::Pipes(out, err) => copy_logs(out, err, &log),
            Output::Tty(master) => copy_tty(master, &log),
        })
    };
    let code = if detached {
        let status = wait_child(&mut child);
        let pid = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .filter(|p| *p > 0);
        match (status.success(), pid) {
            (true, Some(pid)) => {
                state.pid = pid;
                state.started_at = Some(now());
                write_state(&config.state_path, &state);
                Ok(wait_container(Pid::from_raw(pid)))
            }
            // Not started: runc said why (or at least how it ended).
            _ => Err(runc_error(&runc_log)
                .unwrap_or_else(|| format!("{} run exited with {status}", runc.binary.display()))),
        }
    } else {
        // Running once runc has started the container (or runc is done
        // already). runc's own test, without a `runc state` process per
        // poll: `run` writes state.json once the container is created and
        // removes exec.fifo when it starts it.
        let state_dir = runc.root.join(&runc.id);
        let (created, fifo) = (state_dir.join("state.json"), state_dir.join("exec.fifo"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut exited = None;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                break;
            }
            if created.exists() && !fifo.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        state.pid = child.id() as i32;
        state.started_at = Some(now());
        if exited.is_none() {
            write_state(&config.state_path, &state);
        }
        let status = match exited {
            Some(s) => s,
            None => wait_child(&mut child),
        };
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(255);
        // A failed start, if runc logged an error; else the container's exit.
        match (code != 0).then(|| runc_error(&runc_log)).flatten() {
            Some(message) => Err(message),
            None => Ok(code),
        }
    };
    let _ = copier.join();
    let code = match code {
        Ok(code) => code,
        Err(message) => {
            delete();
            return fail(&mut state, "RunContainerError", message);
        }
    };
    let oom_killed = config.cgroups.oom_kill_count(&config.cgroup) > oom_before;
    delete();
    state.exit_code = Some(code);
    state.oom_killed = oom_killed;
    state.finished_at = Some(now());
    write_state(&config.state_path, &state);
    0
}

/// Waits for a child process the std way, retrying on EINTR.
fn wait_child(child: &mut std::process::Child) -> std::process::ExitStatus {
    loop {
        match child.wait() {
            Ok(s) => return s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return std::process::ExitStatus::default(),
        }
    }
}

/// Waits for a detached container's init, which runc's exit reparented to
/// this shim (its child subreaper); its exit code, or 128 + the signal that
/// ended it. Zombies of other orphans reparented here are reaped as they
/// come. If the init is not this shim's child after all (it cannot be
/// waited for), its end is noticed by polling and its code is unknown
/// (255).
fn wait_container(pid: Pid) -> i32 {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => return code,
            Ok(WaitStatus::Signaled(p, signal, _)) if p == pid => return 128 + signal as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => {
                while nix::sys::signal::kill(pid, None).is_ok() {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                return 255;
            }
        }
    }
}

/// The last error runc logged (its `--log-format json` lines), if any: the
/// container could not be started.
fn runc_error(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v["level"].as_str(), Some("error" | "fatal")))
        .find_map(|v| v["msg"].as_str().map(str::to_string))
}

/// Makes the shim's new mount namespace private (nothing propagates back
/// to the host) and binds each volume onto its mount point, read-only
/// where asked (a bind mount becomes read-only only by a remount).
fn bind_mounts(mounts: &[agent::runtime::Mount]) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making the mount namespace private: {e}"))?;
    for m in mounts {
        let what = || format!("{} on {}", m.source.display(), m.destination.display());
        mount(
            Some(&m.source),
            &m.destination,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| format!("mounting volume {}: {e}", what()))?;
        if m.read_only {
            mount(
                None::<&str>,
                &m.destination,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| format!("making volume {} read-only: {e}", what()))?;
        }
    }
    Ok(())
}

fn wait_exit(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// The container's side of the fork: wait until placed in its cgroups, set
/// up the namespaces' view, and exec. Never returns.
#[allow(clippy::too_many_arguments)]
fn child(
    sync_r: OwnedFd,
    stdio: ChildStdio,
    hostname: &str,
    cwd: &Path,
    program: &std::ffi::CStr,
    argv: &[std::ffi::CString],
    envp: &[std::ffi::CString],
) -> i32 {
    let mut go = [0u8; 2];
    let _ = File::from(sync_r).read(&mut go);
    use nix::mount::{mount, MsFlags};
    // A private copy of the mount table, with a /proc for the new PID
    // namespace (so `ps` shows the container's processes only).
    let _ = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    );
    let _ = mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    );
    let _ = nix::unistd::sethostname(hostname);
    let null = File::open("/dev/null").ok();
    // SAFETY: dup2 onto the standard descriptors of this (single-threaded)
    // child before exec.
    unsafe {
        match &stdio {
            ChildStdio::Pipes { stdin, out, err } => {
                match (stdin, &null) {
                    (Some(stdin), _) => {
                        libc::dup2(stdin.as_raw_fd(), 0);
                    }
                    (None, Some(null)) => {
                        libc::dup2(null.as_raw_fd(), 0);
                    }
                    (None, None) => {}
                }
                libc::dup2(out.as_raw_fd(), 1);
                libc::dup2(err.as_raw_fd(), 2);
            }
            ChildStdio::Tty(slave) => take_terminal(slave.as_raw_fd()),
        }
    }
    let _ = nix::unistd::chdir(cwd);
    let err = nix::unistd::execve(program, argv, envp).unwrap_err();
    let _ = writeln!(
        std::io::stderr(),
        "drover: exec {}: {err}",
        program.to_string_lossy()
    );
    // SAFETY: leave without running the parent's atexit handlers.
    unsafe { libc::_exit(127) }
}

/// The container's ends of its streams, in the forked child.
enum ChildStdio {
    Pipes {
        stdin: Option<OwnedFd>,
        out: OwnedFd,
        err: OwnedFd,
    },
    Tty(OwnedFd),
}

/// The shim's ends, to copy into the log.
enum Output {
    Pipes(OwnedFd, OwnedFd),
    Tty(OwnedFd),
}

/// Makes the pty slave `slave` this process's stdin, stdout, stderr and
/// controlling terminal, in a session of its own (as a login shell has it,
/// so job control and SIGWINCH work). Async-signal-safe: called between
/// fork and exec.
///
/// # Safety
/// Only in a forked child before exec, with `slave` open.
unsafe fn take_terminal(slave: std::os::fd::RawFd) {
    libc::setsid();
    libc::ioctl(slave, libc::TIOCSCTTY as _, 0);
    libc::dup2(slave, 0);
    libc::dup2(slave, 1);
    libc::dup2(slave, 2);
}

/// A container instance's log file, rotated as the kubelet rotates them:
/// once a record takes it to `max_bytes`, it is renamed
/// `<name>.<UTC timestamp>` and a new one begun; the newest `max_files - 1`
/// rotated files are kept. `kubectl logs` reads the current file.
pub(crate) struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    max_files: usize,
}

impl LogFile {
    pub(crate) fn open(path: &Path, max_bytes: u64, max_files: usize) -> std::io::Result<LogFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes,
            max_files: max_files.max(1),
        })
    }

    pub(crate) fn write_line(&mut self, line: &[u8]) {
        if self.file.write_all(line).is_ok() {
            self.size += line.len() as u64;
        }
        if self.size >= self.max_bytes {
            self.rotate();
        }
    }

    fn rotate(&mut self) {
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%d-%H%M%S.%f")
            .to_string();
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rotated = self.path.with_file_name(format!("{name}.{stamp}"));
        if fs::rename(&self.path, &rotated).is_err() {
            return;
        }
        match OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            Ok(f) => {
                self.file = f;
                self.size = 0;
            }
            // Keep writing to the renamed file rather than lose output.
            Err(_) => return,
        }
        let Some(dir) = self.path.parent() else {
            return;
        };
        let prefix = format!("{name}.");
        let mut old: Vec<PathBuf> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        // Timestamps sort as text.
        old.sort();
        let keep = self.max_files - 1;
        if old.len() > keep {
            for path in &old[..old.len() - keep] {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// One stream's CRI log writer: `<RFC 3339 nano time> <stream> <F|P>
/// <text>` per line; lines over 16 KiB are split into partial (`P`)
/// records, as CRI runtimes do.
struct LogStream {
    name: &'static str,
    pending: Vec<u8>,
}

impl LogStream {
    const MAX_LINE: usize = 16 * 1024;

    fn emit(&self, log: &Mutex<LogFile>, bytes: &[u8], full: bool) {
        let mut line =
            format!("{} {} {} ", now(), self.name, if full { 'F' } else { 'P' }).into_bytes();
        line.extend_from_slice(bytes);
        line.push(b'\n');
        if let Ok(mut f) = log.lock() {
            f.write_line(&line);
        }
    }

    fn feed(&mut self, log: &Mutex<LogFile>, data: &[u8]) {
        self.pending.extend_from_slice(data);
        while let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            self.emit(log, &line[..line.len() - 1], true);
        }
        while self.pending.len() >= Self::MAX_LINE {
            let part: Vec<u8> = self.pending.drain(..Self::MAX_LINE).collect();
            self.emit(log, &part, false);
        }
    }

    /// What is left after the complete lines goes out now as a partial
    /// record (a terminal's prompt has no newline, and attach must show it).
    fn flush_partial(&mut self, log: &Mutex<LogFile>) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(log, &rest, false);
        }
    }

    fn finish(&mut self, log: &Mutex<LogFile>) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(log, &rest, true);
        }
    }
}

/// Copies a tty container's terminal output into the log (as stdout, as
/// the CRI logs a tty), until the last holder of the slave is gone (the
/// master then reads EIO).
fn copy_tty(master: OwnedFd, log: &Mutex<LogFile>) {
    let mut master = File::from(master);
    let mut stream = LogStream {
        name: "stdout",
        pending: Vec::new(),
    };
    let mut buf = [0u8; 8192];
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                stream.feed(log, &buf[..n]);
                stream.flush_partial(log);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    stream.finish(log);
}

/// Copies stdout and stderr into the log until both are closed.
fn copy_logs(out: OwnedFd, err: OwnedFd, log: &Mutex<LogFile>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut files = [Some(File::from(out)), Some(File::from(err))];
    let mut streams = [
        LogStream {
            name: "stdout",
            pending: Vec::new(),
        },
        LogStream {
            name: "stderr",
            pending: Vec::new(),
        },
    ];
    let mut buf = [0u8; 8192];
    while files.iter().any(Option::is_some) {
        let ready: Vec<usize> = {
            let mut fds = Vec::new();
            let mut which = Vec::new();
            for (i, f) in files.iter().enumerate() {
                if let Some(f) = f {
                    fds.push(PollFd::new(std::os::fd::AsFd::as_fd(f), PollFlags::POLLIN));
                    which.push(i);
                }
            }
            match poll(&mut fds, PollTimeout::from(1000u16)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            fds.iter()
                .zip(which)
                .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, i)| i)
                .collect()
        };
        for i in ready {
            let Some(file) = files[i].as_mut() else {
                continue;
            };
            match file.read(&mut buf) {
                Ok(0) | Err(_) => {
                    files[i] = None;
                    streams[i].finish(log);
                }
                Ok(n) => streams[i].feed(log, &buf[..n]),
            }
        }
    }
    for s in &mut streams {
        s.finish(log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_rotate_at_their_size_and_keep_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = LogFile::open(&path, 100, 3).unwrap();
        for i in 0..20 {
            log.write_line(format!("line {i:02} .........................\n").as_bytes());
        }
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names.len(),
            3,
            "the current file and 2 rotated ones: {names:?}"
        );
        assert_eq!(names[0], "0.log");
        assert!(
            names[1].starts_with("0.log.") && names[2].starts_with("0.log."),
            "{names:?}"
        );
        // The newest lines are in the current file (or just rotated out).
        let newest = fs::read_to_string(&path).unwrap()
            + &fs::read_to_string(dir.path().join(&names[2])).unwrap();
        assert!(newest.contains("line 19"), "{newest}");
        for name in &names[1..] {
            let size = fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(
                size >= 100,
                "{name} rotated at {size} bytes, under the limit"
            );
        }
    }

    #[test]
    fn programs_resolve_in_the_container_path() {
        let env = vec![("PATH".to_string(), "/nonexistent:/bin".to_string())];
        assert_eq!(
            resolve("sh", &env, Path::new("/")),
            Ok(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            resolve("no-such-program", &env, Path::new("/")),
            Err("exec: \"no-such-program\": executable file not found in $PATH".into())
        );
        assert!(resolve("/bin/sh", &[], Path::new("/")).is_ok());
    }
}
