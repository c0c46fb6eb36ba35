//! Informer caches: the latest observed version of every object of a kind,
//! shared by the controllers that read it. Writers are the informer (watch
//! events) and the plan applier (the objects its own writes returned), so a
//! controller reads its own writes at once; a stale event never overwrites a
//! newer version (resourceVersions are the store's revisions, so they order).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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

/// Tombstones are pruned once there are more than this many and more than
/// an eighth of the live objects (so pruning costs O(1) per deletion,
/// amortised).
const TOMBSTONES_BEFORE_PRUNE: usize = 256;

struct Inner<K> {
    entries: BTreeMap<ObjectKey, Entry<K>>,
    /// Live objects by the uid of their controller (the owner reference
    /// with `controller: true`): what a ReplicaSet, Job or StatefulSet
    /// reconciles, found without scanning its whole namespace.
    by_controller: HashMap<String, BTreeSet<ObjectKey>>,
    /// Live objects without a controller (candidates for adoption).
    orphans: BTreeSet<ObjectKey>,
    tombstones: usize,
}

impl<K> Default for Inner<K> {
    fn default() -> Self {
        Inner {
            entries: BTreeMap::new(),
            by_controller: HashMap::new(),
            orphans: BTreeSet::new(),
            tombstones: 0,
        }
    }
}

fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

impl<K: Metadata<Ty = ObjectMeta>> Inner<K> {
    fn unindex(&mut self, key: &ObjectKey, object: &K) {
        match controller_uid(object.metadata()) {
            Some(uid) => {
                if let Some(set) = self.by_controller.get_mut(uid) {
                    set.remove(key);
                    if set.is_empty() {
                        self.by_controller.remove(uid);
                    }
                }
            }
            None => {
                self.orphans.remove(key);
            }
        }
    }

    fn index(&mut self, key: &ObjectKey, object: &K) {
        match controller_uid(object.metadata()) {
            Some(uid) => {
                self.by_controller
                    .entry(uid.to_string())
                    .or_default()
                    .insert(key.clone());
            }
            None => {
                self.orphans.insert(key.clone());
            }
        }
    }

    /// Puts `entry` under `key`, keeping the indexes and the tombstone
    /// count true; returns the object it replaced.
    fn set(&mut self, key: ObjectKey, entry: Entry<K>) -> Option<Arc<K>> {
        // The old object leaves the indexes before the new one enters: both
        // may be under the same controller.
        let old = match self.entries.get(&key) {
            Some(Entry {
                object: Some(old), ..
            }) => {
                let old = old.clone();
                self.unindex(&key, &old);
                Some(old)
            }
            Some(Entry { object: None, .. }) => {
                self.tombstones -= 1;
                None
            }
            None => None,
        };
        match &entry.object {
            Some(new) => self.index(&key, new),
            None => self.tombstones += 1,
        }
        self.entries.insert(key, entry);
        old
    }
}

/// The cache of one kind.
pub struct Cache<K> {
    inner: RwLock<Inner<K>>,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Cache {
            inner: RwLock::new(Inner::default()),
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
        self.read().entries.get(key)?.object.clone()
    }

    /// Every object, ordered by namespace and name.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read()
            .entries
            .values()
            .filter_map(|e| e.object.clone())
            .collect()
    }

    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let start = ObjectKey::new(namespace, "");
        self.read()
            .entries
            .range(start..)
            .take_while(|(k, _)| k.namespace == namespace)
            .filter_map(|(_, e)| e.object.clone())
            .collect()
    }

    /// The objects whose controller (owner reference with `controller:
    /// true`) has this uid, ordered by namespace and name.
    pub fn controlled_by(&self, owner_uid: &str) -> Vec<Arc<K>> {
        let inner = self.read();
        inner
            .by_controller
            .get(owner_uid)
            .into_iter()
            .flatten()
            .filter_map(|key| inner.entries.get(key)?.object.clone())
            .collect()
    }

    /// The objects of `namespace` without a controller, ordered by name.
    pub fn orphans(&self, namespace: &str) -> Vec<Arc<K>> {
        let inner = self.read();
        inner
            .orphans
            .range(ObjectKey::new(namespace, "")..)
            .take_while(|k| k.namespace == namespace)
            .filter_map(|key| inner.entries.get(key)?.object.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        let inner = self.read();
        inner.entries.len() - inner.tombstones
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many deletions the cache remembers (see [`Cache::prune_tombstones`]).
    pub fn tombstones(&self) -> usize {
        self.read().tombstones
    }

    /// Records an object as observed (an ADDED/MODIFIED event or a write's answer).
    pub fn upsert(&self, object: K) -> Applied<K> {
        let meta = object.metadata();
        let key = ObjectKey::of(meta);
        let revision = revision_of(meta);
        let mut inner = self.write();
        if let Some(existing) = inner.entries.get(&key) {
            if existing.revision >= revision && revision != 0 {
                return Applied::Unchanged;
            }
        }
        let new = Arc::new(object);
        let old = inner.set(
            key,
            Entry {
                revision,
                object: Some(new.clone()),
            },
        );
        Applied::Changed {
            old,
            new: Some(new),
        }
    }

    /// Records a deletion observed at `revision` (at least the deleted
    /// object's last resourceVersion).
    pub fn remove(&self, key: &ObjectKey, revision: i64) -> Applied<K> {
        let mut inner = self.write();
        match inner.entries.get(key) {
            Some(entry) if entry.revision > revision => Applied::Unchanged,
            Some(entry) if entry.object.is_none() => {
                inner.entries.get_mut(key).expect("just found").revision = revision;
                Applied::Unchanged
            }
            _ => {
                let old = inner.set(
                    key.clone(),
                    Entry {
                        revision,
                        object: None,
                    },
                );
                match old {
                    Some(old) => Applied::Changed {
                        old: Some(old),
                        new: None,
                    },
                    None => Applied::Unchanged,
                }
            }
        }
    }

    /// Forgets the tombstones of deletions at or before `revision` once
    /// there are many of them. A tombstone only guards against an event
    /// older than the deletion bringing the object back; the caller passes
    /// the revision its watch has reached, past which no such event can
    /// come. Without this a cache of a kind with churn (pods of Jobs) would
    /// grow by one key per object ever deleted.
    pub fn prune_tombstones(&self, revision: i64) {
        {
            let inner = self.read();
            let live = inner.entries.len() - inner.tombstones;
            if inner.tombstones <= TOMBSTONES_BEFORE_PRUNE || inner.tombstones <= live / 8 {
                return;
            }
        }
        let mut inner = self.write();
        let mut pruned = 0;
        inner.entries.retain(|_, entry| {
            let prune = entry.object.is_none() && entry.revision <= revision;
            pruned += usize::from(prune);
            !prune
        });
        inner.tombstones -= pruned;
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
        let mut inner = self.write();
        for object in objects {
            let meta = object.metadata();
            let key = ObjectKey::of(meta);
            let object_revision = revision_of(meta);
            match inner.entries.get(&key) {
                Some(entry) if entry.revision > object_revision => {}
                Some(entry) if entry.revision == object_revision && entry.object.is_some() => {}
                _ => {
                    let new = Arc::new(object);
                    let old = inner.set(
                        key.clone(),
                        Entry {
                            revision: object_revision,
                            object: Some(new.clone()),
                        },
                    );
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
        let mut inner = self.write();
        let gone: Vec<ObjectKey> = inner
            .entries
            .iter()
            .filter(|(key, entry)| !seen.contains(*key) && entry.revision <= revision)
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            let entry = inner.entries.remove(&key).expect("just listed");
            match entry.object {
                Some(old) => {
                    inner.unindex(&key, &old);
                    changes.push((Some(old), None));
                }
                None => inner.tombstones -= 1,
            }
        }
        changes
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner<K>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner<K>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
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

    fn owned(name: &str, revision: i64, owner_uid: Option<&str>) -> ConfigMap {
        let mut o = object(name, revision, "x");
        o.metadata.owner_references = owner_uid.map(|uid| {
            vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: format!("rs-{uid}"),
                    uid: uid.into(),
                    controller: Some(true),
                    ..Default::default()
                },
            ]
        });
        o
    }

    fn names(objects: Vec<Arc<ConfigMap>>) -> Vec<String> {
        objects
            .iter()
            .map(|o| o.metadata.name.clone().unwrap())
            .collect()
    }

    /// The controller index follows every way an object changes: created,
    /// adopted (orphan → controlled), released, deleted, relisted away.
    #[test]
    fn controller_index_follows_every_change() {
        let cache = Cache::<ConfigMap>::default();
        cache.upsert(owned("a", 1, Some("u1")));
        cache.upsert(owned("b", 2, Some("u1")));
        cache.upsert(owned("c", 3, None));
        cache.upsert(owned("d", 4, Some("u2")));
        assert_eq!(names(cache.controlled_by("u1")), ["a", "b"]);
        assert_eq!(names(cache.orphans("ns")), ["c"]);
        assert!(cache.orphans("other").is_empty());

        cache.upsert(owned("a", 5, Some("u1"))); // updated, same controller
        assert_eq!(names(cache.controlled_by("u1")), ["a", "b"]);
        cache.upsert(owned("c", 5, Some("u1"))); // adopted
        cache.upsert(owned("a", 6, None)); // released
        assert_eq!(names(cache.controlled_by("u1")), ["b", "c"]);
        assert_eq!(names(cache.orphans("ns")), ["a"]);

        cache.remove(&ObjectKey::new("ns", "b"), 7);
        assert_eq!(names(cache.controlled_by("u1")), ["c"]);
        // A stale event does not bring the deleted object back into the index.
        cache.upsert(owned("b", 2, Some("u1")));
        assert_eq!(names(cache.controlled_by("u1")), ["c"]);

        let changes = cache.replace(vec![owned("c", 5, Some("u1"))], 10);
        assert_eq!(changes.len(), 2, "a and d gone: {}", changes.len());
        assert_eq!(names(cache.controlled_by("u1")), ["c"]);
        assert!(cache.controlled_by("u2").is_empty());
        assert!(cache.orphans("ns").is_empty());
        assert_eq!(cache.len(), 1);
    }

    /// Deleted keys are forgotten once there are many, but only up to the
    /// revision the caller's watch has reached.
    #[test]
    fn tombstones_are_pruned_up_to_the_watch_revision() {
        let cache = Cache::<ConfigMap>::default();
        let n = TOMBSTONES_BEFORE_PRUNE as i64 + 10;
        for i in 0..n {
            cache.upsert(object(&format!("o{i}"), i + 1, "x"));
        }
        for i in 0..n {
            cache.remove(&ObjectKey::new("ns", &format!("o{i}")), n + 1 + i);
        }
        assert_eq!(cache.tombstones(), n as usize);
        assert_eq!(cache.len(), 0);
        // The watch is at the 100th deletion: only those tombstones go.
        cache.prune_tombstones(n + 100);
        assert_eq!(cache.tombstones(), n as usize - 100);
        // A stale event for a still-guarded key is ignored.
        cache.upsert(object(&format!("o{}", n - 1), 5, "stale"));
        assert_eq!(data(&cache, &format!("o{}", n - 1)), None);
        // Few tombstones left against live objects: nothing is scanned.
        for i in 0..2000 {
            cache.upsert(object(&format!("live{i}"), 10_000 + i, "x"));
        }
        cache.prune_tombstones(i64::MAX);
        assert_eq!(cache.tombstones(), n as usize - 100);
        assert_eq!(cache.len(), 2000);
    }
}
