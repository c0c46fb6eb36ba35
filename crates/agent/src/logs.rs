//! Container logs for `kubectl logs`: the CRI log files the shim writes
//! (`<RFC 3339 nano time> <stream> <F|P> <text>` per record), read back with
//! the PodLogOptions filters (tailLines, sinceSeconds/sinceTime, timestamps,
//! limitBytes, previous) and followed while the container runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apiserver::nodes::{LogBody, LogRequest, NodeConnection, NodeError};
use bytes::Bytes;
use serde_json::Value;

use crate::runtime::ContainerRuntime;
use crate::sync::InstanceState;

/// One log line, reassembled from its CRI records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    /// The record came from the container's stderr (else stdout).
    pub stderr: bool,
    pub text: Vec<u8>,
}

/// The text of every complete CRI record in `data`, as the container
/// wrote it (a full record's newline restored, a partial one's not): a
/// terminal's output for `kubectl attach -t`, prompts without newlines
/// included. Returns the bytes and how much of `data` they used.
pub fn cri_record_bytes(data: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(end) = data[start..].iter().position(|b| *b == b'\n') {
        let record = &data[start..start + end];
        start += end + 1;
        let mut parts = record.splitn(4, |b| *b == b' ');
        let (Some(_time), Some(_stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        out.extend_from_slice(parts.next().unwrap_or_default());
        if tag != b"P" {
            out.push(b'\n');
        }
    }
    (out, start)
}

/// Parses CRI log records; partial (`P`) records join the next one.
/// Returns the complete lines and the bytes of an unfinished last record.
pub fn parse_cri(data: &[u8]) -> (Vec<LogLine>, usize) {
    let mut lines = Vec::new();
    let mut partial: Option<LogLine> = None;
    let mut consumed = 0;
    let mut start = 0;
    while let Some(end) = data[start..].iter().position(|b| *b == b'\n') {
        let record = &data[start..start + end];
        start += end + 1;
        let mut parts = record.splitn(4, |b| *b == b' ');
        let (Some(time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            consumed = start;
            continue;
        };
        let text = parts.next().unwrap_or_default();
        let line = partial.get_or_insert_with(|| LogLine {
            time: String::from_utf8_lossy(time).to_string(),
            stderr: stream == b"stderr",
            text: Vec::new(),
        });
        line.text.extend_from_slice(text);
        if tag != b"P" {
            lines.push(partial.take().expect("set above"));
            consumed = start;
        }
    }
    (lines, consumed)
}

/// The filters that apply to lines already written.
pub fn render(lines: &[LogLine], request: &LogRequest, now: jiff::Timestamp) -> Vec<u8> {
    let since = request
        .since_seconds
        .map(|s| now - jiff::SignedDuration::from_secs(s))
        .or_else(|| request.since_time.as_deref().and_then(|t| t.parse().ok()));
    let selected: Vec<&LogLine> = lines
        .iter()
        .filter(|l| match (since, l.time.parse::<jiff::Timestamp>()) {
            (Some(since), Ok(t)) => t >= since,
            _ => true,
        })
        .collect();
    let skip = match request.tail_lines {
        Some(n) => selected.len().saturating_sub(n as usize),
        None => 0,
    };
    let mut out = Vec::new();
    for line in &selected[skip..] {
        out.extend_from_slice(&format_line(line, request.timestamps));
    }
    out
}

fn format_line(line: &LogLine, timestamps: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if timestamps {
        out.extend_from_slice(line.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(&line.text);
    out.push(b'\n');
    out
}

/// The agent's side of `pods/log`.
pub struct AgentLogs {
    pub(crate) runtimes: BTreeMap<String, Arc<dyn ContainerRuntime>>,
    pub(crate) default_runtime: String,
    metrics: Arc<crate::metrics::MetricsStore>,
    services: Option<Arc<crate::services::NodeServices>>,
}

impl AgentLogs {
    pub fn new(
        runtimes: Vec<Arc<dyn ContainerRuntime>>,
        default_runtime: &str,
        metrics: Arc<crate::metrics::MetricsStore>,
    ) -> AgentLogs {
        AgentLogs {
            runtimes: runtimes
                .into_iter()
                .map(|r| (r.name().to_string(), r))
                .collect(),
            default_runtime: default_runtime.to_string(),
            metrics,
            services: None,
        }
    }

    /// Adds the node's service proxy metrics to its metrics report.
    pub fn with_services(mut self, services: Option<Arc<crate::services::NodeServices>>) -> Self {
        self.services = services;
        self
    }
}

fn bad(message: String) -> NodeError {
    NodeError { code: 400, message }
}

#[async_trait::async_trait]
impl NodeConnection for AgentLogs {
    async fn metrics(&self) -> apiserver::nodes::NodeMetricsReport {
        let mut report = self.metrics.report();
        if let Some(services) = &self.services {
            report.exposition = services.exposition();
        }
        report
    }

    async fn exec(
        &self,
        pod: &Value,
        request: &apiserver::nodes::ExecRequest,
    ) -> Result<apiserver::nodes::ProcessStreams, NodeError> {
        crate::streams::exec(self, pod, request).await
    }

    async fn attach(
        &self,
        pod: &Value,
        request: &apiserver::nodes::ExecRequest,
    ) -> Result<apiserver::nodes::ProcessStreams, NodeError> {
        crate::streams::attach(self, pod, request).await
    }

    async fn port_forward(
        &self,
        pod: &Value,
        port: u16,
    ) -> Result<Box<dyn apiserver::nodes::Tunnel>, NodeError> {
        crate::streams::port_forward(self, pod, port).await
    }

    async fn container_log(&self, pod: &Value, request: &LogRequest) -> Result<LogBody, NodeError> {
        let name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let uid = pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let container = request.container.clone();
        let runtime_name = pod
            .pointer("/spec/runtimeClassName")
            .and_then(Value::as_str)
            .unwrap_or(&self.default_runtime);
        let Some(runtime) = self.runtimes.get(runtime_name).cloned() else {
            return Err(bad(format!(
                "RuntimeClass \"{runtime_name}\" is not available on this node"
            )));
        };
        let status = ["containerStatuses", "initContainerStatuses"]
            .iter()
            .filter_map(|f| {
                pod.pointer(&format!("/status/{f}"))
                    .and_then(Value::as_array)
            })
            .flatten()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(&container))
            .cloned()
            .unwrap_or(Value::Null);
        let restarts = status
            .get("restartCount")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32;
        let attempt = if request.previous {
            if restarts == 0 {
                return Err(bad(format!(
                    "previous terminated container \"{container}\" in pod \"{name}\" not found"
                )));
            }
            restarts - 1
        } else {
            restarts
        };
        let Some(path) = runtime.log_path(&uid, &container, attempt) else {
            let reason = status
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .unwrap_or("ContainerCreating");
            return Err(bad(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
            )));
        };
        let data = tokio::fs::read(&path).await.map_err(|e| NodeError {
            code: 500,
            message: format!("reading {}: {e}", path.display()),
        })?;
        let (lines, consumed) = parse_cri(&data);
        let mut first = render(&lines, request, jiff::Timestamp::now());
        let mut budget = request.limit_bytes.map(|l| l as usize);
        if let Some(b) = budget {
            first.truncate(b);
            budget = Some(b - first.len());
        }
        if !request.follow || request.previous || budget == Some(0) {
            return Ok(LogBody::Complete(first));
        }
        // Follow: what is there, then whatever is appended, until the
        // container has exited and the file has no more.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let timestamps = request.timestamps;
        // The file stays open, so the last lines are read even if the pod
        // is deleted (and its log directory removed) right as it ends.
        let file = tokio::fs::File::open(&path).await;
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
                return;
            }
            let Ok(mut file) = file else {
                return;
            };
            if file
                .seek(std::io::SeekFrom::Start(consumed as u64))
                .await
                .is_err()
            {
                return;
            }
            let mut data: Vec<u8> = Vec::new();
            let mut budget = budget;
            loop {
                let running = runtime.observe(&uid).await.containers.iter().any(|c| {
                    c.name == container
                        && c.attempt == attempt
                        && matches!(c.state, InstanceState::Running { .. })
                });
                let before = data.len();
                let _ = file.read_to_end(&mut data).await;
                // Rotated (the runtime renamed the file and began a new
                // one): the old one has just been read to its end.
                if let (Ok(current), Ok(open)) =
                    (tokio::fs::metadata(&path).await, file.metadata().await)
                {
                    use std::os::unix::fs::MetadataExt;
                    if current.ino() != open.ino() {
                        if let Ok(next) = tokio::fs::File::open(&path).await {
                            file = next;
                            let _ = file.read_to_end(&mut data).await;
                        }
                    }
                }
                if data.len() > before {
                    let (lines, used) = parse_cri(&data);
                    data.drain(..used);
                    let mut chunk: Vec<u8> = lines
                        .iter()
                        .flat_map(|l| format_line(l, timestamps))
                        .collect();
                    if let Some(b) = budget {
                        chunk.truncate(b);
                        budget = Some(b - chunk.len());
                    }
                    if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                        return;
                    }
                    if budget == Some(0) {
                        return;
                    }
                }
                if !running {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let stream = tokio_stream_from(rx);
        Ok(LogBody::Follow(Box::pin(stream)))
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> impl futures::Stream<Item = Bytes> + Send + Sync {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> LogRequest {
        LogRequest::default()
    }

    const LOG: &str = "2026-12-03T10:00:00.000000001Z stdout F one\n\
2026-12-03T10:00:01.000000001Z stderr P tw\n\
2026-12-03T10:00:01.000000002Z stderr F o\n\
2026-12-03T10:00:05.000000001Z stdout F three\n\
2026-12-03T10:00:06.000000001Z stdout P unfinish";

    #[test]
    fn partial_records_join_and_unfinished_ones_wait() {
        let (lines, consumed) = parse_cri(LOG.as_bytes());
        let texts: Vec<String> = lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.text).to_string())
            .collect();
        assert_eq!(texts, ["one", "two", "three"]);
        assert_eq!(
            &LOG[consumed..],
            "2026-12-03T10:00:06.000000001Z stdout P unfinish"
        );
    }

    #[test]
    fn options_filter_like_kubelet() {
        let (lines, _) = parse_cri(LOG.as_bytes());
        let now: jiff::Timestamp = "2026-12-03T10:00:10Z".parse().unwrap();
        let text = |r: &LogRequest| String::from_utf8(render(&lines, r, now)).unwrap();
        assert_eq!(text(&request()), "one\ntwo\nthree\n");
        assert_eq!(
            text(&LogRequest {
                tail_lines: Some(1),
                ..request()
            }),
            "three\n"
        );
        assert_eq!(
            text(&LogRequest {
                tail_lines: Some(0),
                ..request()
            }),
            ""
        );
        assert_eq!(
            text(&LogRequest {
                since_seconds: Some(6),
                ..request()
            }),
            "three\n"
        );
        assert_eq!(
            text(&LogRequest {
                timestamps: true,
                tail_lines: Some(1),
                ..request()
            }),
            "2026-12-03T10:00:05.000000001Z three\n"
        );
    }
}
