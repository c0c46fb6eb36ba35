//! The agent's side of `kubectl exec`, `attach` and `port-forward`: finds
//! the pod's runtime and running container instance, and hands the
//! runtime's streams to the API server.
//!
//! Attach is built from what the runtimes keep: the container's output is
//! its CRI log followed from the moment of attaching (per record, so a
//! line shows once it is complete), its stdin the runtime's
//! [`ContainerRuntime::attach_stdin`]. As the kubelet does, whether the
//! attach is a terminal's is the container's `tty`, not the request's (a
//! process cannot change terminals once started): a tty container's
//! output is its terminal's, record by record (a prompt shows before its
//! line ends), and resizes go to [`ContainerRuntime::attach_resize`].

use std::sync::Arc;
use std::time::Duration;

use apiserver::nodes::{ExecRequest, ExitStatus, NodeError, ProcessStreams, Tunnel};
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::logs::{parse_cri, AgentLogs};
use crate::runtime::ContainerRuntime;
use crate::sync::InstanceState;

fn bad(message: String) -> NodeError {
    NodeError { code: 400, message }
}

fn text<'a>(pod: &'a Value, pointer: &str) -> &'a str {
    pod.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn runtime_of(agent: &AgentLogs, pod: &Value) -> Result<Arc<dyn ContainerRuntime>, NodeError> {
    let name = pod
        .pointer("/spec/runtimeClassName")
        .and_then(Value::as_str)
        .unwrap_or(&agent.default_runtime);
    agent.runtimes.get(name).cloned().ok_or_else(|| {
        bad(format!(
            "RuntimeClass \"{name}\" is not available on this node"
        ))
    })
}

/// The running instance (attempt) of `container`, as the kubelet finds it
/// in the runtime: an error like the kubelet's when there is none.
async fn running_attempt(
    runtime: &dyn ContainerRuntime,
    uid: &str,
    container: &str,
) -> Result<u32, NodeError> {
    runtime
        .observe(uid)
        .await
        .containers
        .iter()
        .filter(|c| c.name == container && matches!(c.state, InstanceState::Running { .. }))
        .map(|c| c.attempt)
        .max()
        .ok_or_else(|| bad(format!("container not found (\"{container}\")")))
}

pub(crate) async fn exec(
    agent: &AgentLogs,
    pod: &Value,
    request: &ExecRequest,
) -> Result<ProcessStreams, NodeError> {
    let runtime = runtime_of(agent, pod)?;
    let uid = text(pod, "/metadata/uid");
    let attempt = running_attempt(runtime.as_ref(), uid, &request.container).await?;
    runtime
        .exec(uid, &request.container, attempt, request)
        .await
        .map_err(|e| NodeError {
            code: 500,
            message: e.to_string(),
        })
}

fn container_spec<'a>(pod: &'a Value, container: &str) -> Option<&'a Value> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(container))
}

pub(crate) async fn attach(
    agent: &AgentLogs,
    pod: &Value,
    request: &ExecRequest,
) -> Result<ProcessStreams, NodeError> {
    let runtime = runtime_of(agent, pod)?;
    let uid = text(pod, "/metadata/uid").to_string();
    let container = request.container.clone();
    let spec = container_spec(pod, &container);
    let tty = spec
        .and_then(|s| s.get("tty"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let attempt = running_attempt(runtime.as_ref(), &uid, &container).await?;
    let stdin = if request.stdin {
        if !spec
            .and_then(|s| s.get("stdin"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            return Err(bad(format!(
                "stdin is not enabled for container \"{container}\" (set stdin: true in its spec)"
            )));
        }
        Some(
            runtime
                .attach_stdin(&uid, &container, attempt)
                .await
                .map_err(|e| NodeError {
                    code: 500,
                    message: e.to_string(),
                })?,
        )
    } else {
        None
    };
    let resize = if tty {
        match runtime.attach_resize(&uid, &container, attempt).await {
            Ok(tx) => Some(tx),
            Err(e) => {
                // A container started before its runtime kept a resize
                // relay: the attach works, at the size it has.
                tracing::debug!("attach: no terminal resizes for {container}: {e}");
                None
            }
        }
    } else {
        None
    };
    let Some(path) = runtime.log_path(&uid, &container, attempt) else {
        return Err(bad(format!("container not found (\"{container}\")")));
    };
    // Output from now on: start at the log's current end.
    let offset = tokio::fs::metadata(&path)
        .await
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    let (stdout_tx, stdout_rx) = mpsc::channel::<Bytes>(16);
    let (stderr_tx, stderr_rx) = mpsc::channel::<Bytes>(16);
    let (exit_tx, exit_rx) = oneshot::channel();
    // A terminal has one output stream.
    let (want_stdout, want_stderr) = (
        request.stdout || (tty && request.stderr),
        request.stderr && !tty,
    );
    tokio::spawn(async move {
        let mut offset = offset;
        let mut exit_code = None;
        loop {
            let instance = runtime
                .observe(&uid)
                .await
                .containers
                .into_iter()
                .find(|c| c.name == container && c.attempt == attempt);
            let running = match instance.map(|c| c.state) {
                Some(InstanceState::Running { .. }) => true,
                Some(InstanceState::Exited { exit_code: c, .. }) => {
                    exit_code = Some(c);
                    false
                }
                _ => false,
            };
            let data = tokio::fs::read(&path).await.unwrap_or_default();
            if tty && data.len() > offset {
                let (bytes, used) = crate::logs::cri_record_bytes(&data[offset..]);
                offset += used;
                if want_stdout
                    && !bytes.is_empty()
                    && stdout_tx.send(Bytes::from(bytes)).await.is_err()
                {
                    return;
                }
            } else if data.len() > offset {
                let (lines, used) = parse_cri(&data[offset..]);
                offset += used;
                for line in lines {
                    let (wanted, tx) = if line.stderr {
                        (want_stderr, &stderr_tx)
                    } else {
                        (want_stdout, &stdout_tx)
                    };
                    if !wanted {
                        continue;
                    }
                    let mut bytes = line.text;
                    bytes.push(b'\n');
                    if tx.send(Bytes::from(bytes)).await.is_err() {
                        return;
                    }
                }
            }
            // Nobody reads any more (the client detached).
            let gone = (want_stdout || want_stderr)
                && (!want_stdout || stdout_tx.is_closed())
                && (!want_stderr || stderr_tx.is_closed());
            if !running || gone {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = exit_tx.send(ExitStatus::Exited(exit_code.unwrap_or(0)));
    });
    Ok(ProcessStreams {
        stdin,
        stdout: want_stdout.then_some(stdout_rx),
        stderr: want_stderr.then_some(stderr_rx),
        resize,
        exit: exit_rx,
    })
}

pub(crate) async fn port_forward(
    agent: &AgentLogs,
    pod: &Value,
    port: u16,
) -> Result<Box<dyn Tunnel>, NodeError> {
    let runtime = runtime_of(agent, pod)?;
    let uid = text(pod, "/metadata/uid");
    match runtime.port_forward(uid, port).await {
        Ok(stream) => Ok(Box::new(stream)),
        Err(e) => Err(NodeError {
            code: 500,
            message: format!("error forwarding port {port} to pod {uid}, uid : {e}"),
        }),
    }
}
