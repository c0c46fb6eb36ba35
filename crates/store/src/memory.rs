//! A store that lives only in memory and applies each write synchronously,
//! on the caller's task: no committer thread, no disk. Same MVCC state and
//! the same evaluation as the embedded store, so it keeps the same contract
//! (it passes the conformance suite); what it adds is determinism — the
//! order of revisions is exactly the order of calls — which the
//! control-plane simulation needs to replay a seed.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::embedded::mvcc::{Mutation, MvccState};
use crate::embedded::{publish, watch_stream, BatchEvaluation, Operation, Outcome, Watcher};
use crate::{RangeRequest, RangeResponse, Result, Revision, Store, StoreError, WatchStream};

/// Keeps at most about this many revisions of history (then compacts to half).
pub const DEFAULT_HISTORY_REVISIONS: i64 = 10_000;

/// Sees every committed batch of events, in revision order, synchronously
/// (see [`MemoryStore::on_commit`]).
pub type CommitObserver = Box<dyn FnMut(&[crate::Event]) + Send>;

pub struct MemoryStore {
    inner: Mutex<Inner>,
    history_revisions: i64,
    watch_channel_capacity: usize,
}

struct Inner {
    state: MvccState,
    watchers: Vec<Watcher>,
    observers: Vec<CommitObserver>,
}

impl MemoryStore {
    pub fn new() -> Arc<MemoryStore> {
        MemoryStore::with_history(DEFAULT_HISTORY_REVISIONS)
    }

    /// A store that compacts automatically once more than `history_revisions`
    /// revisions of history are kept.
    pub fn with_history(history_revisions: i64) -> Arc<MemoryStore> {
        Arc::new(MemoryStore {
            inner: Mutex::new(Inner {
                state: MvccState::default(),
                watchers: Vec::new(),
                observers: Vec::new(),
            }),
            history_revisions: history_revisions.max(1),
            watch_channel_capacity: 4096,
        })
    }

    /// Calls `observer` with every batch of events committed from now on,
    /// on the writer's task before the write returns. Unlike a watch it
    /// cannot fall behind (there is no channel to overflow), so a checker
    /// that must see every revision — the simulation's invariant checker —
    /// uses this. The observer runs under the store's lock: it must not
    /// call the store.
    pub fn on_commit(&self, observer: CommitObserver) {
        self.lock().observers.push(observer);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn execute(&self, operation: Operation) -> Result<Outcome> {
        let mut inner = self.lock();
        let (outcome, mut mutations, events) = {
            let mut evaluation = BatchEvaluation::new(&inner.state);
            let outcome = evaluation.evaluate(operation);
            let (revision, compacted) = (evaluation.revision, evaluation.compacted);
            let (mut mutations, events) = (evaluation.mutations, evaluation.events);
            if revision - compacted > self.history_revisions {
                mutations.push(Mutation::Compact {
                    revision: revision - self.history_revisions / 2,
                });
            }
            (outcome, mutations, events)
        };
        if outcome.is_err() {
            mutations.clear();
        }
        for mutation in &mutations {
            if let Err(error) = inner.state.apply(mutation) {
                panic!("applying an evaluated write failed: {error}");
            }
        }
        if !events.is_empty() {
            for observer in &mut inner.observers {
                observer(&events);
            }
            publish(&mut inner.watchers, &events);
        }
        outcome
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<(Option<crate::KeyValue>, Revision)> {
        let inner = self.lock();
        Ok((inner.state.latest(key), inner.state.revision))
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        self.lock().state.range(&request)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<crate::KeyValue> {
        match self.execute(Operation::Create {
            key: key.to_owned(),
            value,
        })? {
            Outcome::Written(kv) => Ok(kv),
            _ => unreachable!("create answers with the written key"),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<crate::KeyValue> {
        match self.execute(Operation::Update {
            key: key.to_owned(),
            value,
            expected: expected_mod_revision,
        })? {
            Outcome::Written(kv) => Ok(kv),
            _ => unreachable!("update answers with the written key"),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<(Revision, crate::KeyValue)> {
        match self.execute(Operation::Delete {
            key: key.to_owned(),
            expected: expected_mod_revision,
        })? {
            Outcome::Deleted(revision, prev) => Ok((revision, prev)),
            _ => unreachable!("delete answers with the deleted key"),
        }
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream> {
        let (sender, receiver) = mpsc::channel(self.watch_channel_capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        let mut inner = self.lock();
        let state = &inner.state;
        if start_revision > 0 && start_revision < state.compacted {
            return Err(StoreError::Compacted {
                requested: start_revision,
                compacted: state.compacted,
            });
        }
        let replay = if start_revision > 0 && start_revision <= state.revision {
            state.events_since(prefix, start_revision)
        } else {
            Vec::new()
        };
        let start_revision = start_revision.max(state.revision + 1);
        inner.watchers.push(Watcher {
            prefix: prefix.to_owned(),
            start_revision,
            sender,
            lagged: lagged.clone(),
        });
        Ok(watch_stream(replay, receiver, lagged))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.execute(Operation::Compact { revision }).map(|_| ())
    }

    async fn revisions(&self) -> Result<(Revision, Revision)> {
        let inner = self.lock();
        Ok((inner.state.revision, inner.state.compacted))
    }
}
