//! The conformance suite against the embedded store, each case in a fresh temp dir.

use std::sync::Arc;

use store::{EmbeddedOptions, EmbeddedStore, Store};

async fn fresh_store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("open embedded store");
    (store, dir)
}

store::conformance_tests!(fresh_store);
