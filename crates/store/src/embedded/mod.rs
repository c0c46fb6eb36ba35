//! The embedded backend, drover's default datastore: the whole MVCC state in
//! memory, made durable by a group-committed write-ahead log plus periodic
//! snapshots on local disk.
//!
//! One committer thread owns the log. Writers queue operations; the committer
//! takes everything queued, evaluates each compare against the state as changed
//! by the earlier operations of the same batch, appends the records, calls
//! fdatasync once, and only then applies the batch to memory, publishes the
//! events and answers the writers. So readers never see a write that is not
//! durable, and one fsync is paid per batch, not per write.

mod compaction;
mod disk;
pub(crate) mod mvcc;

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use self::compaction::{auto_compaction_target, record_sample, RetentionPolicy, RevisionSample};
use self::disk::io_error;
use self::mvcc::{Mutation, MvccState};
use crate::{
    Event, KeyValue, RangeRequest, RangeResponse, Result, Revision, Store, StoreError, WatchStream,
};

/// Tuning of the embedded store. `Default` is what the server uses.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Write a snapshot and drop the older log once this many log bytes were
    /// written since the last snapshot. Disk use is about this plus two snapshots.
    pub snapshot_threshold_bytes: u64,
    /// Keep at most this many revisions of history (older ones are compacted away).
    pub history_max_revisions: Option<u64>,
    /// Keep history at most this old.
    pub history_max_age: Option<Duration>,
    /// How often the committer looks at the age limit when idle.
    pub compaction_check_interval: Duration,
    /// Batches of events a watcher may have buffered before it is closed with
    /// [`StoreError::WatchLagged`].
    pub watch_channel_capacity: usize,
    /// Most operations in one group commit, to bound a batch's latency.
    pub max_batch_operations: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            snapshot_threshold_bytes: 64 << 20,
            history_max_revisions: Some(10_000),
            history_max_age: Some(Duration::from_secs(300)),
            compaction_check_interval: Duration::from_secs(1),
            watch_channel_capacity: 1024,
            max_batch_operations: 4096,
        }
    }
}

pub(crate) enum Operation {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

pub(crate) enum Outcome {
    Written(KeyValue),
    Deleted(Revision, KeyValue),
    Compacted,
}

/// Evaluates the operations of one batch in order, each against the state as
/// changed by the earlier ones, collecting what to log and what to publish.
/// The committer uses it for group commit; `MemoryStore` for one operation at a time.
pub(crate) struct BatchEvaluation<'a> {
    state: &'a MvccState,
    /// Keys written earlier in this batch, as they will be once it commits.
    overlay: HashMap<String, Option<KeyValue>>,
    pub(crate) revision: Revision,
    pub(crate) compacted: Revision,
    pub(crate) mutations: Vec<Mutation>,
    pub(crate) events: Vec<Event>,
}

impl<'a> BatchEvaluation<'a> {
    pub(crate) fn new(state: &'a MvccState) -> Self {
        BatchEvaluation {
            state,
            overlay: HashMap::new(),
            revision: state.revision,
            compacted: state.compacted,
            mutations: Vec::new(),
            events: Vec::new(),
        }
    }

    fn current(&self, key: &str) -> Option<KeyValue> {
        match self.overlay.get(key) {
            Some(kv) => kv.clone(),
            None => self.state.latest(key),
        }
    }

    pub(crate) fn evaluate(&mut self, operation: Operation) -> Result<Outcome> {
        match operation {
            Operation::Create { key, value } => match self.current(&key) {
                Some(_) => Err(StoreError::AlreadyExists { key }),
                None => {
                    self.revision += 1;
                    let kv = KeyValue {
                        key,
                        value,
                        create_revision: self.revision,
                        mod_revision: self.revision,
                        version: 1,
                    };
                    self.overlay.insert(kv.key.clone(), Some(kv.clone()));
                    self.mutations.push(Mutation::Put(kv.clone()));
                    self.events.push(Event::Put {
                        kv: kv.clone(),
                        prev: None,
                    });
                    Ok(Outcome::Written(kv))
                }
            },
            Operation::Update {
                key,
                value,
                expected,
            } => match self.current(&key) {
                None => Err(StoreError::NotFound { key }),
                Some(prev) if prev.mod_revision != expected => Err(StoreError::Conflict {
                    key,
                    expected,
                    current: Some(prev),
                }),
                Some(prev) => {
                    self.revision += 1;
                    let kv = KeyValue {
                        key,
                        value,
                        create_revision: prev.create_revision,
                        mod_revision: self.revision,
                        version: prev.version + 1,
                    };
                    self.overlay.insert(kv.key.clone(), Some(kv.clone()));
                    self.mutations.push(Mutation::Put(kv.clone()));
                    self.events.push(Event::Put {
                        kv: kv.clone(),
                        prev: Some(prev),
                    });
                    Ok(Outcome::Written(kv))
                }
            },
            Operation::Delete { key, expected } => match self.current(&key) {
                None => Err(StoreError::NotFound { key }),
                Some(prev) if expected.is_some_and(|e| e != prev.mod_revision) => {
                    Err(StoreError::Conflict {
                        key,
                        expected: expected.unwrap_or_default(),
                        current: Some(prev),
                    })
                }
                Some(prev) => {
                    self.revision += 1;
                    let revision = self.revision;
                    self.overlay.insert(key.clone(), None);
                    self.mutations.push(Mutation::Delete { key, revision });
                    self.events.push(Event::Delete {
                        revision,
                        prev: prev.clone(),
                    });
                    Ok(Outcome::Deleted(revision, prev))
                }
            },
            Operation::Compact { revision: target } => {
                if target > self.revision {
                    Err(StoreError::FutureRevision {
                        requested: target,
                        current: self.revision,
                    })
                } else {
                    // At or below the compacted revision there is nothing to do.
                    if target > self.compacted {
                        self.compacted = target;
                        self.mutations.push(Mutation::Compact { revision: target });
                    }
                    Ok(Outcome::Compacted)
                }
            }
        }
    }
}

struct Request {
    operation: Operation,
    reply: oneshot::Sender<Result<Outcome>>,
}

pub(crate) struct Watcher {
    pub(crate) prefix: String,
    /// Events below this are not for this watcher (a watch may start in the future).
    pub(crate) start_revision: Revision,
    pub(crate) sender: mpsc::Sender<Result<Vec<Event>>>,
    pub(crate) lagged: Arc<AtomicBool>,
}

/// What readers, watchers and the committer share. Lock order: `state`, then `watchers`.
struct Shared {
    state: RwLock<MvccState>,
    watchers: Mutex<Vec<Watcher>>,
}

impl Shared {
    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, MvccState> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, MvccState> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
    fn lock_watchers(&self) -> std::sync::MutexGuard<'_, Vec<Watcher>> {
        self.watchers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The embedded store. Dropping the last handle stops the committer (after the
/// batch in flight) and ends every watch with `Unavailable`.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    requests: Option<std_mpsc::Sender<Request>>,
    committer: Option<JoinHandle<()>>,
    watch_channel_capacity: usize,
    // Held for the store's lifetime so a second process cannot open the directory.
    _lock: File,
}

impl EmbeddedStore {
    /// Open (creating if needed) the store in `dir`, recovering from its snapshot
    /// and log. Fails if another process has it open.
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<Arc<EmbeddedStore>> {
        fs::create_dir_all(dir).map_err(|e| io_error("creating data directory", dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error("opening lock file", &lock_path, e))?;
        lock.try_lock().map_err(|e| {
            StoreError::Unavailable(format!(
                "data directory {} is in use by another process: {e}",
                dir.display()
            ))
        })?;
        let recovered = disk::recover(dir)?;
        tracing::info!(
            dir = %dir.display(),
            revision = recovered.state.revision,
            compacted = recovered.state.compacted,
            keys = recovered.state.keys.len(),
            "embedded store opened"
        );
        let shared = Arc::new(Shared {
            state: RwLock::new(recovered.state),
            watchers: Mutex::new(Vec::new()),
        });
        let (requests, queue) = std_mpsc::channel();
        let committer = Committer {
            shared: shared.clone(),
            dir: dir.to_path_buf(),
            policy: RetentionPolicy {
                max_revisions: options.history_max_revisions,
                max_age: options.history_max_age,
            },
            segment: recovered.segment,
            wal_bytes_since_snapshot: recovered.wal_bytes,
            snapshot: None,
            samples: VecDeque::new(),
            opened_at: Instant::now(),
            last_compaction_check: Duration::ZERO,
            failed: None,
            encode_buffer: Vec::new(),
            options: options.clone(),
        };
        let committer = std::thread::Builder::new()
            .name("store-committer".into())
            .spawn(move || committer.run(queue))
            .map_err(|e| StoreError::Io(format!("starting committer thread: {e}")))?;
        Ok(Arc::new(EmbeddedStore {
            shared,
            requests: Some(requests),
            committer: Some(committer),
            watch_channel_capacity: options.watch_channel_capacity.max(1),
            _lock: lock,
        }))
    }

    async fn submit(&self, operation: Operation) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Unavailable("embedded store is closed".into());
        self.requests
            .as_ref()
            .ok_or_else(closed)?
            .send(Request { operation, reply })
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Number of keys and of retained versions (history included), for metrics.
    pub fn stats(&self) -> (usize, usize) {
        let state = self.shared.read_state();
        (state.keys.len(), state.version_count())
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(committer) = self.committer.take() {
            let _ = committer.join();
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision)> {
        let state = self.shared.read_state();
        Ok((state.latest(key), state.revision))
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        self.shared.read_state().range(&request)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        match self
            .submit(Operation::Create {
                key: key.to_owned(),
                value,
            })
            .await?
        {
            Outcome::Written(kv) => Ok(kv),
            _ => unreachable!("create answers with the written key"),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        let operation = Operation::Update {
            key: key.to_owned(),
            value,
            expected: expected_mod_revision,
        };
        match self.submit(operation).await? {
            Outcome::Written(kv) => Ok(kv),
            _ => unreachable!("update answers with the written key"),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<(Revision, KeyValue)> {
        let operation = Operation::Delete {
            key: key.to_owned(),
            expected: expected_mod_revision,
        };
        match self.submit(operation).await? {
            Outcome::Deleted(revision, prev) => Ok((revision, prev)),
            _ => unreachable!("delete answers with the deleted key"),
        }
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream> {
        let (sender, receiver) = mpsc::channel(self.watch_channel_capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        let replay = {
            // Holding the state lock while registering means no batch can be
            // applied in between: replay ends exactly where live events begin.
            let state = self.shared.read_state();
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
            self.shared.lock_watchers().push(Watcher {
                prefix: prefix.to_owned(),
                start_revision: start_revision.max(state.revision + 1),
                sender,
                lagged: lagged.clone(),
            });
            replay
        };
        Ok(watch_stream(replay, receiver, lagged))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.submit(Operation::Compact { revision })
            .await
            .map(|_| ())
    }

    async fn revisions(&self) -> Result<(Revision, Revision)> {
        let state = self.shared.read_state();
        Ok((state.revision, state.compacted))
    }
}

/// Replayed history in bounded chunks, then live batches; ends with an error
/// saying why the live part stopped.
pub(crate) fn watch_stream(
    replay: Vec<Event>,
    receiver: mpsc::Receiver<Result<Vec<Event>>>,
    lagged: Arc<AtomicBool>,
) -> WatchStream {
    const REPLAY_CHUNK_EVENTS: usize = 512;
    // Each revision carries one event here, so any chunk boundary keeps a
    // revision's events together.
    let chunks: Vec<Result<Vec<Event>>> = replay
        .chunks(REPLAY_CHUNK_EVENTS)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let live = futures::stream::unfold(Some(receiver), move |receiver| {
        let lagged = lagged.clone();
        async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Some(batch) => Some((batch, Some(receiver))),
                None if lagged.load(Ordering::Acquire) => {
                    Some((Err(StoreError::WatchLagged), None))
                }
                None => Some((
                    Err(StoreError::Unavailable("embedded store is closed".into())),
                    None,
                )),
            }
        }
    });
    Box::pin(futures::stream::iter(chunks).chain(live))
}

/// Hand each watcher the events it asked for; a watcher whose buffer is full is
/// dropped (its stream then ends with `WatchLagged`) instead of blocking writers.
pub(crate) fn publish(watchers: &mut Vec<Watcher>, events: &[Event]) {
    watchers.retain(|watcher| {
        let matching: Vec<Event> = events
            .iter()
            .filter(|e| {
                e.revision() >= watcher.start_revision && e.key().starts_with(&watcher.prefix)
            })
            .cloned()
            .collect();
        if matching.is_empty() {
            return !watcher.sender.is_closed();
        }
        match watcher.sender.try_send(Ok(matching)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                watcher.lagged.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
}

struct Committer {
    shared: Arc<Shared>,
    dir: PathBuf,
    options: EmbeddedOptions,
    policy: RetentionPolicy,
    segment: File,
    wal_bytes_since_snapshot: u64,
    /// The snapshot being written in the background, if any.
    snapshot: Option<JoinHandle<()>>,
    samples: VecDeque<RevisionSample>,
    opened_at: Instant,
    last_compaction_check: Duration,
    /// After a failed write or fsync the log's state on disk is unknown, so the
    /// store refuses further writes rather than risk acknowledging lost data.
    failed: Option<String>,
    encode_buffer: Vec<u8>,
}

impl Committer {
    fn run(mut self, queue: std_mpsc::Receiver<Request>) {
        let tick = self
            .options
            .compaction_check_interval
            .max(Duration::from_millis(10));
        loop {
            let mut batch = Vec::new();
            match queue.recv_timeout(tick) {
                Ok(request) => batch.push(request),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < self.options.max_batch_operations.max(1) {
                match queue.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.commit(batch);
            self.maybe_snapshot();
        }
        if let Some(snapshot) = self.snapshot.take() {
            let _ = snapshot.join();
        }
        // Dropping the senders ends every watch stream.
        self.shared.lock_watchers().clear();
    }

    fn auto_compaction_target(
        &mut self,
        current: Revision,
        compacted: Revision,
    ) -> Option<Revision> {
        let now = self.opened_at.elapsed();
        let history_over_twice_the_limit = self
            .policy
            .max_revisions
            .is_some_and(|max| (current - compacted) as u64 >= max.saturating_mul(2));
        if now.saturating_sub(self.last_compaction_check) < self.options.compaction_check_interval
            && !history_over_twice_the_limit
        {
            return None;
        }
        self.last_compaction_check = now;
        record_sample(&mut self.samples, self.policy.max_age, now, current);
        auto_compaction_target(self.policy, current, compacted, &self.samples, now)
    }

    fn commit(&mut self, batch: Vec<Request>) {
        if let Some(reason) = &self.failed {
            for request in batch {
                let _ = request
                    .reply
                    .send(Err(StoreError::Unavailable(reason.clone())));
            }
            return;
        }
        let mut replies = Vec::with_capacity(batch.len());
        let (mutations, events) = {
            let state = self.shared.read_state();
            let mut batch_eval = BatchEvaluation::new(&state);
            for request in batch {
                let outcome = batch_eval.evaluate(request.operation);
                replies.push((request.reply, outcome));
            }
            let (revision, compacted) = (batch_eval.revision, batch_eval.compacted);
            let (mut mutations, events) = (batch_eval.mutations, batch_eval.events);
            drop(state);
            if let Some(target) = self.auto_compaction_target(revision, compacted) {
                mutations.push(Mutation::Compact { revision: target });
            }
            (mutations, events)
        };
        if !mutations.is_empty() {
            if let Err(error) = self.append(&mutations) {
                tracing::error!(%error, "write-ahead log append failed; refusing further writes");
                self.failed = Some(format!("write-ahead log failed: {error}"));
                for (reply, _) in replies {
                    let _ = reply.send(Err(error.clone()));
                }
                return;
            }
            let mut state = self.shared.write_state();
            for mutation in &mutations {
                if let Err(error) = state.apply(mutation) {
                    // Unreachable by construction: the batch was evaluated against this state.
                    panic!("applying a committed batch failed: {error}");
                }
            }
            if !events.is_empty() {
                publish(&mut self.shared.lock_watchers(), &events);
            }
        }
        for (reply, outcome) in replies {
            let _ = reply.send(outcome);
        }
    }

    /// Append the batch to the log and make it durable with one fdatasync.
    fn append(&mut self, mutations: &[Mutation]) -> Result<()> {
        let mut buffer = std::mem::take(&mut self.encode_buffer);
        buffer.clear();
        for mutation in mutations {
            disk::encode_record(&mut buffer, mutation);
        }
        let result = self
            .segment
            .write_all(&buffer)
            .and_then(|()| self.segment.sync_data())
            .map_err(|e| io_error("appending to wal in", &self.dir, e));
        self.wal_bytes_since_snapshot += buffer.len() as u64;
        // Keep a large buffer only while batches are large.
        if buffer.capacity() <= 4 << 20 {
            self.encode_buffer = buffer;
        }
        result
    }

    /// Past the threshold: start a new segment, then write a snapshot of the
    /// state as of the segment switch in the background and drop older segments.
    fn maybe_snapshot(&mut self) {
        if self.failed.is_some()
            || self.wal_bytes_since_snapshot < self.options.snapshot_threshold_bytes
        {
            return;
        }
        if self.snapshot.as_ref().is_some_and(|s| !s.is_finished()) {
            return;
        }
        if let Some(done) = self.snapshot.take() {
            let _ = done.join();
        }
        // Cloning copies keys and version lists; values are shared `Bytes`.
        let state = self.shared.read_state().clone();
        match disk::create_segment(&self.dir, state.revision + 1) {
            Ok(segment) => self.segment = segment,
            Err(error) => {
                tracing::error!(%error, "could not start a new wal segment");
                self.failed = Some(format!("could not start a new wal segment: {error}"));
                return;
            }
        }
        self.wal_bytes_since_snapshot = 0;
        let dir = self.dir.clone();
        let spawned = std::thread::Builder::new().name("store-snapshot".into()).spawn(move || {
            let result = disk::write_snapshot(&dir, &state)
                .and_then(|()| disk::remove_segments_covered_by(&dir, state.revision));
            match result {
                Ok(()) => tracing::debug!(revision = state.revision, "snapshot written"),
                Err(error) => tracing::error!(%error, "snapshot failed; the log is kept and replayed instead"),
            }
        });
        match spawned {
            Ok(handle) => self.snapshot = Some(handle),
            Err(error) => tracing::error!(%error, "could not start snapshot thread"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> EmbeddedOptions {
        EmbeddedOptions {
            snapshot_threshold_bytes: 4096,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn survives_reopen_across_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let mut last = 0;
        for round in 0..3 {
            let store = EmbeddedStore::open(dir.path(), options()).unwrap();
            let (current, _) = store.revisions().await.unwrap();
            assert_eq!(current, last, "round {round}");
            for i in 0..200 {
                let key = format!("/k/{}", i % 10);
                let value = Bytes::from(vec![b'x'; 100]);
                match store.get(&key).await.unwrap().0 {
                    None => store.create(&key, value).await.unwrap(),
                    Some(kv) => store.update(&key, value, kv.mod_revision).await.unwrap(),
                };
            }
            last = store.revisions().await.unwrap().0;
            assert_eq!(last, 200 * (round + 1));
        }
        let segments = disk::list_segments(dir.path()).unwrap();
        assert!(
            segments.len() <= 3,
            "old segments are removed: {segments:?}"
        );
        assert!(dir.path().join(disk::SNAPSHOT_FILE).exists());
    }

    #[tokio::test]
    async fn second_open_of_a_directory_fails() {
        let dir = tempfile::tempdir().unwrap();
        let _first = EmbeddedStore::open(dir.path(), options()).unwrap();
        assert!(matches!(
            EmbeddedStore::open(dir.path(), options()),
            Err(StoreError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn automatic_compaction_bounds_history() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            history_max_revisions: Some(100),
            ..options()
        };
        let store = EmbeddedStore::open(dir.path(), options.clone()).unwrap();
        let kv = store.create("/k", Bytes::from_static(b"0")).await.unwrap();
        let mut revision = kv.mod_revision;
        for _ in 0..1000 {
            revision = store
                .update("/k", Bytes::from_static(b"1"), revision)
                .await
                .unwrap()
                .mod_revision;
        }
        let (current, compacted) = store.revisions().await.unwrap();
        assert!(
            current - compacted <= 200,
            "current {current} compacted {compacted}"
        );
        assert!(store.stats().1 <= 201);
        drop(store);
        let store = EmbeddedStore::open(dir.path(), options).unwrap();
        assert_eq!(
            store.revisions().await.unwrap(),
            (current, compacted),
            "compaction is persisted"
        );
    }

    #[tokio::test]
    async fn lagging_watcher_is_closed_without_blocking_writers() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            watch_channel_capacity: 4,
            ..options()
        };
        let store = EmbeddedStore::open(dir.path(), options).unwrap();
        let mut watch = store.watch("/", 0).await.unwrap();
        for i in 0..50 {
            store
                .create(&format!("/k{i}"), Bytes::from_static(b"v"))
                .await
                .unwrap();
        }
        let mut received = 0;
        loop {
            match watch.next().await {
                Some(Ok(batch)) => received += batch.len(),
                Some(Err(StoreError::WatchLagged)) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(received < 50);
        assert!(watch.next().await.is_none());
    }
}
