//! End to end: `kubectl exec`, `attach` and `port-forward` (kubectl 1.32:
//! WebSocket v5 for exec/attach, SPDY tunnelled through a WebSocket for
//! port-forward) against pods of the process runtime, and a raw WebSocket
//! client of the channel protocols (what kube-rs speaks).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Server;
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
    let kubectl = common::kubectl_binary();
    Command::new("script")
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
    assert_eq!(cmdline, "sleep\03600\0");
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
