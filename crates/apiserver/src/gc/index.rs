//! The collector's index of every object's metadata, kept together with the
//! lookups planning needs (objects by uid, dependents by owner uid, objects
//! per namespace) and the set of keys whose actions a change may have
//! altered. Planning after a batch of changes looks only at those keys
//! ([`Index::take_plan`]), instead of rebuilding every lookup from the whole
//! index and walking every object: at 20,000 pods the whole-index plan after
//! every batch was a tenth of the simulation's time.
//!
//! The rules are in one place, [`Index::object_actions`] and
//! [`Index::namespace_actions`]; the whole-index [`super::plan`] is this
//! planner with every key marked, so the two cannot disagree on what to do,
//! only on which keys to look at — and a property test checks that every
//! action a change makes appear is among those the incremental plan finds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Action, ObjectMeta};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Index {
    objects: BTreeMap<String, ObjectMeta>,
    /// uid → keys of the objects with that uid (one, unless something
    /// stored an odd object: planning only asks whether any exists). A list
    /// of exactly its length rather than a set: a set's first node takes
    /// ≈300 bytes, for every object in the cluster.
    by_uid: HashMap<String, Vec<String>>,
    /// owner uid → keys of the objects naming it in their ownerReferences.
    dependents: HashMap<String, BTreeSet<String>>,
    /// namespace name → how many objects live in it.
    in_namespace: HashMap<String, usize>,
    /// namespace name → key of its Namespace object.
    namespaces: BTreeMap<String, String>,
    dirty: BTreeSet<String>,
    dirty_namespaces: BTreeSet<String>,
}

impl Index {
    /// An index of `objects`, every key marked for the next plan.
    pub fn from_objects(objects: impl IntoIterator<Item = ObjectMeta>) -> Index {
        let mut index = Index::default();
        for meta in objects {
            index.put(meta);
        }
        index.mark_all();
        index
    }

    pub fn objects(&self) -> &BTreeMap<String, ObjectMeta> {
        &self.objects
    }

    /// Marks every key and namespace, so the next plan is the whole one.
    pub fn mark_all(&mut self) {
        self.dirty = self.objects.keys().cloned().collect();
        self.dirty_namespaces = self.namespaces.keys().cloned().collect();
    }

    /// Stores (or replaces) an object's metadata and marks what the change
    /// may concern.
    pub fn put(&mut self, meta: ObjectMeta) {
        let old = self.objects.remove(&meta.key);
        if let Some(old) = &old {
            self.unlink(old);
        }
        self.link(&meta);
        self.touched(old.as_ref(), Some(&meta));
        self.objects.insert(meta.key.clone(), meta);
    }

    /// Forgets an object and marks what its going may concern.
    pub fn delete(&mut self, key: &str) {
        if let Some(old) = self.objects.remove(key) {
            self.unlink(&old);
            self.touched(Some(&old), None);
        }
    }

    fn link(&mut self, m: &ObjectMeta) {
        let keys = self.by_uid.entry(m.uid.clone()).or_default();
        if !keys.contains(&m.key) {
            keys.reserve_exact(1);
            keys.push(m.key.clone());
        }
        for owner in &m.owners {
            self.dependents
                .entry(owner.uid.clone())
                .or_default()
                .insert(m.key.clone());
        }
        if let Some(ns) = &m.namespace {
            *self.in_namespace.entry(ns.clone()).or_default() += 1;
        }
        if m.is_namespace() {
            self.namespaces.insert(m.name.clone(), m.key.clone());
        }
    }

    fn unlink(&mut self, m: &ObjectMeta) {
        fn remove(map: &mut HashMap<String, BTreeSet<String>>, at: &str, key: &str) {
            if let Some(set) = map.get_mut(at) {
                set.remove(key);
                if set.is_empty() {
                    map.remove(at);
                }
            }
        }
        if let Some(keys) = self.by_uid.get_mut(&m.uid) {
            keys.retain(|k| *k != m.key);
            if keys.is_empty() {
                self.by_uid.remove(&m.uid);
            }
        }
        for owner in &m.owners {
            remove(&mut self.dependents, &owner.uid, &m.key);
        }
        if let Some(ns) = &m.namespace {
            if let Some(n) = self.in_namespace.get_mut(ns) {
                *n -= 1;
                if *n == 0 {
                    self.in_namespace.remove(ns);
                }
            }
        }
        if m.is_namespace() && self.namespaces.get(&m.name) == Some(&m.key) {
            self.namespaces.remove(&m.name);
        }
    }

    /// Marks the keys and namespaces whose actions may differ now that the
    /// object went from `old` to `new`: the object itself; its owners (their
    /// dependents changed); the dependents of a uid that appeared or went
    /// (whether their owners exist changed); a terminating namespace whose
    /// content changed; a namespace, with all its objects when it starts or
    /// stops terminating; the namespace of a default ServiceAccount or root CA
    /// ConfigMap.
    fn touched(&mut self, old: Option<&ObjectMeta>, new: Option<&ObjectMeta>) {
        let Some(key) = old.or(new).map(|m| m.key.clone()) else {
            return;
        };
        if new.is_some() {
            self.dirty.insert(key.clone());
        }
        for m in old.into_iter().chain(new) {
            for owner in &m.owners {
                if let Some(keys) = self.by_uid.get(&owner.uid) {
                    self.dirty.extend(keys.iter().cloned());
                }
            }
        }
        let (old_uid, new_uid) = (old.map(|m| &m.uid), new.map(|m| &m.uid));
        if old_uid != new_uid {
            for uid in [old_uid, new_uid].into_iter().flatten() {
                if let Some(keys) = self.dependents.get(uid) {
                    self.dirty.extend(keys.iter().cloned());
                }
            }
        }
        for m in old.into_iter().chain(new) {
            if let Some(ns) = &m.namespace {
                if self.terminating(ns) {
                    self.dirty_namespaces.insert(ns.clone());
                }
                // The name first: this runs for every change of every object.
                let name = key.rsplit('/').next().unwrap_or("");
                if (name == "default" && key == default_service_account_key(ns))
                    || (name == api::admission::ROOT_CA_CONFIG_MAP && key == root_ca_key(ns))
                {
                    self.dirty_namespaces.insert(ns.clone());
                }
            }
        }
        let namespace = new.or(old).filter(|m| m.is_namespace());
        if let Some(ns) = namespace {
            self.dirty_namespaces.insert(ns.name.clone());
            let was_terminating = old.is_some_and(|m| m.is_namespace() && m.deleting);
            let terminating = new.is_some_and(|m| m.deleting);
            if terminating != was_terminating {
                // Everything in it is to be deleted (or, the namespace gone,
                // no longer is): rare, so a scan.
                let name = ns.name.clone();
                let inside: Vec<String> = self
                    .objects
                    .values()
                    .filter(|m| m.namespace.as_deref() == Some(name.as_str()))
                    .map(|m| m.key.clone())
                    .collect();
                self.dirty.extend(inside);
            }
        }
    }

    fn terminating(&self, namespace: &str) -> bool {
        self.namespaces
            .get(namespace)
            .and_then(|key| self.objects.get(key))
            .is_some_and(|m| m.deleting)
    }

    fn uid_exists(&self, uid: &str) -> bool {
        self.by_uid.contains_key(uid)
    }

    fn dependents_of<'a>(&'a self, uid: &str) -> impl Iterator<Item = &'a ObjectMeta> + 'a {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|key| self.objects.get(key))
    }

    /// The actions for the marked keys and namespaces (in key order, then
    /// per namespace), clearing the marks. With `publish_root_ca`, also the
    /// root CA ConfigMaps missing from marked namespaces.
    pub fn take_plan(&mut self, publish_root_ca: bool) -> Vec<Action> {
        let dirty = std::mem::take(&mut self.dirty);
        let namespaces = std::mem::take(&mut self.dirty_namespaces);
        let mut actions = Vec::new();
        for key in &dirty {
            if let Some(m) = self.objects.get(key) {
                self.object_actions(m, &mut actions);
            }
        }
        self.namespace_actions(&namespaces, publish_root_ca, &mut actions);
        actions
    }

    fn active_namespace(&self, name: &str) -> Option<&ObjectMeta> {
        self.namespaces
            .get(name)
            .and_then(|key| self.objects.get(key))
            .filter(|m| !m.deleting)
    }

    /// What to do about one object: delete it when its namespace is
    /// terminating; verify its owners when none of them is known; orphan or
    /// delete its dependents (or drop its finalizer once it has none) when
    /// it is being deleted with the `orphan` or `foregroundDeletion`
    /// finalizer.
    fn object_actions(&self, m: &ObjectMeta, actions: &mut Vec<Action>) {
        if let Some(ns) = m.namespace.as_deref() {
            if self.terminating(ns) && !m.deleting {
                actions.push(Action::Delete {
                    key: m.key.clone(),
                    reason: "namespace is terminating",
                });
                return;
            }
        }
        if !m.owners.is_empty() && !m.deleting && m.owners.iter().all(|o| !self.uid_exists(&o.uid))
        {
            actions.push(Action::VerifyOwners { key: m.key.clone() });
        }
        if !m.deleting {
            return;
        }
        if m.finalizers.iter().any(|f| f == "orphan") {
            let mut any = false;
            for d in self.dependents_of(&m.uid) {
                any = true;
                actions.push(Action::RemoveOwner {
                    key: d.key.clone(),
                    owner_uid: m.uid.clone(),
                });
            }
            if !any {
                actions.push(Action::RemoveFinalizer {
                    key: m.key.clone(),
                    finalizer: "orphan",
                });
            }
        } else if m.finalizers.iter().any(|f| f == "foregroundDeletion") {
            let mut any = false;
            for d in self.dependents_of(&m.uid) {
                any = true;
                if !d.deleting {
                    actions.push(Action::Delete {
                        key: d.key.clone(),
                        reason: "owner is being deleted in the foreground",
                    });
                }
            }
            if !any {
                actions.push(Action::RemoveFinalizer {
                    key: m.key.clone(),
                    finalizer: "foregroundDeletion",
                });
            }
        }
    }

    /// Every active namespace gets its default ServiceAccount; a terminating
    /// namespace that is empty loses its `kubernetes` finalizer; with
    /// `publish_root_ca`, every active namespace gets the root CA ConfigMap.
    fn namespace_actions(
        &self,
        names: &BTreeSet<String>,
        publish_root_ca: bool,
        actions: &mut Vec<Action>,
    ) {
        for name in names {
            if self.active_namespace(name).is_some()
                && !self
                    .objects
                    .contains_key(&default_service_account_key(name))
            {
                actions.push(Action::CreateDefaultServiceAccount {
                    namespace: name.clone(),
                });
            }
        }
        for name in names {
            let finalizable = self
                .namespaces
                .get(name)
                .and_then(|key| self.objects.get(key))
                .is_some_and(|m| m.deleting && m.namespace_finalizer);
            if finalizable && !self.in_namespace.contains_key(name) {
                actions.push(Action::FinalizeNamespace { name: name.clone() });
            }
        }
        if publish_root_ca {
            for name in names {
                if self.active_namespace(name).is_some()
                    && !self.objects.contains_key(&root_ca_key(name))
                {
                    actions.push(Action::PublishRootCa {
                        namespace: name.clone(),
                    });
                }
            }
        }
    }
}

fn default_service_account_key(namespace: &str) -> String {
    format!("/registry/core/serviceaccounts/{namespace}/default")
}

fn root_ca_key(namespace: &str) -> String {
    format!(
        "/registry/core/configmaps/{namespace}/{}",
        api::admission::ROOT_CA_CONFIG_MAP
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::{plan, root_ca_plan, Action, ObjectMeta, OwnerRef};
    use super::Index;

    /// A small deterministic generator, so a failing case replays.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n
        }
    }

    /// A random object over a small space of keys, uids, owners,
    /// namespaces and finalizers, so that changes collide often.
    fn random_object(rng: &mut Lcg) -> ObjectMeta {
        let namespaces = ["a", "b"];
        if rng.next(6) == 0 {
            let name = namespaces[rng.next(2)];
            return ObjectMeta {
                key: format!("/registry/core/namespaces/{name}"),
                api_version: "v1".into(),
                kind: "Namespace".into(),
                namespace: None,
                name: name.into(),
                uid: format!("u{}", rng.next(12)),
                owners: vec![],
                finalizers: vec![],
                deleting: rng.next(3) == 0,
                namespace_finalizer: rng.next(2) == 0,
            };
        }
        let ns = namespaces[rng.next(2)];
        let (resource, name) = match rng.next(8) {
            0 => ("serviceaccounts", "default".to_string()),
            1 => ("configmaps", api::admission::ROOT_CA_CONFIG_MAP.to_string()),
            _ => ("pods", format!("p{}", rng.next(6))),
        };
        let owners = (0..rng.next(3))
            .map(|_| OwnerRef {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "rs".into(),
                uid: format!("u{}", rng.next(12)),
            })
            .collect();
        let finalizers = match rng.next(4) {
            0 => vec!["orphan".to_string()],
            1 => vec!["foregroundDeletion".to_string()],
            _ => vec![],
        };
        ObjectMeta {
            key: format!("/registry/core/{resource}/{ns}/{name}"),
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: Some(ns.into()),
            name,
            uid: format!("u{}", rng.next(12)),
            owners,
            finalizers,
            deleting: rng.next(3) == 0,
            namespace_finalizer: false,
        }
    }

    /// After any change, every action of the whole plan that the change
    /// made appear is in the incremental plan, and the incremental plan
    /// holds nothing the whole plan does not.
    #[test]
    fn the_incremental_plan_finds_every_action_a_change_makes_appear() {
        for seed in 0..200u64 {
            let mut rng = Lcg(seed);
            let mut index = Index::default();
            let mut before: BTreeSet<String> = BTreeSet::new();
            for step in 0..60 {
                let keys: Vec<String> = index.objects().keys().cloned().collect();
                if !keys.is_empty() && rng.next(4) == 0 {
                    index.delete(&keys[rng.next(keys.len())]);
                } else {
                    index.put(random_object(&mut rng));
                }
                let incremental: BTreeSet<String> = index
                    .take_plan(true)
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect();
                let whole: BTreeSet<String> = plan(index.objects())
                    .into_iter()
                    .chain(root_ca_plan(index.objects()))
                    .map(|a| format!("{a:?}"))
                    .collect();
                let missed: Vec<&String> = whole
                    .difference(&before)
                    .filter(|a| !incremental.contains(*a))
                    .collect();
                assert!(
                    missed.is_empty(),
                    "seed {seed} step {step}: new actions {missed:?} not in the incremental plan {incremental:?}; index {:#?}",
                    index.objects()
                );
                let extra: Vec<&String> = incremental.difference(&whole).collect();
                assert!(
                    extra.is_empty(),
                    "seed {seed} step {step}: incremental actions {extra:?} not in the whole plan"
                );
                before = whole;
            }
        }
    }

    #[test]
    fn nothing_changed_nothing_planned() {
        let mut index = Index::from_objects([ObjectMeta {
            key: "/registry/core/pods/a/p".into(),
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: Some("a".into()),
            name: "p".into(),
            uid: "u1".into(),
            owners: vec![OwnerRef {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "gone".into(),
                uid: "u2".into(),
            }],
            finalizers: vec![],
            deleting: false,
            namespace_finalizer: false,
        }]);
        assert_eq!(
            index.take_plan(false),
            vec![Action::VerifyOwners {
                key: "/registry/core/pods/a/p".into()
            }]
        );
        assert_eq!(index.take_plan(false), vec![]);
        index.mark_all();
        assert_eq!(index.take_plan(false).len(), 1);
        index.delete("/registry/core/pods/a/p");
        assert!(index.objects().is_empty());
        assert_eq!(index.take_plan(true), vec![]);
    }
}
