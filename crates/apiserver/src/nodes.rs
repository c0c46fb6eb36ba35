//! What the API server asks of node agents on a user's behalf: container
//! logs (`pods/log`), metrics, and the streaming subresources (`pods/exec`,
//! `pods/attach`, `pods/portforward`) as plain byte channels, so that a
//! remote agent can carry them over its own connection later. Agents connect themselves by node name
//! ([`crate::ApiServer::connect_node`]); an in-process agent hands over an
//! object, a remote one is reached through the tunnel it opens
//! ([`crate::tunnel`]).

use std::collections::BTreeMap;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use serde_json::Value;

/// `pods/log` query parameters (PodLogOptions).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogRequest {
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
    pub limit_bytes: Option<i64>,
}

/// A log: all at once, or a stream that ends when the container does.
pub enum LogBody {
    Complete(Vec<u8>),
    Follow(Pin<Box<dyn Stream<Item = Bytes> + Send + Sync>>),
}

/// A failure the user sees: HTTP code and message.
#[derive(Debug)]
pub struct NodeError {
    pub code: u16,
    pub message: String,
}

/// Usage of a node (`name` empty) or of one container, over a window.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContainerUsage {
    pub name: String,
    pub cpu_nanocores: u64,
    pub memory_bytes: u64,
    /// Cumulative CPU time (nanoseconds) at `timestamp`.
    #[serde(default)]
    pub cpu_usage_ns_total: u64,
    /// RFC 3339: the end of the window.
    pub timestamp: String,
    pub window_seconds: f64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PodUsageReport {
    pub namespace: String,
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub containers: Vec<ContainerUsage>,
}

/// What a node reports for `metrics.k8s.io`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeMetricsReport {
    pub node: Option<ContainerUsage>,
    pub pods: Vec<PodUsageReport>,
    /// The node's own Prometheus/OpenMetrics text (its service proxy's
    /// series), merged into the server's `/metrics` with a `node` label.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exposition: String,
}

/// What to run for `pods/exec` (or which streams `pods/attach` wants).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecRequest {
    pub container: String,
    /// Empty for attach.
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A terminal size (the resize channel's `{"Width":…,"Height":…}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// How an exec or attach session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    /// The command could not run (the message goes to the user).
    Error(String),
}

/// The streams of a running exec or attach: each present iff asked for.
/// Dropping `stdin` closes the process's stdin; `stdout`/`stderr` end when
/// the process closes them; `exit` resolves when it has exited.
pub struct ProcessStreams {
    pub stdin: Option<tokio::sync::mpsc::Sender<Bytes>>,
    pub stdout: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    pub stderr: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    pub resize: Option<tokio::sync::mpsc::Sender<TerminalSize>>,
    pub exit: tokio::sync::oneshot::Receiver<ExitStatus>,
}

/// A byte stream to a port inside a pod (`pods/portforward`).
pub trait Tunnel: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Tunnel for T {}

fn unsupported(what: &str) -> NodeError {
    NodeError {
        code: 400,
        message: format!("{what} is not supported by this node"),
    }
}

#[async_trait::async_trait]
pub trait NodeConnection: Send + Sync {
    /// The log of container `request.container` of `pod` (the pod object
    /// as stored).
    async fn container_log(&self, pod: &Value, request: &LogRequest) -> Result<LogBody, NodeError>;
    /// Current resource usage of the node and its pods.
    async fn metrics(&self) -> NodeMetricsReport;
    /// Runs `request.command` in a running container of `pod`.
    async fn exec(&self, pod: &Value, request: &ExecRequest) -> Result<ProcessStreams, NodeError> {
        let _ = (pod, request);
        Err(unsupported("exec"))
    }
    /// Attaches to the main process of a running container of `pod`.
    async fn attach(
        &self,
        pod: &Value,
        request: &ExecRequest,
    ) -> Result<ProcessStreams, NodeError> {
        let _ = (pod, request);
        Err(unsupported("attach"))
    }
    /// A connection to `port` on the pod's loopback interface. The error
    /// message is what the user sees on the port's error stream.
    async fn port_forward(&self, pod: &Value, port: u16) -> Result<Box<dyn Tunnel>, NodeError> {
        let _ = (pod, port);
        Err(unsupported("port forwarding"))
    }
}

fn window(seconds: f64) -> String {
    let ms = (seconds * 1000.0).round() as u64;
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

fn usage_json(u: &ContainerUsage) -> Value {
    serde_json::json!({
        "cpu": format!("{}n", u.cpu_nanocores),
        "memory": format!("{}Ki", u.memory_bytes / 1024),
    })
}

/// The kubelet's resource metrics (`/metrics/resource` names: node, pod and
/// container CPU seconds and working-set bytes) of every connected node,
/// in OpenMetrics text, for the server's `/metrics`.
pub(crate) async fn resource_metrics(server: &crate::ApiServer) -> String {
    let connections: Vec<(String, std::sync::Arc<dyn NodeConnection>)> = server
        .nodes
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let escape = |v: &str| {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let seconds = |ns: u64| ns as f64 / 1e9;
    let mut cpu = Vec::new();
    let mut memory = Vec::new();
    let mut expositions = Vec::new();
    for (node, connection) in connections {
        let report = connection.metrics().await;
        if !report.exposition.is_empty() {
            expositions.push((node.clone(), report.exposition.clone()));
        }
        if let Some(u) = &report.node {
            cpu.push((
                "node",
                format!("node=\"{}\"", escape(&node)),
                seconds(u.cpu_usage_ns_total),
            ));
            memory.push((
                "node",
                format!("node=\"{}\"", escape(&node)),
                u.memory_bytes as f64,
            ));
        }
        for pod in &report.pods {
            let pod_labels = format!(
                "namespace=\"{}\",pod=\"{}\",node=\"{}\"",
                escape(&pod.namespace),
                escape(&pod.name),
                escape(&node)
            );
            let (mut pod_cpu, mut pod_memory) = (0u64, 0u64);
            for c in &pod.containers {
                let labels = format!("container=\"{}\",{pod_labels}", escape(&c.name));
                cpu.push(("container", labels.clone(), seconds(c.cpu_usage_ns_total)));
                memory.push(("container", labels, c.memory_bytes as f64));
                pod_cpu += c.cpu_usage_ns_total;
                pod_memory += c.memory_bytes;
            }
            cpu.push(("pod", pod_labels.clone(), seconds(pod_cpu)));
            memory.push(("pod", pod_labels, pod_memory as f64));
        }
    }
    let mut out = String::new();
    for scope in ["node", "pod", "container"] {
        out.push_str(&format!(
            "# HELP {scope}_cpu_usage_seconds Cumulative cpu time consumed by the {scope} in core-seconds.\n# TYPE {scope}_cpu_usage_seconds counter\n"
        ));
        for (s, labels, v) in cpu.iter().filter(|(s, _, _)| *s == scope) {
            out.push_str(&format!("{s}_cpu_usage_seconds_total{{{labels}}} {v}\n"));
        }
        out.push_str(&format!(
            "# HELP {scope}_memory_working_set_bytes Current working set of the {scope} in bytes.\n# TYPE {scope}_memory_working_set_bytes gauge\n"
        ));
        for (s, labels, v) in memory.iter().filter(|(s, _, _)| *s == scope) {
            out.push_str(&format!("{s}_memory_working_set_bytes{{{labels}}} {v}\n"));
        }
    }
    out.push_str(&merge_expositions(&expositions));
    out
}

/// Merges the text expositions of several nodes into one: each metric
/// family once (its HELP/TYPE/UNIT lines from the first node that has it),
/// followed by the samples of every node with a `node` label added — the
/// text format allows a family's metadata only once, and the same series
/// from two nodes would otherwise collide. `# EOF` lines are dropped (the
/// caller's document has its own).
pub fn merge_expositions(nodes: &[(String, String)]) -> String {
    struct Family {
        /// The node whose HELP/TYPE/UNIT lines are kept.
        described_by: Option<usize>,
        metadata: Vec<String>,
        samples: Vec<String>,
    }
    let mut order: Vec<String> = Vec::new();
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut family = |name: &str, order: &mut Vec<String>| {
        if !families.contains_key(name) {
            order.push(name.to_string());
            families.insert(
                name.to_string(),
                Family {
                    described_by: None,
                    metadata: Vec::new(),
                    samples: Vec::new(),
                },
            );
        }
        name.to_string()
    };
    enum Line {
        /// HELP/TYPE/UNIT of the node with this index.
        Metadata(usize, String),
        Sample(String),
    }
    let mut collected: Vec<(String, Line)> = Vec::new();
    for (index, (node, text)) in nodes.iter().enumerate() {
        let node_label = format!(
            "node=\"{}\"",
            node.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        );
        let mut current = String::new();
        for line in text.lines() {
            if line.is_empty() || line == "# EOF" {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let mut words = rest.splitn(3, ' ');
                if let (Some("HELP" | "TYPE" | "UNIT"), Some(name)) = (words.next(), words.next()) {
                    current = family(name, &mut order);
                    collected.push((current.clone(), Line::Metadata(index, line.to_string())));
                }
                continue;
            }
            let Some(at) = line.find(['{', ' ']) else {
                continue;
            };
            let name = &line[..at];
            let sample = if line.as_bytes()[at] == b'{' {
                let inner = &line[at + 1..];
                let separator = if inner.starts_with('}') { "" } else { "," };
                format!("{name}{{{node_label}{separator}{inner}")
            } else {
                format!("{name}{{{node_label}}}{}", &line[at..])
            };
            // Samples belong to the family declared before them (a
            // counter `x` has samples `x_total`, `x_created`).
            let owner = if !current.is_empty() && name.starts_with(current.as_str()) {
                current.clone()
            } else {
                family(name, &mut order)
            };
            collected.push((owner, Line::Sample(sample)));
        }
    }
    for (name, line) in collected {
        let Some(f) = families.get_mut(&name) else {
            continue;
        };
        match line {
            Line::Metadata(index, line) => {
                if *f.described_by.get_or_insert(index) == index && !f.metadata.contains(&line) {
                    f.metadata.push(line);
                }
            }
            Line::Sample(sample) => f.samples.push(sample),
        }
    }
    let mut out = String::new();
    for name in order {
        let Some(f) = families.remove(&name) else {
            continue;
        };
        for line in f.metadata.iter().chain(f.samples.iter()) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `metrics.k8s.io/v1beta1` NodeMetrics and PodMetrics, gathered from the
/// connected node agents at request time (what metrics-server serves in
/// Kubernetes).
pub(crate) async fn serve_metrics(
    server: &std::sync::Arc<crate::ApiServer>,
    rt: &api::registry::ResourceType,
    rp: &crate::request::ResourcePath,
    query: &crate::request::Query,
) -> Result<http::Response<crate::ResponseBody>, api::ApiError> {
    use api::ApiError;
    use serde_json::json;
    if rp.subresource.is_some() || query.flag("watch") {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "metrics support only get and list",
        ));
    }
    let selector = match query.get("labelSelector") {
        Some(s) => Some(
            apimachinery::selector::LabelSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        ),
        None => None,
    };
    let connections: Vec<(String, std::sync::Arc<dyn NodeConnection>)> = server
        .nodes
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut items = Vec::new();
    for (node, connection) in connections {
        let report = connection.metrics().await;
        if rt.plural == "nodes" {
            if let Some(u) = report.node {
                items.push(json!({
                    "metadata": {"name": node, "creationTimestamp": u.timestamp, "labels": {}},
                    "timestamp": u.timestamp,
                    "window": window(u.window_seconds),
                    "usage": usage_json(&u),
                }));
            }
            continue;
        }
        for pod in report.pods {
            if rp.namespace.as_deref().is_some_and(|n| n != pod.namespace) {
                continue;
            }
            if selector.as_ref().is_some_and(|s| !s.matches(&pod.labels)) {
                continue;
            }
            let timestamp = pod
                .containers
                .iter()
                .map(|c| c.timestamp.clone())
                .max()
                .unwrap_or_default();
            let window_seconds = pod
                .containers
                .first()
                .map(|c| c.window_seconds)
                .unwrap_or(0.0);
            let containers: Vec<Value> = pod
                .containers
                .iter()
                .map(|c| json!({"name": c.name, "usage": usage_json(c)}))
                .collect();
            items.push(json!({
                "metadata": {"name": pod.name, "namespace": pod.namespace, "creationTimestamp": timestamp, "labels": pod.labels},
                "timestamp": timestamp,
                "window": window(window_seconds),
                "containers": containers,
            }));
        }
    }
    let api_version = "metrics.k8s.io/v1beta1";
    if let Some(name) = rp.name.as_deref() {
        let found = items
            .into_iter()
            .find(|i| i.pointer("/metadata/name").and_then(Value::as_str) == Some(name));
        return match found {
            Some(mut item) => {
                item["kind"] = json!(rt.kind);
                item["apiVersion"] = json!(api_version);
                Ok(crate::json_response(http::StatusCode::OK, &item))
            }
            None => Err(ApiError::not_found("metrics.k8s.io", &rt.plural, name)),
        };
    }
    Ok(crate::json_response(
        http::StatusCode::OK,
        &json!({"kind": format!("{}List", rt.kind), "apiVersion": api_version, "metadata": {}, "items": items}),
    ))
}

/// `GET pods/NAME/log`: picks the container as kube-apiserver does (the
/// only one, or the `kubectl.kubernetes.io/default-container`, or the
/// `container` parameter, which must exist), validates the options, and
/// asks the pod's node.
pub(crate) async fn serve_log(
    server: &std::sync::Arc<crate::ApiServer>,
    pod: &Value,
    query: &crate::request::Query,
) -> Result<http::Response<crate::ResponseBody>, api::ApiError> {
    use api::ApiError;
    use http_body_util::BodyExt;
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let container = choose_container(pod, query)?;
    let number = |key: &str, min: i64| -> Result<Option<i64>, ApiError> {
        match query.get(key) {
            None => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= min => Ok(Some(n)),
                _ => Err(ApiError::invalid(
                    "",
                    "PodLogOptions",
                    name,
                    vec![api::Cause::invalid_raw(
                        key,
                        v,
                        format!("must be greater than {}", min - 1),
                    )],
                )),
            },
        }
    };
    let request = LogRequest {
        container: container.clone(),
        follow: query.flag("follow"),
        previous: query.flag("previous"),
        timestamps: query.flag("timestamps"),
        tail_lines: number("tailLines", 0)?,
        since_seconds: number("sinceSeconds", 1)?,
        since_time: query.get("sinceTime").map(str::to_string),
        limit_bytes: number("limitBytes", 1)?,
    };
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let Some(node) = node else {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: pod has not been scheduled"
        )));
    };
    let Some(connection) = server.node_connection(node) else {
        return Err(ApiError::new(
            500,
            "InternalError",
            format!("no agent of node \"{node}\" is connected to this server"),
        ));
    };
    let body = connection.container_log(pod, &request).await.map_err(|e| {
        let reason = if e.code == 400 {
            "BadRequest"
        } else {
            "InternalError"
        };
        ApiError::new(e.code, reason, e.message)
    })?;
    let body = match body {
        LogBody::Complete(bytes) => http_body_util::Full::new(Bytes::from(bytes))
            .map_err(|never| match never {})
            .boxed(),
        LogBody::Follow(stream) => {
            let frames = futures::StreamExt::map(stream, |b| {
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(b))
            });
            BodyExt::boxed(http_body_util::StreamBody::new(frames))
        }
    };
    Ok(http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .unwrap())
}

/// The container a `pods/log`, `exec` or `attach` request means, picked as
/// kube-apiserver does: the `container` parameter (which must exist), else
/// the `kubectl.kubernetes.io/default-container`, else the only one.
pub(crate) fn choose_container(
    pod: &Value,
    query: &crate::request::Query,
) -> Result<String, api::ApiError> {
    use api::ApiError;
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let containers = names("containers");
    let init = names("initContainers");
    let container = match query.get("container") {
        Some(c) => {
            if !containers.iter().chain(init.iter()).any(|n| n == c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            c.to_string()
        }
        None => match pod
            .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
            .and_then(Value::as_str)
        {
            Some(d) if containers.iter().any(|n| n == d) => d.to_string(),
            _ if containers.len() == 1 => containers[0].clone(),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]{}",
                    containers.join(" "),
                    if init.is_empty() {
                        String::new()
                    } else {
                        format!(" or one of the init containers: [{}]", init.join(" "))
                    }
                )))
            }
        },
    };
    Ok(container)
}

#[cfg(test)]
mod tests {
    use super::merge_expositions;

    #[test]
    fn expositions_of_several_nodes_merge_per_family_with_a_node_label() {
        let a = "# HELP x_requests Requests.\n# TYPE x_requests counter\nx_requests_total{service=\"web\"} 3\n# TYPE x_open gauge\nx_open 1\n# EOF\n";
        let b = "# HELP x_requests Requests.\n# TYPE x_requests counter\nx_requests_total{service=\"web\"} 4\n# EOF\n";
        let merged = merge_expositions(&[("n1".into(), a.into()), ("n\"2".into(), b.into())]);
        assert_eq!(
            merged,
            "# HELP x_requests Requests.\n# TYPE x_requests counter\n\
             x_requests_total{node=\"n1\",service=\"web\"} 3\n\
             x_requests_total{node=\"n\\\"2\",service=\"web\"} 4\n\
             # TYPE x_open gauge\nx_open{node=\"n1\"} 1\n"
        );
        assert!(
            !merged.contains("# EOF"),
            "the caller's document ends itself: {merged}"
        );
    }
}
