//! A controller worker over the in-process API gives way to other tasks on
//! a single-threaded runtime (the simulation's). In-process requests never
//! wait, so without that a worker with a long queue held the thread for the
//! whole queue: at 5,000 nodes / 50,000 pods the garbage collector was not
//! polled for 160,000 revisions, its store watch overflowed and it relisted
//! everything, several times a run.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiserver::{ApiServer, Config};
use client::Client;
use controllers::plan::{Action, Plan, Resource};
use controllers::runtime::{AnyObject, Caches, Controller, ControllerManager, ObjectKey, Options};
use serde_json::json;
use store::MemoryStore;

const KEYS: usize = 600;

/// Creates one Lease per key (once: later resyncs find it done); counts the
/// keys it has finished.
struct Writer {
    done: Arc<AtomicUsize>,
    created: Mutex<HashSet<ObjectKey>>,
}

impl Controller for Writer {
    fn name(&self) -> &'static str {
        "writer"
    }
    fn reads(&self) -> &'static [Resource] {
        &[]
    }
    fn keys_for(&self, _: &Caches, _: &AnyObject) -> Vec<ObjectKey> {
        Vec::new()
    }
    fn all_keys(&self, _: &Caches) -> Vec<ObjectKey> {
        (0..KEYS)
            .map(|i| ObjectKey::new("default", &format!("lease-{i:04}")))
            .collect()
    }
    fn reconcile(&self, _: &Caches, key: &ObjectKey, _: jiff::Timestamp) -> Plan {
        if self.created.lock().unwrap().contains(key) {
            return Plan::default();
        }
        Plan {
            actions: vec![Action::Create {
                resource: Resource::Leases,
                namespace: Some(key.namespace.clone()),
                object: json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": key.name},
                }),
            }],
            requeue_after: None,
        }
    }
    fn applied(&self, key: &ObjectKey, ok: bool) {
        let mut created = self.created.lock().unwrap();
        if ok && created.insert(key.clone()) {
            self.done.store(created.len(), Ordering::SeqCst);
        }
    }
}

// Real time: with paused time the runtime would never be idle (the probe
// below is always ready), so the first resync would never come.
#[tokio::test]
async fn a_worker_with_a_long_queue_lets_other_tasks_run() {
    let clock = Arc::new(sim::clock::SimClock::new());
    let server = ApiServer::new(
        MemoryStore::new(),
        Config {
            admin_tokens: vec!["t".into()],
            clock: clock.clone(),
            random: Arc::new(sim::clock::SeededRandom::new(1)),
        },
    );
    server.start().await.expect("the API server starts");
    let done = Arc::new(AtomicUsize::new(0));
    let manager = ControllerManager::new(
        Client::in_process(server.clone(), "t", "writer"),
        clock,
        vec![Arc::new(Writer {
            done: done.clone(),
            created: Mutex::default(),
        })],
        Options {
            workers_per_controller: 1,
            // The first resync queues every key at once.
            resync_period: Duration::from_millis(20),
            ..Options::default()
        },
    );
    let _running = manager.spawn();
    // Another task: notes how far the worker had got each time it ran.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let probe = {
        let (done, seen) = (done.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let n = done.load(Ordering::SeqCst);
                seen.lock().unwrap().push(n);
                if n >= KEYS {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    tokio::time::timeout(Duration::from_secs(120), probe)
        .await
        .expect("the worker finished its queue")
        .unwrap();
    let seen = seen.lock().unwrap();
    let between: Vec<usize> = seen
        .iter()
        .copied()
        .filter(|n| (1..KEYS).contains(n))
        .collect();
    assert!(
        between.len() >= 2,
        "the other task ran only before and after the worker's queue of {KEYS} keys \
         (it saw {:?}): the worker held the thread for the whole queue",
        {
            let mut distinct = seen.clone();
            distinct.dedup();
            distinct
        }
    );
}
