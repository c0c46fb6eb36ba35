//! End to end: `kubectl exec`, `attach` and `port-forward` (kubectl 1.32:
//! WebSocket v5 for exec/attach, SPDY tunnelled through a WebSocket for
//! port-forward) against pods of the process runtime, and a raw WebSocket
//! client of the channel protocols (what kube-rs speaks).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{http_get, port_forward, Server};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(90);

fn running(s: &Server, name: &str) {
    s.wait(&format!("pod {name} Running"), TIMEOUT, || {
        let pod: Value = s.json(&["get", "pod", name]);
        pod["status"]["phase"] == "Running"
            && pod["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|c| c["state"]["running"].is_object())
    });
}

fn output(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// kubectl with `args` (one shell string) on a terminal of its own.
fn in_terminal(s: &Server, args: &str) -> std::process::Output {
    in_terminal_env(s, args, &[])
}

fn in_terminal_env(s: &Server, args: &str, env: &[(&str, &str)]) -> std::process::Output {
    let kubectl = common::kubectl_binary();
    Command::new("script")
        .envs(env.iter().copied())
        .args(["-q", "-e", "-c"])
        .arg(format!("{} {args}", kubectl.display()))
        .arg("/dev/null")
        .env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", s.home.path())
        .stdin(Stdio::null())
        .output()
        .expect("running script")
}

#[test]
fn kubectl_exec_runs_commands_inside_the_container() {
    let s = Server::start_with_agent(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: box}
spec:
  containers:
  - name: main
    image: unused
    command: [sleep, "3600"]
    env: [{name: GREETING, value: hello-from-env}]
---
apiVersion: v1
kind: Pod
metadata: {name: two}
spec:
  containers:
  - {name: first, image: unused, command: [sleep, "3600"]}
  - {name: second, image: unused, command: [sleep, "3600"]}
"#,
    );
    running(&s, "box");
    running(&s, "two");

    // Exit codes come through the v5 error channel.
    let out = s.kubectl(&["exec", "box", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", output(&out));
    let out = s.kubectl(&["exec", "box", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", output(&out));

    // Inside the container's PID namespace: PID 1 is its command; its env.
    let cmdline = s.ok(&["exec", "box", "--", "cat", "/proc/1/cmdline"]);
    assert_eq!(cmdline, "sleep\u{0}3600\u{0}");
    // In the container's cgroup (its limits apply to what is exec'd).
    let cgroup = s.ok(&["exec", "box", "--", "cat", "/proc/self/cgroup"]);
    assert!(
        cgroup
            .lines()
            .any(|l| l.contains("/pod") && l.ends_with("/main")),
        "{cgroup}"
    );
    let env = s.ok(&[
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        "echo $GREETING; echo err >&2",
    ]);
    assert_eq!(env, "hello-from-env\n");

    // stdout and stderr stay apart.
    let out = s.kubectl(&["exec", "box", "--", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "out\n",
        "{}",
        output(&out)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "err\n",
        "{}",
        output(&out)
    );

    // stdin piped through, closed at its end (v5 close channel).
    let upper = s.ok_stdin(
        &["exec", "-i", "box", "--", "tr", "a-z", "A-Z"],
        "hello\nworld\n",
    );
    assert_eq!(upper, "HELLO\nWORLD\n");

    // -t: a pty (kubectl turns -t off without -i, and wants a terminal of
    // its own: it runs under `script`).
    let out = in_terminal(&s, "exec -it box -- sh -c 'tty; stty size'");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", output(&out));
    assert!(text.contains("/dev/pts/"), "{}", output(&out));

    // The same over SPDY/3.1 (an HTTP Upgrade): what client-go before 1.30
    // speaks, and kubectl with its WebSocket feature gate off.
    let spdy = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    let out = s.kubectl_env(
        &[
            "exec",
            "-v=8",
            "box",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        None,
        &spdy,
    );
    assert_eq!(out.status.code(), Some(3), "{}", output(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "out\n",
        "{}",
        output(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Upgrade: SPDY/3.1") || err.contains("Upgrade: [SPDY/3.1]"),
        "not SPDY: {err}"
    );
    assert!(err.contains("\nerr\n") || err.starts_with("err\n"), "{err}");
    let out = s.kubectl_env(
        &["exec", "-i", "box", "--", "tr", "a-z", "A-Z"],
        Some("hello\nworld\n"),
        &spdy,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "HELLO\nWORLD\n",
        "{}",
        output(&out)
    );
    let out = in_terminal_env(&s, "exec -it box -- sh -c 'tty; stty size'", &spdy);
    assert!(out.status.success(), "{}", output(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/dev/pts/"),
        "{}",
        output(&out)
    );

    // Two containers, none named: kubectl picks the first and says so.
    let out = s.kubectl(&["exec", "two", "--", "cat", "/proc/1/cmdline"]);
    assert!(out.status.success(), "{}", output(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Defaulted container \"first\""),
        "{}",
        output(&out)
    );
    let second = s.ok(&["exec", "two", "-c", "second", "--", "hostname"]);
    assert_eq!(second, "two\n");
    let err = s.fails(&["exec", "two", "-c", "third", "--", "true"], None);
    assert!(
        err.contains("container third is not valid for pod two")
            || err.contains("container third not found"),
        "{err}"
    );
    let err = s.fails(&["exec", "nothere", "--", "true"], None);
    assert!(err.contains("pods \"nothere\" not found"), "{err}");
}

#[test]
fn kubectl_port_forward_reaches_the_pods_loopback() {
    let s = Server::start_with_agent(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    image: unused
    # Only on the pod's loopback: reachable through port-forward alone.
    command: [sh, -c, 'mkdir -p /tmp/$(HOSTNAME)-www && cd /tmp/$(HOSTNAME)-www && echo served-from-the-pod > index.html && exec python3 -m http.server --bind 127.0.0.1 8080']
    env: [{name: HOSTNAME, value: web}]
"#,
    );
    running(&s, "web");
    s.wait("the pod's server listening", TIMEOUT, || {
        s.kubectl(&[
            "exec",
            "web",
            "--",
            "python3",
            "-c",
            "import socket; socket.create_connection(('127.0.0.1', 8080))",
        ])
        .status
        .success()
    });
    let forward = port_forward(&s, "web", 8080);
    // Several connections over the one session.
    for _ in 0..3 {
        let body = http_get(forward.local_port, "/index.html").unwrap_or_else(|e| {
            panic!(
                "curl through the port-forward: {e}\nkubectl: {}\nserver: {}",
                forward.stderr.lock().unwrap(),
                s.log_text()
            )
        });
        assert_eq!(body, "served-from-the-pod\n");
    }
    drop(forward);
    // The same over SPDY/3.1 on a plain HTTP Upgrade.
    let forward = common::port_forward_env(
        &s,
        "web",
        8080,
        &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")],
    );
    for _ in 0..2 {
        let body = http_get(forward.local_port, "/index.html").unwrap_or_else(|e| {
            panic!(
                "curl through the SPDY port-forward: {e}\nkubectl: {}",
                forward.stderr.lock().unwrap()
            )
        });
        assert_eq!(body, "served-from-the-pod\n");
    }
    drop(forward);

    // Nothing listens on 9999: the error stream says so.
    let forward = port_forward(&s, "web", 9999);
    assert!(http_get(forward.local_port, "/").is_err());
    s.wait("kubectl reports the failed connection", TIMEOUT, || {
        forward
            .stderr
            .lock()
            .unwrap()
            .contains("error forwarding port 9999 to pod")
    });
    let stderr = forward.stderr.lock().unwrap().clone();
    assert!(
        stderr.contains("failed to connect to localhost:9999"),
        "{stderr}"
    );
}

#[test]
fn kubectl_attach_writes_to_stdin_and_reads_the_output() {
    let s = Server::start_with_agent(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: echo}
spec:
  restartPolicy: Never
  containers:
  - name: cat
    image: unused
    command: [cat]
    stdin: true
    stdinOnce: true
---
apiVersion: v1
kind: Pod
metadata: {name: quiet}
spec:
  containers:
  - {name: main, image: unused, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: term}
spec:
  restartPolicy: Never
  containers:
  - name: sh
    image: unused
    command: [sh, -i]
    stdin: true
    tty: true
"#,
    );
    running(&s, "echo");
    running(&s, "quiet");
    running(&s, "term");
    let out = s.kubectl_stdin(&["attach", "-i", "echo"], Some("hello\nworld\n"));
    assert!(out.status.success(), "{}", output(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello\nworld\n",
        "{}",
        output(&out)
    );
    // stdinOnce: the attach's end closed cat's stdin, so cat is done.
    s.wait("pod echo Succeeded", TIMEOUT, || {
        let pod: Value = s.json(&["get", "pod", "echo"]);
        pod["status"]["phase"] == "Succeeded"
    });
    let logs = s.ok(&["logs", "echo"]);
    assert_eq!(logs, "hello\nworld\n");

    // A tty container: the attach is its terminal's (as the kubelet
    // decides it, from the container), input echoed, the shell's answer.
    let out = s.kubectl_stdin(&["attach", "-i", "term"], Some("echo $((6*7))\nexit\n"));
    assert!(out.status.success(), "{}", output(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("echo $((6*7))\r\n"),
        "no echo: {}",
        output(&out)
    );
    assert!(text.contains("\r\n42\r\n"), "no answer: {}", output(&out));
    s.wait("pod term Succeeded", TIMEOUT, || {
        let pod: Value = s.json(&["get", "pod", "term"]);
        pod["status"]["phase"] == "Succeeded"
    });

    // A container without stdin: nothing to attach stdin to.
    let err = s.fails(&["attach", "-i", "quiet"], Some("x\n"));
    assert!(
        err.contains("stdin is not enabled for container \"main\""),
        "{err}"
    );
}

/// A WebSocket client of the API server (TLS trusting the server's CA,
/// the admin token), offering `protocol`.
async fn websocket(
    s: &Server,
    path_and_query: &str,
    protocol: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let pem = std::fs::read(s.data_dir.path().join("tls/ca.crt")).expect("the server's CA");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let address = s.url.trim_start_matches("https://").to_string();
    let tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
    let ip: std::net::IpAddr = address.rsplit_once(':').unwrap().0.parse().unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(rustls::pki_types::ServerName::IpAddress(ip.into()), tcp)
        .await
        .unwrap();
    let mut request = format!("wss://{address}{path_and_query}")
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "Authorization",
        format!("Bearer {}", s.token).parse().unwrap(),
    );
    headers.insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (ws, response) = tokio_tungstenite::client_async(request, tls)
        .await
        .unwrap_or_else(|e| panic!("websocket to {path_and_query}: {e}"));
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        protocol,
        "negotiated protocol"
    );
    ws
}

/// Every binary message until the server closes, as (channel, data).
async fn messages<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Vec<(u8, Vec<u8>)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures::StreamExt;
    let mut out = Vec::new();
    while let Some(message) = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .expect("the server ends the session")
    {
        match message {
            Ok(tokio_tungstenite::tungstenite::Message::Binary(data)) => {
                if let Some((channel, rest)) = data.split_first() {
                    out.push((*channel, rest.to_vec()));
                }
            }
            Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    out
}

fn channel(messages: &[(u8, Vec<u8>)], channel: u8) -> Vec<u8> {
    messages
        .iter()
        .filter(|(c, _)| *c == channel)
        .flat_map(|(_, d)| d.clone())
        .collect()
}

#[test]
fn raw_websocket_clients_speak_the_channel_protocols() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let s = Server::start_with_agent(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: ws}
spec:
  containers:
  - name: web
    image: unused
    command: [sh, -c, 'mkdir -p /tmp/ws-www && cd /tmp/ws-www && echo raw-client > index.html && exec python3 -m http.server --bind 127.0.0.1 8080']
"#,
    );
    running(&s, "ws");
    s.wait("the pod's server listening", TIMEOUT, || {
        s.kubectl(&[
            "exec",
            "ws",
            "--",
            "python3",
            "-c",
            "import socket; socket.create_connection(('127.0.0.1', 8080))",
        ])
        .status
        .success()
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // v5 exec: the exit code in the error channel's Status.
        let mut ws = websocket(
            &s,
            "/api/v1/namespaces/default/pods/ws/exec?command=sh&command=-c&command=echo%20out%3B%20exit%207&stdout=true&stderr=true",
            "v5.channel.k8s.io",
        )
        .await;
        let got = messages(&mut ws).await;
        assert_eq!(channel(&got, 1), b"out\n", "{got:?}");
        let status: Value = serde_json::from_slice(&channel(&got, 3)).expect("a Status");
        assert_eq!(status["status"], "Failure", "{status}");
        assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
        assert_eq!(
            status["details"]["causes"][0],
            serde_json::json!({"reason": "ExitCode", "message": "7"}),
            "{status}"
        );

        // v5 stdin, ended by the close channel.
        let mut ws = websocket(
            &s,
            "/api/v1/namespaces/default/pods/ws/exec?command=cat&stdin=true&stdout=true",
            "v5.channel.k8s.io",
        )
        .await;
        ws.send(Message::Binary(b"\x00through stdin".to_vec().into()))
            .await
            .unwrap();
        ws.send(Message::Binary(vec![255, 0].into())).await.unwrap();
        let got = messages(&mut ws).await;
        assert_eq!(channel(&got, 1), b"through stdin", "{got:?}");
        let status: Value = serde_json::from_slice(&channel(&got, 3)).expect("a Status");
        assert_eq!(status["status"], "Success", "{status}");

        // v4 port-forward (kube-rs): each channel opens with the port.
        let mut ws = websocket(
            &s,
            "/api/v1/namespaces/default/pods/ws/portforward?ports=8080",
            "v4.channel.k8s.io",
        )
        .await;
        let mut request = vec![0u8];
        request.extend_from_slice(b"GET /index.html HTTP/1.0\r\n\r\n");
        ws.send(Message::Binary(request.into())).await.unwrap();
        let got = messages(&mut ws).await;
        let firsts: Vec<&(u8, Vec<u8>)> = got.iter().take(2).collect();
        assert_eq!(
            firsts,
            [&(0, 8080u16.to_le_bytes().to_vec()), &(1, 8080u16.to_le_bytes().to_vec())],
            "{got:?}"
        );
        let response = String::from_utf8_lossy(&channel(&got[2..], 0)).to_string();
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        assert!(response.ends_with("raw-client\n"), "{response}");
        assert!(channel(&got[2..], 1).is_empty(), "{got:?}");

        // Nothing listening: the error channel says so.
        let mut ws = websocket(
            &s,
            "/api/v1/namespaces/default/pods/ws/portforward?ports=9999",
            "v4.channel.k8s.io",
        )
        .await;
        let got = messages(&mut ws).await;
        let error = String::from_utf8_lossy(&channel(&got[2..], 1)).to_string();
        assert!(error.contains("error forwarding port 9999 to pod"), "{got:?}");
    });
}
