//! The one drover binary: `drover server` runs the control plane (API server
//! on the embedded store or etcd); later subcommands add the node agent,
//! the demo and drover's own CLI.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod echo;
mod image;

// glibc malloc spent half the simulation's CPU in its own bookkeeping
// (`malloc_consolidate`, `unlink_chunk`) on the API machinery's many small
// short-lived JSON allocations; mimalloc's per-size free lists do not.
// `--features system-allocator` leaves the allocator to glibc, so that heap
// profilers that hook malloc (heaptrack) see every allocation.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run a server: the Kubernetes API on the embedded store (or etcd), the
    /// controllers and scheduler, and a node agent (this machine as a node).
    Server(Box<ServerArgs>),
    /// Run a node agent that joins a server: this machine becomes a node.
    Agent(Box<AgentArgs>),
    /// Manage join tokens (for `drover agent --token`).
    Token(TokenArgs),
    /// Print the Kubernetes version this drover serves.
    Version,
    /// Run the deterministic simulation of the control plane: the real API
    /// server, controllers and scheduler with fake nodes on a virtual clock.
    Sim(SimArgs),
    /// Import, list and remove images in this node's image store.
    Image(image::ImageArgs),
    /// A tiny HTTP/h2c/UDP backend that answers with its name (the demo
    /// app and the Service tests run it in pods).
    #[command(hide = true)]
    EchoServer(echo::EchoArgs),
}

#[derive(clap::Args)]
struct SimArgs {
    /// Fake nodes to register.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Pods to run (as Deployments of --pods-per-deployment replicas).
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Seed of the run; the same seed replays the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run this many consecutive seeds, starting at --seed.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    #[arg(long, default_value_t = 100)]
    pods_per_deployment: usize,
    /// Inject faults: write conflicts and errors, dropped watches, crashing
    /// pods and lost nodes.
    #[arg(long)]
    faults: bool,
    /// Print the step-by-step log of each run.
    #[arg(long, short)]
    verbose: bool,
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
    /// Run without the controllers and the scheduler (API server only).
    #[arg(long)]
    disable_controllers: bool,
    /// The tolerationSeconds of the `node.kubernetes.io/not-ready:NoExecute`
    /// toleration added to every pod that does not already tolerate it.
    #[arg(long, default_value_t = apiserver::DEFAULT_TOLERATION_SECONDS)]
    default_not_ready_toleration_seconds: i64,
    /// The tolerationSeconds of the `node.kubernetes.io/unreachable:NoExecute`
    /// toleration added to every pod that does not already tolerate it.
    #[arg(long, default_value_t = apiserver::DEFAULT_TOLERATION_SECONDS)]
    default_unreachable_toleration_seconds: i64,
    /// Extra names or addresses for the serving certificate.
    #[arg(long = "tls-san", value_delimiter = ',')]
    tls_san: Vec<String>,
    /// The range Service ClusterIPs come from (IPv4).
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: String,
    /// The range NodePorts come from, FIRST-LAST.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    #[command(flatten)]
    node: NodeArgs,
    /// How long a node may go without renewing its Lease or posting status
    /// before it is marked Unknown and tainted unreachable (e.g. 50s, 2m).
    #[arg(long, default_value = "50s", value_parser = parse_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// The same for a node that never posted a Ready condition.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    node_startup_grace_period: std::time::Duration,
}

/// What makes this machine a node (`drover server` and `drover agent`).
#[derive(clap::Args)]
struct NodeArgs {
    /// The name of this node [default: the host name].
    #[arg(long)]
    node_name: Option<String>,
    /// The node's address (InternalIP; pods of the process runtime share
    /// the host network for now, so also their pod IP).
    #[arg(long, default_value = "127.0.0.1")]
    node_ip: String,
    /// This node's pod CIDR: pods get addresses from it on the bridge drover0.
    #[arg(long, default_value = "10.88.0.0/16")]
    pod_cidr: String,
    /// The node bridge pods attach to (one pod CIDR per bridge).
    #[arg(long, default_value = "drover0")]
    pod_bridge: String,
    /// Pod networks (a network namespace with its veth and address) kept
    /// made ahead of need: a starting pod takes one instead of making its
    /// own (≈5 ms of its start). 0 turns this off.
    #[arg(long, default_value_t = 4)]
    pod_network_spares: usize,
    /// The cgroup (in every hierarchy) under which pods get their cgroups.
    #[arg(long, default_value = "drover")]
    cgroup_parent: String,
    /// Turn on the kernel's `favordynmods` for cgroups (a named
    /// controller-less cgroup v1 hierarchy mounted at
    /// /run/drover/cgroup-favordynmods, or the cgroup2 root remounted with
    /// it): moving a pod's first process into its cgroup then takes ≈0.25 ms
    /// instead of waiting out an RCU grace period (5-20 ms), at the cost of
    /// slightly dearer forks and exits on the whole machine.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    cgroup_favordynmods: bool,
    /// The most pods this node runs (the kubelet's --max-pods).
    #[arg(long, default_value_t = 110)]
    max_pods: i64,
    /// The most processes each pod may run, all containers together (the
    /// kubelet's --pod-max-pids; -1: no limit).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pod_max_pids: i64,
    /// Whether privileged containers may run on this node (the kubelet's
    /// `--allow-privileged`); pods asking for one are rejected (Forbidden).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    allow_privileged: bool,
    /// The size at which a container's log file is rotated (the kubelet's
    /// --container-log-max-size; a quantity such as 10Mi or 500Ki).
    #[arg(long, default_value = "10Mi")]
    container_log_max_size: String,
    /// The most log files kept per container, the current one included
    /// (the kubelet's --container-log-max-files; at least 2).
    #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
    container_log_max_files: i64,
    /// The OCI runtime binary for RuntimeClass `oci` [default: runc on PATH].
    #[arg(long)]
    oci_runtime_binary: Option<std::path::PathBuf>,
    /// Tests only: the OCI runtime takes images from this directory
    /// (`<dir>/NAME` is the rootfs of any image named NAME) instead of the
    /// image store.
    #[arg(long, hide = true)]
    oci_image_dir_for_tests: Option<std::path::PathBuf>,
    /// The runtime of pods without `runtimeClassName`.
    #[arg(long, default_value = "process")]
    default_runtime: String,
    /// The cluster DNS address, comma-separated if several (the kubelet's
    /// --cluster-dns): pods with dnsPolicy ClusterFirst use it, the node
    /// serves DNS on it, and on a server it is the `kube-system/kube-dns`
    /// Service's ClusterIP. Default: on a server the 10th address of
    /// --service-cidr (10.43.0.10); on an agent the kube-dns Service's
    /// ClusterIP. `--cluster-dns=` (empty): pods get the host's resolver
    /// settings.
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Option<Vec<String>>,
    /// The cluster's DNS domain (`NAME.NAMESPACE.svc.DOMAIN`; the kubelet's
    /// --cluster-domain).
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Do not run the node's service proxy and DNS server (k3s's
    /// --disable-kube-proxy): ClusterIPs, NodePorts and cluster DNS do not
    /// work on this node.
    #[arg(long)]
    disable_service_proxy: bool,
}

#[derive(clap::Args)]
struct AgentArgs {
    /// The server to join, e.g. https://10.0.0.1:6443.
    #[arg(long, env = "DROVER_URL")]
    server: String,
    /// A join token from `drover token create` on the server.
    #[arg(long, env = "DROVER_TOKEN", hide_env_values = true)]
    token: String,
    /// Where the agent keeps its state (pods, logs, CNI leases).
    #[arg(long, default_value = "/var/lib/drover-agent", env = "DROVER_DATA_DIR")]
    data_dir: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(clap::Args)]
struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    /// The admin kubeconfig of the server [default: /var/lib/drover/kubeconfig.yaml].
    #[arg(long, global = true, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a join token for `drover agent --token`.
    Create {
        /// How long the token is valid (e.g. 24h, 30m; 0 = forever).
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: std::time::Duration,
        #[arg(long, default_value = "made by drover token create")]
        description: String,
    },
    /// List join tokens.
    List,
    /// Delete a join token by its ID (the 6 characters before the dot).
    Delete { id: String },
}

/// A duration as `kube-controller-manager` flags take them: `50s`, `2m`,
/// `1h30m`, `500ms`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let parsed: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("invalid duration {text:?} (use e.g. 50s, 2m, 500ms): {e}"))?;
    std::time::Duration::try_from(parsed).map_err(|_| format!("duration {text:?} is negative"))
}

fn main() -> Result<()> {
    // The container shim runs before anything else: it forks into new
    // namespaces and must stay single-threaded.
    let mut raw = std::env::args_os().skip(1);
    match raw.next().as_deref().and_then(|a| a.to_str()) {
        Some("internal-shim") => {
            let config = raw.next().map(std::path::PathBuf::from).unwrap_or_default();
            std::process::exit(runtime_linux::shim::shim_main(&config));
        }
        // Forks shims on the agent's request (see runtime_linux::zygote).
        Some("internal-shim-zygote") => std::process::exit(runtime_linux::zygote::zygote_main()),
        _ => {}
    }
    let cli = Cli::parse();
    // The simulation injects faults on purpose: only warnings by default.
    let default_level = if matches!(
        cli.command,
        Command::Sim(_) | Command::Image(_) | Command::EchoServer(_)
    ) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG")
                .unwrap_or_else(|_| default_level.into()),
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
        Command::Sim(args) => simulate(args),
        Command::Image(args) => std::process::exit(image::run(args)),
        Command::Server(args) => tokio_runtime()?.block_on(server(*args)),
        Command::Agent(args) => tokio_runtime()?.block_on(agent_main(*args)),
        Command::Token(args) => tokio_runtime()?.block_on(token(args)),
        Command::EchoServer(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(echo::run(args)),
    }
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `drover agent`: join the server with the token, then run the node agent
/// against it over HTTPS, reachable back through the tunnel.
async fn agent_main(mut args: AgentArgs) -> Result<()> {
    // Flags first: a bad one leaves nothing made.
    log_rotation(&args.node)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let name = args.node.node_name.clone().unwrap_or_else(host_name);
    let joined = agent::remote::join(
        &args.server,
        &args.token,
        &name,
        &args.data_dir.join("node-credential"),
    )
    .await
    .with_context(|| format!("joining {}", args.server))?;
    if args.node.cluster_dns.is_none() {
        // The cluster's DNS address is the kube-dns Service's ClusterIP.
        let kube_dns = joined
            .client
            .get(
                client::Gvr::new("", "v1", "services"),
                Some("kube-system"),
                "kube-dns",
            )
            .await;
        args.node.cluster_dns = Some(match kube_dns {
            Ok(svc) => svc
                .pointer("/spec/clusterIP")
                .and_then(|ip| ip.as_str())
                .map(|ip| vec![ip.to_string()])
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!(
                    "no kube-system/kube-dns Service ({e}): pods get the host's resolver settings"
                );
                Vec::new()
            }
        });
    }
    let (agent, network) = build_agent(joined.client.clone(), &args.data_dir, &args.node)?;
    tokio::spawn(agent::remote::run_tunnel(
        joined.endpoint.clone(),
        joined.token.clone(),
        name.clone(),
        agent.connection(),
    ));
    tracing::info!("node {name} joined {}", args.server);
    let running = tokio::spawn(agent.run());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        r = running => { r?; }
    }
    tracing::info!("shutting down (pods keep running)");
    remove_spare_networks(network).await;
    Ok(())
}

/// `drover token create|list|delete`, against the server of the admin
/// kubeconfig.
async fn token(args: TokenArgs) -> Result<()> {
    use apiserver::tokens::{BootstrapToken, JoinToken, SECRET_NAMESPACE, SECRET_TYPE};
    let path = args
        .kubeconfig
        .clone()
        .unwrap_or_else(|| PathBuf::from("/var/lib/drover/kubeconfig.yaml"));
    let (client, ca_pem) = admin_client(&path)?;
    let secrets = client::Gvr::new("", "v1", "secrets");
    match args.command {
        TokenCommand::Create { ttl, description } => {
            let token = BootstrapToken::generate();
            let expiration = (!ttl.is_zero()).then(|| {
                let at = jiff::Timestamp::now()
                    + jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX);
                at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
            });
            client
                .create(
                    secrets,
                    Some(SECRET_NAMESPACE),
                    &token.to_secret(expiration.as_deref(), &description),
                )
                .await
                .context("creating the token's Secret")?;
            println!("{}", JoinToken::new(&ca_pem, token));
        }
        TokenCommand::List => {
            let list = client
                .list(secrets, Some(SECRET_NAMESPACE), None, None)
                .await
                .context("listing tokens")?;
            println!("{:<8} {:<22} {:<16} DESCRIPTION", "ID", "EXPIRES", "NODE");
            for secret in &list.items {
                if secret["type"] != SECRET_TYPE {
                    continue;
                }
                let field = |k: &str| -> String {
                    use base64::Engine;
                    secret["data"][k]
                        .as_str()
                        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
                        .map(|b: Vec<u8>| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                };
                let expires = field("expiration");
                let node = secret
                    .pointer("/metadata/labels/drover.dev~1node")
                    .and_then(|v| v.as_str())
                    .unwrap_or("<join>");
                println!(
                    "{:<8} {:<22} {:<16} {}",
                    field("token-id"),
                    if expires.is_empty() {
                        "never".into()
                    } else {
                        expires
                    },
                    node,
                    field("description")
                );
            }
        }
        TokenCommand::Delete { id } => {
            let name = format!("bootstrap-token-{id}");
            client
                .delete(
                    secrets,
                    Some(SECRET_NAMESPACE),
                    &name,
                    &client::DeleteOptions::default(),
                )
                .await
                .with_context(|| format!("deleting token {id}"))?;
            println!("token {id} deleted");
        }
    }
    Ok(())
}

/// A client with the admin credentials of kubeconfig `path` (as `drover
/// server` writes it), and the cluster's CA.
fn admin_client(path: &std::path::Path) -> Result<(client::Client, String)> {
    use base64::Engine;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config: serde_yaml::Value =
        serde_yaml::from_str(&text).with_context(|| format!("{}: not YAML", path.display()))?;
    let current = config["current-context"].as_str().unwrap_or_default();
    let find = |list: &str, name: &str| -> Option<serde_yaml::Value> {
        config[list]
            .as_sequence()?
            .iter()
            .find(|e| e["name"].as_str() == Some(name))
            .cloned()
    };
    let context = find("contexts", current)
        .with_context(|| format!("{}: no context {current:?}", path.display()))?;
    let cluster_name = context["context"]["cluster"].as_str().unwrap_or_default();
    let user_name = context["context"]["user"].as_str().unwrap_or_default();
    let cluster = find("clusters", cluster_name)
        .with_context(|| format!("{}: no cluster {cluster_name:?}", path.display()))?;
    let user = find("users", user_name)
        .with_context(|| format!("{}: no user {user_name:?}", path.display()))?;
    let url = cluster["cluster"]["server"].as_str().with_context(|| {
        format!(
            "{}: clusters[{cluster_name}].cluster.server missing",
            path.display()
        )
    })?;
    let ca = cluster["cluster"]["certificate-authority-data"]
        .as_str()
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .with_context(|| {
            format!(
                "{}: clusters[{cluster_name}].cluster.certificate-authority-data missing or not base64",
                path.display()
            )
        })?;
    let bearer = user["user"]["token"]
        .as_str()
        .with_context(|| format!("{}: users[{user_name}].user.token missing", path.display()))?;
    let endpoint = client::https::Endpoint::new(url, &ca)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let client = client::Client::new(
        Arc::new(client::https::Https::new(endpoint, bearer)),
        "drover",
    );
    Ok((client, ca))
}

fn simulate(args: SimArgs) -> Result<()> {
    let mut failed = Vec::new();
    for seed in args.seed..args.seed + args.seeds.max(1) {
        let mut config = sim::SimConfig::new(args.nodes, args.pods, seed);
        config.pods_per_deployment = args.pods_per_deployment;
        if args.faults {
            config.faults = sim::Faults {
                write_conflict: 0.02,
                write_error: 0.01,
                watch_drop: 0.01,
                crash_rate: 0.02,
                lost_nodes: (args.nodes / 10).max(1),
            };
        }
        let report = sim::run(&config);
        if args.verbose || args.seeds == 1 {
            for line in &report.log {
                println!("{line}");
            }
        }
        println!(
            "seed {seed}: scheduled {} pods on {} nodes in {:.3} s: {:.0} pods/s; {} steps checked, \
             {:.0} s virtual in {:.2} s; digest {:016x}; {}",
            report.scheduled,
            args.nodes,
            report.schedule_wall.as_secs_f64(),
            report.pods_per_second(),
            report.steps,
            report.total_virtual.as_secs_f64(),
            report.total_wall.as_secs_f64(),
            report.digest,
            if report.ok() { "ok".to_string() } else { format!("{} VIOLATIONS", report.violations.len()) }
        );
        for v in &report.violations {
            println!("  violation at revision {}: {}", v.revision, v.message);
        }
        if !report.ok() {
            failed.push(seed);
        }
    }
    if !failed.is_empty() {
        let faults = if args.faults { " --faults" } else { "" };
        bail!(
            "invariants violated with seeds {failed:?}; replay one with: drover sim --nodes {} --pods {} --pods-per-deployment {}{faults} --seed {}",
            args.nodes, args.pods, args.pods_per_deployment, failed[0]
        );
    }
    Ok(())
}

async fn server(mut args: ServerArgs) -> Result<()> {
    let started = Instant::now();
    // Flags first: a bad one leaves nothing made.
    log_rotation(&args.node)?;
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
    let cluster_dns = match args.node.cluster_dns.as_deref().unwrap_or_default() {
        [] => None,
        [first, ..] => Some(first.parse::<std::net::Ipv4Addr>().map_err(|e| {
            anyhow::anyhow!("--cluster-dns {first:?}: {e} (the kube-dns ClusterIP is IPv4)")
        })?),
    };
    let mut services = apiserver::services::ServiceConfig::new(
        &args.service_cidr,
        &args.service_node_port_range,
        cluster_dns,
        &args.node.cluster_domain,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Pods reach this server at the `kubernetes` Service's ClusterIP (and
    // by its names, which `load_or_create` adds), so the certificate names
    // that address too.
    let mut sans: Vec<String> = vec![
        addr.ip().to_string(),
        services.kubernetes_service_ip().to_string(),
    ];
    sans.extend(args.tls_san.iter().cloned());
    let pki = apiserver::pki::Pki::load_or_create(&args.data_dir.join("tls"), &sans)?;
    let tls = pki.rustls_config()?;

    // In-process components (controllers, scheduler) use their own token.
    let internal_token = apiserver::pki::random_token();
    let server = apiserver::ApiServer::with_admission(
        store,
        apiserver::Config::new(vec![pki.admin_token.clone(), internal_token.clone()]),
        apiserver::AdmissionConfig {
            default_not_ready_toleration_seconds: args.default_not_ready_toleration_seconds,
            default_unreachable_toleration_seconds: args.default_unreachable_toleration_seconds,
        },
    );
    server.set_ca_certificate(&pki.ca_cert_pem);
    server.set_token_signer(
        apiserver::serviceaccounts::TokenSigner::new(
            &pki.service_account_key_pem,
            &pki.service_account_public_pem,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    // The local agent's pods use the kube-dns address the server settled on.
    if args.node.cluster_dns.is_none() {
        args.node.cluster_dns = Some(vec![services.cluster_dns.to_string()]);
    }
    // The `kubernetes` Service's endpoint: where this server listens (the
    // node's address when it listens on all of them).
    let advertise = if addr.ip().is_unspecified() {
        args.node.node_ip.parse().unwrap_or(addr.ip())
    } else {
        addr.ip()
    };
    services.advertise = Some((advertise, addr.port()));
    server.set_service_config(services);
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
    if !args.disable_controllers {
        let wiring = controllers::wiring::Wiring {
            node_lifecycle: controllers::nodelifecycle::NodeLifecycleConfig {
                node_monitor_grace_period: args.node_monitor_grace_period,
                node_startup_grace_period: args.node_startup_grace_period,
            },
            local_path_root: std::fs::canonicalize(&args.data_dir)
                .unwrap_or_else(|_| args.data_dir.clone())
                .join("storage"),
            ..Default::default()
        };
        let identity = server_identity(&args.data_dir)?;
        start_control_loops(server.clone(), &internal_token, &identity, wiring);
    }
    let network = if args.disable_agent {
        None
    } else {
        start_agent(&server, &internal_token, &args)?
    };
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
    remove_spare_networks(network).await;
    Ok(())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "drover".into())
}

/// Runs the node agent in this process: this machine becomes a node.
/// Returns its pod network, whose spares go at a clean shutdown.
fn start_agent(
    server: &Arc<apiserver::ApiServer>,
    token: &str,
    args: &ServerArgs,
) -> Result<Option<runtime_linux::network::PodNetwork>> {
    let name = args.node.node_name.clone().unwrap_or_else(host_name);
    let client = client::Client::in_process(server.clone(), token, "kubelet");
    let (agent, network) = build_agent(client, &args.data_dir, &args.node)?;
    server.connect_node(&name, agent.connection());
    tokio::spawn(agent.run());
    Ok(network)
}

/// Removes the node's spare pod networks at a clean shutdown (pods' own
/// stay, as the pods do).
async fn remove_spare_networks(network: Option<runtime_linux::network::PodNetwork>) {
    if let Some(network) = network {
        network.remove_spares().await;
    }
}

/// The node agent of this machine, talking to the API through `client`,
/// with its state under `DATA_DIR/agent`.
fn build_agent(
    client: client::Client,
    data_dir: &std::path::Path,
    args: &NodeArgs,
) -> Result<(
    Arc<agent::agent::Agent>,
    Option<runtime_linux::network::PodNetwork>,
)> {
    use runtime_linux::cgroups::Cgroups;
    use runtime_linux::process::{ProcessRuntime, ShimCommand};
    let cgroups =
        Cgroups::detect().context("the node agent needs cgroups (or pass --disable-agent)")?;
    if args.cgroup_favordynmods {
        match runtime_linux::cgroups::favor_dynamic_modifications() {
            Ok(what) => tracing::info!("cgroups: favordynmods: {what}"),
            Err(e) => tracing::warn!(
                "cgroups: could not turn on favordynmods (pod starts wait for RCU grace periods): {e}"
            ),
        }
    }
    let name = args.node_name.clone().unwrap_or_else(host_name);
    let root = data_dir.join("agent");
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let program =
        std::env::current_exe().context("locating the drover binary for the container shim")?;
    let zygote = Arc::new(runtime_linux::zygote::Zygote::new(
        program.clone(),
        vec!["internal-shim-zygote".into()],
    ));
    if let Err(e) = zygote.prestart() {
        tracing::warn!("shim zygote: {e}; shims are started at the first pod");
    }
    let shim = ShimCommand {
        zygote: Some(zygote),
        program,
        args: vec!["internal-shim".into()],
        log_rotation: log_rotation(args)?,
    };
    let network = Some(
        runtime_linux::network::PodNetwork::new(
            &args.pod_cidr,
            root.join("cni"),
            args.pod_bridge.clone(),
        )
        .map_err(|e| anyhow::anyhow!("--pod-cidr/--pod-bridge: {e}"))?
        .with_spares(args.pod_network_spares),
    );
    if let Some(network) = &network {
        network.start_spares();
    }
    let pod_network = network.clone();
    let has_network = network.is_some();
    let process = ProcessRuntime::new(
        root.clone(),
        cgroups.clone(),
        args.cgroup_parent.clone().into(),
        shim.clone(),
        args.node_ip.clone(),
        network.clone(),
    );
    process.set_pod_pids_limit(args.pod_max_pids);
    let mut runtimes: Vec<Arc<dyn agent::runtime::ContainerRuntime>> = vec![process];
    match runtime_linux::oci::detect_runc(args.oci_runtime_binary.as_deref()) {
        Some(runc) => {
            let images: Arc<dyn images::ImageService> = match &args.oci_image_dir_for_tests {
                Some(dir) => Arc::new(runtime_linux::oci::DirectoryImages { dir: dir.clone() }),
                None => {
                    let dir = images::store_dir(data_dir);
                    let store = images::ImageStore::open(&dir)
                        .with_context(|| format!("opening the image store {}", dir.display()))?;
                    // A pull or import cut short by a crash leaves a
                    // temporary directory and unreferenced blobs behind.
                    if let Err(e) = store.collect_garbage() {
                        tracing::warn!("image store {}: {e}", dir.display());
                    }
                    Arc::new(store)
                }
            };
            let oci = runtime_linux::oci::OciRuntime::new(
                root.join("oci"),
                runc,
                cgroups.clone(),
                args.cgroup_parent.clone().into(),
                shim,
                images,
                args.node_ip.clone(),
                network,
            );
            oci.set_pod_pids_limit(args.pod_max_pids);
            runtimes.push(oci);
        }
        None => tracing::warn!("runc not found on PATH: RuntimeClass oci is not available"),
    }
    let mut node = agent::node::NodeConfig::from_machine(
        &name,
        &args.node_ip,
        data_dir,
        apiserver::KUBERNETES_GIT_VERSION,
    );
    node.max_pods = args.max_pods;
    node.allow_privileged = args.allow_privileged;
    node.cluster_dns = args
        .cluster_dns
        .iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|e| anyhow::anyhow!("--cluster-dns {s:?}: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    node.cluster_domain = args.cluster_domain.clone();
    let names: Vec<String> = runtimes.iter().map(|r| r.name().to_string()).collect();
    let services = if args.disable_service_proxy {
        None
    } else if !has_network {
        tracing::warn!("no pod network: the service proxy and cluster DNS do not run on this node");
        None
    } else {
        let host_resolv_conf = std::fs::read_to_string(&node.host_resolv_conf).unwrap_or_default();
        Some(agent::services::NodeServices::start(
            client.clone(),
            agent::services::ServicesConfig {
                node_name: name.clone(),
                cluster_dns: node.cluster_dns.clone(),
                cluster_domain: node.cluster_domain.clone(),
                node_port_addresses: agent::services::all_node_addresses(),
                upstream_dns: dns::upstream_servers(&host_resolv_conf, &node.cluster_dns),
            },
            Arc::new(runtime_linux::network::ServiceAddresses::new(
                &runtime_linux::network::ServiceAddresses::interface_for(&args.pod_bridge),
            )),
        ))
    };
    let agent = agent::agent::Agent::new(client, node, runtimes, &args.default_runtime);
    if let Some(services) = services {
        agent.set_services(services);
    }
    tracing::info!(
        "node agent for node {name}: runtimes {}, cgroup v{}",
        names.join(", "),
        cgroups.version()
    );
    Ok((agent, pod_network))
}

/// `--container-log-max-size` and `--container-log-max-files`, checked.
fn log_rotation(args: &NodeArgs) -> Result<runtime_linux::shim::LogRotation> {
    let size = &args.container_log_max_size;
    let bytes = scheduler::quantity::parse_value(size)
        .map_err(|e| anyhow::anyhow!("--container-log-max-size {size:?}: {e}"))?;
    runtime_linux::shim::LogRotation::new(bytes, args.container_log_max_files)
        .map_err(|e| anyhow::anyhow!(e))
}

/// This server's leader-election identity, `HOST_ID` with an id kept in the
/// data dir: a restarted server is the Lease's holder still and leads again
/// at once, instead of waiting out the lease its previous run held (15 s
/// without a scheduler); servers sharing one etcd have data dirs of their
/// own, so their identities differ.
fn server_identity(data_dir: &std::path::Path) -> Result<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "drover".into());
    let path = data_dir.join("server-id");
    let id = match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
        _ => {
            let id = apiserver::pki::random_token()
                .get(..8)
                .unwrap_or("0")
                .to_string();
            std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
            id
        }
    };
    Ok(format!("{host}_{id}"))
}

/// Runs the controllers and the scheduler while this server holds the
/// `kube-system/drover-controller-manager` Lease (several servers on one
/// etcd: one acts, the others stand by).
fn start_control_loops(
    server: Arc<apiserver::ApiServer>,
    token: &str,
    identity: &str,
    wiring: controllers::wiring::Wiring,
) {
    use controllers::runtime::leader::{run_while_leading, LeaderConfig, LeaderElector};
    use controllers::runtime::{ControllerManager, Options, SystemClock};
    let client = client::Client::in_process(server, token, "kube-controller-manager");
    let clock: Arc<dyn controllers::runtime::Clock> = Arc::new(SystemClock);
    let (elector, leading) = LeaderElector::new(
        client.clone(),
        clock.clone(),
        LeaderConfig::new("drover-controller-manager", identity),
    );
    tokio::spawn(run_while_leading(elector, leading, move || {
        // The HPA reads pod usage from metrics.k8s.io, as in Kubernetes.
        let metrics = controllers::wiring::ApiMetrics::new();
        let wiring = controllers::wiring::Wiring {
            metrics: metrics.clone(),
            ..wiring.clone()
        };
        let mut all = controllers::wiring::all_with(&wiring);
        all.push(Arc::new(controllers::scheduling::SchedulerController::new()));
        let manager =
            ControllerManager::new(client.clone(), clock.clone(), all, Options::default());
        let mut tasks = manager.spawn();
        tasks.spawn(metrics.run(client.clone()));
        tasks
    }));
}
