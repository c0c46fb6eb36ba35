//! Informer caches: the latest observed version of every object of a kind,
//! shared by the controllers that read it. Writers are the informer (watch
//! events) and the plan applier (the objects its own writes returned), so a
//! controller reads its own writes at once; a stale event never overwrites a
//! newer version (resourceVersions are the store's revisions, so they order).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata;

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn of(meta: &ObjectMeta) -> ObjectKey {
        ObjectKey {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }

    pub fn namespace(&self) -> Option<&str> {
        (!self.namespace.is_empty()).then_some(self.namespace.as_str())
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

pub(crate) fn revision_of(meta: &ObjectMeta) -> i64 {
    meta.resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

struct Entry<K> {
    revision: i64,
    /// `None` is a tombstone: deleted at `revision` or later.
    object: Option<Arc<K>>,
}

/// The cache of one kind.
pub struct Cache<K> {
    entries: RwLock<BTreeMap<ObjectKey, Entry<K>>>,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Cache {
            entries: RwLock::new(BTreeMap::new()),
        }
    }
}

/// One change as `(old, new)`; `None` on either side is a creation or deletion.
pub type Change<K> = (Option<Arc<K>>, Option<Arc<K>>);

/// What an update did, for change notification.
pub enum Applied<K> {
    /// Nothing newer: the event was stale or a repeat.
    Unchanged,
    Changed {
        old: Option<Arc<K>>,
        new: Option<Arc<K>>,
    },
}

impl<K: Metadata<Ty = ObjectMeta>> Cache<K> {
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().get(key)?.object.clone()
    }

    /// Every object, ordered by namespace and name.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read()
            .values()
            .filter_map(|e| e.object.clone())
            .collect()
    }

    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let start = ObjectKey::new(namespace, "");
        self.read()
            .range(start..)
            .take_while(|(k, _)| k.namespace == namespace)
            .filter_map(|(_, e)| e.object.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.read().values().filter(|e| e.object.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records an object as observed (an ADDED/MODIFIED event or a write's answer).
    pub fn upsert(&self, object: K) -> Applied<K> {
        let meta = object.metadata();
        let key = ObjectKey::of(meta);
        let revision = revision_of(meta);
        let mut entries = self.write();
        if let Some(existing) = entries.get(&key) {
            if existing.revision >= revision && revision != 0 {
                return Applied::Unchanged;
            }
        }
        let new = Arc::new(object);
        let old = entries
            .insert(
                key,
                Entry {
                    revision,
                    object: Some(new.clone()),
                },
            )
            .and_then(|e| e.object);
        Applied::Changed {
            old,
            new: Some(new),
        }
    }

    /// Records a deletion observed at `revision` (at least the deleted
    /// object's last resourceVersion).
    pub fn remove(&self, key: &ObjectKey, revision: i64) -> Applied<K> {
        let mut entries = self.write();
        match entries.get_mut(key) {
            Some(entry) if entry.revision > revision => Applied::Unchanged,
            Some(entry) => {
                entry.revision = revision;
                match entry.object.take() {
                    Some(old) => Applied::Changed {
                        old: Some(old),
                        new: None,
                    },
                    None => Applied::Unchanged,
                }
            }
            None => {
                entries.insert(
                    key.clone(),
                    Entry {
                        revision,
                        object: None,
                    },
                );
                Applied::Unchanged
            }
        }
    }

    /// Replaces the whole content with a fresh list at `revision`; returns
    /// the changes as `(old, new)` pairs (objects gone from the list count as
    /// deleted). Entries newer than the list (our own writes) are kept.
    pub fn replace(&self, objects: Vec<K>, revision: i64) -> Vec<Change<K>> {
        let mut entries = self.write();
        let mut previous = std::mem::take(&mut *entries);
        let mut changes = Vec::new();
        for object in objects {
            let meta = object.metadata();
            let key = ObjectKey::of(meta);
            let object_revision = revision_of(meta);
            match previous.remove(&key) {
                Some(entry) if entry.revision > object_revision => {
                    entries.insert(key, entry);
                }
                Some(entry) if entry.revision == object_revision && entry.object.is_some() => {
                    entries.insert(key, entry);
                }
                other => {
                    let new = Arc::new(object);
                    changes.push((other.and_then(|e| e.object), Some(new.clone())));
                    entries.insert(
                        key,
                        Entry {
                            revision: object_revision,
                            object: Some(new),
                        },
                    );
                }
            }
        }
        for (key, entry) in previous {
            if entry.revision > revision {
                entries.insert(key, entry);
            } else if let Some(old) = entry.object {
                changes.push((Some(old), None));
            }
        }
        changes
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ObjectKey, Entry<K>>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<ObjectKey, Entry<K>>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }
}
