//! The in-memory MVCC state of the embedded store: every key's retained versions
//! plus the current and compacted revision. Pure data, no I/O, no locking.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use crate::{Event, KeyValue, RangeRequest, RangeResponse, Revision, StoreError};

/// One write to one key. `value: None` is a tombstone (the key was deleted at
/// `mod_revision`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Version {
    pub(crate) mod_revision: Revision,
    pub(crate) create_revision: Revision,
    pub(crate) version: i64,
    pub(crate) value: Option<Bytes>,
}

impl Version {
    fn to_key_value(&self, key: &str) -> Option<KeyValue> {
        self.value.as_ref().map(|value| KeyValue {
            key: key.to_owned(),
            value: value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        })
    }
}

/// A change as it is written to the log: an event without its `prev`, which is
/// recomputed from the state on replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mutation {
    Put(KeyValue),
    Delete {
        key: String,
        revision: Revision,
    },
    /// Discard history below `revision`; consumes no revision.
    Compact {
        revision: Revision,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MvccState {
    /// Versions of each key in ascending mod revision.
    pub(crate) keys: BTreeMap<String, Vec<Version>>,
    pub(crate) revision: Revision,
    pub(crate) compacted: Revision,
}

impl MvccState {
    /// The live value of `key` at the current revision.
    pub(crate) fn latest(&self, key: &str) -> Option<KeyValue> {
        self.keys.get(key)?.last()?.to_key_value(key)
    }

    /// Apply one logged change. Put/Delete must carry exactly the next revision;
    /// anything else means the log is not the log of this state.
    pub(crate) fn apply(&mut self, mutation: &Mutation) -> Result<(), StoreError> {
        match mutation {
            Mutation::Put(kv) => {
                self.expect_next(kv.mod_revision)?;
                self.keys.entry(kv.key.clone()).or_default().push(Version {
                    mod_revision: kv.mod_revision,
                    create_revision: kv.create_revision,
                    version: kv.version,
                    value: Some(kv.value.clone()),
                });
                self.revision = kv.mod_revision;
            }
            Mutation::Delete { key, revision } => {
                self.expect_next(*revision)?;
                self.keys.entry(key.clone()).or_default().push(Version {
                    mod_revision: *revision,
                    create_revision: 0,
                    version: 0,
                    value: None,
                });
                self.revision = *revision;
            }
            Mutation::Compact { revision } => self.compact(*revision),
        }
        Ok(())
    }

    fn expect_next(&self, revision: Revision) -> Result<(), StoreError> {
        if revision != self.revision + 1 {
            return Err(StoreError::Corrupt(format!(
                "log record has revision {revision} but the state is at revision {}",
                self.revision
            )));
        }
        Ok(())
    }

    /// Drop every version that no read at or after `revision` and no watch from
    /// `revision` can need: per key, keep the versions at or above `revision` plus
    /// the newest one below it (it is the value read at `revision` and the `prev`
    /// of the next event), unless that one is a tombstone.
    pub(crate) fn compact(&mut self, revision: Revision) {
        if revision <= self.compacted {
            return;
        }
        let revision = revision.min(self.revision);
        self.keys.retain(|_, versions| {
            let first_kept = versions.partition_point(|v| v.mod_revision < revision);
            let keep_from = match first_kept.checked_sub(1) {
                Some(newest_below) if versions[newest_below].value.is_some() => newest_below,
                _ => first_kept,
            };
            versions.drain(..keep_from);
            !versions.is_empty()
        });
        self.compacted = self.compacted.max(revision);
    }

    /// The revision a read asked for, checked against the retained window.
    pub(crate) fn read_revision(
        &self,
        requested: Option<Revision>,
    ) -> Result<Revision, StoreError> {
        match requested {
            None => Ok(self.revision),
            Some(r) if r <= 0 => Ok(self.revision),
            Some(r) if r > self.revision => Err(StoreError::FutureRevision {
                requested: r,
                current: self.revision,
            }),
            Some(r) if r < self.compacted => Err(StoreError::Compacted {
                requested: r,
                compacted: self.compacted,
            }),
            Some(r) => Ok(r),
        }
    }

    pub(crate) fn range(&self, request: &RangeRequest) -> Result<RangeResponse, StoreError> {
        let revision = self.read_revision(request.revision)?;
        let limit = request.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let start = match &request.start_after {
            Some(after) if after.as_str() >= request.prefix.as_str() => {
                Bound::Excluded(after.as_str())
            }
            _ => Bound::Included(request.prefix.as_str()),
        };
        let mut kvs = Vec::new();
        let mut remaining = 0usize;
        for (key, versions) in self
            .keys
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(&request.prefix))
        {
            let Some(kv) = version_at(versions, revision).and_then(|v| v.to_key_value(key)) else {
                continue;
            };
            if kvs.len() < limit {
                kvs.push(kv);
            } else {
                remaining += 1;
            }
        }
        Ok(RangeResponse {
            kvs,
            more: remaining > 0,
            remaining,
            revision,
        })
    }

    /// Every retained event under `prefix` with revision >= `start`, in revision order.
    pub(crate) fn events_since(&self, prefix: &str, start: Revision) -> Vec<Event> {
        let mut events = Vec::new();
        for (key, versions) in self
            .keys
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
        {
            let first = versions.partition_point(|v| v.mod_revision < start);
            for index in first..versions.len() {
                let prev = index
                    .checked_sub(1)
                    .and_then(|p| versions[p].to_key_value(key));
                let this = &versions[index];
                match this.to_key_value(key) {
                    Some(kv) => events.push(Event::Put { kv, prev }),
                    // A tombstone always follows a live version, which compaction
                    // keeps; a missing prev would be a bug, not a reason to stop.
                    None => match prev {
                        Some(prev) => events.push(Event::Delete {
                            revision: this.mod_revision,
                            prev,
                        }),
                        None => {
                            debug_assert!(false, "tombstone of {key} without a previous version")
                        }
                    },
                }
            }
        }
        events.sort_by_key(Event::revision);
        events
    }

    /// Number of versions held, for memory accounting and tests.
    pub(crate) fn version_count(&self) -> usize {
        self.keys.values().map(Vec::len).sum()
    }
}

/// The newest version with mod revision <= `revision`.
fn version_at(versions: &[Version], revision: Revision) -> Option<&Version> {
    let end = versions.partition_point(|v| v.mod_revision <= revision);
    end.checked_sub(1).map(|i| &versions[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str, create: Revision, modr: Revision, version: i64) -> Mutation {
        Mutation::Put(KeyValue {
            key: key.into(),
            value: Bytes::from(value.to_owned()),
            create_revision: create,
            mod_revision: modr,
            version,
        })
    }

    /// rev 1 put a=1, 2 put b=1, 3 put a=2, 4 delete b, 5 put c=1, 6 put b=2 (recreate)
    fn sample() -> MvccState {
        let mut s = MvccState::default();
        for m in [
            put("/a", "1", 1, 1, 1),
            put("/b", "1", 2, 2, 1),
            put("/a", "2", 1, 3, 2),
            Mutation::Delete {
                key: "/b".into(),
                revision: 4,
            },
            put("/c", "1", 5, 5, 1),
            put("/b", "2", 6, 6, 1),
        ] {
            s.apply(&m).unwrap();
        }
        s
    }

    fn keys_at(s: &MvccState, revision: Revision) -> Vec<String> {
        let r = s
            .range(&RangeRequest {
                prefix: "/".into(),
                revision: Some(revision),
                ..Default::default()
            })
            .unwrap();
        r.kvs
            .iter()
            .map(|kv| format!("{}={}", kv.key, String::from_utf8_lossy(&kv.value)))
            .collect()
    }

    #[test]
    fn range_at_each_revision() {
        let s = sample();
        let cases: &[(Revision, &[&str])] = &[
            (1, &["/a=1"]),
            (2, &["/a=1", "/b=1"]),
            (3, &["/a=2", "/b=1"]),
            (4, &["/a=2"]),
            (5, &["/a=2", "/c=1"]),
            (6, &["/a=2", "/b=2", "/c=1"]),
        ];
        for (revision, expected) in cases {
            assert_eq!(keys_at(&s, *revision), *expected, "at revision {revision}");
        }
    }

    #[test]
    fn compaction_keeps_reads_at_and_after_the_compacted_revision() {
        for compact_to in 1..=6 {
            let full = sample();
            let mut compacted = sample();
            compacted.compact(compact_to);
            for revision in compact_to..=6 {
                assert_eq!(
                    keys_at(&compacted, revision),
                    keys_at(&full, revision),
                    "compact {compact_to} read {revision}"
                );
            }
            assert_eq!(
                compacted.events_since("/", compact_to),
                full.events_since("/", compact_to),
                "events after compacting to {compact_to}"
            );
            if compact_to > 1 {
                assert!(matches!(
                    compacted.read_revision(Some(compact_to - 1)),
                    Err(StoreError::Compacted { .. })
                ));
            }
        }
    }

    #[test]
    fn compaction_drops_dead_keys_and_old_versions() {
        let mut s = sample();
        s.apply(&Mutation::Delete {
            key: "/c".into(),
            revision: 7,
        })
        .unwrap();
        s.compact(8.min(s.revision));
        // /a keeps only its newest version; /c's tombstone at 7 is the compacted
        // revision itself so a watch from 7 still sees it.
        assert_eq!(s.keys["/a"].len(), 1);
        assert_eq!(s.keys["/c"].len(), 2);
        s.apply(&put("/d", "1", 8, 8, 1)).unwrap();
        s.compact(8);
        assert!(!s.keys.contains_key("/c"));
    }

    #[test]
    fn events_carry_prev_and_are_in_revision_order() {
        let s = sample();
        let events = s.events_since("/", 3);
        let revisions: Vec<_> = events.iter().map(Event::revision).collect();
        assert_eq!(revisions, vec![3, 4, 5, 6]);
        match &events[1] {
            Event::Delete { revision: 4, prev } => assert_eq!(prev.value, Bytes::from_static(b"1")),
            other => panic!("unexpected {other:?}"),
        }
        match &events[3] {
            Event::Put { kv, prev: None } => assert_eq!(kv.create_revision, 6),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn paging_and_prefix() {
        let s = sample();
        let page = |prefix: &str, after: Option<&str>, limit| {
            let r = s
                .range(&RangeRequest {
                    prefix: prefix.into(),
                    start_after: after.map(Into::into),
                    limit: Some(limit),
                    revision: None,
                })
                .unwrap();
            (
                r.kvs.into_iter().map(|kv| kv.key).collect::<Vec<_>>(),
                r.more,
                r.remaining,
            )
        };
        assert_eq!(page("/", None, 1), (vec!["/a".to_string()], true, 2));
        assert_eq!(page("/", Some("/a"), 1), (vec!["/b".to_string()], true, 1));
        assert_eq!(page("/", Some("/b"), 5), (vec!["/c".to_string()], false, 0));
        assert_eq!(page("/b", None, 0), (vec!["/b".to_string()], false, 0));
        assert_eq!(
            page("/c", Some("/a"), 0),
            (vec!["/c".to_string()], false, 0)
        );
    }

    #[test]
    fn apply_rejects_a_gap() {
        let mut s = sample();
        assert!(matches!(
            s.apply(&put("/x", "1", 9, 9, 1)),
            Err(StoreError::Corrupt(_))
        ));
    }
}
