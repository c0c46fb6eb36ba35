//! Durable write throughput of the embedded store versus a real etcd started on
//! loopback, with 1, 16 and 128 concurrent writers creating 256-byte values.
//!
//! Usage: store-bench [seconds per run, default 5]   (or STORE_BENCH_SECONDS)

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use store::testing::EtcdProcess;
use store::{EmbeddedOptions, EmbeddedStore, EtcdStore, Store};

const VALUE_BYTES: usize = 256;
const WRITER_COUNTS: [usize; 3] = [1, 16, 128];

struct RunResult {
    writes: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

async fn run(store: Arc<dyn Store>, label: &str, writers: usize, duration: Duration) -> RunResult {
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        let value = value.clone();
        let prefix = format!("/bench/{label}/{writers}/{writer}/");
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let begun = Instant::now();
                store
                    .create(&format!("{prefix}{i:010}"), value.clone())
                    .await
                    .expect("create");
                latencies.push(begun.elapsed());
                i += 1;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("writer"));
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    RunResult {
        writes: latencies.len(),
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("STORE_BENCH_SECONDS").ok())
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5.0);
    let duration = Duration::from_secs_f64(seconds);

    let dir = tempfile::tempdir()?;
    let embedded: Arc<dyn Store> = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())?;
    let etcd_process = tokio::task::spawn_blocking(EtcdProcess::start)
        .await?
        .map_err(anyhow::Error::msg)?;
    let etcd: Arc<dyn Store> =
        EtcdStore::connect(&[etcd_process.endpoint().to_owned()], "").await?;

    println!("durable creates of {VALUE_BYTES}-byte values, {seconds} s per run");
    println!("| writers | embedded writes/s | embedded p50 / p99 | etcd writes/s | etcd p50 / p99 | ratio |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for writers in WRITER_COUNTS {
        let e = run(embedded.clone(), "embedded", writers, duration).await;
        let c = run(etcd.clone(), "etcd", writers, duration).await;
        let rate = |r: &RunResult| r.writes as f64 / r.elapsed.as_secs_f64();
        println!(
            "| {writers} | {:.0} | {:.2} / {:.2} ms | {:.0} | {:.2} / {:.2} ms | {:.1}x |",
            rate(&e),
            e.p50.as_secs_f64() * 1e3,
            e.p99.as_secs_f64() * 1e3,
            rate(&c),
            c.p50.as_secs_f64() * 1e3,
            c.p99.as_secs_f64() * 1e3,
            rate(&e) / rate(&c),
        );
    }
    Ok(())
}
