//! Streaming helpers shared by the Linux runtimes: a command run with its
//! stdio as channels (pipes, or a pty for `kubectl exec -t`), and a TCP
//! connection made inside a pod's network namespace (`kubectl
//! port-forward`).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;

use agent::runtime::{ExecRequest, ExitStatus, ProcessStreams, TerminalSize};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Starts `command` with the streams `request` asks for and returns them.
/// Without a tty, each stream is a pipe; with one, stdin and stdout are a
/// pty (stderr goes there too, as on a terminal) and resizes apply to it.
pub fn spawn(
    mut command: tokio::process::Command,
    request: &ExecRequest,
) -> std::io::Result<ProcessStreams> {
    if request.tty {
        return spawn_tty(command, request);
    }
    let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    command
        .stdin(piped(request.stdin))
        .stdout(piped(request.stdout))
        .stderr(piped(request.stderr))
        .kill_on_drop(false);
    let mut child = command.spawn()?;
    let stdin = child.stdin.take().map(|mut pipe| {
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if pipe.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            // Dropping the pipe: the process reads EOF.
        });
        tx
    });
    let stdout = child.stdout.take().map(forward);
    let stderr = child.stderr.take().map(forward);
    let (exit_tx, exit_rx) = oneshot::channel();
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(s) => ExitStatus::Exited(exit_code(s)),
            Err(e) => ExitStatus::Error(format!("waiting for the command: {e}")),
        };
        let _ = exit_tx.send(status);
    });
    Ok(ProcessStreams {
        stdin,
        stdout,
        stderr,
        resize: None,
        exit: exit_rx,
    })
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(128 + 9)
}

fn forward(mut reader: impl AsyncRead + Unpin + Send + 'static) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(Bytes::copy_from_slice(&buffer[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

fn set_size(master: &OwnedFd, size: TerminalSize) {
    let winsize = nix::pty::Winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one Winsize from the pointer, which lives
    // across the call; the fd is an open pty master.
    unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &winsize);
    }
}

fn spawn_tty(
    mut command: tokio::process::Command,
    request: &ExecRequest,
) -> std::io::Result<ProcessStreams> {
    let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
    let master = pty.master;
    let slave = pty.slave;
    command
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave.try_clone()?))
        .kill_on_drop(false);
    // SAFETY: between fork and exec only async-signal-safe calls: setsid
    // and ioctl, making the pty (now fd 0) the controlling terminal of a
    // new session, as a terminal login does.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    // Our copies of the slave go, so reading the master ends (EIO) once
    // every process of the session has closed it.
    drop(command);
    drop(slave);
    let (resize_tx, mut resize_rx) = mpsc::channel::<TerminalSize>(4);
    let resize_master = master.try_clone()?;
    tokio::spawn(async move {
        while let Some(size) = resize_rx.recv().await {
            set_size(&resize_master, size);
        }
    });
    let stdin = if request.stdin {
        let mut writer = std::fs::File::from(master.try_clone()?);
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        std::thread::spawn(move || {
            while let Some(bytes) = rx.blocking_recv() {
                if writer.write_all(&bytes).is_err() {
                    return;
                }
            }
            // The client closed stdin: a terminal has no EOF of its own,
            // so type the end-of-file character (^D), as a user would.
            let _ = writer.write_all(&[4]);
        });
        Some(tx)
    } else {
        None
    };
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(16);
    let mut reader = std::fs::File::from(master);
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match reader.read(&mut buffer) {
                // EIO: the last holder of the slave has closed it.
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if out_tx
                        .blocking_send(Bytes::copy_from_slice(&buffer[..n]))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    let (exit_tx, exit_rx) = oneshot::channel();
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(s) => ExitStatus::Exited(exit_code(s)),
            Err(e) => ExitStatus::Error(format!("waiting for the command: {e}")),
        };
        let _ = exit_tx.send(status);
    });
    Ok(ProcessStreams {
        stdin,
        stdout: request.stdout.then_some(out_rx),
        stderr: None,
        resize: Some(resize_tx),
        exit: exit_rx,
    })
}

/// Connects to `127.0.0.1:port` inside the network namespace at `netns`
/// (the host's when `None`). The connect happens on a thread of its own
/// that joins the namespace and then ends: a socket stays in the
/// namespace it was made in, and no pooled thread is left in a foreign one.
/// `kubectl port-forward`'s connection to `port` on a pod's loopback: in
/// its network namespace, or the host's for a `hostNetwork` pod (`None`);
/// the error is the message the user sees.
pub async fn connect_to_pod(
    netns: Option<PathBuf>,
    port: u16,
) -> Result<tokio::net::TcpStream, agent::runtime::RuntimeError> {
    let place = match &netns {
        Some(path) => format!("inside namespace \"{}\"", path.display()),
        None => "on the host network".to_string(),
    };
    connect_in_netns(netns, port).await.map_err(|e| {
        agent::runtime::RuntimeError::Invalid(format!(
            "failed to connect to localhost:{port} {place}: {e}"
        ))
    })
}

pub async fn connect_in_netns(
    netns: Option<PathBuf>,
    port: u16,
) -> std::io::Result<tokio::net::TcpStream> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let result = (|| -> std::io::Result<std::net::TcpStream> {
            if let Some(path) = &netns {
                let file = std::fs::File::open(path).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("opening {}: {e}", path.display()))
                })?;
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    std::io::Error::other(format!("joining {}: {e}", path.display()))
                })?;
            }
            let stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
            stream.set_nonblocking(true)?;
            Ok(stream)
        })();
        let _ = tx.send(result);
    });
    let stream = rx
        .await
        .map_err(|_| std::io::Error::other("the connecting thread died"))??;
    tokio::net::TcpStream::from_std(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(tty: bool) -> ExecRequest {
        ExecRequest {
            container: "c".into(),
            command: vec![],
            stdin: true,
            stdout: true,
            stderr: true,
            tty,
        }
    }

    async fn drain(rx: &mut Option<mpsc::Receiver<Bytes>>) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(rx) = rx {
            while let Some(b) = rx.recv().await {
                out.extend_from_slice(&b);
            }
        }
        out
    }

    #[tokio::test]
    async fn pipes_carry_stdin_stdout_stderr_and_the_exit_code() {
        let mut command = tokio::process::Command::new("sh");
        command.args(["-c", "tr a-z A-Z; echo oops >&2; exit 3"]);
        let mut streams = spawn(command, &request(false)).unwrap();
        let stdin = streams.stdin.take().unwrap();
        stdin.send(Bytes::from_static(b"hello\n")).await.unwrap();
        drop(stdin);
        assert_eq!(drain(&mut streams.stdout).await, b"HELLO\n");
        assert_eq!(drain(&mut streams.stderr).await, b"oops\n");
        assert_eq!(streams.exit.await.unwrap(), ExitStatus::Exited(3));
    }

    #[tokio::test]
    async fn a_tty_is_a_pty_that_follows_resizes() {
        let mut command = tokio::process::Command::new("sh");
        command.args(["-c", "tty; while read line; do stty size; done"]);
        let mut streams = spawn(command, &request(true)).unwrap();
        assert!(streams.stderr.is_none(), "stderr goes to the terminal");
        let resize = streams.resize.take().unwrap();
        resize
            .send(TerminalSize {
                width: 100,
                height: 40,
            })
            .await
            .unwrap();
        // The resize applies asynchronously: ask for the size until it
        // shows (or the deadline passes).
        let stdin = streams.stdin.take().unwrap();
        let mut stdout = streams.stdout.take().unwrap();
        let mut out = String::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while !out.contains("40 100") && tokio::time::Instant::now() < deadline {
            stdin.send(Bytes::from_static(b"size\n")).await.unwrap();
            let chunk = tokio::time::timeout_at(deadline, stdout.recv()).await;
            if let Ok(Some(bytes)) = chunk {
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
        assert!(out.contains("/dev/pts/"), "tty output: {out:?}");
        assert!(out.contains("40 100"), "stty size output: {out:?}");
        // Closing stdin ends the shell's input (a ^D on the terminal).
        drop(stdin);
        while stdout.recv().await.is_some() {}
        assert_eq!(streams.exit.await.unwrap(), ExitStatus::Exited(0));
    }

    #[tokio::test]
    async fn connects_on_the_host_without_a_namespace() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut stream = connect_in_netns(None, port).await.unwrap();
        let (mut accepted, _) = listener.accept().await.unwrap();
        stream.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        accepted.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        drop(listener);
        // A port bound but not listening refuses connections, and holding
        // it keeps a parallel test from taking it between drop and connect.
        let held = tokio::net::TcpSocket::new_v4().unwrap();
        held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let closed = held.local_addr().unwrap().port();
        let refused = connect_in_netns(None, closed).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
