//! The conformance suite against the in-memory store the simulation uses.

use std::sync::Arc;

use store::{MemoryStore, Store};

async fn fresh_store() -> (Arc<dyn Store>, ()) {
    let store: Arc<dyn Store> = MemoryStore::new();
    (store, ())
}

store::conformance_tests!(fresh_store);

/// A commit observer sees every committed event once, in revision order,
/// however many writes happen before anyone awaits (a watch would lag).
#[tokio::test]
async fn commit_observer_sees_every_revision_in_order() {
    let store = MemoryStore::new();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    store.on_commit(Box::new(move |events| {
        let mut sink = sink.lock().unwrap();
        for e in events {
            sink.push((e.revision(), e.key().to_string()));
        }
    }));
    let mut expected = Vec::new();
    for i in 0..10_000 {
        let key = format!("/k/{}", i % 7);
        let kv = match store.get(&key).await.unwrap().0 {
            Some(kv) => store
                .update(&key, bytes::Bytes::from("v"), kv.mod_revision)
                .await
                .unwrap(),
            None => store.create(&key, bytes::Bytes::from("v")).await.unwrap(),
        };
        expected.push((kv.mod_revision, key));
    }
    let (revision, prev) = store.delete("/k/0", None).await.unwrap();
    assert_eq!(prev.key, "/k/0");
    expected.push((revision, "/k/0".to_string()));
    // A failed write commits nothing.
    assert!(store.create("/k/1", bytes::Bytes::from("v")).await.is_err());
    assert_eq!(*seen.lock().unwrap(), expected);
}
