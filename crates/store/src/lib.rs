//! The revisioned key-value store behind the API server: one contract with etcd3
//! semantics (global revision, compare-and-swap on mod-revision, prefix range,
//! watch from a revision, compaction) and two backends that both pass one
//! conformance suite.

use std::pin::Pin;

pub mod conformance;
pub mod embedded;
pub mod etcd;
pub mod memory;
pub mod testing;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use etcd::EtcdStore;
pub use memory::MemoryStore;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

/// A point in the store's single, global, monotonically increasing history.
/// The first write of an empty embedded store gets revision 1; an empty
/// embedded store is at 0. (A fresh etcd already reports revision 1, so callers
/// must only rely on revisions increasing, never on absolute values.)
pub type Revision = i64;

/// One key as stored at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since creation, starting at 1.
    pub version: i64,
}

/// One change seen by a watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The key was created (`prev` is None) or updated.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// The key was deleted at `revision`; `prev` is its last value.
    Delete { revision: Revision, prev: KeyValue },
}

impl Event {
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// Every key that starts with this prefix.
    pub prefix: String,
    /// Only keys strictly greater than this one (the continue token of a paged list).
    pub start_after: Option<String>,
    /// At most this many keys; `None` or 0 means no limit.
    pub limit: Option<usize>,
    /// Read the state as of this revision; `None` means the current revision.
    /// A revision below the compacted one fails with [`StoreError::Compacted`];
    /// one above the current fails with [`StoreError::FutureRevision`].
    pub revision: Option<Revision>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResponse {
    /// In key order.
    pub kvs: Vec<KeyValue>,
    /// True when keys past the last one returned also match (the limit cut the list).
    pub more: bool,
    /// How many keys after the returned ones also match (0 when `more` is false).
    pub remaining: usize,
    /// The revision this read was served at.
    pub revision: Revision,
}

/// A stream of watch events in revision order. Several events of one revision
/// arrive in one batch. It ends with an `Err` when the watch cannot go on (the
/// store closed, or the watcher fell too far behind); the caller re-watches from
/// the last revision it saw.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Vec<Event>, StoreError>> + Send>>;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} not found")]
    NotFound { key: String },
    /// The compare of a compare-and-swap failed; `current` is what is stored now.
    #[error("key {key} was modified concurrently (expected mod revision {expected})")]
    Conflict {
        key: String,
        expected: Revision,
        current: Option<KeyValue>,
    },
    #[error("revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is in the future (current revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("watch fell behind and was closed")]
    WatchLagged,
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store i/o error: {0}")]
    Io(String),
    #[error("store data corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The store contract. Every method is atomic; every successful write is durable
/// when it returns (the embedded backend has fsynced it, etcd has committed it).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current key and the store's current revision.
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision)>;

    async fn range(&self, request: RangeRequest) -> Result<RangeResponse>;

    /// Create `key`; fails with `AlreadyExists` when it exists. Returns the new KeyValue.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replace `key` if its mod revision is `expected_mod_revision`; otherwise
    /// `Conflict` (with the current value) or `NotFound`.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue>;

    /// Delete `key`, only if its mod revision equals `expected_mod_revision` when
    /// one is given. Returns the revision of the deletion and the deleted value.
    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<(Revision, KeyValue)>;

    /// Watch every key under `prefix`, starting with the events of `start_revision`
    /// (replaying history from there) and then live. `start_revision` 0 means
    /// "from now on". A start below the compacted revision fails with `Compacted`
    /// (as in etcd, watching from exactly the compacted revision is allowed).
    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream>;

    /// Discard history before `revision`: afterwards reads and watches at
    /// revisions below it fail with `Compacted`. The current value of every key stays.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The current revision and the compacted revision.
    async fn revisions(&self) -> Result<(Revision, Revision)>;
}
