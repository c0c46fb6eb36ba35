//! The agent's runtime loop: register the node, renew its Lease, watch the
//! pods bound to it, and run one worker per pod that observes the container
//! runtime, asks [`crate::sync::sync_pod`] what to do, does it, and
//! publishes the pod's status — every second while anything runs (the
//! kubelet's PLEG relist period) and at once when the pod changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::{Client, DeleteOptions, Gvr, WatchEvent};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::node::{self, NodeConfig, LEASE_RENEW_INTERVAL};
use crate::runtime::{ContainerLaunch, ContainerRuntime};
use crate::sync::{self, InstanceState, NodeFacts, Step, SyncMemory};
use crate::volumes::{self, SetUpVolume, VolumeManager};

const PODS: Gvr = Gvr::new("", "v1", "pods");
const CONFIG_MAPS: Gvr = Gvr::new("", "v1", "configmaps");
const SECRETS: Gvr = Gvr::new("", "v1", "secrets");
const CLAIMS: Gvr = Gvr::new("", "v1", "persistentvolumeclaims");
const PERSISTENT_VOLUMES: Gvr = Gvr::new("", "v1", "persistentvolumes");
const SERVICE_ACCOUNTS: Gvr = Gvr::new("", "v1", "serviceaccounts");
const SERVICES: Gvr = Gvr::new("", "v1", "services");

/// How often the volumes of a running pod are refreshed (ConfigMap, Secret
/// and downward-API contents; the kubelet's sync period is about a minute).
const VOLUME_REFRESH: Duration = Duration::from_secs(2);

/// A projected token: (token, issued at, expires at), in Unix seconds.
type HeldToken = (String, i64, i64);

/// Whether a projected token issued at `issued` and good until `expires`
/// (Unix seconds) must be replaced at `now`: as the kubelet's token
/// manager decides, once 80% of its life has passed or it is a day old.
pub fn token_refresh_due(issued: i64, expires: i64, now: i64) -> bool {
    let life = (expires - issued).max(0);
    now >= issued + life * 8 / 10 || now >= issued + 24 * 3600
}

/// One line per worker round that did something: when each part of it
/// ended, in ms from the round's start (`DROVER_LOG=agent::timing=debug`).
fn log_timing(pod: &Pod, timing: &[(&'static str, Duration)]) {
    if tracing::enabled!(target: "agent::timing", tracing::Level::DEBUG) {
        let parts: Vec<String> = timing
            .iter()
            .map(|(what, at)| format!("{what}@{:.1}", at.as_secs_f64() * 1000.0))
            .collect();
        tracing::debug!(
            target: "agent::timing",
            "{}/{}: {}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or(""),
            parts.join(" ")
        );
    }
}

/// A pod the API no longer has, as its worker must see it: deleted. The
/// API removes a pod that never ran or has finished at once, without a
/// `deletionTimestamp`; its worker would otherwise wait for a deletion
/// that has already happened, keeping its volumes (the tmpfs of its token
/// volume too) until the agent's next relist.
fn gone_is_deleted(mut pod: Pod, deleted: bool) -> Pod {
    if deleted && pod.metadata.deletion_timestamp.is_none() {
        pod.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
    }
    pod
}

/// How often a pod with something running is looked at again.
const RELIST_PERIOD: Duration = Duration::from_secs(1);

pub struct Agent {
    client: Client,
    node: NodeConfig,
    /// By RuntimeClass name; pods without one use `default_runtime`.
    runtimes: BTreeMap<String, Arc<dyn ContainerRuntime>>,
    default_runtime: String,
    workers: Mutex<BTreeMap<String, Worker>>,
    metrics: Arc<crate::metrics::MetricsStore>,
    host_ports: crate::hostports::HostPorts,
    volumes: VolumeManager,
    services: Mutex<Option<Arc<crate::services::NodeServices>>>,
    events: client::events::EventRecorder,
    /// Events written by [`Agent::event_in_background`], in order, by a
    /// task `run` starts.
    background_events: tokio::sync::mpsc::UnboundedSender<(serde_json::Value, jiff::Timestamp)>,
    background_events_queue:
        Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(serde_json::Value, jiff::Timestamp)>>>,
    /// Service account tokens of the pods' projected volumes, by pod uid
    /// and what was asked.
    tokens: Mutex<std::collections::HashMap<(String, volumes::TokenAsk), HeldToken>>,
}

struct Worker {
    pod: Arc<Mutex<Pod>>,
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Agent {
    pub fn new(
        client: Client,
        node: NodeConfig,
        runtimes: Vec<Arc<dyn ContainerRuntime>>,
        default_runtime: &str,
    ) -> Arc<Agent> {
        let (background_events, queue) = tokio::sync::mpsc::unbounded_channel();
        Arc::new(Agent {
            client,
            runtimes: runtimes
                .into_iter()
                .map(|r| (r.name().to_string(), r))
                .collect(),
            default_runtime: default_runtime.to_string(),
            workers: Mutex::new(BTreeMap::new()),
            metrics: Arc::new(crate::metrics::MetricsStore::default()),
            host_ports: Default::default(),
            volumes: VolumeManager::new(node.volumes_dir.clone()),
            services: Mutex::new(None),
            events: Default::default(),
            background_events,
            background_events_queue: Mutex::new(Some(queue)),
            tokens: Mutex::new(Default::default()),
            node,
        })
    }

    /// What the API server asks of this node (logs, metrics).
    pub fn connection(&self) -> Arc<dyn apiserver::nodes::NodeConnection> {
        Arc::new(
            crate::logs::AgentLogs::new(
                self.runtimes.values().cloned().collect(),
                &self.default_runtime,
                self.metrics.clone(),
            )
            .with_services(
                self.services
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            ),
        )
    }

    /// The node's service proxy and DNS (their metrics join the node's).
    pub fn set_services(&self, services: Arc<crate::services::NodeServices>) {
        *self.services.lock().unwrap_or_else(|p| p.into_inner()) = Some(services);
    }

    /// Samples usage for `metrics.k8s.io` every [`crate::metrics::SAMPLE_PERIOD`].
    async fn sample_metrics(&self) {
        loop {
            let pods: Vec<Pod> = self
                .workers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .map(|w| w.pod.lock().unwrap_or_else(|p| p.into_inner()).clone())
                .collect();
            let mut containers = Vec::new();
            for pod in pods {
                let Ok(runtime) = self.runtime_for(&pod) else {
                    continue;
                };
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let identity = (
                    pod.metadata.namespace.clone().unwrap_or_default(),
                    pod.metadata.name.clone().unwrap_or_default(),
                    pod.metadata.labels.clone().unwrap_or_default(),
                );
                let observed = runtime.observe(&uid).await;
                for c in &observed.containers {
                    if c.init || !matches!(c.state, InstanceState::Running { .. }) {
                        continue;
                    }
                    if let Some(usage) = runtime.usage(&uid, Some(&c.name)).await {
                        containers.push((uid.clone(), identity.clone(), c.name.clone(), usage));
                    }
                }
            }
            self.metrics.record(
                jiff::Timestamp::now(),
                crate::metrics::node_usage(),
                containers,
            );
            tokio::time::sleep(crate::metrics::SAMPLE_PERIOD).await;
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let queue = self
            .background_events_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut queue) = queue {
            let agent = self.clone();
            tokio::spawn(async move {
                while let Some((event, now)) = queue.recv().await {
                    if let Err(e) = agent.events.record(&agent.client, event, now).await {
                        tracing::debug!("agent: event: {e}");
                    }
                }
            });
        }
        let started = jiff::Timestamp::now();
        let mut failures = 0u32;
        while let Err(e) = node::register(&self.client, &self.node, started).await {
            failures += 1;
            tracing::warn!("agent: registering node {}: {e}", self.node.name);
            tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(25)))).await;
        }
        tracing::info!("agent: node {} registered", self.node.name);
        let heartbeat = {
            let agent = self.clone();
            tokio::spawn(async move { agent.heartbeat(started).await })
        };
        let sampler = {
            let agent = self.clone();
            tokio::spawn(async move { agent.sample_metrics().await })
        };
        let reclaimer = {
            let agent = self.clone();
            tokio::spawn(async move { agent.reclaim_local_volumes().await })
        };
        self.watch_pods().await;
        heartbeat.abort();
        sampler.abort();
        reclaimer.abort();
    }

    /// Deletes the directories of this node's `Released` local-path
    /// volumes, then the PersistentVolumes (the provisioner runs in the
    /// control plane and cannot reach a node's disk).
    async fn reclaim_local_volumes(&self) {
        loop {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let Ok(list) = self.client.list(PERSISTENT_VOLUMES, None, None, None).await else {
                continue;
            };
            for pv in list.items {
                let Some(path) = volumes::local_volume_to_delete(&pv, &self.node.name) else {
                    continue;
                };
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!("agent: deleting volume directory {}: {e}", path.display());
                        continue;
                    }
                }
                let name = pv
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let options = DeleteOptions {
                    uid: pv
                        .pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    ..Default::default()
                };
                if let Err(e) = self
                    .client
                    .delete(PERSISTENT_VOLUMES, None, name, &options)
                    .await
                {
                    if !e.is_not_found() {
                        tracing::warn!("agent: deleting persistentvolume {name}: {e}");
                    }
                }
            }
        }
    }

    async fn heartbeat(&self, started: jiff::Timestamp) {
        let mut ticks = 0u64;
        loop {
            let now = jiff::Timestamp::now();
            if let Err(e) = node::renew_lease(&self.client, &self.node.name, now).await {
                tracing::warn!("agent: renewing the node lease: {e}");
            }
            // Full status every minute (the Lease is the frequent heartbeat).
            if ticks % 6 == 5 {
                if let Err(e) = node::post_status(&self.client, &self.node, now, started).await {
                    tracing::warn!("agent: posting node status: {e}");
                }
            }
            ticks += 1;
            tokio::time::sleep(LEASE_RENEW_INTERVAL).await;
        }
    }

    fn selector(&self) -> String {
        format!("spec.nodeName={}", self.node.name)
    }

    async fn watch_pods(self: &Arc<Self>) {
        let selector = self.selector();
        loop {
            let list = match self.client.list(PODS, None, None, Some(&selector)).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("agent: listing pods: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut seen = Vec::new();
            for item in list.items {
                if let Ok(pod) = serde_json::from_value::<Pod>(item) {
                    seen.push(pod.metadata.uid.clone().unwrap_or_default());
                    self.upsert(pod);
                }
            }
            self.forget_missing(&seen).await;
            let mut resource_version = list.resource_version;
            loop {
                let stream = match self
                    .client
                    .watch_selected(PODS, None, &resource_version, 300, Some(&selector))
                    .await
                {
                    Ok(s) => s,
                    Err(e) => {
                        if !e.is_gone() {
                            tracing::warn!("agent: watching pods: {e}");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        break;
                    }
                };
                let mut stream = stream;
                let mut relist = false;
                while let Some(event) = futures::StreamExt::next(&mut stream).await {
                    let deleted = matches!(event, WatchEvent::Deleted(_));
                    match event {
                        WatchEvent::Added(v) | WatchEvent::Modified(v) | WatchEvent::Deleted(v) => {
                            if let Some(rv) = v
                                .pointer("/metadata/resourceVersion")
                                .and_then(Value::as_str)
                            {
                                resource_version = rv.to_string();
                            }
                            if let Ok(pod) = serde_json::from_value::<Pod>(v) {
                                // A deleted pod's worker finishes on its own: it
                                // sees the deletion and cleans up.
                                self.upsert(gone_is_deleted(pod, deleted));
                            }
                        }
                        WatchEvent::Bookmark {
                            resource_version: rv,
                        } => {
                            if !rv.is_empty() {
                                resource_version = rv;
                            }
                        }
                        WatchEvent::Error(_) => {
                            relist = true;
                            break;
                        }
                    }
                }
                if relist {
                    break;
                }
            }
        }
    }

    fn upsert(self: &Arc<Self>, pod: Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(worker) = workers.get(&uid) {
            if !worker.task.is_finished() {
                *worker.pod.lock().unwrap_or_else(|p| p.into_inner()) = pod;
                worker.wake.notify_one();
                return;
            }
        }
        let shared = Arc::new(Mutex::new(pod));
        let wake = Arc::new(Notify::new());
        let task = {
            let agent = self.clone();
            let shared = shared.clone();
            let wake = wake.clone();
            tokio::spawn(async move { agent.pod_worker(shared, wake).await })
        };
        workers.insert(
            uid,
            Worker {
                pod: shared,
                wake,
                task,
            },
        );
    }

    /// Pods the runtimes hold that the API no longer has: stop and forget.
    async fn forget_missing(&self, live: &[String]) {
        for runtime in self.runtimes.values() {
            for uid in runtime.pods().await {
                if !live.contains(&uid) {
                    tracing::info!("agent: cleaning up pod {uid}, gone from the API");
                    self.host_ports.remove(&uid);
                    if let Err(e) = runtime.forget(&uid).await {
                        tracing::warn!("agent: cleaning up pod {uid}: {e}");
                    }
                }
            }
        }
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(uid, _), _| live.contains(uid));
        for uid in self.volumes.pods() {
            let working = self
                .workers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&uid)
                .is_some_and(|w| !w.task.is_finished());
            if !live.contains(&uid) && !working {
                self.tear_down_volumes(&uid).await;
            }
        }
    }

    /// The ConfigMaps, Secrets, claims and PersistentVolumes the pod's
    /// volumes read (`None` where the API has none).
    async fn volume_objects(&self, pod: &Pod) -> volumes::Objects {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let needed = volumes::needed(pod);
        let mut objects = volumes::Objects::default();
        let get = |gvr: Gvr, namespaced: bool, name: String| {
            let client = self.client.clone();
            let namespace = namespace.clone();
            async move {
                let ns = namespaced.then_some(namespace.as_str());
                client.get(gvr, ns, &name).await.ok()
            }
        };
        // Every object at once (each is an API round trip; a pod with a
        // service account token and its CA ConfigMap waited for two in a
        // row), then the PersistentVolumes its claims name.
        let config_maps = futures::future::join_all(
            needed
                .config_maps
                .into_iter()
                .map(|name| async { (name.clone(), get(CONFIG_MAPS, true, name).await) }),
        );
        let secrets = futures::future::join_all(
            needed
                .secrets
                .into_iter()
                .map(|name| async { (name.clone(), get(SECRETS, true, name).await) }),
        );
        let claims = futures::future::join_all(
            needed
                .claims
                .into_iter()
                .map(|name| async { (name.clone(), get(CLAIMS, true, name).await) }),
        );
        let tokens = futures::future::join_all(needed.tokens.into_iter().map(|ask| async {
            let token = self.service_account_token(pod, &ask).await;
            (ask, token)
        }));
        let (config_maps, secrets, claims, tokens) =
            futures::future::join4(config_maps, secrets, claims, tokens).await;
        objects.config_maps.extend(config_maps);
        objects.secrets.extend(secrets);
        objects.claims.extend(claims);
        objects.tokens.extend(tokens);
        let persistent_volumes = futures::future::join_all(
            volumes::persistent_volumes_needed(&objects)
                .into_iter()
                .map(|name| async { (name.clone(), get(PERSISTENT_VOLUMES, false, name).await) }),
        )
        .await;
        objects.persistent_volumes.extend(persistent_volumes);
        objects
    }

    /// Unmounts and deletes a gone pod's volumes on a blocking thread: an
    /// unmount can wait out an RCU grace period (milliseconds), and
    /// finding the mounts reads the whole mount table, neither of which
    /// should hold up the pods starting on this worker thread meanwhile.
    async fn tear_down_volumes(&self, uid: &str) {
        let (volumes, uid) = (self.volumes.clone(), uid.to_string());
        let torn = tokio::task::spawn_blocking(move || (volumes.tear_down(&uid), uid)).await;
        if let Ok((Err(e), uid)) = torn {
            tracing::warn!("agent: removing the volumes of pod {uid}: {e}");
        }
    }

    /// Drops the service account tokens held for a pod that is gone.
    fn forget_tokens(&self, uid: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(held, _), _| held != uid);
    }

    /// The pod's service account token for `ask`: the one held while it is
    /// fresh ([`token_refresh_due`]), else a new one from the TokenRequest
    /// API, bound to the pod.
    async fn service_account_token(
        &self,
        pod: &Pod,
        ask: &volumes::TokenAsk,
    ) -> Result<String, String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = (uid.clone(), ask.clone());
        let now = jiff::Timestamp::now().as_second();
        if let Some((token, issued, expires)) = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            if !token_refresh_due(*issued, *expires, now) {
                return Ok(token.clone());
            }
        }
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let audiences: Vec<&str> = if ask.audience.is_empty() {
            Vec::new()
        } else {
            vec![ask.audience.as_str()]
        };
        let request = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": audiences,
                "expirationSeconds": ask.expiration_seconds,
                "boundObjectRef": {
                    "apiVersion": "v1", "kind": "Pod",
                    "name": pod.metadata.name.clone().unwrap_or_default(),
                    "uid": uid,
                },
            },
        });
        let answer = self
            .client
            .create_subresource(
                SERVICE_ACCOUNTS,
                Some(&namespace),
                &account,
                "token",
                &request,
            )
            .await
            .map_err(|e| e.to_string())?;
        let token = answer
            .pointer("/status/token")
            .and_then(Value::as_str)
            .ok_or("the TokenRequest answer has no token")?
            .to_string();
        let expires = answer
            .pointer("/status/expirationTimestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second())
            .unwrap_or(now + ask.expiration_seconds);
        // When it was issued, by the server's clock (as the kubelet works it
        // out): the life the server granted, back from its expiry.
        let life = answer
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(ask.expiration_seconds);
        let issued = expires - life;
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (token.clone(), issued, expires));
        Ok(token)
    }

    /// Sets up (or refreshes) every volume of the pod; returns the
    /// `FailedMount` messages of those that could not be.
    async fn set_up_volumes(
        &self,
        pod: &Pod,
        set_up: &mut BTreeMap<String, SetUpVolume>,
    ) -> Vec<String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let (began, first) = (std::time::Instant::now(), set_up.is_empty());
        let objects = self.volume_objects(pod).await;
        let fetched = began.elapsed();
        let node = volumes::NodeResources {
            cpu_milli: self.node.cpu_milli,
            memory_bytes: self.node.memory_bytes,
        };
        let mut errors = Vec::new();
        for (name, planned) in volumes::plan(pod, &objects, node) {
            match planned.and_then(|p| self.volumes.set_up(&uid, &p)) {
                Ok(v) => {
                    set_up.insert(name, v);
                }
                Err(why) => errors.push(volumes::failed_mount_message(&name, &why)),
            }
        }
        if first {
            tracing::debug!(
                target: "agent::timing",
                "volumes of {uid}: objects@{:.1} files@{:.1}",
                fetched.as_secs_f64() * 1e3,
                began.elapsed().as_secs_f64() * 1e3
            );
        }
        errors
    }

    fn runtime_for(&self, pod: &Pod) -> Result<Arc<dyn ContainerRuntime>, String> {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.clone())
            .unwrap_or_else(|| self.default_runtime.clone());
        self.runtimes.get(&name).cloned().ok_or_else(|| {
            format!(
                "RuntimeClass \"{name}\" is not available on node {} (available: {})",
                self.node.name,
                self.runtimes.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    async fn pod_worker(self: Arc<Self>, shared: Arc<Mutex<Pod>>, wake: Arc<Notify>) {
        let mut memory = SyncMemory::default();
        let mut prober = crate::prober::Prober::default();
        let facts = NodeFacts {
            host_ip: self.node.address.clone(),
            allow_privileged: self.node.allow_privileged,
        };
        let mut reported_runtime_error = false;
        let mut reported_host_port_error = false;
        let mut set_up: BTreeMap<String, SetUpVolume> = BTreeMap::new();
        let mut volumes_refreshed: Option<tokio::time::Instant> = None;
        // Set after a round that started containers and wrote no status.
        let mut observe_again_first = false;
        loop {
            let pod = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let runtime = match self.runtime_for(&pod) {
                Ok(r) => r,
                Err(message) => {
                    if !reported_runtime_error {
                        self.event(&pod, true, "FailedCreatePodSandBox", &message)
                            .await;
                        reported_runtime_error = true;
                    }
                    if pod.metadata.deletion_timestamp.is_some() {
                        let _ = self.final_delete(&pod).await;
                        return;
                    }
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                    }
                    continue;
                }
            };
            let began = std::time::Instant::now();
            let mut timing: Vec<(&'static str, Duration)> = Vec::new();
            let observed = runtime.observe(&uid).await;
            timing.push(("observe", began.elapsed()));
            let now = jiff::Timestamp::now();
            let (probes, failures) = prober
                .round(&pod, &observed, runtime.as_ref(), &self.node.address, now)
                .await;
            for failure in failures {
                self.event(&pod, true, "Unhealthy", &failure.message).await;
            }
            // Volumes before the sandbox, and refreshed while the pod runs
            // (ConfigMap and Secret updates); a deleted or finished pod's
            // volumes are left as they are until it goes.
            let terminal = matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            );
            let mut volume_errors = Vec::new();
            let mut sandbox_attempted = false;
            let needs_volumes = pod.metadata.deletion_timestamp.is_none()
                && !terminal
                && (observed.sandbox.is_none()
                    || volumes_refreshed.is_none_or(|t| t.elapsed() >= VOLUME_REFRESH));
            // A new pod whose volumes last went well: the sandbox is made
            // on another task while the volumes are set up (they do not
            // depend on each other; 2-5 ms each). Should a volume fail after
            // all, the sandbox goes again, so that a pod waiting for its
            // volumes has none, as with the kubelet.
            if needs_volumes
                && observed.sandbox.is_none()
                && memory.failed_mount.is_none()
                && sync::sync_pod_with_volumes(&pod, &observed, &probes, &memory, &facts, &[], now)
                    .steps
                    == [Step::CreateSandbox]
            {
                let sandbox = {
                    let (this, pod, runtime) = (self.clone(), pod.clone(), runtime.clone());
                    tokio::spawn(async move {
                        this.carry_out(&pod, &runtime, &Step::CreateSandbox, &BTreeMap::new())
                            .await
                    })
                };
                volume_errors = self.set_up_volumes(&pod, &mut set_up).await;
                volumes_refreshed = Some(tokio::time::Instant::now());
                timing.push(("volumes", began.elapsed()));
                let _ = sandbox.await;
                sandbox_attempted = true;
                timing.push(("create-sandbox", began.elapsed()));
                if volume_errors.is_empty() {
                    if runtime.observe(&uid).await.sandbox.is_some() {
                        log_timing(&pod, &timing);
                        continue;
                    }
                } else {
                    self.carry_out(&pod, &runtime, &Step::RemoveSandbox, &set_up)
                        .await;
                }
            } else if needs_volumes {
                volume_errors = self.set_up_volumes(&pod, &mut set_up).await;
                volumes_refreshed = Some(tokio::time::Instant::now());
                timing.push(("volumes", began.elapsed()));
            }
            let decision = sync::sync_pod_with_volumes(
                &pod,
                &observed,
                &probes,
                &memory,
                &facts,
                &volume_errors,
                now,
            );
            memory = decision.memory.clone();
            for event in &decision.events {
                self.event(&pod, event.warning, &event.reason, &event.message)
                    .await;
            }
            // Kills run side by side (each may wait out a preStop hook);
            // everything else in order.
            let mut steps = decision.steps.iter().peekable();
            while let Some(step) = steps.next() {
                if sandbox_attempted && matches!(step, Step::CreateSandbox) {
                    // Tried (and reported) in this round already.
                    continue;
                }
                if matches!(step, Step::KillContainer { .. }) {
                    let mut kills = vec![self.carry_out(&pod, &runtime, step, &set_up)];
                    while let Some(next) =
                        steps.next_if(|s| matches!(s, Step::KillContainer { .. }))
                    {
                        kills.push(self.carry_out(&pod, &runtime, next, &set_up));
                    }
                    futures::future::join_all(kills).await;
                } else {
                    self.carry_out(&pod, &runtime, step, &set_up).await;
                }
                timing.push((step.name(), began.elapsed()));
            }
            // A sandbox just made: start its containers at once rather than
            // report a ContainerCreating status that is stale in
            // milliseconds.
            if decision.steps == [Step::CreateSandbox]
                && runtime.observe(&uid).await.sandbox.is_some()
            {
                log_timing(&pod, &timing);
                continue;
            }
            // Containers just started: the decision's status was made before
            // they ran (waiting, not ready). Observe again and write the one
            // status that is true now, instead of a stale one and then the
            // real one a round later. Once only: a start that keeps being
            // decided again still has its status written every other round.
            let started = decision
                .steps
                .iter()
                .any(|s| matches!(s, Step::StartContainer { .. }));
            if started && !observe_again_first {
                observe_again_first = true;
                log_timing(&pod, &timing);
                continue;
            }
            let after_start = std::mem::take(&mut observe_again_first);
            self.publish_status(&pod, &decision.status).await;
            timing.push(("status", began.elapsed()));
            if !decision.steps.is_empty() || after_start {
                log_timing(&pod, &timing);
            }
            if let Some(sandbox) = &observed.sandbox {
                if pod.metadata.deletion_timestamp.is_none()
                    && !decision.steps.contains(&Step::RemoveSandbox)
                {
                    let ip = sandbox
                        .ip
                        .clone()
                        .unwrap_or_else(|| self.node.address.clone());
                    if let Err(e) = self.host_ports.ensure(&uid, &pod, &ip).await {
                        if !reported_host_port_error {
                            self.event(
                                &pod,
                                true,
                                "FailedCreatePodSandBox",
                                &format!("Failed to publish the pod's host ports: {e}"),
                            )
                            .await;
                            reported_host_port_error = true;
                        }
                    }
                }
            }
            if decision.finished && self.final_delete(&pod).await {
                self.host_ports.remove(&uid);
                let _ = runtime.forget(&uid).await;
                self.tear_down_volumes(&uid).await;
                self.forget_tokens(&uid);
                return;
            }
            let anything_running = observed
                .containers
                .iter()
                .any(|c| matches!(c.state, InstanceState::Running { .. }));
            let wait = if !decision.steps.is_empty() || anything_running {
                RELIST_PERIOD
            } else {
                decision.requeue_after.unwrap_or(Duration::from_secs(30))
            };
            let wait = decision.requeue_after.map_or(wait, |r| r.min(wait));
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn carry_out(
        &self,
        pod: &Pod,
        runtime: &Arc<dyn ContainerRuntime>,
        step: &Step,
        volumes: &BTreeMap<String, SetUpVolume>,
    ) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        match step {
            Step::CreateSandbox => {
                let host_resolv_conf =
                    std::fs::read_to_string(&self.node.host_resolv_conf).unwrap_or_default();
                let config =
                    match crate::pod_dns::sandbox_config(pod, &self.node, &host_resolv_conf) {
                        Ok((config, warning)) => {
                            if let Some(message) = warning {
                                self.event(pod, true, "MissingClusterDNS", &message).await;
                            }
                            config
                        }
                        Err(e) => {
                            let message = format!("Failed to create pod sandbox: {e}");
                            self.event(pod, true, "FailedCreatePodSandBox", &message)
                                .await;
                            return;
                        }
                    };
                if let Err(e) = runtime.create_sandbox(pod, &config).await {
                    self.event(
                        pod,
                        true,
                        "FailedCreatePodSandBox",
                        &format!("Failed to create pod sandbox: {e}"),
                    )
                    .await;
                }
            }
            Step::StartContainer {
                name,
                init,
                attempt,
            } => {
                let Some(container) = find_container(pod, name, *init) else {
                    return;
                };
                let mut launch = self.launch(pod, container, *init, *attempt, volumes).await;
                let (sink, mut reports) = crate::runtime::EventSink::channel();
                launch.events = sink;
                // The runtime's reports (a pull may take minutes) become
                // events as they come; the channel closes with the launch.
                let start = async move {
                    let started = runtime.start_container(pod, &launch).await;
                    drop(launch);
                    started
                };
                let forward = async {
                    while let Some(e) = reports.recv().await {
                        self.event(pod, e.warning, &e.reason, &e.message).await;
                    }
                };
                let (started, ()) = tokio::join!(start, forward);
                match started {
                    Ok(()) => {
                        self.event_in_background(
                            pod,
                            false,
                            "Created",
                            &format!("Created container {name}"),
                        );
                        self.event_in_background(
                            pod,
                            false,
                            "Started",
                            &format!("Started container {name}"),
                        );
                        let post_start = container
                            .lifecycle
                            .as_ref()
                            .and_then(|l| l.post_start.as_ref());
                        if let Some(hook) = post_start {
                            // As the kubelet: the container counts as started
                            // only once its postStart hook succeeded; if it
                            // fails, the container is killed (and restarted
                            // as its restartPolicy says).
                            let timeout = grace_period(pod);
                            if let Err(message) = self
                                .run_hook(pod, runtime, container, *attempt, hook, timeout)
                                .await
                            {
                                self.event(pod, true, "FailedPostStartHook", &message).await;
                                let _ = runtime
                                    .kill_container(&uid, name, *attempt, Duration::ZERO)
                                    .await;
                            }
                        }
                    }
                    Err(e) => {
                        self.event(pod, true, "Failed", &format!("Error: {e}"))
                            .await;
                    }
                }
            }
            Step::KillContainer {
                name,
                attempt,
                grace,
                ..
            } => {
                let mut grace = *grace;
                let pre_stop = find_container(pod, name, false)
                    .or_else(|| find_container(pod, name, true))
                    .and_then(|c| {
                        let hook = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
                        Some((c, hook))
                    });
                if let (Some((container, hook)), false) = (pre_stop, grace.is_zero()) {
                    // The hook runs within the grace period; what is left
                    // (at least 2 s, as the kubelet gives) is SIGTERM's.
                    let started = tokio::time::Instant::now();
                    if let Err(message) = self
                        .run_hook(pod, runtime, container, *attempt, hook, grace)
                        .await
                    {
                        self.event(pod, true, "FailedPreStopHook", &message).await;
                    }
                    grace = grace
                        .saturating_sub(started.elapsed())
                        .max(Duration::from_secs(2));
                }
                if let Err(e) = runtime.kill_container(&uid, name, *attempt, grace).await {
                    tracing::warn!("agent: killing {name} of pod {uid}: {e}");
                }
            }
            Step::RemoveSandbox => {
                self.host_ports.remove(&uid);
                if let Err(e) = runtime.remove_sandbox(&uid).await {
                    tracing::warn!("agent: removing the sandbox of pod {uid}: {e}");
                }
            }
        }
    }

    /// Runs a postStart/preStop hook of `container` (instance `attempt`),
    /// bounded by `timeout`; the error is the kubelet's event message.
    async fn run_hook(
        &self,
        pod: &Pod,
        runtime: &Arc<dyn ContainerRuntime>,
        container: &Container,
        attempt: u32,
        hook: &k8s_openapi::api::core::v1::LifecycleHandler,
        timeout: Duration,
    ) -> Result<(), String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let observed = runtime.observe(&uid).await;
        let pod_ip = observed
            .sandbox
            .and_then(|s| s.ip)
            .unwrap_or_else(|| self.node.address.clone());
        let target = crate::handlers::Target {
            runtime: runtime.as_ref(),
            uid: &uid,
            container,
            attempt,
            pod_ip: &pod_ip,
        };
        let (kind, what) = match (&hook.exec, &hook.http_get, &hook.sleep) {
            (Some(exec), _, _) => (
                "Exec",
                format!("{:?}", exec.command.clone().unwrap_or_default()),
            ),
            (_, Some(http), _) => ("HTTP", http.path.clone().unwrap_or_else(|| "/".into())),
            (_, _, Some(sleep)) => ("Sleep", format!("{}s", sleep.seconds)),
            _ => ("Unknown", String::new()),
        };
        let outcome = match crate::handlers::hook_action(hook, container) {
            Ok(action) => {
                match tokio::time::timeout(timeout, crate::handlers::run(&action, &target, timeout))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(format!("timed out after {}s", timeout.as_secs())),
                }
            }
            Err(e) => Err(e),
        };
        outcome.map_err(|error| {
            format!(
                "{kind} lifecycle hook ({what}) for Container \"{}\" in Pod \"{}_{}({uid})\" failed - error: {error}",
                container.name,
                pod.metadata.name.as_deref().unwrap_or(""),
                pod.metadata.namespace.as_deref().unwrap_or(""),
            )
        })
    }

    /// The container's launch: command and args with `$(VAR)` expanded, the
    /// environment with ConfigMap, Secret and downward-API values filled in,
    /// and its resources. A reference that cannot be resolved becomes a
    /// `CreateContainerConfigError`.
    async fn launch(
        &self,
        pod: &Pod,
        container: &Container,
        init: bool,
        attempt: u32,
        volumes: &BTreeMap<String, SetUpVolume>,
    ) -> ContainerLaunch {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let (env, mut config_error) = match self.resolve_env(pod, container, &namespace).await {
            Ok(env) => (env, None),
            Err(message) => (
                Vec::new(),
                Some(("CreateContainerConfigError".to_string(), message)),
            ),
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mounts = if config_error.is_some() {
            Vec::new()
        } else {
            match self.volumes.mounts(&uid, container, &env, volumes) {
                Ok(m) => m,
                Err(message) => {
                    config_error = Some(("CreateContainerConfigError".to_string(), message));
                    Vec::new()
                }
            }
        };
        let vars: BTreeMap<&str, &str> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let expand_all = |parts: &Option<Vec<String>>| -> Vec<String> {
            parts.iter().flatten().map(|p| expand(p, &vars)).collect()
        };
        let command = expand_all(&container.command);
        let args = expand_all(&container.args);
        let argv: Vec<String> = command.iter().chain(&args).cloned().collect();
        let resources = container.resources.as_ref();
        let quantity = |map: Option<
            &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >,
                        key: &str,
                        milli: bool| {
            map.and_then(|m| m.get(key)).and_then(|q| {
                if milli {
                    scheduler::quantity::parse_milli_value(&q.0).ok()
                } else {
                    scheduler::quantity::parse_value(&q.0).ok()
                }
            })
        };
        let limits = resources.and_then(|r| r.limits.as_ref());
        let requests = resources.and_then(|r| r.requests.as_ref());
        let pull_credentials = self.pull_credentials(pod, &namespace).await;
        ContainerLaunch {
            name: container.name.clone(),
            init,
            attempt,
            argv,
            command,
            args,
            env,
            pull_credentials,
            working_dir: container.working_dir.clone(),
            memory_limit: quantity(limits, "memory", false),
            cpu_limit_milli: quantity(limits, "cpu", true),
            cpu_request_milli: quantity(requests, "cpu", true).or(quantity(limits, "cpu", true)),
            config_error,
            mounts,
            events: Default::default(),
        }
    }

    /// The registry credentials of the pod's `imagePullSecrets`. A secret
    /// that is missing or of another type is skipped, as the kubelet does
    /// (the pull may still succeed without it).
    async fn pull_credentials(
        &self,
        pod: &Pod,
        namespace: &str,
    ) -> Vec<images::RegistryCredential> {
        let mut out = Vec::new();
        let names = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default();
        for reference in names {
            let name = reference.name;
            match self.client.get(SECRETS, Some(namespace), &name).await {
                Ok(secret) => out.extend(registry_credentials(&data_of(&secret, true))),
                Err(e) => tracing::warn!(
                    "agent: image pull secret {namespace}/{name} of pod {}: {e}",
                    pod.metadata.name.as_deref().unwrap_or_default()
                ),
            }
        }
        out
    }

    async fn resolve_env(
        &self,
        pod: &Pod,
        container: &Container,
        namespace: &str,
    ) -> Result<Vec<(String, String)>, String> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut objects: BTreeMap<(bool, String), Option<Value>> = BTreeMap::new();
        let fetch = |secret: bool, name: String| {
            let client = self.client.clone();
            let namespace = namespace.to_string();
            async move {
                let gvr = if secret { SECRETS } else { CONFIG_MAPS };
                client.get(gvr, Some(&namespace), &name).await.ok()
            }
        };
        for from in container.env_from.iter().flatten() {
            let (secret, name, optional) = if let Some(c) = &from.config_map_ref {
                (false, c.name.clone(), c.optional.unwrap_or(false))
            } else if let Some(s) = &from.secret_ref {
                (true, s.name.clone(), s.optional.unwrap_or(false))
            } else {
                continue;
            };
            let key = (secret, name.clone());
            if !objects.contains_key(&key) {
                let v = fetch(secret, name.clone()).await;
                objects.insert(key.clone(), v);
            }
            match &objects[&key] {
                Some(object) => {
                    for (k, v) in data_of(object, secret) {
                        out.push((format!("{}{k}", from.prefix.clone().unwrap_or_default()), v));
                    }
                }
                None if optional => {}
                None => {
                    return Err(format!(
                        "{} \"{name}\" not found",
                        if secret { "secret" } else { "configmap" }
                    ))
                }
            }
        }
        let service_vars = self.service_variables(pod, namespace).await?;
        for var in container.env.iter().flatten() {
            if let Some(value) = &var.value {
                // `$(VAR)` sees the container's earlier variables, then the
                // Services' (as the kubelet's mapping does).
                let vars: BTreeMap<&str, &str> = service_vars
                    .iter()
                    .chain(out.iter())
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let expanded = expand(value, &vars);
                out.push((var.name.clone(), expanded));
                continue;
            }
            let Some(source) = &var.value_from else {
                out.push((var.name.clone(), String::new()));
                continue;
            };
            if let Some(field) = &source.field_ref {
                out.push((
                    var.name.clone(),
                    field_value(pod, &field.field_path, &self.node.address),
                ));
            } else if let Some(r) = &source.resource_field_ref {
                let value = container
                    .resources
                    .as_ref()
                    .and_then(|res| {
                        let (map, key) = r.resource.split_once('.')?;
                        let m = if map == "limits" {
                            res.limits.as_ref()
                        } else {
                            res.requests.as_ref()
                        };
                        m?.get(key).map(|q| q.0.clone())
                    })
                    .unwrap_or_default();
                out.push((var.name.clone(), value));
            } else {
                let (secret, name, key, optional) = if let Some(c) = &source.config_map_key_ref {
                    (
                        false,
                        c.name.clone(),
                        c.key.clone(),
                        c.optional.unwrap_or(false),
                    )
                } else if let Some(s) = &source.secret_key_ref {
                    (
                        true,
                        s.name.clone(),
                        s.key.clone(),
                        s.optional.unwrap_or(false),
                    )
                } else {
                    continue;
                };
                let object_key = (secret, name.clone());
                if !objects.contains_key(&object_key) {
                    let v = fetch(secret, name.clone()).await;
                    objects.insert(object_key.clone(), v);
                }
                let kind = if secret { "secret" } else { "configmap" };
                match &objects[&object_key] {
                    Some(object) => {
                        match data_of(object, secret).into_iter().find(|(k, _)| *k == key) {
                            Some((_, v)) => out.push((var.name.clone(), v)),
                            None if optional => {}
                            None => {
                                return Err(format!(
                                    "couldn't find key {key} in {kind} {namespace}/{name}"
                                ))
                            }
                        }
                    }
                    None if optional => {}
                    None => return Err(format!("{kind} \"{name}\" not found")),
                }
            }
        }
        // The Services' variables come last, each unless the container
        // sets it itself.
        let defined: std::collections::BTreeSet<String> =
            out.iter().map(|(k, _)| k.clone()).collect();
        out.extend(
            service_vars
                .into_iter()
                .filter(|(k, _)| !defined.contains(k)),
        );
        Ok(out)
    }

    /// The Service environment variables of the pod's containers
    /// ([`crate::service_env`]), from the node's Service informer once it
    /// has synced. As in the kubelet, a Service list that
    /// fails fails the container's start (CreateContainerConfigError, and
    /// the worker retries) rather than starting it without them; only a
    /// missing `kubernetes` Service is no error.
    async fn service_variables(
        &self,
        pod: &Pod,
        namespace: &str,
    ) -> Result<Vec<(String, String)>, String> {
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        // From the node's Service informer when it has synced (as the
        // kubelet does), else asked of the API.
        let cached = self
            .services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|s| s.services());
        if let Some(all) = cached {
            let services: Vec<Value> = all
                .iter()
                .filter(|s| {
                    let ns = s.metadata.namespace.as_deref().unwrap_or("");
                    let name = s.metadata.name.as_deref().unwrap_or("");
                    (links && ns == namespace) || (ns == "default" && name == "kubernetes")
                })
                .filter_map(|s| serde_json::to_value(&**s).ok())
                .collect();
            let chosen = crate::service_env::services_for_pod(&services, namespace, links);
            return Ok(crate::service_env::service_variables(&chosen));
        }
        let mut services = Vec::new();
        if links {
            let list = self
                .client
                .list(SERVICES, Some(namespace), None, None)
                .await
                .map_err(|e| format!("listing the Services of namespace {namespace}: {e}"))?;
            services.extend(list.items);
        }
        if !(links && namespace == "default") {
            match self
                .client
                .get(SERVICES, Some("default"), "kubernetes")
                .await
            {
                Ok(api) => services.push(api),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(format!("reading the kubernetes Service: {e}")),
            }
        }
        let chosen = crate::service_env::services_for_pod(&services, namespace, links);
        Ok(crate::service_env::service_variables(&chosen))
    }

    async fn publish_status(&self, pod: &Pod, status: &k8s_openapi::api::core::v1::PodStatus) {
        // Compared as the API stores them: `metav1.Time` keeps whole seconds,
        // so a status computed with sub-second times equals the stored one
        // only once serialized. (Comparing the structs made every relist
        // write the status again, and every write woke the worker again.)
        if pod.status.as_ref() == Some(status) || status_json_eq(pod.status.as_ref(), status) {
            return;
        }
        let mut object = pod.clone();
        object.status = Some(status.clone());
        let value = serde_json::to_value(&object).unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Err(e) = self
            .client
            .replace_status(PODS, pod.metadata.namespace.as_deref(), &name, &value)
            .await
        {
            if !e.is_conflict() && !e.is_not_found() {
                tracing::warn!("agent: status of pod {name}: {e}");
            }
        }
    }

    /// The kubelet's last word on a deleted pod: delete with grace 0 once
    /// nothing of it runs. True if the pod is gone.
    async fn final_delete(&self, pod: &Pod) -> bool {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let options = DeleteOptions {
            grace_period_seconds: Some(0),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        };
        match self
            .client
            .delete(PODS, pod.metadata.namespace.as_deref(), &name, &options)
            .await
        {
            Ok(_) => true,
            Err(e) if e.is_not_found() || e.is_conflict() => true,
            Err(e) => {
                tracing::warn!("agent: deleting pod {name}: {e}");
                false
            }
        }
    }

    async fn event(&self, pod: &Pod, warning: bool, reason: &str, message: &str) {
        let (event, now) = self.event_object(pod, warning, reason, message);
        if let Err(e) = self.events.record(&self.client, event, now).await {
            tracing::debug!("agent: event {reason} on {:?}: {e}", pod.metadata.name);
        }
    }

    /// Records an event after what is already queued, off the pod's own
    /// path, as the kubelet's event broadcaster does: for the events a
    /// successful start writes (`Created`, `Started`), which would
    /// otherwise hold back the Running status by two writes. Events that
    /// explain a status (back-off, probe failures, errors) are written
    /// before it, with [`Agent::event`].
    fn event_in_background(&self, pod: &Pod, warning: bool, reason: &str, message: &str) {
        let queued = self.event_object(pod, warning, reason, message);
        if self.background_events.send(queued).is_err() {
            tracing::debug!("agent: event {reason} dropped: the event queue is gone");
        }
    }

    fn event_object(
        &self,
        pod: &Pod,
        warning: bool,
        reason: &str,
        message: &str,
    ) -> (serde_json::Value, jiff::Timestamp) {
        let now = jiff::Timestamp::now();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let t = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": format!("{name}.{:x}", now.as_nanosecond() as u64), "namespace": namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": namespace,
                               "uid": pod.metadata.uid, "resourceVersion": pod.metadata.resource_version},
            "type": if warning { "Warning" } else { "Normal" },
            "reason": reason,
            "message": message,
            "source": {"component": "kubelet", "host": self.node.name},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node.name,
            "firstTimestamp": t,
            "lastTimestamp": t,
            "count": 1,
        });
        (event, now)
    }
}

/// The pod's `terminationGracePeriodSeconds` (default 30 s).
fn grace_period(pod: &Pod) -> Duration {
    let seconds = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

fn find_container<'a>(pod: &'a Pod, name: &str, init: bool) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    let list = if init {
        spec.init_containers.as_deref().unwrap_or(&[])
    } else {
        spec.containers.as_slice()
    };
    list.iter().find(|c| c.name == name)
}

/// `data` (and for Secrets, base64-decoded) of a ConfigMap or Secret.
fn data_of(object: &Value, secret: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(map) = object.get("data").and_then(Value::as_object) {
        for (k, v) in map {
            let text = v.as_str().unwrap_or_default();
            let value = if secret {
                decode_base64(text).unwrap_or_default()
            } else {
                text.to_string()
            };
            out.push((k.clone(), value));
        }
    }
    if !secret {
        if let Some(map) = object.get("binaryData").and_then(Value::as_object) {
            for (k, v) in map {
                out.push((
                    k.clone(),
                    decode_base64(v.as_str().unwrap_or_default()).unwrap_or_default(),
                ));
            }
        }
    }
    out
}

/// Credentials from a Secret's decoded data: `.dockerconfigjson`
/// (`{"auths": {registry: {...}}}`) or the older `.dockercfg`
/// (`{registry: {...}}`); each entry has `username`/`password` or `auth`
/// (base64 `user:password`). Registries written as URLs become hosts.
pub fn registry_credentials(data: &[(String, String)]) -> Vec<images::RegistryCredential> {
    let mut out = Vec::new();
    for (key, text) in data {
        let Ok(json) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        let entries = match key.as_str() {
            ".dockerconfigjson" => json.get("auths").cloned().unwrap_or(Value::Null),
            ".dockercfg" => json,
            _ => continue,
        };
        for (registry, entry) in entries.as_object().into_iter().flatten() {
            let field = |f: &str| entry.get(f).and_then(Value::as_str).unwrap_or_default();
            let (mut username, mut password) =
                (field("username").to_string(), field("password").to_string());
            if username.is_empty() {
                if let Some((u, p)) = decode_base64(field("auth"))
                    .as_deref()
                    .and_then(|a| a.split_once(':'))
                {
                    (username, password) = (u.to_string(), p.to_string());
                }
            }
            let host = registry
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            out.push(images::RegistryCredential {
                registry: host,
                username,
                password,
            });
        }
    }
    out
}

fn decode_base64(text: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The downward API's `fieldRef` values.
fn field_value(pod: &Pod, path: &str, host_ip: &str) -> String {
    let meta = &pod.metadata;
    match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => host_ip.to_string(),
        // Pods of the process runtime share the node's network for now.
        "status.podIP" => pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_else(|| host_ip.to_string()),
        other => {
            let label = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
                other
                    .strip_prefix(prefix)
                    .map(|k| k.trim_start_matches("['").trim_end_matches("']"))
                    .and_then(|k| map.as_ref()?.get(k).cloned())
            };
            label("metadata.labels", &meta.labels)
                .or_else(|| label("metadata.annotations", &meta.annotations))
                .unwrap_or_default()
        }
    }
}

/// `$(VAR)` expansion as Kubernetes does it: defined variables are
/// replaced, `$$` escapes, undefined references stay as written.
pub(crate) fn expand(input: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if bytes[i + 1] == b'(' {
                if let Some(end) = input[i + 2..].find(')') {
                    let name = &input[i + 2..i + 2 + end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&input[i..i + 3 + end]),
                    }
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = input[i..].chars().next().unwrap_or_default();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Whether the stored status and a computed one serialize alike.
fn status_json_eq(
    stored: Option<&k8s_openapi::api::core::v1::PodStatus>,
    computed: &k8s_openapi::api::core::v1::PodStatus,
) -> bool {
    stored.is_some_and(|stored| {
        matches!(
            (serde_json::to_value(stored), serde_json::to_value(computed)),
            (Ok(a), Ok(b)) if a == b
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_at_80_percent_of_their_life_or_a_day() {
        // An hour's token: kept for 48 minutes.
        assert!(!token_refresh_due(0, 3600, 0));
        assert!(!token_refresh_due(0, 3600, 2879));
        assert!(token_refresh_due(0, 3600, 2880));
        // A year's token: a day at most.
        let year = 365 * 24 * 3600;
        assert!(!token_refresh_due(0, year, 86_399));
        assert!(token_refresh_due(0, year, 86_400));
        // Expired or nonsensical: at once.
        assert!(token_refresh_due(100, 50, 100));
    }

    #[test]
    fn variables_expand_like_kubernetes() {
        let vars: BTreeMap<&str, &str> = [("A", "1"), ("B", "two")].into();
        assert_eq!(expand("x$(A)y$(B)", &vars), "x1ytwo");
        assert_eq!(expand("$(MISSING)", &vars), "$(MISSING)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("cost $5", &vars), "cost $5");
    }

    #[test]
    fn pull_secrets_become_registry_credentials() {
        let pair = |k: &str, v: Value| (k.to_string(), v.to_string());
        let cred = |r: &str, u: &str, p: &str| images::RegistryCredential {
            registry: r.into(),
            username: u.into(),
            password: p.into(),
        };
        // "dTpw" is base64 of "u:p".
        let data = vec![
            pair(
                ".dockerconfigjson",
                serde_json::json!({"auths": {
                    "127.0.0.1:5000": {"username": "alice", "password": "s3cret"},
                    "https://index.docker.io/v1/": {"auth": "dTpw"},
                }}),
            ),
            pair(
                ".dockercfg",
                serde_json::json!({"old.example": {"auth": "dTpw"}}),
            ),
            pair("other", serde_json::json!({"auths": {"x": {}}})),
        ];
        assert_eq!(
            registry_credentials(&data),
            vec![
                cred("127.0.0.1:5000", "alice", "s3cret"),
                cred("index.docker.io", "u", "p"),
                cred("old.example", "u", "p"),
            ]
        );
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(decode_base64("aGVsbG8="), Some("hello".into()));
        assert_eq!(
            data_of(&serde_json::json!({"data": {"k": "aGVsbG8="}}), true),
            vec![("k".to_string(), "hello".to_string())]
        );
    }

    #[test]
    fn a_status_with_sub_second_times_equals_its_stored_copy() {
        use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let computed = PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time("2026-12-04T15:46:31.123456789Z".parse().unwrap())),
                ..Default::default()
            }]),
            ..Default::default()
        };
        // What the API hands back: whole seconds.
        let stored: PodStatus =
            serde_json::from_value(serde_json::to_value(&computed).unwrap()).unwrap();
        assert_ne!(stored, computed, "the structs differ in the nanoseconds");
        assert!(status_json_eq(Some(&stored), &computed));
        let mut changed = computed.clone();
        changed.phase = Some("Failed".into());
        assert!(!status_json_eq(Some(&stored), &changed));
        assert!(!status_json_eq(None, &computed));
    }
}
