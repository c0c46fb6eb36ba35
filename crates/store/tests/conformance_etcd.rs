//! The conformance suite against a real etcd, one fresh etcd process per case.
//! Fails (does not skip) when the etcd binary is missing.

use std::sync::Arc;

use store::testing::EtcdProcess;
use store::{EtcdStore, Store};

async fn fresh_store() -> (Arc<dyn Store>, EtcdProcess) {
    let etcd = tokio::task::spawn_blocking(EtcdProcess::start)
        .await
        .expect("etcd start task")
        .unwrap_or_else(|e| panic!("the etcd conformance tests need a real etcd: {e}"));
    let store = EtcdStore::connect(&[etcd.endpoint().to_owned()], "/drover-test")
        .await
        .expect("connect to etcd");
    (store, etcd)
}

store::conformance_tests!(fresh_store);
