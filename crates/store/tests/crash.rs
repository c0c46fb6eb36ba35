//! Durability of the embedded store: SIGKILL a writer process at random moments
//! and check every acknowledged write survived; recover from torn and garbage
//! log tails; keep disk use bounded under endless overwrites.
//!
//! `STORE_CRASH_ITERATIONS` (default 30) sets how many kill/recover rounds run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use store::{EmbeddedOptions, EmbeddedStore, Revision, Store, StoreError};

struct Ack {
    key: String,
    revision: Revision,
    value: String,
}

/// Opens the store in `dir`, waiting out a LOCK that is still held for a
/// moment after the last store there was dropped: the tests run in parallel
/// and one of them spawns writer processes, and a child between its fork and
/// its exec shares this process's open files, the LOCK file's included (the
/// lock goes with the last of them, at the child's exec).
fn open(dir: &Path) -> Arc<EmbeddedStore> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match EmbeddedStore::open(dir, EmbeddedOptions::default()) {
            Ok(store) => return store,
            Err(StoreError::Unavailable(m))
                if m.contains("in use") && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("opening the store in {}: {e}", dir.display()),
        }
    }
}

/// Run the writer until SIGKILL after `run_for`; return its OPEN revision and acks.
fn run_writer_and_kill(dir: &Path, run_for: Duration) -> (Option<Revision>, Vec<Ack>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_store-crash-writer"))
        .arg(dir)
        .arg("32")
        .arg((256 << 10).to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn store-crash-writer");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut opened = None;
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.as_slice() {
                ["OPEN", revision] => opened = Some(revision.parse().expect("open revision")),
                ["ACK", key, revision, value] => acks.push(Ack {
                    key: key.to_string(),
                    revision: revision.parse().expect("ack revision"),
                    value: value.to_string(),
                }),
                // A line cut by the kill was never completely acknowledged.
                _ => {}
            }
        }
        (opened, acks)
    });
    std::thread::sleep(run_for);
    child.kill().expect("SIGKILL writer");
    child.wait().expect("reap writer");
    reader.join().expect("reader thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let iterations: usize = std::env::var("STORE_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut revision_after_last_round = 0;
    let mut total_acks = 0;
    for iteration in 0..iterations {
        let run_for = Duration::from_millis(rng.random_range(20..=300));
        let (opened, acks) = run_writer_and_kill(dir.path(), run_for);
        if let Some(opened) = opened {
            assert!(
                opened >= revision_after_last_round,
                "iteration {iteration}: reopened at {opened}, was {revision_after_last_round}"
            );
        }
        total_acks += acks.len();

        let store = open(dir.path());
        let (current, compacted) = store.revisions().await.unwrap();
        assert!(
            current >= revision_after_last_round,
            "iteration {iteration}: revision went back to {current}"
        );
        assert!(compacted <= current);
        // The newest ack per key is the one to check; older ones are implied.
        let mut newest: HashMap<&str, &Ack> = HashMap::new();
        for ack in &acks {
            assert!(
                ack.revision <= current,
                "iteration {iteration}: acked revision {} > recovered {current}",
                ack.revision
            );
            let slot = newest.entry(ack.key.as_str()).or_insert(ack);
            if ack.revision > slot.revision {
                *slot = ack;
            }
        }
        for ack in newest.values() {
            let kv = store.get(&ack.key).await.unwrap().0.unwrap_or_else(|| {
                panic!(
                    "iteration {iteration}: acknowledged key {} (revision {}) is missing",
                    ack.key, ack.revision
                )
            });
            assert!(
                kv.mod_revision >= ack.revision,
                "iteration {iteration}: {} went back from {} to {}",
                ack.key,
                ack.revision,
                kv.mod_revision
            );
            if kv.mod_revision == ack.revision {
                assert_eq!(
                    kv.value,
                    Bytes::from(ack.value.clone()),
                    "iteration {iteration}: value of {}",
                    ack.key
                );
            }
        }
        revision_after_last_round = current;
        drop(store);
    }
    assert!(total_acks > 0, "the writer never acknowledged anything");
    eprintln!("{iterations} SIGKILL rounds, {total_acks} acknowledged writes checked, final revision {revision_after_last_round}");
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("wal-"))
        .collect();
    segments.sort();
    segments.pop().expect("a wal segment")
}

async fn write_keys(store: &Arc<EmbeddedStore>, range: std::ops::Range<usize>) {
    for i in range {
        store
            .create(&format!("/torn/{i:04}"), Bytes::from(format!("value-{i}")))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn torn_and_garbage_tails_are_dropped_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    write_keys(&store, 0..100).await;
    drop(store);

    // A record cut mid-way: only that record is lost.
    let segment = last_segment(dir.path());
    let len = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let store = open(dir.path());
    assert_eq!(store.revisions().await.unwrap().0, 99);
    assert_eq!(
        store.get("/torn/0098").await.unwrap().0.unwrap().value,
        Bytes::from("value-98")
    );
    assert_eq!(store.get("/torn/0099").await.unwrap().0, None);
    drop(store);

    // Garbage after the last record: nothing is lost, and new writes land after
    // the good records (the garbage was truncated away).
    for garbage in [
        &b"\x10\x00\x00\x00garbage-garbage-garbage"[..],
        &[0u8; 4096][..],
        &[0xffu8; 3][..],
    ] {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(last_segment(dir.path()))
            .unwrap()
            .write_all(garbage)
            .unwrap();
        let store = open(dir.path());
        let (before, _) = store.revisions().await.unwrap();
        let kv = store
            .create(
                &format!("/after-garbage/{before}"),
                Bytes::from_static(b"x"),
            )
            .await
            .unwrap();
        assert_eq!(kv.mod_revision, before + 1);
        drop(store);
        let store = open(dir.path());
        assert_eq!(store.revisions().await.unwrap().0, before + 1);
        assert!(store
            .get(&format!("/after-garbage/{before}"))
            .await
            .unwrap()
            .0
            .is_some());
    }
}

#[tokio::test]
async fn a_damaged_snapshot_is_reported_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        snapshot_threshold_bytes: 1024,
        ..Default::default()
    };
    let store = EmbeddedStore::open(dir.path(), options.clone()).unwrap();
    write_keys(&store, 0..200).await;
    drop(store);
    let snapshot = dir.path().join("snapshot");
    let mut data = std::fs::read(&snapshot).expect("a snapshot was written");
    let middle = data.len() / 2;
    data[middle] ^= 0x55;
    std::fs::write(&snapshot, data).unwrap();
    match EmbeddedStore::open(dir.path(), options) {
        Err(store::StoreError::Corrupt(message)) => {
            assert!(message.contains("snapshot"), "{message}")
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("opened a store with a damaged snapshot"),
    }
}

fn dir_size_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// 200 MiB of overwrites of 16 keys with a 4 MiB snapshot threshold: the
/// directory must stay near threshold + snapshots, not grow with the writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_use_stays_bounded_under_overwrites() {
    const VALUE_BYTES: usize = 64 << 10;
    const TASKS: usize = 16;
    const TOTAL_BYTES: usize = 200 << 20;
    const BOUND_BYTES: u64 = 48 << 20;
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        snapshot_threshold_bytes: 4 << 20,
        history_max_revisions: Some(50),
        ..Default::default()
    };
    let store = EmbeddedStore::open(dir.path(), options).unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let path = dir.path().to_path_buf();
        let done = done.clone();
        tokio::spawn(async move {
            let mut max = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(dir_size_bytes(&path));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            max
        })
    };
    let writes_per_task = TOTAL_BYTES / VALUE_BYTES / TASKS;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/big/{task}");
            let mut revision = store
                .create(&key, Bytes::from(vec![0u8; VALUE_BYTES]))
                .await
                .unwrap()
                .mod_revision;
            for i in 1..writes_per_task {
                let value = Bytes::from(vec![i as u8; VALUE_BYTES]);
                revision = store
                    .update(&key, value, revision)
                    .await
                    .unwrap()
                    .mod_revision;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let max_bytes = sampler.await.unwrap().max(dir_size_bytes(dir.path()));
    eprintln!(
        "wrote {} MiB; largest directory size seen {:.1} MiB",
        TOTAL_BYTES >> 20,
        max_bytes as f64 / (1 << 20) as f64
    );
    assert!(
        max_bytes < BOUND_BYTES,
        "directory grew to {max_bytes} bytes"
    );
    let (current, _) = store.revisions().await.unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.revisions().await.unwrap().0, current);
    assert_eq!(store.stats().0, TASKS);
}
