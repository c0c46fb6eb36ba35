//! The conformance suite every backend must pass: each case takes a fresh,
//! empty store and panics on a contract violation. Run them all as separate
//! tests with [`conformance_tests!`](crate::conformance_tests).
//!
//! Cases only rely on revisions increasing, never on absolute values, because a
//! fresh etcd starts at revision 1 and the embedded store at 0.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{Event, KeyValue, RangeRequest, Revision, Store, StoreError, WatchStream};

/// Expands to one `#[tokio::test]` per conformance case. `$fresh` is an async
/// fn returning `(Arc<dyn Store>, guard)`; the guard (e.g. a temp dir or an etcd
/// process) lives until the case ends.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::conformance_tests!(@cases $fresh;
            create_get_and_already_exists,
            update_is_compare_and_swap,
            missing_keys_are_not_found,
            delete_with_and_without_precondition,
            range_by_prefix_is_exact,
            range_paging_at_fixed_revision_is_consistent,
            range_at_old_revisions,
            watch_replays_history_then_live_events,
            watch_from_zero_sees_only_new_events,
            compaction_fails_old_reads_and_watches,
            future_revisions_are_rejected,
            concurrent_writers_stay_consistent,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $fresh().await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

const WAIT: Duration = Duration::from_secs(30);

fn bytes(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

fn range(prefix: &str) -> RangeRequest {
    RangeRequest {
        prefix: prefix.into(),
        ..Default::default()
    }
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

/// Read exactly `count` events, failing on an error, end or timeout.
pub async fn next_events(watch: &mut WatchStream, count: usize) -> Vec<Event> {
    let mut events = Vec::new();
    while events.len() < count {
        match tokio::time::timeout(WAIT, watch.next()).await {
            Ok(Some(Ok(batch))) => {
                assert!(!batch.is_empty(), "a watch batch is never empty");
                events.extend(batch);
            }
            Ok(other) => panic!(
                "watch ended after {} of {count} events: {other:?}",
                events.len()
            ),
            Err(_) => panic!(
                "timed out after {} of {count} events: {events:?}",
                events.len()
            ),
        }
    }
    assert_eq!(events.len(), count, "more events than expected: {events:?}");
    events
}

fn describe(event: &Event) -> String {
    match event {
        Event::Put { kv, prev } => format!(
            "put {}={} prev={}",
            kv.key,
            String::from_utf8_lossy(&kv.value),
            prev.as_ref()
                .map(|p| String::from_utf8_lossy(&p.value).into_owned())
                .unwrap_or("-".into())
        ),
        Event::Delete { prev, .. } => format!(
            "delete {} prev={}",
            prev.key,
            String::from_utf8_lossy(&prev.value)
        ),
    }
}

pub async fn create_get_and_already_exists(store: Arc<dyn Store>) {
    let (missing, before) = store.get("/t/a").await.unwrap();
    assert_eq!(missing, None);
    let kv = store.create("/t/a", bytes("v1")).await.unwrap();
    assert_eq!(
        (kv.key.as_str(), kv.value.as_ref(), kv.version),
        ("/t/a", &b"v1"[..], 1)
    );
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert!(kv.mod_revision > before);
    let (got, revision) = store.get("/t/a").await.unwrap();
    assert_eq!(got, Some(kv.clone()));
    assert!(revision >= kv.mod_revision);
    assert_eq!(
        store.create("/t/a", bytes("v2")).await,
        Err(StoreError::AlreadyExists { key: "/t/a".into() })
    );
    assert_eq!(store.get("/t/a").await.unwrap().0, Some(kv));
}

pub async fn update_is_compare_and_swap(store: Arc<dyn Store>) {
    let v1 = store.create("/t/a", bytes("v1")).await.unwrap();
    let v2 = store
        .update("/t/a", bytes("v2"), v1.mod_revision)
        .await
        .unwrap();
    assert_eq!(
        (v2.value.as_ref(), v2.version, v2.create_revision),
        (&b"v2"[..], 2, v1.create_revision)
    );
    assert!(v2.mod_revision > v1.mod_revision);
    let stale = store.update("/t/a", bytes("v3"), v1.mod_revision).await;
    assert_eq!(
        stale,
        Err(StoreError::Conflict {
            key: "/t/a".into(),
            expected: v1.mod_revision,
            current: Some(v2.clone())
        })
    );
    assert_eq!(store.get("/t/a").await.unwrap().0, Some(v2.clone()));
    let v3 = store
        .update("/t/a", bytes("v3"), v2.mod_revision)
        .await
        .unwrap();
    assert_eq!(v3.version, 3);
}

pub async fn missing_keys_are_not_found(store: Arc<dyn Store>) {
    let not_found = Err(StoreError::NotFound {
        key: "/t/missing".into(),
    });
    assert_eq!(store.get("/t/missing").await.unwrap().0, None);
    assert_eq!(
        store.update("/t/missing", bytes("x"), 0).await,
        not_found.clone().map(|()| unreachable!())
    );
    assert_eq!(
        store.update("/t/missing", bytes("x"), 5).await,
        not_found.clone().map(|()| unreachable!())
    );
    assert_eq!(
        store.delete("/t/missing", None).await,
        not_found.clone().map(|()| unreachable!())
    );
    assert_eq!(
        store.delete("/t/missing", Some(5)).await,
        not_found.map(|()| unreachable!())
    );
    let listed = store.range(range("/t/")).await.unwrap();
    assert!(listed.kvs.is_empty() && !listed.more && listed.remaining == 0);
}

pub async fn delete_with_and_without_precondition(store: Arc<dyn Store>) {
    let a = store.create("/t/a", bytes("a1")).await.unwrap();
    let b = store.create("/t/b", bytes("b1")).await.unwrap();
    let wrong = store.delete("/t/a", Some(a.mod_revision + 100)).await;
    assert_eq!(
        wrong,
        Err(StoreError::Conflict {
            key: "/t/a".into(),
            expected: a.mod_revision + 100,
            current: Some(a.clone())
        })
    );
    let (deleted_at, prev) = store.delete("/t/a", Some(a.mod_revision)).await.unwrap();
    assert_eq!(prev, a);
    assert!(deleted_at > b.mod_revision);
    assert_eq!(store.get("/t/a").await.unwrap().0, None);
    let (deleted_b, prev_b) = store.delete("/t/b", None).await.unwrap();
    assert_eq!(prev_b, b);
    assert!(deleted_b > deleted_at);
    let again = store.create("/t/a", bytes("a2")).await.unwrap();
    assert_eq!(
        (again.version, again.create_revision),
        (1, again.mod_revision),
        "a re-created key starts over"
    );
}

pub async fn range_by_prefix_is_exact(store: Arc<dyn Store>) {
    for key in ["/a/2", "/a/1", "/ab", "/a", "/b/1", "/a/3/x"] {
        store.create(key, bytes(key)).await.unwrap();
    }
    let cases: &[(&str, &[&str])] = &[
        ("/a/", &["/a/1", "/a/2", "/a/3/x"]),
        ("/a", &["/a", "/a/1", "/a/2", "/a/3/x", "/ab"]),
        ("/b/", &["/b/1"]),
        ("/c/", &[]),
        ("", &["/a", "/a/1", "/a/2", "/a/3/x", "/ab", "/b/1"]),
    ];
    for (prefix, expected) in cases {
        let listed = store.range(range(prefix)).await.unwrap();
        assert_eq!(keys(&listed.kvs), *expected, "prefix {prefix:?}");
        assert!(!listed.more);
        for kv in &listed.kvs {
            assert_eq!(kv.value, bytes(&kv.key));
        }
    }
}

pub async fn range_paging_at_fixed_revision_is_consistent(store: Arc<dyn Store>) {
    let mut original = BTreeMap::new();
    for i in 0..25 {
        let key = format!("/p/{i:02}");
        let kv = store.create(&key, bytes(&format!("v{i}"))).await.unwrap();
        original.insert(key, kv);
    }
    let first = store
        .range(RangeRequest {
            prefix: "/p/".into(),
            limit: Some(7),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (first.kvs.len(), first.more, first.remaining),
        (7, true, 18)
    );
    let snapshot_revision = first.revision;

    // Writers keep changing the listed keys while the pages are read.
    let writer_store = store.clone();
    let writer = tokio::spawn(async move {
        for i in 0..40 {
            let key = format!("/p/{:02}", i % 25);
            if let (Some(kv), _) = writer_store.get(&key).await.unwrap() {
                if i % 3 == 0 {
                    let _ = writer_store.delete(&key, Some(kv.mod_revision)).await;
                } else {
                    let _ = writer_store
                        .update(&key, bytes("changed"), kv.mod_revision)
                        .await;
                }
            }
            let _ = writer_store
                .create(&format!("/p/{i:02}-new"), bytes("new"))
                .await;
            tokio::task::yield_now().await;
        }
    });

    let mut listed = first.kvs.clone();
    let mut more = first.more;
    while more {
        let page = store
            .range(RangeRequest {
                prefix: "/p/".into(),
                start_after: listed.last().map(|kv| kv.key.clone()),
                limit: Some(7),
                revision: Some(snapshot_revision),
            })
            .await
            .unwrap();
        assert_eq!(page.revision, snapshot_revision);
        assert!(page.kvs.len() <= 7);
        assert_eq!(page.more, page.remaining > 0);
        listed.extend(page.kvs);
        more = page.more;
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let expected: Vec<KeyValue> = original.into_values().collect();
    assert_eq!(
        listed, expected,
        "paged list at revision {snapshot_revision}"
    );
    let now = store.range(range("/p/")).await.unwrap();
    assert!(
        now.revision > snapshot_revision,
        "the writers did change the store"
    );
}

pub async fn range_at_old_revisions(store: Arc<dyn Store>) {
    let a1 = store.create("/o/a", bytes("1")).await.unwrap();
    let a2 = store
        .update("/o/a", bytes("2"), a1.mod_revision)
        .await
        .unwrap();
    let b = store.create("/o/b", bytes("b")).await.unwrap();
    let (deleted_at, _) = store.delete("/o/a", None).await.unwrap();
    let cases: &[(Revision, &[(&str, &str)])] = &[
        (a1.mod_revision, &[("/o/a", "1")]),
        (a2.mod_revision, &[("/o/a", "2")]),
        (b.mod_revision, &[("/o/a", "2"), ("/o/b", "b")]),
        (deleted_at, &[("/o/b", "b")]),
    ];
    for (revision, expected) in cases {
        let listed = store
            .range(RangeRequest {
                prefix: "/o/".into(),
                revision: Some(*revision),
                ..Default::default()
            })
            .await
            .unwrap();
        let got: Vec<(&str, &[u8])> = listed
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_ref()))
            .collect();
        let expected: Vec<(&str, &[u8])> =
            expected.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        assert_eq!(got, expected, "at revision {revision}");
        assert_eq!(listed.revision, *revision);
    }
}

pub async fn watch_replays_history_then_live_events(store: Arc<dyn Store>) {
    let a1 = store.create("/w/a", bytes("a1")).await.unwrap();
    store.create("/x/outside", bytes("x")).await.unwrap();
    let a2 = store
        .update("/w/a", bytes("a2"), a1.mod_revision)
        .await
        .unwrap();
    store.create("/w/b", bytes("b1")).await.unwrap();
    store.delete("/w/a", None).await.unwrap();

    let mut watch = store.watch("/w/", a1.mod_revision).await.unwrap();
    let replayed = next_events(&mut watch, 4).await;
    let described: Vec<String> = replayed.iter().map(describe).collect();
    assert_eq!(
        described,
        [
            "put /w/a=a1 prev=-",
            "put /w/a=a2 prev=a1",
            "put /w/b=b1 prev=-",
            "delete /w/a prev=a2"
        ]
    );
    assert_eq!(replayed[0].revision(), a1.mod_revision);
    match &replayed[3] {
        Event::Delete { revision, prev } => {
            assert!(*revision > a2.mod_revision);
            assert_eq!(prev, &a2);
        }
        other => panic!("expected a delete, got {other:?}"),
    }

    let c = store.create("/w/c", bytes("c1")).await.unwrap();
    store.create("/x/outside2", bytes("x")).await.unwrap();
    let (b, _) = store.get("/w/b").await.unwrap();
    store
        .update("/w/b", bytes("b2"), b.unwrap().mod_revision)
        .await
        .unwrap();
    let live = next_events(&mut watch, 2).await;
    let described: Vec<String> = live.iter().map(describe).collect();
    assert_eq!(described, ["put /w/c=c1 prev=-", "put /w/b=b2 prev=b1"]);
    assert_eq!(live[0].revision(), c.mod_revision);
    let all: Vec<Revision> = replayed.iter().chain(&live).map(Event::revision).collect();
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "revisions in order: {all:?}"
    );
}

pub async fn watch_from_zero_sees_only_new_events(store: Arc<dyn Store>) {
    store.create("/z/old", bytes("old")).await.unwrap();
    let mut watch = store.watch("/z/", 0).await.unwrap();
    let new = store.create("/z/new", bytes("new")).await.unwrap();
    let events = next_events(&mut watch, 1).await;
    assert_eq!(
        events,
        vec![Event::Put {
            kv: new,
            prev: None
        }]
    );
}

pub async fn compaction_fails_old_reads_and_watches(store: Arc<dyn Store>) {
    let k1 = store.create("/k/a", bytes("1")).await.unwrap();
    let k2 = store
        .update("/k/a", bytes("2"), k1.mod_revision)
        .await
        .unwrap();
    let k3 = store
        .update("/k/a", bytes("3"), k2.mod_revision)
        .await
        .unwrap();
    let other = store.create("/k/b", bytes("b")).await.unwrap();
    store.compact(k3.mod_revision).await.unwrap();

    let old = store
        .range(RangeRequest {
            prefix: "/k/".into(),
            revision: Some(k1.mod_revision),
            ..Default::default()
        })
        .await;
    match old {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, k1.mod_revision);
            assert!(
                compacted > requested && compacted <= k3.mod_revision,
                "compacted {compacted}"
            );
        }
        other => panic!("range below the compacted revision: {other:?}"),
    }
    match store.watch("/k/", k2.mod_revision).await {
        Err(StoreError::Compacted { requested, .. }) => assert_eq!(requested, k2.mod_revision),
        Ok(_) => panic!("watch below the compacted revision succeeded"),
        Err(other) => panic!("watch below the compacted revision: {other:?}"),
    }
    // At the compacted revision itself reads and watches still work.
    let at = store
        .range(RangeRequest {
            prefix: "/k/".into(),
            revision: Some(k3.mod_revision),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(at.kvs, vec![k3.clone()]);
    let mut watch = store.watch("/k/", k3.mod_revision).await.unwrap();
    let events = next_events(&mut watch, 2).await;
    // Whether the value before the first event is still known differs (etcd
    // drops it with the compacted history), so only the new value is compared.
    match &events[0] {
        Event::Put { kv, .. } => assert_eq!(kv, &k3),
        other => panic!("expected the put at the compacted revision, got {other:?}"),
    }
    assert_eq!(
        events[1],
        Event::Put {
            kv: other.clone(),
            prev: None
        }
    );

    assert_eq!(
        store.range(range("/k/")).await.unwrap().kvs,
        vec![k3.clone(), other]
    );
    let (current, compacted) = store.revisions().await.unwrap();
    assert!(compacted >= k3.mod_revision && current >= compacted);
    // Compacting again at or below the compacted revision changes nothing.
    store.compact(k2.mod_revision).await.unwrap();
    store.compact(k3.mod_revision).await.unwrap();
    assert_eq!(store.get("/k/a").await.unwrap().0, Some(k3));
}

pub async fn future_revisions_are_rejected(store: Arc<dyn Store>) {
    store.create("/f/a", bytes("a")).await.unwrap();
    let (current, _) = store.revisions().await.unwrap();
    let future = current + 10;
    match store
        .range(RangeRequest {
            prefix: "/f/".into(),
            revision: Some(future),
            ..Default::default()
        })
        .await
    {
        Err(StoreError::FutureRevision {
            requested,
            current: reported,
        }) => {
            assert_eq!(requested, future);
            assert!(reported >= current && reported < future);
        }
        other => panic!("range in the future: {other:?}"),
    }
    match store.compact(future).await {
        Err(StoreError::FutureRevision { requested, .. }) => assert_eq!(requested, future),
        other => panic!("compact in the future: {other:?}"),
    }
    assert_eq!(store.revisions().await.unwrap().0, current);
}

/// 64 tasks × 50 successful writes on 32 shared keys: creates, and CAS updates
/// retried on conflict. A watcher must see every write exactly once, in strictly
/// increasing, gap-free revisions, and per key a consistent version history
/// ending at the stored value.
pub async fn concurrent_writers_stay_consistent(store: Arc<dyn Store>) {
    const TASKS: usize = 64;
    const WRITES_PER_TASK: usize = 50;
    const KEYS: u64 = 32;
    let (start, _) = store.revisions().await.unwrap();
    let mut watch = store.watch("/c/", start + 1).await.unwrap();
    let watcher =
        tokio::spawn(async move { next_events(&mut watch, TASKS * WRITES_PER_TASK).await });

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seed = (task as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut acknowledged = Vec::new();
            let mut retries = 0;
            while acknowledged.len() < WRITES_PER_TASK {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let key = format!("/c/k{:02}", (seed >> 33) % KEYS);
                let value = bytes(&format!("t{task}-w{}", acknowledged.len()));
                let result = match store.get(&key).await.unwrap().0 {
                    None => store.create(&key, value).await,
                    Some(kv) => store.update(&key, value, kv.mod_revision).await,
                };
                match result {
                    Ok(kv) => acknowledged.push(kv),
                    Err(StoreError::AlreadyExists { .. } | StoreError::Conflict { .. }) => {
                        retries += 1
                    }
                    Err(other) => panic!("write failed: {other}"),
                }
            }
            (acknowledged, retries)
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap().0);
    }
    let events = watcher.await.unwrap();

    let revisions: Vec<Revision> = events.iter().map(Event::revision).collect();
    for pair in revisions.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "gap-free, strictly increasing revisions"
        );
    }
    assert_eq!(revisions[0], start + 1);
    let mut acked_revisions: Vec<Revision> =
        acknowledged.iter().map(|kv| kv.mod_revision).collect();
    acked_revisions.sort_unstable();
    assert_eq!(
        acked_revisions, revisions,
        "every acknowledged write is seen once by the watcher"
    );

    let mut last_per_key: BTreeMap<String, KeyValue> = BTreeMap::new();
    for event in &events {
        let Event::Put { kv, prev } = event else {
            panic!("unexpected delete {event:?}")
        };
        match last_per_key.get(&kv.key) {
            None => assert_eq!(
                (kv.version, kv.create_revision, prev),
                (1, kv.mod_revision, &None)
            ),
            Some(last) => {
                assert_eq!(prev.as_ref(), Some(last));
                assert_eq!(
                    (kv.version, kv.create_revision),
                    (last.version + 1, last.create_revision)
                );
            }
        }
        last_per_key.insert(kv.key.clone(), kv.clone());
    }
    let stored = store.range(range("/c/")).await.unwrap();
    assert_eq!(stored.kvs, last_per_key.into_values().collect::<Vec<_>>());
}
