//! The controller runtime: informers fill typed caches from list + watch,
//! object changes are mapped to the keys of the controllers they concern,
//! work queues feed each controller's pure `reconcile`, and the applier
//! carries out the returned plan through the API — feeding what it wrote back
//! into the caches so the next reconcile sees it. Everything runs only while
//! this process holds the leader Lease.

pub mod cache;
pub mod leader;
pub mod queue;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client::{Client, ClientError, DeleteOptions, Gvr, PatchType, WatchEvent};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Endpoints, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use self::cache::{revision_of, Applied, Relist};
pub use self::cache::{Cache, ObjectKey};
pub use self::queue::WorkQueue;
use crate::plan::{Action, EventType, Plan, Resource};

/// The time source of controllers (the simulation's is virtual).
pub trait Clock: Send + Sync {
    fn now(&self) -> jiff::Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

pub fn gvr(resource: Resource) -> Gvr {
    let (group, version, plural) = resource.gvr();
    Gvr::new(group, version, plural)
}

macro_rules! kinds {
    ($( $variant:ident => $field:ident : $ty:ty ),* $(,)?) => {
        /// The caches of every kind a controller reads.
        #[derive(Default)]
        pub struct Caches {
            $( pub $field: Cache<$ty>, )*
            synced: [AtomicBool; KIND_COUNT],
        }

        /// One cached object of any kind, for change notification.
        #[derive(Clone, Debug)]
        pub enum AnyObject {
            $( $variant(Arc<$ty>), )*
        }

        impl AnyObject {
            pub fn meta(&self) -> &ObjectMeta {
                match self {
                    $( AnyObject::$variant(o) => o.metadata(), )*
                }
            }
            pub fn resource(&self) -> Resource {
                match self {
                    $( AnyObject::$variant(_) => Resource::$variant, )*
                }
            }
        }

        const CACHED: &[Resource] = &[$( Resource::$variant, )*];

        impl Caches {
            /// Records an object the API returned (a write's answer or a
            /// watch event); returns the change if it is newer than the cache.
            fn upsert(&self, resource: Resource, value: Value) -> Option<(Option<AnyObject>, Option<AnyObject>)> {
                match resource {
                    $( Resource::$variant => {
                        let object: $ty = serde_json::from_value(value).ok()?;
                        match self.$field.upsert(object.cache_form()) {
                            Applied::Unchanged => None,
                            Applied::Changed { old, new } => Some((old.map(AnyObject::$variant), new.map(AnyObject::$variant))),
                        }
                    } )*
                    _ => None,
                }
            }

            /// [`Caches::upsert`] of a watch event's object, decoded from its
            /// JSON text straight into the cached type; also returns its
            /// resourceVersion.
            fn upsert_raw(&self, resource: Resource, raw: &RawValue) -> (Option<String>, Option<(Option<AnyObject>, Option<AnyObject>)>) {
                match resource {
                    $( Resource::$variant => {
                        let object: $ty = match serde_json::from_str(raw.get()) {
                            Ok(o) => o,
                            Err(e) => {
                                tracing::warn!("informer: skipping an undecodable object: {e}");
                                return (None, None);
                            }
                        };
                        let resource_version = object.metadata().resource_version.clone();
                        let change = match self.$field.upsert(object.cache_form()) {
                            Applied::Unchanged => None,
                            Applied::Changed { old, new } => Some((old.map(AnyObject::$variant), new.map(AnyObject::$variant))),
                        };
                        (resource_version, change)
                    } )*
                    _ => (None, None),
                }
            }

            /// Lists `resource` page by page, decoding each page straight into
            /// the cached type, and replaces the cache with the result;
            /// returns the list's resourceVersion and the changes.
            async fn relist(&self, client: &Client, resource: Resource) -> Result<(String, Vec<(Option<AnyObject>, Option<AnyObject>)>), ClientError> {
                match resource {
                    $( Resource::$variant => {
                        let mut relist = Relist::default();
                        let resource_version = client
                            .list_pages(gvr(resource), None, None, None, |page| {
                                self.$field.relist_page(&mut relist, decode_page::<$ty>(page))
                            })
                            .await?;
                        let revision = resource_version.parse().unwrap_or(0);
                        let changes = self.$field
                            .relist_finish(relist, revision)
                            .into_iter()
                            .map(|(o, n)| (o.map(AnyObject::$variant), n.map(AnyObject::$variant)))
                            .collect();
                        Ok((resource_version, changes))
                    } )*
                    _ => Ok((String::new(), Vec::new())),
                }
            }

            fn remove(&self, resource: Resource, key: &ObjectKey, revision: i64) -> Option<(Option<AnyObject>, Option<AnyObject>)> {
                match resource {
                    $( Resource::$variant => match self.$field.remove(key, revision) {
                        Applied::Unchanged => None,
                        Applied::Changed { old, new } => Some((old.map(AnyObject::$variant), new.map(AnyObject::$variant))),
                    }, )*
                    _ => None,
                }
            }

            /// Forgets tombstones up to `revision` (see [`Cache::prune_tombstones`]).
            fn prune_tombstones(&self, resource: Resource, revision: i64) {
                match resource {
                    $( Resource::$variant => self.$field.prune_tombstones(revision), )*
                    _ => {}
                }
            }

            /// The cached revision of one object, if cached.
            fn revision(&self, resource: Resource, key: &ObjectKey) -> Option<i64> {
                match resource {
                    $( Resource::$variant => self.$field.get(key).map(|o| revision_of(o.metadata())), )*
                    _ => None,
                }
            }

        }
    };
}

const KIND_COUNT: usize = 18;

kinds! {
    Pods => pods: Pod,
    Nodes => nodes: Node,
    ReplicaSets => replica_sets: ReplicaSet,
    ReplicationControllers => replication_controllers: ReplicationController,
    Deployments => deployments: Deployment,
    StatefulSets => stateful_sets: StatefulSet,
    DaemonSets => daemon_sets: DaemonSet,
    ControllerRevisions => controller_revisions: ControllerRevision,
    Jobs => jobs: Job,
    CronJobs => cron_jobs: CronJob,
    PersistentVolumeClaims => persistent_volume_claims: PersistentVolumeClaim,
    PersistentVolumes => persistent_volumes: PersistentVolume,
    StorageClasses => storage_classes: StorageClass,
    Services => services: Service,
    Endpoints => endpoints: Endpoints,
    EndpointSlices => endpoint_slices: EndpointSlice,
    Leases => leases: Lease,
    HorizontalPodAutoscalers => horizontal_pod_autoscalers: HorizontalPodAutoscaler,
}

impl Caches {
    fn kind_index(resource: Resource) -> Option<usize> {
        CACHED.iter().position(|r| *r == resource)
    }

    /// Whether the informer of `resource` has completed its first list.
    pub fn is_synced(&self, resource: Resource) -> bool {
        Caches::kind_index(resource).is_some_and(|i| self.synced[i].load(Ordering::Acquire))
    }

    pub fn all_synced(&self) -> bool {
        CACHED.iter().all(|r| self.is_synced(*r))
    }
}

/// One page of a list, decoded into the cached type (an object that does not
/// decode is skipped with a warning) in its [`CacheForm`].
fn decode_page<K: DeserializeOwned + CacheForm>(
    items: Vec<Box<RawValue>>,
) -> impl Iterator<Item = K> {
    items
        .into_iter()
        .filter_map(|raw| match serde_json::from_str(raw.get()) {
            Ok(o) => Some(CacheForm::cache_form(o)),
            Err(e) => {
                tracing::warn!("informer: skipping an undecodable object: {e}");
                None
            }
        })
}

/// What the caches keep of an object (client-go's informer transform, as
/// kube-controller-manager and kube-scheduler set it). Every kind drops
/// `metadata.managedFields`, which no controller reads and which is often the
/// larger part of an object; a controller that writes back a cached object
/// sends no managedFields, and the API server then keeps the stored ones.
/// Pods drop more (see [`crate::pods::cache_form`]).
pub trait CacheForm: Metadata<Ty = ObjectMeta> + Sized {
    fn cache_form(mut self) -> Self {
        self.metadata_mut().managed_fields = None;
        self.trim();
        self
    }
    /// What a kind drops beyond managedFields (nothing, by default).
    fn trim(&mut self) {}
}

macro_rules! metadata_only_cache_form {
    ($($ty:ty),* $(,)?) => { $( impl CacheForm for $ty {} )* };
}

metadata_only_cache_form!(
    Node,
    ReplicaSet,
    ReplicationController,
    Deployment,
    StatefulSet,
    DaemonSet,
    ControllerRevision,
    Job,
    CronJob,
    PersistentVolumeClaim,
    PersistentVolume,
    StorageClass,
    Service,
    Endpoints,
    EndpointSlice,
    Lease,
    HorizontalPodAutoscaler,
);

impl CacheForm for Pod {
    fn trim(&mut self) {
        crate::pods::cache_form(self);
    }
}

/// A controller: which keys an object change concerns, and the pure
/// decision for one key.
pub trait Controller: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The kinds this controller reads (their informers must have synced
    /// before it runs).
    fn reads(&self) -> &'static [Resource];
    /// Sees every change before keys are computed (for controllers that keep
    /// derived state, like the scheduler's snapshot). `old`/`new` are `None`
    /// for a creation/deletion.
    fn observe(&self, _old: Option<&AnyObject>, _new: Option<&AnyObject>) {}
    /// The keys of this controller that a change of `object` concerns.
    fn keys_for(&self, caches: &Caches, object: &AnyObject) -> Vec<ObjectKey>;
    /// The keys a change from `old` to `new` concerns; by default those of
    /// either side. Controllers that only care about some fields of a
    /// frequently written kind (node heartbeats) compare the two here.
    fn keys_for_change(
        &self,
        caches: &Caches,
        old: Option<&AnyObject>,
        new: Option<&AnyObject>,
    ) -> Vec<ObjectKey> {
        let mut keys = Vec::new();
        for object in [old, new].into_iter().flatten() {
            keys.extend(self.keys_for(caches, object));
        }
        keys
    }
    /// Every key (for the periodic resync).
    fn all_keys(&self, caches: &Caches) -> Vec<ObjectKey>;
    /// The plan for `key` given the caches at `now`.
    fn reconcile(&self, caches: &Caches, key: &ObjectKey, now: jiff::Timestamp) -> Plan;
    /// Told whether the plan of the last `reconcile` of `key` was applied
    /// in full (for controllers that keep memory between reconciles and
    /// must only keep what was actually written, like the HPA's scale
    /// events).
    fn applied(&self, _key: &ObjectKey, _ok: bool) {}
}

/// Tuning of the runtime.
#[derive(Clone, Debug)]
pub struct Options {
    pub workers_per_controller: usize,
    pub resync_period: Duration,
    /// Seconds a watch runs before it is renewed.
    pub watch_timeout_seconds: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers_per_controller: 2,
            resync_period: Duration::from_secs(300),
            watch_timeout_seconds: 300,
        }
    }
}

/// Runs controllers against the API: informers, queues, workers, applier.
pub struct ControllerManager {
    client: Client,
    clock: Arc<dyn Clock>,
    caches: Arc<Caches>,
    controllers: Vec<(Arc<dyn Controller>, WorkQueue)>,
    options: Options,
    event_sequence: AtomicU64,
    events: client::events::EventRecorder,
}

impl ControllerManager {
    pub fn new(
        client: Client,
        clock: Arc<dyn Clock>,
        controllers: Vec<Arc<dyn Controller>>,
        options: Options,
    ) -> Arc<ControllerManager> {
        Arc::new(ControllerManager {
            client,
            clock,
            caches: Arc::new(Caches::default()),
            controllers: controllers
                .into_iter()
                .map(|c| (c, WorkQueue::default()))
                .collect(),
            options,
            event_sequence: AtomicU64::new(0),
            events: Default::default(),
        })
    }

    pub fn caches(&self) -> &Arc<Caches> {
        &self.caches
    }

    /// Runs informers and controllers until the returned set is dropped or
    /// aborted (leadership lost).
    pub fn spawn(self: &Arc<Self>) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        let mut needed: Vec<Resource> = self
            .controllers
            .iter()
            .flat_map(|(c, _)| c.reads().iter().copied())
            .collect();
        needed.sort();
        needed.dedup();
        for resource in needed {
            let manager = self.clone();
            tasks.spawn(async move { manager.run_informer(resource).await });
        }
        for index in 0..self.controllers.len() {
            for _ in 0..self.options.workers_per_controller.max(1) {
                let manager = self.clone();
                tasks.spawn(async move { manager.run_worker(index).await });
            }
            let manager = self.clone();
            tasks.spawn(async move { manager.run_resync(index).await });
        }
        tasks
    }

    fn dispatch(&self, old: Option<&AnyObject>, new: Option<&AnyObject>) {
        for (controller, queue) in &self.controllers {
            controller.observe(old, new);
            for key in controller.keys_for_change(&self.caches, old, new) {
                queue.add(key);
            }
        }
    }

    async fn run_informer(self: Arc<Self>, resource: Resource) {
        let gvr = gvr(resource);
        let mut failures = 0u32;
        loop {
            let (mut resource_version, changes) =
                match self.caches.relist(&self.client, resource).await {
                    Ok(listed) => listed,
                    Err(e) => {
                        failures += 1;
                        tracing::warn!("informer {}: list failed: {e}", gvr.plural);
                        tokio::time::sleep(backoff(failures)).await;
                        continue;
                    }
                };
            failures = 0;
            for (old, new) in changes {
                self.dispatch(old.as_ref(), new.as_ref());
            }
            if let Some(i) = Caches::kind_index(resource) {
                if !self.caches.synced[i].swap(true, Ordering::AcqRel) {
                    // First sync: every controller reading this kind may now run.
                    for (controller, queue) in &self.controllers {
                        if controller.reads().contains(&resource) {
                            for key in controller.all_keys(&self.caches) {
                                queue.add(key);
                            }
                        }
                    }
                }
            }
            // Watch until the history we need is gone (410), then relist.
            loop {
                let stream = match self
                    .client
                    .watch_raw(
                        gvr,
                        None,
                        &resource_version,
                        self.options.watch_timeout_seconds,
                    )
                    .await
                {
                    Ok(s) => s,
                    Err(e) if e.is_gone() => break,
                    Err(e) => {
                        failures += 1;
                        tracing::warn!("informer {}: watch failed: {e}", gvr.plural);
                        tokio::time::sleep(backoff(failures)).await;
                        continue;
                    }
                };
                failures = 0;
                let mut stream = stream;
                let mut gone = false;
                while let Some(event) = futures::StreamExt::next(&mut stream).await {
                    match event {
                        WatchEvent::Added(raw) | WatchEvent::Modified(raw) => {
                            let (rv, change) = self.caches.upsert_raw(resource, &raw);
                            if let Some(rv) = rv {
                                resource_version = rv;
                            }
                            if let Some((old, new)) = change {
                                self.dispatch(old.as_ref(), new.as_ref());
                            }
                        }
                        WatchEvent::Deleted(raw) => {
                            #[derive(serde::Deserialize)]
                            struct Deleted {
                                #[serde(default)]
                                metadata: ObjectMeta,
                            }
                            let meta = serde_json::from_str::<Deleted>(raw.get())
                                .map(|d| d.metadata)
                                .unwrap_or_default();
                            let revision = revision_of(&meta);
                            if let Some(rv) = &meta.resource_version {
                                resource_version = rv.clone();
                            }
                            if let Some((old, new)) =
                                self.caches
                                    .remove(resource, &ObjectKey::of(&meta), revision)
                            {
                                self.dispatch(old.as_ref(), new.as_ref());
                            }
                            // The watch has seen everything up to this
                            // deletion: no older event can revive what the
                            // tombstones before it guard.
                            self.caches.prune_tombstones(resource, revision);
                        }
                        WatchEvent::Bookmark {
                            resource_version: rv,
                        } => {
                            if !rv.is_empty() {
                                resource_version = rv;
                            }
                        }
                        WatchEvent::Error(e) => {
                            gone = e.is_gone();
                            if !gone {
                                tracing::warn!("informer {}: watch error: {e}", gvr.plural);
                            }
                            break;
                        }
                    }
                }
                if gone {
                    break;
                }
            }
        }
    }

    async fn run_resync(self: Arc<Self>, index: usize) {
        let (controller, queue) = &self.controllers[index];
        loop {
            tokio::time::sleep(self.options.resync_period).await;
            if controller.reads().iter().all(|r| self.caches.is_synced(*r)) {
                for key in controller.all_keys(&self.caches) {
                    queue.add(key);
                }
            }
        }
    }

    async fn run_worker(self: Arc<Self>, index: usize) {
        let (controller, queue) = &self.controllers[index];
        while let Some(key) = queue.get().await {
            if !controller.reads().iter().all(|r| self.caches.is_synced(*r)) {
                // Not every input is known yet; the first sync requeues all keys.
                queue.done(&key);
                continue;
            }
            let plan = controller.reconcile(&self.caches, &key, self.clock.now());
            let result = self.apply(&plan).await;
            controller.applied(&key, result.is_ok());
            match result {
                Ok(()) => {
                    queue.forget(&key);
                    if let Some(after) = plan.requeue_after {
                        queue.add_after(key.clone(), after);
                    }
                }
                Err(e) => {
                    if !e.is_conflict() {
                        tracing::info!("{} {key}: {e}", controller.name());
                    }
                    queue.add_rate_limited(key.clone());
                }
            }
            queue.done(&key);
        }
    }

    /// Carries out a plan in order, stopping at the first failure (the key is
    /// then retried from fresh state).
    pub async fn apply(&self, plan: &Plan) -> Result<(), ClientError> {
        for action in &plan.actions {
            self.apply_action(action).await?;
            // Requests to an in-process API server complete without ever
            // waiting, so a worker with a long queue (or a plan of hundreds
            // of writes) would otherwise hold a single-threaded runtime (the
            // simulation's) until it is done: informers, the garbage
            // collector and other controllers did not run for tens of
            // thousands of writes, and their store watches fell behind and
            // relisted. Once tokio's cooperative budget is spent (128 units
            // a poll), this gives way; otherwise it costs a decrement.
            tokio::task::consume_budget().await;
        }
        Ok(())
    }

    fn observe(&self, resource: Resource, value: Value) {
        if let Some((old, new)) = self.caches.upsert(resource, value) {
            self.dispatch(old.as_ref(), new.as_ref());
        }
    }

    async fn apply_action(&self, action: &Action) -> Result<(), ClientError> {
        let client = &self.client;
        match action {
            Action::Create {
                resource,
                namespace,
                object,
            } => {
                match client
                    .create(gvr(*resource), namespace.as_deref(), object)
                    .await
                {
                    Ok(created) => {
                        if *resource == Resource::Pods {
                            self.pod_created_event(&created).await;
                        }
                        self.observe(*resource, created);
                        Ok(())
                    }
                    // A named object that exists already: the cache was behind.
                    Err(e) if e.is_already_exists() => Err(e),
                    Err(e) => Err(e),
                }
            }
            Action::Update {
                resource,
                namespace,
                name,
                object,
            } => {
                let updated = client
                    .replace(gvr(*resource), namespace.as_deref(), name, object)
                    .await?;
                self.observe(*resource, updated);
                Ok(())
            }
            Action::UpdateStatus {
                resource,
                namespace,
                name,
                object,
            } => {
                let updated = client
                    .replace_status(gvr(*resource), namespace.as_deref(), name, object)
                    .await?;
                self.observe(*resource, updated);
                Ok(())
            }
            Action::Patch {
                resource,
                namespace,
                name,
                subresource,
                patch,
            } => {
                let patched = client
                    .patch(
                        gvr(*resource),
                        namespace.as_deref(),
                        name,
                        *subresource,
                        PatchType::Merge,
                        patch,
                    )
                    .await?;
                // A subresource such as `scale` answers with another kind.
                if subresource.is_none_or(|s| s == "status") {
                    self.observe(*resource, patched);
                }
                Ok(())
            }
            Action::Delete {
                resource,
                namespace,
                name,
                uid,
                propagation,
            } => {
                let options = DeleteOptions {
                    uid: uid.clone(),
                    propagation: propagation.map(str::to_string),
                    ..Default::default()
                };
                self.delete(*resource, namespace.as_deref(), name, &options)
                    .await
            }
            Action::DeleteNow {
                resource,
                namespace,
                name,
                uid,
            } => {
                let options = DeleteOptions {
                    uid: uid.clone(),
                    grace_period_seconds: Some(0),
                    ..Default::default()
                };
                self.delete(*resource, namespace.as_deref(), name, &options)
                    .await
            }
            Action::CreateSubresource {
                resource,
                namespace,
                name,
                subresource,
                object,
            } => {
                client
                    .create_subresource(
                        gvr(*resource),
                        namespace.as_deref(),
                        name,
                        subresource,
                        object,
                    )
                    .await?;
                Ok(())
            }
            Action::Event {
                involved,
                event_type,
                reason,
                message,
            } => {
                self.record_event(involved, *event_type, reason, message)
                    .await;
                Ok(())
            }
        }
    }

    async fn delete(
        &self,
        resource: Resource,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<(), ClientError> {
        match self
            .client
            .delete(gvr(resource), namespace, name, options)
            .await
        {
            Ok(answer) => {
                let still_there = answer.get("kind").and_then(Value::as_str) != Some("Status")
                    && answer.pointer("/metadata/deletionTimestamp").is_some();
                if still_there {
                    // Held by finalizers or a pod's grace period.
                    self.observe(resource, answer);
                } else {
                    let key = ObjectKey::new(namespace.unwrap_or(""), name);
                    let revision = answer
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .and_then(|rv| rv.parse().ok())
                        .or_else(|| self.current_revision(resource, &key).map(|r| r + 1))
                        .unwrap_or(0);
                    if let Some((old, new)) = self.caches.remove(resource, &key, revision) {
                        self.dispatch(old.as_ref(), new.as_ref());
                    }
                }
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn current_revision(&self, resource: Resource, key: &ObjectKey) -> Option<i64> {
        self.caches.revision(resource, key)
    }

    /// "Created pod: NAME" on the pod's controller, as the ReplicaSet, Job,
    /// StatefulSet and DaemonSet controllers report it.
    async fn pod_created_event(&self, pod: &Value) {
        let Some(owner) = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|refs| {
                refs.iter()
                    .find(|r| r.get("controller") == Some(&json!(true)))
            })
        else {
            return;
        };
        let name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let involved = json!({
            "apiVersion": owner.get("apiVersion"),
            "kind": owner.get("kind"),
            "name": owner.get("name"),
            "uid": owner.get("uid"),
            "namespace": pod.pointer("/metadata/namespace"),
        });
        self.record_event(
            &involved,
            EventType::Normal,
            "SuccessfulCreate",
            &format!("Created pod: {name}"),
        )
        .await;
    }

    /// Writes a core/v1 Event; failures are logged, never retried (events
    /// are best effort, as in Kubernetes).
    async fn record_event(
        &self,
        involved: &Value,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) {
        let now = self.clock.now();
        let namespace = involved
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string();
        let name = involved
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("object");
        let sequence = self.event_sequence.fetch_add(1, Ordering::Relaxed);
        let timestamp = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": format!("{name}.{:x}", now.as_nanosecond() as u64 ^ sequence),
                "namespace": namespace,
            },
            "involvedObject": involved,
            "type": match event_type { EventType::Normal => "Normal", EventType::Warning => "Warning" },
            "reason": reason,
            "message": message,
            "source": {"component": "controller-manager"},
            "reportingComponent": "controller-manager",
            "firstTimestamp": timestamp,
            "lastTimestamp": timestamp,
            "count": 1,
        });
        if let Err(e) = self.events.record(&self.client, event, now).await {
            tracing::debug!("event {reason} on {name}: {e}");
        }
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1 << failures.min(6))
        .min(Duration::from_secs(10))
}
