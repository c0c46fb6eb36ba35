//! `drover echo-server`: a tiny backend that says who answered — HTTP/1.1
//! and HTTP/2 without TLS (h2c, what gRPC runs on) on one port, UDP echo on
//! another. The demo app and the Service tests run it in pods with the
//! process runtime (no image needed), so balancing, affinity and readiness
//! are visible in the answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

#[derive(clap::Args)]
pub struct EchoArgs {
    /// HTTP/1.1 and h2c port (0 = none).
    #[arg(long, default_value_t = 8080)]
    http: u16,
    /// UDP echo port (0 = none).
    #[arg(long, default_value_t = 0)]
    udp: u16,
    /// Who to say answered (default: the host name, a pod's name).
    #[arg(long)]
    name: Option<String>,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The answer to one request: `NAME\n`; `/status/N` answers with status
/// N, `/delay/MS` after MS milliseconds.
async fn answer(name: String, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let mut status = StatusCode::OK;
    if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
    }
    if let Some(ms) = path.strip_prefix("/delay/") {
        let ms = ms.parse::<u64>().unwrap_or(0).min(60_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(format!("{name}\n"))))
        .expect("a static response is valid")
}

async fn serve_http(port: u16, name: String) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
        .await
        .with_context(|| format!("listening on port {port}"))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let name = name.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |r| {
                let name = name.clone();
                async move { Ok::<_, Infallible>(answer(name, r).await) }
            });
            // HTTP/1.1, or HTTP/2 with prior knowledge (h2c).
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}

async fn serve_udp(port: u16, name: String) -> Result<()> {
    let socket = tokio::net::UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port)))
        .await
        .with_context(|| format!("listening on UDP port {port}"))?;
    let mut buffer = vec![0u8; 65536];
    loop {
        let (n, from) = socket.recv_from(&mut buffer).await?;
        let mut reply = format!("{name} ").into_bytes();
        reply.extend_from_slice(&buffer[..n]);
        let _ = socket.send_to(&reply, from).await;
    }
}

pub async fn run(args: EchoArgs) -> Result<()> {
    let name = args.name.unwrap_or_else(host_name);
    let mut tasks = tokio::task::JoinSet::new();
    if args.http != 0 {
        tasks.spawn(serve_http(args.http, name.clone()));
    }
    if args.udp != 0 {
        tasks.spawn(serve_udp(args.udp, name.clone()));
    }
    // As PID 1 of its pod, a signal without a handler would be ignored.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(done) => done??,
                None => return Ok(()),
            },
            _ = terminate.recv() => return Ok(()),
        }
    }
}
