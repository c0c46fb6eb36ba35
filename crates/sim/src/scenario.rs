//! One simulation run: set up the control plane, register fake nodes, drive
//! a scenario through the API like a user would (create Deployments, roll
//! them out, lose nodes, scale, delete with cascading), and check invariants
//! all along and convergence at the end.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apiserver::gc::ObjectMeta;
use apiserver::{ApiServer, Config};
use client::{Client, ClientError, DeleteOptions, Gvr, InProcess, PatchType};
use controllers::runtime::{ControllerManager, Options};
use serde_json::{json, Value};
use store::{Event, MemoryStore, Store};

use crate::checker::{Checker, Violation};
use crate::clock::{SeededRandom, SimClock};
use crate::faults::{FaultRates, FaultyTransport};
use crate::kubelet::{self, Dead, FakeKubelet, FakeNodeAgent};
use crate::progress::Progress;

const PODS: Gvr = Gvr::new("", "v1", "pods");
const NODES: Gvr = Gvr::new("", "v1", "nodes");
const DEPLOYMENTS: Gvr = Gvr::new("apps", "v1", "deployments");
const REPLICA_SETS: Gvr = Gvr::new("apps", "v1", "replicasets");
const NAMESPACE: &str = "sim";
const TOKEN: &str = "simulation-token";

#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub write_conflict: f64,
    pub write_error: f64,
    pub watch_drop: f64,
    /// Chance per look that a running pod's container crashes.
    pub crash_rate: f64,
    /// Nodes deleted in the middle of the run.
    pub lost_nodes: usize,
}

impl Faults {
    pub fn any(&self) -> bool {
        self.write_conflict > 0.0
            || self.write_error > 0.0
            || self.watch_drop > 0.0
            || self.crash_rate > 0.0
            || self.lost_nodes > 0
    }
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: usize,
    pub pods: usize,
    pub seed: u64,
    pub pods_per_deployment: usize,
    pub faults: Faults,
    /// Virtual time allowed for each phase to converge.
    pub phase_deadline: Duration,
}

impl SimConfig {
    pub fn new(nodes: usize, pods: usize, seed: u64) -> SimConfig {
        SimConfig {
            nodes,
            pods,
            seed,
            pods_per_deployment: 100,
            faults: Faults::default(),
            phase_deadline: Duration::from_secs(1800),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub scheduled: usize,
    pub schedule_wall: Duration,
    pub schedule_virtual: Duration,
    pub total_wall: Duration,
    pub total_virtual: Duration,
    /// Committed changes (store revisions) checked.
    pub steps: u64,
    /// A hash of every committed change: equal for equal seeds.
    pub digest: u64,
    pub violations: Vec<Violation>,
    /// What happened, phase by phase.
    pub log: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn pods_per_second(&self) -> f64 {
        self.scheduled as f64 / self.schedule_wall.as_secs_f64().max(1e-9)
    }
}

/// The process's resident set in MB (`VmRSS`), or 0 where /proc has none.
fn resident_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// Runs one simulation to the end on a fresh single-threaded runtime with
/// paused (virtual) time.
pub fn run(config: &SimConfig) -> Report {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(simulate(config.clone()))
}

struct Recorder {
    checker: Checker,
    progress: Progress,
    digest: u64,
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Only the fields the checker and the progress view read (see
/// [`crate::prune`]).
fn decode(bytes: &[u8]) -> Option<Value> {
    crate::prune::decode_checked(bytes)
}

/// One committed change into the digest, the checker and the progress view.
/// Only the kinds they reason about are decoded, each new value once; every
/// change is a step.
fn record(r: &mut Recorder, event: &Event) {
    let revision = event.revision();
    let key = event.key();
    r.digest = fnv(r.digest, key.as_bytes());
    r.digest = fnv(r.digest, &revision.to_le_bytes());
    if let Event::Put { kv, .. } = event {
        r.digest = fnv(r.digest, &kv.value);
    }
    let checked = Checker::checks_key(key);
    match event {
        Event::Put { kv, .. } => {
            // The checker keys its state by object, so a change needs only
            // the new value.
            let new = (checked || r.progress.needs_value(key))
                .then(|| decode(&kv.value))
                .flatten();
            r.checker
                .observe(revision, None, new.as_ref().filter(|_| checked));
            r.progress
                .observe(key, Some(new.as_ref().unwrap_or(&Value::Null)));
        }
        Event::Delete { prev, .. } => {
            let old = checked.then(|| decode(&prev.value)).flatten();
            r.checker.observe(revision, old.as_ref(), None);
            r.progress.observe(key, None);
        }
    }
}

async fn simulate(config: SimConfig) -> Report {
    let wall = Instant::now();
    let clock = Arc::new(SimClock::new());
    let random = Arc::new(SeededRandom::new(config.seed));
    let store = MemoryStore::new();
    let server = ApiServer::new(
        store.clone(),
        Config {
            admin_tokens: vec![TOKEN.into()],
            clock: clock.clone(),
            random: random.clone(),
        },
    );
    let mut report = Report {
        seed: config.seed,
        ..Default::default()
    };
    if let Err(e) = server.start().await {
        report.violations.push(Violation {
            revision: 0,
            message: format!("bootstrap failed: {e}"),
        });
        return report;
    }

    // The checker sees every committed change, in revision order.
    let faults = &config.faults;
    let recorder = Arc::new(Mutex::new(Recorder {
        checker: Checker::new(faults.crash_rate == 0.0 && faults.lost_nodes == 0),
        progress: Progress::new(NAMESPACE),
        digest: 0xcbf29ce484222325,
    }));
    // A commit observer, not a watch: it runs on the writer's task before
    // the write returns, so it cannot fall behind and miss revisions (a
    // watch's channel overflowed while thousands of nodes registered
    // without a yield, and the checker silently stopped at 4,096 changes).
    {
        let recorder = recorder.clone();
        store.on_commit(Box::new(move |batch| {
            let mut r = recorder.lock().unwrap_or_else(|p| p.into_inner());
            for event in batch {
                record(&mut r, event);
            }
        }));
    }
    let observed_from = store.revisions().await.map(|(r, _)| r).unwrap_or(0);

    let direct = Client::in_process(server.clone(), TOKEN, "sim");
    let transport = Arc::new(FaultyTransport::new(
        Arc::new(InProcess::new(server.clone(), TOKEN)),
        FaultRates {
            write_conflict: faults.write_conflict,
            write_error: faults.write_error,
            watch_drop: faults.watch_drop,
        },
        random.clone(),
    ));
    let controller_client = Client::new(transport, "kube-controller-manager");
    let mut controllers = controllers::wiring::all();
    controllers.push(Arc::new(controllers::scheduling::SchedulerController::new()));
    let dead = Dead::default();
    controllers.push(Arc::new(FakeKubelet::new(
        random.clone(),
        faults.crash_rate,
        dead.clone(),
    )));
    controllers.push(Arc::new(FakeNodeAgent::new(dead.clone())));
    let manager = ControllerManager::new(
        controller_client,
        clock.clone(),
        controllers,
        Options::default(),
    );
    let _running = manager.spawn();

    // `DROVER_SIM_PROGRESS=1` also prints each line as it happens, with
    // the wall time and the process's resident memory (for profiling a
    // phase).
    let live = std::env::var_os("DROVER_SIM_PROGRESS").is_some();
    let log = |report: &mut Report, line: String| {
        let line = format!("[{:>8.1}s] {line}", clock.elapsed().as_secs_f64());
        if live {
            eprintln!(
                "{line} (wall {:.1} s, rss {} MB)",
                wall.elapsed().as_secs_f64(),
                resident_mb()
            );
        }
        report.log.push(line);
    };

    // Nodes: 8 CPUs, 32 GiB, 110 pods each.
    for i in 0..config.nodes {
        if i % 64 == 63 {
            // In-process requests never wait: without a yield the informers
            // and the garbage collector would not run until every node is
            // registered, and their store watches would overflow.
            tokio::task::yield_now().await;
        }
        if let Err(e) = direct
            .create(NODES, None, &kubelet::node(i, "8", "32Gi", "110"))
            .await
        {
            report.violations.push(Violation {
                revision: 0,
                message: format!("registering node {i}: {e}"),
            });
            return report;
        }
    }
    let _ = direct
        .create(
            Gvr::new("", "v1", "namespaces"),
            None,
            &json!({"metadata": {"name": NAMESPACE}}),
        )
        .await;
    log(&mut report, format!("registered {} nodes", config.nodes));

    // Deployments totalling `pods` replicas.
    let per = config.pods_per_deployment.max(1);
    let mut sizes = Vec::new();
    let mut left = config.pods;
    while left > 0 {
        let n = left.min(per);
        sizes.push(n);
        left -= n;
    }
    let schedule_started = (Instant::now(), clock.elapsed());
    for (i, replicas) in sizes.iter().enumerate() {
        let d = deployment(&format!("app-{i:04}"), *replicas);
        if let Err(e) = direct.create(DEPLOYMENTS, Some(NAMESPACE), &d).await {
            report.violations.push(Violation {
                revision: 0,
                message: format!("creating deployment {i}: {e}"),
            });
            return report;
        }
    }
    let deadline = config.phase_deadline;
    let want = config.pods;
    let scheduled = wait_for(&clock, deadline, || async {
        let bound = progress(&recorder, Progress::bound);
        (bound >= want).then_some(bound)
    })
    .await;
    match scheduled {
        Some(n) => {
            report.scheduled = n;
            report.schedule_wall = schedule_started.0.elapsed();
            report.schedule_virtual = clock.elapsed() - schedule_started.1;
            let line = format!(
                "scheduled {n} pods on {} nodes in {:.3} s: {:.0} pods/s",
                config.nodes,
                report.schedule_wall.as_secs_f64(),
                report.pods_per_second()
            );
            log(&mut report, line);
            if std::env::var_os("DROVER_SIM_REQUESTS").is_some() {
                for l in server
                    .metrics_text()
                    .lines()
                    .filter(|l| l.starts_with("apiserver_request_total"))
                {
                    eprintln!("{l}");
                }
            }
        }
        None => {
            fail(&mut report, &direct, "pods were not all scheduled").await;
        }
    }
    let names: Vec<String> = (0..sizes.len()).map(|i| format!("app-{i:04}")).collect();
    if !wait_complete(&clock, deadline, &recorder, &names).await {
        fail(&mut report, &direct, "deployments did not become available").await;
    }
    log(
        &mut report,
        format!("{} deployments available", names.len()),
    );

    // A rolling update of every deployment.
    for name in &names {
        let patch =
            json!({"spec": {"template": {"metadata": {"annotations": {"sim/rollout": "1"}}}}});
        if let Err(e) = direct
            .patch(
                DEPLOYMENTS,
                Some(NAMESPACE),
                name,
                None,
                PatchType::Merge,
                &patch,
            )
            .await
        {
            fail(&mut report, &direct, &format!("rolling out {name}: {e}")).await;
        }
    }
    if !wait_complete(&clock, deadline, &recorder, &names).await {
        fail(&mut report, &direct, "rolling update did not complete").await;
    }
    log(&mut report, "rolling update complete".into());

    // Lose nodes: their kubelets stop renewing Leases; the node lifecycle
    // controller marks them Unknown and taints them unreachable; their pods
    // are evicted once their toleration (60 s here) runs out and replaced
    // elsewhere. Then the dead nodes are deleted (as an operator or a cloud
    // node controller would), and pod GC removes what is left on them.
    if faults.lost_nodes > 0 {
        let mut lost = BTreeSet::new();
        while lost.len() < faults.lost_nodes.min(config.nodes.saturating_sub(1)) {
            lost.insert(random.below(config.nodes as u64) as usize);
        }
        let lost_names: BTreeSet<String> = lost.iter().map(|i| format!("node-{i:05}")).collect();
        let on_lost_nodes = || progress(&recorder, |p| p.on_nodes(&lost_names));
        let on_lost = on_lost_nodes().0;
        for name in &lost_names {
            dead.kill(name);
        }
        let tainted = wait_for(&clock, deadline, || async {
            progress(&recorder, |p| {
                p.unreachable(&lost_names) == lost_names.len()
            })
            .then_some(())
        })
        .await;
        if tainted.is_none() {
            fail(
                &mut report,
                &direct,
                "lost nodes were not marked unreachable",
            )
            .await;
        }
        log(
            &mut report,
            format!("{} nodes unreachable and tainted", lost_names.len()),
        );
        if !wait_complete(&clock, deadline, &recorder, &names).await {
            fail(&mut report, &direct, "did not recover from lost nodes").await;
        }
        let evicted = wait_for(&clock, deadline, || async {
            let (on, evicted) = on_lost_nodes();
            (on == evicted).then_some(evicted)
        })
        .await;
        match evicted {
            Some(n) => log(
                &mut report,
                format!("{n} of {on_lost} pods on lost nodes evicted and replaced"),
            ),
            None => fail(&mut report, &direct, "pods on lost nodes were not evicted").await,
        }
        for name in &lost_names {
            let _ = direct
                .delete(NODES, None, name, &DeleteOptions::default())
                .await;
        }
        let drained = wait_for(&clock, deadline, || async {
            (on_lost_nodes().0 == 0).then_some(())
        })
        .await;
        if drained.is_none() {
            fail(
                &mut report,
                &direct,
                "pods on deleted nodes were not garbage collected",
            )
            .await;
        }
        log(
            &mut report,
            format!("deleted {} lost nodes", lost_names.len()),
        );
    }

    // Scale the first deployment up and the last one down.
    if let (Some(first), Some(last)) = (names.first(), names.last()) {
        for (name, delta) in [(first, 2i64), (last, -1i64)] {
            let current = direct
                .get(DEPLOYMENTS, Some(NAMESPACE), name)
                .await
                .ok()
                .and_then(|d| d.pointer("/spec/replicas").and_then(Value::as_i64))
                .unwrap_or(1);
            let patch = json!({"spec": {"replicas": (current + delta).max(0)}});
            let _ = direct
                .patch(
                    DEPLOYMENTS,
                    Some(NAMESPACE),
                    name,
                    None,
                    PatchType::Merge,
                    &patch,
                )
                .await;
        }
        if !wait_complete(&clock, deadline, &recorder, &names).await {
            fail(&mut report, &direct, "scaling did not converge").await;
        }
        log(&mut report, "scaled".into());
    }

    // Delete half the deployments, cascading in the background.
    let (deleted, kept) = names.split_at(names.len() / 2);
    for name in deleted {
        let options = DeleteOptions {
            propagation: Some("Background".into()),
            ..Default::default()
        };
        let _ = direct
            .delete(DEPLOYMENTS, Some(NAMESPACE), name, &options)
            .await;
    }
    let gone: BTreeSet<String> = deleted.iter().cloned().collect();
    let cleaned = wait_for(&clock, deadline, || async {
        progress(&recorder, |p| p.left_of(&gone) == 0).then_some(())
    })
    .await;
    if cleaned.is_none() {
        fail(
            &mut report,
            &direct,
            "cascading deletion left ReplicaSets or pods behind",
        )
        .await;
    }
    log(
        &mut report,
        format!(
            "deleted {} deployments with their ReplicaSets and pods",
            deleted.len()
        ),
    );

    // Final convergence: what is left is complete and nothing is orphaned.
    if !wait_complete(&clock, deadline, &recorder, kept).await {
        fail(
            &mut report,
            &direct,
            "remaining deployments did not converge",
        )
        .await;
    }
    check_no_orphans(&mut report, &direct).await;

    report.total_wall = wall.elapsed();
    report.total_virtual = clock.elapsed();
    let last = store.revisions().await.map(|(r, _)| r).unwrap_or(0);
    let r = recorder.lock().unwrap_or_else(|p| p.into_inner());
    report.steps = r.checker.steps;
    // Every revision committed since the observer was installed is one step.
    if report.steps != (last - observed_from) as u64 {
        report.violations.push(Violation {
            revision: last,
            message: format!(
                "the checker saw {} changes of the {} committed",
                report.steps,
                last - observed_from
            ),
        });
    }
    report.digest = r.digest;
    report
        .violations
        .extend(r.checker.violations.iter().cloned());
    report
}

fn deployment(name: &str, replicas: usize) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": "registry.local/app:1",
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    }],
                    // Evicted a minute after their node becomes unreachable
                    // (the default is 300 s).
                    "tolerations": [{
                        "key": "node.kubernetes.io/unreachable",
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 60,
                    }],
                },
            },
        },
    })
}

/// Polls `probe` every virtual second until it answers or `deadline` passes.
async fn wait_for<T, F, Fut>(clock: &SimClock, deadline: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = clock.elapsed() + deadline;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if clock.elapsed() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Reads the progress view (the committed state at this revision).
fn progress<T>(recorder: &Mutex<Recorder>, read: impl FnOnce(&Progress) -> T) -> T {
    read(&recorder.lock().unwrap_or_else(|p| p.into_inner()).progress)
}

/// Every named deployment is complete: all replicas updated and available,
/// no old ones, status observed for the current generation — and the pods
/// agree: exactly `replicas` ready, not terminating (from the progress view:
/// the committed state, without listing).
async fn wait_complete(
    clock: &SimClock,
    deadline: Duration,
    recorder: &Mutex<Recorder>,
    names: &[String],
) -> bool {
    wait_for(clock, deadline, || async {
        progress(recorder, |p| p.complete(names)).then_some(())
    })
    .await
    .is_some()
}

fn deployment_complete(d: &Value) -> bool {
    let int = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let replicas = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    int("/status/observedGeneration") >= int("/metadata/generation")
        && int("/status/updatedReplicas") == replicas
        && int("/status/replicas") == replicas
        && int("/status/availableReplicas") == replicas
}

async fn fail(report: &mut Report, client: &Client, what: &str) {
    let mut detail = String::new();
    if let Ok(list) = client.list(DEPLOYMENTS, Some(NAMESPACE), None, None).await {
        for d in list
            .items
            .iter()
            .filter(|d| !deployment_complete(d))
            .take(3)
        {
            detail.push_str(&format!(
                " {}: spec {} status {};",
                d.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                d.pointer("/spec/replicas").unwrap_or(&Value::Null),
                d.get("status").unwrap_or(&Value::Null)
            ));
        }
    }
    if let Ok(pods) = client.list(PODS, Some(NAMESPACE), None, None).await {
        let pending = pods
            .items
            .iter()
            .filter(|p| p.pointer("/spec/nodeName").is_none())
            .count();
        detail.push_str(&format!(
            " pods: {} ({} unbound)",
            pods.items.len(),
            pending
        ));
    }
    report.violations.push(Violation {
        revision: 0,
        message: format!("{what}:{detail}"),
    });
}

/// Every pod and ReplicaSet whose controller reference names an owner that
/// no longer exists is a leak of the garbage collector or a controller.
/// Reads the lists page by page and keeps only the metadata it checks (what
/// the garbage collector's index keeps): the whole pod list decoded into
/// `Value`s was the largest single allocation of a run (≈ 20 KB a pod).
async fn check_no_orphans(report: &mut Report, client: &Client) {
    let (Ok(deployments), Ok(replica_sets), Ok(pods)) = (
        list_metadata(client, DEPLOYMENTS).await,
        list_metadata(client, REPLICA_SETS).await,
        list_metadata(client, PODS).await,
    ) else {
        return;
    };
    let undecodable = deployments
        .iter()
        .chain(&replica_sets)
        .chain(&pods)
        .filter(|o| o.is_none())
        .count();
    if undecodable > 0 {
        report.violations.push(Violation {
            revision: 0,
            message: format!("orphan check: {undecodable} listed objects have no metadata"),
        });
        return;
    }
    let uids: BTreeSet<&str> = deployments
        .iter()
        .chain(&replica_sets)
        .flatten()
        .map(|o| o.uid.as_str())
        .collect();
    for o in replica_sets.iter().chain(&pods).flatten() {
        for r in &o.owners {
            if !uids.contains(r.uid.as_str()) {
                report.violations.push(Violation {
                    revision: 0,
                    message: format!(
                        "orphan: {} {} owned by missing {} {}",
                        o.kind, o.name, r.kind, r.name
                    ),
                });
            }
        }
    }
}

/// The metadata of every object of a kind in the scenario's namespace, page
/// by page (`None` for an item without metadata).
async fn list_metadata(client: &Client, gvr: Gvr) -> Result<Vec<Option<ObjectMeta>>, ClientError> {
    let mut items = Vec::new();
    client
        .list_pages(gvr, Some(NAMESPACE), None, None, |page| {
            items.extend(
                page.iter()
                    .map(|item| ObjectMeta::from_stored("", item.get().as_bytes())),
            )
        })
        .await?;
    Ok(items)
}
