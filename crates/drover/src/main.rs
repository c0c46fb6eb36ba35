//! The one drover binary: `drover server` runs the control plane (API server
//! on the embedded store or etcd); later subcommands add the node agent,
//! the demo and drover's own CLI.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "drover",
    version,
    about = "A Kubernetes-compatible orchestrator in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: a Kubernetes API server on the embedded store (or etcd).
    Server(ServerArgs),
    /// Print the Kubernetes version this drover serves.
    Version,
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Where state, certificates and the kubeconfig live.
    #[arg(long, default_value = "/var/lib/drover", env = "DROVER_DATA_DIR")]
    data_dir: PathBuf,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port to serve HTTPS on (0 picks a free one; the kubeconfig names it).
    #[arg(long, default_value_t = 6443)]
    port: u16,
    /// Where to write the admin kubeconfig [default: DATA_DIR/kubeconfig.yaml].
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// Keep state in etcd at this endpoint (e.g. http://127.0.0.1:2379)
    /// instead of the embedded store. Repeat or comma-separate for several.
    #[arg(long, value_delimiter = ',')]
    datastore_endpoint: Vec<String>,
    /// Key prefix in etcd, so several clusters can share one etcd.
    #[arg(long, default_value = "/drover")]
    datastore_prefix: String,
    /// Run only the control plane, without the node agent.
    #[arg(long)]
    disable_agent: bool,
    /// Extra names or addresses for the serving certificate.
    #[arg(long = "tls-san", value_delimiter = ',')]
    tls_san: Vec<String>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Version => {
            println!(
                "drover {} (Kubernetes {})",
                env!("CARGO_PKG_VERSION"),
                apiserver::KUBERNETES_GIT_VERSION
            );
            Ok(())
        }
        Command::Server(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(server(args))
        }
    }
}

async fn server(args: ServerArgs) -> Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let store: Arc<dyn store::Store> = if args.datastore_endpoint.is_empty() {
        let dir = args.data_dir.join("db");
        store::EmbeddedStore::open(&dir, store::EmbeddedOptions::default())
            .with_context(|| format!("opening the embedded store in {}", dir.display()))?
    } else {
        for e in &args.datastore_endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                bail!("--datastore-endpoint {e}: must be an http:// or https:// URL");
            }
        }
        store::EtcdStore::connect(&args.datastore_endpoint, &args.datastore_prefix)
            .await
            .with_context(|| {
                format!(
                    "connecting to etcd at {}",
                    args.datastore_endpoint.join(",")
                )
            })?
    };

    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.bind, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.bind, args.port))?;
    let addr = listener.local_addr()?;
    let mut sans: Vec<String> = vec![addr.ip().to_string()];
    sans.extend(args.tls_san.iter().cloned());
    let pki = apiserver::pki::Pki::load_or_create(&args.data_dir.join("tls"), &sans)?;
    let tls = pki.rustls_config()?;

    let server =
        apiserver::ApiServer::new(store, apiserver::Config::new(vec![pki.admin_token.clone()]));
    let serving = tokio::spawn(server.clone().serve(listener, tls));
    server
        .start()
        .await
        .map_err(|e| anyhow::anyhow!("bootstrapping the cluster: {e}"))?;

    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let url = format!("https://{}", SocketAddr::new(host.parse()?, addr.port()));
    let kubeconfig = args
        .write_kubeconfig
        .clone()
        .unwrap_or_else(|| args.data_dir.join("kubeconfig.yaml"));
    apiserver::pki::write_kubeconfig(&kubeconfig, &pki.admin_kubeconfig(&url))?;
    if !args.disable_agent {
        tracing::info!(
            "the node agent is not part of this build yet; running the control plane only"
        );
    }
    tracing::info!(
        "drover server ready at {url} in {} ms; kubeconfig: {}",
        started.elapsed().as_millis(),
        kubeconfig.display()
    );
    eprintln!(
        "To use it:  export KUBECONFIG={}  &&  kubectl get namespaces",
        kubeconfig.display()
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        r = serving => { r?; }
    }
    tracing::info!("shutting down");
    Ok(())
}
