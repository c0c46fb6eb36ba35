//! Endpoint propagation: how long after the API says a pod turned Ready
//! does the node's service proxy send it requests? A pod's readiness is
//! flipped by its probe (a flag file); a `kubectl get -w` stream timestamps
//! the Ready=True event as the API publishes it, while a client hammers the
//! Service's ClusterIP over one keep-alive connection until the pod
//! answers. Run with `cargo bench -p drover --bench services`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Cluster;

const ROUNDS: usize = 30;

fn get(reader: &mut BufReader<TcpStream>, writer: &mut TcpStream) -> String {
    writer
        .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        .unwrap();
    let mut length = 0;
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    String::from_utf8_lossy(&body).trim().to_string()
}

fn main() {
    let cluster = Cluster::start_with(
        "svcprop",
        "10.198.0.0/24",
        20,
        &["--service-cidr=10.197.0.0/24", "--cluster-dns=10.197.0.10"],
    );
    let binary = env!("CARGO_BIN_EXE_drover");
    cluster.kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: anchor, labels: {{app: prop}}}}
spec:
  containers:
  - {{name: echo, image: unused, command: ["{binary}", echo-server, --http, "8080"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: flipper, labels: {{app: prop}}}}
spec:
  containers:
  - name: echo
    image: unused
    command: ["{binary}", echo-server, --http, "8080"]
    volumeMounts: [{{name: flags, mountPath: /flags}}]
    readinessProbe:
      exec: {{command: [sh, -c, 'test -e /flags/on']}}
      periodSeconds: 1
  volumes: [{{name: flags, emptyDir: {{}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: prop}}
spec:
  selector: {{app: prop}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"#
        )),
    );
    cluster.wait("anchor running", |c| {
        c.kubectl(&["get", "pod", "anchor"], None)
            .contains("Running")
    });
    let ip = cluster
        .kubectl(
            &["get", "svc", "prop", "-o", "jsonpath={.spec.clusterIP}"],
            None,
        )
        .trim()
        .to_string();
    let front = format!("{ip}:80");
    cluster.wait("the ClusterIP answers", |_| {
        TcpStream::connect(&front).is_ok()
    });
    let stream = TcpStream::connect(&front).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);

    // Ready=True events as the API publishes them.
    let ready_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let mut watch = cluster
        .kubectl_command(&[
            "get",
            "pod",
            "flipper",
            "-w",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        let ready_at = ready_at.clone();
        let out = watch.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut last = String::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if line == "True" && last != "True" {
                    ready_at.lock().unwrap().push(Instant::now());
                }
                last = line;
            }
        });
    }

    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        cluster.kubectl(&["exec", "flipper", "--", "touch", "/flags/on"], None);
        let started = Instant::now();
        let answered = loop {
            if get(&mut reader, &mut writer) == "flipper" {
                break Instant::now();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "round {round}: flipper never answered"
            );
        };
        // The watch line may arrive after the proxy already routes.
        std::thread::sleep(Duration::from_millis(300));
        let event = *ready_at.lock().unwrap().last().expect("a Ready=True event");
        let propagation = if answered >= event {
            answered - event
        } else {
            Duration::ZERO
        };
        samples.push(propagation);
        cluster.kubectl(&["exec", "flipper", "--", "rm", "/flags/on"], None);
        // Out of rotation again before the next round.
        let left = Instant::now();
        let mut clear = 0;
        while clear < 200 {
            if get(&mut reader, &mut writer) == "flipper" {
                clear = 0;
            } else {
                clear += 1;
            }
            assert!(left.elapsed() < Duration::from_secs(60));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = watch.kill();
    let _ = watch.wait();
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "endpoint propagation (API Ready=True event -> the proxy routes to the pod), {ROUNDS} rounds: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
}
