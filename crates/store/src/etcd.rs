//! The etcd backend: the store contract mapped onto etcd v3 transactions, so
//! several drover servers can share one etcd (every write is a compare-and-swap).
//!
//! etcd does not report its compacted revision directly. [`EtcdStore`] tracks the
//! highest compaction it performed or that an etcd error revealed (a watch's
//! `compact_revision`); `revisions()` returns that, or 0 when it knows none. When
//! a range fails as compacted without saying where, `Compacted::compacted` is a
//! lower bound: the highest known compaction, and at least `requested + 1`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};

use crate::{
    Event, KeyValue, RangeRequest, RangeResponse, Result, Revision, Store, StoreError, WatchStream,
};

const COMPACTED_MESSAGE: &str = "required revision has been compacted";
const FUTURE_MESSAGE: &str = "required revision is a future revision";

pub struct EtcdStore {
    client: Client,
    codec: KeyCodec,
    /// Highest compaction known to this process; shared with watch streams,
    /// which may learn of a compaction from etcd.
    compacted: Arc<AtomicI64>,
}

/// Converts between store keys and etcd keys under a prefix.
#[derive(Clone)]
struct KeyCodec {
    /// Prepended to every key so several users can share one etcd.
    key_prefix: String,
}

impl KeyCodec {
    fn full_key(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.key_prefix).into_bytes()
    }

    fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        let key = kv.key();
        let key = key.strip_prefix(self.key_prefix.as_bytes()).unwrap_or(key);
        let key = String::from_utf8(key.to_vec())
            .map_err(|_| StoreError::Corrupt(format!("etcd key {:?} is not utf-8", kv.key())))?;
        Ok(KeyValue {
            key,
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
        })
    }

    fn event(&self, event: &etcd_client::Event) -> Result<Event> {
        let kv = event
            .kv()
            .ok_or_else(|| StoreError::Unavailable("etcd watch event without kv".into()))?;
        let kv = self.key_value(kv)?;
        let prev = event.prev_kv().map(|p| self.key_value(p)).transpose()?;
        Ok(match event.event_type() {
            EventType::Put => Event::Put { kv, prev },
            EventType::Delete => {
                let revision = kv.mod_revision;
                // etcd omits prev when it was compacted; keep the key so the
                // consumer can still tell what was deleted.
                let prev = prev.unwrap_or(KeyValue {
                    value: Bytes::new(),
                    create_revision: 0,
                    mod_revision: 0,
                    version: 0,
                    ..kv
                });
                Event::Delete { revision, prev }
            }
        })
    }
}

impl EtcdStore {
    /// Connect to etcd at `endpoints` (e.g. `http://127.0.0.1:2379`); every key
    /// is stored under `key_prefix` (may be empty).
    pub async fn connect(endpoints: &[String], key_prefix: &str) -> Result<Arc<EtcdStore>> {
        let client = Client::connect(endpoints, None)
            .await
            .map_err(unavailable)?;
        let store = EtcdStore {
            client,
            codec: KeyCodec {
                key_prefix: key_prefix.to_owned(),
            },
            compacted: Arc::new(AtomicI64::new(0)),
        };
        // Fail at startup rather than on the first request when etcd is not there.
        store.current_revision().await?;
        Ok(Arc::new(store))
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        self.codec.full_key(key)
    }

    fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        self.codec.key_value(kv)
    }

    fn note_compacted(&self, revision: Revision) {
        self.compacted.fetch_max(revision, Ordering::AcqRel);
    }

    fn compacted_error(&self, requested: Revision) -> StoreError {
        let compacted = self.compacted.load(Ordering::Acquire).max(requested + 1);
        StoreError::Compacted {
            requested,
            compacted,
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        let options = GetOptions::new().with_count_only();
        let response = self
            .client
            .kv_client()
            .get(nonempty(self.full_key("")), Some(options))
            .await
            .map_err(unavailable)?;
        Ok(response.header().map(|h| h.revision()).unwrap_or_default())
    }

    /// Map an etcd error of a read or compaction at `requested`.
    async fn revision_error(&self, error: etcd_client::Error, requested: Revision) -> StoreError {
        let message = error.to_string();
        if message.contains(COMPACTED_MESSAGE) {
            self.compacted_error(requested)
        } else if message.contains(FUTURE_MESSAGE) {
            match self.current_revision().await {
                Ok(current) => StoreError::FutureRevision { requested, current },
                Err(e) => e,
            }
        } else {
            unavailable(error)
        }
    }

    /// The value in the failure branch of a transaction (a `get` of the key).
    fn failure_value(&self, response: &etcd_client::TxnResponse) -> Result<Option<KeyValue>> {
        for op in response.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                return get.kvs().first().map(|kv| self.key_value(kv)).transpose();
            }
        }
        Ok(None)
    }
}

/// etcd rejects an empty key; for a range from "the very beginning" the
/// smallest key, `\0`, means the same.
fn nonempty(key: Vec<u8>) -> Vec<u8> {
    if key.is_empty() {
        vec![0]
    } else {
        key
    }
}

fn unavailable(error: etcd_client::Error) -> StoreError {
    StoreError::Unavailable(format!("etcd: {error}"))
}

fn header_revision(response: &etcd_client::TxnResponse) -> Result<Revision> {
    response
        .header()
        .map(|h| h.revision())
        .ok_or_else(|| StoreError::Unavailable("etcd response without header".into()))
}

/// The smallest key greater than every key starting with `prefix`; empty
/// `prefix` means "to the end" (etcd's `\0`).
fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision)> {
        let response = self
            .client
            .kv_client()
            .get(self.full_key(key), None)
            .await
            .map_err(unavailable)?;
        let revision = response.header().map(|h| h.revision()).unwrap_or_default();
        let kv = response
            .kvs()
            .first()
            .map(|kv| self.key_value(kv))
            .transpose()?;
        Ok((kv, revision))
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        let prefix = self.full_key(&request.prefix);
        let start = match &request.start_after {
            Some(after) if after.as_str() >= request.prefix.as_str() => {
                let mut start = self.full_key(after);
                start.push(0);
                start
            }
            _ => nonempty(prefix.clone()),
        };
        let mut options = GetOptions::new().with_range(prefix_range_end(&prefix));
        if let Some(limit) = request.limit.filter(|l| *l > 0) {
            options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let requested = request.revision.filter(|r| *r > 0);
        if let Some(revision) = requested {
            options = options.with_revision(revision);
        }
        let response = match self.client.kv_client().get(start, Some(options)).await {
            Ok(response) => response,
            Err(error) => {
                return Err(self
                    .revision_error(error, requested.unwrap_or_default())
                    .await)
            }
        };
        let kvs = response
            .kvs()
            .iter()
            .map(|kv| self.key_value(kv))
            .collect::<Result<Vec<_>>>()?;
        let count = usize::try_from(response.count()).unwrap_or_default();
        let remaining = if response.more() {
            count.saturating_sub(kvs.len())
        } else {
            0
        };
        let revision = requested
            .unwrap_or_else(|| response.header().map(|h| h.revision()).unwrap_or_default());
        Ok(RangeResponse {
            kvs,
            more: response.more(),
            remaining,
            revision,
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value.to_vec(), None)]);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(unavailable)?;
        if !response.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let revision = header_revision(&response)?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
            version: 1,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        let full = self.full_key(key);
        // version > 0 keeps a missing key (mod_revision 0) from matching expected 0.
        let txn = Txn::new()
            .when([
                Compare::version(full.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(full.clone(), CompareOp::Equal, expected_mod_revision),
            ])
            .and_then([TxnOp::put(
                full.clone(),
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(full, None)]);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(unavailable)?;
        if !response.succeeded() {
            return Err(match self.failure_value(&response)? {
                None => StoreError::NotFound {
                    key: key.to_owned(),
                },
                current => StoreError::Conflict {
                    key: key.to_owned(),
                    expected: expected_mod_revision,
                    current,
                },
            });
        }
        let revision = header_revision(&response)?;
        let prev = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Put(put) => put.prev_key().cloned(),
            _ => None,
        });
        let (create_revision, version) = match prev {
            Some(prev) => (prev.create_revision(), prev.version() + 1),
            None => (revision, 1),
        };
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: revision,
            version,
        })
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<(Revision, KeyValue)> {
        let full = self.full_key(key);
        let mut compares = vec![Compare::version(full.clone(), CompareOp::Greater, 0)];
        if let Some(expected) = expected_mod_revision {
            compares.push(Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                expected,
            ));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                full.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(full, None)]);
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(unavailable)?;
        if !response.succeeded() {
            return Err(match self.failure_value(&response)? {
                None => StoreError::NotFound {
                    key: key.to_owned(),
                },
                current => StoreError::Conflict {
                    key: key.to_owned(),
                    expected: expected_mod_revision.unwrap_or_default(),
                    current,
                },
            });
        }
        let revision = header_revision(&response)?;
        let prev = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(delete) => delete.prev_kvs().first().cloned(),
                _ => None,
            })
            .ok_or_else(|| {
                StoreError::Unavailable("etcd delete returned no previous value".into())
            })?;
        Ok((revision, self.key_value(&prev)?))
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream> {
        let full = self.full_key(prefix);
        // etcd reports a compacted start only after accepting the watch; a range
        // at the start revision answers synchronously, so the caller gets the
        // error from watch() as the contract says.
        if start_revision > 0 {
            let probe = GetOptions::new()
                .with_revision(start_revision)
                .with_count_only();
            if let Err(error) = self
                .client
                .kv_client()
                .get(nonempty(full.clone()), Some(probe))
                .await
            {
                let error = self.revision_error(error, start_revision).await;
                // Watching a future revision is fine in etcd: it waits.
                if !matches!(error, StoreError::FutureRevision { .. }) {
                    return Err(error);
                }
            }
        }
        let mut options = WatchOptions::new()
            .with_range(prefix_range_end(&full))
            .with_prev_key();
        if start_revision > 0 {
            options = options.with_start_revision(start_revision);
        }
        let stream = self
            .client
            .watch_client()
            .watch(nonempty(full), Some(options))
            .await
            .map_err(unavailable)?;
        let codec = self.codec.clone();
        let compacted = self.compacted.clone();
        let events = futures::stream::unfold(Some(stream), move |stream| {
            let codec = codec.clone();
            let compacted = compacted.clone();
            async move {
                let mut stream = stream?;
                loop {
                    let response = match stream.message().await {
                        Ok(Some(response)) => response,
                        Ok(None) => {
                            return Some((
                                Err(StoreError::Unavailable("etcd watch ended".into())),
                                None,
                            ))
                        }
                        Err(error) => return Some((Err(unavailable(error)), None)),
                    };
                    if response.compact_revision() > 0 {
                        compacted.fetch_max(response.compact_revision(), Ordering::AcqRel);
                        let error = StoreError::Compacted {
                            requested: start_revision,
                            compacted: response.compact_revision(),
                        };
                        return Some((Err(error), None));
                    }
                    if response.canceled() {
                        let error = StoreError::Unavailable(format!(
                            "etcd canceled the watch: {}",
                            response.cancel_reason()
                        ));
                        return Some((Err(error), None));
                    }
                    if response.events().is_empty() {
                        continue;
                    }
                    let batch = response
                        .events()
                        .iter()
                        .map(|e| codec.event(e))
                        .collect::<Result<Vec<_>>>();
                    let keep_going = batch.is_ok();
                    return Some((batch, keep_going.then_some(stream)));
                }
            }
        });
        Ok(Box::pin(events))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.client.kv_client().compact(revision, None).await {
            Ok(_) => {
                self.note_compacted(revision);
                Ok(())
            }
            Err(error) => match self.revision_error(error, revision).await {
                // Compacting at or below the compacted revision changes nothing.
                StoreError::Compacted { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn revisions(&self) -> Result<(Revision, Revision)> {
        Ok((
            self.current_revision().await?,
            self.compacted.load(Ordering::Acquire),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_range_end;

    #[test]
    fn range_ends() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"/a/", b"/a0"),
            (b"", b"\0"),
            (b"a\xff", b"b"),
            (b"\xff\xff", b"\0"),
        ];
        for (prefix, end) in cases {
            assert_eq!(prefix_range_end(prefix), end.to_vec(), "{prefix:?}");
        }
    }
}
