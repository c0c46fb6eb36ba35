//! Crash-test helper: opens the embedded store in a directory and runs
//! concurrent writers forever, printing one line per acknowledged write
//! (`ACK <key> <mod_revision> <value>`), so a test can SIGKILL it at any moment
//! and check that everything acknowledged survived.
//!
//! Usage: store-crash-writer <dir> [writers] [snapshot_threshold_bytes]

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use store::{EmbeddedOptions, EmbeddedStore, Store, StoreError};

const KEYS_PER_WRITER: u64 = 8;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: store-crash-writer <dir> [writers] [snapshot_threshold_bytes]"),
    );
    let writers: u64 = args
        .next()
        .map(|a| a.parse().expect("writers"))
        .unwrap_or(32);
    let snapshot_threshold_bytes: u64 = args
        .next()
        .map(|a| a.parse().expect("threshold"))
        .unwrap_or(256 << 10);
    let options = EmbeddedOptions {
        snapshot_threshold_bytes,
        history_max_revisions: Some(2_000),
        ..Default::default()
    };
    let store = EmbeddedStore::open(&dir, options).expect("open store");
    let (revision, _) = store.revisions().await.expect("revisions");
    println!("OPEN {revision}");
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(
            async move { write_forever(store, writer).await },
        ));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
}

async fn write_forever(store: Arc<EmbeddedStore>, writer: u64) {
    let mut seed = writer.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ std::process::id() as u64;
    for sequence in 0u64.. {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Keys are shared between writers so CAS conflicts really happen.
        let key = format!("/crash/k{:03}", (seed >> 33) % (KEYS_PER_WRITER * 4));
        let value = format!("w{writer}-s{sequence}-p{}", std::process::id());
        let result = match store.get(&key).await.expect("get").0 {
            None => store.create(&key, Bytes::from(value.clone())).await,
            Some(kv) => {
                store
                    .update(&key, Bytes::from(value.clone()), kv.mod_revision)
                    .await
            }
        };
        match result {
            Ok(kv) => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "ACK {} {} {}", kv.key, kv.mod_revision, value).expect("stdout");
                out.flush().expect("stdout");
            }
            Err(StoreError::AlreadyExists { .. } | StoreError::Conflict { .. }) => {}
            Err(other) => panic!("write failed: {other}"),
        }
    }
}
