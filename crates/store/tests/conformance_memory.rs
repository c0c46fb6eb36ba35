//! The conformance suite against the in-memory store the simulation uses.

use std::sync::Arc;

use store::{MemoryStore, Store};

async fn fresh_store() -> (Arc<dyn Store>, ()) {
    let store: Arc<dyn Store> = MemoryStore::new();
    (store, ())
}

store::conformance_tests!(fresh_store);
