//! Informer caches: the latest observed version of every object of a kind,
//! shared by the controllers that read it. Writers are the informer (watch
//! events) and the plan applier (the objects its own writes returned), so a
//! controller reads its own writes at once; a stale event never overwrites a
//! newer version (resourceVersions are the store's revisions, so they order).

use std::collections::{BTreeMap, HashSet};
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

/// A relist in progress: the keys its pages had, and the changes so far.
pub struct Relist<K> {
    seen: HashSet<ObjectKey>,
    changes: Vec<Change<K>>,
}

impl<K> Default for Relist<K> {
    fn default() -> Self {
        Relist {
            seen: HashSet::new(),
            changes: Vec::new(),
        }
    }
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
        let mut relist = Relist::default();
        self.relist_page(&mut relist, objects);
        self.relist_finish(relist, revision)
    }

    /// One page of a list that replaces the content (see [`Cache::replace`]):
    /// its objects go in at once, so a relist never holds a second copy of
    /// the whole cache; what the list did not have goes at
    /// [`Cache::relist_finish`].
    pub fn relist_page(&self, relist: &mut Relist<K>, objects: impl IntoIterator<Item = K>) {
        let mut entries = self.write();
        for object in objects {
            let meta = object.metadata();
            let key = ObjectKey::of(meta);
            let object_revision = revision_of(meta);
            match entries.get(&key) {
                Some(entry) if entry.revision > object_revision => {}
                Some(entry) if entry.revision == object_revision && entry.object.is_some() => {}
                _ => {
                    let new = Arc::new(object);
                    let old = entries
                        .insert(
                            key.clone(),
                            Entry {
                                revision: object_revision,
                                object: Some(new.clone()),
                            },
                        )
                        .and_then(|e| e.object);
                    relist.changes.push((old, Some(new)));
                }
            }
            relist.seen.insert(key);
        }
    }

    /// Ends a relist at `revision`: every object the list did not have is
    /// deleted, unless the cache has it at a newer revision (our own writes);
    /// returns the relist's changes.
    pub fn relist_finish(&self, relist: Relist<K>, revision: i64) -> Vec<Change<K>> {
        let Relist { seen, mut changes } = relist;
        let mut entries = self.write();
        entries.retain(|key, entry| {
            if seen.contains(key) || entry.revision > revision {
                return true;
            }
            if let Some(old) = entry.object.take() {
                changes.push((Some(old), None));
            }
            false
        });
        changes
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ObjectKey, Entry<K>>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<ObjectKey, Entry<K>>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn object(name: &str, revision: i64, data: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                resource_version: Some(revision.to_string()),
                ..Default::default()
            },
            data: Some([("v".to_string(), data.to_string())].into()),
            ..Default::default()
        }
    }

    fn data(cache: &Cache<ConfigMap>, name: &str) -> Option<String> {
        cache
            .get(&ObjectKey::new("ns", name))
            .map(|c| c.data.as_ref().unwrap()["v"].clone())
    }

    /// A relist over several pages: new and changed objects go in, unchanged
    /// ones keep their cached instance, objects the list lacks are deleted
    /// unless the cache has them newer than the list.
    #[test]
    fn paged_relist_replaces_like_a_whole_list() {
        let cache = Cache::<ConfigMap>::default();
        cache.upsert(object("same", 5, "a"));
        cache.upsert(object("changed", 5, "old"));
        cache.upsert(object("gone", 5, "x"));
        cache.upsert(object("own-write", 30, "mine"));
        cache.upsert(object("newer-than-page", 25, "cached"));
        let same_before = cache.get(&ObjectKey::new("ns", "same")).unwrap();

        let mut relist = Relist::default();
        cache.relist_page(
            &mut relist,
            vec![object("same", 5, "a"), object("changed", 12, "new")],
        );
        cache.relist_page(
            &mut relist,
            vec![
                object("added", 15, "b"),
                object("newer-than-page", 18, "listed"),
            ],
        );
        let changes = cache.relist_finish(relist, 20);

        assert_eq!(data(&cache, "changed").as_deref(), Some("new"));
        assert_eq!(data(&cache, "added").as_deref(), Some("b"));
        assert_eq!(data(&cache, "gone"), None, "absent from the list: deleted");
        assert_eq!(
            data(&cache, "own-write").as_deref(),
            Some("mine"),
            "newer than the list: kept"
        );
        assert_eq!(data(&cache, "newer-than-page").as_deref(), Some("cached"));
        assert!(Arc::ptr_eq(
            &same_before,
            &cache.get(&ObjectKey::new("ns", "same")).unwrap()
        ));
        let mut described: Vec<String> = changes
            .iter()
            .map(|(old, new)| {
                let name = |o: &Option<Arc<ConfigMap>>| {
                    o.as_ref()
                        .map(|o| o.metadata.name.clone().unwrap())
                        .unwrap_or_else(|| "-".into())
                };
                format!("{}->{}", name(old), name(new))
            })
            .collect();
        described.sort();
        assert_eq!(described, ["-->added", "changed->changed", "gone->-"]);
        assert_eq!(cache.len(), 5);
    }

    #[test]
    fn whole_list_replace_drops_what_the_list_lacks() {
        let cache = Cache::<ConfigMap>::default();
        cache.upsert(object("a", 3, "1"));
        cache.remove(&ObjectKey::new("ns", "b"), 4);
        let changes = cache.replace(vec![object("b", 6, "2")], 10);
        assert_eq!(data(&cache, "a"), None);
        assert_eq!(
            data(&cache, "b").as_deref(),
            Some("2"),
            "a tombstone older than the list is replaced"
        );
        assert_eq!(changes.len(), 2);
    }
}
