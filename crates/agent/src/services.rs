//! The node's half of Services: the service proxy ([`proxy`]) and the
//! cluster DNS server ([`dns`]) as the agent runs them. Informers on
//! Services, EndpointSlices and Pods (the controllers' runtime, so watches
//! resume and relist as everywhere else) feed one pure rebuild — the proxy
//! table and the DNS records — on every change; an applier puts the
//! table's ClusterIPs on the node as local addresses, then hands the table
//! to the proxy. kube-proxy's job without iptables: the proxy listens on
//! the ClusterIPs themselves.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use controllers::runtime::{
    AnyObject, Caches, Controller, ControllerManager, ObjectKey, Options, SystemClock,
};
use controllers::{Plan, Resource};
use tokio::sync::watch;

/// The node's service addresses (a narrow side effect: addresses on the
/// node's bridge in production, a set in tests).
pub trait LocalAddresses: Send + Sync {
    /// The host-length addresses this node serves services on now.
    fn list(&self) -> Result<BTreeSet<IpAddr>, String>;
    fn add(&self, addresses: &[IpAddr]) -> Result<(), String>;
    fn remove(&self, addresses: &[IpAddr]) -> Result<(), String>;
}

#[derive(Clone, Debug)]
pub struct ServicesConfig {
    pub node_name: String,
    /// The cluster DNS addresses this node serves DNS on (the kube-dns
    /// Service's ClusterIP); empty = no cluster DNS.
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// Where NodePorts listen.
    pub node_port_addresses: Vec<IpAddr>,
    /// Where names outside the cluster domain are forwarded (the host's
    /// resolvers).
    pub upstream_dns: Vec<SocketAddr>,
}

/// What one rebuild produced.
struct Built {
    table: Arc<proxy::ProxyTable>,
}

/// The agent's service proxy and DNS server; dropping it does not stop
/// them (they run for the life of the process, like the agent).
pub struct NodeServices {
    proxy: Arc<proxy::Proxy>,
    /// Every Service, as the informer last had them once all informers
    /// had synced (`None` before): what the kubelet's Service environment
    /// variables are made from, as the kubelet reads its Service informer.
    services: Arc<RwLock<Option<ServiceSnapshot>>>,
}

/// The Services at one rebuild.
pub type ServiceSnapshot = Arc<Vec<Arc<k8s_openapi::api::core::v1::Service>>>;

impl NodeServices {
    /// Starts informers, the rebuild and the applier; returns at once.
    pub fn start(
        client: client::Client,
        config: ServicesConfig,
        addresses: Arc<dyn LocalAddresses>,
    ) -> Arc<NodeServices> {
        let proxy = proxy::Proxy::new();
        let records = Arc::new(RwLock::new(Arc::new(dns::build_records(
            &[],
            &[],
            &config.cluster_domain,
        ))));
        let (tables, changed) = watch::channel(None::<Arc<proxy::ProxyTable>>);
        let snapshot = Arc::new(RwLock::new(None));
        let rebuild = Arc::new(Rebuild {
            config: config.clone(),
            records: records.clone(),
            tables,
            services: snapshot.clone(),
        });
        let manager = ControllerManager::new(
            client.with_field_manager("drover-proxy"),
            Arc::new(SystemClock),
            vec![rebuild],
            Options {
                workers_per_controller: 1,
                ..Options::default()
            },
        );
        tokio::spawn(async move {
            let mut tasks = manager.spawn();
            while tasks.join_next().await.is_some() {}
        });
        let services = Arc::new(NodeServices {
            proxy: proxy.clone(),
            services: snapshot,
        });
        tokio::spawn(apply_tables(proxy, addresses, config, records, changed));
        services
    }

    /// The Services the informer has (`None` until it has synced).
    pub fn services(&self) -> Option<ServiceSnapshot> {
        self.services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The proxy's metrics, for the node's metrics report.
    pub fn exposition(&self) -> String {
        let mut out = String::new();
        self.proxy.encode_metrics(&mut out);
        out
    }
}

/// The rebuild as a controller with one key: the controllers' runtime
/// de-duplicates a burst of changes into one rebuild, and only runs it once
/// every informer has synced (no table with half the cluster missing).
struct Rebuild {
    config: ServicesConfig,
    records: Arc<RwLock<Arc<dns::Records>>>,
    tables: watch::Sender<Option<Arc<proxy::ProxyTable>>>,
    services: Arc<RwLock<Option<ServiceSnapshot>>>,
}

fn table_key() -> ObjectKey {
    ObjectKey::new("", "table")
}

impl Controller for Rebuild {
    fn name(&self) -> &'static str {
        "service-proxy"
    }
    fn reads(&self) -> &'static [Resource] {
        &[Resource::Services, Resource::EndpointSlices, Resource::Pods]
    }
    fn keys_for(&self, _caches: &Caches, object: &AnyObject) -> Vec<ObjectKey> {
        match object {
            // Pods matter only for the pod-template-hash metric label,
            // read at rebuild time; their readiness reaches the proxy
            // through the EndpointSlices.
            AnyObject::Services(_) | AnyObject::EndpointSlices(_) => vec![table_key()],
            _ => Vec::new(),
        }
    }
    fn all_keys(&self, _caches: &Caches) -> Vec<ObjectKey> {
        vec![table_key()]
    }
    fn reconcile(&self, caches: &Caches, _key: &ObjectKey, _now: jiff::Timestamp) -> Plan {
        let built = build(caches, &self.config);
        let records = dns::build_records(
            &caches
                .services
                .list()
                .iter()
                .map(|s| (**s).clone())
                .collect::<Vec<_>>(),
            &caches
                .endpoint_slices
                .list()
                .iter()
                .map(|s| (**s).clone())
                .collect::<Vec<_>>(),
            &self.config.cluster_domain,
        );
        *self.records.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(records);
        *self.services.write().unwrap_or_else(|p| p.into_inner()) =
            Some(Arc::new(caches.services.list()));
        self.tables.send_replace(Some(built.table));
        Plan::default()
    }
}

/// The proxy table from the caches (pure apart from reading them).
fn build(caches: &Caches, config: &ServicesConfig) -> Built {
    let services: Vec<_> = caches
        .services
        .list()
        .iter()
        .map(|s| (**s).clone())
        .collect();
    let slices: Vec<_> = caches
        .endpoint_slices
        .list()
        .iter()
        .map(|s| (**s).clone())
        .collect();
    let hash = |namespace: &str, name: &str| {
        caches
            .pods
            .get(&ObjectKey::new(namespace, name))
            .and_then(|p| {
                p.metadata
                    .labels
                    .as_ref()?
                    .get("pod-template-hash")
                    .cloned()
            })
    };
    let table = proxy::build_table(&proxy::TableInputs {
        services: &services,
        slices: &slices,
        pod_template_hash: &hash,
        node_name: &config.node_name,
        node_port_addresses: &config.node_port_addresses,
        skip_cluster_ips: &config.cluster_dns,
    });
    Built {
        table: Arc::new(table),
    }
}

/// The addresses to have on the node for `table`.
pub fn wanted_addresses(table: &proxy::ProxyTable, cluster_dns: &[IpAddr]) -> BTreeSet<IpAddr> {
    let mut wanted = table.cluster_ips();
    wanted.extend(cluster_dns.iter().copied());
    wanted.retain(|a| !a.is_unspecified() && !a.is_loopback());
    wanted
}

async fn sync_addresses(addresses: &Arc<dyn LocalAddresses>, wanted: BTreeSet<IpAddr>) {
    let addresses = addresses.clone();
    let result = tokio::task::spawn_blocking(move || {
        let present = addresses.list()?;
        let missing: Vec<IpAddr> = wanted.difference(&present).copied().collect();
        let stale: Vec<IpAddr> = present.difference(&wanted).copied().collect();
        addresses.add(&missing)?;
        addresses.remove(&stale)
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("service proxy: node addresses: {e}"),
        Err(e) => tracing::warn!("service proxy: node addresses: {e}"),
    }
}

async fn apply_tables(
    proxy: Arc<proxy::Proxy>,
    addresses: Arc<dyn LocalAddresses>,
    config: ServicesConfig,
    records: Arc<RwLock<Arc<dns::Records>>>,
    mut changed: watch::Receiver<Option<Arc<proxy::ProxyTable>>>,
) {
    // DNS first: pods started before the first table still resolve.
    sync_addresses(&addresses, config.cluster_dns.iter().copied().collect()).await;
    let mut servers = Vec::new();
    for ip in &config.cluster_dns {
        let at = SocketAddr::new(*ip, 53);
        let mut failures = 0u32;
        loop {
            match dns::DnsServer::start(at, records.clone(), config.upstream_dns.clone()).await {
                Ok(server) => {
                    tracing::info!("cluster DNS on {at}");
                    servers.push(server);
                    break;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!("cluster DNS on {at}: {e}");
                    if failures >= 5 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(failures))).await;
                }
            }
        }
    }
    let mut bind_failures: BTreeSet<SocketAddr> = BTreeSet::new();
    while changed.changed().await.is_ok() {
        let Some(table) = changed.borrow_and_update().clone() else {
            continue;
        };
        let wanted = wanted_addresses(&table, &config.cluster_dns);
        let address_count = wanted.len();
        sync_addresses(&addresses, wanted).await;
        let failed = proxy.apply(&table).await;
        tracing::info!(
            "service proxy: {} service ports, {} endpoints, {address_count} node addresses",
            table.ports.len(),
            table.ports.iter().map(|p| p.endpoints.len()).sum::<usize>()
        );
        let now_failing: BTreeSet<SocketAddr> = failed.iter().map(|(a, _)| *a).collect();
        for (at, e) in &failed {
            if !bind_failures.contains(at) {
                tracing::warn!("service proxy: listening on {at}: {e}");
            }
        }
        bind_failures = now_failing;
    }
    drop(servers);
}

/// Where NodePorts listen by default: every address of the node.
pub fn all_node_addresses() -> Vec<IpAddr> {
    vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
}
