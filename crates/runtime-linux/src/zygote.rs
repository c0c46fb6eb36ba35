//! The shim zygote: a small single-threaded process that forks container
//! shims on request, so that starting a container costs a `fork` of a
//! process of a few MB instead of an `exec` of the whole drover binary
//! (≈3.4 ms here, with its 58,000 relocations and its page faults, and up to
//! 10 ms from a busy agent; the fork is ≈0.3 ms).
//!
//! The agent starts `drover internal-shim-zygote` with one end of a
//! `SOCK_SEQPACKET` socket pair as its stdin. A request is one message: the
//! shim's config path, with the write end of the announcement pipe attached
//! (`SCM_RIGHTS`). The zygote forks; the child becomes the shim exactly as
//! `drover internal-shim CONFIG` would (stdin `/dev/null`, stdout the
//! announcement pipe, stderr inherited) and the zygote goes back to waiting.
//! Children are reaped by the kernel (`SIGCHLD` ignored in the zygote, reset
//! in each shim, which waits for its own container). The zygote ends when
//! the agent's end closes (the agent stopped or died); the shims it forked
//! run on, as shims spawned directly do.
//!
//! The agent side ([`Zygote`]) starts the zygote on first use and again if
//! it has died; should even that fail, the shim is exec'd as before.

use std::ffi::OsStr;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::unistd::ForkResult;

/// Longest config path a request carries.
const MAX_REQUEST: usize = 4096;

/// `drover internal-shim-zygote`: serves requests from stdin until it
/// closes. Must run before any thread is made (it forks shims that fork
/// again into new namespaces).
pub fn zygote_main() -> i32 {
    // SAFETY: setting a signal disposition to SIG_IGN has no handler code.
    if unsafe { signal(Signal::SIGCHLD, SigHandler::SigIgn) }.is_err() {
        return 2;
    }
    let requests: RawFd = 0;
    loop {
        let mut buffer = [0u8; MAX_REQUEST];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
        let (length, announce) = match recvmsg::<()>(
            requests,
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(message) => {
                let mut announce = None;
                if let Ok(cmsgs) = message.cmsgs() {
                    for cmsg in cmsgs {
                        if let ControlMessageOwned::ScmRights(fds) = cmsg {
                            for fd in fds {
                                // SAFETY: the kernel just gave us this
                                // descriptor; nothing else owns it.
                                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                                announce.get_or_insert(fd);
                            }
                        }
                    }
                }
                (message.bytes, announce)
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 1,
        };
        if length == 0 {
            // The agent's end closed.
            return 0;
        }
        let config = PathBuf::from(OsStr::from_bytes(&buffer[..length]));
        let Some(announce) = announce else {
            continue;
        };
        // SAFETY: the zygote is single-threaded (nothing here makes a
        // thread), so the child may run arbitrary code.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Child) => {
                std::process::exit(become_shim(&config, announce));
            }
            Ok(ForkResult::Parent { .. }) => drop(announce),
            Err(_) => drop(announce), // the agent sees the pipe close
        }
    }
}

/// In the forked child: the shim's stdio and signal dispositions, then the
/// shim itself.
fn become_shim(config: &Path, announce: OwnedFd) -> i32 {
    // SAFETY: restoring the default disposition has no handler code.
    let _ = unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) };
    if nix::unistd::dup2_stdout(&announce).is_err() {
        return 2;
    }
    drop(announce);
    match std::fs::File::open("/dev/null") {
        // Also drops the zygote's request socket from fd 0.
        Ok(null) => {
            if nix::unistd::dup2_stdin(&null).is_err() {
                return 2;
            }
        }
        Err(_) => return 2,
    }
    crate::shim::shim_main(config)
}

/// The agent's handle on its zygote.
#[derive(Debug)]
pub struct Zygote {
    program: PathBuf,
    args: Vec<String>,
    running: Mutex<Option<(OwnedFd, Child)>>,
}

impl Zygote {
    /// A zygote run as `program args…` (e.g. the drover binary with
    /// `internal-shim-zygote`), started on first use.
    pub fn new(program: PathBuf, args: Vec<String>) -> Zygote {
        Zygote {
            program,
            args,
            running: Mutex::new(None),
        }
    }

    fn spawn(&self) -> std::io::Result<(OwnedFd, Child)> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(std::io::Error::from)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok((ours, child))
    }

    /// Starts the zygote now if none runs (the agent does so at start, so
    /// that its first pod does not wait for it).
    pub fn prestart(&self) -> std::io::Result<()> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.is_none() {
            *running = Some(self.spawn()?);
        }
        Ok(())
    }

    /// Asks the zygote to fork a shim for `config`, its announcements going
    /// to `announce` (the write end of a pipe, closed here once sent).
    pub fn fork_shim(&self, config: &Path, announce: OwnedFd) -> std::io::Result<()> {
        let request = config.as_os_str().as_bytes();
        if request.is_empty() || request.len() > MAX_REQUEST {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("shim config path {} is too long", config.display()),
            ));
        }
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut last_error = None;
        // A zygote that died (or was killed) is replaced once.
        for _ in 0..2 {
            if running.is_none() {
                *running = Some(self.spawn()?);
            }
            let Some((socket, _)) = running.as_ref() else {
                continue;
            };
            let fds = [announce.as_raw_fd()];
            let sent = sendmsg::<()>(
                socket.as_raw_fd(),
                &[IoSlice::new(request)],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            );
            match sent {
                Ok(_) => return Ok(()),
                Err(e) => {
                    last_error = Some(std::io::Error::from(e));
                    if let Some((_, mut child)) = running.take() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("the shim zygote is gone")))
    }

    /// The zygote's pid, if one runs (tests).
    pub fn pid(&self) -> Option<u32> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, child)| child.id())
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // Closing our end ends the zygote; reap it.
        if let Some((socket, mut child)) = self
            .running
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            drop(socket);
            let _ = child.wait();
        }
    }
}
